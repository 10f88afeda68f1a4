//! Configuration: one [`Config`] tree read from TOML (`config/vacd.toml` by default), with every
//! key overridable by an environment variable `VACD_<SECTION>__<KEY>` (for example
//! `VACD_HTTP__LISTEN=0.0.0.0:8080`, `VACD_DATABASE__URL=postgres://…`).
//!
//! Loading is two steps: [`Config::load`] merges defaults, file and environment and rejects
//! unknown keys and wrong types; [`Config::validate`] checks values that serde cannot (URLs,
//! ranges). Every error names the key, so `vacd check-config` tells an admin exactly what to fix.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the configuration came from, or what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("`{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub demo: DemoConfig,
    pub sip: SipConfig,
    pub chat: ChatSettings,
    pub channels: crate::channels::ChannelsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatSettings {
    /// A visitor silent this long while an agent is with them is warned, in seconds.
    pub idle_warning_seconds: u64,
    /// … and let go after this long (counted from their last message), in seconds.
    pub idle_timeout_seconds: u64,
    /// Longest chat message, in characters.
    pub max_message_chars: usize,
    /// Messages a participant may send in a burst, and how many come back per second.
    pub message_burst: u32,
    pub messages_per_second: u32,
    /// New chats one source (an IPv4 address or an IPv6 /64) may open per second.
    pub starts_per_second_per_ip: u32,
    /// Visitor messages one source (an IPv4 address or an IPv6 /64) may send per second, over
    /// all its chats.
    pub messages_per_second_per_ip: u32,
    /// Reads of a widget's settings and availability (one per page view of the site the widget
    /// is on) one source (an IPv4 address or an IPv6 /64) may make per second.
    pub widget_reads_per_second_per_ip: u32,
    /// A visitor's chat socket is pinged this often, in seconds; one that answered nothing for
    /// two of them (a phone that changed networks, a laptop asleep) is closed as gone, so that
    /// its chat sees the visitor leave.
    pub ping_interval_seconds: u64,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            idle_warning_seconds: 300,
            idle_timeout_seconds: 420,
            max_message_chars: 4000,
            message_burst: 10,
            messages_per_second: 2,
            starts_per_second_per_ip: 5,
            messages_per_second_per_ip: 50,
            widget_reads_per_second_per_ip: 20,
            ping_interval_seconds: 30,
        }
    }
}

