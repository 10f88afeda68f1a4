//! Inbound mail, parsed: bytes from a mail server in, an [`InboundMail`] out — sender, subject,
//! threading headers, text and HTML bodies (decoded from their transfer encodings and charsets by
//! `mail-parser`), attachments, and the headers loop protection looks at. No I/O.
//!
//! Parsing never fails on content: `mail-parser` reads what it can of broken MIME, an unknown
//! charset falls back to a lossy UTF-8 reading, and bytes that are no mail at all still become an
//! [`InboundMail`] whose body is the raw text with a [`Problem`] saying so, so that a ticket is
//! created for every message that exists. Attachments above the size limit, and those after
//! the first [`MAX_ATTACHMENTS`], are not kept; the problem list names them, and the store
//! writes that list as an internal note. Such a mail is not whole in its ticket
//! ([`Problem::loses_content`]): it stays on the mail server.
//!
//! Values the store indexes are bounded: a Message-ID longer than [`MAX_MESSAGE_ID`] (a whole
//! RFC 5322 line) is not kept, and a sender address longer than [`MAX_ADDRESS`] (RFC 5321's
//! limit) is no sender; either is a [`Problem`].

use mail_parser::{MessageParser, MimeHeaders};

/// Longest Message-ID kept, in bytes (see [`super::MAX_INDEXED`]).
pub const MAX_MESSAGE_ID: usize = super::MAX_INDEXED;

/// Parents (In-Reply-To and the nearest References) a mail is threaded by at most.
const MAX_PARENTS: usize = 20;

/// Longest sender address taken as one (RFC 5321: a path holds at most 256 characters, the
/// angle brackets included).
pub const MAX_ADDRESS: usize = 254;

/// Attachments kept of one mail at most: a mail of many thousand parts would otherwise hold
/// the store's writer for as many rows.
pub const MAX_ATTACHMENTS: usize = 100;

/// A mail address with its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lowercased address (`erika@example.test`).
    pub address: String,
}

impl Mailbox {
    /// The display name, or the address when there is none.
    pub fn display(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.address)
    }
}

/// One attachment kept with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Something about a message that a person should know, kept as an internal note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The bytes could not be read as a mail at all; the body is the raw text.
    Unparseable,
    /// The MIME structure gave no readable body; the raw body text is kept instead.
    BrokenStructure,
    /// There is no usable From or Reply-To address: the ticket cannot be answered by mail.
    NoSender,
    /// The From address is longer than [`MAX_ADDRESS`] and was not kept.
    SenderTooLong { length: usize },
    /// The message has a `Reply-To`, but no usable address in it (none, or too long).
    ReplyToUnusable,
    /// The Message-ID is longer than [`MAX_MESSAGE_ID`] and was not kept: answers to the
    /// message thread by the ticket's tag only.
    MessageIdTooLong { length: usize },
    /// The message is larger than the limit: only its header was read, and the message stays
    /// on the mail server.
    MessageTooLarge { size: Option<u64>, limit: usize },
    /// An attachment larger than the limit was dropped.
    AttachmentTooLarge {
        filename: String,
        size: usize,
        limit: usize,
    },
    /// The mail has `count` attachments: those after the first [`MAX_ATTACHMENTS`] were
    /// dropped.
    TooManyAttachments { count: usize },
}

impl Problem {
    /// Whether part of the mail is not in its ticket, which is then no reason to take the mail
    /// off the server.
    pub fn loses_content(&self) -> bool {
        matches!(
            self,
            Problem::MessageTooLarge { .. }
                | Problem::AttachmentTooLarge { .. }
                | Problem::TooManyAttachments { .. }
        )
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Unparseable => write!(f, "the message could not be parsed as MIME; its raw text is kept as the body"),
            Problem::BrokenStructure => write!(f, "the MIME structure could not be read; the raw body text is kept"),
            Problem::NoSender => write!(f, "the message names no sender address; it cannot be answered by mail"),
            Problem::SenderTooLong { length } => write!(
                f,
                "the sender address has {length} characters, more than the {MAX_ADDRESS} an address may have; it was not kept"
            ),
            Problem::ReplyToUnusable => write!(f, "the Reply-To names no usable address; it was ignored"),
            Problem::MessageIdTooLong { length } => write!(
                f,
                "the Message-ID has {length} characters, more than the {MAX_MESSAGE_ID} kept; answers thread by the ticket number only"
            ),
            Problem::MessageTooLarge { size: Some(size), limit } => write!(
                f,
                "the message has {size} bytes, more than the {limit} taken: only its header was read; the whole message stays on the mail server"
            ),
            Problem::MessageTooLarge { size: None, .. } => write!(
                f,
                "the mail server did not state the message's size: only its header was read; the whole message stays on the mail server"
            ),
            Problem::AttachmentTooLarge { filename, size, limit } => write!(
                f,
                "attachment `{filename}` ({size} bytes) exceeds the limit of {limit} bytes and was not kept; the whole message stays on the mail server"
            ),
            Problem::TooManyAttachments { count } => write!(
                f,
                "the message has {count} attachments: only the first {MAX_ATTACHMENTS} were kept; the whole message stays on the mail server"
            ),
        }
    }
}

