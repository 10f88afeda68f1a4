//! The registrar of RFC 3261 §10.3: which contacts (agents' phones) are bound to each
//! address-of-record, until when, and where their REGISTER really came from.
//!
//! Start with [`Registrar::register`]: it takes an already authenticated REGISTER (see
//! [`crate::digest`]) and returns the response to send — 200 with the current bindings, 423
//! Interval Too Brief, 400 for a malformed `*`, 500 for an out-of-order CSeq (§10.3 step 7).
//! Changes are all-or-nothing per request. Each [`Binding`] keeps the request's source
//! [`Peer`], so the server can reach a phone behind NAT through the pinhole its REGISTER
//! opened. [`Registrar::lookup`] returns the live contacts at a given instant; expired
//! bindings are skipped at once and dropped by [`Registrar::remove_expired`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rsip::headers::UntypedHeader;
use rsip::{Header, Request, Response};

use crate::message::{self, header_param, header_params_part, params_of, response_to, uri_part};
use crate::Peer;

/// Expiry policy of a [`Registrar`], in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest accepted registration; shorter non-zero requests get 423.
    pub min_expires: u32,
    /// Longest granted registration; longer requests are cut to this.
    pub max_expires: u32,
    /// Granted when the request names no expiry.
    pub default_expires: u32,
    /// Most contacts per address-of-record; more are refused with 403.
    pub max_bindings_per_aor: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_bindings_per_aor: 10,
        }
    }
}

/// One contact bound to an address-of-record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The contact as registered (`<uri>;params`), without its `expires` parameter.
    pub contact: String,
    /// The contact URI.
    pub uri: String,
    /// Call-ID of the REGISTER that created or last refreshed the binding.
    pub call_id: String,
    /// CSeq number of that REGISTER.
    pub cseq: u32,
    /// When the binding lapses.
    pub expires_at: Instant,
    /// Where the REGISTER came from: requests to this contact go here (NAT traversal).
    pub source: Peer,
}

impl Binding {
    /// Seconds left at `now` (0 once expired).
    pub fn remaining(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs()
    }

    fn live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

/// Bindings of all addresses-of-record.
#[derive(Debug, Default)]
pub struct Registrar {
    config: RegistrarConfig,
    bindings: HashMap<String, Vec<Binding>>,
    /// No binding lapses before this. Exact after [`Registrar::remove_expired`]; a refresh or
    /// removal may leave it early, and the next `remove_expired` then sets it right — so the
    /// endpoint's loop (which asks on every message) never scans all bindings for it.
    earliest: Option<Instant>,
}

/// What one contact of a REGISTER does to the bindings, by the contact's comparison key.
enum Change {
    Remove(String),
    Upsert(String, Binding),
}

impl Registrar {
    /// An empty registrar.
    pub fn new(config: RegistrarConfig) -> Self {
        Self {
            config,
            bindings: HashMap::new(),
            earliest: None,
        }
    }

    /// The canonical address-of-record of a REGISTER: `scheme:user@host` of its To URI, with
    /// the host lower-cased and port and parameters dropped. `None` if To is unreadable.
    pub fn aor_of(request: &Request) -> Option<String> {
        aor_from(message::to_value(&request.headers)?)
    }

