//! The shared harness of the end-to-end tests: starts a real vacd (in-process, on an ephemeral
//! port) against a fresh database of either backend — a SQLite file in a temporary directory or
//! a new PostgreSQL database on the local server — and talks to it over real HTTP.
//!
//! PostgreSQL is reached at `VACD_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`);
//! each test creates its own database `vacd_t_…` and drops it on `stop`.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod console;
pub mod feed;
pub mod mail;
pub mod phone;
pub mod trunk;
pub mod visitor;

use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection;
use vacd::config::Config;
use vacd::server::Running;
use vacd::store::Store;

pub const OPERATOR_TOKEN: &str = "operator-test-token";
pub const DEMO_PASSWORD: &str = vacd::demo::PASSWORD;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each named `async fn(Db)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Db::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::common::Db::Postgres).await })*
        }
    };
}

fn postgres_admin_url() -> String {
    std::env::var("VACD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database of the given backend; dropped by [`TestDb::drop_db`].
pub struct TestDb {
    pub url: String,
    postgres_name: Option<String>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        match db {
            Db::Sqlite => TestDb {
                url: format!("sqlite://{}/vacd.db?mode=rwc", dir.path().display()),
                postgres_name: None,
                _dir: dir,
            },
            Db::Postgres => {
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "vacd_t_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    vacd::store::now_ms()
                );
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} is needed for this test: {e}")
                    });
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin
                    .rsplit_once('/')
                    .map_or(admin.as_str(), |(base, _)| base)
                    .to_owned();
                TestDb {
                    url: format!("{base}/{name}"),
                    postgres_name: Some(name),
                    _dir: dir,
                }
            }
        }
    }

    pub async fn drop_db(self) {
        if let Some(name) = self.postgres_name {
            let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
                .await
                .expect("connect");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop test database");
        }
    }
}

/// Sends the servers' warnings and errors to the test's captured output, so that a failed
/// test shows what the server logged (`VACD_TEST_LOG` sets another filter). The first call
/// installs it; the test harness's capture follows each test's runtime threads.
fn log_warnings() {
    let filter = std::env::var("VACD_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .try_init();
}

/// A vacd serving on 127.0.0.1 with the demo tenant and the operator token set.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    running: Running,
    db: TestDb,
}

impl TestServer {
    pub async fn start(db: Db) -> TestServer {
        TestServer::start_on(TestDb::new(db).await).await
    }

    /// Like [`TestServer::start`], with the harness's configuration adjusted by `adjust` first
    /// (e.g. SIP trunks).
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_configured(TestDb::new(db).await, adjust).await
    }

    /// Stops the server gracefully and starts a new one on the same database.
    pub async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// Like [`TestServer::restart`], with the new server's configuration adjusted by `adjust`.
    pub async fn restart_with(self, adjust: impl FnOnce(&mut Config)) -> TestServer {
        self.running.shutdown().await.expect("clean shutdown");
        TestServer::start_configured(self.db, adjust).await
    }

    async fn start_on(db: TestDb) -> TestServer {
        TestServer::start_configured(db, |_| {}).await
    }

    async fn start_configured(db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestServer {
        log_warnings();
        let mut config = Config::default();
        config.sip.udp = "127.0.0.1:0".parse().expect("address");
        config.sip.tcp = "127.0.0.1:0".parse().expect("address");
        config.http.listen = "127.0.0.1:0".parse().expect("address");
        config.http.max_body_bytes = 64 * 1024;
        config.database.url = db.url.clone();
        config.auth.operator_token = OPERATOR_TOKEN.into();
        config.demo.enabled = true;
        adjust(&mut config);
        let running = vacd::server::start(&config).await.expect("server starts");
        // With TLS configured: HTTPS, by a client that trusts the (self-signed) certificate.
        let (scheme, http) = match &config.http.tls_certificate {
            Some(certificate) => ("https", https_client(certificate)),
            None => ("http", reqwest::Client::new()),
        };
        TestServer {
            base: format!("{scheme}://{}", running.addr),
            http,
            running,
            db,
        }
    }

    /// Where the server's HTTP listener is.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.running.addr
    }

    /// Where the server's SIP endpoint listens for UDP.
    pub fn sip_udp(&self) -> std::net::SocketAddr {
        self.running.sip_udp
    }

    /// Where the server's SIP endpoint listens for TCP.
    pub fn sip_tcp(&self) -> std::net::SocketAddr {
        self.running.sip_tcp
    }

    /// Where the server's SIP endpoint listens for TLS (`sip.tls` must be set).
    pub fn sip_tls(&self) -> std::net::SocketAddr {
        self.running.sip_tls.expect("SIP over TLS is on")
    }

    pub fn store(&self) -> &Store {
        &self.running.store
    }

    /// The database the server runs on.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    pub fn routing(&self) -> vacd::routing::RoutingHandle {
        self.running.routing()
    }

    pub async fn stop(self) {
        self.running.shutdown().await.expect("clean shutdown");
        self.db.drop_db().await;
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON body
    /// (`Value::Null` when the body is empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.expect("body read");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("JSON body, got {:?}", String::from_utf8_lossy(&bytes)))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Creates a row and returns its id, failing the test on anything but 201.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> i64 {
        let (status, row) = self.post(path, token, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path} {body}: {row}");
        row["id"].as_i64().expect("id")
    }

    pub async fn login(&self, tenant: &str, username: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "tenant": tenant, "username": username, "password": password })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {tenant}/{username}: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn demo_login(&self, username: &str) -> String {
        self.login("demo", username, DEMO_PASSWORD).await
    }

    /// A new agent of the demo tenant (password `<username>-password`) serving `queues`,
    /// created with `admin`'s token; returns its id and its own token.
    pub async fn demo_agent(&self, admin: &str, username: &str, queues: &[i64]) -> (i64, String) {
        let (user, token) = self.demo_user(admin, username, json!({})).await;
        for queue in queues {
            self.create(
                "/api/v1/queue-members",
                admin,
                json!({ "queue_id": queue, "user_id": user }),
            )
            .await;
        }
        (user, token)
    }

    /// A new user of the demo tenant (password `<username>-password`) with `fields` (a role,
    /// a team, …), created with `admin`'s token; returns its id and its own token.
    pub async fn demo_user(&self, admin: &str, username: &str, fields: Value) -> (i64, String) {
        let password = format!("{username}-password");
        let mut user =
            json!({ "username": username, "display_name": username, "password": password });
        if let (Some(user), Some(fields)) = (user.as_object_mut(), fields.as_object()) {
            user.extend(fields.clone());
        }
        let id = self.create("/api/v1/users", admin, user).await;
        (id, self.login("demo", username, &password).await)
    }

    /// Creates a tenant with an admin `admin` / `admin-password` and returns its id and the
    /// admin's token.
    pub async fn new_tenant(&self, name: &str) -> (i64, String) {
        let id = self
            .create(
                "/api/v1/tenants",
                OPERATOR_TOKEN,
                json!({ "name": name, "display_name": name, "admin_username": "admin", "admin_password": "admin-password" }),
            )
            .await;
        (id, self.login(name, "admin", "admin-password").await)
    }
}

/// An HTTPS client (rustls) that trusts the PEM certificate at `certificate` and nothing else.
pub fn https_client(certificate: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(certificate).expect("read the test certificate");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM certificate"))
        .build()
        .expect("HTTPS client")
}

/// Checks state that no event announces (a row, a record) until `check` finds it, failing
/// after the console wait with `what`.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, console::WAIT, check).await
}

/// [`eventually`], failing after `wait`.
pub async fn eventually_within<T, F, Fut>(what: &str, wait: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + wait;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Asserts an error response: status, the JSON error shape and its code.
#[track_caller]
pub fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    let (got, body) = response;
    assert_eq!(*got, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
}
