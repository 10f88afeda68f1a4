//! HTTP digest authentication for SIP (RFC 7616 as applied to SIP by RFC 8760): the server
//! side that challenges REGISTER and INVITE requests and verifies their Authorization (or
//! Proxy-Authorization) header, and the client side that answers a trunk's challenge.
//!
//! Start with [`DigestAuthenticator`]. Its nonces need no storage: each carries its issue
//! time and an HMAC over it under a per-process key, so any nonce can be checked for
//! authenticity and age; an expired one earns a fresh challenge with `stale=true`. Replays are
//! stopped by tracking the highest nonce-count seen per nonce in a bounded table (the endpoint
//! answers one with a fresh challenge too: two requests of a phone may be checked out of
//! order); a nonce whose entry had to be evicted is treated as stale. Only `qop=auth` is accepted (no `auth-int`, no
//! `-sess` algorithms, no `userhash`); MD5 and SHA-256 are offered, SHA-256 first.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use rsip::headers::UntypedHeader;
use rsip::{Header, Request, Response};
use sha2::{Digest, Sha256};

use crate::message::response_to;

/// A digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617 compatibility; still what most phones use).
    Md5,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
}

impl Algorithm {
    /// The token used in headers.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex of the hash of `parts` joined with `:`.
    pub fn hex(self, parts: &[&str]) -> String {
        fn run<D: Digest>(parts: &[&str]) -> String {
            let mut hasher = D::new();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    hasher.update(b":");
                }
                hasher.update(part.as_bytes());
            }
            to_hex(&hasher.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// HA1 = H(username:realm:password).
pub fn ha1(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hex(&[username, realm, password])
}

/// The `response` value for `qop=auth`: H(HA1:nonce:nc:cnonce:auth:H(method:uri)).
pub fn response_value(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hex(&[method, uri]);
    algorithm.hex(&[ha1, nonce, nc, cnonce, "auth", &ha2])
}

/// What the credential store knows about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The clear password (any algorithm works).
    Password(String),
    /// Precomputed HA1 values (hex), so that the store need not keep passwords. An algorithm
    /// without an HA1 here cannot be verified for that user.
    Ha1 {
        /// HA1 under MD5.
        md5: Option<String>,
        /// HA1 under SHA-256.
        sha256: Option<String>,
    },
}

impl Credential {
    fn ha1(&self, algorithm: Algorithm, username: &str, realm: &str) -> Option<String> {
        match (self, algorithm) {
            (Credential::Password(p), _) => Some(ha1(algorithm, username, realm, p)),
            (Credential::Ha1 { md5, .. }, Algorithm::Md5) => md5.clone(),
            (Credential::Ha1 { sha256, .. }, Algorithm::Sha256) => sha256.clone(),
        }
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The header is not a parseable Digest credential.
    Malformed,
    /// The realm is not ours.
    WrongRealm,
    /// An algorithm we do not offer.
    UnsupportedAlgorithm,
    /// qop is missing or not `auth`.
    UnsupportedQop,
    /// The nonce was not issued by us.
    ForeignNonce,
    /// The nonce-count did not increase: a replay.
    Replay,
    /// The `uri` parameter differs from the Request-URI.
    UriMismatch,
    /// The user is unknown (or has no HA1 for the algorithm).
    UnknownUser,
    /// The response hash is wrong: a wrong password.
    WrongPassword,
}

/// The outcome of checking a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Credentials are valid for this user.
    Authorized {
        /// The authenticated username.
        username: String,
    },
    /// No credentials for our realm: challenge.
    Missing,
    /// Valid credentials under an expired nonce: challenge again with `stale=true`.
    Stale,
    /// Invalid credentials: challenge again (or answer 403 after repeated failures).
    Rejected(Rejection),
}

/// Settings of a [`DigestAuthenticator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// The protection realm (usually the tenant's SIP domain).
    pub realm: String,
    /// How long a nonce stays valid.
    pub nonce_lifetime: Duration,
    /// Algorithms offered, in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Most nonces whose nonce-count is tracked at once.
    pub max_tracked_nonces: usize,
}

