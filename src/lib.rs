//! vacd, the server: configuration, the store, the admin API and start-up/shutdown. Routing lives
//! in `vacd-actors`, SIP in `vacd-sip`; this crate wires them to the network and the database.
//!
//! Start reading at [`server::start`]; the data model the API administers is [`catalog`].

pub mod api;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod routing;
pub mod server;
pub mod store;
