//! SIP messages on the wire: bytes in → a checked [`rsip::SipMessage`] or a typed
//! [`ParseError`]; a message out → bytes with a correct Content-Length ([`encode`]).
//!
//! `rsip` does the grammar work, but it takes everything after the blank line as the body and
//! knows neither compact header names (`v:`, `f:`, `i:` …) nor folded header lines. So this
//! module frames first: it finds the end of the header section, normalises header lines
//! (compact names expanded, continuation lines unfolded, whitespace before the colon removed),
//! cuts the body by Content-Length and enforces size limits, then lets `rsip` parse the
//! header section and finally [`validate`]s the mandatory headers of RFC 3261 §8.1.1.
//!
//! Start with [`parse_datagram`] (UDP) — TCP goes through [`crate::framer::StreamFramer`],
//! which shares the same parser. The second half of the file holds allocation-free readers for
//! the few header fields the hot path needs ([`top_via`], [`cseq`], [`tag_param`]) and the
//! builders transaction users call: [`response_to`], [`cancel_for`], [`via_value`],
//! [`new_branch`], [`new_tag`], [`stamp_received`].

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;

use rand::Rng;
use rsip::headers::UntypedHeader;
use rsip::{Header, Headers, Method, Request, Response, SipMessage, StatusCode};

use crate::peer::Transport;

