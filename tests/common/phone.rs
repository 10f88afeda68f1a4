//! A test SIP phone over UDP, TCP or TLS: registers with digest auth, calls a number as a trunk
//! would, rings and answers (or declines) as an agent's phone would, hangs up, and sends and
//! receives RTP on a socket of its own. Messages are written as text and read with `vacd-sip`'s parser; every
//! wait is bounded and nothing sleeps.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use vacd_sip::digest::answer_challenge;
use vacd_sip::framer::{Frame, StreamFramer};
use vacd_sip::g711::Law;
use vacd_sip::message::{self, new_branch, new_call_id, new_tag, parse_datagram, Limits};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{Header, Method, Request, Response, SipMessage};
use vacd_sip::rtp::{write_packet, RtpHeader, RtpPacket};
use vacd_sip::sdp::SessionDescription;

/// How long the phone waits for the server.
pub const WAIT: Duration = Duration::from_secs(10);

/// The next message read from a stream connection through its framer.
pub async fn next_frame(
    reader: &mut (impl AsyncRead + Unpin),
    framer: &mut StreamFramer,
) -> SipMessage {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match framer.next_frame().expect("framing") {
            Some(Frame::Message(m)) => return m,
            Some(Frame::KeepAlive) => continue,
            Some(Frame::Invalid { error, .. }) => panic!("vacd sent a malformed message: {error}"),
            None => {}
        }
        let len = reader.read(&mut buf).await.expect("read");
        assert!(len > 0, "server closed the connection");
        framer.push(&buf[..len]);
    }
}

/// One established call leg, seen from the phone.
#[derive(Debug, Clone)]
pub struct Leg {
    pub call_id: String,
    /// Our From / To values for requests in the dialog (with tags).
    pub local: String,
    pub remote: String,
    /// Where in-dialog requests are addressed (the server's Contact).
    pub target: String,
    /// Where the server wants this leg's RTP.
    pub remote_rtp: SocketAddr,
    pub cseq: u32,
}

impl Leg {
    /// Our tag in the dialog.
    pub fn tag(&self) -> &str {
        self.local.rsplit_once(";tag=").map_or("", |(_, tag)| tag)
    }
}

/// The phone's signalling connection.
enum Conn {
    Udp(UdpSocket),
    Tcp {
        reader: OwnedReadHalf,
        writer: Mutex<OwnedWriteHalf>,
        framer: StreamFramer,
    },
    Tls {
        reader: ReadHalf<TlsStream<TcpStream>>,
        writer: Mutex<WriteHalf<TlsStream<TcpStream>>>,
        framer: StreamFramer,
    },
}

pub struct Phone {
    conn: Conn,
    pub addr: SocketAddr,
    server: SocketAddr,
    pub rtp: Arc<UdpSocket>,
    pub rtp_addr: SocketAddr,
    inbox: VecDeque<SipMessage>,
    /// Branches of requests already taken, so retransmissions are not taken twice.
    taken: HashSet<String>,
    cseq: u32,
    /// The one G.711 law this phone offers, answers with, plays and hears (µ-law unless set).
    pub law: Law,
    /// The address its SDP names instead of its RTP socket's: a phone behind NAT names one of
    /// its own network, which vacd cannot reach.
    pub behind_nat: Option<std::net::IpAddr>,
    /// A host name its SDP names instead of any address (vacd resolves none).
    pub sdp_host: Option<String>,
    /// The payload type its SDP gives telephone-event (101 unless set).
    pub telephone_event: u8,
}

