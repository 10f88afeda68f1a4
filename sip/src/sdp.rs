//! SDP (RFC 4566) and the offer/answer model (RFC 3264), as far as an audio B2BUA needs them.
//!
//! Two halves. The first is the session description itself: [`SessionDescription::parse`]
//! turns a message body into typed lines — origin, connection, media descriptions with their
//! payload formats, `rtpmap`, `fmtp`, direction and `ptime` attributes — and
//! [`SessionDescription::to_bytes`] writes one back. Lines vacd has no use for (`i=`, `u=`,
//! `b=`, `k=`, unknown attributes …) are accepted; unknown attributes are kept and written
//! back, the other optional lines are dropped. The parser is lenient where real phones are
//! sloppy (bare LF line ends, trailing blank lines, attribute order) and strict where a wrong
//! guess would send media to the wrong place (origin, connection, media lines).
//!
//! The second half is negotiation, always for one audio stream relayed as G.711:
//! [`answer`] builds our answer to a remote offer, [`offer`] builds our own offer, and
//! [`accept_answer`] reads the answer to an offer we made. Each returns a [`Negotiated`]: the
//! codec and payload type to send, telephone-event, the remote RTP address and whether the far
//! end put the call on hold. [`LocalSdp`] keeps the `o=` line of our side stable and bumps its
//! version only when our description changes (RFC 3264 §8).
//!
//! Why no crate: `webrtc-sdp` is built for WebRTC's SDP (ICE, DTLS, bundles, simulcast) and is
//! stricter than the SIP trunks and desk phones vacd meets; `sdp-types` keeps attributes as
//! strings, so the typed rtpmap/fmtp/direction layer would be ours anyway. What a B2BUA reads of
//! SDP is a dozen line types; a parser of that size is easier to make lenient in the right
//! places and to fuzz than either dependency.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::g711::Law;

/// Largest SDP body accepted, in bytes; SIP's own limit is larger, but no audio SDP comes near.
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// Most media descriptions accepted in one SDP.
pub const MAX_MEDIA: usize = 16;
/// Most payload formats accepted on one media line.
pub const MAX_FORMATS: usize = 64;

/// Why an SDP body could not be read, or an offer or answer not negotiated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is larger than [`MAX_SDP_BYTES`].
    #[error("SDP of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The body is not UTF-8 text.
    #[error("SDP is not valid UTF-8")]
    NotText,
    /// A line is not `x=value` with a lowercase letter `x`.
    #[error("line {line}: not a `type=value` line")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
    },
    /// The first line is not `v=0`.
    #[error("unsupported SDP version line (expected v=0)")]
    Version,
    /// A mandatory line is missing.
    #[error("mandatory `{0}=` line is missing")]
    MissingLine(char),
    /// A line of the given type could not be read.
    #[error("line {line}: invalid `{kind}=` line")]
    InvalidLine {
        /// 1-based line number.
        line: usize,
        /// The line type.
        kind: char,
    },
    /// An attribute with a defined syntax (rtpmap, fmtp, ptime) could not be read.
    #[error("line {line}: invalid a={name} attribute")]
    InvalidAttribute {
        /// 1-based line number.
        line: usize,
        /// The attribute name.
        name: &'static str,
    },
    /// More than [`MAX_MEDIA`] media descriptions or [`MAX_FORMATS`] formats.
    #[error("SDP has too many media descriptions or formats")]
    TooMany,
    /// An active audio stream has no `c=` line, neither its own nor the session's.
    #[error("media description {0} has no connection address")]
    MissingConnection(usize),
    /// The offer or answer has no usable audio stream.
    #[error("no audio stream offered")]
    NoAudio,
    /// The offer's audio stream has no codec we support.
    #[error("no common codec")]
    NoCommonCodec,
    /// The answer does not match our offer (different number of media descriptions, or a
    /// codec we did not offer).
    #[error("answer does not match the offer: {0}")]
    AnswerMismatch(&'static str),
}

/// Network address type of `o=` and `c=` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrType {
    /// `IP4`.
    Ip4,
    /// `IP6`.
    Ip6,
}

impl AddrType {
    fn token(self) -> &'static str {
        match self {
            AddrType::Ip4 => "IP4",
            AddrType::Ip6 => "IP6",
        }
    }

    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => AddrType::Ip4,
            IpAddr::V6(_) => AddrType::Ip6,
        }
    }
}

/// The `o=` line: who created the session, and the version of this description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name, `-` when there is none.
    pub username: String,
    /// Session id (kept as a string: phones send ids wider than 64 bits).
    pub session_id: String,
    /// Session version; increases whenever the description changes.
    pub session_version: u64,
    /// Address type.
    pub addr_type: AddrType,
    /// The originating host (an address or a name).
    pub address: String,
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Address type.
    pub addr_type: AddrType,
    /// The address as written, including any `/ttl` suffix of multicast addresses.
    pub address: String,
}

impl Connection {
    /// A unicast connection to `ip`.
    pub fn ip(ip: IpAddr) -> Self {
        Self {
            addr_type: AddrType::of(ip),
            address: ip.to_string(),
        }
    }

    /// The IP address, if the line carries a literal one (not a host name).
    pub fn ip_addr(&self) -> Option<IpAddr> {
        let host = self.address.split('/').next().unwrap_or_default();
        IpAddr::from_str(host).ok()
    }

    /// Whether this is the RFC 2543 hold address `0.0.0.0` (or `::`).
    pub fn is_hold(&self) -> bool {
        self.ip_addr().is_some_and(|ip| ip.is_unspecified())
    }
}

