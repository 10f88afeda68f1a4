//! The SIP endpoint over real sockets on loopback: a small test user agent written here (its
//! messages built as text, parsed and authenticated with `vacd-sip`) registers the demo agents'
//! phones over UDP and TCP, pings with OPTIONS, plays a trunk sending INVITEs, and throws
//! malformed datagrams at the server while a good REGISTER goes through. sipp runs the
//! scenarios in `loadtests/sip/` against the same server.
//!
//! Loopback has the whole 127.0.0.0/8: the trunk in these tests is `127.0.0.2`, "anyone else"
//! is `127.0.0.1`, and the malformed-packet storm comes from `127.0.0.3`, so the per-source rate
//! limit the storm trips does not throttle the well-behaved UA.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Db, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use vacd::config::{DigestAlgorithm, Network, TrunkConfig};
use vacd_sip::digest::answer_challenge;
use vacd_sip::framer::StreamFramer;
use vacd_sip::message::{self, new_branch, new_call_id, new_tag, parse_datagram, Limits};
use vacd_sip::rsip::headers::UntypedHeader;
use vacd_sip::rsip::{Header, Response, SipMessage};

const SIP_PASSWORD: &str = vacd::demo::SIP_PASSWORD;
/// Every wait for the server is bounded by this.
const WAIT: Duration = Duration::from_secs(5);
const TRUNK_IP: &str = "127.0.0.2";
const DEMO_NUMBER: &str = "+4930123456";

enum Conn {
    Udp(UdpSocket),
    Tcp {
        stream: TcpStream,
        framer: StreamFramer,
    },
}

/// A minimal user agent: one socket (UDP or a TCP connection) towards the server, one Call-ID
/// and From tag for all its requests, a CSeq that increases.
struct Ua {
    conn: Conn,
    server: SocketAddr,
    local: SocketAddr,
    call_id: String,
    tag: String,
    cseq: u32,
}

impl Ua {
    async fn udp(ip: &str, server: SocketAddr) -> Ua {
        let socket = UdpSocket::bind(format!("{ip}:0"))
            .await
            .expect("bind UA socket");
        let local = socket.local_addr().expect("local address");
        Ua::with(Conn::Udp(socket), server, local)
    }

