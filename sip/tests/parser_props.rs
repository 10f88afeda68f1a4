//! Property tests for the wire layer: the datagram parser and the stream framer never panic,
//! whatever bytes arrive, and valid messages survive parse → encode → parse unchanged.

use proptest::prelude::*;
use vacd_sip::framer::{Frame, StreamFramer};
use vacd_sip::message::{encode, parse_datagram, Limits};
use vacd_sip::rsip::SipMessage;

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

/// A valid request or response built from generated parts.
fn message_bytes() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("INVITE"),
        Just("BYE"),
        Just("OPTIONS"),
        Just("REGISTER"),
        Just("INFO"),
        Just("MESSAGE"),
    ];
    let token = "[a-zA-Z0-9]{1,12}";
    let host = "[a-z]{1,10}\\.example\\.(com|org)";
    let body = proptest::collection::vec(any::<u8>(), 0..64);
    let status = prop_oneof![
        Just(100u16),
        Just(180),
        Just(200),
        Just(404),
        Just(486),
        Just(603)
    ];
    (
        method,
        token,
        host,
        token,
        token,
        1u32..100_000,
        body,
        prop::option::of(status),
        prop::bool::ANY,
    )
        .prop_map(
            |(method, user, host, branch, tag, cseq, body, status, compact)| {
                let start = match status {
                    Some(code) => format!("SIP/2.0 {code} Whatever\r\n"),
                    None => format!("{method} sip:{user}@{host} SIP/2.0\r\n"),
                };
                let (v, f, t, i, l) = if compact {
                    ("v", "f", "t", "i", "l")
                } else {
                    ("Via", "From", "To", "Call-ID", "Content-Length")
                };
                let mut text = start;
                text.push_str(&format!(
                    "{v}: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
{f}: <sip:{user}@{host}>;tag={tag}\r\n\
{t}: \"Some One\" <sip:x@{host}>\r\n\
{i}: {branch}@{host}\r\n\
CSeq: {cseq} {method}\r\n\
{l}: {}\r\n\r\n",
                    body.len()
                ));
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(&body);
                bytes
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn datagram_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_datagram(&bytes, &Limits::default());
    }

    #[test]
    fn mutated_messages_never_panic(
        edits in proptest::collection::vec((0usize..400, any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = INVITE.as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let pos = pos % (bytes.len() + 1);
            match op {
                0 if pos < bytes.len() => bytes[pos] = byte,
                1 => bytes.insert(pos, byte),
                _ => bytes.truncate(pos),
            }
        }
        let _ = parse_datagram(&bytes, &Limits::default());
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(&bytes);
        while let Ok(Some(_)) = framer.next_frame() {}
    }

    #[test]
    fn framer_never_panics_on_arbitrary_chunks(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..16)
    ) {
        let mut framer = StreamFramer::new(Limits { max_header_bytes: 1024, max_body_bytes: 1024 });
        for chunk in chunks {
            framer.push(&chunk);
            while let Ok(Some(_)) = framer.next_frame() {}
        }
    }

    #[test]
    fn valid_messages_round_trip(bytes in message_bytes()) {
        let first = parse_datagram(&bytes, &Limits::default());
        prop_assert!(first.is_ok(), "{:?}", first);
        let first = first.expect("checked");
        let encoded = encode(&first);
        let second = parse_datagram(&encoded, &Limits::default()).expect("encoded message parses");
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(encode(&second), encoded);
        // rsip's own Display gives the same message when the body is text.
        if std::str::from_utf8(first.body()).is_ok() {
            let displayed = parse_datagram(first.to_string().as_bytes(), &Limits::default())
                .expect("Display output parses");
            prop_assert_eq!(&first, &displayed);
        }
    }

    #[test]
    fn framer_reassembles_any_split(bytes in message_bytes(), split in 0usize..600) {
        let expected = parse_datagram(&bytes, &Limits::default()).expect("valid");
        let stream = [encode(&expected), encode(&expected)].concat();
        let split = split % (stream.len() + 1);
        let mut framer = StreamFramer::new(Limits::default());
        let mut frames = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            framer.push(part);
            while let Ok(Some(frame)) = framer.next_frame() {
                frames.push(frame);
            }
        }
        prop_assert_eq!(frames, vec![Frame::Message(expected.clone()), Frame::Message(expected)]);
    }
}

#[test]
fn encoded_message_is_a_sip_message() {
    let parsed = parse_datagram(INVITE.as_bytes(), &Limits::default()).expect("valid");
    assert!(matches!(parsed, SipMessage::Request(_)));
}