impl ChatSettings {
    /// The chat session's rules from these settings.
    pub fn rules(&self) -> vacd_actors::chat::ChatConfig {
        vacd_actors::chat::ChatConfig {
            idle_warning: Duration::from_secs(self.idle_warning_seconds),
            idle_timeout: Duration::from_secs(
                self.idle_timeout_seconds.max(self.idle_warning_seconds),
            ),
            max_message_chars: self.max_message_chars,
            burst: self.message_burst.max(1),
            per_second: self.messages_per_second,
            ..vacd_actors::chat::ChatConfig::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for HTTP, the admin API and the websockets.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Open connections at most, websockets included; past it a connection is answered 503
    /// and closed. Keep it below the process's file descriptor limit (`ulimit -n`).
    pub max_connections: usize,
    /// Open connections from one source (an IPv4 address or an IPv6 /64) at most; past it
    /// 503 too. 0 (the default) turns it off: behind a reverse proxy — vacd's usual place —
    /// every connection has the proxy's address. Set it when clients reach vacd directly.
    pub max_connections_per_source: usize,
    /// Seconds a client has to send a request head, counted from the connection's opening (with
    /// TLS: the handshake's end) or its last answer: a keep-alive connection idle that long is closed too. A request body
    /// may pause no longer than this between two of its pieces.
    pub header_timeout_seconds: u64,
    /// Seconds a write to a client may wait for it to take the bytes (its receive window full:
    /// it does not read its answers) before the connection is closed.
    pub write_timeout_seconds: u64,
    /// Reverse proxies in front of vacd (addresses or networks, `10.0.0.0/8`): a request from
    /// one counts for the client its `X-Forwarded-For` names — the nearest address there that
    /// is no trusted proxy — in the chat's and the logins' per-source limits. Empty (the default): every
    /// request counts for the address it came from, and `X-Forwarded-For` is ignored (anyone
    /// could write it).
    pub trusted_proxies: Vec<Network>,
    /// The server's certificate chain (PEM: its own certificate first, then the intermediates).
    /// Set together with `tls_key`, the listener speaks TLS only: HTTPS and WSS on `listen`.
    pub tls_certificate: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted) of `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a new connection has to finish its TLS handshake before it is closed (with TLS).
    pub tls_handshake_timeout_seconds: u64,
    /// TLS handshakes begun per second from one source (an IPv4 address or an IPv6 /64) at
    /// most; a connection past it is closed before its handshake (each costs the server a
    /// key exchange and a signature). 0 turns the limit off. Many agents behind one NAT
    /// address reconnecting at once (after a restart: a browser opens several connections
    /// each) need room here.
    pub tls_handshakes_per_second: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (embedded default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a login token, in seconds.
    pub token_ttl_seconds: u64,
    /// Bearer token of the operator, the only caller who may create, list and delete tenants.
    /// Empty disables those operations.
    pub operator_token: String,
    /// Failed logins of one account (tenant and username) within `failed_login_window_seconds`
    /// after which it is refused (429) until that window ends; 0 turns this off.
    pub max_failed_logins: u32,
    /// Failed logins from one client address (any accounts) within the same window after which
    /// it is refused until its window ends; 0 (the default) turns this off. Set it only where
    /// vacd sees its clients' addresses: directly, or behind `http.trusted_proxies`. See
    /// `api::login_guard`.
    pub max_failed_logins_per_source: u32,
    pub failed_login_window_seconds: u64,
    /// Bearer token `/metrics` asks of its scraper; empty: `/metrics` is open to whoever reaches
    /// the listener (the reverse proxy must then keep it from the internet).
    pub metrics_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `vacd=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Seed the demo tenant (see README) at start if it does not exist yet.
    pub enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// UDP address of the SIP endpoint (port 0: any free port).
    pub udp: SocketAddr,
    /// TCP address of the SIP endpoint.
    pub tcp: SocketAddr,
    /// SIP over TLS (RFC 3261 §26, `transport=tls`; port 5061 by convention): its address,
    /// unset (the default) for none. Needs `tls_certificate` and `tls_key`.
    pub tls: Option<SocketAddr>,
    /// The certificate chain SIP over TLS presents (PEM: its own certificate first, then the
    /// intermediates). SIP's own, not the HTTP listener's: see `docs/decisions.md`.
    pub tls_certificate: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted) of `tls_certificate`.
    pub tls_key: Option<PathBuf>,
    /// Seconds a new SIP TLS connection has to finish its handshake before it is closed; the
    /// first message's time (`tcp_first_message_seconds`) starts after it.
    pub tls_handshake_timeout_seconds: u64,
    /// SIP TLS handshakes begun per second from one source at most; a connection past it is
    /// closed before its handshake. 0 turns the limit off.
    pub tls_handshakes_per_second: u32,
    /// Digest realm of registrations and trunk authentication. The agents' stored HA1 values
    /// are computed with it: after changing it, set their SIP passwords again.
    pub realm: String,
    /// Most simultaneous calls; further INVITEs get 503 with Retry-After.
    pub max_calls: u32,
    /// Most live SIP transactions (a request over UDP holds one for 32 s after its answer);
    /// further requests get a stateless 503 with Retry-After.
    pub max_transactions: usize,
    /// Most REGISTERs whose credentials are being read from the database at once (each one
    /// with a nonce vacd issued, any username); further ones get 503 with Retry-After.
    pub max_credential_lookups: usize,
    /// Messages per second accepted from one source (an IPv4 address or an IPv6 /64); the rest
    /// are dropped.
    pub rate_limit_per_second: u32,
    /// Most open SIP TCP connections, TLS ones included; further ones are closed at once.
    pub max_tcp_connections: usize,
    /// Most open SIP TCP connections (TLS ones included) from one source (an IPv4 address or
    /// an IPv6 /64); 0: no such limit. The phones of an office behind one NAT address all
    /// count here.
    pub max_tcp_connections_per_source: usize,
    /// Seconds a new SIP TCP connection (a TLS one: after its handshake) may take to send its
    /// first message (or keep-alive) before it is closed.
    pub tcp_first_message_seconds: u64,
    /// Seconds a write to a SIP TCP connection (TLS ones included) may wait for the peer to
    /// take its bytes; a peer that stops reading is closed then, instead of holding its
    /// connection for ever while what vacd sends it is dropped.
    pub tcp_write_seconds: u64,
    /// Seconds a phone vacd calls outside of routing's offers — an external number (transfer,
    /// click-to-dial), a click-to-dial agent's own phone, a monitoring supervisor's — may ring
    /// before vacd gives up and cancels it.
    pub ring_timeout_seconds: u64,
    /// Digest algorithms offered in challenges, most preferred first. Old phones (and sipp)
    /// read only the first challenge; put `MD5` first for them.
    pub digest_algorithms: Vec<DigestAlgorithm>,
    /// Providers allowed to send INVITEs.
    pub trunks: Vec<TrunkConfig>,
    /// Address the RTP sockets of calls bind to and that vacd's SDP advertises.
    pub rtp_address: IpAddr,
    /// First port of the RTP range (each call takes two ports: caller leg and agent leg).
    pub rtp_port_min: u16,
    /// Last port of the RTP range.
    pub rtp_port_max: u16,
    /// Directory with `greeting.wav` (played once when a caller is queued) and `music.wav`
    /// (looped while waiting); a missing file is replaced by a generated tone.
    pub sounds: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DigestAlgorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

/// A provider's SIP trunk: INVITEs are accepted from its source networks, or from anywhere
/// with its digest credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// Addresses or networks (`203.0.113.7`, `198.51.100.0/24`, `2001:db8::/32`).
    #[serde(default)]
    pub sources: Vec<Network>,
    /// Digest username the trunk authenticates with (together with `password`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Where calls to external numbers are sent through this trunk (the provider's proxy,
    /// over UDP). The first trunk that has one carries transfers to external numbers.
    #[serde(default)]
    pub outbound: Option<SocketAddr>,
    /// What vacd answers the provider's challenge (401/407) to its INVITEs with: the account
    /// vacd has at the provider — not `username`/`password`, which let callers in.
    #[serde(default)]
    pub outbound_username: Option<String>,
    #[serde(default)]
    pub outbound_password: Option<String>,
}

