//! Channels, what they weigh on an agent, and blending: may this agent take one more interaction
//! of this kind right now?
//!
//! Every [`Channel`] maps to a [`WorkKind`]: calls, chats, or tickets (email, fax, letter and SMS
//! are all tickets). An agent's [`Capacity`] limits how many interactions of each kind it holds at
//! once (offered, connected or in wrap-up), and its [`Blending`] rule says how kinds mix. Start
//! with [`Blending`]; the engine asks [`free_kinds`] whenever an agent's load changes.

use serde::{Deserialize, Serialize};

/// The channel an interaction arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A phone call (SIP).
    Call,
    /// A website chat.
    Chat,
    /// An email (a ticket).
    Email,
    /// A fax (a ticket).
    Fax,
    /// A letter (a ticket).
    Letter,
    /// An SMS (a ticket).
    Sms,
}

impl Channel {
    /// The kind of work this channel is for capacity and blending.
    pub fn kind(self) -> WorkKind {
        match self {
            Channel::Call => WorkKind::Call,
            Channel::Chat => WorkKind::Chat,
            Channel::Email | Channel::Fax | Channel::Letter | Channel::Sms => WorkKind::Ticket,
        }
    }
}

/// What an interaction weighs on an agent: channels grouped by how they are worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkKind {
    /// Synchronous voice.
    Call,
    /// Synchronous text.
    Chat,
    /// Asynchronous written contacts: email, fax, letter, SMS.
    Ticket,
}

impl WorkKind {
    /// Every kind, in index order.
    pub const ALL: [WorkKind; 3] = [WorkKind::Call, WorkKind::Chat, WorkKind::Ticket];

    /// Position in per-kind arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            WorkKind::Call => 0,
            WorkKind::Chat => 1,
            WorkKind::Ticket => 2,
        }
    }
}

/// How many interactions of each kind an agent may hold at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct Capacity {
    /// Concurrent calls (usually 0 or 1).
    pub calls: u8,
    /// Concurrent chats.
    pub chats: u8,
    /// Concurrent tickets (email, fax, letter, SMS).
    pub tickets: u8,
}

impl Default for Capacity {
    /// 1 call, 3 chats, 5 tickets.
    fn default() -> Self {
        Capacity {
            calls: 1,
            chats: 3,
            tickets: 5,
        }
    }
}

impl Capacity {
    /// The limit for one kind.
    pub fn limit(&self, kind: WorkKind) -> u8 {
        match kind {
            WorkKind::Call => self.calls,
            WorkKind::Chat => self.chats,
            WorkKind::Ticket => self.tickets,
        }
    }

    fn total(&self) -> u64 {
        u64::from(self.calls) + u64::from(self.chats) + u64::from(self.tickets)
    }
}

/// How kinds of work mix on one agent. Limits of [`Capacity`] always apply on top.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blending {
    /// A call blocks the rest: while the agent holds a call (offered, connected or in wrap-up)
    /// nothing else is offered to it. Chats and tickets blend with each other, and holding them
    /// does not keep a call from being offered.
    #[default]
    CallBlocksOthers,
    /// One kind at a time: 1 call, or up to N chats, or up to M tickets. While the agent holds
    /// anything, only more of the same kind is offered.
    Exclusive,
    /// Kinds are independent: each up to its own limit, all at once.
    Independent,
}

/// What an agent holds right now, per kind (offered + connected + wrap-up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Load([u8; 3]);

impl Load {
    #[cfg(test)]
    pub(crate) fn get(&self, kind: WorkKind) -> u8 {
        self.0[kind.index()]
    }

    pub(crate) fn add(&mut self, kind: WorkKind) {
        let n = &mut self.0[kind.index()];
        *n = n.saturating_add(1);
    }

    pub(crate) fn remove(&mut self, kind: WorkKind) {
        let n = &mut self.0[kind.index()];
        *n = n.saturating_sub(1);
    }

    fn total(&self) -> u64 {
        self.0.iter().map(|&n| u64::from(n)).sum()
    }
}

/// A small set of [`WorkKind`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindSet(u8);

impl KindSet {
    /// The bits of all kinds.
    const ALL: u8 = 0b111;

    #[cfg(test)]
    pub(crate) fn insert(&mut self, kind: WorkKind) {
        self.0 |= 1 << kind.index();
    }

    pub(crate) fn contains(self, kind: WorkKind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(WorkKind) -> bool) {
        for kind in WorkKind::ALL {
            if !keep(kind) {
                self.0 &= !(1 << kind.index());
            }
        }
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = WorkKind> {
        // Bit by bit: a freed agent walks its queues' lists kind by kind.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let index = bits.trailing_zeros() as usize;
            bits &= bits.wrapping_sub(1);
            WorkKind::ALL.get(index).copied()
        })
    }
}

