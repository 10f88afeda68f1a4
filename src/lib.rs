//! vacd, the server: configuration, the store, the admin API, the SIP endpoint and
//! start-up/shutdown. Routing lives in `vacd-actors`, the SIP protocol in `vacd-sip`; this crate
//! wires them to the network and the database.
//!
//! Start reading at [`server::start`]; the data model the API administers is [`catalog`].

pub mod api;
pub mod catalog;
pub mod channels;
pub mod chat;
pub mod classify;
pub mod config;
pub mod demo;
pub mod language;
pub mod metrics;
pub mod rate_limit;
pub mod report_metrics;
pub mod reports;
pub mod routing;
pub mod serve;
pub mod server;
pub mod sip;
pub mod store;
pub mod stream;
