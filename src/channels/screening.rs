//! Loop and spam protection for inbound written messages: whether a message becomes a ticket,
//! and whether it may get an automatic acknowledgement. No I/O; [`screen`] is the one entry.
//!
//! - Mail from one of our own service addresses is a loop (our auto-reply or reply came back):
//!   it is dropped — unless its `Reply-To` names someone else (a web form sending from our
//!   address on a customer's behalf).
//! - Configured rules match a header (case-insensitive name, substring of the value) and either
//!   drop the message (spam) or only suppress the auto-reply.
//! - Machine-sent mail (`Auto-Submitted` other than `no`, `Precedence: bulk|list|junk`, a
//!   `List-Id`, `X-Autoreply` and its kin, `X-Auto-Response-Suppress: All|AutoReply`, bounces
//!   and read receipts — `multipart/report` — and
//!   mail from `mailer-daemon@` or `postmaster@`) and mail without a sender become tickets but
//!   are never auto-answered (RFC 3834 §2).

use serde::{Deserialize, Serialize};

use super::mime::{InboundMail, Problem};

/// Headers of robots that do not set `Auto-Submitted` (vacation responders').
const MACHINE_HEADERS: [&str; 2] = ["X-Autoreply", "X-Autorespond"];

/// Whether `(name, value)` is Microsoft's request not to be answered automatically
/// (`X-Auto-Response-Suppress: All`, or a list naming `AutoReply`; `DR`, `RN`, `OOF` … ask
/// other things).
fn suppresses_auto_reply(name: &str, value: &str) -> bool {
    name.eq_ignore_ascii_case("X-Auto-Response-Suppress")
        && value.split(',').any(|v| {
            let v = v.trim();
            v.eq_ignore_ascii_case("All") || v.eq_ignore_ascii_case("AutoReply")
        })
}

/// What a rule does with a message it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// No ticket: the message is removed from the server with a log line.
    Drop,
    /// A ticket, but no acknowledgement.
    NoAutoReply,
}

/// A configured screening rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Header name, e.g. `X-Spam-Flag` or `From`.
    pub header: String,
    /// Matched as a case-insensitive substring of the header's value.
    pub contains: String,
    pub action: RuleAction,
}

/// The outcome of screening one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Becomes (or joins) a ticket; `auto_reply` says whether an acknowledgement may be sent.
    Ticket { auto_reply: bool },
    /// Not a ticket, for the reason given.
    Drop(String),
}

/// Screens `mail` arriving at a mailbox whose own addresses are `own` (lowercase).
pub fn screen(mail: &InboundMail, own: &[String], rules: &[Rule]) -> Verdict {
    let answer_to = mail.answer_to(own);
    // A mail from us naming someone else in a Reply-To we cannot read (a web form's, broken) is
    // no loop: it becomes a ticket, which cannot be answered by mail.
    let foreign_reply_to = mail.problems.contains(&Problem::ReplyToUnusable);
    if let Some(to) = answer_to.filter(|to| own.contains(&to.address)) {
        if !foreign_reply_to {
            return Verdict::Drop(format!("sent from our own address {} (a loop)", to.address));
        }
    }
    let mut auto_reply = answer_to.is_some_and(|to| !own.contains(&to.address));
    for rule in rules {
        let needle = rule.contains.to_lowercase();
        let hit = mail.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(&rule.header) && value.to_lowercase().contains(&needle)
        });
        if hit {
            match rule.action {
                RuleAction::Drop => {
                    return Verdict::Drop(format!(
                        "rule {}: {} matched",
                        rule.header, rule.contains
                    ))
                }
                RuleAction::NoAutoReply => auto_reply = false,
            }
        }
    }
    let machine = mail.auto_submitted.as_deref().is_some_and(|v| v != "no")
        || mail
            .precedence
            .as_deref()
            .is_some_and(|p| matches!(p, "bulk" | "list" | "junk"))
        || mail.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("List-Id")
                || MACHINE_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
                || suppresses_auto_reply(name, value)
                // Bounces (delivery-status) and read receipts (disposition-notification).
                || (name.eq_ignore_ascii_case("Content-Type")
                    && value.to_lowercase().contains("multipart/report"))
        })
        || mail.from.as_ref().is_some_and(|from| {
            let local = from.address.split('@').next().unwrap_or_default();
            matches!(local, "mailer-daemon" | "postmaster")
        });
    Verdict::Ticket {
        auto_reply: auto_reply && !machine,
    }
}