/// The kinds an agent with `capacity`, `blending` and `load` may be offered one more of.
///
/// Routing asks this for every agent it considers, so it is computed on bit sets: the kinds
/// below their limit, less the kinds the blending rule blocks given the kinds held.
#[inline]
pub(crate) fn free_kinds(capacity: &Capacity, blending: Blending, load: &Load) -> KindSet {
    let [calls, chats, tickets] = load.0;
    let below = u8::from(calls < capacity.calls)
        | u8::from(chats < capacity.chats) << 1
        | u8::from(tickets < capacity.tickets) << 2;
    let held = u8::from(calls > 0) | u8::from(chats > 0) << 1 | u8::from(tickets > 0) << 2;
    let allowed = match blending {
        Blending::Independent => KindSet::ALL,
        // Holding a call blocks the other kinds.
        Blending::CallBlocksOthers if held & 1 != 0 => 1,
        Blending::CallBlocksOthers => KindSet::ALL,
        // Nothing held: any kind; one kind held: only more of it; several: none.
        Blending::Exclusive if held == 0 => KindSet::ALL,
        Blending::Exclusive if held.is_power_of_two() => held,
        Blending::Exclusive => 0,
    };
    KindSet(below & allowed)
}

/// How full an agent is, in thousandths of its total capacity (for the least-occupied strategy).
pub(crate) fn occupancy_permille(capacity: &Capacity, load: &Load) -> u64 {
    match capacity.total() {
        0 => 1000,
        total => load.total() * 1000 / total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(calls: u8, chats: u8, tickets: u8) -> Load {
        Load([calls, chats, tickets])
    }

    fn kinds(set: KindSet) -> Vec<WorkKind> {
        set.iter().collect()
    }

    #[test]
    fn tickets_are_email_fax_letter_sms() {
        for channel in [Channel::Email, Channel::Fax, Channel::Letter, Channel::Sms] {
            assert_eq!(channel.kind(), WorkKind::Ticket);
        }
        assert_eq!(Channel::Call.kind(), WorkKind::Call);
        assert_eq!(Channel::Chat.kind(), WorkKind::Chat);
    }

    #[test]
    fn limits_apply_per_kind() {
        let cap = Capacity::default();
        let free = free_kinds(&cap, Blending::Independent, &load(1, 3, 4));
        assert_eq!(kinds(free), vec![WorkKind::Ticket]);
        let free = free_kinds(&cap, Blending::Independent, &load(1, 3, 5));
        assert!(free.is_empty());
    }

    #[test]
    fn a_call_blocks_the_rest() {
        let cap = Capacity::default();
        let on_call = free_kinds(&cap, Blending::CallBlocksOthers, &load(1, 0, 0));
        assert!(on_call.is_empty());
        let chatting = free_kinds(&cap, Blending::CallBlocksOthers, &load(0, 2, 1));
        assert_eq!(kinds(chatting), WorkKind::ALL.to_vec());
    }

    #[test]
    fn exclusive_allows_only_more_of_the_same() {
        let cap = Capacity::default();
        let chatting = free_kinds(&cap, Blending::Exclusive, &load(0, 2, 0));
        assert_eq!(kinds(chatting), vec![WorkKind::Chat]);
        let idle = free_kinds(&cap, Blending::Exclusive, &load(0, 0, 0));
        assert_eq!(kinds(idle), WorkKind::ALL.to_vec());
    }

    /// The rules as written in [`Blending`], kind by kind.
    fn free_kinds_by_the_rules(capacity: &Capacity, blending: Blending, load: &Load) -> KindSet {
        let mut free = KindSet::default();
        for kind in WorkKind::ALL {
            let blocked = match blending {
                Blending::Independent => false,
                Blending::CallBlocksOthers => {
                    kind != WorkKind::Call && load.get(WorkKind::Call) > 0
                }
                Blending::Exclusive => WorkKind::ALL
                    .into_iter()
                    .any(|other| other != kind && load.get(other) > 0),
            };
            if load.get(kind) < capacity.limit(kind) && !blocked {
                free.insert(kind);
            }
        }
        free
    }

    #[test]
    fn bit_set_computation_follows_the_rules_everywhere() {
        let blendings = [
            Blending::CallBlocksOthers,
            Blending::Exclusive,
            Blending::Independent,
        ];
        for blending in blendings {
            for limits in 0..64u8 {
                let cap = Capacity {
                    calls: limits & 3,
                    chats: (limits >> 2) & 3,
                    tickets: limits >> 4,
                };
                for held in 0..64u8 {
                    let load = load(held & 3, (held >> 2) & 3, held >> 4);
                    assert_eq!(
                        free_kinds(&cap, blending, &load),
                        free_kinds_by_the_rules(&cap, blending, &load),
                        "{cap:?} {blending:?} {load:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn occupancy_is_a_share_of_total_capacity() {
        let cap = Capacity {
            calls: 0,
            chats: 4,
            tickets: 0,
        };
        assert_eq!(occupancy_permille(&cap, &load(0, 1, 0)), 250);
        let none = Capacity {
            calls: 0,
            chats: 0,
            tickets: 0,
        };
        assert_eq!(occupancy_permille(&none, &load(0, 0, 0)), 1000);
    }
}