    async fn tcp(server: SocketAddr) -> Ua {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(server))
            .await
            .expect("connect in time")
            .expect("connect");
        let local = stream.local_addr().expect("local address");
        Ua::with(
            Conn::Tcp {
                stream,
                framer: StreamFramer::new(Limits::default()),
            },
            server,
            local,
        )
    }

    fn with(conn: Conn, server: SocketAddr, local: SocketAddr) -> Ua {
        Ua {
            conn,
            server,
            local,
            call_id: new_call_id("test.invalid"),
            tag: new_tag(),
            cseq: 0,
        }
    }

    fn transport(&self) -> &'static str {
        match self.conn {
            Conn::Udp(_) => "UDP",
            Conn::Tcp { .. } => "TCP",
        }
    }

    /// Closes a TCP connection and waits until the server has closed its side too (it tells
    /// the endpoint before it lets the socket go, so whatever is sent next comes after).
    async fn close(mut self) {
        let Conn::Tcp { stream, .. } = &mut self.conn else {
            panic!("only a TCP connection closes");
        };
        stream.shutdown().await.expect("shut down");
        self.closed_by_server().await;
    }

    /// Waits until the server closes a TCP connection; it sends nothing more before.
    async fn closed_by_server(self) {
        let Conn::Tcp { mut stream, .. } = self.conn else {
            panic!("only a TCP connection closes");
        };
        let mut rest = Vec::new();
        tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
            .await
            .expect("the server closes its side in time")
            .expect("read to the end");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }

    /// A request as text; `extra` lines end with CRLF. Returns it with its branch.
    fn request(&mut self, method: &str, uri: &str, to: &str, extra: &str) -> String {
        self.cseq += 1;
        format!(
            "{method} {uri} SIP/2.0\r\n\
Via: SIP/2.0/{} {};branch={};rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:test@{}>;tag={}\r\n\
To: <{to}>\r\n\
Call-ID: {}\r\n\
CSeq: {} {method}\r\n\
{extra}Content-Length: 0\r\n\r\n",
            self.transport(),
            self.local,
            new_branch(),
            self.local,
            self.tag,
            self.call_id,
            self.cseq,
        )
    }

    async fn send(&mut self, text: &str) {
        match &mut self.conn {
            Conn::Udp(socket) => {
                socket
                    .send_to(text.as_bytes(), self.server)
                    .await
                    .expect("send");
            }
            Conn::Tcp { stream, .. } => stream.write_all(text.as_bytes()).await.expect("write"),
        }
    }

    /// The next response, waiting at most [`WAIT`].
    async fn next_response(&mut self) -> Option<Response> {
        self.next_response_within(WAIT).await
    }

    async fn next_response_within(&mut self, wait: Duration) -> Option<Response> {
        let raw = self.next_raw_within(wait).await?;
        match parse_datagram(&raw, &Limits::default()) {
            Ok(SipMessage::Response(r)) => Some(r),
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The bytes of the next message, waiting at most `wait`.
    async fn next_raw_within(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let read = async {
            match &mut self.conn {
                Conn::Udp(socket) => {
                    let mut buf = vec![0u8; 65_535];
                    let (len, _) = socket.recv_from(&mut buf).await.expect("receive");
                    buf.truncate(len);
                    buf
                }
                Conn::Tcp { stream, framer } => {
                    message::encode(&common::phone::next_frame(stream, framer).await)
                }
            }
        };
        tokio::time::timeout(wait, read).await.ok()
    }

    /// Sends a request and returns its final response (provisional ones are skipped). Over
    /// UDP the request is retransmitted like RFC 3261 timer E would (every 500 ms), since the
    /// network may drop it; the whole exchange is bounded by [`WAIT`].
    async fn transact(&mut self, text: &str) -> Response {
        let udp = matches!(self.conn, Conn::Udp(_));
        let deadline = tokio::time::Instant::now() + WAIT;
        self.send(text).await;
        let mut provisional = false;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wait = if udp && !provisional {
                left.min(Duration::from_millis(500))
            } else {
                left
            };
            match self.next_response_within(wait).await {
                Some(response) if response.status_code.code() >= 200 => return response,
                Some(_) => provisional = true,
                None if left > wait => self.send(text).await,
                None => panic!("no response to\n{text}"),
            }
        }
    }

    /// INVITE to `number` as a trunk would send it; returns the final response after
    /// acknowledging it.
    async fn invite(&mut self, number: &str) -> Response {
        self.invite_with(number, "").await
    }

    /// [`Ua::invite`] with `extra` header lines.
    async fn invite_with(&mut self, number: &str, extra: &str) -> Response {
        let uri = format!("sip:{number}@{}", self.server);
        let extra = format!("Contact: <sip:caller@127.0.0.1>\r\n{extra}");
        let text = self.request("INVITE", &uri, &uri, &extra);
        let response = self.transact(&text).await;
        // The ACK for a non-2xx final response: same branch, the response's To.
        let via = text.lines().find(|l| l.starts_with("Via:")).expect("via");
        let to = message::to_value(&response.headers).expect("To");
        let ack = format!(
            "ACK {uri} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\nFrom: <sip:test@{}>;tag={}\r\n\
To: {to}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            self.local, self.tag, self.call_id, self.cseq
        );
        self.send(&ack).await;
        response
    }

    /// REGISTER `contact` for `user`, answering a challenge with `password` and the first
    /// offered algorithm named `algorithm`. Returns the final response.
    async fn register(
        &mut self,
        user: &str,
        password: &str,
        contact: &str,
        expires: u32,
        algorithm: &str,
    ) -> Response {
        let (uri, aor, headers) = self
            .answered_register(user, user, password, contact, expires, algorithm)
            .await;
        let text = self.request("REGISTER", &uri, &aor, &headers);
        self.transact(&text).await
    }

    /// The contacts bound to `user`'s address, asked with its `password` (a REGISTER without
    /// Contact).
    async fn bindings(&mut self, user: &str, password: &str) -> Vec<String> {
        let (uri, aor, headers) = self.answered(user, user, password, "", "MD5").await;
        let text = self.request("REGISTER", &uri, &aor, &headers);
        let listed = self.transact(&text).await;
        assert_eq!(listed.status_code.code(), 200, "{listed}");
        contacts(&listed)
    }

    /// A REGISTER of `contact` for the address of `owner`, answered with `user`'s `password`
    /// (first challenge of `algorithm`): its Request-URI, address of record and headers, to be
    /// sent as often as wanted.
    async fn answered_register(
        &mut self,
        owner: &str,
        user: &str,
        password: &str,
        contact: &str,
        expires: u32,
        algorithm: &str,
    ) -> (String, String, String) {
        let extra = format!("Contact: <{contact}>\r\nExpires: {expires}\r\n");
        self.answered(owner, user, password, &extra, algorithm)
            .await
    }

    /// A REGISTER for the address of `owner` with the headers `extra`, answered with `user`'s
    /// `password` (first challenge of `algorithm`): its Request-URI, address of record and
    /// headers.
    async fn answered(
        &mut self,
        owner: &str,
        user: &str,
        password: &str,
        extra: &str,
        algorithm: &str,
    ) -> (String, String, String) {
        let uri = format!("sip:{}", self.server);
        let aor = format!("sip:{owner}@{}", self.server);
        let text = self.request("REGISTER", &uri, &aor, extra);
        let challenge = self.transact(&text).await;
        assert_eq!(challenge.status_code.code(), 401, "{challenge}");
        let offer = www_authenticate(&challenge)
            .into_iter()
            .find(|c| c.contains(&format!("algorithm={algorithm}")))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in {challenge}"));
        let authorization =
            answer_challenge(&offer, "REGISTER", &uri, user, password, 1, &new_tag())
                .expect("answerable challenge");
        let extra = format!("{extra}Authorization: {authorization}\r\n");
        (uri, aor, extra)
    }
}