/// An IP network in CIDR notation; a bare address is a network of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 source may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl TryFrom<String> for Network {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("`{text}` is not an IP address or network such as 192.0.2.0/24");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.as_str(), None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }
}

impl From<Network> for String {
    fn from(network: Network) -> String {
        network.to_string()
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            udp: SocketAddr::from(([127, 0, 0, 1], 5060)),
            tcp: SocketAddr::from(([127, 0, 0, 1], 5060)),
            tls: None,
            tls_certificate: None,
            tls_key: None,
            tls_handshake_timeout_seconds: 10,
            tls_handshakes_per_second: 100,
            realm: "vacd".into(),
            max_calls: 1000,
            max_transactions: 50_000,
            max_credential_lookups: 256,
            rate_limit_per_second: 200,
            max_tcp_connections: 4096,
            max_tcp_connections_per_source: 256,
            tcp_first_message_seconds: 30,
            tcp_write_seconds: 10,
            ring_timeout_seconds: 60,
            digest_algorithms: vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5],
            trunks: Vec::new(),
            rtp_address: IpAddr::from([127, 0, 0, 1]),
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            sounds: PathBuf::from("config/sounds"),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            max_connections: 8192,
            max_connections_per_source: 0,
            header_timeout_seconds: 30,
            write_timeout_seconds: 30,
            trusted_proxies: Vec::new(),
            tls_certificate: None,
            tls_key: None,
            tls_handshake_timeout_seconds: 10,
            tls_handshakes_per_second: 100,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/vacd.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_seconds: 12 * 3600,
            operator_token: String::new(),
            max_failed_logins: 10,
            max_failed_logins_per_source: 0,
            metrics_token: String::new(),
            failed_login_window_seconds: 300,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// `Err` naming `key` unless `value` lies in `range`.
fn within(
    key: &'static str,
    value: impl TryInto<u64>,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), Error> {
    if value.try_into().is_ok_and(|value| range.contains(&value)) {
        return Ok(());
    }
    Err(Error::Invalid {
        key,
        problem: format!("must be {} to {}", range.start(), range.end()),
    })
}

/// `Err` naming `key` if `value` is zero, which would refuse everything instead of turning a
/// limit off.
fn at_least_one(key: &'static str, value: impl TryInto<u64>) -> Result<(), Error> {
    if value.try_into().is_ok_and(|value| value >= 1) {
        return Ok(());
    }
    Err(Error::Invalid {
        key,
        problem: "must be at least 1 (0 would refuse everything)".into(),
    })
}

impl Config {
    /// Defaults, then the TOML file, then `VACD_*` environment variables.
    pub fn load(path: &Path) -> Result<Config, Error> {
        if !path.exists() {
            return Err(Error::Missing(path.to_path_buf()));
        }
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            // Only `VACD_<SECTION>__<KEY>`: `VACD_CONFIG` (the file's path) and the tests'
            // `VACD_TEST_*` are no settings.
            .merge(
                Env::prefixed("VACD_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            )
            .extract()
            .map_err(|e| Error::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid {
                key: "database.url",
                problem: format!("`{url}` is neither a sqlite: nor a postgres:// URL"),
            });
        }
        // Each connection of the pool would get a database of its own, unmigrated but one
        // (so would a URL without a path: a temporary database per connection).
        let sqlite_without_file = url.starts_with("sqlite:")
            && url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .is_none_or(str::is_empty);
        if sqlite_without_file
            || url.starts_with("sqlite:")
                && (url.contains(":memory:") || url.contains("mode=memory"))
        {
            return Err(Error::Invalid {
                key: "database.url",
                problem: "an in-memory SQLite database is not shared between connections; \
                          give a file (sqlite://data/vacd.db?mode=rwc)"
                    .into(),
            });
        }
        at_least_one("database.max_connections", self.database.max_connections)?;
        if self.http.max_body_bytes < 1024 {
            return Err(Error::Invalid {
                key: "http.max_body_bytes",
                problem: "must be at least 1024".into(),
            });
        }
        at_least_one("http.max_connections", self.http.max_connections)?;
        within(
            "http.header_timeout_seconds",
            self.http.header_timeout_seconds,
            1..=3600,
        )?;
        within(
            "http.write_timeout_seconds",
            self.http.write_timeout_seconds,
            1..=3600,
        )?;
        self.validate_tls()?;
        self.validate_sip()?;
        // Zero would refuse every chat, message or visitor line, not turn a limit off.
        let chat = &self.chat;
        at_least_one(
            "chat.starts_per_second_per_ip",
            chat.starts_per_second_per_ip,
        )?;
        at_least_one(
            "chat.messages_per_second_per_ip",
            chat.messages_per_second_per_ip,
        )?;
        at_least_one(
            "chat.widget_reads_per_second_per_ip",
            chat.widget_reads_per_second_per_ip,
        )?;
        at_least_one("chat.messages_per_second", chat.messages_per_second)?;
        at_least_one("chat.ping_interval_seconds", chat.ping_interval_seconds)?;
        at_least_one("chat.max_message_chars", chat.max_message_chars)?;
        // A login lives a year at most: far beyond that the expiry overflows.
        within(
            "auth.token_ttl_seconds",
            self.auth.token_ttl_seconds,
            1..=366 * 86_400,
        )?;
        // A day at most: a later deadline is no idle rule, and an unbounded one overflows the
        // clock's arithmetic.
        for (key, seconds) in [
            ("chat.idle_warning_seconds", self.chat.idle_warning_seconds),
            ("chat.idle_timeout_seconds", self.chat.idle_timeout_seconds),
        ] {
            if seconds > 86_400 {
                return Err(Error::Invalid {
                    key,
                    problem: "must be at most 86400 (a day)".into(),
                });
            }
        }
        // Both zero would end every chat the moment an agent joins (the timeout is at least
        // the warning's).
        if self.chat.idle_timeout_seconds == 0 && self.chat.idle_warning_seconds == 0 {
            return Err(Error::Invalid {
                key: "chat.idle_timeout_seconds",
                problem: "must be at least 1 (with chat.idle_warning_seconds 0 too, every chat \
                          would end at once)"
                    .into(),
            });
        }
        // Zero would count every failure in a window of its own: no lock-out at all (turn the
        // limits off with `auth.max_failed_logins = 0` instead).
        let limited = self.auth.max_failed_logins > 0 || self.auth.max_failed_logins_per_source > 0;
        if limited && self.auth.failed_login_window_seconds == 0 {
            return Err(Error::Invalid {
                key: "auth.failed_login_window_seconds",
                problem: "must be at least 1".into(),
            });
        }
        self.channels
            .validate()
            .map_err(|(key, problem)| Error::Invalid { key, problem })?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| Error::Invalid {
            key: "log.level",
            problem: e.to_string(),
        })?;
        Ok(())
    }