/// A parsed inbound mail.
#[derive(Debug, Clone, Default)]
pub struct InboundMail {
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Message-IDs this one answers (In-Reply-To, then References), without angle brackets.
    pub parents: Vec<String>,
    pub from: Option<Mailbox>,
    /// `Reply-To`: where the sender wants answers (a web form sends from its own address and
    /// names the customer here).
    pub reply_to: Option<Mailbox>,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// `Auto-Submitted`, lowercased (`auto-replied`, `auto-generated`, …; `no` is kept too).
    pub auto_submitted: Option<String>,
    /// `Precedence`, lowercased (`bulk`, `list`, `junk`).
    pub precedence: Option<String>,
    /// Every header as `(name, raw value)`, and text and address headers also as `(name,
    /// decoded value)` — for configurable rules, which thus match an encoded subject
    /// (`=?UTF-8?Q?Rechnung_f=C3=BCr?=`) as it reads.
    pub headers: Vec<(String, String)>,
    pub problems: Vec<Problem>,
}

impl InboundMail {
    /// Who wrote, as the customer's identity: `From`, unless it is one of `own` (our own
    /// addresses, lowercase: a web form sending on a customer's behalf), then `Reply-To`.
    /// `Reply-To` alone names no one: anybody may put anybody's address there.
    pub fn identity(&self, own: &[String]) -> Option<&Mailbox> {
        let foreign = |m: &&Mailbox| !own.contains(&m.address);
        match self.from.as_ref().filter(foreign) {
            Some(from) => Some(from),
            None => self.reply_to.as_ref().filter(foreign),
        }
    }

    /// Where answers go (RFC 5322 §3.6.2): `Reply-To` if given and not one of `own` (our own
    /// addresses, lowercase), else `From`.
    pub fn answer_to(&self, own: &[String]) -> Option<&Mailbox> {
        self.reply_to
            .as_ref()
            .filter(|r| !own.contains(&r.address))
            .or(self.from.as_ref())
    }
}

