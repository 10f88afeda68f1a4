//! RTP (RFC 3550) for a media relay: the packet header read and written without allocating,
//! the symmetric relay state of a bridged call, and the packetizer that turns 20 ms G.711
//! frames into a continuous RTP stream for announcements and music on hold.
//!
//! Start with [`RtpPacket::parse`] (a borrowed view of a datagram) and [`RtpHeader`]; then
//! [`Relay`], which the call's media task consults for every datagram it reads: it latches each
//! leg's real address from the first packet that leg sends (symmetric RTP, so callers behind
//! NAT work whatever their SDP says), tells where to forward the datagram — unchanged — and
//! keeps per-leg counters ([`LegStats`]). [`Packetizer`] is the sending side for media vacd
//! generates itself.
//!
//! Like the rest of the crate this is sans-IO: no sockets, no clock reads. RTCP is ignored:
//! nothing here reads or writes it, so a media task built on this module binds only the RTP
//! port and the phones' sender/receiver reports (sent to RTP + 1) go unanswered, which RFC 3550
//! endpoints tolerate. An RTCP packet that reaches an RTP port anyway (RTP + 1 of a
//! neighbouring call's socket) is dropped, never latched on: no RTCP multiplexing is
//! negotiated. Quality figures come from [`LegStats`] instead. SRTP is out of scope.

use std::net::SocketAddr;

/// Length of the fixed RTP header.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the fixed header, or than its CSRC list / extension / padding declare.
    #[error("packet truncated: {needed} bytes needed, {present} present")]
    Truncated {
        /// Bytes the header fields require.
        needed: usize,
        /// Bytes in the datagram.
        present: usize,
    },
    /// The version field is not 2.
    #[error("unsupported RTP version {0}")]
    Version(u8),
    /// The padding count is zero or larger than the space after the header.
    #[error("invalid padding length")]
    Padding,
    /// An output buffer is too small for the header being written.
    #[error("buffer of {present} bytes is too small, {needed} needed")]
    BufferTooSmall {
        /// Bytes required.
        needed: usize,
        /// Bytes available.
        present: usize,
    },
    /// A header field is out of range (payload type above 127, more than 15 CSRCs).
    #[error("header field out of range: {0}")]
    FieldRange(&'static str),
}

