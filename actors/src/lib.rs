//! `vacd-actors` owns routing: which agent gets which interaction, and when.
//!
//! The crate is built around a sans-IO routing engine (plain state machine, no sockets, no
//! database, no actors) that the ractor supervision tree drives. Nothing here knows SQL or
//! network protocols: the server in `src/` feeds events in and persists the domain events
//! that come out.