/// Parses `raw`; attachments above `max_attachment_bytes` are dropped (and listed as problems).
pub fn parse(raw: &[u8], max_attachment_bytes: usize) -> InboundMail {
    let Some(message) = MessageParser::default().parse(raw) else {
        return InboundMail {
            subject: "(unreadable message)".into(),
            text: String::from_utf8_lossy(raw).into_owned(),
            problems: vec![Problem::Unparseable, Problem::NoSender],
            ..InboundMail::default()
        };
    };
    let mut mail = InboundMail {
        message_id: message.message_id().map(strip_brackets),
        subject: message.subject().unwrap_or_default().trim().to_owned(),
        // Every inline part, in order: mail programs put text, an inline picture, then more
        // text one after the other in a multipart/mixed.
        text: (0..message.text_body_count())
            .filter_map(|i| message.body_text(i))
            .collect::<Vec<_>>()
            .join("\n"),
        // Only real HTML parts: mail-parser would render a plain text as HTML here.
        html: Some(
            message
                .html_bodies()
                .filter(|p| p.is_text_html())
                .filter_map(|p| p.text_contents())
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .filter(|html| !html.is_empty()),
        auto_submitted: header_lower(&message, "Auto-Submitted"),
        precedence: header_lower(&message, "Precedence"),
        headers: message
            .headers_raw()
            .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
            .chain(
                message
                    .headers()
                    .iter()
                    .filter_map(|h| Some((h.name().to_owned(), decoded(&h.value)?))),
            )
            .collect(),
        ..InboundMail::default()
    };
    // A message without a text part but with an HTML one: mail-parser renders the HTML as
    // text for body_text.
    if let Some(length) = mail.message_id.as_ref().map(String::len) {
        if length > MAX_MESSAGE_ID {
            mail.message_id = None;
            mail.problems.push(Problem::MessageIdTooLong { length });
        }
    }
    // In-Reply-To, then the nearest of References (the newest are last): each looked up in
    // the store, so a mail naming millions cannot stall the account.
    let ids = |value: &mail_parser::HeaderValue<'_>| -> Vec<String> {
        if let Some(ids) = value.as_text_list() {
            ids.iter().map(|id| strip_brackets(id)).collect()
        } else {
            value.as_text().map(strip_brackets).into_iter().collect()
        }
    };
    let references = ids(message.references());
    let nearest = references.len().saturating_sub(MAX_PARENTS);
    for id in ids(message.in_reply_to())
        .into_iter()
        .chain(references.into_iter().skip(nearest).rev())
    {
        // Too long to be one of ours or any stored one.
        if id.len() <= MAX_MESSAGE_ID && !mail.parents.contains(&id) {
            mail.parents.push(id);
        }
        if mail.parents.len() == MAX_PARENTS {
            break;
        }
    }
    if mail.text.trim().is_empty() && mail.html.is_none() {
        let raw_body = raw_body(raw);
        if !raw_body.trim().is_empty() {
            mail.text = raw_body.trim().to_owned();
            mail.problems.push(Problem::BrokenStructure);
        }
    }
    let first = |list: Option<&mail_parser::Address<'_>>| {
        let a = list?.first()?;
        let address = a.address()?.trim().to_lowercase();
        address.contains('@').then(|| Mailbox {
            name: a
                .name()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty()),
            address,
        })
    };
    mail.from = first(message.from().or_else(|| message.sender()));
    if let Some(length) = mail.from.as_ref().map(|f| f.address.len()) {
        if length > MAX_ADDRESS {
            mail.problems.push(Problem::SenderTooLong { length });
            mail.from = None;
        }
    }
    mail.reply_to = first(message.reply_to()).filter(|r| r.address.len() <= MAX_ADDRESS);
    if message.reply_to().is_some() && mail.reply_to.is_none() {
        mail.problems.push(Problem::ReplyToUnusable);
    }
    if mail.answer_to(&[]).is_none() {
        mail.problems.push(Problem::NoSender);
    }
    mail.to = message
        .to()
        .into_iter()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address().map(|s| s.trim().to_lowercase()))
        .collect();
    let count = message.attachments().count();
    if count > MAX_ATTACHMENTS {
        mail.problems.push(Problem::TooManyAttachments { count });
    }
    for (n, part) in message.attachments().take(MAX_ATTACHMENTS).enumerate() {
        let filename = part
            .attachment_name()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("attachment-{}", n + 1));
        let data = part.contents();
        if data.len() > max_attachment_bytes {
            mail.problems.push(Problem::AttachmentTooLarge {
                filename,
                size: data.len(),
                limit: max_attachment_bytes,
            });
            continue;
        }
        let content_type = part
            .content_type()
            .map(|c| match c.subtype() {
                Some(sub) => format!("{}/{}", c.ctype(), sub),
                None => c.ctype().to_owned(),
            })
            .unwrap_or_else(|| "application/octet-stream".into());
        mail.attachments.push(Attachment {
            filename,
            content_type: content_type.to_lowercase(),
            data: data.to_vec(),
        });
    }
    mail
}

/// The text after the header block of `raw`, read leniently.
fn raw_body(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    let start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[start..])
}