/// The magic cookie that starts every RFC 3261 branch parameter.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Size limits applied while parsing; anything larger is rejected before it is buffered or
/// handed to the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest header section (start line up to and including the blank line), in bytes.
    pub max_header_bytes: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Why bytes could not be turned into a usable SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The header section is larger than [`Limits::max_header_bytes`].
    #[error("header section exceeds the limit of {limit} bytes")]
    HeadersTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body is larger than [`Limits::max_body_bytes`].
    #[error("body of {size} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The declared or actual body size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// No empty line ends the header section.
    #[error("the header section is not terminated by an empty line")]
    UnterminatedHeaders,
    /// A header line is not `name: value`, or a line ending is not CRLF.
    #[error("malformed header line")]
    MalformedHeaderLine,
    /// The Content-Length header is not a number, or appears twice with different values.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// A message on a stream transport has no Content-Length (RFC 3261 §18.3).
    #[error("Content-Length is mandatory on stream transports")]
    MissingContentLength,
    /// Fewer body bytes arrived than Content-Length declares.
    #[error("body is shorter than its Content-Length ({declared} declared, {present} present)")]
    TruncatedBody {
        /// The Content-Length value.
        declared: usize,
        /// The bytes actually present.
        present: usize,
    },
    /// A header every message (or every request) must carry is missing.
    #[error("mandatory header {0} is missing")]
    MissingHeader(&'static str),
    /// A mandatory header is present but unreadable.
    #[error("header {0} is malformed")]
    InvalidHeader(&'static str),
    /// The top Via header has no branch parameter.
    #[error("the top Via header has no branch parameter")]
    MissingBranch,
    /// A request's From header has no tag.
    #[error("the From header of a request has no tag")]
    MissingFromTag,
    /// A request's CSeq method differs from its request-line method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// The start line or a header failed the SIP grammar (the detail comes from `rsip`).
    #[error("syntax error: {0}")]
    Syntax(String),
}

impl ParseError {
    /// Whether this error leaves a byte stream without a known message boundary, so that a
    /// TCP/TLS connection must be closed. Other errors concern one complete message, which has
    /// been consumed; the connection can go on (and a request may be answered with 400).
    pub fn breaks_framing(&self) -> bool {
        matches!(
            self,
            ParseError::HeadersTooLarge { .. }
                | ParseError::BodyTooLarge { .. }
                | ParseError::UnterminatedHeaders
                | ParseError::MalformedHeaderLine
                | ParseError::InvalidContentLength
                | ParseError::MissingContentLength
        )
    }
}

/// Whether a datagram is only a keep-alive (CRLF or whitespace, RFC 5626 §3.5.1 style) and
/// should be dropped without a parse attempt.
pub fn is_keep_alive(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
}

/// Parses one UDP datagram. Leading CRLFs are skipped; the body is cut at Content-Length
/// (extra bytes are discarded, RFC 3261 §18.3) or runs to the end of the datagram if the header
/// is absent. The result has passed [`validate`].
pub fn parse_datagram(bytes: &[u8], limits: &Limits) -> Result<SipMessage, ParseError> {
    let bytes = skip_leading_crlf(bytes);
    let head_len = find_head_end(bytes, limits)?.ok_or(ParseError::UnterminatedHeaders)?;
    let head = normalize_head(&bytes[..head_len])?;
    let rest = &bytes[head_len..];
    let body = match head.content_length {
        Some(declared) if declared > rest.len() => {
            return Err(ParseError::TruncatedBody {
                declared,
                present: rest.len(),
            })
        }
        Some(declared) => &rest[..declared],
        None => rest,
    };
    if body.len() > limits.max_body_bytes {
        return Err(ParseError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    assemble(&head.bytes, body)
}

/// Drops leading CRLF pairs (RFC 3261 §7.5 lets a receiver ignore them before a start line).
pub(crate) fn skip_leading_crlf(mut bytes: &[u8]) -> &[u8] {
    while let Some(rest) = bytes.strip_prefix(b"\r\n") {
        bytes = rest;
    }
    bytes
}

/// Finds the length of the header section including its terminating blank line, searching no
/// further than the header limit allows. `Ok(None)` means "not complete yet".
fn find_head_end(bytes: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let window = &bytes[..bytes.len().min(limits.max_header_bytes)];
    match window.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(pos) => Ok(Some(pos + 4)),
        None if bytes.len() >= limits.max_header_bytes => Err(ParseError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        }),
        None => Ok(None),
    }
}

/// A header section rewritten into the canonical form `rsip` understands.
#[derive(Debug)]
pub(crate) struct Head {
    /// Start line, one `Name: value` line per header, blank line.
    pub(crate) bytes: Vec<u8>,
    /// The Content-Length value, if the header was present.
    pub(crate) content_length: Option<usize>,
}

/// Normalises a header section (`head` ends with the blank line): expands compact header
/// names, unfolds continuation lines, trims whitespace around values, and reads Content-Length.
pub(crate) fn normalize_head(head: &[u8]) -> Result<Head, ParseError> {
    let inner = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or(ParseError::UnterminatedHeaders)?;
    let mut out = Vec::with_capacity(head.len() + 64);
    let mut lines = CrlfLines { rest: Some(inner) };
    let start_line = lines.next().unwrap_or_default();
    if start_line.is_empty() || start_line.iter().any(|b| matches!(b, b'\r' | b'\n')) {
        return Err(ParseError::Syntax("missing or malformed start line".into()));
    }
    out.extend_from_slice(start_line);

    let mut content_length: Option<usize> = None;
    // Byte offset in `out` where the value of the current header starts, if that header is
    // Content-Length (its value is read once the header is complete, after unfolding).
    let mut open_content_length: Option<usize> = None;
    let mut in_header = false;

    for line in lines {
        if line.iter().any(|b| matches!(b, b'\r' | b'\n')) {
            return Err(ParseError::MalformedHeaderLine);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            if !in_header {
                return Err(ParseError::MalformedHeaderLine);
            }
            let folded = trim_ws(line);
            if !folded.is_empty() {
                out.push(b' ');
                out.extend_from_slice(folded);
            }
            continue;
        }
        close_content_length(&out, &mut open_content_length, &mut content_length)?;
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(ParseError::MalformedHeaderLine)?;
        let name = trim_ws(&line[..colon]);
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(ParseError::MalformedHeaderLine);
        }
        let name = expand_compact_name(name);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        if name.eq_ignore_ascii_case(b"Content-Length") {
            open_content_length = Some(out.len());
        }
        out.extend_from_slice(trim_ws(&line[colon + 1..]));
        in_header = true;
    }
    close_content_length(&out, &mut open_content_length, &mut content_length)?;
    out.extend_from_slice(b"\r\n\r\n");
    Ok(Head {
        bytes: out,
        content_length,
    })
}

fn close_content_length(
    out: &[u8],
    open: &mut Option<usize>,
    content_length: &mut Option<usize>,
) -> Result<(), ParseError> {
    if let Some(start) = open.take() {
        let value = parse_decimal(&out[start..]).ok_or(ParseError::InvalidContentLength)?;
        match content_length {
            Some(previous) if *previous != value => return Err(ParseError::InvalidContentLength),
            _ => *content_length = Some(value),
        }
    }
    Ok(())
}

