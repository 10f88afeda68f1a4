//! `vacd-sip` owns SIP: messages (parsed and written with `rsip`), the transaction layer of
//! RFC 3261 §17, dialogs (§12), the registrar (§10) and digest authentication (RFC 7616 /
//! RFC 8760). It knows nothing about queues or agents, and — in this core — nothing about
//! sockets or async runtimes: every state machine here takes its input and the current time
//! explicitly and hands back what to send, so the UDP/TCP tasks in `src/` and the call actors in
//! `vacd-actors` only move bytes and events around it.
//!
//! Where to start reading:
//! - [`message`]: bytes → checked [`rsip::SipMessage`] and back ([`message::parse_datagram`],
//!   [`message::encode`]), plus the builders every transaction user needs
//!   ([`message::response_to`]).
//! - [`framer::StreamFramer`]: cuts a TCP byte stream into messages.
//! - [`transaction::TransactionLayer`]: the §17 timers and retransmissions; feed it messages
//!   and timeouts, drain [`transaction::Output`]s.
//! - [`dialog::Dialog`], [`registrar::Registrar`], [`digest::DigestAuthenticator`]: the
//!   transaction users' building blocks.
//!
//! The media half, equally sans-IO, is what a call actor needs around the signalling:
//! - [`sdp`]: SDP bodies and RFC 3264 offer/answer for one G.711 audio stream
//!   ([`sdp::answer`], [`sdp::offer`], [`sdp::accept_answer`]).
//! - [`rtp`]: RTP headers, the symmetric relay between two legs ([`rtp::Relay`]) and the
//!   [`rtp::Packetizer`] for media vacd plays itself.
//! - [`g711`]: µ-law / A-law ([`g711::Law`]); [`media`]: WAV files and the generated tone as
//!   20 ms frames, and the [`media::Playlist`] of greeting, messages and music on hold;
//!   [`mix`]: the sums behind silent monitoring, whisper and barge.

pub mod dialog;
pub mod digest;
mod error;
pub mod framer;
pub mod g711;
pub mod media;
pub mod message;
pub mod mix;
mod peer;
pub mod registrar;
pub mod rtp;
pub mod sdp;
pub mod transaction;

pub use error::Error;
pub use peer::{Peer, Transport};

/// Re-export of the SIP message types this crate is built on, so users need not depend on
/// `rsip` directly to name them.
pub use rsip;