/// A text or address header's value as it reads (encoded words decoded).
fn decoded(value: &mail_parser::HeaderValue<'_>) -> Option<String> {
    use mail_parser::HeaderValue;
    match value {
        HeaderValue::Text(text) => Some(text.to_string()),
        HeaderValue::TextList(list) => Some(list.join(", ")),
        HeaderValue::Address(address) => Some(
            address
                .iter()
                .map(|a| match (a.name(), a.address()) {
                    (Some(name), Some(address)) => format!("{name} <{address}>"),
                    (name, address) => name.or(address).unwrap_or_default().to_owned(),
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    }
}

fn header_lower(message: &mail_parser::Message<'_>, name: &str) -> Option<String> {
    message
        .header_raw(name)
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
}

fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_mail() {
        let raw = b"From: Erika Mustermann <Erika@Example.TEST>\r\nTo: support@demo.vacd.test\r\n\
Subject: Invoice\r\nMessage-ID: <abc@example.test>\r\nIn-Reply-To: <t1@vacd>\r\n\
References: <t0@vacd> <t1@vacd>\r\n\r\nHello\r\n";
        let mail = parse(raw, 1000);
        assert_eq!(mail.message_id.as_deref(), Some("abc@example.test"));
        assert_eq!(
            mail.from,
            Some(Mailbox {
                name: Some("Erika Mustermann".into()),
                address: "erika@example.test".into()
            })
        );
        assert_eq!(mail.to, ["support@demo.vacd.test"]);
        assert_eq!(mail.subject, "Invoice");
        assert_eq!(mail.text.trim(), "Hello");
        assert_eq!(mail.html, None, "no HTML made up for a plain text");
        assert_eq!(
            mail.parents,
            ["t1@vacd", "t0@vacd"],
            "In-Reply-To, then the nearest References, each once"
        );
        assert!(mail.problems.is_empty());
    }

    #[test]
    fn a_mail_is_threaded_by_twenty_parents_at_most() {
        let references: Vec<String> = (0..5000).map(|n| format!("<r{n}@x>")).collect();
        let raw = format!(
            "From: a@example.test\r\nSubject: many\r\nIn-Reply-To: <p@x>\r\n\
References: {}\r\n\r\nHello\r\n",
            references.join(" ")
        );
        let mail = parse(raw.as_bytes(), 1000);
        assert_eq!(mail.parents.len(), MAX_PARENTS);
        assert_eq!(mail.parents[..3], ["p@x", "r4999@x", "r4998@x"]);
    }

    #[test]
    fn overlong_message_ids_and_addresses_are_not_kept() {
        let long = "x".repeat(MAX_MESSAGE_ID);
        let raw = format!(
            "From: {local}@example.test\r\nSubject: long\r\nMessage-ID: <{long}@x>\r\n\
In-Reply-To: <{long}@y>\r\nReferences: <t1@vacd>\r\n\r\nHello\r\n",
            local = "a".repeat(MAX_ADDRESS)
        );
        let mail = parse(raw.as_bytes(), 1000);
        assert_eq!(mail.message_id, None);
        assert_eq!(mail.from, None);
        assert_eq!(mail.parents, ["t1@vacd"], "the overlong parent is dropped");
        assert_eq!(
            mail.problems,
            [
                Problem::MessageIdTooLong {
                    length: MAX_MESSAGE_ID + 2
                },
                Problem::SenderTooLong {
                    length: MAX_ADDRESS + 13
                },
                Problem::NoSender
            ]
        );
        // At the limits both are kept.
        let raw = format!(
            "From: {local}@example.test\r\nMessage-ID: <{id}@x>\r\n\r\nHello\r\n",
            local = "a".repeat(MAX_ADDRESS - 13),
            id = "x".repeat(MAX_MESSAGE_ID - 2)
        );
        let mail = parse(raw.as_bytes(), 1000);
        assert_eq!(mail.message_id.map(|id| id.len()), Some(MAX_MESSAGE_ID));
        assert_eq!(mail.from.map(|f| f.address.len()), Some(MAX_ADDRESS));
        assert!(mail.problems.is_empty(), "{:?}", mail.problems);
    }

    #[test]
    fn every_inline_text_part_is_kept() {
        let raw = "From: a@b.test\r\nSubject: refund\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nPlease refund order 1.\r\n--b1\r\n\
Content-Type: image/png\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\n\
iVBORw0KGgo=\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nMy IBAN is DE00 1234.\r\n--b1--\r\n";
        let mail = parse(raw.as_bytes(), 1000);
        assert!(
            mail.text.contains("Please refund order 1."),
            "{}",
            mail.text
        );
        assert!(mail.text.contains("My IBAN is DE00 1234."), "{}", mail.text);
        assert_eq!(mail.html, None);
    }

    #[test]
    fn answers_go_to_reply_to() {
        let raw =
            b"From: Website <noreply@shop.test>\r\nReply-To: Erika <Erika@Example.TEST>\r\n\r\nHi";
        let mail = parse(raw, 1000);
        let erika = Mailbox {
            name: Some("Erika".into()),
            address: "erika@example.test".into(),
        };
        assert_eq!(mail.answer_to(&[]), Some(&erika));
        assert_eq!(
            mail.identity(&[]).map(|m| m.address.as_str()),
            Some("noreply@shop.test"),
            "From says who wrote"
        );
        assert_eq!(
            mail.identity(&["noreply@shop.test".into()]),
            Some(&erika),
            "unless it is our own address"
        );
        assert_eq!(
            mail.answer_to(&["erika@example.test".into()])
                .map(|m| m.address.as_str()),
            Some("noreply@shop.test"),
            "never to our own address"
        );
        let only = parse(b"Reply-To: erika@example.test\r\n\r\nHi", 1000);
        assert!(only.problems.is_empty(), "answerable: {:?}", only.problems);
        assert_eq!(parse(b"From: a@b.test\r\n\r\nHi", 1000).reply_to, None);
    }

    #[test]
    fn charsets_encodings_html_and_attachments() {
        let raw = "From: a@b.test\r\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n--b2\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Gr=FC=DFe aus K=F6ln\r\n--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr&uuml;&szlig;e</p>\r\n--b2--\r\n\
--b1\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b1\r\n\
Content-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n--b1--\r\n";
        let mail = parse(raw.as_bytes(), 10);
        assert_eq!(mail.subject, "Grüße");
        assert_eq!(mail.text.trim(), "Grüße aus Köln");
        assert!(mail.html.as_deref().is_some_and(|h| h.contains("<p>")));
        assert_eq!(mail.attachments.len(), 1);
        assert_eq!(mail.attachments[0].filename, "r.pdf");
        assert_eq!(mail.attachments[0].content_type, "application/pdf");
        assert_eq!(mail.attachments[0].data, b"%PDF-1.4");
        assert!(matches!(
            &mail.problems[..],
            [Problem::AttachmentTooLarge { filename, size: 27, limit: 10 }] if filename == "big.bin"
        ));
    }

    #[test]
    fn attachments_past_the_hundredth_are_not_kept() {
        let mut raw = String::from(
            "From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nmany files\r\n",
        );
        for n in 0..MAX_ATTACHMENTS + 5 {
            raw.push_str(&format!(
                "--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"{n}.csv\"\r\n\r\n{n}\r\n"
            ));
        }
        raw.push_str("--b--\r\n");
        let mail = parse(raw.as_bytes(), 1000);
        assert_eq!(mail.attachments.len(), MAX_ATTACHMENTS);
        assert_eq!(mail.attachments[MAX_ATTACHMENTS - 1].filename, "99.csv");
        assert_eq!(
            mail.problems,
            [Problem::TooManyAttachments {
                count: MAX_ATTACHMENTS + 5
            }]
        );
        assert!(mail.problems.iter().all(Problem::loses_content));
    }

    #[test]
    fn an_unknown_charset_and_no_sender() {
        let raw = b"Subject: x\r\nContent-Type: text/plain; charset=x-klingon\r\n\r\nqapla\xff\r\n";
        let mail = parse(raw, 1000);
        assert!(mail.text.starts_with("qapla"));
        assert_eq!(mail.from, None);
        assert_eq!(mail.problems, [Problem::NoSender]);
    }

    #[test]
    fn garbage_never_panics_and_keeps_its_bytes() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n--",
            b"\xff\xfe\x00",
        ] {
            let mail = parse(raw, 10);
            assert!(mail.problems.contains(&Problem::NoSender));
        }
        assert!(parse(b"", 10).problems.contains(&Problem::Unparseable));
    }

    #[test]
    fn an_unterminated_multipart_keeps_its_text() {
        let raw = b"From: a@x.test\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nbroken part";
        let mail = parse(raw, 10);
        assert!(mail.text.contains("broken part"), "{}", mail.text);
    }

    #[test]
    fn loop_headers_are_read() {
        let raw =
            b"From: daemon@x.test\r\nAuto-Submitted: Auto-Replied\r\nPrecedence: BULK\r\n\r\nbye";
        let mail = parse(raw, 10);
        assert_eq!(mail.auto_submitted.as_deref(), Some("auto-replied"));
        assert_eq!(mail.precedence.as_deref(), Some("bulk"));
    }
}