    /// Both TLS files or neither, each a path; whether they hold a matching certificate and
    /// key is checked where they are read (`serve::Tls::configured`).
    fn validate_tls(&self) -> Result<(), Error> {
        let http = &self.http;
        within(
            "http.tls_handshake_timeout_seconds",
            http.tls_handshake_timeout_seconds,
            1..=3600,
        )?;
        for (key, path) in [
            ("http.tls_certificate", &http.tls_certificate),
            ("http.tls_key", &http.tls_key),
        ] {
            if path
                .as_ref()
                .is_some_and(|path| path.as_os_str().is_empty())
            {
                return Err(Error::Invalid {
                    key,
                    problem: "must name a PEM file (leave it out for plain HTTP)".into(),
                });
            }
        }
        match (&http.tls_certificate, &http.tls_key) {
            (Some(_), None) => Err(Error::Invalid {
                key: "http.tls_key",
                problem: "http.tls_certificate is set: TLS needs the certificate's private key \
                          too (or neither, for plain HTTP)"
                    .into(),
            }),
            (None, Some(_)) => Err(Error::Invalid {
                key: "http.tls_certificate",
                problem: "http.tls_key is set: TLS needs the certificate (chain) too (or \
                          neither, for plain HTTP)"
                    .into(),
            }),
            _ => Ok(()),
        }
    }