    /// Processes an authenticated REGISTER received from `source` and returns the response.
    pub fn register(&mut self, request: &Request, source: Peer, now: Instant) -> Response {
        let tag = message::new_tag();
        let reply = |code: u16| response_to(request, code, Some(&tag));
        let (Some(aor), Ok(call_id), Ok((cseq, _))) = (
            Self::aor_of(request),
            message::call_id(&request.headers),
            message::cseq(&request.headers),
        ) else {
            return reply(400);
        };
        let header_expires = request.headers.iter().find_map(|h| match h {
            Header::Expires(e) => Some(e.value().trim().parse::<u32>().ok()),
            _ => None,
        });
        let contacts: Vec<&str> = message::list_values(&request.headers, |h| match h {
            Header::Contact(c) => Some(c.value()),
            _ => None,
        })
        .collect();
        // More contacts than an address may have bindings is refused before any is parsed:
        // each is compared with the others, and a 16 KB header holds about 1,500.
        if contacts.len() > self.config.max_bindings_per_aor {
            return reply(403);
        }

        // The live bindings, with their comparison keys; written back only once the request is
        // accepted, so that a refused one leaves no entry behind.
        let mut current: Vec<(Option<String>, Binding)> = self
            .bindings
            .get(&aor)
            .into_iter()
            .flatten()
            .filter(|b| b.live(now))
            .map(|b| (contact_key(&b.uri), b.clone()))
            .collect();

        if contacts.contains(&"*") {
            // §10.3 step 6: "*" only alone and only with Expires: 0.
            if contacts.len() != 1 || header_expires != Some(Some(0)) {
                return reply(400);
            }
            if current
                .iter()
                .any(|(_, b)| b.call_id == call_id && cseq <= b.cseq)
            {
                return reply(500);
            }
            self.bindings.remove(&aor);
            return reply(200);
        }

        let mut changes = Vec::with_capacity(contacts.len());
        for contact in &contacts {
            let Some(key) = contact_key(uri_part(contact)) else {
                return reply(400);
            };
            let requested = match header_param(contact, "expires") {
                Some(Some(v)) => v.parse::<u32>().unwrap_or(self.config.default_expires),
                _ => match header_expires {
                    Some(Some(v)) => v,
                    _ => self.config.default_expires,
                },
            };
            if requested != 0 && requested < self.config.min_expires {
                let mut response = reply(423);
                response
                    .headers
                    .push(Header::MinExpires(rsip::headers::MinExpires::new(
                        self.config.min_expires.to_string(),
                    )));
                return response;
            }
            // §10.3 step 7: a refresh in the same Call-ID must have a higher CSeq.
            if let Some((_, existing)) = current
                .iter()
                .find(|(existing, _)| existing.as_ref() == Some(&key))
            {
                if existing.call_id == call_id && cseq <= existing.cseq {
                    return reply(500);
                }
            }
            if requested == 0 {
                changes.push(Change::Remove(key));
            } else {
                let granted = requested.min(self.config.max_expires);
                let binding = Binding {
                    contact: contact_without_expires(contact),
                    uri: uri_part(contact).to_owned(),
                    call_id: call_id.to_owned(),
                    cseq,
                    expires_at: now + Duration::from_secs(u64::from(granted)),
                    source,
                };
                changes.push(Change::Upsert(key, binding));
            }
        }

        for change in changes {
            match change {
                Change::Remove(key) => current.retain(|(k, _)| k.as_ref() != Some(&key)),
                Change::Upsert(key, binding) => {
                    match current.iter_mut().find(|(k, _)| k.as_ref() == Some(&key)) {
                        Some((_, existing)) => *existing = binding,
                        None => current.push((Some(key), binding)),
                    }
                }
            }
        }
        if current.len() > self.config.max_bindings_per_aor {
            return reply(403);
        }
        let next: Vec<Binding> = current.into_iter().map(|(_, b)| b).collect();
        let mut response = reply(200);
        for binding in &next {
            response
                .headers
                .push(Header::Contact(rsip::headers::Contact::new(format!(
                    "{};expires={}",
                    binding.contact,
                    binding.remaining(now)
                ))));
        }
        let lapses = next.iter().map(|b| b.expires_at).min();
        if next.is_empty() {
            self.bindings.remove(&aor);
        } else {
            self.bindings.insert(aor, next);
        }
        self.earliest = match (self.earliest, lapses) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        response
    }

    /// The live bindings of `aor` (canonical form, see [`Registrar::aor_of`]) at `now`.
    pub fn lookup<'a>(&'a self, aor: &str, now: Instant) -> impl Iterator<Item = &'a Binding> + 'a {
        self.bindings
            .get(aor)
            .into_iter()
            .flatten()
            .filter(move |b| b.live(now))
    }

    /// Drops every binding of `aor`: the address now belongs to someone else (its username was
    /// given to another user), whose phones alone it may reach.
    pub fn forget(&mut self, aor: &str) {
        self.bindings.remove(aor);
    }

