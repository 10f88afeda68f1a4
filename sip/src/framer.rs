//! Cutting a TCP/TLS byte stream into SIP messages. A [`StreamFramer`] buffers whatever chunks
//! the socket delivers and yields complete [`Frame`]s: messages framed by their mandatory
//! Content-Length (RFC 3261 §18.3), and keep-alive pings (a bare CRLFCRLF, RFC 5626 §3.5.1)
//! which the connection answers with a single CRLF.
//!
//! Size limits are checked before anything large is buffered. An error (always one for which
//! [`ParseError::breaks_framing`] is true) leaves the stream without a message boundary; the
//! connection must then be closed — after answering the message, whose header section
//! [`StreamFramer::broken_head`] keeps when it was read (a body over the limit, no
//! Content-Length). A message that is framed but fails to parse or validate is
//! consumed and yielded as [`Frame::Invalid`] with its header section, so that a request can be
//! answered 400, and framing goes on with the next.

use rsip::SipMessage;

use crate::message::{assemble, normalize_head, Head, Limits, ParseError};

/// What the framer found in the stream.
// Boxing the message would cost an allocation per message on the hot path; the enum is
// moved a few times at most, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete, validated message.
    Message(SipMessage),
    /// A CRLFCRLF keep-alive ping between messages; answer with `\r\n`.
    KeepAlive,
    /// A framed message that failed to parse or validate, consumed: its header section (as
    /// received, or normalised when only the message's checks failed) and why.
    Invalid { error: ParseError, head: Vec<u8> },
}

/// Incremental framer for one stream connection.
#[derive(Debug)]
pub struct StreamFramer {
    limits: Limits,
    buf: Vec<u8>,
    /// How far the buffer has been searched for the end of the header section.
    scanned: usize,
    /// A complete header section whose body is still arriving.
    pending: Option<PendingHead>,
    /// Set after an error that breaks framing; the framer refuses further input.
    broken: Option<ParseError>,
    /// The header section of the message that broke framing, if it was read.
    broken_head: Option<Vec<u8>>,
}

enum Found {
    KeepAlive,
    Head(PendingHead),
    Invalid(ParseError, Vec<u8>),
}

#[derive(Debug)]
struct PendingHead {
    head_len: usize,
    body_len: usize,
    head: Head,
}

impl StreamFramer {
    /// A framer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            buf: Vec::new(),
            scanned: 0,
            pending: None,
            broken: None,
            broken_head: None,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.broken.is_none() {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The header section of the message that broke framing, when it could be read: enough
    /// to answer it before the connection closes.
    pub fn broken_head(&self) -> Option<&[u8]> {
        self.broken_head.as_deref()
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, `Ok(None)` if more bytes are needed. An error means the stream cannot
    /// be framed any further (it [breaks framing](ParseError::breaks_framing)): every later
    /// call returns it again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if let Some(err) = &self.broken {
            return Err(err.clone());
        }
        match self.frame() {
            Err(err) => {
                self.buf = Vec::new();
                self.broken = Some(err.clone());
                Err(err)
            }
            other => other,
        }
    }

    fn frame(&mut self) -> Result<Option<Frame>, ParseError> {
        if self.pending.is_none() {
            match self.find_head()? {
                Some(Found::Head(pending)) => self.pending = Some(pending),
                Some(Found::KeepAlive) => return Ok(Some(Frame::KeepAlive)),
                Some(Found::Invalid(error, head)) => {
                    return Ok(Some(Frame::Invalid { error, head }))
                }
                None => return Ok(None),
            }
        }
        let Some(pending) = &self.pending else {
            return Ok(None);
        };
        let total = pending.head_len + pending.body_len;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let Some(pending) = self.pending.take() else {
            return Ok(None);
        };
        let result = assemble(&pending.head.bytes, &self.buf[pending.head_len..total]);
        self.consume(total);
        Ok(Some(match result {
            Ok(message) => Frame::Message(message),
            Err(error) => Frame::Invalid {
                error,
                head: pending.head.bytes,
            },
        }))
    }