fn parse_decimal(bytes: &[u8]) -> Option<usize> {
    let digits = trim_ws(bytes);
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0usize, |acc, &d| Some(acc * 10 + usize::from(d - b'0')))
}

/// Splits on CRLF only; a lone CR or LF stays inside a line (and is rejected by the caller).
struct CrlfLines<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CrlfLines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest?;
        match rest.windows(2).position(|w| w == b"\r\n") {
            Some(pos) => {
                self.rest = Some(&rest[pos + 2..]);
                Some(&rest[..pos])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

fn trim_ws(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// RFC 3261 §7.3.3 and later RFCs' compact forms.
fn expand_compact_name(name: &[u8]) -> &[u8] {
    let [c] = name else { return name };
    match c.to_ascii_lowercase() {
        b'i' => b"Call-ID",
        b'm' => b"Contact",
        b'e' => b"Content-Encoding",
        b'l' => b"Content-Length",
        b'c' => b"Content-Type",
        b'f' => b"From",
        b's' => b"Subject",
        b'k' => b"Supported",
        b't' => b"To",
        b'v' => b"Via",
        b'o' => b"Event",
        b'r' => b"Refer-To",
        b'b' => b"Referred-By",
        b'u' => b"Allow-Events",
        b'x' => b"Session-Expires",
        _ => name,
    }
}

/// Hands a normalised header section to `rsip`, attaches the body and validates.
pub(crate) fn assemble(head: &[u8], body: &[u8]) -> Result<SipMessage, ParseError> {
    // A header value must be text; rejecting other bytes here keeps them away from the grammar.
    if std::str::from_utf8(head).is_err() {
        return Err(ParseError::Syntax("header section is not UTF-8".into()));
    }
    let mut message = SipMessage::try_from(head).map_err(|e| ParseError::Syntax(e.to_string()))?;
    *message.body_mut() = body.to_vec();
    validate(&message)?;
    Ok(message)
}

/// Checks the headers RFC 3261 §8.1.1 makes mandatory: Via (whose top value has a branch),
/// From, To, Call-ID and CSeq on every message; on requests also a From tag, a CSeq method equal
/// to the request method, and Max-Forwards.
pub fn validate(message: &SipMessage) -> Result<(), ParseError> {
    let headers = match message {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    top_via(headers)?;
    let from = from_value(headers).ok_or(ParseError::MissingHeader("From"))?;
    to_value(headers).ok_or(ParseError::MissingHeader("To"))?;
    call_id(headers)?;
    let (_, cseq_method) = cseq(headers)?;
    if let SipMessage::Request(request) = message {
        if tag_param(from).is_none_or(str::is_empty) {
            return Err(ParseError::MissingFromTag);
        }
        if cseq_method != request.method {
            return Err(ParseError::CSeqMethodMismatch);
        }
        let max_forwards = first_value(headers, |h| match h {
            Header::MaxForwards(v) => Some(v.value()),
            _ => None,
        })
        .ok_or(ParseError::MissingHeader("Max-Forwards"))?;
        match max_forwards.trim().parse::<u32>() {
            Ok(n) if n <= 255 => {}
            _ => return Err(ParseError::InvalidHeader("Max-Forwards")),
        }
    }
    Ok(())
}

/// Writes a message to bytes, with exactly one Content-Length header carrying the body's real
/// length (any Content-Length already in the headers is replaced).
pub fn encode(message: &SipMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + message.body().len());
    encode_into(message, &mut out);
    out
}

/// Like [`encode`], appending to a caller-owned buffer.
pub fn encode_into(message: &SipMessage, out: &mut Vec<u8>) {
    let mut text = String::with_capacity(512);
    let (headers, body) = match message {
        SipMessage::Request(r) => {
            let _ = write!(text, "{} {} SIP/2.0\r\n", r.method, r.uri);
            (&r.headers, &r.body)
        }
        SipMessage::Response(r) => {
            let code = r.status_code.code();
            let _ = write!(text, "SIP/2.0 {code} {}\r\n", reason_phrase(&r.status_code));
            (&r.headers, &r.body)
        }
    };
    for header in headers.iter() {
        if !matches!(header, Header::ContentLength(_)) {
            let _ = write!(text, "{header}\r\n");
        }
    }
    let _ = write!(text, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(body);
}

/// The reason phrase written for a status code: the RFC's text for well-known codes, the
/// parsed text for others.
pub fn reason_phrase(status: &StatusCode) -> &str {
    if let StatusCode::Other(_, reason) = status {
        if !reason.is_empty() && !reason.contains(['\r', '\n']) {
            return reason;
        }
    }
    match status.code() {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------------
// Readers: allocation-free access to the fields routing and matching need.
// ---------------------------------------------------------------------------------------------

/// The parts of the topmost Via value that transaction matching and response routing use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaParts<'a> {
    /// The transport token (`UDP`, `TCP`, …).
    pub transport: &'a str,
    /// `host[:port]` as written.
    pub sent_by: &'a str,
    /// The branch parameter.
    pub branch: &'a str,
    /// The `received` parameter, if present.
    pub received: Option<&'a str>,
    /// The `rport` parameter: `None` if absent, `Some(None)` if present without a value.
    pub rport: Option<Option<&'a str>>,
}

/// The first value of the first header selected by `pick`.
pub fn first_value<'a>(
    headers: &'a Headers,
    pick: impl Fn(&'a Header) -> Option<&'a str>,
) -> Option<&'a str> {
    headers.iter().find_map(pick)
}

/// Reads the topmost Via value (the first element of the first Via header).
pub fn top_via(headers: &Headers) -> Result<ViaParts<'_>, ParseError> {
    let value = first_value(headers, |h| match h {
        Header::Via(v) => Some(v.value()),
        _ => None,
    })
    .ok_or(ParseError::MissingHeader("Via"))?;
    let first = split_list(value)
        .next()
        .ok_or(ParseError::InvalidHeader("Via"))?;
    parse_via(first)
}

/// Parses one Via value: `SIP/2.0/UDP host:port;branch=…;rport`.
pub fn parse_via(value: &str) -> Result<ViaParts<'_>, ParseError> {
    let value = value.trim();
    let (protocol, rest) = value
        .split_once([' ', '\t'])
        .ok_or(ParseError::InvalidHeader("Via"))?;
    let mut protocol_parts = protocol.split('/');
    let (Some(name), Some(version), Some(transport), None) = (
        protocol_parts.next(),
        protocol_parts.next(),
        protocol_parts.next(),
        protocol_parts.next(),
    ) else {
        return Err(ParseError::InvalidHeader("Via"));
    };
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" || transport.is_empty() {
        return Err(ParseError::InvalidHeader("Via"));
    }
    let rest = rest.trim_start();
    let (sent_by, params) = match rest.find(';') {
        Some(pos) => (rest[..pos].trim(), &rest[pos..]),
        None => (rest.trim(), ""),
    };
    if sent_by.is_empty() || sent_by.contains([' ', '\t']) {
        return Err(ParseError::InvalidHeader("Via"));
    }
    let mut branch = None;
    let mut received = None;
    let mut rport = None;
    for (name, value) in params_of(params) {
        if name.eq_ignore_ascii_case("branch") {
            branch = value;
        } else if name.eq_ignore_ascii_case("received") {
            received = value;
        } else if name.eq_ignore_ascii_case("rport") {
            rport = Some(value);
        }
    }
    let branch = branch
        .filter(|b| !b.is_empty())
        .ok_or(ParseError::MissingBranch)?;
    Ok(ViaParts {
        transport,
        sent_by,
        branch,
        received,
        rport,
    })
}

/// The Call-ID value.
pub fn call_id(headers: &Headers) -> Result<&str, ParseError> {
    let value = first_value(headers, |h| match h {
        Header::CallId(v) => Some(v.value()),
        _ => None,
    })
    .ok_or(ParseError::MissingHeader("Call-ID"))?
    .trim();
    if value.is_empty() {
        return Err(ParseError::InvalidHeader("Call-ID"));
    }
    Ok(value)
}

/// The CSeq number and method.
pub fn cseq(headers: &Headers) -> Result<(u32, Method), ParseError> {
    let value = first_value(headers, |h| match h {
        Header::CSeq(v) => Some(v.value()),
        _ => None,
    })
    .ok_or(ParseError::MissingHeader("CSeq"))?;
    let mut parts = value.split_ascii_whitespace();
    let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::InvalidHeader("CSeq"));
    };
    let number = number
        .parse::<u32>()
        .ok()
        .filter(|n| *n < 1 << 31)
        .ok_or(ParseError::InvalidHeader("CSeq"))?;
    let method = Method::from_str(method).map_err(|_| ParseError::InvalidHeader("CSeq"))?;
    Ok((number, method))
}