fn www_authenticate(response: &Response) -> Vec<String> {
    response
        .headers
        .iter()
        .filter_map(|h| match h {
            Header::WwwAuthenticate(v) => Some(v.value().to_owned()),
            _ => None,
        })
        .collect()
}

/// The contact URIs a registrar response lists.
fn contacts(response: &Response) -> Vec<String> {
    message::list_values(&response.headers, |h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })
    .map(|c| message::uri_part(c).to_owned())
    .collect()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers.iter().find_map(|h| match h {
        Header::Other(n, v) if n.eq_ignore_ascii_case(name) => Some(v.as_str()),
        Header::Allow(v) if name.eq_ignore_ascii_case("Allow") => Some(v.value()),
        Header::Unsupported(v) if name.eq_ignore_ascii_case("Unsupported") => Some(v.value()),
        Header::RetryAfter(v) if name.eq_ignore_ascii_case("Retry-After") => Some(v.value()),
        _ => None,
    })
}

/// A server whose only trunk is `127.0.0.2`.
async fn server_with_trunk(db: Db) -> TestServer {
    TestServer::start_with(db, |config| {
        config.sip.trunks = vec![TrunkConfig {
            name: "carrier".into(),
            sources: vec![Network::try_from(TRUNK_IP.to_owned()).expect("network")],
            username: None,
            password: None,
            outbound: None,
            outbound_username: None,
            outbound_password: None,
        }];
    })
    .await
}