impl DigestConfig {
    /// Defaults for `realm`: 5-minute nonces, SHA-256 then MD5, 100 000 tracked nonces.
    pub fn new(realm: impl Into<String>) -> Self {
        Self {
            realm: realm.into(),
            nonce_lifetime: Duration::from_secs(300),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            max_tracked_nonces: 100_000,
        }
    }
}

/// Issues challenges and verifies digest credentials for one realm.
#[derive(Debug)]
pub struct DigestAuthenticator {
    config: DigestConfig,
    key: [u8; 32],
    epoch: Instant,
    /// Per used nonce: its issue time (ms since `epoch`) and the highest nonce-count seen.
    counts: HashMap<Box<str>, (u64, u32)>,
    /// Nonces issued at or before this time (ms) may have lost their entry: treat as stale.
    evicted_up_to: Option<u64>,
}

type HmacSha256 = Hmac<Sha256>;

impl DigestAuthenticator {
    /// An authenticator with a fresh random nonce key; `now` is the clock's epoch.
    pub fn new(config: DigestConfig, now: Instant) -> Self {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self {
            config,
            key,
            epoch: now,
            counts: HashMap::new(),
            evicted_up_to: None,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// A new nonce: hex of issue time, 8 random bytes and a truncated HMAC over both.
    pub fn nonce(&self, now: Instant) -> String {
        let issued = self.millis(now);
        let mut raw = [0u8; 32];
        raw[..8].copy_from_slice(&issued.to_be_bytes());
        rand::thread_rng().fill_bytes(&mut raw[8..16]);
        let mac = self.mac(&raw[..16]);
        raw[16..].copy_from_slice(&mac[..16]);
        to_hex(&raw)
    }

    /// The WWW-Authenticate / Proxy-Authenticate values to send, one per offered algorithm.
    pub fn challenges(&self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        self.config
            .algorithms
            .iter()
            .map(|a| {
                let mut value = format!(
                    "Digest realm=\"{}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    self.config.realm,
                    a.name()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    /// A 401 (registrar/UAS) or 407 (proxy-style, `proxy = true`) response challenging
    /// `request`.
    pub fn challenge_response(
        &self,
        request: &Request,
        proxy: bool,
        stale: bool,
        to_tag: &str,
        now: Instant,
    ) -> Response {
        let mut response = response_to(request, if proxy { 407 } else { 401 }, Some(to_tag));
        for value in self.challenges(now, stale) {
            response.headers.push(if proxy {
                Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(value))
            } else {
                Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(value))
            });
        }
        response
    }

    /// Verifies the Authorization (or, with `proxy`, Proxy-Authorization) headers of
    /// `request` that name our realm.
    pub fn verify_request(
        &mut self,
        request: &Request,
        proxy: bool,
        now: Instant,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Verdict {
        let Some(value) = self.credentials_of(request, proxy) else {
            return Verdict::Missing;
        };
        let uri = request.uri.to_string();
        self.verify(value, &request.method.to_string(), &uri, now, lookup)
    }

    /// The value of `request`'s Authorization (or, with `proxy`, Proxy-Authorization) header
    /// that names our realm.
    pub fn credentials_of<'r>(&self, request: &'r Request, proxy: bool) -> Option<&'r str> {
        request.headers.iter().find_map(|h| {
            let value = match h {
                Header::Authorization(v) if !proxy => v.value(),
                Header::ProxyAuthorization(v) if proxy => v.value(),
                _ => return None,
            };
            let params = parse_credentials(value)?;
            (param(&params, "realm")? == self.config.realm).then_some(value)
        })
    }

    /// Whether `credentials` answer a nonce this authenticator issued (fresh or not) — the
    /// check that needs no user: only such credentials are worth reading a user's for.
    pub fn issued_here(&self, credentials: &str) -> bool {
        parse_credentials(credentials)
            .and_then(|params| param(&params, "nonce").and_then(|n| self.check_nonce(&n)))
            .is_some()
    }

    /// Verifies one credentials value against `method` and the Request-URI `request_uri`.
    pub fn verify(
        &mut self,
        credentials: &str,
        method: &str,
        request_uri: &str,
        now: Instant,
        lookup: impl FnOnce(&str) -> Option<Credential>,
    ) -> Verdict {
        let Some(params) = parse_credentials(credentials) else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        let field = |name| param(&params, name);
        let (Some(username), Some(realm), Some(nonce), Some(uri), Some(response)) = (
            field("username"),
            field("realm"),
            field("nonce"),
            field("uri"),
            field("response"),
        ) else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        if realm != self.config.realm {
            return Verdict::Rejected(Rejection::WrongRealm);
        }
        let algorithm = match field("algorithm") {
            None => Some(Algorithm::Md5),
            Some(name) => Algorithm::from_name(&name),
        };
        let Some(algorithm) = algorithm.filter(|a| self.config.algorithms.contains(a)) else {
            return Verdict::Rejected(Rejection::UnsupportedAlgorithm);
        };
        if !field("qop").is_some_and(|q| q.eq_ignore_ascii_case("auth")) {
            return Verdict::Rejected(Rejection::UnsupportedQop);
        }
        let (Some(nc_text), Some(cnonce)) = (field("nc"), field("cnonce")) else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        let Some(nc) = u32::from_str_radix(&nc_text, 16).ok().filter(|n| *n > 0) else {
            return Verdict::Rejected(Rejection::Malformed);
        };
        if !uris_match(&uri, request_uri) {
            return Verdict::Rejected(Rejection::UriMismatch);
        }
        let Some(issued) = self.check_nonce(&nonce) else {
            return Verdict::Rejected(Rejection::ForeignNonce);
        };
        let Some(ha1) = lookup(&username).and_then(|c| c.ha1(algorithm, &username, realm.as_ref()))
        else {
            return Verdict::Rejected(Rejection::UnknownUser);
        };
        let expected = response_value(algorithm, &ha1, &nonce, &nc_text, &cnonce, method, &uri);
        if !constant_time_eq(
            expected.as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::Rejected(Rejection::WrongPassword);
        }
        // The password is right; now is the nonce still fresh and the count new?
        let age = self.millis(now).saturating_sub(issued);
        if u128::from(age) > self.config.nonce_lifetime.as_millis() {
            return Verdict::Stale;
        }
        match self.counts.get_mut(&*nonce) {
            Some((_, last)) if nc <= *last => return Verdict::Rejected(Rejection::Replay),
            Some((_, last)) => *last = nc,
            None => {
                if self.evicted_up_to.is_some_and(|limit| issued <= limit) {
                    return Verdict::Stale;
                }
                self.track(&nonce, issued, nc, now);
            }
        }
        Verdict::Authorized {
            username: username.into_owned(),
        }
    }

    /// Checks a nonce's HMAC; returns its issue time.
    fn check_nonce(&self, nonce: &str) -> Option<u64> {
        let raw = from_hex(nonce)?;
        if raw.len() != 32 {
            return None;
        }
        let mac = self.mac(&raw[..16]);
        if !constant_time_eq(&mac[..16], &raw[16..]) {
            return None;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        Some(u64::from_be_bytes(issued))
    }

    fn track(&mut self, nonce: &str, issued: u64, nc: u32, now: Instant) {
        if self.counts.len() >= self.config.max_tracked_nonces {
            let lifetime =
                u64::try_from(self.config.nonce_lifetime.as_millis()).unwrap_or(u64::MAX);
            let oldest_valid = self.millis(now).saturating_sub(lifetime);
            self.counts.retain(|_, (t, _)| *t >= oldest_valid);
            while self.counts.len() >= self.config.max_tracked_nonces {
                let Some((victim, t)) = self
                    .counts
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, (t, _))| (k.clone(), *t))
                else {
                    break;
                };
                self.counts.remove(&victim);
                self.evicted_up_to = Some(self.evicted_up_to.map_or(t, |e| e.max(t)));
            }
        }
        self.counts.insert(Box::from(nonce), (issued, nc));
    }

    fn mac(&self, data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return [0u8; 32],
        };
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// Builds the Authorization value answering `challenge` (a WWW-/Proxy-Authenticate value)
/// for a request with `method` and `uri`, using nonce-count `nc` and client nonce `cnonce`.
/// `None` if the challenge is not a Digest challenge we can answer (qop=auth, or no qop as
/// RFC 2069 has it; MD5/SHA-256).
pub fn answer_challenge(
    challenge: &str,
    method: &str,
    uri: &str,
    username: &str,
    password: &str,
    nc: u32,
    cnonce: &str,
) -> Option<String> {
    let params = parse_credentials(challenge)?;
    let realm = param(&params, "realm")?;
    let nonce = param(&params, "nonce")?;
    let algorithm = match param(&params, "algorithm") {
        None => Algorithm::Md5,
        Some(name) => Algorithm::from_name(&name)?,
    };
    let ha1 = ha1(algorithm, username, &realm, password);
    let mut value = match param(&params, "qop") {
        Some(qop)
            if qop
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("auth")) =>
        {
            let nc = format!("{nc:08x}");
            let response = response_value(algorithm, &ha1, &nonce, &nc, cnonce, method, uri);
            format!(
                "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
                algorithm.name()
            )
        }
        // Only other protections offered (auth-int): none we speak.
        Some(_) => return None,
        // No qop at all (RFC 2069, which RFC 3261 §22.4 keeps): response = H(HA1:nonce:HA2).
        None => {
            let ha2 = algorithm.hex(&[method, uri]);
            let response = algorithm.hex(&[&ha1, &nonce, &ha2]);
            format!(
                "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
response=\"{response}\", algorithm={}",
                algorithm.name()
            )
        }
    };
    if let Some(opaque) = param(&params, "opaque") {
        let _ = write!(value, ", opaque=\"{opaque}\"");
    }
    Some(value)
}

/// Parses `Digest name=value, name="quoted", …`; `None` if the scheme is not Digest or the
/// syntax is broken.
fn parse_credentials(value: &str) -> Option<Vec<(&str, Cow<'_, str>)>> {
    let value = value.trim_start();
    let (scheme, mut rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut params = Vec::with_capacity(10);
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(params);
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        if name.is_empty() || name.contains([' ', ',', '"']) {
            return None;
        }
        rest = rest[eq + 1..].trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut escaped = false;
            let mut needs_unescape = false;
            let mut end = None;
            for (i, c) in quoted.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                    needs_unescape = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end?;
            let raw = &quoted[..end];
            let value = if needs_unescape {
                let mut s = String::with_capacity(raw.len());
                let mut chars = raw.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        if let Some(next) = chars.next() {
                            s.push(next);
                        }
                    } else {
                        s.push(c);
                    }
                }
                Cow::Owned(s)
            } else {
                Cow::Borrowed(raw)
            };
            params.push((name, value));
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            params.push((name, Cow::Borrowed(rest[..end].trim())));
            rest = &rest[end..];
        }
    }
}

