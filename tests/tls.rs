//! HTTPS and WSS: with `http.tls_certificate` and `http.tls_key` the listener speaks TLS only;
//! SIP over TLS: with `sip.tls` (and `sip.tls_certificate`, `sip.tls_key`) phones and trunks
//! signal over TLS too. Real sockets throughout: reqwest (rustls) and a tokio-rustls +
//! tungstenite websocket client that trust the test's self-signed certificate, the test SIP
//! phone over TLS, raw TCP clients that never say hello or shake hands too often, a plain-HTTP
//! client on the TLS port,
//! and the `vacd` binary with files it cannot use. TLS does not depend on the database: SQLite
//! only.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use vacd::config::Config;

use common::console::{Console, WAIT};
use common::mail::Certificate;
use common::phone::Phone;
use common::trunk::{self, NUMBER, SIP_PASSWORD, TRUNK_IP};
use common::{assert_error, Db, TestServer, DEMO_PASSWORD};
use vacd_sip::message;
use vacd_sip::rsip::Method;

/// A vacd over TLS with `certificate`, its configuration adjusted by `adjust` too.
async fn tls_server(certificate: &Certificate, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    TestServer::start_with(Db::Sqlite, move |config| {
        config.http.tls_certificate = Some(cert);
        config.http.tls_key = Some(key);
        adjust(config);
    })
    .await
}