/// Media direction attribute (RFC 3264 §5.1), as seen by the party that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv` (also the default when no attribute is present).
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    fn from_parts(send: bool, recv: bool) -> Self {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the writer will send media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the writer wants to receive media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other end: sendonly ↔ recvonly.
    pub fn reversed(self) -> Self {
        Self::from_parts(self.receives(), self.sends())
    }

    /// What both allow.
    pub fn intersect(self, other: Direction) -> Self {
        Self::from_parts(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    fn token(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_token(token: &str) -> Option<Self> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| d.token() == token)
    }
}

/// An `a=rtpmap:` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// The payload type it maps.
    pub payload_type: u8,
    /// Encoding name (`PCMU`, `telephone-event`, …), as written.
    pub encoding: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Encoding parameters (channels for audio), if given.
    pub params: Option<String>,
}

/// An `a=fmtp:` attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// The payload type it applies to.
    pub payload_type: u8,
    /// The format parameters, unparsed (`0-16` for telephone-event).
    pub params: String,
}

/// Any other attribute: `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value after the colon, if any.
    pub value: Option<String>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// Media type: `audio`, `video`, `image` …
    pub media: String,
    /// Transport port; 0 rejects or disables the stream.
    pub port: u16,
    /// Number of ports (`m=audio 4000/2 …`), if given.
    pub port_count: Option<u16>,
    /// Transport protocol: `RTP/AVP`, `RTP/SAVP`, `udptl` …
    pub protocol: String,
    /// Media formats: RTP payload type numbers for RTP protocols, as written.
    pub formats: Vec<String>,
    /// The stream's own `c=` line, overriding the session's.
    pub connection: Option<Connection>,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines.
    pub fmtps: Vec<Fmtp>,
    /// The direction attribute, if present (absent means sendrecv, or the session's).
    pub direction: Option<Direction>,
    /// `a=ptime` in milliseconds.
    pub ptime: Option<u32>,
    /// `a=maxptime` in milliseconds.
    pub maxptime: Option<u32>,
    /// Other attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// An empty description of `media` on `port` over `protocol`.
    pub fn new(media: &str, port: u16, protocol: &str) -> Self {
        Self {
            media: media.to_owned(),
            port,
            port_count: None,
            protocol: protocol.to_owned(),
            formats: Vec::new(),
            connection: None,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            direction: None,
            ptime: None,
            maxptime: None,
            attributes: Vec::new(),
        }
    }

    /// Whether this is an RTP audio stream (`audio` over `RTP/AVP` or `RTP/AVPF`).
    pub fn is_rtp_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
            && (self.protocol.eq_ignore_ascii_case("RTP/AVP")
                || self.protocol.eq_ignore_ascii_case("RTP/AVPF"))
    }

    /// The formats that are RTP payload type numbers (0–127), in offer order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
    }

    /// The rtpmap for `pt`, if any.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    /// The fmtp parameters for `pt`, if any.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|f| f.payload_type == pt)
            .map(|f| f.params.as_str())
    }

    /// The G.711 law a payload type stands for here: by its rtpmap, or by the static
    /// assignment (0, 8) when there is none.
    pub fn law_of(&self, pt: u8) -> Option<Law> {
        match self.rtpmap(pt) {
            Some(map) if map.clock_rate == 8000 => Law::from_encoding_name(&map.encoding),
            Some(_) => None,
            None => Law::from_payload_type(pt),
        }
    }

    /// The payload type of telephone-event at 8000 Hz (RFC 4733), if offered.
    pub fn telephone_event(&self) -> Option<u8> {
        self.payload_types().find(|pt| {
            self.rtpmap(*pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        })
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The `o=` line.
    pub origin: Origin,
    /// The `s=` line (`-` when empty).
    pub session_name: String,
    /// The session-level `c=` line.
    pub connection: Option<Connection>,
    /// The `t=` line's start and stop times (0 0 for a permanent session).
    pub timing: (u64, u64),
    /// Session-level direction attribute, the default for every stream.
    pub direction: Option<Direction>,
    /// Other session-level attributes.
    pub attributes: Vec<Attribute>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses an SDP body.
    pub fn parse(bytes: &[u8]) -> Result<Self, SdpError> {
        if bytes.len() > MAX_SDP_BYTES {
            return Err(SdpError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| SdpError::NotText)?;
        Parser::default().run(text)
    }

    /// Writes the description with CRLF line ends, in the order RFC 4566 §5 prescribes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// The effective direction of media description `index`: its own attribute, else the
    /// session's, else sendrecv.
    pub fn direction_of(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(|m| m.direction)
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// The connection of media description `index`: its own, else the session's.
    pub fn connection_of(&self, index: usize) -> Option<&Connection> {
        self.media
            .get(index)
            .and_then(|m| m.connection.as_ref())
            .or(self.connection.as_ref())
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} IN {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.addr_type.token(),
            o.address,
            if self.session_name.is_empty() {
                "-"
            } else {
                &self.session_name
            }
        )?;
        if let Some(c) = &self.connection {
            write_connection(f, c)?;
        }
        write!(f, "t={} {}\r\n", self.timing.0, self.timing.1)?;
        for a in &self.attributes {
            write_attribute(f, a)?;
        }
        if let Some(d) = self.direction {
            write!(f, "a={}\r\n", d.token())?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.media, m.port)?;
            if let Some(n) = m.port_count {
                write!(f, "/{n}")?;
            }
            write!(f, " {}", m.protocol)?;
            for format in &m.formats {
                write!(f, " {format}")?;
            }
            f.write_str("\r\n")?;
            if let Some(c) = &m.connection {
                write_connection(f, c)?;
            }
            for r in &m.rtpmaps {
                write!(
                    f,
                    "a=rtpmap:{} {}/{}",
                    r.payload_type, r.encoding, r.clock_rate
                )?;
                if let Some(p) = &r.params {
                    write!(f, "/{p}")?;
                }
                f.write_str("\r\n")?;
            }
            for p in &m.fmtps {
                write!(f, "a=fmtp:{} {}\r\n", p.payload_type, p.params)?;
            }
            if let Some(ptime) = m.ptime {
                write!(f, "a=ptime:{ptime}\r\n")?;
            }
            if let Some(maxptime) = m.maxptime {
                write!(f, "a=maxptime:{maxptime}\r\n")?;
            }
            for a in &m.attributes {
                write_attribute(f, a)?;
            }
            if let Some(d) = m.direction {
                write!(f, "a={}\r\n", d.token())?;
            }
        }
        Ok(())
    }
}

fn write_connection(f: &mut fmt::Formatter<'_>, c: &Connection) -> fmt::Result {
    write!(f, "c=IN {} {}\r\n", c.addr_type.token(), c.address)
}

fn write_attribute(f: &mut fmt::Formatter<'_>, a: &Attribute) -> fmt::Result {
    match &a.value {
        Some(v) => write!(f, "a={}:{}\r\n", a.name, v),
        None => write!(f, "a={}\r\n", a.name),
    }
}

/// Line-by-line parser state.
#[derive(Default)]
struct Parser {
    origin: Option<Origin>,
    session_name: Option<String>,
    connection: Option<Connection>,
    timing: Option<(u64, u64)>,
    direction: Option<Direction>,
    attributes: Vec<Attribute>,
    media: Vec<MediaDescription>,
}

impl Parser {
    fn run(mut self, text: &str) -> Result<SessionDescription, SdpError> {
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        match lines.next() {
            Some((_, "v=0")) => {}
            Some(_) => return Err(SdpError::Version),
            None => return Err(SdpError::MissingLine('v')),
        }
        for (line, raw) in lines {
            let bytes = raw.as_bytes();
            if bytes.len() < 2 || bytes[1] != b'=' || !bytes[0].is_ascii_lowercase() {
                return Err(SdpError::MalformedLine { line });
            }
            let kind = char::from(bytes[0]);
            // `bytes[1]` is the ASCII '=', so index 2 is a char boundary.
            let value = &raw[2..];
            self.line(line, kind, value)?;
        }
        Ok(SessionDescription {
            origin: self.origin.ok_or(SdpError::MissingLine('o'))?,
            session_name: self.session_name.ok_or(SdpError::MissingLine('s'))?,
            connection: self.connection,
            // Some phones omit t=; it carries nothing for SIP (RFC 3264 §5), so 0 0 it is.
            timing: self.timing.unwrap_or((0, 0)),
            direction: self.direction,
            attributes: self.attributes,
            media: self.media,
        })
    }

    fn line(&mut self, line: usize, kind: char, value: &str) -> Result<(), SdpError> {
        let invalid = SdpError::InvalidLine { line, kind };
        match kind {
            'o' => {
                let mut parts = value.split_ascii_whitespace();
                let (Some(user), Some(id), Some(version), Some("IN"), Some(at), Some(addr), None) = (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) else {
                    return Err(invalid);
                };
                self.origin = Some(Origin {
                    username: user.to_owned(),
                    session_id: id.to_owned(),
                    session_version: version.parse().map_err(|_| invalid.clone())?,
                    addr_type: addr_type(at).ok_or(invalid)?,
                    address: addr.to_owned(),
                });
            }
            's' => self.session_name = Some(value.to_owned()),
            'c' => {
                let connection = parse_connection(value).ok_or(invalid)?;
                match self.media.last_mut() {
                    Some(m) => m.connection = Some(connection),
                    None => self.connection = Some(connection),
                }
            }
            't' if self.media.is_empty() => {
                let mut parts = value.split_ascii_whitespace();
                let (Some(start), Some(stop)) = (parts.next(), parts.next()) else {
                    return Err(invalid);
                };
                let start = start.parse().map_err(|_| invalid.clone())?;
                let stop = stop.parse().map_err(|_| invalid)?;
                self.timing.get_or_insert((start, stop));
            }
            'm' => {
                if self.media.len() >= MAX_MEDIA {
                    return Err(SdpError::TooMany);
                }
                self.media.push(parse_media(value).ok_or(invalid)??);
            }
            'a' => self.attribute(line, value)?,
            // i, u, e, p, b, z, k, r, misplaced t and unknown letters: tolerated and dropped.
            _ => {}
        }
        Ok(())
    }

    fn attribute(&mut self, line: usize, value: &str) -> Result<(), SdpError> {
        let (name, val) = match value.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (value, None),
        };
        if let Some(d) = Direction::from_token(name).filter(|_| val.is_none()) {
            match self.media.last_mut() {
                Some(m) => m.direction = Some(d),
                None => self.direction = Some(d),
            }
            return Ok(());
        }
        let Some(m) = self.media.last_mut() else {
            self.attributes.push(Attribute {
                name: name.to_owned(),
                value: val.map(str::to_owned),
            });
            return Ok(());
        };
        match (name, val) {
            ("rtpmap", Some(v)) => {
                let map = parse_rtpmap(v).ok_or(SdpError::InvalidAttribute {
                    line,
                    name: "rtpmap",
                })?;
                m.rtpmaps.push(map);
            }
            ("fmtp", Some(v)) => {
                let (pt, params) = v.split_once(' ').unwrap_or((v, ""));
                let payload_type =
                    parse_pt(pt).ok_or(SdpError::InvalidAttribute { line, name: "fmtp" })?;
                m.fmtps.push(Fmtp {
                    payload_type,
                    params: params.trim().to_owned(),
                });
            }
            ("ptime" | "maxptime", Some(v)) => {
                let invalid = SdpError::InvalidAttribute {
                    line,
                    name: if name == "ptime" { "ptime" } else { "maxptime" },
                };
                // Some phones write fractional ptime ("20.0"); the integer part is what counts.
                let ms = v.trim().split('.').next().unwrap_or_default();
                let ms: u32 = ms.parse().map_err(|_| invalid.clone())?;
                if name == "ptime" {
                    m.ptime = Some(ms);
                } else {
                    m.maxptime = Some(ms);
                }
            }
            _ => m.attributes.push(Attribute {
                name: name.to_owned(),
                value: val.map(str::to_owned),
            }),
        }
        Ok(())
    }
}