/// The registrar flow over one transport: challenge, wrong password, right password (MD5 and
/// SHA-256), several contacts, un-register.
async fn registration_flow(mut ua: Ua) {
    let server = ua.server;
    let phone1 = format!("sip:alice@{}", ua.local);
    let phone2 = format!("sip:alice-desk@{}", ua.local);

    // Without credentials: a challenge offering SHA-256 and MD5.
    let uri = format!("sip:{server}");
    let text = ua.request(
        "REGISTER",
        &uri,
        &format!("sip:alice@{server}"),
        &format!("Contact: <{phone1}>\r\n"),
    );
    let challenge = ua.transact(&text).await;
    assert_eq!(challenge.status_code.code(), 401, "{challenge}");
    let offers = www_authenticate(&challenge);
    assert!(
        offers.iter().any(|c| c.contains("algorithm=SHA-256"))
            && offers.iter().any(|c| c.contains("algorithm=MD5"))
            && offers.iter().all(|c| c.contains("realm=\"vacd\"")),
        "{offers:?}"
    );

    // A wrong password is refused and binds nothing.
    let refused = ua
        .register("alice", "not-the-password", &phone1, 300, "MD5")
        .await;
    assert_eq!(refused.status_code.code(), 403, "{refused}");
    assert!(contacts(&refused).is_empty());

    // The right one binds the contact (SHA-256) …
    let ok = ua
        .register("alice", SIP_PASSWORD, &phone2, 300, "SHA-256")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert_eq!(
        contacts(&ok),
        vec![phone2.clone()],
        "only the accepted contact"
    );
    // … and a second contact joins it (MD5).
    let ok = ua
        .register("alice", SIP_PASSWORD, &phone1, 300, "MD5")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    let mut listed = contacts(&ok);
    listed.sort();
    let mut expected = vec![phone1.clone(), phone2.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(ok.to_string().contains("expires="), "{ok}");

    // Expires 0 removes one binding, the other stays.
    let ok = ua.register("alice", SIP_PASSWORD, &phone2, 0, "MD5").await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert_eq!(contacts(&ok), vec![phone1.clone()]);
    let ok = ua
        .register("alice", SIP_PASSWORD, &phone1, 0, "SHA-256")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert!(contacts(&ok).is_empty(), "{ok}");

    // The same answer twice (a replay, or two REGISTERs of the phone checked out of order):
    // the second gets a fresh nonce (stale), not a refusal that would make the phone give up.
    let (uri, aor, headers) = ua
        .answered_register("alice", "alice", SIP_PASSWORD, &phone1, 0, "MD5")
        .await;
    let text = ua.request("REGISTER", &uri, &aor, &headers);
    assert_eq!(ua.transact(&text).await.status_code.code(), 200);
    let text = ua.request("REGISTER", &uri, &aor, &headers);
    let again = ua.transact(&text).await;
    assert_eq!(again.status_code.code(), 401, "{again}");
    assert!(
        www_authenticate(&again)
            .iter()
            .any(|c| c.contains("stale=true")),
        "{again}"
    );

    // One agent cannot register another's address with its own credentials.
    let (uri, aor, headers) = ua
        .answered_register("bruno", "alice", SIP_PASSWORD, &phone1, 300, "MD5")
        .await;
    let text = ua.request("REGISTER", &uri, &aor, &headers);
    assert_eq!(ua.transact(&text).await.status_code.code(), 403);
}

async fn register_over_udp(db: Db) {
    let s = TestServer::start(db).await;
    registration_flow(Ua::udp("127.0.0.1", s.sip_udp()).await).await;
    s.stop().await;
}

async fn register_over_tcp(db: Db) {
    let s = TestServer::start(db).await;
    registration_flow(Ua::tcp(s.sip_tcp()).await).await;
    s.stop().await;
}

/// Credentials set through the admin API work at once; clearing the SIP username revokes them.
async fn sip_credentials_through_the_api(db: Db) {
    let s = TestServer::start(db).await;
    let admin = s.demo_login("ada").await;
    // The password alone cannot be hashed: it needs the username.
    let (status, body) = s
        .post(
            "/api/v1/users",
            &admin,
            serde_json::json!({ "username": "zoe", "display_name": "Zoe", "password": "zoe-password", "sip_password": "zoe-sip-password" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "missing_field");
    // SIP usernames are unique across tenants.
    let (status, body) = s
        .post(
            "/api/v1/users",
            &admin,
            serde_json::json!({ "username": "zoe", "display_name": "Zoe", "password": "zoe-password", "sip_username": "alice", "sip_password": "zoe-sip-password" }),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/users",
            &admin,
            serde_json::json!({ "username": "zoe", "display_name": "Zoe", "password": "zoe-password", "sip_username": "zoe bad", "sip_password": "zoe-sip-password" }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let id = s
        .create(
            "/api/v1/users",
            &admin,
            serde_json::json!({ "username": "zoe", "display_name": "Zoe", "password": "zoe-password", "sip_username": "zoe", "sip_password": "zoe-sip-password" }),
        )
        .await;
    let (_, row) = s.get(&format!("/api/v1/users/{id}"), &admin).await;
    assert_eq!(row["sip_username"], "zoe");
    assert!(
        row.get("sip_password").is_none() && row.get("sip_ha1").is_none(),
        "{row}"
    );

    let mut ua = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let contact = format!("sip:zoe@{}", ua.local);
    let ok = ua
        .register("zoe", "zoe-sip-password", &contact, 120, "SHA-256")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert_eq!(
        ua.bindings("zoe", "zoe-sip-password").await,
        [contact.as_str()]
    );

    // A new password voids the phone registered with the old one (lost, or stolen).
    let (status, body) = s
        .patch(
            &format!("/api/v1/users/{id}"),
            &admin,
            serde_json::json!({ "sip_username": "zoe", "sip_password": "zoe-new-password" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ua.bindings("zoe", "zoe-new-password").await,
        Vec::<String>::new()
    );
    let ok = ua
        .register("zoe", "zoe-new-password", &contact, 120, "SHA-256")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");

    let (status, body) = s
        .patch(
            &format!("/api/v1/users/{id}"),
            &admin,
            serde_json::json!({ "sip_username": null }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = ua
        .register("zoe", "zoe-sip-password", &contact, 120, "MD5")
        .await;
    assert_eq!(refused.status_code.code(), 403, "{refused}");
    s.stop().await;
}

async fn options_bye_and_unknown_methods(db: Db) {
    let s = TestServer::start(db).await;
    let mut ua = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let uri = format!("sip:{}", s.sip_udp());
    let text = ua.request("OPTIONS", &uri, &uri, "");
    let ok = ua.transact(&text).await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert!(
        header(&ok, "Allow").is_some_and(|a| a.contains("REGISTER")),
        "{ok}"
    );

    let text = ua.request("BYE", &uri, &format!("<{uri}>;tag=gone"), "");
    assert_eq!(ua.transact(&text).await.status_code.code(), 481);

    // A method vacd knows but does not serve: 405 with Allow.
    let text = ua.request("MESSAGE", &uri, &uri, "");
    let refused = ua.transact(&text).await;
    assert_eq!(refused.status_code.code(), 405, "{refused}");
    assert!(header(&refused, "Allow").is_some());

    // A method nobody knows: 501, answered as text (the CSeq names the unknown method, which
    // vacd-sip's parser would refuse, so the raw status line is checked).
    let text = ua.request("FROBNICATE", &uri, &uri, "");
    ua.send(&text).await;
    let raw = ua.next_raw_within(WAIT).await.expect("a response");
    let raw = String::from_utf8(raw).expect("text");
    assert!(raw.starts_with("SIP/2.0 501 "), "{raw}");
    assert!(
        raw.contains(&format!("CSeq: {} FROBNICATE", ua.cseq)),
        "{raw}"
    );
    s.stop().await;
}

async fn invites_are_screened(db: Db) {
    let s = server_with_trunk(db).await;
    // Not a trunk: refused whatever the number — statelessly: one 403 (no 100 Trying before
    // it) per INVITE, not repeated towards a source that may be forged, as a transaction would
    // repeat it (at 0.5 s, 1.5 s, …) until the ACK.
    let mut stranger = Ua::udp("127.0.0.1", s.sip_udp()).await;
    assert_eq!(stranger.invite(DEMO_NUMBER).await.status_code.code(), 403);
    let uri = format!("sip:{DEMO_NUMBER}@{}", s.sip_udp());
    let text = stranger.request("INVITE", &uri, &uri, "Contact: <sip:caller@127.0.0.1>\r\n");
    stranger.send(&text).await;
    let refused = stranger.next_response().await.expect("an answer");
    assert_eq!(refused.status_code.code(), 403, "{refused}");
    assert_eq!(
        stranger.next_raw_within(Duration::from_millis(1700)).await,
        None,
        "the 403 is sent once"
    );

    let mut trunk = Ua::udp(TRUNK_IP, s.sip_udp()).await;
    assert_eq!(trunk.invite("+4930999999").await.status_code.code(), 404);
    assert_eq!(trunk.invite("alice").await.status_code.code(), 404);
    // A service number, in any of its spellings, is found; an INVITE without an SDP offer is
    // not acceptable (tests/calls.rs places real calls).
    assert_eq!(trunk.invite(DEMO_NUMBER).await.status_code.code(), 488);
    assert_eq!(trunk.invite("004930123456").await.status_code.code(), 488);
    s.stop().await;
}

/// A request that requires a SIP extension (RFC 3261 §8.2.2.3) gets 420 with the extensions
/// vacd lacks in Unsupported — an INVITE once its trunk is known, not before.
async fn required_extensions_get_420(db: Db) {
    let s = server_with_trunk(db).await;
    let mut stranger = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let refused = stranger
        .invite_with(DEMO_NUMBER, "Require: 100rel\r\n")
        .await;
    assert_eq!(refused.status_code.code(), 403, "{refused}");
    let mut trunk = Ua::udp(TRUNK_IP, s.sip_udp()).await;
    let refused = trunk
        .invite_with(DEMO_NUMBER, "Supported: timer\r\nRequire: 100rel\r\n")
        .await;
    assert_eq!(refused.status_code.code(), 420, "{refused}");
    assert_eq!(header(&refused, "Unsupported"), Some("100rel"));
    let uri = format!("sip:{}", s.sip_udp());
    let text = trunk.request("OPTIONS", &uri, &uri, "Require: foo, bar\r\n");
    let refused = trunk.transact(&text).await;
    assert_eq!(refused.status_code.code(), 420, "{refused}");
    assert_eq!(header(&refused, "Unsupported"), Some("foo, bar"));
    // Supported is no requirement.
    let text = trunk.request("OPTIONS", &uri, &uri, "Supported: 100rel\r\n");
    assert_eq!(trunk.transact(&text).await.status_code.code(), 200);
    // A method vacd does not serve is refused as such first (RFC 3261 §8.2.1 before §8.2.2).
    let text = trunk.request("MESSAGE", &uri, &uri, "Require: foo\r\n");
    assert_eq!(trunk.transact(&text).await.status_code.code(), 405);
    s.stop().await;
}

/// Trunks that authenticate: challenged, then let through with the right password only.
async fn trunk_digest_auth(db: Db) {
    let s = TestServer::start_with(db, |config| {
        config.sip.trunks = vec![TrunkConfig {
            name: "roaming".into(),
            sources: vec![],
            username: Some("pbx".into()),
            password: Some("trunk-password".into()),
            outbound: None,
            outbound_username: None,
            outbound_password: None,
        }];
    })
    .await;
    let mut ua = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let challenge = ua.invite(DEMO_NUMBER).await;
    assert_eq!(challenge.status_code.code(), 401, "{challenge}");
    // Authenticated, the INVITE reaches the call flow, which wants an SDP offer (488).
    for (password, expected) in [("wrong-password", 403), ("trunk-password", 488)] {
        let offer = www_authenticate(&challenge).remove(0);
        let uri = format!("sip:{DEMO_NUMBER}@{}", s.sip_udp());
        let auth = answer_challenge(&offer, "INVITE", &uri, "pbx", password, 1, &new_tag())
            .expect("answer");
        let text = ua.request("INVITE", &uri, &uri, &format!("Authorization: {auth}\r\n"));
        let response = ua.transact(&text).await;
        assert_eq!(response.status_code.code(), expected, "{response}");
    }
    s.stop().await;
}

/// Garbage, truncated and oversized datagrams from one source while a phone registers from
/// another: the phone is served, the server keeps answering, a truncated request gets 400.
async fn malformed_storm_does_not_stop_a_good_register(db: Db) {
    let s = TestServer::start(db).await;
    let server = s.sip_udp();
    let storm = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.3:0").await.expect("bind");
        let good = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKs\r\n\
Max-Forwards: 70\r\nFrom: <sip:s@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: s\r\nCSeq: 1 OPTIONS\r\n\
Content-Length: 50\r\n\r\nshort";
        let mut junk: Vec<Vec<u8>> = vec![
            b"\x00\x01\x02\xff\xfe".to_vec(),
            b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            b"REGISTER\r\n\r\n".to_vec(),
            vec![b'A'; 60_000],
            good.as_bytes().to_vec(),
        ];
        for cut in [1, 10, 40, 90, good.len() - 3] {
            junk.push(good.as_bytes()[..cut].to_vec());
        }
        for round in 0..100 {
            let datagram = &junk[round % junk.len()];
            let _ = socket.send_to(datagram, server).await;
        }
        socket
    });
    let mut ua = Ua::udp("127.0.0.1", server).await;
    let contact = format!("sip:diego@{}", ua.local);
    let ok = ua
        .register("diego", SIP_PASSWORD, &contact, 600, "MD5")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    let storm_socket = storm.await.expect("storm task");
    drop(storm_socket);

    // A truncated request from a well-behaved source is answered 400, statelessly.
    let mut probe = Ua::udp("127.0.0.1", server).await;
    let uri = format!("sip:{server}");
    let text = probe
        .request("OPTIONS", &uri, &uri, "")
        .replace("Content-Length: 0", "Content-Length: 99");
    assert_eq!(probe.transact(&text).await.status_code.code(), 400);
    let text = probe.request("OPTIONS", &uri, &uri, "");
    assert_eq!(probe.transact(&text).await.status_code.code(), 200);
    s.stop().await;
}

/// A phone registered over TCP is reached only through its connection: when that closes, its
/// binding ends with it, and the phone's next connection registers anew — the old contact is
/// not listed beside the new one (nor rung, nor counted against the address's bindings).
async fn a_closed_tcp_connection_ends_its_registration(db: Db) {
    let s = TestServer::start(db).await;
    let mut first = Ua::tcp(s.sip_tcp()).await;
    let old = format!("sip:alice@{};transport=tcp", first.local);
    let ok = first
        .register("alice", SIP_PASSWORD, &old, 300, "MD5")
        .await;
    assert_eq!(contacts(&ok), vec![old.clone()], "{ok}");
    first.close().await;

    let mut second = Ua::tcp(s.sip_tcp()).await;
    let new = format!("sip:alice@{};transport=tcp", second.local);
    let ok = second
        .register("alice", SIP_PASSWORD, &new, 300, "MD5")
        .await;
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    assert_eq!(
        contacts(&ok),
        vec![new],
        "the closed connection's contact is gone"
    );
    s.stop().await;
}

/// Over TCP, a header section that does not parse is dropped with a log line and the
/// connection reads on: the next request on it is answered.
async fn a_malformed_head_over_tcp_is_dropped_and_the_connection_reads_on(db: Db) {
    let s = TestServer::start(db).await;
    let mut ua = Ua::tcp(s.sip_tcp()).await;
    let uri = format!("sip:{}", s.sip_tcp());
    let text = ua.request("OPTIONS", &uri, &uri, "");
    ua.send(&format!("X\n\r\n\r\n{text}")).await;
    let ok = ua
        .next_response_within(WAIT)
        .await
        .expect("the OPTIONS after it is answered");
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    s.stop().await;
}

/// Over TCP, a framed request that fails validation (no Max-Forwards, a CSeq of another
/// method) is answered 400 as over UDP, and the connection reads on. One that leaves the
/// stream without a message boundary is answered before the connection closes: 400 without a
/// Content-Length (RFC 3261 §18.3) or with a bad or conflicting one, 413 with a body over the
/// limit.
async fn a_malformed_request_over_tcp_gets_400(db: Db) {
    let s = TestServer::start(db).await;
    let mut ua = Ua::tcp(s.sip_tcp()).await;
    let uri = format!("sip:{}", s.sip_tcp());
    let no_max_forwards = ua
        .request("OPTIONS", &uri, &uri, "")
        .replace("Max-Forwards: 70\r\n", "");
    let other_method = ua
        .request("OPTIONS", &uri, &uri, "")
        .replace(" OPTIONS\r\n", " INFO\r\n");
    for bad in [no_max_forwards, other_method] {
        ua.send(&bad).await;
        let refused = ua.next_response_within(WAIT).await.expect("an answer");
        assert_eq!(refused.status_code.code(), 400, "{refused}");
    }
    let text = ua.request("OPTIONS", &uri, &uri, "");
    ua.send(&text).await;
    let ok = ua.next_response_within(WAIT).await.expect("an answer");
    assert_eq!(ok.status_code.code(), 200, "{ok}");
    let unknown_length = [
        ("", 400),
        ("Content-Length: five\r\n", 400),
        ("Content-Length: 0\r\nl: 7\r\n", 400),
        ("Content-Length: 100000000\r\n", 413),
    ];
    for (length, code) in unknown_length {
        let mut ua = Ua::tcp(s.sip_tcp()).await;
        let text = ua
            .request("OPTIONS", &uri, &uri, "")
            .replace("Content-Length: 0\r\n", length);
        ua.send(&text).await;
        let refused = ua.next_response_within(WAIT).await.expect("an answer");
        assert_eq!(refused.status_code.code(), code, "{refused}");
        ua.closed_by_server().await;
    }
    s.stop().await;
}

/// Beyond `sip.max_transactions` live transactions, a request gets a 503 with Retry-After and
/// opens none (over UDP an answered OPTIONS holds its transaction for 32 s).
async fn transactions_are_capped(db: Db) {
    let s = TestServer::start_with(db, |config| config.sip.max_transactions = 2).await;
    let mut ua = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let uri = format!("sip:{}", s.sip_udp());
    for expected in [200, 200, 503] {
        let text = ua.request("OPTIONS", &uri, &uri, "");
        let response = ua.transact(&text).await;
        assert_eq!(response.status_code.code(), expected, "{response}");
        if expected == 503 {
            assert_eq!(header(&response, "Retry-After"), Some("5"));
        }
    }
    s.stop().await;
}

/// PostgreSQL: while `sip.max_credential_lookups` REGISTERs wait for their credentials (the test
/// holds the users table), a further one gets 503 with Retry-After at once, without a read; the
/// first is answered once the database lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_credential_lookups_are_capped() {
    use sqlx::Connection;
    let s = TestServer::start_with(Db::Postgres, |c| c.sip.max_credential_lookups = 1).await;
    let mut ua = Ua::udp("127.0.0.1", s.sip_udp()).await;
    let phone = format!("sip:alice@{}", ua.local);
    let (uri, aor, headers) = ua
        .answered_register("alice", "alice", SIP_PASSWORD, &phone, 300, "MD5")
        .await;
    let mut db = sqlx::PgConnection::connect(s.database_url())
        .await
        .expect("database");
    sqlx::raw_sql("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut db)
        .await
        .expect("users held");
    // One socket: the second arrives after the first.
    for _ in 0..2 {
        let text = ua.request("REGISTER", &uri, &aor, &headers);
        ua.send(&text).await;
    }
    let busy = ua.next_response().await.expect("an answer to the second");
    assert_eq!(busy.status_code.code(), 503, "{busy}");
    assert_eq!(header(&busy, "Retry-After"), Some("5"));
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut db)
        .await
        .expect("users let go");
    let registered = ua.next_response().await.expect("an answer to the first");
    assert_eq!(registered.status_code.code(), 200, "{registered}");
    db.close().await.expect("closed");
    s.stop().await;
}

/// A source sending faster than `sip.rate_limit_per_second` loses the excess; others do not.
async fn floods_are_rate_limited(db: Db) {
    let s = TestServer::start_with(db, |config| config.sip.rate_limit_per_second = 10).await;
    let server = s.sip_udp();
    let mut flooder = Ua::udp("127.0.0.3", server).await;
    let uri = format!("sip:{server}");
    for _ in 0..50 {
        let text = flooder.request("OPTIONS", &uri, &uri, "");
        flooder.send(&text).await;
    }
    let mut answered = 0;
    while let Some(response) = flooder.next_response().await {
        assert_eq!(response.status_code.code(), 200);
        answered += 1;
        if answered == 50 {
            break;
        }
    }
    assert!((1..50).contains(&answered), "{answered} of 50 answered");
    let mut other = Ua::udp("127.0.0.1", server).await;
    let text = other.request("OPTIONS", &uri, &uri, "");
    assert_eq!(other.transact(&text).await.status_code.code(), 200);
    s.stop().await;
}

/// Over TCP nothing is dropped (nobody would send it again): a connection past the rate limit
/// is read on once the next window opens, and every request is answered — whether the requests
/// come one per read or many in one.
async fn a_tcp_flood_waits_instead_of_losing_messages(db: Db) {
    let s = TestServer::start_with(db, |config| config.sip.rate_limit_per_second = 10).await;
    let mut ua = Ua::tcp(s.sip_tcp()).await;
    let uri = format!("sip:{}", s.sip_tcp());
    for _ in 0..15 {
        let text = ua.request("OPTIONS", &uri, &uri, "");
        assert_eq!(ua.transact(&text).await.status_code.code(), 200);
    }
    let burst: String = (0..15)
        .map(|_| ua.request("OPTIONS", &uri, &uri, ""))
        .collect();
    ua.send(&burst).await;
    for cseq in 16..=30 {
        let response = ua.next_response().await.expect("every OPTIONS is answered");
        assert_eq!(response.status_code.code(), 200, "{response}");
        let answered = vacd_sip::message::cseq(&response.headers).expect("CSeq");
        assert_eq!(answered.0, cseq, "{response}");
    }
    s.stop().await;
}

/// A SIP TCP peer that sends requests but never reads the answers is closed once a write to it
/// has waited `sip.tcp_write_seconds`, which frees its place under the per-source cap: it
/// would otherwise hold its connection for ever.
async fn a_tcp_peer_that_stops_reading_is_closed(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.sip.max_tcp_connections_per_source = 1;
        c.sip.tcp_write_seconds = 1;
        c.sip.rate_limit_per_second = 1_000_000;
    })
    .await;
    let server = s.sip_tcp();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let stuck = socket.connect(server).await.expect("connected");
    let local = stuck.local_addr().expect("local address");
    // Requests only, not a byte of the answers read: vacd's writes fill the buffers and wait.
    // Each answer carries the request's Call-ID of 12,000 bytes back, so a few hundred fill
    // vacd's send buffer (at most 4 MiB); until vacd stops reading, its queue for the
    // connection overflows and drops answers (logged), which this needs to outlast.
    let (_unread, mut writing) = stuck.into_split();
    let padding = "x".repeat(12_000);
    let flood = tokio::spawn(async move {
        for n in 0..10_000u32 {
            let options = format!(
                "OPTIONS sip:{server} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bK-stuck-{n}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:stuck@{local}>;tag=s{n}\r\nTo: <sip:{server}>\r\n\
                 Call-ID: stuck-{n}-{padding}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            if writing.write_all(options.as_bytes()).await.is_err() {
                return;
            }
        }
        // Everything sent and still open: vacd must close it, not the peer.
        std::future::pending::<()>().await;
    });
    // While it is open, a second connection from the same source is one too many and closed at
    // once; after vacd closed it, a new one is served.
    let within = Duration::from_secs(60);
    let pong = common::eventually_within("a new connection served", within, || async {
        let mut next = TcpStream::connect(server).await.ok()?;
        next.write_all(b"\r\n\r\n").await.ok()?;
        let mut pong = [0u8; 2];
        match tokio::time::timeout(WAIT, next.read_exact(&mut pong)).await {
            Ok(Ok(_)) => Some(pong),
            _ => None,
        }
    })
    .await;
    assert_eq!(&pong, b"\r\n");
    flood.abort();
    s.stop().await;
}

/// sipp registers the demo agent `bruno` with digest auth (`loadtests/sip/register.xml`).
/// SIP TCP connections are capped per source, and one that sends nothing whole in time is
/// closed: a host opening idle connections by the thousand cannot use up the descriptors.
async fn idle_and_excess_tcp_connections_are_closed(db: Db) {
    let s = TestServer::start_with(db, |c| {
        c.sip.max_tcp_connections_per_source = 2;
        c.sip.tcp_first_message_seconds = 1;
    })
    .await;
    let connect = || async {
        tokio::time::timeout(WAIT, TcpStream::connect(s.sip_tcp()))
            .await
            .expect("connect in time")
            .expect("connected")
    };
    let closed = |mut stream: TcpStream| async move {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(0)) | Ok(Err(_)))
    };
    let mut talking = connect().await;
    let silent = connect().await;
    // A third from the same source is one too many.
    assert!(
        closed(connect().await).await,
        "the third connection is closed at once"
    );
    // The silent one goes once its second is up; the one that spoke stays.
    talking.write_all(b"\r\n\r\n").await.expect("ping");
    let mut pong = [0u8; 2];
    tokio::time::timeout(WAIT, talking.read_exact(&mut pong))
        .await
        .expect("pong in time")
        .expect("pong");
    assert_eq!(&pong, b"\r\n");
    assert!(closed(silent).await, "the silent connection is closed");
    // The one that spoke still answers.
    talking.write_all(b"\r\n\r\n").await.expect("ping");
    tokio::time::timeout(WAIT, talking.read_exact(&mut pong))
        .await
        .expect("pong in time")
        .expect("pong");
    s.stop().await;
}

async fn sipp_registers(db: Db) {
    // sipp answers only the first challenge and knows no SHA-256: offer MD5 first.
    let s = TestServer::start_with(db, |config| {
        config.sip.digest_algorithms = vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256];
    })
    .await;
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtests/sip/register.xml");
    // sipp needs a local port of its own; ask the kernel for a free one.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let child = tokio::process::Command::new("sipp")
        .args([
            "-sf",
            scenario,
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
        ])
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-au", "bruno", "-ap", SIP_PASSWORD, "-s", "bruno"])
        .arg(s.sip_udp().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp runs (Debian package sip-tester; scripts/test.sh installs it)");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("sipp finishes within 30 s")
        .expect("sipp output");
    assert!(
        output.status.success(),
        "sipp failed with {}:\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    s.stop().await;
}

on_both_backends!(
    register_over_udp,
    register_over_tcp,
    a_tcp_flood_waits_instead_of_losing_messages,
    idle_and_excess_tcp_connections_are_closed,
    a_tcp_peer_that_stops_reading_is_closed,
    a_malformed_head_over_tcp_is_dropped_and_the_connection_reads_on,
    a_malformed_request_over_tcp_gets_400,
    a_closed_tcp_connection_ends_its_registration,
    sip_credentials_through_the_api,
    options_bye_and_unknown_methods,
    invites_are_screened,
    required_extensions_get_420,
    trunk_digest_auth,
    malformed_storm_does_not_stop_a_good_register,
    floods_are_rate_limited,
    transactions_are_capped,
    sipp_registers,
);