    /// Drops every binding whose REGISTER came over the connection `source` (TCP or TLS) when
    /// that connection closes: requests to those contacts could only go through it (RFC 5626
    /// §4.2 ties a binding to its flow), and a phone that reconnects registers again over its
    /// new connection. Returns how many were dropped.
    pub fn drop_source(&mut self, source: Peer) -> usize {
        let mut removed = 0;
        self.bindings.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.source != source);
            removed += before - list.len();
            !list.is_empty()
        });
        removed
    }

    /// Drops every binding expired at `now`; returns how many were dropped. Cheap before the
    /// earliest expiry: nothing is looked at.
    pub fn remove_expired(&mut self, now: Instant) -> usize {
        if self.earliest.is_none_or(|earliest| earliest > now) {
            return 0;
        }
        let mut removed = 0;
        self.bindings.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.live(now));
            removed += before - list.len();
            !list.is_empty()
        });
        self.earliest = self.bindings.values().flatten().map(|b| b.expires_at).min();
        removed
    }

    /// When to call [`Registrar::remove_expired`] next: no binding lapses before this (one may
    /// lapse later, if it was refreshed or removed since).
    pub fn next_expiry(&self) -> Option<Instant> {
        self.earliest
    }
}

fn aor_from(to: &str) -> Option<String> {
    let uri = rsip::Uri::try_from(uri_part(to)).ok()?;
    let scheme = match uri.scheme {
        Some(rsip::Scheme::Sips) => "sips",
        _ => "sip",
    };
    let host = uri.host_with_port.host.to_string().to_ascii_lowercase();
    Some(match uri.auth {
        Some(auth) => format!("{scheme}:{}@{host}", auth.user),
        None => format!("{scheme}:{host}"),
    })
}

/// A comparison key for contact URIs (a simplification of §19.1.4: scheme, user, host
/// case-insensitively, port, transport).
fn contact_key(uri: &str) -> Option<String> {
    let parsed = rsip::Uri::try_from(uri).ok()?;
    let user = parsed.auth.as_ref().map_or("", |a| a.user.as_str());
    let port = parsed.host_with_port.port.map_or(5060, |p| *p.value());
    let transport = parsed
        .transport()
        .map_or_else(String::new, |t| t.to_string().to_ascii_lowercase());
    Some(format!(
        "{}:{user}@{}:{port};{transport}",
        parsed
            .scheme
            .map_or_else(|| "sip".to_owned(), |s| s.to_string()),
        parsed.host_with_port.host.to_string().to_ascii_lowercase()
    ))
}