fn addr_type(token: &str) -> Option<AddrType> {
    match token {
        "IP4" => Some(AddrType::Ip4),
        "IP6" => Some(AddrType::Ip6),
        _ => None,
    }
}

fn parse_connection(value: &str) -> Option<Connection> {
    let mut parts = value.split_ascii_whitespace();
    let (Some("IN"), Some(at), Some(address), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(Connection {
        addr_type: addr_type(at)?,
        address: address.to_owned(),
    })
}

fn parse_pt(s: &str) -> Option<u8> {
    s.trim().parse::<u8>().ok().filter(|pt| *pt < 128)
}

/// `m=<media> <port>[/<count>] <proto> <fmt> …`. The outer `Option` is a syntax error, the
/// inner `Result` a limit.
fn parse_media(value: &str) -> Option<Result<MediaDescription, SdpError>> {
    let mut parts = value.split_ascii_whitespace();
    let media = parts.next()?;
    let port_field = parts.next()?;
    let protocol = parts.next()?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_field.parse().ok()?, None),
    };
    let mut m = MediaDescription::new(media, port, protocol);
    m.port_count = port_count;
    for format in parts {
        if m.formats.len() >= MAX_FORMATS {
            return Some(Err(SdpError::TooMany));
        }
        m.formats.push(format.to_owned());
    }
    if m.formats.is_empty() {
        return None;
    }
    Some(Ok(m))
}