    /// Looks for the next header section; consumes keep-alives on the way.
    fn find_head(&mut self) -> Result<Option<Found>, ParseError> {
        // Between messages: CRLFCRLF is a ping, a lone CRLF a pong (ignored).
        loop {
            if self.buf.starts_with(b"\r\n\r\n") {
                self.consume(4);
                return Ok(Some(Found::KeepAlive));
            }
            if self.buf.starts_with(b"\r\n") && self.buf.len() >= 4 {
                self.consume(2);
                continue;
            }
            if b"\r\n\r".starts_with(&self.buf) {
                // Empty, or a possible keep-alive still arriving.
                return Ok(None);
            }
            break;
        }

        // Resume the search a little before where it stopped, in case CRLFCRLF straddles chunks;
        // never look past the header limit.
        let from = self.scanned.saturating_sub(3);
        let window_end = self.buf.len().min(self.limits.max_header_bytes);
        let found = self.buf[from.min(window_end)..window_end]
            .windows(4)
            .position(|w| w == b"\r\n\r\n");
        let head_len = match found {
            Some(pos) => from + pos + 4,
            None if self.buf.len() >= self.limits.max_header_bytes => {
                return Err(ParseError::HeadersTooLarge {
                    limit: self.limits.max_header_bytes,
                })
            }
            None => {
                self.scanned = self.buf.len();
                return Ok(None);
            }
        };
        // A header section that does not parse (a malformed start line, say) is consumed with
        // its error, so that the next call moves on instead of failing on it again — unless
        // the error leaves the body's length unknown (a malformed header line, a bad or
        // conflicting Content-Length): its body would be read as the next message.
        let head = match normalize_head(&self.buf[..head_len]) {
            Ok(head) => head,
            Err(err) if err.breaks_framing() => {
                self.broken_head = Some(self.buf[..head_len].to_vec());
                return Err(err);
            }
            Err(err) => {
                let raw = self.buf[..head_len].to_vec();
                self.consume(head_len);
                return Ok(Some(Found::Invalid(err, raw)));
            }
        };
        let body_len = match head.content_length {
            Some(len) if len > self.limits.max_body_bytes => Err(ParseError::BodyTooLarge {
                size: len,
                limit: self.limits.max_body_bytes,
            }),
            Some(len) => Ok(len),
            None => Err(ParseError::MissingContentLength),
        };
        let body_len = body_len.inspect_err(|_| self.broken_head = Some(head.bytes.clone()))?;
        Ok(Some(Found::Head(PendingHead {
            head_len,
            body_len,
            head,
        })))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:b@b.example SIP/2.0\r\n\
Via: SIP/2.0/TCP a.example;branch=z9hG4bKab1\r\n\
Max-Forwards: 70\r\n\
To: <sip:b@b.example>\r\n\
From: <sip:a@a.example>;tag=t1\r\n\
Call-ID: c1\r\n\
CSeq: 7 OPTIONS\r\n\
Content-Length: 5\r\n\r\nhello";

    fn drain(framer: &mut StreamFramer) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(Some(frame)) = framer.next_frame() {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn messages_split_across_chunks_are_reassembled() {
        let stream = format!("\r\n\r\n{OPTIONS}{OPTIONS}\r\n");
        for chunk_size in [1, 2, 3, 7, 64, 1000] {
            let mut framer = StreamFramer::new(Limits::default());
            let mut frames = Vec::new();
            for chunk in stream.as_bytes().chunks(chunk_size) {
                framer.push(chunk);
                frames.extend(drain(&mut framer));
            }
            assert_eq!(frames.len(), 3, "chunk size {chunk_size}");
            assert_eq!(frames[0], Frame::KeepAlive);
            for frame in &frames[1..] {
                let Frame::Message(m) = frame else {
                    panic!("expected a message")
                };
                assert_eq!(m.body(), b"hello");
            }
        }
    }

    #[test]
    fn a_header_section_that_does_not_parse_is_dropped_and_framing_goes_on() {
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(format!("X\n\r\n\r\n{OPTIONS}").as_bytes());
        let Ok(Some(Frame::Invalid { error, head })) = framer.next_frame() else {
            panic!("a malformed start line")
        };
        assert!(!error.breaks_framing(), "{error}");
        assert_eq!(head, b"X\n\r\n\r\n");
        let Ok(Some(Frame::Message(m))) = framer.next_frame() else {
            panic!("the next message is framed")
        };
        assert_eq!(m.body(), b"hello");
        assert_eq!(framer.buffered(), 0);
    }

    #[test]
    fn a_body_of_unknown_length_breaks_the_stream() {
        // Its "body" would otherwise be framed as the next message.
        for head in [
            OPTIONS.replace("Content-Length: 5\r\n", "Content-Length: five\r\n"),
            OPTIONS.replace("Content-Length: 5\r\n", "Content-Length: 5\r\nl: 7\r\n"),
            OPTIONS.replace("Call-ID: c1\r\n", "Call-ID c1\r\n"),
        ] {
            let mut framer = StreamFramer::new(Limits::default());
            framer.push(format!("{head}{OPTIONS}").as_bytes());
            let Err(error) = framer.next_frame() else {
                panic!("framed after {head:?}")
            };
            assert!(error.breaks_framing(), "{error}");
            assert!(framer
                .broken_head()
                .is_some_and(|h| h.starts_with(b"OPTIONS sip:b@b.example SIP/2.0\r\n")));
        }
    }

    #[test]
    fn missing_content_length_breaks_the_stream() {
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(OPTIONS.replace("Content-Length: 5\r\n", "").as_bytes());
        assert_eq!(framer.next_frame(), Err(ParseError::MissingContentLength));
        assert_eq!(framer.next_frame(), Err(ParseError::MissingContentLength));
        assert!(framer
            .broken_head()
            .is_some_and(|head| head.starts_with(b"OPTIONS sip:b@b.example SIP/2.0\r\n")));
    }

    #[test]
    fn oversized_headers_and_bodies_are_rejected_early() {
        let limits = Limits {
            max_header_bytes: 100,
            max_body_bytes: 3,
        };
        let mut framer = StreamFramer::new(limits);
        framer.push(&[b'a'; 150]);
        assert_eq!(
            framer.next_frame(),
            Err(ParseError::HeadersTooLarge { limit: 100 })
        );
        assert_eq!(framer.broken_head(), None, "no header section to answer");
        let mut framer = StreamFramer::new(Limits {
            max_header_bytes: 1000,
            max_body_bytes: 3,
        });
        framer.push(OPTIONS.as_bytes());
        assert_eq!(
            framer.next_frame(),
            Err(ParseError::BodyTooLarge { size: 5, limit: 3 })
        );
        assert!(framer
            .broken_head()
            .is_some_and(|head| head.ends_with(b"Content-Length: 5\r\n\r\n")));
    }

    #[test]
    fn a_bad_message_with_good_framing_is_skipped() {
        let bad = OPTIONS.replace("Call-ID: c1\r\n", "");
        let mut framer = StreamFramer::new(Limits::default());
        framer.push(format!("{bad}{OPTIONS}").as_bytes());
        let Ok(Some(Frame::Invalid { error, head })) = framer.next_frame() else {
            panic!("a message without Call-ID")
        };
        assert_eq!(error, ParseError::MissingHeader("Call-ID"));
        assert!(head.starts_with(b"OPTIONS sip:b@b.example SIP/2.0\r\n"));
        assert!(matches!(framer.next_frame(), Ok(Some(Frame::Message(_)))));
        assert_eq!(framer.buffered(), 0);
    }
}
