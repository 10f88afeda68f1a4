//! `vacd-sip` owns SIP: messages (parsed and written with `rsip`), transports, the transaction
//! layer of RFC 3261 §17, dialogs, the registrar and media. It knows nothing about queues or
//! agents; the call actors in `vacd-actors` and the server in `src/` drive it.
