//! RTP datagrams from the network: parsing and the relay never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vacd_sip::rtp::{LegId, Relay, RtpPacket};

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = RtpPacket::parse(data) {
        assert!(packet.payload.len() <= data.len());
        let _ = packet.csrcs().count();
    }
    let mut relay = Relay::new(None, Some(([192, 0, 2, 1], 4000).into()));
    let _ = relay.handle_packet(LegId::A, ([192, 0, 2, 2], 4000).into(), data);
    let _ = relay.handle_packet(LegId::A, ([192, 0, 2, 2], 4000).into(), data);
});
