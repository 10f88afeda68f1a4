//! Answers for requests the parser refused. RFC 3261 §8.2 wants a malformed request answered
//! with 400 and an unknown method with 501 (one too large: 413 for its body, 513 for the whole,
//! §21.4.11 and §21.5.11) whenever a response can still be routed — which
//! needs only the Via, From, To, Call-ID and CSeq lines, copied as text. Anything less (or a
//! response, or an ACK, which is never answered) is dropped by the caller with a log line.
//!
//! This is deliberately textual: the message did not parse, so there are no typed headers to
//! work with. (It belongs next to the parser in `vacd-sip`; it lives here until that crate
//! grows the same helper.)

use std::fmt::Write as _;

use vacd_sip::message::ParseError;

/// Methods `rsip` parses; any other token in a request line is an unknown method (501).
const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

/// The bytes of a stateless 400 (or 501, 413, 513) answering the request in `bytes` refused
/// with `error`, or `None` if no response can be built.
pub fn response_to_unparsable(bytes: &[u8], error: &ParseError) -> Option<Vec<u8>> {
    let mut bytes = bytes;
    while let Some(rest) = bytes.strip_prefix(b"\r\n") {
        bytes = rest;
    }
    let head = match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &bytes[..end],
        None => bytes,
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    let mut parts = start.split(' ');
    let method = parts.next()?;
    if method.is_empty()
        || method.starts_with("SIP/")
        || method == "ACK"
        || !method.bytes().all(is_token_byte)
        || !start.ends_with(" SIP/2.0")
    {
        return None;
    }
    let mut vias = Vec::new();
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if value.is_empty() || value.chars().any(char::is_control) {
            continue;
        }
        let name = name.trim();
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(short)
        };
        if is("Via", "v") {
            vias.push(value);
        } else if is("From", "f") {
            from.get_or_insert(value);
        } else if is("To", "t") {
            to.get_or_insert(value);
        } else if is("Call-ID", "i") {
            call_id.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("CSeq") {
            cseq.get_or_insert(value);
        }
    }
    let (from, to, call_id, cseq) = (from?, to?, call_id?, cseq?);
    if vias.is_empty() {
        return None;
    }
    let status = match error {
        _ if !KNOWN_METHODS.contains(&method) => "501 Not Implemented",
        ParseError::BodyTooLarge { .. } => "413 Request Entity Too Large",
        ParseError::HeadersTooLarge { .. } => "513 Message Too Large",
        _ => "400 Bad Request",
    };
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status}\r\n");
    for via in vias {
        let _ = write!(out, "Via: {via}\r\n");
    }
    let _ = write!(out, "From: {from}\r\n");
    if to.to_ascii_lowercase().contains(";tag=") {
        let _ = write!(out, "To: {to}\r\n");
    } else {
        let _ = write!(out, "To: {to};tag={}\r\n", vacd_sip::message::new_tag());
    }
    let _ = write!(out, "Call-ID: {call_id}\r\nCSeq: {cseq}\r\n");
    if status.starts_with("501") {
        let _ = write!(out, "Allow: {}\r\n", super::endpoint::ALLOW);
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 ";

    #[test]
    fn unknown_method_gets_501_and_a_bad_request_400() {
        let text = format!("FOO sip:b@y SIP/2.0\r\n{HEAD}FOO\r\n\r\n");
        let reply =
            String::from_utf8(response_to_unparsable(text.as_bytes(), &bad()).expect("reply"))
                .expect("utf8");
        assert!(reply.starts_with("SIP/2.0 501 "), "{reply}");
        assert!(reply.contains("Call-ID: c1\r\n") && reply.contains("To: <sip:b@y>;tag="));

        // Missing Max-Forwards: parsed by nobody, answered with 400.
        let text =
            format!("OPTIONS sip:b@y SIP/2.0\r\n{HEAD}OPTIONS\r\nContent-Length: 9\r\n\r\nabc");
        let reply =
            String::from_utf8(response_to_unparsable(text.as_bytes(), &bad()).expect("reply"))
                .expect("utf8");
        assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");
    }

    fn bad() -> ParseError {
        ParseError::MissingHeader("Max-Forwards")
    }

    #[test]
    fn a_request_too_large_gets_413_or_513() {
        let text =
            format!("OPTIONS sip:b@y SIP/2.0\r\n{HEAD}OPTIONS\r\nContent-Length: 99999\r\n\r\n");
        let answer = |error| {
            String::from_utf8(response_to_unparsable(text.as_bytes(), &error).expect("reply"))
                .expect("utf8")
        };
        let body = answer(ParseError::BodyTooLarge {
            size: 99_999,
            limit: 10,
        });
        assert!(body.starts_with("SIP/2.0 413 "), "{body}");
        let whole = answer(ParseError::HeadersTooLarge { limit: 10 });
        assert!(whole.starts_with("SIP/2.0 513 "), "{whole}");
    }

    #[test]
    fn nothing_to_route_a_response_by_means_no_response() {
        assert!(response_to_unparsable(b"", &bad()).is_none());
        assert!(response_to_unparsable(b"\xff\xfe garbage", &bad()).is_none());
        assert!(response_to_unparsable(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", &bad()).is_none());
        let no_via = "OPTIONS sip:b@y SIP/2.0\r\nFrom: a;tag=1\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(response_to_unparsable(no_via.as_bytes(), &bad()).is_none());
        let ack = format!("ACK sip:b@y SIP/2.0\r\n{HEAD}ACK\r\n\r\n");
        assert!(response_to_unparsable(ack.as_bytes(), &bad()).is_none());
    }
}