/// A TCP connection from a port of `ip` to `server`, within the wait.
async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    socket
        .bind(format!("{ip}:0").parse().expect("address"))
        .expect("bind");
    tokio::time::timeout(WAIT, socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

impl Phone {
    /// A phone with its SIP (UDP) and RTP sockets on `ip`.
    pub async fn new(ip: &str, server: SocketAddr) -> Phone {
        let socket = UdpSocket::bind(format!("{ip}:0")).await.expect("bind SIP");
        let addr = socket.local_addr().expect("address");
        Phone::with(Conn::Udp(socket), addr, ip, server).await
    }

    /// A phone signalling over a TCP connection from `ip` to `server`.
    pub async fn tcp(ip: &str, server: SocketAddr) -> Phone {
        let stream = connect_from(ip, server).await;
        let addr = stream.local_addr().expect("address");
        let (reader, writer) = stream.into_split();
        let conn = Conn::Tcp {
            reader,
            writer: Mutex::new(writer),
            framer: StreamFramer::new(Limits::default()),
        };
        Phone::with(conn, addr, ip, server).await
    }

    /// A phone signalling over TLS from `ip` to `server`, trusting only the (self-signed)
    /// certificate in the PEM file `trusted`, which must name `server`'s IP address.
    pub async fn tls(ip: &str, server: SocketAddr, trusted: &std::path::Path) -> Phone {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(trusted).expect("open the certificate") {
            roots.add(cert.expect("PEM certificate")).expect("a root");
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let stream = connect_from(ip, server).await;
        let addr = stream.local_addr().expect("address");
        let name = ServerName::IpAddress(server.ip().into());
        let stream = tokio::time::timeout(
            WAIT,
            TlsConnector::from(Arc::new(config)).connect(name, stream),
        )
        .await
        .expect("handshake in time")
        .expect("TLS handshake");
        let (reader, writer) = tokio::io::split(stream);
        let conn = Conn::Tls {
            reader,
            writer: Mutex::new(writer),
            framer: StreamFramer::new(Limits::default()),
        };
        Phone::with(conn, addr, ip, server).await
    }

    async fn with(conn: Conn, addr: SocketAddr, ip: &str, server: SocketAddr) -> Phone {
        let rtp = UdpSocket::bind(format!("{ip}:0")).await.expect("bind RTP");
        Phone {
            addr,
            rtp_addr: rtp.local_addr().expect("address"),
            conn,
            server,
            rtp: Arc::new(rtp),
            inbox: VecDeque::new(),
            taken: HashSet::new(),
            law: Law::MuLaw,
            behind_nat: None,
            sdp_host: None,
            telephone_event: 101,
            cseq: 0,
        }
    }

    /// Our SDP: the phone's law (PCMU unless set) and telephone-event at the RTP socket.
    pub fn sdp(&self) -> String {
        self.sdp_with("sendrecv")
    }

    /// Our SDP with the given direction attribute (`sendonly` holds the other side).
    pub fn sdp_with(&self, direction: &str) -> String {
        let ip = match &self.sdp_host {
            Some(host) => host.clone(),
            None => self.behind_nat.unwrap_or(self.rtp_addr.ip()).to_string(),
        };
        let (pt, name) = match self.law {
            Law::MuLaw => (0, "PCMU"),
            Law::ALaw => (8, "PCMA"),
        };
        let te = self.telephone_event;
        format!(
            "v=0\r\no=test 1 1 IN IP4 {ip}\r\ns=test\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {} RTP/AVP {pt} {te}\r\na=rtpmap:{pt} {name}/8000\r\na=rtpmap:{te} telephone-event/8000\r\n\
a=fmtp:{te} 0-16\r\na=ptime:20\r\na={direction}\r\n",
            self.rtp_addr.port()
        )
    }

    fn transport(&self) -> &'static str {
        match self.conn {
            Conn::Udp(_) => "UDP",
            Conn::Tcp { .. } => "TCP",
            Conn::Tls { .. } => "TLS",
        }
    }

    pub async fn send(&self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    async fn send_bytes(&self, bytes: &[u8]) {
        match &self.conn {
            Conn::Udp(socket) => {
                socket.send_to(bytes, self.server).await.expect("send");
            }
            Conn::Tcp { writer, .. } => writer.lock().await.write_all(bytes).await.expect("write"),
            Conn::Tls { writer, .. } => {
                let mut writer = writer.lock().await;
                writer.write_all(bytes).await.expect("write");
                writer.flush().await.expect("flush");
            }
        }
    }

    async fn send_message(&self, message: SipMessage) {
        self.send_bytes(&message::encode(&message)).await;
    }

    /// The next message from the connection or socket, waiting at most [`WAIT`].
    async fn next_message(&mut self) -> SipMessage {
        self.next_message_within(WAIT)
            .await
            .expect("a SIP message within the wait")
    }

    async fn next_message_within(&mut self, wait: Duration) -> Option<SipMessage> {
        let read = async {
            match &mut self.conn {
                Conn::Udp(socket) => {
                    let mut buf = vec![0u8; 65_535];
                    let (len, _) = socket.recv_from(&mut buf).await.expect("receive");
                    parse_datagram(&buf[..len], &Limits::default()).expect("valid SIP")
                }
                Conn::Tcp { reader, framer, .. } => next_frame(reader, framer).await,
                Conn::Tls { reader, framer, .. } => next_frame(reader, framer).await,
            }
        };
        tokio::time::timeout(wait, read).await.ok()
    }

    /// The next message from the network (retransmitted requests skipped).
    async fn receive(&mut self) -> SipMessage {
        self.receive_within(WAIT)
            .await
            .expect("a SIP message within the wait")
    }

    async fn receive_within(&mut self, wait: Duration) -> Option<SipMessage> {
        loop {
            let message = self.next_message_within(wait).await?;
            if let SipMessage::Request(request) = &message {
                let branch = message::top_via(&request.headers)
                    .map(|v| format!("{}{}", v.branch, request.method))
                    .unwrap_or_default();
                if !self.taken.insert(branch) {
                    continue;
                }
            }
            return Some(message);
        }
    }

    /// Sends a request and returns its final response. Over UDP the request is repeated every
    /// 500 ms (like RFC 3261 timer A/E) until a response shows it arrived; all within [`WAIT`].
    async fn transact(&mut self, text: &str, method: Method) -> Response {
        self.send(text).await;
        if matches!(self.conn, Conn::Udp(_)) {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let ours = |m: &SipMessage| {
                    matches!(m, SipMessage::Response(r)
                        if message::cseq(&r.headers).is_ok_and(|(_, m)| m == method))
                };
                match self.receive_within(Duration::from_millis(500)).await {
                    Some(m) if ours(&m) => {
                        self.inbox.push_front(m);
                        break;
                    }
                    Some(m) => self.inbox.push_back(m),
                    None if tokio::time::Instant::now() < deadline => self.send(text).await,
                    None => panic!("no response to\n{text}"),
                }
            }
        }
        self.final_response(method).await
    }

    /// The next request of `method`; other messages stay queued.
    pub async fn request(&mut self, method: Method) -> Request {
        if let Some(i) = self
            .inbox
            .iter()
            .position(|m| matches!(m, SipMessage::Request(r) if r.method == method))
        {
            if let Some(SipMessage::Request(r)) = self.inbox.remove(i) {
                return r;
            }
        }
        loop {
            match self.receive().await {
                SipMessage::Request(r) if r.method == method => return r,
                other => self.inbox.push_back(other),
            }
        }
    }

    /// The next final response to a request of `method` (provisional ones are dropped).
    pub async fn final_response(&mut self, method: Method) -> Response {
        let is_final = |m: &SipMessage| match m {
            SipMessage::Response(r) => {
                r.status_code.code() >= 200
                    && message::cseq(&r.headers).is_ok_and(|(_, m)| m == method)
            }
            _ => false,
        };
        if let Some(i) = self.inbox.iter().position(is_final) {
            if let Some(SipMessage::Response(r)) = self.inbox.remove(i) {
                return r;
            }
        }
        loop {
            let message = self.receive().await;
            if is_final(&message) {
                if let SipMessage::Response(r) = message {
                    return r;
                }
            } else if matches!(message, SipMessage::Request(_)) {
                self.inbox.push_back(message);
            }
        }
    }

    fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// A request as text (`extra` lines end with CRLF).
    #[allow(clippy::too_many_arguments)]
    fn request_text(
        &self,
        method: &str,
        uri: &str,
        from: &str,
        to: &str,
        call_id: &str,
        cseq: u32,
        extra: &str,
        body: &str,
    ) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{} {};branch={};rport\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} {method}\r\n{extra}\
Content-Length: {}\r\n\r\n{body}",
            self.transport(),
            self.addr,
            new_branch(),
            cseq,
            body.len()
        )
    }

    /// Registers `user` (digest auth with `password`); the contact is this phone unless
    /// `contact` names another address. Panics unless the registrar accepts.
    pub async fn register(&mut self, user: &str, password: &str, contact: Option<SocketAddr>) {
        let uri = format!("sip:{}", self.server);
        let aor = format!("<sip:{user}@{}>", self.server);
        let from = format!("{aor};tag={}", new_tag());
        let call_id = new_call_id("phone.test");
        let contact = contact.unwrap_or(self.addr);
        let extra = format!(
            "Contact: <sip:{user}@{contact};transport={}>\r\nExpires: 300\r\n",
            self.transport().to_lowercase()
        );
        let cseq = self.next_cseq();
        let text = self.request_text("REGISTER", &uri, &from, &aor, &call_id, cseq, &extra, "");
        let challenge = self.transact(&text, Method::Register).await;
        assert_eq!(challenge.status_code.code(), 401, "{challenge}");
        let offer = challenge
            .headers
            .iter()
            .find_map(|h| match h {
                Header::WwwAuthenticate(v) if v.value().contains("algorithm=MD5") => {
                    Some(v.value().to_owned())
                }
                _ => None,
            })
            .expect("an MD5 challenge");
        let authorization =
            answer_challenge(&offer, "REGISTER", &uri, user, password, 1, &new_tag())
                .expect("answerable challenge");
        let extra = format!("{extra}Authorization: {authorization}\r\n");
        let cseq = self.next_cseq();
        let text = self.request_text("REGISTER", &uri, &from, &aor, &call_id, cseq, &extra, "");
        let response = self.transact(&text, Method::Register).await;
        assert_eq!(response.status_code.code(), 200, "{response}");
    }

    /// Calls `number` through the server as a trunk would: INVITE with our SDP, then the ACK.
    /// Returns the leg on 2xx, the final response otherwise.
    pub async fn call(&mut self, number: &str) -> Result<Leg, Response> {
        let uri = format!("sip:{number}@{}", self.server);
        let local = format!("<sip:+491701234567@{}>;tag={}", self.addr, new_tag());
        let call_id = new_call_id("caller.test");
        let extra = format!(
            "Contact: <sip:caller@{}>\r\nContent-Type: application/sdp\r\n",
            self.addr
        );
        let body = self.sdp();
        let cseq = self.next_cseq();
        let to = format!("<{uri}>");
        let invite = self.request_text("INVITE", &uri, &local, &to, &call_id, cseq, &extra, &body);
        let response = self.invite(&invite).await;
        let remote = message::to_value(&response.headers).expect("To").to_owned();
        if response.status_code.code() >= 300 {
            return Err(response);
        }
        let target = contact_of(&response.headers).expect("Contact in the 2xx");
        // The ACK of a 2xx is a request of its own, with the INVITE's CSeq number.
        let ack = self.request_text("ACK", &target, &local, &remote, &call_id, cseq, "", "");
        self.send(&ack).await;
        Ok(Leg {
            call_id,
            local,
            remote,
            target,
            remote_rtp: rtp_address(&response.body),
            cseq,
        })
    }

    /// Sends the INVITE `text` and returns its final response, acknowledged if it is no 2xx
    /// (the ACK of a non-2xx: the INVITE's branch, the response's To).
    async fn invite(&mut self, text: &str) -> Response {
        let response = self.transact(text, Method::Invite).await;
        if response.status_code.code() >= 300 {
            let line = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .expect("the INVITE's header")
                    .to_owned()
            };
            let uri = text.split(' ').nth(1).expect("Request-URI");
            let to = message::to_value(&response.headers).expect("To");
            let cseq = line("CSeq:").replace("INVITE", "ACK");
            let ack = format!(
                "ACK {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\nTo: {to}\r\n{}\r\n{cseq}\r\n\
Content-Length: 0\r\n\r\n",
                line("Via:"),
                line("From:"),
                line("Call-ID:"),
            );
            self.send(&ack).await;
        }
        response
    }

    /// The INVITE of the call `leg` sent again by another path (same Call-ID, From tag and
    /// CSeq, another branch), to `number`; its final response.
    pub async fn invite_again(&mut self, number: &str, leg: &Leg) -> Response {
        let uri = format!("sip:{number}@{}", self.server);
        let extra = format!(
            "Contact: <sip:caller@{}>\r\nContent-Type: application/sdp\r\n",
            self.addr
        );
        let body = self.sdp();
        let to = format!("<{uri}>");
        let text = self.request_text(
            "INVITE",
            &uri,
            &leg.local,
            &to,
            &leg.call_id,
            leg.cseq,
            &extra,
            &body,
        );
        self.invite(&text).await
    }

    /// Hangs up `leg` and returns the status of the BYE's response.
    pub async fn bye(&mut self, leg: &Leg) -> u16 {
        let text = self.bye_text(leg);
        self.transact(&text, Method::Bye).await.status_code.code()
    }

    /// A BYE in `leg`, with the next CSeq.
    fn bye_text(&mut self, leg: &Leg) -> String {
        self.cseq = self.cseq.max(leg.cseq);
        let cseq = self.next_cseq();
        self.request_text(
            "BYE",
            &leg.target,
            &leg.local,
            &leg.remote,
            &leg.call_id,
            cseq,
            "",
            "",
        )
    }

    /// Sends a re-INVITE in `leg` with our SDP in `direction`, acknowledges the answer and
    /// returns the final response.
    pub async fn reinvite(&mut self, leg: &mut Leg, direction: &str) -> Response {
        self.reinvite_offering(leg, direction, true).await
    }

    /// Sends a re-INVITE in `leg` without an offer, answers the 2xx's offer in the ACK with our
    /// SDP in `direction`, and returns the final response.
    pub async fn reinvite_without_offer(&mut self, leg: &mut Leg, direction: &str) -> Response {
        self.reinvite_offering(leg, direction, false).await
    }

    /// A re-INVITE whose SDP in `direction` goes in the INVITE (`offer`) or in the ACK.
    async fn reinvite_offering(&mut self, leg: &mut Leg, direction: &str, offer: bool) -> Response {
        self.cseq = self.cseq.max(leg.cseq);
        let cseq = self.next_cseq();
        leg.cseq = cseq;
        let sdp = (
            "Content-Type: application/sdp\r\n",
            self.sdp_with(direction),
        );
        let (invite_sdp, ack_sdp) = if offer {
            (sdp, ("", String::new()))
        } else {
            (("", String::new()), sdp)
        };
        let extra = format!("Contact: <sip:phone@{}>\r\n{}", self.addr, invite_sdp.0);
        let text = self.request_text(
            "INVITE",
            &leg.target,
            &leg.local,
            &leg.remote,
            &leg.call_id,
            cseq,
            &extra,
            &invite_sdp.1,
        );
        let response = self.transact(&text, Method::Invite).await;
        let ack = self.request_text(
            "ACK",
            &leg.target,
            &leg.local,
            &leg.remote,
            &leg.call_id,
            cseq,
            ack_sdp.0,
            &ack_sdp.1,
        );
        self.send(&ack).await;
        response
    }

    /// Asks the server (REFER in `leg`) to transfer the call to `target`; returns the REFER's
    /// final response.
    pub async fn refer(&mut self, leg: &mut Leg, target: &str) -> Response {
        let text = self.refer_text(leg, target);
        self.transact(&text, Method::Refer).await
    }

    /// REFER to `target` and, without waiting for its answer, BYE in `leg` (as many phones do
    /// a blind transfer); the status codes of both final responses.
    pub async fn refer_and_hang_up(&mut self, leg: &mut Leg, target: &str) -> (u16, u16) {
        let refer = self.refer_text(leg, target);
        let bye = self.bye_text(leg);
        self.send(&refer).await;
        self.send(&bye).await;
        let referred = self.final_response(Method::Refer).await;
        let hung_up = self.final_response(Method::Bye).await;
        (referred.status_code.code(), hung_up.status_code.code())
    }

    fn refer_text(&mut self, leg: &mut Leg, target: &str) -> String {
        self.cseq = self.cseq.max(leg.cseq);
        let cseq = self.next_cseq();
        leg.cseq = cseq;
        let extra = format!(
            "Contact: <sip:phone@{}>\r\nRefer-To: <{target}>\r\n",
            self.addr
        );
        self.request_text(
            "REFER",
            &leg.target,
            &leg.local,
            &leg.remote,
            &leg.call_id,
            cseq,
            &extra,
            "",
        )
    }

    /// From now on this phone talks to `server` (a phone made before the server existed).
    pub fn retarget(&mut self, server: SocketAddr) {
        self.server = server;
    }

    /// Drops RTP that has arrived so far.
    pub async fn drain_rtp(&self) {
        while self.recv_rtp_within(Duration::ZERO).await.is_some() {}
    }

    /// Answers a request with `code` and an optional SDP body; returns the To tag used.
    pub async fn respond(&self, request: &Request, code: u16, tag: &str, sdp: bool) {
        let mut response = message::response_to(request, code, Some(tag));
        response
            .headers
            .push(Header::Contact(vacd_sip::rsip::headers::Contact::new(
                format!("<sip:phone@{}>", self.addr),
            )));
        if sdp {
            response.headers.push(Header::ContentType(
                vacd_sip::rsip::headers::ContentType::new("application/sdp"),
            ));
            response.body = self.sdp().into_bytes();
        }
        self.send_message(SipMessage::Response(response)).await;
    }

    /// Refuses `request` with 407 and a digest challenge of `realm` with `nonce` (a provider's
    /// proxy asking for credentials).
    pub async fn challenge(&self, request: &Request, realm: &str, nonce: &str) {
        let mut response = message::response_to(request, 407, Some(&new_tag()));
        response.headers.push(Header::ProxyAuthenticate(
            vacd_sip::rsip::headers::ProxyAuthenticate::new(format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", qop=\"auth\", algorithm=MD5"
            )),
        ));
        self.send_message(SipMessage::Response(response)).await;
    }

    /// Answers a ringing INVITE (180, then 200 with our SDP) and waits for the ACK.
    pub async fn answer(&mut self, invite: &Request) -> Leg {
        self.answer_with_ack(invite).await.0
    }

    /// [`Phone::answer`], also returning the ACK.
    pub async fn answer_with_ack(&mut self, invite: &Request) -> (Leg, Request) {
        let tag = new_tag();
        self.respond(invite, 180, &tag, false).await;
        // The 2xx is repeated until the ACK comes (RFC 3261 §13.3.1.4), bounded by WAIT.
        let deadline = tokio::time::Instant::now() + WAIT;
        let ack = loop {
            self.respond(invite, 200, &tag, true).await;
            match self.receive_within(Duration::from_millis(500)).await {
                Some(SipMessage::Request(r)) if r.method == Method::Ack => break r,
                Some(other) => self.inbox.push_back(other),
                None => assert!(tokio::time::Instant::now() < deadline, "no ACK for the 2xx"),
            }
        };
        let to = message::to_value(&invite.headers).expect("To");
        let leg = Leg {
            call_id: message::call_id(&invite.headers)
                .expect("Call-ID")
                .to_owned(),
            local: format!("{to};tag={tag}"),
            remote: message::from_value(&invite.headers)
                .expect("From")
                .to_owned(),
            target: contact_of(&invite.headers).expect("Contact in the INVITE"),
            remote_rtp: rtp_address(&invite.body),
            cseq: 0,
        };
        (leg, ack)
    }

    /// Sends our 2xx with To tag `tag` to `invite` again (as if its ACK had been lost) and
    /// returns the ACK that comes for it — a repeat of an ACK seen before included.
    pub async fn repeat_answer(&mut self, invite: &Request, tag: &str) -> Request {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.respond(invite, 200, tag, true).await;
            match self.next_message_within(Duration::from_millis(500)).await {
                Some(SipMessage::Request(r)) if r.method == Method::Ack => return r,
                Some(other) => self.inbox.push_back(other),
                None => assert!(tokio::time::Instant::now() < deadline, "no ACK for the 2xx"),
            }
        }
    }

    /// Takes the next BYE, answers it 200 and returns it.
    pub async fn take_bye(&mut self) -> Request {
        let bye = self.request(Method::Bye).await;
        self.respond(&bye, 200, "", false).await;
        bye
    }

    /// Takes the CANCEL of the ringing `invite`: 200 to it, 487 to the INVITE, and the ACK.
    pub async fn cancelled(&mut self, invite: &Request) {
        let cancel = self.request(Method::Cancel).await;
        assert_eq!(
            message::call_id(&cancel.headers),
            message::call_id(&invite.headers),
            "the ringing INVITE is cancelled"
        );
        self.respond(&cancel, 200, "ring", false).await;
        self.respond(invite, 487, "ring", false).await;
        self.request(Method::Ack).await;
    }

    /// Declines a ringing INVITE with `code` and takes the ACK.
    pub async fn decline(&mut self, invite: &Request, code: u16) {
        self.respond(invite, code, &new_tag(), false).await;
        self.request(Method::Ack).await;
    }

    /// Sends one RTP packet to `to` with `payload`.
    pub async fn send_rtp(&self, to: SocketAddr, sequence: u16, payload: &[u8]) {
        let header = RtpHeader {
            padding: false,
            extension: false,
            csrc_count: 0,
            marker: false,
            payload_type: 0,
            sequence,
            timestamp: u32::from(sequence) * 160,
            ssrc: 0x7e57,
        };
        let mut packet = Vec::new();
        write_packet(&header, payload, &mut packet).expect("RTP packet");
        self.rtp.send_to(&packet, to).await.expect("send RTP");
    }

    /// The next `packets` RTP packets are vacd's music on hold: 20 ms G.711 frames from the
    /// media address of `leg`, the call's.
    pub async fn hears_music(&self, leg: &Leg, packets: usize) {
        for _ in 0..packets {
            let (from, music) = self.recv_rtp_within(WAIT).await.expect("music on hold");
            assert_eq!((from, music.len()), (leg.remote_rtp, 160), "music on hold");
        }
    }

    /// The next RTP packet within `wait`: its source and payload.
    pub async fn recv_rtp_within(&self, wait: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = [0u8; 2048];
        let (len, from) = tokio::time::timeout(wait, self.rtp.recv_from(&mut buf))
            .await
            .ok()?
            .expect("receive RTP");
        let packet = RtpPacket::parse(&buf[..len]).expect("valid RTP");
        Some((from, packet.payload.to_vec()))
    }

    /// Sends `payload` to `to` until `receiver` gets it (RTP is not reliable, and the relay
    /// forwards only once both legs are bridged); returns the source it arrived from.
    pub async fn rtp_reaches(
        &self,
        to: SocketAddr,
        payload: &[u8],
        receiver: &Phone,
    ) -> SocketAddr {
        self.rtp_reaches_after(to, payload, receiver).await.0
    }

    /// Like [`Phone::rtp_reaches`], also returning the other payloads `receiver` got first.
    pub async fn rtp_reaches_after(
        &self,
        to: SocketAddr,
        payload: &[u8],
        receiver: &Phone,
    ) -> (SocketAddr, Vec<Vec<u8>>) {
        let mut before = Vec::new();
        // Bounded in time too: a receiver hearing other packets all along (music) would
        // otherwise keep the inner loop going for ever.
        let deadline = tokio::time::Instant::now() + WAIT;
        for sequence in 0..50u16 {
            self.send_rtp(to, sequence, payload).await;
            while let Some((from, got)) = receiver.recv_rtp_within(Duration::from_millis(200)).await
            {
                if got == payload {
                    return (from, before);
                }
                before.push(got);
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        panic!("RTP {payload:?} sent to {to} never arrived");
    }
}

impl Phone {
    /// Plays a sine tone of `frequency` Hz to `to` as 20 ms packets in the phone's law, paced
    /// in real time, for `frames` packets (a talking phone); runs in the background.
    ///
    /// Give a multiple of 50 Hz, a whole number of cycles per packet: vacd's monitoring mix
    /// takes each leg's latest packet per 20 ms tick, so when packets or ticks come late (a
    /// busy machine) a packet is dropped or a tick is silent. With whole cycles the tone goes on
    /// in phase and [`tone_level`] drops only by the share missing; with 8.8 cycles (440 Hz) a
    /// few such shifts cancel the tone out of the sum.
    pub fn play_tone(
        &self,
        to: SocketAddr,
        frequency: f32,
        frames: u16,
    ) -> tokio::task::JoinHandle<()> {
        let socket = self.rtp.clone();
        let law = self.law;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let step = 2.0 * std::f32::consts::PI * frequency / 8000.0;
            for sequence in 0..frames {
                tick.tick().await;
                let samples: Vec<i16> = (0..160u32)
                    .map(|n| {
                        let t = u32::from(sequence) * 160 + n;
                        (4000.0 * (step * t as f32).sin()) as i16
                    })
                    .collect();
                let mut payload = [0u8; 160];
                law.encode(&samples, &mut payload);
                let header = RtpHeader {
                    padding: false,
                    extension: false,
                    csrc_count: 0,
                    marker: sequence == 0,
                    payload_type: law.payload_type(),
                    sequence,
                    timestamp: u32::from(sequence) * 160,
                    ssrc: frequency as u32,
                };
                let mut packet = Vec::new();
                write_packet(&header, &payload, &mut packet).expect("RTP packet");
                if socket.send_to(&packet, to).await.is_err() {
                    return;
                }
            }
        })
    }

    /// The audio of the next `packets` RTP packets (decoded in the phone's law), each within
    /// the wait.
    pub async fn hear(&self, packets: usize) -> Vec<i16> {
        let mut samples = Vec::with_capacity(packets * 160);
        for _ in 0..packets {
            let (_, payload) = self
                .recv_rtp_within(WAIT)
                .await
                .expect("RTP within the wait");
            let mut decoded = vec![0i16; payload.len()];
            self.law.decode(&payload, &mut decoded);
            samples.extend(decoded);
        }
        samples
    }

    /// Like [`Phone::hear`], from the first packet whose audio `first` accepts (those before it
    /// are dropped, for at most the wait; `what` names it): what the phone hears once a change
    /// in the call has reached it.
    pub async fn hear_from(
        &self,
        what: &str,
        packets: usize,
        first: impl Fn(&[i16]) -> bool,
    ) -> Vec<i16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut samples = self.hear(1).await;
            if first(&samples) {
                samples.extend(self.hear(packets.saturating_sub(1)).await);
                return samples;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no RTP packet with {what} within the wait"
            );
        }
    }
}

/// The amplitude of the `frequency` Hz component of 8 kHz `samples` (Goertzel).
pub fn tone_level(samples: &[i16], frequency: f32) -> f32 {
    let coefficient = 2.0 * (2.0 * std::f32::consts::PI * frequency / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &x in samples {
        let s0 = f32::from(x) + coefficient * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = (s1 * s1 + s2 * s2 - coefficient * s1 * s2).max(0.0);
    2.0 * power.sqrt() / samples.len().max(1) as f32
}

/// The URI of the first Contact.
fn contact_of(headers: &vacd_sip::rsip::Headers) -> Option<String> {
    headers.iter().find_map(|h| match h {
        Header::Contact(c) => Some(message::uri_part(c.value()).to_owned()),
        _ => None,
    })
}

/// The audio address of an SDP body.
pub fn rtp_address(body: &[u8]) -> SocketAddr {
    let sdp = SessionDescription::parse(body).expect("SDP body");
    let ip = sdp
        .connection_of(0)
        .and_then(|c| c.ip_addr())
        .expect("connection address");
    SocketAddr::new(ip, sdp.media[0].port)
}