/// The From header value.
pub fn from_value(headers: &Headers) -> Option<&str> {
    first_value(headers, |h| match h {
        Header::From(v) => Some(v.value()),
        _ => None,
    })
}

/// The To header value.
pub fn to_value(headers: &Headers) -> Option<&str> {
    first_value(headers, |h| match h {
        Header::To(v) => Some(v.value()),
        _ => None,
    })
}

/// The tag of the From header, if any.
pub fn from_tag(headers: &Headers) -> Option<&str> {
    from_value(headers).and_then(tag_param)
}

/// The tag of the To header, if any.
pub fn to_tag(headers: &Headers) -> Option<&str> {
    to_value(headers).and_then(tag_param)
}

/// The `tag` parameter of a From/To value.
pub fn tag_param(value: &str) -> Option<&str> {
    header_param(value, "tag").flatten()
}

/// A header parameter of a name-addr / addr-spec value (From, To, Contact, Route …): the
/// parameters after `<uri>`, or after the URI's first `;` if there are no angle brackets
/// (RFC 3261 §20.10). `Some(None)` is a parameter without value.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<Option<&'a str>> {
    params_of(header_params_part(value))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The URI part of a name-addr / addr-spec value (without angle brackets and header params).
pub fn uri_part(value: &str) -> &str {
    let value = value.trim();
    match find_unquoted(value, b'<') {
        Some(open) => {
            let after = &value[open + 1..];
            match after.find('>') {
                Some(close) => after[..close].trim(),
                None => after.trim(),
            }
        }
        None => match value.find(';') {
            Some(pos) => value[..pos].trim(),
            None => value,
        },
    }
}