/// A TLS client that trusts `trusted` (none: nothing at all) and offers `alpn`.
fn tls_connector(trusted: Option<&Path>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    if let Some(path) = trusted {
        for cert in CertificateDer::pem_file_iter(path).expect("open the certificate") {
            roots.add(cert.expect("PEM certificate")).expect("a root");
        }
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection from the loopback address `from` to the listener at `server`, as
/// 127.0.0.1 (the certificate's address).
async fn tls_connect(
    server: SocketAddr,
    from: Ipv4Addr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    let tcp = socket.connect(server).await?;
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .expect("the handshake ends within the wait")
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// The next JSON frame of type `kind` on `ws` (skipping others), within the wait.
async fn expect_frame(ws: &mut Wss, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let message = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no {kind} frame within the wait"),
            Ok(None) => panic!("websocket closed before {kind}"),
            Ok(Some(message)) => message.expect("websocket frame"),
        };
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
            if frame["type"] == kind {
                return frame;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_serve_the_api_and_the_agent_console() {
    let certificate = Certificate::new();
    let s = tls_server(&certificate, |_| {}).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);

    assert_https_serves(&s).await;
    let token = s.login("demo", "alice", DEMO_PASSWORD).await;

    // The console over wss://, its client offering h2 too: the listener picks HTTP/1.1, which
    // the websocket upgrade needs.
    let connector = tls_connector(Some(&certificate.cert), &[b"h2", b"http/1.1"]);
    let tls = tls_connect(s.addr(), Ipv4Addr::LOCALHOST, &connector)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let url = format!("wss://{}/ws/agent?token={token}", s.addr());
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket over TLS");
    let hello = expect_frame(&mut ws, "hello").await;
    assert!(hello.is_object(), "{hello}");

    // A client that does not trust the certificate fails its handshake; that ends its own
    // connection only: the console still answers, and new HTTPS requests are served.
    let untrusting = tls_connector(None, &[b"http/1.1"]);
    assert!(tls_connect(s.addr(), Ipv4Addr::LOCALHOST, &untrusting)
        .await
        .is_err());
    let command =
        json!({ "type": "presence.set", "status": "not_ready", "reason": "break", "id": "1" });
    ws.send(Message::Text(command.to_string().into()))
        .await
        .expect("send a command");
    let ack = expect_frame(&mut ws, "ack").await;
    assert_eq!(ack["id"], "1", "{ack}");
    let (status, _) = s.get("/api/v1/queues", &token).await;
    assert_eq!(status, StatusCode::OK);

    ws.close(None).await.expect("close the console");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_is_answered_https_required() {
    let certificate = Certificate::new();
    let s = tls_server(&certificate, |_| {}).await;
    let plain = reqwest::Client::new()
        .get(format!("http://{}/health", s.addr()))
        .send()
        .await
        .expect("a plain-HTTP answer");
    let status = plain.status();
    let body: Value = plain.json().await.expect("JSON body");
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "https_required");

    // ws:// fails the same way: no websocket.
    let url = format!("ws://{}/ws/agent?token=x", s.addr());
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    // The listener goes on serving HTTPS.
    assert_https_serves(&s).await;
    s.stop().await;
}

/// A client that connects and never sends its ClientHello holds its place only until the
/// handshake timeout: here the only place (`max_connections = 1`), so an HTTPS request gets
/// 503 (over TLS) while it lasts and is served once the server has closed the silent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    let certificate = Certificate::new();
    let s = tls_server(&certificate, |config| {
        config.http.tls_handshake_timeout_seconds = 1;
        config.http.max_connections = 1;
    })
    .await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(s.addr()).await.expect("connect");

    // Accepted after the silent connection (the listener accepts in order): no place left.
    let refused = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .expect("an answer over TLS");
    let status = refused.status();
    let body: Value = refused.json().await.expect("JSON body");
    assert_error(
        &(status, body),
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_connections",
    );

    closed_by_the_handshake_timeout(&mut silent, opened).await;

    // Its place is free again (it is given back before the socket closes).
    assert_https_serves(&s).await;
    s.stop().await;
}

/// A configuration for `vacd::server::start` with these TLS files, everything else on
/// ephemeral ports and a SQLite file in `dir`.
fn config_with(dir: &Path, certificate: Option<&Path>, key: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.http.listen = "127.0.0.1:0".parse().expect("address");
    config.sip.udp = "127.0.0.1:0".parse().expect("address");
    config.sip.tcp = "127.0.0.1:0".parse().expect("address");
    config.database.url = format!("sqlite://{}/vacd.db?mode=rwc", dir.display());
    config.http.tls_certificate = certificate.map(Path::to_path_buf);
    config.http.tls_key = key.map(Path::to_path_buf);
    config
}

/// The error with which the server refuses to start with `config`.
async fn start_error(config: &Config) -> String {
    match vacd::server::start(config).await {
        Ok(running) => {
            running.shutdown().await.expect("clean shutdown");
            panic!("the server started with {:?}", config.http);
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unreadable_or_mismatched_tls_files_stop_the_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certificate = Certificate::new();
    let other = Certificate::new();
    let (cert, key) = (certificate.cert.as_path(), certificate.key.as_path());

    let err = start_error(&config_with(dir.path(), Some(cert), None)).await;
    assert!(err.contains("http.tls_key"), "{err}");
    let err = start_error(&config_with(dir.path(), None, Some(key))).await;
    assert!(err.contains("http.tls_certificate"), "{err}");

    let nowhere = dir.path().join("no-such-key.pem");
    let err = start_error(&config_with(dir.path(), Some(cert), Some(&nowhere))).await;
    assert!(
        err.contains(&nowhere.display().to_string()) && err.contains("cannot be read"),
        "{err}"
    );

    // The files swapped: the certificate's file holds a key only.
    let err = start_error(&config_with(dir.path(), Some(key), Some(cert))).await;
    assert!(
        err.contains(&key.display().to_string()) && err.contains("no certificate"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n",
    )
    .expect("write");
    let err = start_error(&config_with(dir.path(), Some(&garbage), Some(key))).await;
    assert!(err.contains(&garbage.display().to_string()), "{err}");

    // Another certificate's key.
    let err = start_error(&config_with(dir.path(), Some(cert), Some(&other.key))).await;
    assert!(
        err.contains("does not belong")
            && err.contains(&other.key.display().to_string())
            && err.contains(&cert.display().to_string()),
        "{err}"
    );
    assert!(
        !dir.path().join("vacd.db").exists(),
        "the files are checked before the database is opened"
    );
}

/// What `vacd <args>` with the default configuration and `env` prints and exits with.
async fn run_vacd(dir: &Path, args: &[&str], env: &[(&str, PathBuf)]) -> (Option<i32>, String) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vacd.toml");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_vacd"));
    command
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(dir)
        .env("VACD_HTTP__LISTEN", "127.0.0.1:0")
        .env("VACD_SIP__UDP", "127.0.0.1:0")
        .env("VACD_SIP__TCP", "127.0.0.1:0")
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("vacd exits within a minute")
        .expect("vacd runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (output.status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_names_the_tls_setting_or_file_it_cannot_use() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certificate = Certificate::new();

    // A certificate without its key: the configuration is invalid (status 2), the key named.
    let (code, stderr) = run_vacd(
        dir.path(),
        &["check-config"],
        &[("VACD_HTTP__TLS_CERTIFICATE", certificate.cert.clone())],
    )
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("http.tls_key"), "{stderr}");

    // A key file that is not there: `check-config` and `serve` both name it.
    let nowhere = dir.path().join("missing-key.pem");
    let files = [
        ("VACD_HTTP__TLS_CERTIFICATE", certificate.cert.clone()),
        ("VACD_HTTP__TLS_KEY", nowhere.clone()),
    ];
    both_commands_name(dir.path(), &files, &nowhere).await;
}

/// `check-config` and `serve` in `dir` with the settings `files` both fail naming the file
/// `missing`, and `serve` stops before it opens the database.
async fn both_commands_name(dir: &Path, files: &[(&str, PathBuf)], missing: &Path) {
    for command in ["check-config", "serve"] {
        let (code, stderr) = run_vacd(dir, &[command], files).await;
        assert!(
            code.is_some_and(|code| code != 0),
            "{command}: {code:?} {stderr}"
        );
        assert!(
            stderr.contains(&missing.display().to_string()),
            "{command}: {stderr}"
        );
    }
    assert!(
        !dir.join("data").exists(),
        "serve stopped before opening the database"
    );
}

/// Stopping vacd does not wait for a handshake still pending (the listener waits for its
/// connections, and this one would wait an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_does_not_wait_for_a_pending_handshake() {
    let certificate = Certificate::new();
    let s = tls_server(&certificate, |config| {
        config.http.tls_handshake_timeout_seconds = 3600;
    })
    .await;
    let mut silent = TcpStream::connect(s.addr()).await.expect("connect");
    // Accepted in order: once this is served, the silent connection is in its handshake.
    assert_https_serves(&s).await;
    tokio::time::timeout(WAIT, s.stop())
        .await
        .expect("the stop does not wait for the pending handshake");
    server_closes(&mut silent).await;
}

/// The server closes `silent`, a connection that sent nothing, without a byte, within the wait.
async fn server_closes(silent: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, silent.read(&mut byte))
        .await
        .expect("the server closes the silent connection within the wait");
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "closed without a byte: {read:?}"
    );
}