/// `<pt> <encoding>/<clock rate>[/<params>]`.
fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, rest) = value.split_once(' ')?;
    let mut fields = rest.trim().splitn(3, '/');
    let encoding = fields.next().filter(|e| !e.is_empty())?;
    let clock_rate = fields.next()?.trim().parse().ok()?;
    Some(RtpMap {
        payload_type: parse_pt(pt)?,
        encoding: encoding.to_owned(),
        clock_rate,
        params: fields.next().map(str::to_owned),
    })
}

// ---------------------------------------------------------------------------------------------
// Offer / answer
// ---------------------------------------------------------------------------------------------

/// The payload type vacd offers for telephone-event when it makes the offer.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// What our side of the media looks like: where we receive RTP and what we can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// Our RTP address and port (the relay socket of this leg).
    pub rtp: SocketAddr,
    /// The G.711 laws we accept, in our order of preference (used in our offers; an answer
    /// follows the offerer's order).
    pub codecs: Vec<Law>,
    /// RFC 4733 telephone-event (DTMF): the payload type our offers give it, `None` to
    /// neither offer nor accept it (an answer keeps the offerer's number).
    pub telephone_event: Option<u8>,
    /// Packet time we send and ask for, in milliseconds.
    pub ptime: u32,
    /// The direction we want (sendrecv normally; sendonly when we put the leg on hold).
    pub direction: Direction,
}

impl LocalMedia {
    /// PCMU and PCMA, telephone-event, 20 ms, sendrecv, at `rtp`.
    pub fn new(rtp: SocketAddr) -> Self {
        Self {
            rtp,
            codecs: vec![Law::MuLaw, Law::ALaw],
            telephone_event: Some(TELEPHONE_EVENT_PT),
            ptime: 20,
            direction: Direction::SendRecv,
        }
    }
}

/// The outcome of an offer/answer exchange for the audio stream, from our point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the audio stream among the media descriptions.
    pub index: usize,
    /// The codec of the stream.
    pub law: Law,
    /// The payload type to put in packets we send (normally the codec's static one, but an
    /// offerer may map PCMU/PCMA to a dynamic number).
    pub payload_type: u8,
    /// The telephone-event payload type, if both sides use it.
    pub telephone_event: Option<u8>,
    /// Where to send RTP; `None` when the far end gave no usable address (c=0.0.0.0 hold).
    pub remote: Option<SocketAddr>,
    /// What we do on this stream: whether we send and whether we receive.
    pub direction: Direction,
    /// The far end does not want to receive media: it holds the call (a=sendonly,
    /// a=inactive or c=0.0.0.0 from its side).
    pub remote_hold: bool,
    /// Packet time the far end asked for, if it did.
    pub remote_ptime: Option<u32>,
}

/// Our `o=` line across a dialog: the session id stays, the version increases each time our
/// description changes (RFC 3264 §8), and a repeated identical description keeps its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSdp {
    origin: Origin,
    last: Option<SessionDescription>,
}

impl LocalSdp {
    /// A new session originated at `address`, with a random session id.
    pub fn new(address: IpAddr) -> Self {
        use rand::Rng;
        let id: u32 = rand::thread_rng().gen_range(1..u32::MAX);
        Self::with_id(address, u64::from(id))
    }