pub(crate) fn header_params_part(value: &str) -> &str {
    match find_unquoted(value, b'<') {
        Some(open) => match value[open..].find('>') {
            Some(close) => &value[open + close + 1..],
            None => "",
        },
        None => match value.find(';') {
            Some(pos) => &value[pos..],
            None => "",
        },
    }
}

fn find_unquoted(value: &str, needle: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == needle {
            return Some(i);
        }
    }
    None
}

/// Iterates `;name[=value]` parameters (a leading `;` is optional).
pub(crate) fn params_of(params: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    params
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        })
}

/// Splits a comma-separated header value (several Vias, Contacts, Routes in one line) at
/// commas outside quotes and angle brackets.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(value);
    std::iter::from_fn(move || loop {
        let current = rest?;
        let mut quoted = false;
        let mut angle = false;
        let mut escaped = false;
        let mut cut = None;
        for (i, b) in current.bytes().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    cut = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let item = match cut {
            Some(i) => {
                rest = Some(&current[i + 1..]);
                &current[..i]
            }
            None => {
                rest = None;
                current
            }
        };
        let item = item.trim();
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// All values of the headers selected by `pick`, split at list commas, in order.
pub fn list_values<'a>(
    headers: &'a Headers,
    pick: impl Fn(&'a Header) -> Option<&'a str> + 'a,
) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter_map(pick).flat_map(split_list)
}

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/// A fresh RFC 3261 branch: the magic cookie and 16 random characters.
pub fn new_branch() -> String {
    let mut branch = String::with_capacity(BRANCH_COOKIE.len() + 16);
    branch.push_str(BRANCH_COOKIE);
    push_random(&mut branch, 16);
    branch
}

/// A fresh From/To tag (12 random characters).
pub fn new_tag() -> String {
    let mut tag = String::with_capacity(12);
    push_random(&mut tag, 12);
    tag
}

/// A fresh Call-ID: 20 random characters `@` the given host.
pub fn new_call_id(host: &str) -> String {
    let mut id = String::with_capacity(21 + host.len());
    push_random(&mut id, 20);
    id.push('@');
    id.push_str(host);
    id
}

fn push_random(out: &mut String, n: usize) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    for _ in 0..n {
        out.push(char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]));
    }
}