/// The fixed RTP header fields (RFC 3550 §5.1). The version is always 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader {
    /// P: the packet ends with padding.
    pub padding: bool,
    /// X: a header extension follows the CSRC list.
    pub extension: bool,
    /// CC: number of CSRC identifiers.
    pub csrc_count: u8,
    /// M: marker, e.g. the first packet of a talkspurt.
    pub marker: bool,
    /// PT: payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp, in clock-rate units (8000 Hz for G.711).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl RtpHeader {
    /// Reads the fixed 12 bytes; the rest of the packet is not looked at.
    pub fn parse(buf: &[u8]) -> Result<Self, RtpError> {
        let Some(fixed) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(RtpError::Truncated {
                needed: HEADER_LEN,
                present: buf.len(),
            });
        };
        let version = fixed[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        Ok(Self {
            padding: fixed[0] & 0x20 != 0,
            extension: fixed[0] & 0x10 != 0,
            csrc_count: fixed[0] & 0x0F,
            marker: fixed[1] & 0x80 != 0,
            payload_type: fixed[1] & 0x7F,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        })
    }

    /// Writes the fixed 12 bytes to the start of `out` (CSRCs and extension, if the flags
    /// announce them, are the caller's to write after it). Returns [`HEADER_LEN`].
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtpError> {
        if self.payload_type > 0x7F {
            return Err(RtpError::FieldRange("payload type"));
        }
        if self.csrc_count > 15 {
            return Err(RtpError::FieldRange("CSRC count"));
        }
        let present = out.len();
        let Some(fixed) = out.first_chunk_mut::<HEADER_LEN>() else {
            return Err(RtpError::BufferTooSmall {
                needed: HEADER_LEN,
                present,
            });
        };
        fixed[0] = 0x80
            | (u8::from(self.padding) << 5)
            | (u8::from(self.extension) << 4)
            | self.csrc_count;
        fixed[1] = (u8::from(self.marker) << 7) | self.payload_type;
        fixed[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        fixed[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        fixed[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        Ok(HEADER_LEN)
    }

    /// Whether the payload type field, as the second byte of an RTCP packet would set it,
    /// marks an RTCP packet multiplexed on the RTP port (RFC 5761 §4: 200–204 → 72–76).
    pub fn is_rtcp(&self) -> bool {
        (72..=76).contains(&self.payload_type)
    }
}

/// A parsed RTP packet borrowing the datagram it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header.
    pub header: RtpHeader,
    csrcs: &'a [u8],
    /// Header extension: the profile-defined 16 bits and the extension data.
    pub extension: Option<(u16, &'a [u8])>,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

impl<'a> RtpPacket<'a> {
    /// Checks and splits a datagram. Every length comes from the packet and is checked
    /// against the datagram before use.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let header = RtpHeader::parse(buf)?;
        let truncated = |needed| RtpError::Truncated {
            needed,
            present: buf.len(),
        };
        let mut at = HEADER_LEN;
        let csrc_end = at + 4 * usize::from(header.csrc_count);
        let csrcs = buf.get(at..csrc_end).ok_or(truncated(csrc_end))?;
        at = csrc_end;
        let extension = if header.extension {
            let ext_head = buf.get(at..at + 4).ok_or(truncated(at + 4))?;
            let profile = u16::from_be_bytes([ext_head[0], ext_head[1]]);
            let words = usize::from(u16::from_be_bytes([ext_head[2], ext_head[3]]));
            let end = at + 4 + 4 * words;
            let data = buf.get(at + 4..end).ok_or(truncated(end))?;
            at = end;
            Some((profile, data))
        } else {
            None
        };
        let mut end = buf.len();
        if header.padding {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || pad > end - at {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        Ok(Self {
            header,
            csrcs,
            extension,
            payload: &buf[at..end],
        })
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.csrcs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
}

/// Writes a packet with a plain header (no CSRC, extension or padding) and `payload` into
/// `out`, replacing its contents.
pub fn write_packet(header: &RtpHeader, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RtpError> {
    let plain = RtpHeader {
        padding: false,
        extension: false,
        csrc_count: 0,
        ..*header
    };
    out.clear();
    out.resize(HEADER_LEN, 0);
    plain.write(out)?;
    out.extend_from_slice(payload);
    Ok(())
}

/// In-place access to the fixed header of a packet in a mutable buffer, for a relay that
/// rewrites SSRC, sequence or timestamp without copying the payload.
#[derive(Debug)]
pub struct HeaderMut<'a>(&'a mut [u8]);

impl<'a> HeaderMut<'a> {
    /// Checks that `buf` starts with an RTP version 2 header.
    pub fn new(buf: &'a mut [u8]) -> Result<Self, RtpError> {
        RtpHeader::parse(buf)?;
        Ok(Self(buf))
    }

    /// Sets the marker bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.0[1] = (self.0[1] & 0x7F) | (u8::from(marker) << 7);
    }

    /// Sets the payload type (the high bit is ignored).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.0[1] = (self.0[1] & 0x80) | (pt & 0x7F);
    }

    /// Sets the sequence number.
    pub fn set_sequence(&mut self, sequence: u16) {
        self.0[2..4].copy_from_slice(&sequence.to_be_bytes());
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, timestamp: u32) {
        self.0[4..8].copy_from_slice(&timestamp.to_be_bytes());
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.0[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Counters of one direction of one leg: what the relay received from that leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    /// RTP packets received and accepted.
    pub packets: u64,
    /// Payload bytes of those packets (headers and padding excluded).
    pub payload_bytes: u64,
    /// Packets dropped: not RTP, or from an address other than the latched one.
    pub dropped: u64,
    /// Packets that arrived with a sequence number at or below the highest seen.
    pub reordered: u64,
    /// Times the sender restarted its stream (new SSRC or a sequence jump).
    pub restarts: u32,
    seq: Option<SeqState>,
    /// Loss of earlier streams (before a restart).
    lost_before: u64,
}

/// Extended-sequence bookkeeping of RFC 3550 Appendix A.1/A.3 for the current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqState {
    ssrc: u32,
    base: u64,
    max: u64,
    received: u64,
}

/// A sequence jump larger than this (in either direction) is taken as a restarted stream
/// rather than loss (RFC 3550 A.1 uses 3000 as MAX_DROPOUT).
const MAX_DROPOUT: u64 = 3000;
/// Packets older than this many behind the highest are "very late"; they start a new stream.
const MAX_MISORDER: u64 = 100;

impl LegStats {
    /// Packets lost in transit: expected (from the sequence numbers) minus received, over all
    /// streams of this leg. Duplicates can make a stream's figure negative; it is clamped at 0.
    pub fn lost(&self) -> u64 {
        let current = self.seq.map_or(0, |s| {
            let expected = s.max - s.base + 1;
            expected.saturating_sub(s.received)
        });
        self.lost_before + current
    }

    fn record(&mut self, header: &RtpHeader, payload_len: usize) {
        self.packets += 1;
        self.payload_bytes += payload_len as u64;
        let seq = u64::from(header.sequence);
        let Some(state) = self.seq.as_mut().filter(|s| s.ssrc == header.ssrc) else {
            self.start_stream(header.ssrc, seq);
            return;
        };
        // Place the 16-bit number next to the highest extended number seen.
        let cycle = state.max & !0xFFFF;
        let candidates = [cycle.wrapping_sub(0x1_0000), cycle, cycle + 0x1_0000];
        let ext = candidates
            .iter()
            .map(|c| c.wrapping_add(seq))
            .min_by_key(|e| e.abs_diff(state.max))
            .unwrap_or(seq);
        if ext > state.max {
            if ext - state.max > MAX_DROPOUT {
                self.restart(header.ssrc, seq);
                return;
            }
            state.max = ext;
            state.received += 1;
        } else if state.max - ext > MAX_MISORDER {
            self.restart(header.ssrc, seq);
        } else {
            self.reordered += 1;
            if ext >= state.base {
                state.received += 1;
            }
        }
    }

    fn restart(&mut self, ssrc: u32, seq: u64) {
        self.lost_before = self.lost();
        self.restarts = self.restarts.saturating_add(1);
        self.seq = Some(SeqState {
            ssrc,
            base: seq,
            max: seq,
            received: 1,
        });
    }

    fn start_stream(&mut self, ssrc: u32, seq: u64) {
        if self.seq.is_some() {
            self.restart(ssrc, seq);
        } else {
            self.seq = Some(SeqState {
                ssrc,
                base: seq,
                max: seq,
                received: 1,
            });
        }
    }
}

/// One side of a bridged call: where its RTP goes and what came from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayLeg {
    /// The address from the leg's SDP; `None` while on hold (c=0.0.0.0) or before the SDP.
    signalled: Option<SocketAddr>,
    /// The source address of the first packet received from the leg since the last
    /// (re-)negotiation.
    latched: Option<SocketAddr>,
    /// Whether the leg wants media (not on hold).
    receiving: bool,
    /// Whether the leg's SDP was applied (at creation with an address, or by
    /// [`RelayLeg::renegotiate`]): until then it is no party to the call's media.
    negotiated: bool,
    stats: LegStats,
}

impl RelayLeg {
    /// A leg whose SDP names `remote` as its RTP address (`None` when unknown or on hold).
    pub fn new(remote: Option<SocketAddr>) -> Self {
        Self {
            signalled: remote,
            latched: None,
            receiving: true,
            negotiated: remote.is_some(),
            stats: LegStats::default(),
        }
    }

    /// Applies a new SDP of this leg (re-INVITE): the signalled address changes and latching
    /// starts over, so a phone that moved is followed. `receiving` is false when the leg put
    /// the call on hold (sendonly, inactive): nothing is forwarded to it then.
    pub fn renegotiate(&mut self, remote: Option<SocketAddr>, receiving: bool) {
        self.signalled = remote;
        self.latched = None;
        self.receiving = receiving;
        self.negotiated = true;
    }

    /// Whether the leg takes part in the call's media: its SDP was applied and it wants media
    /// — with no address yet when its SDP named none vacd can use (a host name): its first
    /// packet latches one.
    pub fn bridged(&self) -> bool {
        self.negotiated && self.receiving
    }

    /// Where packets for this leg go: the latched address, else the signalled one.
    pub fn destination(&self) -> Option<SocketAddr> {
        if !self.receiving {
            return None;
        }
        self.latched.or(self.signalled)
    }

    /// The latched source address, once a packet has arrived.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Whether an RTP packet from `from` is this leg's: the first one since the last
    /// negotiation latches its source, later ones must come from there — except from the
    /// address the leg's SDP names, which always wins: a stray packet that latched first (a
    /// late packet of the call that used this port before) cannot cut the real peer off for
    /// the rest of the call.
    pub fn latch(&mut self, from: SocketAddr) -> bool {
        match self.latched {
            Some(addr) if addr != from && self.signalled == Some(from) => {
                tracing::debug!(%from, stray = %addr, "RTP source re-latched to the SDP address");
                self.latched = Some(from);
                true
            }
            Some(addr) => addr == from,
            None => {
                tracing::debug!(%from, "RTP source latched");
                self.latched = Some(from);
                true
            }
        }
    }

    /// What this leg has sent so far.
    pub fn stats(&self) -> &LegStats {
        &self.stats
    }
}

/// The two legs of a relay. `A` is conventionally the caller, `B` the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegId {
    /// The first leg (the caller).
    A,
    /// The second leg (the agent).
    B,
}

impl LegId {
    /// The other leg.
    pub fn other(self) -> LegId {
        match self {
            LegId::A => LegId::B,
            LegId::B => LegId::A,
        }
    }
}

/// What to do with a datagram the relay was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayAction {
    /// Send the datagram, unchanged, from leg `via`'s socket to `to`.
    Forward {
        /// The leg whose local socket sends it.
        via: LegId,
        /// The destination.
        to: SocketAddr,
    },
    /// Do not send it.
    Drop(DropReason),
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not an RTP version 2 packet.
    Malformed(RtpError),
    /// The leg has latched on another source address (a stray or spoofed packet).
    WrongSource,
    /// The other leg has no address yet, or is on hold.
    NoDestination,
    /// An RTCP packet. vacd negotiates no RTCP multiplexing, so RTCP on an RTP port was meant
    /// for another socket: peers send their reports to RTP + 1, which may be another call's
    /// port (or this call's other leg). Latching on it would take a leg's stream away.
    Rtcp,
}

/// Symmetric RTP relay between two legs. For each datagram read on leg `L`'s local socket,
/// call [`Relay::handle_packet`]; forward as told. Latching: the first valid RTP packet that
/// arrives on a leg fixes that leg's remote address until the next
/// [`RelayLeg::renegotiate`]; later packets from other addresses are dropped, which keeps a
/// third party from hijacking the stream (a leg that really moved re-INVITEs) — except the
/// address the leg's SDP names, which takes the latch over whenever it sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relay {
    a: RelayLeg,
    b: RelayLeg,
}