/// [`server_closes`], and not before the 1 s handshake timeout since `opened`: timers do not
/// fire early, so it was the timeout that closed it.
async fn closed_by_the_handshake_timeout(silent: &mut TcpStream, opened: Instant) {
    server_closes(silent).await;
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "{:?}",
        opened.elapsed()
    );
}

/// `GET /health` over HTTPS is answered 200.
async fn assert_https_serves(s: &TestServer) {
    let (status, body) = s.call(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A vacd with SIP over TLS on a free loopback port with `certificate`, and the test trunk
/// (`127.0.0.2`); its configuration adjusted by `adjust` too.
async fn sip_tls_server(certificate: &Certificate, adjust: impl FnOnce(&mut Config)) -> TestServer {
    let (cert, key) = (certificate.cert.clone(), certificate.key.clone());
    TestServer::start_with(Db::Sqlite, move |config| {
        config.sip.tls = Some("127.0.0.1:0".parse().expect("address"));
        config.sip.tls_certificate = Some(cert);
        config.sip.tls_key = Some(key);
        trunk::configure(config, None);
        adjust(config);
    })
    .await
}

/// An agent's phone registers over TLS (digest auth); a caller on the trunk comes in over UDP
/// and is offered to the agent, whose phone is rung over its own TLS connection with vacd
/// named as a TLS hop; it answers, RTP crosses both ways, and its BYE ends both legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_over_tls_is_rung_over_its_connection() {
    let certificate = Certificate::new();
    let s = sip_tls_server(&certificate, |_| {}).await;
    let mut phone = Phone::tls("127.0.0.1", s.sip_tls(), &certificate.cert).await;
    // Challenged (401) first, then registered (200): `register` asserts both.
    phone.register("bruno", SIP_PASSWORD, None).await;
    let token = s.demo_login("bruno").await;
    let mut console = Console::connect(&s, &token).await;
    console.ready().await;

    let (mut caller, leg) = trunk::call_in(s.sip_udp()).await;
    let offer = console.expect("offer").await;
    let invite = phone.request(Method::Invite).await;
    let via = message::top_via(&invite.headers).expect("Via");
    assert_eq!(
        (via.transport, via.sent_by),
        ("TLS", s.sip_tls().to_string().as_str()),
        "the agent's phone is rung over TLS"
    );
    let agent_leg = phone.answer(&invite).await;
    assert_eq!(
        agent_leg.target,
        format!("sip:vacd@{};transport=tls", s.sip_tls()),
        "vacd's Contact on the TLS leg"
    );

    caller
        .rtp_reaches(leg.remote_rtp, b"to the agent", &phone)
        .await;
    phone
        .rtp_reaches(agent_leg.remote_rtp, b"to the caller", &caller)
        .await;

    assert_eq!(phone.bye(&agent_leg).await, 200);
    caller.take_bye().await;
    console
        .expect_where("interaction.ended", |f| {
            f["interaction"] == offer["interaction"]
        })
        .await;
    s.stop().await;
}

/// A trunk may call over TLS too: vacd answers on that connection and names itself there as a
/// TLS hop; the caller's BYE is taken on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_calls_over_tls() {
    let certificate = Certificate::new();
    let s = sip_tls_server(&certificate, |_| {}).await;
    let mut caller = Phone::tls(TRUNK_IP, s.sip_tls(), &certificate.cert).await;
    let leg = caller.call(NUMBER).await.expect("vacd answers over TLS");
    assert_eq!(
        leg.target,
        format!("sip:vacd@{};transport=tls", s.sip_tls())
    );
    assert_eq!(caller.bye(&leg).await, 200);
    s.stop().await;
}

