//! SDP bodies from the network: parsing never panics, and whatever parses can be written,
//! parsed again and answered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vacd_sip::sdp::{answer, LocalMedia, LocalSdp, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = SessionDescription::parse(data) else {
        return;
    };
    let written = offer.to_bytes();
    assert!(
        SessionDescription::parse(&written).is_ok(),
        "written SDP must parse again"
    );
    let local = LocalMedia::new(([192, 0, 2, 50], 20000).into());
    let mut session = LocalSdp::with_id([192, 0, 2, 50].into(), 1);
    if let Ok((ours, _)) = answer(&offer, &local, &mut session) {
        assert!(SessionDescription::parse(&ours.to_bytes()).is_ok());
    }
});