impl Relay {
    /// A relay between two legs, from their SDP addresses.
    pub fn new(a: Option<SocketAddr>, b: Option<SocketAddr>) -> Self {
        Self {
            a: RelayLeg::new(a),
            b: RelayLeg::new(b),
        }
    }

    /// One leg.
    pub fn leg(&self, id: LegId) -> &RelayLeg {
        match id {
            LegId::A => &self.a,
            LegId::B => &self.b,
        }
    }

    /// One leg, mutably (to [`RelayLeg::renegotiate`]).
    pub fn leg_mut(&mut self, id: LegId) -> &mut RelayLeg {
        match id {
            LegId::A => &mut self.a,
            LegId::B => &mut self.b,
        }
    }

    /// Handles a datagram that arrived from `from` on leg `on`'s local socket.
    pub fn handle_packet(&mut self, on: LegId, from: SocketAddr, datagram: &[u8]) -> RelayAction {
        let leg = self.leg_mut(on);
        let packet = match RtpPacket::parse(datagram) {
            Ok(packet) => packet,
            Err(err) => {
                leg.stats.dropped += 1;
                return RelayAction::Drop(DropReason::Malformed(err));
            }
        };
        if packet.header.is_rtcp() {
            leg.stats.dropped += 1;
            return RelayAction::Drop(DropReason::Rtcp);
        }
        if !leg.latch(from) {
            leg.stats.dropped += 1;
            return RelayAction::Drop(DropReason::WrongSource);
        }
        leg.stats.record(&packet.header, packet.payload.len());
        let other = on.other();
        match self.leg(other).destination() {
            Some(to) => RelayAction::Forward { via: other, to },
            None => RelayAction::Drop(DropReason::NoDestination),
        }
    }
}