    fn validate_sip(&self) -> Result<(), Error> {
        let sip = &self.sip;
        let realm_ok = !sip.realm.is_empty()
            && sip.realm.len() <= 128
            && sip
                .realm
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
        if !realm_ok {
            return Err(Error::Invalid {
                key: "sip.realm",
                problem: "must be 1 to 128 printable ASCII characters without quotes".into(),
            });
        }
        within(
            "sip.ring_timeout_seconds",
            sip.ring_timeout_seconds,
            1..=3600,
        )?;
        within(
            "sip.tcp_first_message_seconds",
            sip.tcp_first_message_seconds,
            1..=3600,
        )?;
        within("sip.tcp_write_seconds", sip.tcp_write_seconds, 1..=3600)?;
        within(
            "sip.tls_handshake_timeout_seconds",
            sip.tls_handshake_timeout_seconds,
            1..=3600,
        )?;
        validate_sip_tls(sip)?;
        at_least_one("sip.max_calls", sip.max_calls)?;
        at_least_one("sip.max_transactions", sip.max_transactions)?;
        at_least_one("sip.max_credential_lookups", sip.max_credential_lookups)?;
        at_least_one("sip.max_tcp_connections", sip.max_tcp_connections)?;
        at_least_one("sip.rate_limit_per_second", sip.rate_limit_per_second)?;
        if sip.rtp_port_min == 0 || sip.rtp_port_max < sip.rtp_port_min.saturating_add(1) {
            return Err(Error::Invalid {
                key: "sip.rtp_port_max",
                problem: format!(
                    "the RTP range {}-{} must start above 0 and hold at least two ports",
                    sip.rtp_port_min, sip.rtp_port_max
                ),
            });
        }
        if sip.rtp_address.is_unspecified() {
            return Err(Error::Invalid {
                key: "sip.rtp_address",
                problem: "must be a concrete address: it is advertised in SDP".into(),
            });
        }
        let offered = &sip.digest_algorithms;
        if offered.is_empty() || (offered.len() == 2 && offered[0] == offered[1]) {
            return Err(Error::Invalid {
                key: "sip.digest_algorithms",
                problem: "must name MD5, SHA-256 or both, each once".into(),
            });
        }
        let mut names = std::collections::HashSet::new();
        for trunk in &sip.trunks {
            if trunk.name.trim().is_empty() || !names.insert(trunk.name.as_str()) {
                return Err(Error::Invalid {
                    key: "sip.trunks.name",
                    problem: format!("`{}` is empty or not unique", trunk.name),
                });
            }
            match (&trunk.username, &trunk.password) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {}
                (None, None) if !trunk.sources.is_empty() => {}
                (None, None) => {
                    return Err(Error::Invalid {
                        key: "sip.trunks.sources",
                        problem: format!(
                            "trunk `{}` needs source addresses or a username and password",
                            trunk.name
                        ),
                    })
                }
                _ => {
                    return Err(Error::Invalid {
                        key: "sip.trunks.password",
                        problem: format!(
                            "trunk `{}` needs both a non-empty username and password, or neither",
                            trunk.name
                        ),
                    })
                }
            }
            match (&trunk.outbound_username, &trunk.outbound_password) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {}
                (None, None) => {}
                _ => {
                    return Err(Error::Invalid {
                        key: "sip.trunks.outbound_password",
                        problem: format!(
                            "trunk `{}` needs both a non-empty outbound_username and outbound_password, or neither",
                            trunk.name
                        ),
                    })
                }
            }
        }
        Ok(())
    }
}

