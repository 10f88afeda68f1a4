//! Which ticket a written message belongs to, and how replies carry that back: the ticket tag in
//! subjects (`[#T-1042]`), reply subjects, and the `Message-ID` / `In-Reply-To` / `References`
//! headers of outgoing mail. No I/O: the store looks up the ids this module reads.
//!
//! A message joins an existing ticket when its subject carries a tag of that ticket, or when
//! one of its parents (In-Reply-To, References) is a message already in a ticket; otherwise it
//! opens a new ticket.

/// The tag that marks a ticket in subjects: `[#T-42]`.
pub fn tag(ticket: i64) -> String {
    format!("[#T-{ticket}]")
}

/// The ticket named by the last well-formed tag in `subject`: vacd appends its own at the end,
/// so a subject that quotes another ticket's tag still threads into the ticket it came from.
pub fn find_tag(subject: &str) -> Option<i64> {
    let mut rest = subject;
    let mut found = None;
    while let Some(at) = rest.find("[#T-") {
        let after = &rest[at + 4..];
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && after[digits.len()..].starts_with(']') {
            if let Ok(id) = digits.parse::<i64>() {
                found = Some(id);
            }
        }
        rest = after;
    }
    found
}

/// The subject of a reply in ticket `ticket`: `Re: ` once, the original subject without its
/// reply prefixes, and the ticket's tag (once).
pub fn reply_subject(subject: &str, ticket: i64) -> String {
    let mut base = subject.trim();
    loop {
        let lower = base.to_ascii_lowercase();
        let prefix = ["re:", "aw:", "sv:", "antw:", "fwd:", "wg:", "tr:"]
            .into_iter()
            .find(|p| lower.starts_with(p));
        match prefix {
            Some(p) => base = base[p.len()..].trim_start(),
            None => break,
        }
    }
    let tag = tag(ticket);
    let base = if base.is_empty() {
        "(no subject)"
    } else {
        base
    };
    if base.contains(&tag) {
        format!("Re: {base}")
    } else {
        format!("Re: {base} {tag}")
    }
}

/// A fresh `Message-ID` (without brackets) for message `message` of ticket `ticket`, sent from
/// `from` (its domain is used). `unique` makes ids of equal messages differ, and unguessable
/// (a timestamp and random bits).
pub fn message_id(from: &str, ticket: i64, message: i64, unique: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map_or("vacd.invalid", |(_, d)| d)
        .trim_end_matches('>');
    format!("t{ticket}.m{message}.{unique}@{domain}")
}

/// The threading headers of a reply to `parent` (its Message-ID) whose own ancestors are
/// `parent_references`: In-Reply-To is the parent, References the ancestors then the parent,
/// each once, at most the last 20 (RFC 5322 §3.6.4 allows trimming from the front).
pub fn reply_references(parent: &str, parent_references: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    for id in parent_references.iter().map(String::as_str).chain([parent]) {
        if !id.is_empty() && !chain.iter().any(|c| c == id) {
            chain.push(id.to_owned());
        }
    }
    let skip = chain.len().saturating_sub(20);
    chain.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_and_junk_is_ignored() {
        assert_eq!(tag(1042), "[#T-1042]");
        assert_eq!(find_tag("Re: Invoice [#T-1042]"), Some(1042));
        assert_eq!(find_tag("[#T-] [#T-x] [#T-7"), None);
        assert_eq!(find_tag("[#T-] then [#T-9]"), Some(9));
        assert_eq!(
            find_tag("Re: About [#T-5] [#T-9]"),
            Some(9),
            "ours is appended last"
        );
        assert_eq!(find_tag("[#T-99999999999999999999999]"), None);
        assert_eq!(find_tag("no tag"), None);
    }

    #[test]
    fn reply_subjects_have_one_prefix_and_one_tag() {
        assert_eq!(reply_subject("Invoice", 5), "Re: Invoice [#T-5]");
        assert_eq!(
            reply_subject("AW: Re: Invoice [#T-5]", 5),
            "Re: Invoice [#T-5]"
        );
        assert_eq!(reply_subject("  ", 5), "Re: (no subject) [#T-5]");
    }

    #[test]
    fn references_chain_without_repeats() {
        let refs = reply_references("c", &["a".into(), "b".into(), "a".into()]);
        assert_eq!(refs, ["a", "b", "c"]);
        let long: Vec<String> = (0..30).map(|n| n.to_string()).collect();
        let refs = reply_references("p", &long);
        assert_eq!(refs.len(), 20);
        assert_eq!(refs.last().map(String::as_str), Some("p"));
    }

    #[test]
    fn message_ids_use_the_sender_domain() {
        assert_eq!(
            message_id("support@demo.test", 4, 9, "1.ab"),
            "t4.m9.1.ab@demo.test"
        );
        assert_eq!(message_id("nobody", 4, 9, "1"), "t4.m9.1@vacd.invalid");
    }
}
