//! A provider's SIP trunk for tests: vacd takes calls from `127.0.0.2` and, given a carrier,
//! sends calls to outside numbers (transfers, click-to-dial) to it. A caller on the trunk
//! dials the demo service number (queue *Sales DE*, served by alice and bruno); the carrier is
//! a [`Phone`] on the trunk's address that answers what vacd sends out.
//!
//! `tests/calls.rs` builds its `Floor` on it, as do the browser and rules tests.

use std::net::SocketAddr;

use vacd::config::{Config, DigestAlgorithm, Network, TrunkConfig};

use super::phone::{Leg, Phone};

pub const TRUNK_IP: &str = "127.0.0.2";
/// The demo tenant's service number.
pub const NUMBER: &str = "+4930123456";
/// The demo agents' SIP password.
pub const SIP_PASSWORD: &str = vacd::demo::SIP_PASSWORD;

/// Configures the trunk (outside numbers go to `outbound`, if given) and the MD5 digest the
/// test phones answer.
pub fn configure(config: &mut Config, outbound: Option<SocketAddr>) {
    config.sip.trunks = vec![TrunkConfig {
        name: "carrier".into(),
        sources: vec![Network::try_from(TRUNK_IP.to_owned()).expect("network")],
        username: None,
        password: None,
        outbound,
        outbound_username: None,
        outbound_password: None,
    }];
    config.sip.digest_algorithms = vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256];
}

/// The carrier's phone, made before the server so that its address can go into the
/// configuration; [`Phone::retarget`] it to the server's SIP address once that runs.
pub async fn carrier() -> Phone {
    Phone::new(TRUNK_IP, "127.0.0.1:9".parse().expect("address")).await
}

/// A caller on the trunk dials the service number at `server`; its phone and leg once vacd
/// has answered (the call is queued, and offered to a ready agent).
pub async fn call_in(server: SocketAddr) -> (Phone, Leg) {
    let mut caller = Phone::new(TRUNK_IP, server).await;
    let leg = caller.call(NUMBER).await.expect("vacd answers the call");
    (caller, leg)
}