/// SIP over TLS: an address with both files, or none of the three; the files' contents are
/// checked where they are read (`sip::load_tls`).
fn validate_sip_tls(sip: &SipConfig) -> Result<(), Error> {
    for (key, path) in [
        ("sip.tls_certificate", &sip.tls_certificate),
        ("sip.tls_key", &sip.tls_key),
    ] {
        match path {
            Some(path) if path.as_os_str().is_empty() => {
                return Err(Error::Invalid {
                    key,
                    problem: "must name a PEM file (leave it out without SIP over TLS)".into(),
                })
            }
            Some(_) if sip.tls.is_none() => {
                return Err(Error::Invalid {
                    key,
                    problem: "is set but `sip.tls` (the address SIP over TLS listens on) is not: set it, or leave the TLS files out"
                        .into(),
                })
            }
            None if sip.tls.is_some() => {
                return Err(Error::Invalid {
                    key,
                    problem: "`sip.tls` is set: SIP over TLS needs its certificate and private key (they may be the HTTP listener's files)"
                        .into(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Figment's errors carry the key path; render every one of them on its own line.
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", e.path.join("."))
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{origin}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// The message with which `toml` is rejected.
    fn rejection(toml: &str) -> String {
        let mut message = String::new();
        figment::Jail::expect_with(|jail| {
            jail.create_file("vacd.toml", toml)?;
            let err = Config::load(Path::new("vacd.toml")).expect_err("config must be rejected");
            message = err.to_string();
            Ok(())
        });
        message
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vacd.toml");
        let config = Config::load(&path).expect("config/vacd.toml loads");
        assert!(config.demo.enabled);
        assert!(config.http.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = rejection("[http]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn a_bold_letter_font_needs_its_regular_face() {
        let err = rejection("[channels]\nletter_bold_font = \"/fonts/Bold.ttf\"\n");
        assert!(err.contains("channels.letter_bold_font"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = rejection("[database]\nmax_connections = \"many\"\n");
        assert!(err.contains("database.max_connections"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = rejection("[database]\nurl = \"mysql://x\"\n");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn values_that_would_refuse_everything_are_refused() {
        for (toml, key) in [
            (
                "[chat]\nstarts_per_second_per_ip = 0\n",
                "chat.starts_per_second_per_ip",
            ),
            (
                "[chat]\nmessages_per_second_per_ip = 0\n",
                "chat.messages_per_second_per_ip",
            ),
            (
                "[chat]\nmessages_per_second = 0\n",
                "chat.messages_per_second",
            ),
            ("[chat]\nmax_message_chars = 0\n", "chat.max_message_chars"),
            (
                "[auth]\ntoken_ttl_seconds = 9223372036854775807\n",
                "auth.token_ttl_seconds",
            ),
            ("[auth]\ntoken_ttl_seconds = 0\n", "auth.token_ttl_seconds"),
            ("[database]\nurl = \"sqlite::memory:\"\n", "database.url"),
            (
                "[database]\nurl = \"sqlite://x.db?mode=memory\"\n",
                "database.url",
            ),
            ("[database]\nurl = \"sqlite://?mode=rwc\"\n", "database.url"),
            (
                "[chat]\nidle_timeout_seconds = 0\nidle_warning_seconds = 0\n",
                "chat.idle_timeout_seconds",
            ),
            (
                "[auth]\nfailed_login_window_seconds = 0\n",
                "auth.failed_login_window_seconds",
            ),
            ("[sip]\nmax_calls = 0\n", "sip.max_calls"),
            ("[sip]\nmax_transactions = 0\n", "sip.max_transactions"),
            (
                "[sip]\nmax_credential_lookups = 0\n",
                "sip.max_credential_lookups",
            ),
            ("[http]\ntls_certificate = \"cert.pem\"\n", "http.tls_key"),
            ("[http]\ntls_key = \"key.pem\"\n", "http.tls_certificate"),
            (
                "[http]\ntls_certificate = \"\"\ntls_key = \"key.pem\"\n",
                "http.tls_certificate",
            ),
            (
                "[http]\ntls_handshake_timeout_seconds = 0\n",
                "http.tls_handshake_timeout_seconds",
            ),
        ] {
            let err = rejection(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
    }

    #[test]
    fn chat_idle_times_are_bounded() {
        let err = rejection("[chat]\nidle_timeout_seconds = 9223372036854775807\n");
        assert!(err.contains("chat.idle_timeout_seconds"), "{err}");
        let err = rejection("[chat]\nidle_warning_seconds = 86401\n");
        assert!(err.contains("chat.idle_warning_seconds"), "{err}");
    }

    #[test]
    fn sip_over_tls_needs_its_address_and_both_files() {
        for (toml, key) in [
            ("[sip]\ntls = \"127.0.0.1:5061\"\n", "sip.tls_certificate"),
            (
                "[sip]\ntls = \"127.0.0.1:5061\"\ntls_certificate = \"c.pem\"\n",
                "sip.tls_key",
            ),
            (
                "[sip]\ntls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n",
                "sip.tls_certificate",
            ),
            (
                "[sip]\ntls = \"127.0.0.1:5061\"\ntls_certificate = \"c.pem\"\ntls_key = \"\"\n",
                "sip.tls_key",
            ),
            (
                "[sip]\ntls_handshake_timeout_seconds = 0\n",
                "sip.tls_handshake_timeout_seconds",
            ),
        ] {
            let err = rejection(toml);
            assert!(err.contains(key), "{toml}: {err}");
        }
        let toml =
            "[sip]\ntls = \"127.0.0.1:5061\"\ntls_certificate = \"c.pem\"\ntls_key = \"k.pem\"\n";
        figment::Jail::expect_with(|jail| {
            jail.create_file("vacd.toml", toml)?;
            let config = Config::load(Path::new("vacd.toml")).expect("valid");
            assert_eq!(config.sip.tls.map(|a| a.port()), Some(5061));
            Ok(())
        });
    }

    #[test]
    fn sip_keys_are_checked_and_named() {
        let err = rejection("[sip]\nudp = \"nowhere\"\n");
        assert!(err.contains("sip.udp"), "{err}");
        let err = rejection("[[sip.trunks]]\nname = \"c\"\nsources = [\"10.0.0.0/33\"]\n");
        assert!(
            err.contains("sip.trunks") && err.contains("10.0.0.0/33"),
            "{err}"
        );
        let err = rejection("[[sip.trunks]]\nname = \"c\"\nusername = \"u\"\n");
        assert!(err.contains("sip.trunks.password"), "{err}");
        let err = rejection("[[sip.trunks]]\nname = \"c\"\n");
        assert!(err.contains("sip.trunks.sources"), "{err}");
        let err = rejection("[sip]\nrealm = \"\"\n");
        assert!(err.contains("sip.realm"), "{err}");
        let err = rejection("[sip]\ndigest_algorithms = [\"SHA-1\"]\n");
        assert!(err.contains("sip.digest_algorithms"), "{err}");
        let err = rejection("[sip]\nrate_limit_per_second = 0\n");
        assert!(err.contains("sip.rate_limit_per_second"), "{err}");
        let err = rejection("[sip]\ntcp_write_seconds = 0\n");
        assert!(err.contains("sip.tcp_write_seconds"), "{err}");
        let err = rejection("[sip]\nrtp_port_min = 30000\nrtp_port_max = 30000\n");
        assert!(err.contains("sip.rtp_port_max"), "{err}");
        let err = rejection("[sip]\nrtp_address = \"0.0.0.0\"\n");
        assert!(err.contains("sip.rtp_address"), "{err}");
    }

    #[test]
    fn trunks_and_sip_overrides_load() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "vacd.toml",
                "[sip]\nrealm = \"pbx.example\"\n[[sip.trunks]]\nname = \"carrier\"\n\
                 sources = [\"192.0.2.0/24\", \"2001:db8::1\"]\n",
            )?;
            jail.set_env("VACD_SIP__UDP", "127.0.0.1:0");
            jail.set_env("VACD_SIP__MAX_CALLS", "7");
            let config = Config::load(Path::new("vacd.toml")).map_err(|e| e.to_string())?;
            assert_eq!(config.sip.udp.port(), 0);
            assert_eq!(config.sip.max_calls, 7);
            assert_eq!(config.sip.realm, "pbx.example");
            let trunk = &config.sip.trunks[0];
            assert!(trunk.sources[0].contains("192.0.2.200".parse().map_err(|_| "ip")?));
            assert!(!trunk.sources[0].contains("192.0.3.1".parse().map_err(|_| "ip")?));
            assert!(trunk.sources[1].contains("2001:db8::1".parse().map_err(|_| "ip")?));
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vacd.toml", "[http]\nlisten = \"127.0.0.1:1\"\n")?;
            jail.set_env("VACD_HTTP__LISTEN", "127.0.0.1:2");
            jail.set_env("VACD_DATABASE__MAX_CONNECTIONS", "3");
            // A token of digits, quoted so that it stays text.
            jail.set_env("VACD_AUTH__OPERATOR_TOKEN", "\"0123456\"");
            // Variables of vacd's that are no settings are left alone.
            jail.set_env("VACD_CONFIG", "elsewhere.toml");
            jail.set_env("VACD_TEST_POSTGRES", "postgres://postgres@127.0.0.1/test");
            let config = Config::load(Path::new("vacd.toml")).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen.port(), 2);
            assert_eq!(config.database.max_connections, 3);
            assert_eq!(config.auth.operator_token, "0123456");
            Ok(())
        });
    }
}