    /// A new session with a given id (tests, or to derive it from the Call-ID).
    pub fn with_id(address: IpAddr, session_id: u64) -> Self {
        Self {
            origin: Origin {
                username: "vacd".to_owned(),
                session_id: session_id.to_string(),
                session_version: session_id,
                addr_type: AddrType::of(address),
                address: address.to_string(),
            },
            last: None,
        }
    }

    /// Stamps our origin on `sdp`, bumping the version if the content differs from what we
    /// sent last, and remembers it.
    fn stamp(&mut self, mut sdp: SessionDescription) -> SessionDescription {
        sdp.origin = self.origin.clone();
        if let Some(last) = &self.last {
            if *last != sdp {
                self.origin.session_version += 1;
                sdp.origin.session_version = self.origin.session_version;
            }
        }
        self.last = Some(sdp.clone());
        sdp
    }

    fn skeleton(&self, rtp: SocketAddr) -> SessionDescription {
        SessionDescription {
            origin: self.origin.clone(),
            session_name: "vacd".to_owned(),
            connection: Some(Connection::ip(rtp.ip())),
            timing: (0, 0),
            direction: None,
            attributes: Vec::new(),
            media: Vec::new(),
        }
    }
}

/// The far end's RTP address for stream `index`, or `None` on c=0.0.0.0.
fn remote_addr(sdp: &SessionDescription, index: usize) -> Result<Option<SocketAddr>, SdpError> {
    let port = sdp.media.get(index).map_or(0, |m| m.port);
    let connection = sdp
        .connection_of(index)
        .ok_or(SdpError::MissingConnection(index))?;
    if connection.is_hold() {
        return Ok(None);
    }
    // A host name instead of an address cannot be used without DNS; treat like no address
    // and let symmetric RTP latching find the peer.
    Ok(connection.ip_addr().map(|ip| SocketAddr::new(ip, port)))
}

/// The direction the far end really asks for: its attribute, minus receiving when it gave
/// the RFC 2543 hold address.
fn effective_direction(sdp: &SessionDescription, index: usize) -> Direction {
    let written = sdp.direction_of(index);
    let hold_addr = sdp.connection_of(index).is_some_and(Connection::is_hold);
    if hold_addr {
        Direction::from_parts(written.sends(), false)
    } else {
        written
    }
}

fn rejected(offered: &MediaDescription) -> MediaDescription {
    let mut m = MediaDescription::new(&offered.media, 0, &offered.protocol);
    // RFC 3264 §6: a rejected stream keeps at least one format of the offer.
    m.formats = offered.formats.iter().take(1).cloned().collect();
    if m.formats.is_empty() {
        m.formats.push("0".to_owned());
    }
    m
}

/// Answers a remote `offer` (RFC 3264 §6). The first active RTP audio stream is accepted with
/// the first codec in the offer's order that `local` supports, plus telephone-event at the
/// offer's payload type; every other stream is rejected with port 0. The answer's direction
/// is the offer's reversed, limited by `local.direction` (sendonly → recvonly,
/// inactive → inactive).
pub fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
    session: &mut LocalSdp,
) -> Result<(SessionDescription, Negotiated), SdpError> {
    let mut sdp = session.skeleton(local.rtp);
    let mut negotiated = None;
    let mut saw_audio = false;
    for (index, offered) in offer.media.iter().enumerate() {
        if negotiated.is_some() || !offered.is_rtp_audio() || offered.port == 0 {
            sdp.media.push(rejected(offered));
            continue;
        }
        saw_audio = true;
        let Some((pt, law)) = offered.payload_types().find_map(|pt| {
            offered
                .law_of(pt)
                .filter(|law| local.codecs.contains(law))
                .map(|law| (pt, law))
        }) else {
            sdp.media.push(rejected(offered));
            continue;
        };
        let remote_direction = effective_direction(offer, index);
        let direction = remote_direction.reversed().intersect(local.direction);
        let telephone_event = offered
            .telephone_event()
            .filter(|_| local.telephone_event.is_some());
        let mut m = MediaDescription::new(&offered.media, local.rtp.port(), &offered.protocol);
        push_codec(&mut m, pt, law);
        if let Some(te) = telephone_event {
            push_telephone_event(&mut m, te, offered.fmtp(te).unwrap_or("0-16"));
        }
        m.ptime = Some(local.ptime);
        m.direction = Some(direction);
        sdp.media.push(m);
        negotiated = Some(Negotiated {
            index,
            law,
            payload_type: pt,
            telephone_event,
            remote: remote_addr(offer, index)?,
            direction,
            remote_hold: !remote_direction.receives(),
            remote_ptime: offered.ptime,
        });
    }
    match negotiated {
        Some(n) => Ok((session.stamp(sdp), n)),
        None if saw_audio => Err(SdpError::NoCommonCodec),
        None => Err(SdpError::NoAudio),
    }
}

fn push_codec(m: &mut MediaDescription, pt: u8, law: Law) {
    m.formats.push(pt.to_string());
    m.rtpmaps.push(RtpMap {
        payload_type: pt,
        encoding: law.encoding_name().to_owned(),
        clock_rate: 8000,
        params: None,
    });
}

fn push_telephone_event(m: &mut MediaDescription, pt: u8, events: &str) {
    m.formats.push(pt.to_string());
    m.rtpmaps.push(RtpMap {
        payload_type: pt,
        encoding: "telephone-event".to_owned(),
        clock_rate: 8000,
        params: None,
    });
    m.fmtps.push(Fmtp {
        payload_type: pt,
        params: events.to_owned(),
    });
}