/// Samples in a 20 ms frame at 8 kHz — one G.711 frame is this many bytes.
pub const FRAME_SAMPLES: usize = 160;

/// Turns G.711 frames into RTP packets of one stream: sequence numbers and timestamps advance
/// without gaps across whatever sources the frames come from (greeting, music, a message), so
/// the phone's jitter buffer sees one continuous stream. The first packet, and the first after
/// [`Packetizer::pause`], carry the marker bit (RFC 3551 §4.1, start of a talkspurt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packetizer {
    payload_type: u8,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    marker: bool,
}

impl Packetizer {
    /// A stream with the given identifiers. RFC 3550 wants random initial values; see
    /// [`Packetizer::random`].
    pub fn new(payload_type: u8, ssrc: u32, sequence: u16, timestamp: u32) -> Self {
        Self {
            payload_type: payload_type & 0x7F,
            ssrc,
            sequence,
            timestamp,
            marker: true,
        }
    }

    /// A stream with random SSRC, initial sequence number and timestamp.
    pub fn random(payload_type: u8) -> Self {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        Self::new(payload_type, rng.gen(), rng.gen(), rng.gen())
    }

    /// Changes the payload type (after a re-negotiation picked another codec); continuity is
    /// kept.
    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = payload_type & 0x7F;
    }

    /// The SSRC of the stream.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The header the next packet will carry.
    pub fn next_header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            ..RtpHeader::default()
        }
    }

    /// Writes the packet for one G.711 frame (one byte per sample) into `out` and advances
    /// the stream.
    pub fn packetize(&mut self, frame: &[u8], out: &mut Vec<u8>) {
        let header = self.next_header();
        out.clear();
        out.reserve(HEADER_LEN + frame.len());
        out.resize(HEADER_LEN, 0);
        // The header is built from a masked payload type and no CSRCs: writing cannot fail.
        if header.write(out).is_err() {
            unreachable!("packetizer header is always valid");
        }
        out.extend_from_slice(frame);
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(frame.len() as u32);
        self.marker = false;
    }

    /// Skips `samples` of time without sending (silence suppression, a held stream): the
    /// timestamp moves on, the sequence number does not, and the next packet is marked.
    pub fn pause(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn packet(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let header = RtpHeader {
            payload_type: 0,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
            ..RtpHeader::default()
        };
        write_packet(&header, payload, &mut out).expect("write");
        out
    }

    #[test]
    fn header_round_trips_through_write_and_parse() {
        let header = RtpHeader {
            padding: false,
            extension: false,
            csrc_count: 0,
            marker: true,
            payload_type: 101,
            sequence: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let mut buf = [0u8; 12];
        assert_eq!(header.write(&mut buf), Ok(12));
        assert_eq!(buf[0], 0x80);
        assert_eq!(buf[1], 0x80 | 101);
        assert_eq!(RtpHeader::parse(&buf), Ok(header));
        let mut short = [0u8; 11];
        assert!(matches!(
            header.write(&mut short),
            Err(RtpError::BufferTooSmall { .. })
        ));
        let bad = RtpHeader {
            payload_type: 200,
            ..header
        };
        assert_eq!(
            bad.write(&mut buf),
            Err(RtpError::FieldRange("payload type"))
        );
    }

    #[test]
    fn parse_handles_csrcs_extension_and_padding() {
        let mut buf = vec![
            0x80 | 0x20 | 0x10 | 2, // V=2, P, X, CC=2
            8,
            0,
            1,
            0,
            0,
            0,
            160,
            0,
            0,
            0,
            7,
        ];
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // extension, 1 word
        buf.extend_from_slice(b"payload");
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&buf).expect("valid");
        assert_eq!(p.header.payload_type, 8);
        assert_eq!(p.header.sequence, 1);
        assert_eq!(p.header.timestamp, 160);
        assert_eq!(p.header.ssrc, 7);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.extension, Some((0xBEDE, &[9u8, 9, 9, 9][..])));
        assert_eq!(p.payload, b"payload");
    }

    #[test]
    fn malformed_packets_are_rejected() {
        assert!(matches!(
            RtpPacket::parse(&[0x80; 5]),
            Err(RtpError::Truncated { .. })
        ));
        let mut v1 = packet(1, 1, b"x");
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::Version(1)));
        let mut csrc = packet(1, 1, b"");
        csrc[0] |= 3; // claims 3 CSRCs, has none
        assert!(matches!(
            RtpPacket::parse(&csrc),
            Err(RtpError::Truncated { needed: 24, .. })
        ));
        let mut ext = packet(1, 1, &[0, 0, 0, 9]);
        ext[0] |= 0x10; // extension of 9 words that is not there
        assert!(matches!(
            RtpPacket::parse(&ext),
            Err(RtpError::Truncated { .. })
        ));
        let mut pad = packet(1, 1, &[1, 2, 50]);
        pad[0] |= 0x20; // 50 bytes of padding in a 3-byte payload
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::Padding));
        let mut zero_pad = packet(1, 1, &[1, 2, 0]);
        zero_pad[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&zero_pad), Err(RtpError::Padding));
    }

    #[test]
    fn header_mut_rewrites_in_place() {
        let mut buf = packet(5, 42, b"abc");
        let mut h = HeaderMut::new(&mut buf).expect("rtp");
        h.set_sequence(6000);
        h.set_timestamp(123_456);
        h.set_ssrc(99);
        h.set_marker(true);
        h.set_payload_type(8);
        let p = RtpPacket::parse(&buf).expect("valid");
        assert_eq!(
            (
                p.header.sequence,
                p.header.timestamp,
                p.header.ssrc,
                p.header.marker,
                p.header.payload_type
            ),
            (6000, 123_456, 99, true, 8)
        );
        assert_eq!(p.payload, b"abc");
        assert!(HeaderMut::new(&mut [0u8; 4]).is_err());
    }

    #[test]
    fn relay_latches_on_first_source_and_forwards_to_the_other_leg() {
        let caller_sdp = addr("10.0.0.5:4000"); // private address behind NAT
        let caller_nat = addr("203.0.113.7:61000");
        let agent = addr("192.0.2.20:5004");
        let mut relay = Relay::new(Some(caller_sdp), Some(agent));

        // Before the caller sends, media for it goes to its SDP address.
        assert_eq!(
            relay.handle_packet(LegId::B, agent, &packet(1, 9, b"hi")),
            RelayAction::Forward {
                via: LegId::A,
                to: caller_sdp
            }
        );
        // The caller's first packet comes from the NAT's address: latched.
        assert_eq!(
            relay.handle_packet(LegId::A, caller_nat, &packet(1, 7, b"hello")),
            RelayAction::Forward {
                via: LegId::B,
                to: agent
            }
        );
        assert_eq!(relay.leg(LegId::A).latched(), Some(caller_nat));
        // From now on the agent's audio goes to the latched address.
        assert_eq!(
            relay.handle_packet(LegId::B, agent, &packet(2, 9, b"hi")),
            RelayAction::Forward {
                via: LegId::A,
                to: caller_nat
            }
        );
        // A stranger sending to the caller leg's port is ignored.
        assert_eq!(
            relay.handle_packet(LegId::A, addr("198.51.100.1:1234"), &packet(2, 7, b"x")),
            RelayAction::Drop(DropReason::WrongSource)
        );
        let stats = relay.leg(LegId::A).stats();
        assert_eq!(
            (stats.packets, stats.payload_bytes, stats.dropped),
            (1, 5, 1)
        );
    }

    /// A late packet of the call that had this port before arrives first and latches; the
    /// real peer, sending from its SDP address, takes the latch over instead of being dropped
    /// for the rest of the call.
    #[test]
    fn the_sdp_address_takes_over_a_stray_latch() {
        let caller = addr("192.0.2.10:4000");
        let stray = addr("192.0.2.99:4000");
        let agent = addr("192.0.2.20:5004");
        let mut relay = Relay::new(Some(caller), Some(agent));
        relay.handle_packet(LegId::A, stray, &packet(1, 66, b"old call"));
        assert_eq!(relay.leg(LegId::A).latched(), Some(stray));
        assert_eq!(
            relay.handle_packet(LegId::A, caller, &packet(1, 7, b"hello")),
            RelayAction::Forward {
                via: LegId::B,
                to: agent
            }
        );
        assert_eq!(relay.leg(LegId::A).latched(), Some(caller));
        assert_eq!(
            relay.handle_packet(LegId::A, stray, &packet(2, 66, b"old call")),
            RelayAction::Drop(DropReason::WrongSource),
            "once the real peer latched, the stray is dropped"
        );
    }

    /// A sender report (RFC 3550 §6.4.1, no report blocks) as a phone sends it to RTP + 1.
    fn sender_report() -> Vec<u8> {
        let mut report = vec![0x80, 200, 0x00, 0x06];
        report.extend_from_slice(&[0; 24]);
        report
    }

    #[test]
    fn rtcp_on_an_rtp_port_is_neither_latched_on_nor_forwarded() {
        let caller = addr("192.0.2.1:4000");
        let mut relay = Relay::new(Some(caller), None);
        let neighbour = addr("192.0.2.9:5001");
        assert_eq!(
            relay.handle_packet(LegId::B, neighbour, &sender_report()),
            RelayAction::Drop(DropReason::Rtcp)
        );
        assert_eq!(relay.leg(LegId::B).latched(), None);
        assert_eq!(
            relay.handle_packet(LegId::A, caller, &packet(1, 1, b"voice")),
            RelayAction::Drop(DropReason::NoDestination),
            "the caller's voice does not go to whoever sent the report"
        );
        assert_eq!(relay.leg(LegId::B).stats().dropped, 1);
    }

    #[test]
    fn relay_drops_garbage_and_respects_hold() {
        let mut relay = Relay::new(None, None);
        assert!(matches!(
            relay.handle_packet(LegId::A, addr("192.0.2.1:1000"), b"\x00garbage"),
            RelayAction::Drop(DropReason::Malformed(_))
        ));
        assert_eq!(
            relay.leg(LegId::A).latched(),
            None,
            "garbage does not latch"
        );
        // No SDP address and nothing latched on B: nowhere to send.
        assert_eq!(
            relay.handle_packet(LegId::A, addr("192.0.2.1:1000"), &packet(1, 1, b"a")),
            RelayAction::Drop(DropReason::NoDestination)
        );
        relay.handle_packet(LegId::B, addr("192.0.2.2:2000"), &packet(1, 2, b"b"));
        // B puts the call on hold: nothing goes to B, and B's latch starts over.
        relay
            .leg_mut(LegId::B)
            .renegotiate(Some(addr("192.0.2.2:2000")), false);
        assert_eq!(
            relay.handle_packet(LegId::A, addr("192.0.2.1:1000"), &packet(2, 1, b"a")),
            RelayAction::Drop(DropReason::NoDestination)
        );
        relay
            .leg_mut(LegId::B)
            .renegotiate(Some(addr("192.0.2.3:3000")), true);
        assert_eq!(
            relay.handle_packet(LegId::A, addr("192.0.2.1:1000"), &packet(3, 1, b"a")),
            RelayAction::Forward {
                via: LegId::B,
                to: addr("192.0.2.3:3000")
            }
        );
    }

    fn stats_for(seqs: &[u16]) -> LegStats {
        let mut stats = LegStats::default();
        for &s in seqs {
            let header = RtpHeader {
                sequence: s,
                ssrc: 1,
                ..RtpHeader::default()
            };
            stats.record(&header, 160);
        }
        stats
    }

    #[test]
    fn loss_is_counted_from_sequence_gaps_across_wrap_around() {
        assert_eq!(stats_for(&[1, 2, 3, 4]).lost(), 0);
        assert_eq!(stats_for(&[1, 2, 5, 6]).lost(), 2);
        // Wrap-around is not a gap.
        assert_eq!(stats_for(&[65534, 65535, 0, 1]).lost(), 0);
        assert_eq!(stats_for(&[65534, 1]).lost(), 2);
        // A late packet fills its gap and counts as reordered.
        let late = stats_for(&[1, 3, 2, 4]);
        assert_eq!((late.lost(), late.reordered), (0, 1));
        // A big jump is a restart, not 20 000 lost packets.
        let jump = stats_for(&[1, 2, 4, 20_000, 20_001]);
        assert_eq!((jump.lost(), jump.restarts), (1, 1));
    }

    #[test]
    fn a_new_ssrc_starts_a_new_stream() {
        let mut stats = stats_for(&[10, 12]);
        stats.record(
            &RtpHeader {
                sequence: 500,
                ssrc: 2,
                ..RtpHeader::default()
            },
            160,
        );
        assert_eq!((stats.lost(), stats.restarts, stats.packets), (1, 1, 3));
    }

    #[test]
    fn packetizer_keeps_sequence_and_timestamp_continuous() {
        let mut p = Packetizer::new(8, 0xCAFE, 65534, u32::MAX - 159);
        let frame = [0xD5u8; FRAME_SAMPLES];
        let mut out = Vec::new();
        let mut headers = Vec::new();
        for _ in 0..3 {
            p.packetize(&frame, &mut out);
            assert_eq!(out.len(), HEADER_LEN + FRAME_SAMPLES);
            let parsed = RtpPacket::parse(&out).expect("valid");
            assert_eq!(parsed.payload, &frame[..]);
            headers.push(parsed.header);
        }
        let seqs: Vec<u16> = headers.iter().map(|h| h.sequence).collect();
        let stamps: Vec<u32> = headers.iter().map(|h| h.timestamp).collect();
        let marks: Vec<bool> = headers.iter().map(|h| h.marker).collect();
        assert_eq!(seqs, vec![65534, 65535, 0]);
        assert_eq!(stamps, vec![u32::MAX - 159, 0, 160]);
        assert_eq!(marks, vec![true, false, false]);
        assert!(headers
            .iter()
            .all(|h| h.ssrc == 0xCAFE && h.payload_type == 8));

        // Two frames of silence suppressed: time moves, sequence does not, marker set.
        p.pause(2 * FRAME_SAMPLES as u32);
        p.packetize(&frame, &mut out);
        let h = RtpHeader::parse(&out).expect("valid");
        assert_eq!((h.sequence, h.timestamp, h.marker), (1, 160 * 4, true));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = RtpPacket::parse(&bytes);
            let mut relay = Relay::new(None, Some(addr("192.0.2.1:4000")));
            let _ = relay.handle_packet(LegId::A, addr("192.0.2.2:4000"), &bytes);
        }

        #[test]
        fn parsing_v2_prefixed_bytes_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 1..200)) {
            bytes[0] = 0x80 | (bytes[0] & 0x3F);
            if let Ok(p) = RtpPacket::parse(&bytes) {
                prop_assert!(p.payload.len() <= bytes.len());
            }
        }

        #[test]
        fn written_packets_parse_back(pt in 0u8..128, seq: u16, ts: u32, ssrc: u32, marker: bool,
                                      payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let header = RtpHeader { marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc, ..RtpHeader::default() };
            let mut out = Vec::new();
            write_packet(&header, &payload, &mut out).expect("valid header");
            let p = RtpPacket::parse(&out).expect("parses");
            prop_assert_eq!(p.header, header);
            prop_assert_eq!(p.payload, &payload[..]);
        }
    }
}