/// A Via value for a request we send: `SIP/2.0/UDP sent-by;branch=…;rport`.
pub fn via_value(transport: Transport, sent_by: &str, branch: &str) -> String {
    format!(
        "SIP/2.0/{} {sent_by};branch={branch};rport",
        transport.via_token()
    )
}

/// Builds a response to `request` (RFC 3261 §8.2.6): Via headers, From, Call-ID and CSeq are
/// copied; To is copied and gets `to_tag` unless it already has a tag; Record-Route is copied
/// on dialog-creating responses (101–299 to INVITE, SUBSCRIBE, REFER). The body is empty and the
/// transaction user adds Contact, Content-Type and a body as needed.
pub fn response_to(
    request: &Request,
    status: impl Into<StatusCode>,
    to_tag: Option<&str>,
) -> Response {
    let status = status.into();
    let code = status.code();
    let creates_dialog = (101..300).contains(&code)
        && matches!(
            request.method,
            Method::Invite | Method::Subscribe | Method::Refer
        );
    let mut headers = Vec::with_capacity(8);
    for header in request.headers.iter() {
        match header {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                headers.push(header.clone())
            }
            Header::RecordRoute(_) if creates_dialog => headers.push(header.clone()),
            Header::To(to) => match to_tag {
                Some(tag) if tag_param(to.value()).is_none() => headers.push(Header::To(
                    rsip::headers::To::new(format!("{};tag={tag}", to.value())),
                )),
                _ => headers.push(header.clone()),
            },
            _ => {}
        }
    }
    Response {
        status_code: status,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    }
}

/// A 503 to `request` asking to try again in `retry_after` seconds (RFC 3261 §21.5.4), with a
/// new To tag.
pub fn service_unavailable(request: &Request, retry_after: u32) -> Response {
    let mut response = response_to(request, 503, Some(&new_tag()));
    response
        .headers
        .push(Header::RetryAfter(rsip::headers::RetryAfter::new(
            retry_after.to_string(),
        )));
    response
}

/// Builds the CANCEL for a client INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To,
/// top Via (so the same branch) and Route headers, CSeq number of the INVITE with method CANCEL.
pub fn cancel_for(invite: &Request) -> Result<Request, ParseError> {
    sibling_request(invite, Method::Cancel, None)
}

/// Builds a request that shares the INVITE's transaction identity: CANCEL, or the ACK for a
/// non-2xx final response (§17.1.1.3), whose To comes from the response.
pub(crate) fn sibling_request(
    invite: &Request,
    method: Method,
    to_from_response: Option<&Headers>,
) -> Result<Request, ParseError> {
    let (number, _) = cseq(&invite.headers)?;
    let mut headers = Vec::with_capacity(8);
    let mut via_done = false;
    for header in invite.headers.iter() {
        match header {
            Header::Via(via) if !via_done => {
                let top = split_list(via.value())
                    .next()
                    .ok_or(ParseError::InvalidHeader("Via"))?;
                headers.push(Header::Via(rsip::headers::Via::new(top)));
                via_done = true;
            }
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(header.clone())
            }
            Header::To(_) => match to_from_response.and_then(to_value) {
                Some(to) => headers.push(Header::To(rsip::headers::To::new(to))),
                None => headers.push(header.clone()),
            },
            _ => {}
        }
    }
    headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
        "{number} {method}"
    ))));
    Ok(Request {
        method,
        uri: invite.uri.clone(),
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    })
}