/// Builds our offer: one audio stream with `local.codecs` in order and telephone-event at
/// `local.telephone_event` (left out if a codec has that number), in `local.direction`
/// (sendonly to put the far end on hold).
pub fn offer(local: &LocalMedia, session: &mut LocalSdp) -> SessionDescription {
    let mut sdp = session.skeleton(local.rtp);
    let mut m = MediaDescription::new("audio", local.rtp.port(), "RTP/AVP");
    for law in &local.codecs {
        push_codec(&mut m, law.payload_type(), *law);
    }
    let telephone_event = local
        .telephone_event
        .filter(|pt| local.codecs.iter().all(|law| law.payload_type() != *pt));
    if let Some(pt) = telephone_event {
        push_telephone_event(&mut m, pt, "0-16");
    }
    m.ptime = Some(local.ptime);
    m.direction = Some(local.direction);
    sdp.media.push(m);
    session.stamp(sdp)
}

/// Reads the answer to an offer we made (RFC 3264 §7): same number of streams, the audio
/// stream accepted with a codec we offered.
pub fn accept_answer(
    our_offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Negotiated, SdpError> {
    if answer.media.len() != our_offer.media.len() {
        return Err(SdpError::AnswerMismatch("number of media descriptions"));
    }
    let Some(index) = our_offer
        .media
        .iter()
        .position(|m| m.is_rtp_audio() && m.port != 0)
    else {
        return Err(SdpError::NoAudio);
    };
    let offered = &our_offer.media[index];
    let answered = &answer.media[index];
    if answered.port == 0 {
        return Err(SdpError::NoCommonCodec);
    }
    let mut codec = None;
    for pt in answered.payload_types() {
        let Some(law) = answered.law_of(pt) else {
            continue;
        };
        if offered
            .payload_types()
            .any(|o| offered.law_of(o) == Some(law))
        {
            codec = Some((pt, law));
            break;
        }
        return Err(SdpError::AnswerMismatch("codec not offered"));
    }
    let (payload_type, law) = codec.ok_or(SdpError::NoCommonCodec)?;
    let remote_direction = effective_direction(answer, index);
    let telephone_event = answered
        .telephone_event()
        .filter(|_| offered.telephone_event().is_some());
    Ok(Negotiated {
        index,
        law,
        payload_type,
        telephone_event,
        remote: remote_addr(answer, index)?,
        // An answerer may only narrow what we offered (RFC 3264 §6.1); if it widens it anyway,
        // we keep to our offer.
        direction: remote_direction
            .reversed()
            .intersect(our_offer.direction_of(index)),
        remote_hold: !remote_direction.receives(),
        remote_ptime: answered.ptime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\n\
s=-\r\n\
c=IN IP4 198.51.100.1\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text.as_bytes()).expect("valid SDP")
    }

    fn local() -> LocalMedia {
        LocalMedia::new("192.0.2.50:20000".parse().expect("addr"))
    }

    fn session() -> LocalSdp {
        LocalSdp::with_id("192.0.2.50".parse().expect("ip"), 1000)
    }

    fn with_direction(direction: &str) -> String {
        OFFER.replace("a=sendrecv", direction)
    }

    #[test]
    fn parses_a_typical_offer() {
        let sdp = parse(OFFER);
        assert_eq!(sdp.origin.username, "alice");
        assert_eq!(sdp.origin.session_version, 2_890_844_526);
        assert_eq!(
            sdp.connection.as_ref().and_then(Connection::ip_addr),
            Some("198.51.100.1".parse().expect("ip"))
        );
        let m = &sdp.media[0];
        assert!(m.is_rtp_audio());
        assert_eq!(m.port, 49170);
        assert_eq!(m.payload_types().collect::<Vec<_>>(), vec![8, 0, 18, 101]);
        assert_eq!(m.law_of(8), Some(Law::ALaw));
        assert_eq!(m.law_of(18), None);
        assert_eq!(m.telephone_event(), Some(101));
        assert_eq!(m.fmtp(101), Some("0-15"));
        assert_eq!(m.ptime, Some(20));
        assert_eq!(m.direction, Some(Direction::SendRecv));
        assert_eq!(m.formats.join(" "), "8 0 18 101");
    }

    #[test]
    fn written_sdp_parses_back_to_the_same_value() {
        let mut sdp = parse(OFFER);
        sdp.media[0].attributes.push(Attribute {
            name: "rtcp".to_owned(),
            value: Some("49171".to_owned()),
        });
        sdp.attributes.push(Attribute {
            name: "group".to_owned(),
            value: Some("BUNDLE a".to_owned()),
        });
        let bytes = sdp.to_bytes();
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(text.starts_with("v=0\r\no=alice 2890844526 2890844526 IN IP4 198.51.100.1\r\n"));
        assert!(text.ends_with("\r\n"));
        assert_eq!(SessionDescription::parse(&bytes), Ok(sdp));
    }

    #[test]
    fn lenient_about_lf_line_ends_blank_lines_and_ignored_lines() {
        let text = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=\ni=info\nb=AS:64\nc=IN IP4 10.0.0.1\n\
                    m=audio 4000 RTP/AVP 0\nb=TIAS:64000\na=ptime:20.0\n\n";
        let sdp = parse(text);
        assert_eq!(sdp.timing, (0, 0), "missing t= defaults to 0 0");
        assert_eq!(sdp.media[0].ptime, Some(20));
        assert_eq!(sdp.session_name, "");
    }

    #[test]
    fn malformed_sdp_gives_typed_errors() {
        let cases: &[(&str, SdpError)] = &[
            ("", SdpError::MissingLine('v')),
            ("v=1\r\n", SdpError::Version),
            ("v=0\r\ns=-\r\n", SdpError::MissingLine('o')),
            ("v=0\r\no=- 1 1 IN IP4 h\r\n", SdpError::MissingLine('s')),
            (
                "v=0\r\nthis is not sdp\r\n",
                SdpError::MalformedLine { line: 2 },
            ),
            (
                "v=0\r\no=- 1 x IN IP4 h\r\ns=-\r\n",
                SdpError::InvalidLine { line: 2, kind: 'o' },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n",
                SdpError::InvalidLine { line: 2, kind: 'o' },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP9 1.2.3.4\r\n",
                SdpError::InvalidLine { line: 4, kind: 'c' },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 99999 RTP/AVP 0\r\n",
                SdpError::InvalidLine { line: 4, kind: 'm' },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 4000 RTP/AVP\r\n",
                SdpError::InvalidLine { line: 4, kind: 'm' },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
                SdpError::InvalidAttribute {
                    line: 5,
                    name: "rtpmap",
                },
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\na=ptime:abc\r\n",
                SdpError::InvalidAttribute {
                    line: 5,
                    name: "ptime",
                },
            ),
        ];
        for (text, err) in cases {
            assert_eq!(
                SessionDescription::parse(text.as_bytes()).as_ref(),
                Err(err),
                "{text:?}"
            );
        }
        assert_eq!(
            SessionDescription::parse(&[b'v', b'=', 0xFF]),
            Err(SdpError::NotText)
        );
        let huge = vec![b'a'; MAX_SDP_BYTES + 1];
        assert!(matches!(
            SessionDescription::parse(&huge),
            Err(SdpError::TooLarge(_))
        ));
    }

    #[test]
    fn answer_picks_the_first_common_codec_in_offer_order_and_keeps_telephone_event() {
        let (sdp, n) = answer(&parse(OFFER), &local(), &mut session()).expect("answer");
        assert_eq!(n.law, Law::ALaw, "PCMA comes first in the offer");
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, Some("198.51.100.1:49170".parse().expect("addr")));
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(!n.remote_hold);
        let m = &sdp.media[0];
        assert_eq!(m.formats, vec!["8", "101"]);
        assert_eq!(m.port, 20000);
        assert_eq!(m.fmtp(101), Some("0-15"), "the offer's event range is kept");
        assert_eq!(
            sdp.connection.as_ref().map(|c| c.address.as_str()),
            Some("192.0.2.50")
        );
        // The answer is valid SDP.
        assert_eq!(SessionDescription::parse(&sdp.to_bytes()), Ok(sdp));
    }

    #[test]
    fn answer_follows_local_codec_support() {
        let mut pcmu_only = local();
        pcmu_only.codecs = vec![Law::MuLaw];
        pcmu_only.telephone_event = None;
        let (sdp, n) = answer(&parse(OFFER), &pcmu_only, &mut session()).expect("answer");
        assert_eq!(
            (n.law, n.payload_type, n.telephone_event),
            (Law::MuLaw, 0, None)
        );
        assert_eq!(sdp.media[0].formats, vec!["0"]);
    }

    #[test]
    fn answer_accepts_g711_on_a_dynamic_payload_type() {
        let text = OFFER
            .replace(
                "m=audio 49170 RTP/AVP 8 0 18 101",
                "m=audio 49170 RTP/AVP 96",
            )
            .replace("a=rtpmap:8 PCMA/8000", "a=rtpmap:96 pcmu/8000");
        let (_, n) = answer(&parse(&text), &local(), &mut session()).expect("answer");
        assert_eq!((n.law, n.payload_type), (Law::MuLaw, 96));
    }

    #[test]
    fn no_common_codec_is_an_error() {
        let text = OFFER.replace(
            "m=audio 49170 RTP/AVP 8 0 18 101",
            "m=audio 49170 RTP/AVP 18",
        );
        assert_eq!(
            answer(&parse(&text), &local(), &mut session()).map(|(_, n)| n),
            Err(SdpError::NoCommonCodec)
        );
        let video = OFFER.replace("m=audio", "m=video");
        assert_eq!(
            answer(&parse(&video), &local(), &mut session()).map(|(_, n)| n),
            Err(SdpError::NoAudio)
        );
    }

    #[test]
    fn answer_directions_follow_rfc_3264() {
        let cases = [
            ("a=sendrecv", Direction::SendRecv, false),
            ("a=sendonly", Direction::RecvOnly, true),
            ("a=recvonly", Direction::SendOnly, false),
            ("a=inactive", Direction::Inactive, true),
        ];
        for (attr, expected, hold) in cases {
            let (sdp, n) =
                answer(&parse(&with_direction(attr)), &local(), &mut session()).expect("answer");
            assert_eq!(n.direction, expected, "{attr}");
            assert_eq!(n.remote_hold, hold, "{attr}");
            assert_eq!(sdp.media[0].direction, Some(expected));
        }
        // Our own hold (local sendonly) limits the answer too.
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let (_, n) = answer(&parse(OFFER), &holding, &mut session()).expect("answer");
        assert_eq!(n.direction, Direction::SendOnly);
    }

    #[test]
    fn rfc_2543_hold_with_zero_address_is_detected() {
        let text = OFFER.replace("c=IN IP4 198.51.100.1", "c=IN IP4 0.0.0.0");
        let (_, n) = answer(&parse(&text), &local(), &mut session()).expect("answer");
        assert!(n.remote_hold);
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    #[test]
    fn session_level_direction_applies_to_streams() {
        let text = OFFER
            .replace("a=sendrecv\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        let (_, n) = answer(&parse(&text), &local(), &mut session()).expect("answer");
        assert_eq!(n.direction, Direction::Inactive);
    }

    #[test]
    fn extra_streams_are_rejected_with_port_zero_in_order() {
        let text = OFFER.replace(
            "m=audio 49170",
            "m=image 5000 udptl t38\r\nm=audio 0 RTP/AVP 0\r\nm=audio 49170",
        );
        let offer_sdp = parse(&text);
        let (sdp, n) = answer(&offer_sdp, &local(), &mut session()).expect("answer");
        assert_eq!(sdp.media.len(), 3);
        assert_eq!(n.index, 2);
        assert_eq!(
            (sdp.media[0].port, sdp.media[0].media.as_str()),
            (0, "image")
        );
        assert_eq!(sdp.media[0].formats, vec!["t38"]);
        assert_eq!(sdp.media[1].port, 0);
        assert_eq!(sdp.media[2].port, 20000);
    }

    #[test]
    fn missing_connection_is_an_error() {
        let text = OFFER.replace("c=IN IP4 198.51.100.1\r\n", "");
        assert_eq!(
            answer(&parse(&text), &local(), &mut session()).map(|(_, n)| n),
            Err(SdpError::MissingConnection(0))
        );
    }

    #[test]
    fn our_offer_and_the_answer_to_it() {
        let mut ours = session();
        let offer_sdp = offer(&local(), &mut ours);
        let m = &offer_sdp.media[0];
        assert_eq!(m.formats, vec!["0", "8", "101"]);
        assert_eq!(m.fmtp(101), Some("0-16"));
        assert_eq!(m.direction, Some(Direction::SendRecv));

        // The far end answers with our second codec and its own address; it goes through the
        // wire format, as in a real call.
        let (their_answer, _) = answer(
            &offer_sdp,
            &LocalMedia {
                codecs: vec![Law::ALaw],
                ..LocalMedia::new("198.51.100.9:30000".parse().expect("addr"))
            },
            &mut LocalSdp::with_id("198.51.100.9".parse().expect("ip"), 7),
        )
        .expect("they answer");
        let their_answer = SessionDescription::parse(&their_answer.to_bytes()).expect("valid");
        let n = accept_answer(&offer_sdp, &their_answer).expect("accepted");
        assert_eq!((n.law, n.payload_type), (Law::ALaw, 8));
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, Some("198.51.100.9:30000".parse().expect("addr")));
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn telephone_event_is_offered_at_the_number_asked_unless_a_codec_has_it() {
        let mut ours = session();
        let caller_s = LocalMedia {
            telephone_event: Some(96),
            ..local()
        };
        let m = &offer(&caller_s, &mut ours).media[0];
        assert_eq!(m.formats, vec!["0", "8", "96"]);
        assert_eq!(m.fmtp(96), Some("0-16"));
        let clashing = LocalMedia {
            telephone_event: Some(8),
            ..local()
        };
        let m = &offer(&clashing, &mut ours).media[0];
        assert_eq!(m.formats, vec!["0", "8"]);
        assert_eq!(m.rtpmaps.len(), 2, "{:?}", m.rtpmaps);
    }

    #[test]
    fn answers_that_do_not_fit_the_offer_are_rejected() {
        let mut ours = session();
        let offer_sdp = offer(&local(), &mut ours);
        let rejected_stream = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        );
        assert_eq!(
            accept_answer(&offer_sdp, &rejected_stream),
            Err(SdpError::NoCommonCodec)
        );
        let foreign_codec = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 9\r\na=rtpmap:9 PCMA/16000\r\n",
        );
        assert_eq!(
            accept_answer(&offer_sdp, &foreign_codec),
            Err(SdpError::NoCommonCodec)
        );
        let two_streams = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 31\r\n",
        );
        assert!(matches!(
            accept_answer(&offer_sdp, &two_streams),
            Err(SdpError::AnswerMismatch(_))
        ));
    }

    #[test]
    fn held_answer_is_reported() {
        let mut ours = session();
        let offer_sdp = offer(&local(), &mut ours);
        let held = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
        );
        let n = accept_answer(&offer_sdp, &held).expect("accepted");
        assert!(n.remote_hold);
        assert_eq!(n.direction, Direction::RecvOnly);

        // We put the far end on hold (sendonly); an answer that says sendrecv anyway does not
        // make us receive.
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let hold_offer = offer(&holding, &mut ours);
        let sloppy = parse(
            "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 0\r\n",
        );
        let n = accept_answer(&hold_offer, &sloppy).expect("accepted");
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(!n.remote_hold);
    }

    #[test]
    fn origin_version_increases_only_when_our_sdp_changes() {
        let mut ours = session();
        let first = offer(&local(), &mut ours);
        let same = offer(&local(), &mut ours);
        assert_eq!(same.origin.session_version, first.origin.session_version);
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let hold = offer(&holding, &mut ours);
        assert_eq!(
            hold.origin.session_version,
            first.origin.session_version + 1
        );
        assert_eq!(hold.origin.session_id, first.origin.session_id);
    }

    #[test]
    fn direction_algebra() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
        assert_eq!(
            Direction::SendRecv.intersect(Direction::RecvOnly),
            Direction::RecvOnly
        );
        assert_eq!(
            Direction::SendOnly.intersect(Direction::RecvOnly),
            Direction::Inactive
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SessionDescription::parse(&bytes);
        }

        #[test]
        fn parsing_sdp_like_text_never_panics(
            lines in proptest::collection::vec("[vosctma]=[ -~]{0,40}", 0..20)
        ) {
            let text = format!("v=0\r\n{}", lines.join("\r\n"));
            if let Ok(sdp) = SessionDescription::parse(text.as_bytes()) {
                // Whatever parses can be written and answered without panicking.
                let _ = SessionDescription::parse(&sdp.to_bytes());
                let _ = answer(&sdp, &local(), &mut session());
            }
        }
    }
}
