//! Who a message came from or goes to: a [`Peer`] is a transport kind plus a socket address.
//! The sans-IO layers never open sockets; they only name the peer, and the transport tasks map
//! it to a UDP destination or an open TCP/TLS/WebSocket connection.

use std::fmt;
use std::net::SocketAddr;

/// The transport protocol a message travels over (the token in a Via header's sent-protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Unreliable datagrams: the transaction layer retransmits.
    Udp,
    /// A TCP connection.
    Tcp,
    /// A TLS connection.
    Tls,
    /// A WebSocket connection (RFC 7118).
    Ws,
    /// A secure WebSocket connection (RFC 7118).
    Wss,
}

impl Transport {
    /// Whether the transport delivers reliably, in which case RFC 3261 turns off
    /// retransmissions and sets the "linger" timers D, I, J and K to zero.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// Whether the transport is a byte stream that needs Content-Length framing.
    pub fn is_stream(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }

    /// The token used in a Via header (`SIP/2.0/UDP`).
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Parses a Via transport token, case-insensitively.
    pub fn from_via_token(token: &str) -> Option<Self> {
        [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Ws,
            Transport::Wss,
        ]
        .into_iter()
        .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_token())
    }
}

/// The far end of a message: the transport it uses and its socket address (the source address
/// of a received message, which is where responses go — symmetric response routing, RFC 3581).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport protocol.
    pub transport: Transport,
    /// The remote socket address.
    pub addr: SocketAddr,
}

impl Peer {
    /// A peer reached over `transport` at `addr`.
    pub fn new(transport: Transport, addr: SocketAddr) -> Self {
        Self { transport, addr }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}