fn param<'a>(params: &'a [(&str, Cow<'_, str>)], name: &str) -> Option<Cow<'a, str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| Cow::Borrowed(v.as_ref()))
}

/// The digest `uri` must name the Request-URI; compared as parsed SIP URIs when both parse,
/// else as text.
fn uris_match(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    match (
        rsip::Uri::try_from(digest_uri),
        rsip::Uri::try_from(request_uri),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A challenge without `qop` (RFC 2069, as RFC 3261 §22.4 keeps it) is answered with
    /// response = H(HA1:nonce:HA2) and neither nc nor cnonce; one offering only `auth-int`
    /// is not answered.
    #[test]
    fn a_challenge_without_qop_is_answered_the_old_way() {
        let challenge = "Digest realm=\"carrier\", nonce=\"abc\", algorithm=MD5";
        let answer = answer_challenge(challenge, "INVITE", "sip:+49@carrier", "u", "p", 1, "c")
            .expect("answered");
        let ha1 = Algorithm::Md5.hex(&["u", "carrier", "p"]);
        let ha2 = Algorithm::Md5.hex(&["INVITE", "sip:+49@carrier"]);
        let expected = Algorithm::Md5.hex(&[&ha1, "abc", &ha2]);
        assert!(
            answer.contains(&format!("response=\"{expected}\"")),
            "{answer}"
        );
        assert!(
            !answer.contains("nc=") && !answer.contains("cnonce"),
            "{answer}"
        );
        let only_int = "Digest realm=\"carrier\", nonce=\"abc\", qop=\"auth-int\"";
        assert_eq!(
            answer_challenge(only_int, "INVITE", "sip:+49@carrier", "u", "p", 1, "c"),
            None
        );
    }

    // RFC 7616 §3.9.1.
    const USER: &str = "Mufasa";
    const REALM: &str = "http-auth@example.org";
    const PASSWORD: &str = "Circle of Life";
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_sha256_example() {
        let ha1 = ha1(Algorithm::Sha256, USER, REALM, PASSWORD);
        let response = response_value(
            Algorithm::Sha256,
            &ha1,
            NONCE,
            "00000001",
            CNONCE,
            "GET",
            "/dir/index.html",
        );
        assert_eq!(
            response,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc7616_md5_example() {
        let ha1 = ha1(Algorithm::Md5, USER, REALM, PASSWORD);
        let response = response_value(
            Algorithm::Md5,
            &ha1,
            NONCE,
            "00000001",
            CNONCE,
            "GET",
            "/dir/index.html",
        );
        assert_eq!(response, "8ca523f5e9506fed4657c9700eebdbec");
    }

    fn authenticator(now: Instant) -> DigestAuthenticator {
        DigestAuthenticator::new(DigestConfig::new("vacd.example"), now)
    }

    fn lookup(user: &str) -> Option<Credential> {
        (user == "agent1").then(|| Credential::Password("s3cret".into()))
    }

    const URI: &str = "sip:vacd.example";

    fn answer(
        auth: &DigestAuthenticator,
        now: Instant,
        algorithm: usize,
        nc: u32,
        password: &str,
    ) -> String {
        let challenges = auth.challenges(now, false);
        answer_challenge(
            &challenges[algorithm],
            "REGISTER",
            URI,
            "agent1",
            password,
            nc,
            "abc123",
        )
        .expect("answerable")
    }

    #[test]
    fn challenge_answer_verify_for_both_algorithms() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        for algorithm in [0, 1] {
            let credentials = answer(&auth, t0, algorithm, 1, "s3cret");
            assert_eq!(
                auth.verify(&credentials, "REGISTER", URI, t0, lookup),
                Verdict::Authorized {
                    username: "agent1".into()
                }
            );
        }
    }

    #[test]
    fn wrong_password_unknown_user_and_foreign_nonce_are_rejected() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let wrong = answer(&auth, t0, 0, 1, "guess");
        assert_eq!(
            auth.verify(&wrong, "REGISTER", URI, t0, lookup),
            Verdict::Rejected(Rejection::WrongPassword)
        );
        let good = answer(&auth, t0, 0, 1, "s3cret");
        assert_eq!(
            auth.verify(&good, "REGISTER", URI, t0, |_| None),
            Verdict::Rejected(Rejection::UnknownUser)
        );
        let other = authenticator(t0);
        let foreign = answer(&other, t0, 0, 1, "s3cret");
        assert!(auth.issued_here(&good), "our nonce");
        assert!(
            !auth.issued_here(&foreign),
            "another's nonce, before any lookup"
        );
        assert!(!auth.issued_here("Digest username=\"agent1\""), "no nonce");
        assert_eq!(
            auth.verify(&foreign, "REGISTER", URI, t0, lookup),
            Verdict::Rejected(Rejection::ForeignNonce)
        );
        assert_eq!(
            auth.verify(&good, "REGISTER", "sip:other.example", t0, lookup),
            Verdict::Rejected(Rejection::UriMismatch)
        );
    }

    #[test]
    fn replayed_nonce_count_is_rejected_and_higher_counts_pass() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let challenge = auth.challenges(t0, false).remove(0);
        let with_nc = |nc| {
            answer_challenge(&challenge, "REGISTER", URI, "agent1", "s3cret", nc, "c")
                .expect("answerable")
        };
        assert!(matches!(
            auth.verify(&with_nc(1), "REGISTER", URI, t0, lookup),
            Verdict::Authorized { .. }
        ));
        assert_eq!(
            auth.verify(&with_nc(1), "REGISTER", URI, t0, lookup),
            Verdict::Rejected(Rejection::Replay)
        );
        assert!(matches!(
            auth.verify(&with_nc(2), "REGISTER", URI, t0, lookup),
            Verdict::Authorized { .. }
        ));
    }

    #[test]
    fn expired_nonce_is_stale() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let credentials = answer(&auth, t0, 0, 1, "s3cret");
        let later = t0 + Duration::from_secs(301);
        assert!(
            auth.issued_here(&credentials),
            "an expired nonce is still ours: it goes on to the check that calls it stale"
        );
        assert_eq!(
            auth.verify(&credentials, "REGISTER", URI, later, lookup),
            Verdict::Stale
        );
        assert!(auth.challenges(later, true)[0].ends_with("stale=true"));
    }

    #[test]
    fn evicted_nonces_are_stale_not_replayable() {
        let t0 = Instant::now();
        let mut config = DigestConfig::new("vacd.example");
        config.max_tracked_nonces = 1;
        let mut auth = DigestAuthenticator::new(config, t0);
        let first = answer(&auth, t0, 0, 1, "s3cret");
        let t1 = t0 + Duration::from_millis(10);
        let second = answer(&auth, t1, 0, 1, "s3cret");
        assert!(matches!(
            auth.verify(&first, "REGISTER", URI, t1, lookup),
            Verdict::Authorized { .. }
        ));
        assert!(matches!(
            auth.verify(&second, "REGISTER", URI, t1, lookup),
            Verdict::Authorized { .. }
        ));
        // `first` lost its entry to `second`: replaying it must not pass.
        assert_eq!(
            auth.verify(&first, "REGISTER", URI, t1, lookup),
            Verdict::Stale
        );
    }

    #[test]
    fn ha1_credentials_verify_without_a_password() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        let stored = Credential::Ha1 {
            md5: None,
            sha256: Some(ha1(Algorithm::Sha256, "agent1", "vacd.example", "s3cret")),
        };
        let sha = answer(&auth, t0, 0, 1, "s3cret");
        assert!(matches!(
            auth.verify(&sha, "REGISTER", URI, t0, |_| Some(stored.clone())),
            Verdict::Authorized { .. }
        ));
        let md5 = answer(&auth, t0, 1, 1, "s3cret");
        assert_eq!(
            auth.verify(&md5, "REGISTER", URI, t0, |_| Some(stored.clone())),
            Verdict::Rejected(Rejection::UnknownUser)
        );
    }

    #[test]
    fn malformed_credentials_never_panic() {
        let t0 = Instant::now();
        let mut auth = authenticator(t0);
        for text in [
            "",
            "Digest",
            "Basic abc",
            "Digest username=\"a",
            "Digest =x",
            "Digest a=\"\\",
            "Digest nc=zz",
        ] {
            assert!(matches!(
                auth.verify(text, "REGISTER", URI, t0, lookup),
                Verdict::Rejected(_)
            ));
        }
    }
}