/// A client that connects to SIP over TLS and never sends its ClientHello holds its place only
/// until the handshake timeout: here the only place for its address
/// (`max_tcp_connections_per_source = 1`), so a second TLS client is refused while it lasts,
/// and a phone connects and registers once the server has closed the silent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_client_that_never_says_hello_is_closed_after_the_handshake_timeout() {
    let certificate = Certificate::new();
    let s = sip_tls_server(&certificate, |config| {
        config.sip.tls_handshake_timeout_seconds = 1;
        config.sip.max_tcp_connections_per_source = 1;
    })
    .await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(s.sip_tls()).await.expect("connect");

    // Accepted after the silent connection (the listener accepts in order): no place left,
    // closed before its handshake.
    let connector = tls_connector(Some(&certificate.cert), &[]);
    let refused = tls_connect(s.sip_tls(), Ipv4Addr::LOCALHOST, &connector).await;
    assert!(refused.is_err(), "a second connection is refused");

    closed_by_the_handshake_timeout(&mut silent, opened).await;

    // Its place is free again (it is given back before the socket closes).
    let mut phone = Phone::tls("127.0.0.1", s.sip_tls(), &certificate.cert).await;
    phone.register("bruno", SIP_PASSWORD, None).await;
    s.stop().await;
}

/// One handshake per second and source (`tls_handshakes_per_second = 1`) on both TLS
/// listeners: of five handshakes at once from one address one is served and the others are
/// closed before they begin (unless a one-second window ended between them, which one
/// allows for) — while another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_are_limited_per_source() {
    let certificate = Certificate::new();
    let s = sip_tls_server(&certificate, |config| {
        config.http.tls_certificate = Some(certificate.cert.clone());
        config.http.tls_key = Some(certificate.key.clone());
        config.http.tls_handshakes_per_second = 1;
        config.sip.tls_handshakes_per_second = 1;
    })
    .await;
    let connector = tls_connector(Some(&certificate.cert), &[]);
    for listener in [s.addr(), s.sip_tls()] {
        let begun = futures_util::future::join_all(
            (0..5).map(|_| tls_connect(listener, Ipv4Addr::LOCALHOST, &connector)),
        )
        .await
        .iter()
        .map(Result::is_ok)
        .collect::<Vec<_>>();
        let served = begun.iter().filter(|&&served| served).count();
        assert!(
            (1..=2).contains(&served),
            "{listener}: five handshakes at once, one per second: {begun:?}"
        );
        assert!(
            tls_connect(listener, Ipv4Addr::new(127, 0, 0, 3), &connector)
                .await
                .is_ok(),
            "{listener}: another source is served"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_over_tls_with_files_it_cannot_use_stops_the_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certificate = Certificate::new();
    let other = Certificate::new();
    let (cert, key) = (certificate.cert.as_path(), certificate.key.as_path());
    let sip_tls = |certificate: Option<&Path>, key: Option<&Path>| {
        let mut config = config_with(dir.path(), None, None);
        config.sip.tls = Some("127.0.0.1:0".parse().expect("address"));
        config.sip.tls_certificate = certificate.map(Path::to_path_buf);
        config.sip.tls_key = key.map(Path::to_path_buf);
        config
    };

    let err = start_error(&sip_tls(Some(cert), None)).await;
    assert!(err.contains("sip.tls_key"), "{err}");

    let nowhere = dir.path().join("no-such-certificate.pem");
    let err = start_error(&sip_tls(Some(&nowhere), Some(key))).await;
    assert!(
        err.contains("SIP over TLS")
            && err.contains(&nowhere.display().to_string())
            && err.contains("cannot be read"),
        "{err}"
    );

    // The files swapped: the certificate's file holds a key only.
    let err = start_error(&sip_tls(Some(key), Some(cert))).await;
    assert!(
        err.contains(&key.display().to_string()) && err.contains("no certificate"),
        "{err}"
    );

    let err = start_error(&sip_tls(Some(cert), Some(&other.key))).await;
    assert!(
        err.contains("does not belong") && err.contains(&other.key.display().to_string()),
        "{err}"
    );
    assert!(
        !dir.path().join("vacd.db").exists(),
        "the files are checked before the database is opened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_names_the_sip_tls_setting_or_file_it_cannot_use() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let certificate = Certificate::new();
    let address = || ("VACD_SIP__TLS", PathBuf::from("127.0.0.1:0"));

    // An address without the files: the configuration is invalid (status 2), a file named.
    let (code, stderr) = run_vacd(dir.path(), &["check-config"], &[address()]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("sip.tls_certificate"), "{stderr}");

    // A key file that is not there: `check-config` and `serve` both name it.
    let nowhere = dir.path().join("missing-key.pem");
    let files = [
        address(),
        ("VACD_SIP__TLS_CERTIFICATE", certificate.cert.clone()),
        ("VACD_SIP__TLS_KEY", nowhere.clone()),
    ];
    both_commands_name(dir.path(), &files, &nowhere).await;
}