#[cfg(test)]
mod tests {
    use super::super::mime;
    use super::*;

    fn mail(headers: &str) -> InboundMail {
        mime::parse(format!("{headers}\r\n\r\nbody").as_bytes(), 100)
    }

    #[test]
    fn a_person_gets_an_acknowledgement() {
        let m = mail("From: erika@example.test");
        assert_eq!(screen(&m, &[], &[]), Verdict::Ticket { auto_reply: true });
    }

    #[test]
    fn machines_and_lists_get_none() {
        for h in [
            "From: a@x.test\r\nAuto-Submitted: auto-replied",
            "From: a@x.test\r\nPrecedence: bulk",
            "From: a@x.test\r\nList-Id: <news.x.test>",
            "Subject: no sender",
            "From: MAILER-DAEMON@mx.x.test\r\nSubject: Undelivered Mail Returned to Sender",
            "From: a@x.test\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b",
            "From: a@x.test\r\nContent-Type: Multipart/Report; report-type=disposition-notification",
            "From: a@x.test\r\nX-Autoreply: yes",
            "From: a@x.test\r\nX-Auto-Response-Suppress: All",
            "From: a@x.test\r\nX-Auto-Response-Suppress: DR, AutoReply",
        ] {
            assert_eq!(
                screen(&mail(h), &[], &[]),
                Verdict::Ticket { auto_reply: false },
                "{h}"
            );
        }
        let m = mail("From: a@x.test\r\nAuto-Submitted: no");
        assert_eq!(screen(&m, &[], &[]), Verdict::Ticket { auto_reply: true });
        let m = mail("From: a@x.test\r\nX-Auto-Response-Suppress: DR, RN");
        assert_eq!(screen(&m, &[], &[]), Verdict::Ticket { auto_reply: true });
    }

    #[test]
    fn our_own_address_is_a_loop() {
        let m = mail("From: Support <Support@Demo.test>");
        assert!(matches!(
            screen(&m, &["support@demo.test".into()], &[]),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn a_web_form_sending_from_our_address_is_no_loop() {
        let own = ["support@demo.test".to_owned()];
        let m = mail("From: support@demo.test\r\nReply-To: Erika <erika@example.test>");
        assert_eq!(screen(&m, &own, &[]), Verdict::Ticket { auto_reply: true });
        let m = mail("From: support@demo.test\r\nReply-To: support@demo.test");
        assert!(matches!(screen(&m, &own, &[]), Verdict::Drop(_)));
        let long = format!(
            "From: support@demo.test\r\nReply-To: {}@example.test",
            "x".repeat(300)
        );
        assert_eq!(
            screen(&mail(&long), &own, &[]),
            Verdict::Ticket { auto_reply: false },
            "an unreadable Reply-To: a ticket nobody is answered for"
        );
    }

    #[test]
    fn rules_drop_or_silence() {
        let rules = [
            Rule {
                header: "x-spam-flag".into(),
                contains: "YES".into(),
                action: RuleAction::Drop,
            },
            Rule {
                header: "From".into(),
                contains: "@partner.test".into(),
                action: RuleAction::NoAutoReply,
            },
        ];
        let spam = mail("From: a@x.test\r\nX-Spam-Flag: yes");
        assert!(matches!(screen(&spam, &[], &rules), Verdict::Drop(_)));
        let partner = mail("From: b@partner.test");
        assert_eq!(
            screen(&partner, &[], &rules),
            Verdict::Ticket { auto_reply: false }
        );
    }

    #[test]
    fn rules_match_encoded_words_as_they_read() {
        let rules = [Rule {
            header: "Subject".into(),
            contains: "Rechnung für".into(),
            action: RuleAction::Drop,
        }];
        let encoded =
            mail("From: a@x.test\r\nSubject: =?UTF-8?Q?Ihre_Rechnung_f=C3=BCr_M=C3=A4rz?=");
        assert!(matches!(screen(&encoded, &[], &rules), Verdict::Drop(_)));
        let rules = [Rule {
            header: "From".into(),
            contains: "Müller".into(),
            action: RuleAction::NoAutoReply,
        }];
        let named = mail("From: =?ISO-8859-1?Q?M=FCller?= <m@x.test>");
        assert_eq!(
            screen(&named, &[], &rules),
            Verdict::Ticket { auto_reply: false }
        );
    }
}