fn contact_without_expires(contact: &str) -> String {
    let mut out = format!("<{}>", uri_part(contact));
    for (name, value) in params_of(header_params_part(contact)) {
        if name.eq_ignore_ascii_case("expires") {
            continue;
        }
        out.push(';');
        out.push_str(name);
        if let Some(v) = value {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, Limits};
    use crate::Transport;
    use rsip::SipMessage;

    const AOR: &str = "sip:agent1@vacd.example";

    fn register(call_id: &str, cseq: u32, contacts: &[&str], expires: Option<&str>) -> Request {
        let mut text = format!(
            "REGISTER sip:vacd.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKr{cseq}\r\n\
Max-Forwards: 70\r\n\
To: <sip:agent1@VACD.example>\r\n\
From: <sip:agent1@vacd.example>;tag=r1\r\n\
Call-ID: {call_id}\r\n\
CSeq: {cseq} REGISTER\r\n"
        );
        for c in contacts {
            text.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = expires {
            text.push_str(&format!("Expires: {e}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        match parse_datagram(text.as_bytes(), &Limits::default()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("bad test request: {other:?}"),
        }
    }

    fn source() -> Peer {
        Peer::new(Transport::Udp, "203.0.113.9:40001".parse().expect("addr"))
    }

    fn code(r: &Response) -> u16 {
        r.status_code.code()
    }

    fn contacts(r: &Response) -> Vec<String> {
        r.headers
            .iter()
            .filter_map(|h| match h {
                Header::Contact(c) => Some(c.value().to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn binds_several_contacts_and_keeps_the_source_address() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        let r = registrar.register(
            &register(
                "c1",
                1,
                &[
                    "<sip:agent1@10.0.0.5:5062>",
                    "<sip:agent1@10.0.0.6>;expires=120",
                ],
                Some("600"),
            ),
            source(),
            t0,
        );
        assert_eq!(code(&r), 200);
        assert_eq!(
            contacts(&r),
            vec![
                "<sip:agent1@10.0.0.5:5062>;expires=600",
                "<sip:agent1@10.0.0.6>;expires=120"
            ]
        );
        let live: Vec<_> = registrar.lookup(AOR, t0).collect();
        assert_eq!(live.len(), 2);
        assert!(live.iter().all(|b| b.source == source()));
    }

    #[test]
    fn a_closed_connection_takes_its_bindings_along() {
        let t0 = Instant::now();
        let tcp = |port| Peer::new(Transport::Tcp, ([203, 0, 113, 9], port).into());
        let mut registrar = Registrar::default_config();
        for (call_id, contact, from) in [
            ("c1", "<sip:agent1@10.0.0.5;transport=tcp>", tcp(40001)),
            ("c2", "<sip:agent1@10.0.0.6;transport=tcp>", tcp(40002)),
            ("c3", "<sip:agent1@10.0.0.7>", source()),
        ] {
            let r = registrar.register(&register(call_id, 1, &[contact], Some("600")), from, t0);
            assert_eq!(code(&r), 200);
        }
        assert_eq!(registrar.drop_source(tcp(40001)), 1);
        let left: Vec<_> = registrar.lookup(AOR, t0).map(|b| b.source).collect();
        assert_eq!(left, vec![tcp(40002), source()]);
        assert_eq!(registrar.drop_source(tcp(40001)), 0, "nothing left to drop");
        assert_eq!(registrar.drop_source(tcp(40002)), 1);
        assert_eq!(
            registrar.lookup(AOR, t0).count(),
            1,
            "the UDP binding stays"
        );
    }

    #[test]
    fn bindings_expire() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register("c1", 1, &["<sip:agent1@10.0.0.5>"], Some("60")),
            source(),
            t0,
        );
        assert_eq!(registrar.next_expiry(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(
            registrar.lookup(AOR, t0 + Duration::from_secs(59)).count(),
            1
        );
        assert_eq!(
            registrar.lookup(AOR, t0 + Duration::from_secs(60)).count(),
            0
        );
        assert_eq!(registrar.remove_expired(t0 + Duration::from_secs(60)), 1);
        assert_eq!(registrar.next_expiry(), None);
    }

    #[test]
    fn a_forgotten_address_has_no_bindings() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register("c1", 1, &["<sip:agent1@10.0.0.5>"], Some("60")),
            source(),
            t0,
        );
        registrar.forget(AOR);
        assert_eq!(registrar.lookup(AOR, t0).count(), 0);
        assert_eq!(registrar.remove_expired(t0 + Duration::from_secs(60)), 0);
    }

    #[test]
    fn a_refresh_moves_the_next_expiry_once_the_old_one_has_passed() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register("c1", 1, &["<sip:agent1@10.0.0.5>"], Some("60")),
            source(),
            t0,
        );
        registrar.register(
            &register("c1", 2, &["<sip:agent1@10.0.0.5>"], Some("600")),
            source(),
            t0 + Duration::from_secs(30),
        );
        // Still the old, earlier time: nothing lapses then, and looking finds it out.
        assert_eq!(registrar.next_expiry(), Some(t0 + Duration::from_secs(60)));
        assert_eq!(registrar.remove_expired(t0 + Duration::from_secs(60)), 0);
        assert_eq!(registrar.next_expiry(), Some(t0 + Duration::from_secs(630)));
        assert_eq!(
            registrar.lookup(AOR, t0 + Duration::from_secs(629)).count(),
            1
        );
        assert_eq!(registrar.remove_expired(t0 + Duration::from_secs(630)), 1);
        assert_eq!(registrar.next_expiry(), None);
    }

    #[test]
    fn too_brief_is_refused_with_min_expires_and_too_long_is_clamped() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        let r = registrar.register(
            &register("c1", 1, &["<sip:agent1@10.0.0.5>"], Some("10")),
            source(),
            t0,
        );
        assert_eq!(code(&r), 423);
        assert!(r
            .headers
            .iter()
            .any(|h| matches!(h, Header::MinExpires(m) if m.value() == "60")));
        assert_eq!(registrar.lookup(AOR, t0).count(), 0);
        let r = registrar.register(
            &register("c1", 2, &["<sip:agent1@10.0.0.5>"], Some("99999")),
            source(),
            t0,
        );
        assert_eq!(contacts(&r), vec!["<sip:agent1@10.0.0.5>;expires=3600"]);
    }

    #[test]
    fn unregister_one_contact_or_all_with_star() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register(
                "c1",
                1,
                &["<sip:agent1@10.0.0.5>", "<sip:agent1@10.0.0.6>"],
                None,
            ),
            source(),
            t0,
        );
        let r = registrar.register(
            &register("c1", 2, &["<sip:agent1@10.0.0.5>;expires=0"], None),
            source(),
            t0,
        );
        assert_eq!(contacts(&r), vec!["<sip:agent1@10.0.0.6>;expires=3600"]);
        let bad = registrar.register(&register("c1", 3, &["*"], Some("60")), source(), t0);
        assert_eq!(code(&bad), 400);
        let r = registrar.register(&register("c1", 4, &["*"], Some("0")), source(), t0);
        assert_eq!(code(&r), 200);
        assert!(contacts(&r).is_empty());
        assert_eq!(registrar.lookup(AOR, t0).count(), 0);
    }

    #[test]
    fn same_call_id_needs_a_higher_cseq() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register("c1", 5, &["<sip:agent1@10.0.0.5>"], None),
            source(),
            t0,
        );
        let stale = registrar.register(
            &register("c1", 5, &["<sip:agent1@10.0.0.5>"], Some("0")),
            source(),
            t0,
        );
        assert_eq!(code(&stale), 500);
        assert_eq!(registrar.lookup(AOR, t0).count(), 1, "nothing changed");
        // Another Call-ID (a rebooted phone) may use any CSeq.
        let other = registrar.register(
            &register("c2", 1, &["<sip:agent1@10.0.0.5>"], Some("120")),
            source(),
            t0,
        );
        assert_eq!(code(&other), 200);
        let binding = registrar.lookup(AOR, t0).next().cloned().expect("binding");
        assert_eq!((binding.call_id.as_str(), binding.cseq), ("c2", 1));
    }

    #[test]
    fn query_without_contact_lists_bindings() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        registrar.register(
            &register("c1", 1, &["<sip:agent1@10.0.0.5>"], Some("300")),
            source(),
            t0,
        );
        let r = registrar.register(
            &register("c1", 2, &[], None),
            source(),
            t0 + Duration::from_secs(100),
        );
        assert_eq!(contacts(&r), vec!["<sip:agent1@10.0.0.5>;expires=200"]);
    }

    #[test]
    fn more_contacts_than_bindings_allowed_are_refused_and_leave_nothing() {
        let t0 = Instant::now();
        let mut registrar = Registrar::default_config();
        let many: Vec<String> = (0..=RegistrarConfig::default().max_bindings_per_aor)
            .map(|n| format!("<sip:agent1@10.0.0.{n}>"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let r = registrar.register(&register("c1", 1, &many, Some("300")), source(), t0);
        assert_eq!(code(&r), 403);
        assert_eq!(registrar.lookup(AOR, t0).count(), 0);
        // Refused for any reason, a REGISTER leaves no entry for its address behind.
        let r = registrar.register(
            &register("c1", 2, &["<sip:agent1@10.0.0.5>"], Some("1")),
            source(),
            t0,
        );
        assert_eq!(code(&r), 423);
        assert!(registrar.bindings.is_empty(), "{:?}", registrar.bindings);
        let r = registrar.register(&register("c1", 3, &many[1..], Some("300")), source(), t0);
        assert_eq!(code(&r), 200);
        assert_eq!(registrar.lookup(AOR, t0).count(), many.len() - 1);
    }

    impl Registrar {
        fn default_config() -> Self {
            Self::new(RegistrarConfig::default())
        }
    }
}
