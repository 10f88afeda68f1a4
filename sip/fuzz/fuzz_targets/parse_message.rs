//! SIP input path: the same bytes as one UDP datagram, and as a TCP stream delivered in two
//! chunks split at a point the input chooses. Neither may panic; a datagram that parses must
//! survive encode → parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vacd_sip::framer::StreamFramer;
use vacd_sip::message::{encode, parse_datagram, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(message) = parse_datagram(data, &limits) {
        let bytes = encode(&message);
        assert!(
            parse_datagram(&bytes, &limits).is_ok(),
            "an encoded message must parse again"
        );
    }

    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut framer = StreamFramer::new(limits);
    framer.push(&data[..split]);
    drain(&mut framer);
    framer.push(&data[split..]);
    drain(&mut framer);
});

fn drain(framer: &mut StreamFramer) {
    // Every frame consumes bytes, so the loop ends; the bound is a guard, not a limit.
    for _ in 0..10_000 {
        match framer.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(err) if err.breaks_framing() => return,
            Err(_) => {}
        }
    }
}