/// Marks the top Via of a received request with where it really came from (RFC 3261 §18.2.1
/// and RFC 3581): `received=<ip>` when the sent-by host differs from the source address (or
/// `rport` asks for it), and `rport=<port>` when the client asked for it. Responses then go
/// back through the NAT binding the request opened.
pub fn stamp_received(request: &mut Request, source: SocketAddr) {
    let Some(via) = request.headers.iter_mut().find_map(|h| match h {
        Header::Via(v) => Some(v),
        _ => None,
    }) else {
        return;
    };
    let value = via.value();
    let top_len = split_list(value).next().map_or(0, |top| {
        // `top` is a trimmed sub-slice of `value`; keep everything up to its end.
        top.as_ptr() as usize - value.as_ptr() as usize + top.len()
    });
    let (top, tail) = value.split_at(top_len);
    let Ok(parts) = parse_via(top) else { return };
    let ip = source.ip().to_string();
    let host = sent_by_host(parts.sent_by);
    let wants_rport = parts.rport.is_some();
    let needs_received = wants_rport || !host.eq_ignore_ascii_case(ip.trim_matches(['[', ']']));
    if !needs_received && !wants_rport {
        return;
    }
    let mut rebuilt = String::with_capacity(value.len() + 40);
    // Rewrite the parameter list: drop old received/rport, then append fresh ones.
    let params_start = top.find(';').unwrap_or(top.len());
    rebuilt.push_str(&top[..params_start]);
    for (name, param_value) in params_of(&top[params_start..]) {
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        rebuilt.push(';');
        rebuilt.push_str(name);
        if let Some(v) = param_value {
            rebuilt.push('=');
            rebuilt.push_str(v);
        }
    }
    if needs_received {
        let _ = write!(rebuilt, ";received={}", source.ip());
    }
    if wants_rport {
        let _ = write!(rebuilt, ";rport={}", source.port());
    }
    rebuilt.push_str(tail);
    via.replace(rebuilt);
}

