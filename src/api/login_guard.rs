//! Password guessing, limited two ways within `auth.failed_login_window_seconds`:
//! - an account whose logins failed `auth.max_failed_logins` times is refused (429) for the rest
//!   of that window, whatever password comes next, and a success forgets its failures. Counted
//!   per tenant and username as typed (lower-cased) whether or not such a user exists, so a
//!   lock-out says nothing about which accounts are real;
//! - a source (the client's address as [`AppState::client_ip`](super::AppState::client_ip)
//!   tells it behind trusted proxies; an IPv6 address by its /64) from which
//!   `auth.max_failed_logins_per_source` logins failed is refused for the rest of its window,
//!   whichever account it tries next: one password tried on many accounts. A success does not
//!   forget these (one real account would otherwise let a source guess on), so the limit is
//!   meant high enough for an office behind one address. Off by default: behind a reverse proxy
//!   not named in `http.trusted_proxies` every login comes from the proxy, and one guesser
//!   would lock everyone out.
//!
//! Sans-IO: the caller passes the time. The API holds one guard behind a mutex; its critical
//! sections are hash lookups (and, once a table is long, a sweep of expired windows).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rate_limit::subscriber;

/// Keys remembered in one table before expired windows are swept out.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Failures {
    /// The first failure of the window.
    since: Instant,
    count: u32,
}

/// Failures counted per key in fixed windows that start with a key's first failure.
#[derive(Debug)]
struct Counter<K> {
    max_failures: u32,
    window: Duration,
    keys: HashMap<K, Failures>,
}

impl<K: Eq + Hash> Counter<K> {
    fn new(max_failures: u32, window: Duration) -> Counter<K> {
        Counter {
            max_failures,
            window,
            keys: HashMap::new(),
        }
    }

    /// `Err` with the time left if `key` is locked now.
    fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        match self.keys.get(key) {
            Some(f) if f.count >= self.max_failures => {
                let left = self
                    .window
                    .saturating_sub(now.saturating_duration_since(f.since));
                if left.is_zero() {
                    Ok(())
                } else {
                    Err(left)
                }
            }
            _ => Ok(()),
        }
    }

    fn failed(&mut self, key: K, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        if self.keys.len() >= SWEEP_ABOVE {
            let window = self.window;
            self.keys
                .retain(|_, f| now.saturating_duration_since(f.since) < window);
        }
        let failures = self.keys.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.saturating_duration_since(failures.since) >= self.window {
            *failures = Failures {
                since: now,
                count: 0,
            };
        }
        failures.count = failures.count.saturating_add(1);
    }
}

/// What is locked, and for how long still.
#[derive(Debug, PartialEq, Eq)]
pub enum Locked {
    Account(Duration),
    Source(Duration),
}

#[derive(Debug)]
pub struct LoginGuard {
    accounts: Counter<(String, String)>,
    sources: Counter<IpAddr>,
}

impl LoginGuard {
    /// A limit of 0 turns its half off.
    pub fn new(max_per_account: u32, max_per_source: u32, window: Duration) -> LoginGuard {
        LoginGuard {
            accounts: Counter::new(max_per_account, window),
            sources: Counter::new(max_per_source, window),
        }
    }

    /// `Err` if the source or the account is locked now.
    pub fn check(
        &self,
        tenant: &str,
        username: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), Locked> {
        self.sources
            .check(&subscriber(source), now)
            .map_err(Locked::Source)?;
        self.accounts
            .check(&key(tenant, username), now)
            .map_err(Locked::Account)
    }

    /// Counts a failed login of the account from `source`.
    pub fn failed(&mut self, tenant: &str, username: &str, source: IpAddr, now: Instant) {
        self.accounts.failed(key(tenant, username), now);
        self.sources.failed(subscriber(source), now);
    }

    /// Forgets the account's failures after a successful login (not its source's).
    pub fn succeeded(&mut self, tenant: &str, username: &str) {
        self.accounts.keys.remove(&key(tenant, username));
    }
}

