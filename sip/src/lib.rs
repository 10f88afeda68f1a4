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

pub mod dialog;
pub mod digest;
mod error;
pub mod framer;
pub mod message;
mod peer;
pub mod registrar;
pub mod transaction;

pub use error::Error;
pub use peer::{Peer, Transport};

/// Re-export of the SIP message types this crate is built on, so users need not depend on
/// `rsip` directly to name them.
pub use rsip;