/// The host of a `host[:port]` sent-by (IPv6 references keep no brackets).
pub fn sent_by_host(sent_by: &str) -> &str {
    if let Some(rest) = sent_by.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    sent_by.split(':').next().unwrap_or(sent_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn limits() -> Limits {
        Limits::default()
    }

    fn request(text: &str) -> Request {
        match parse_datagram(text.as_bytes(), &limits()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_valid_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.body, b"v=0\n");
        assert_eq!(
            call_id(&r.headers),
            Ok("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(cseq(&r.headers), Ok((314159, Method::Invite)));
        assert_eq!(from_tag(&r.headers), Some("1928301774"));
        assert_eq!(to_tag(&r.headers), None);
        let via = top_via(&r.headers).expect("via");
        assert_eq!(via.branch, "z9hG4bK776asdhds");
        assert_eq!(via.sent_by, "pc33.atlanta.example.com");
        assert_eq!(via.transport, "UDP");
    }

    #[test]
    fn compact_names_and_folding_are_normalised() {
        let text = "OPTIONS sip:bob@b.example SIP/2.0\r\n\
v: SIP/2.0/UDP a.example:5060\r\n ;branch=z9hG4bKx1\r\n\
Max-Forwards : 70\r\n\
t: <sip:bob@b.example>\r\n\
f: <sip:alice@a.example>;tag=abc\r\n\
i: cid1\r\n\
CSeq: 1 OPTIONS\r\n\
l: 0\r\n\r\n";
        let r = request(text);
        assert_eq!(top_via(&r.headers).map(|v| v.branch), Ok("z9hG4bKx1"));
        assert_eq!(call_id(&r.headers), Ok("cid1"));
        assert!(r.body.is_empty());
    }

    #[test]
    fn body_is_cut_at_content_length_and_short_bodies_fail() {
        let longer = INVITE.to_owned() + "garbage";
        assert_eq!(request(&longer).body, b"v=0\n");
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        assert_eq!(
            parse_datagram(short.as_bytes(), &limits()),
            Err(ParseError::TruncatedBody {
                declared: 40,
                present: 4
            })
        );
        let bad = INVITE.replace("Content-Length: 4", "Content-Length: four");
        assert_eq!(
            parse_datagram(bad.as_bytes(), &limits()),
            Err(ParseError::InvalidContentLength)
        );
    }

    #[test]
    fn missing_mandatory_headers_are_reported() {
        let cases = [
            (
                "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n",
                ParseError::MissingHeader("Call-ID"),
            ),
            (
                "Max-Forwards: 70\r\n",
                ParseError::MissingHeader("Max-Forwards"),
            ),
            (";tag=1928301774", ParseError::MissingFromTag),
            (";branch=z9hG4bK776asdhds", ParseError::MissingBranch),
        ];
        for (remove, expected) in cases {
            let text = INVITE.replace(remove, "");
            assert_eq!(
                parse_datagram(text.as_bytes(), &limits()),
                Err(expected),
                "{remove}"
            );
        }
        let text = INVITE.replace("CSeq: 314159 INVITE", "CSeq: 314159 BYE");
        assert_eq!(
            parse_datagram(text.as_bytes(), &limits()),
            Err(ParseError::CSeqMethodMismatch)
        );
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits {
            max_header_bytes: 64,
            max_body_bytes: 2,
        };
        assert_eq!(
            parse_datagram(INVITE.as_bytes(), &small),
            Err(ParseError::HeadersTooLarge { limit: 64 })
        );
        let body_limit = Limits {
            max_header_bytes: 4096,
            max_body_bytes: 2,
        };
        assert_eq!(
            parse_datagram(INVITE.as_bytes(), &body_limit),
            Err(ParseError::BodyTooLarge { size: 4, limit: 2 })
        );
    }

    #[test]
    fn encode_round_trips_and_fixes_content_length() {
        let r = request(INVITE);
        let bytes = encode(&SipMessage::Request(r.clone()));
        let again = parse_datagram(&bytes, &limits()).expect("re-parse");
        assert_eq!(again, SipMessage::Request(r.clone()));
        let mut changed = r;
        changed.body = b"longer body".to_vec();
        let text = String::from_utf8(encode(&changed.into())).expect("utf8");
        assert!(text.contains("Content-Length: 11\r\n"));
        assert_eq!(text.matches("Content-Length").count(), 1);
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_a_tag() {
        let r = request(&INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nRecord-Route: <sip:p1.example.com;lr>\r\n",
        ));
        let ok = response_to(&r, 200, Some("xyz"));
        assert_eq!(to_tag(&ok.headers), Some("xyz"));
        assert_eq!(cseq(&ok.headers), Ok((314159, Method::Invite)));
        assert!(ok
            .headers
            .iter()
            .any(|h| matches!(h, Header::RecordRoute(_))));
        let trying = response_to(&r, 100, None);
        assert_eq!(to_tag(&trying.headers), None);
        assert!(!trying
            .headers
            .iter()
            .any(|h| matches!(h, Header::RecordRoute(_))));
        let parsed = parse_datagram(&encode(&ok.into()), &limits()).expect("parse");
        assert!(parsed.is_response());
    }

    #[test]
    fn cancel_copies_the_invite_identity() {
        let invite = request(INVITE);
        let cancel = cancel_for(&invite).expect("cancel");
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cseq(&cancel.headers), Ok((314159, Method::Cancel)));
        assert_eq!(
            top_via(&cancel.headers).map(|v| v.branch),
            Ok("z9hG4bK776asdhds")
        );
        assert!(validate(&cancel.into()).is_ok());
    }

    #[test]
    fn received_and_rport_are_stamped() {
        let mut r =
            request(&INVITE.replace("branch=z9hG4bK776asdhds", "branch=z9hG4bK776asdhds;rport"));
        let source: SocketAddr = "192.0.2.7:40000".parse().expect("addr");
        stamp_received(&mut r, source);
        let via = top_via(&r.headers).expect("via");
        assert_eq!(via.received, Some("192.0.2.7"));
        assert_eq!(via.rport, Some(Some("40000")));
        assert_eq!(via.branch, "z9hG4bK776asdhds");
    }

    #[test]
    fn list_splitting_respects_quotes_and_brackets() {
        let items: Vec<_> =
            split_list(r#""Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d> , sip:e@f"#).collect();
        assert_eq!(
            items,
            vec![
                r#""Doe, John" <sip:a@b;x=1,2>;q=0.5"#,
                "<sip:c@d>",
                "sip:e@f"
            ]
        );
        assert_eq!(uri_part(items[0]), "sip:a@b;x=1,2");
        assert_eq!(header_param(items[0], "q"), Some(Some("0.5")));
        assert_eq!(header_param("sip:e@f;tag=1", "tag"), Some(Some("1")));
    }

    #[test]
    fn keep_alives_are_recognised() {
        assert!(is_keep_alive(b"\r\n\r\n"));
        assert!(!is_keep_alive(INVITE.as_bytes()));
    }
}