fn key(tenant: &str, username: &str) -> (String, String) {
    (tenant.to_lowercase(), username.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);
    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const AWAY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_account_is_locked_after_its_failures_until_the_window_ends() {
        let mut guard = LoginGuard::new(3, 0, WINDOW);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(
                guard.check("demo", "alice", HOME, t0),
                Ok(()),
                "attempt {i}"
            );
            guard.failed("demo", "Alice", HOME, t0 + Duration::from_secs(i));
        }
        assert_eq!(
            guard.check("Demo", "alice", AWAY, t0 + Duration::from_secs(100)),
            Err(Locked::Account(Duration::from_secs(200))),
            "locked from everywhere, counted from the first failure, whatever the case"
        );
        assert_eq!(
            guard.check("demo", "bob", HOME, t0),
            Ok(()),
            "others may log in"
        );
        assert_eq!(
            guard.check("other", "alice", HOME, t0),
            Ok(()),
            "per tenant"
        );
        assert_eq!(guard.check("demo", "alice", HOME, t0 + WINDOW), Ok(()));
        // A new window counts from zero.
        guard.failed("demo", "alice", HOME, t0 + WINDOW);
        assert_eq!(guard.check("demo", "alice", HOME, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn a_source_is_locked_after_failures_on_many_accounts() {
        let mut guard = LoginGuard::new(3, 5, WINDOW);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(guard.check("demo", &format!("user{i}"), HOME, t0), Ok(()));
            guard.failed("demo", &format!("user{i}"), HOME, t0);
        }
        // A success of one account does not clear its source.
        guard.succeeded("demo", "user0");
        assert_eq!(
            guard.check("demo", "someone", HOME, t0 + Duration::from_secs(60)),
            Err(Locked::Source(Duration::from_secs(240))),
            "locked for any account"
        );
        assert_eq!(
            guard.check("demo", "someone", AWAY, t0),
            Ok(()),
            "other sources log in"
        );
        assert_eq!(guard.check("demo", "someone", HOME, t0 + WINDOW), Ok(()));
    }

    /// An IPv6 client is its /64: the addresses of one subscriber's network count together.
    #[test]
    fn an_ipv6_source_is_its_64() {
        let mut guard = LoginGuard::new(0, 2, WINDOW);
        let t0 = Instant::now();
        let address = |last: &str| {
            format!("2001:db8:1:2::{last}")
                .parse::<IpAddr>()
                .expect("v6")
        };
        guard.failed("demo", "a", address("1"), t0);
        guard.failed("demo", "b", address("ffff"), t0);
        assert!(matches!(
            guard.check("demo", "c", address("42"), t0),
            Err(Locked::Source(_))
        ));
        let elsewhere = "2001:db8:1:3::1".parse().expect("v6");
        assert_eq!(guard.check("demo", "c", elsewhere, t0), Ok(()));
    }

    #[test]
    fn a_success_forgets_the_accounts_failures() {
        let mut guard = LoginGuard::new(2, 0, WINDOW);
        let t0 = Instant::now();
        guard.failed("demo", "alice", HOME, t0);
        guard.succeeded("demo", "alice");
        guard.failed("demo", "alice", HOME, t0);
        assert_eq!(guard.check("demo", "alice", HOME, t0), Ok(()));
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let mut guard = LoginGuard::new(0, 0, WINDOW);
        let t0 = Instant::now();
        for _ in 0..100 {
            guard.failed("demo", "alice", HOME, t0);
        }
        assert_eq!(guard.check("demo", "alice", HOME, t0), Ok(()));
    }

    #[test]
    fn expired_windows_are_swept_once_the_table_is_long() {
        let mut guard = LoginGuard::new(1, 1, WINDOW);
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE {
            guard.failed("demo", &format!("user{i}"), HOME, t0);
        }
        guard.failed("demo", "late", AWAY, t0 + WINDOW);
        assert_eq!(guard.accounts.keys.len(), 1, "only the live window is left");
    }
}
