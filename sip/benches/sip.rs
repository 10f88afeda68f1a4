//! Hot paths of the SIP core and the media relay. Run:
//! `cargo bench -p vacd-sip --bench sip` (add `-- --measurement-time 2 --warm-up-time 1` for a
//! quick look). Figures only; nothing here asserts timings.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vacd_sip::g711::Law;
use vacd_sip::message::{self, parse_datagram, Limits};
use vacd_sip::mix::{decode_frame, encode_frame, Monitor};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{self, SipMessage};
use vacd_sip::rtp::{write_packet, HeaderMut, LegId, Packetizer, Relay, RtpHeader, RtpPacket};
use vacd_sip::sdp::{self, LocalMedia, LocalSdp, SessionDescription};
use vacd_sip::transaction::{Config, Event, Output, TransactionLayer};
use vacd_sip::{Peer, Transport};

const SDP: &str = "v=0\r\n\
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
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn invite() -> Vec<u8> {
    format!(
        "INVITE sip:+4930123456@vacd.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:+4930123456@vacd.example.com>\r\n\
From: \"Alice\" <sip:+4917612345678@trunk.example.net>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@198.51.100.1\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:+4917612345678@198.51.100.1:5060>\r\n\
P-Asserted-Identity: <sip:+4917612345678@trunk.example.net>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: bench-trunk/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

fn ack(to_tag: &str) -> Vec<u8> {
    format!(
        "ACK sip:vacd@192.0.2.50:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKack1\r\n\
Max-Forwards: 70\r\n\
To: <sip:+4930123456@vacd.example.com>;tag={to_tag}\r\n\
From: \"Alice\" <sip:+4917612345678@trunk.example.net>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@198.51.100.1\r\n\
CSeq: 314159 ACK\r\n\
Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn parsing(c: &mut Criterion) {
    let bytes = invite();
    let limits = Limits::default();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("invite_with_sdp", |b| {
        b.iter(|| {
            let message = parse_datagram(black_box(&bytes), &limits).expect("valid");
            let SipMessage::Request(request) = message else {
                unreachable!("an INVITE")
            };
            SessionDescription::parse(&request.body).expect("valid SDP")
        })
    });
    group.throughput(Throughput::Bytes(SDP.len() as u64));
    group.bench_function("sdp_only", |b| {
        b.iter(|| SessionDescription::parse(black_box(SDP.as_bytes())).expect("valid"))
    });
    let offer = SessionDescription::parse(SDP.as_bytes()).expect("valid");
    let local = LocalMedia::new("192.0.2.50:20000".parse().expect("addr"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("sdp_answer_and_write", |b| {
        let mut session = LocalSdp::with_id("192.0.2.50".parse().expect("ip"), 1);
        b.iter(|| {
            let (answer, _) = sdp::answer(black_box(&offer), &local, &mut session).expect("ok");
            answer.to_bytes()
        })
    });
    group.finish();
}

fn transaction_round(c: &mut Criterion) {
    let invite = invite();
    let ack = ack("vacd-tag");
    let limits = Limits::default();
    let peer = Peer::new(Transport::Udp, "198.51.100.1:5060".parse().expect("addr"));
    let answer_sdp = SDP.replace("198.51.100.1", "192.0.2.50").into_bytes();
    let round = || {
        let now = Instant::now();
        let mut layer = TransactionLayer::new(Config::default());
        let message = parse_datagram(black_box(&invite), &limits).expect("valid");
        layer.handle_message(message, peer, now);
        let mut request = None;
        let mut sent = 0usize;
        while let Some(out) = layer.poll_output() {
            match out {
                Output::Transmit(t) => sent += t.payload.len(),
                Output::Event(Event::Request {
                    key, request: r, ..
                }) => request = Some((key, r)),
                Output::Event(_) => {}
            }
        }
        let (key, request) = request.expect("the INVITE reaches the TU");
        let ringing = message::response_to(&request, 180, Some("vacd-tag"));
        layer.send_response(&key, ringing, now).expect("180");
        let mut ok = message::response_to(&request, 200, Some("vacd-tag"));
        ok.headers
            .push(rsip::Header::ContentType(rsip::headers::ContentType::new(
                "application/sdp",
            )));
        ok.body = answer_sdp.clone();
        layer.send_response(&key, ok, now).expect("200");
        let ack = parse_datagram(&ack, &limits).expect("valid");
        layer.handle_message(ack, peer, now);
        let mut acked = false;
        while let Some(out) = layer.poll_output() {
            match out {
                Output::Transmit(t) => sent += t.payload.len(),
                Output::Event(Event::Ack { invite, .. }) => acked = invite.is_some(),
                Output::Event(_) => {}
            }
        }
        (sent, acked)
    };
    // 100 Trying, 180 and 200 went out, and the ACK matched the INVITE transaction.
    assert!(
        round().1,
        "the ACK must reach the INVITE server transaction"
    );
    c.bench_function("server_invite_transaction_round", |b| b.iter(round));
}

fn rtp(c: &mut Criterion) {
    let mut packet = Vec::new();
    let header = RtpHeader {
        payload_type: 8,
        sequence: 1234,
        timestamp: 160 * 1234,
        ssrc: 0xDEAD_BEEF,
        ..RtpHeader::default()
    };
    write_packet(&header, &[0xD5; 160], &mut packet).expect("valid");
    let mut group = c.benchmark_group("rtp");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_and_rewrite_header", |b| {
        let mut buf = packet.clone();
        b.iter(|| {
            let parsed = RtpPacket::parse(black_box(&buf)).expect("valid");
            let (seq, ts) = (parsed.header.sequence, parsed.header.timestamp);
            let mut h = HeaderMut::new(&mut buf).expect("valid");
            h.set_sequence(seq.wrapping_add(1));
            h.set_timestamp(ts.wrapping_add(160));
            h.set_ssrc(0x0102_0304);
        })
    });
    let caller: SocketAddr = "203.0.113.7:40000".parse().expect("addr");
    let agent: SocketAddr = "192.0.2.20:5004".parse().expect("addr");
    group.bench_function("relay_handle_packet", |b| {
        let mut relay = Relay::new(Some(caller), Some(agent));
        b.iter(|| relay.handle_packet(LegId::A, caller, black_box(&packet)))
    });
    group.bench_function("packetize_20ms_frame", |b| {
        let mut p = Packetizer::new(0, 1, 0, 0);
        let frame = [0xFFu8; 160];
        let mut out = Vec::with_capacity(172);
        b.iter(|| p.packetize(black_box(&frame), &mut out))
    });
    group.bench_function("g711_encode_20ms_frame", |b| {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 200 - 16000) as i16).collect();
        let mut out = [0u8; 160];
        b.iter(|| Law::ALaw.encode(black_box(&pcm), &mut out))
    });
    group.finish();
}

/// One 20 ms tick of a monitored call, as the call actor does it: decode the latest frame of
/// each party, mix, encode and packetize what each listener gets (silent: the supervisor
/// only; barge: all three). Monitored calls one core sustains = ticks/s ÷ 50.
fn monitoring(c: &mut Criterion) {
    let caller: Vec<u8> = (0..160u16).map(|i| (i % 251) as u8).collect();
    let agent: Vec<u8> = (0..160u16).map(|i| (i * 7 % 253) as u8).collect();
    let microphone = [0x55u8; 160];
    let mut group = c.benchmark_group("monitoring");
    group.throughput(Throughput::Elements(1));
    for (name, mode) in [
        ("tick_silent", Monitor::Silent),
        ("tick_barge", Monitor::Barge),
    ] {
        group.bench_function(name, |b| {
            let mut to_supervisor = Packetizer::new(0, 1, 0, 0);
            let mut to_agent = Packetizer::new(0, 2, 0, 0);
            let mut to_caller = Packetizer::new(0, 3, 0, 0);
            let mut out = Vec::with_capacity(172);
            b.iter(|| {
                let caller = decode_frame(Law::MuLaw, black_box(&caller));
                let agent = decode_frame(Law::MuLaw, black_box(&agent));
                let mic = (mode != Monitor::Silent)
                    .then(|| decode_frame(Law::MuLaw, black_box(&microphone)));
                let mixed = mode.mix(Some(&caller), Some(&agent), mic.as_ref());
                out.clear();
                to_supervisor.packetize(&encode_frame(Law::MuLaw, &mixed.to_supervisor), &mut out);
                if mode != Monitor::Silent {
                    out.clear();
                    to_agent.packetize(&encode_frame(Law::MuLaw, &mixed.to_agent), &mut out);
                    out.clear();
                    to_caller.packetize(&encode_frame(Law::MuLaw, &mixed.to_caller), &mut out);
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parsing, transaction_round, rtp, monitoring);
criterion_main!(benches);
