//! Password guessing: an account whose logins failed `auth.max_failed_logins` times within
//! `auth.failed_login_window_seconds` is refused (429) for the rest of that window, whatever
//! password comes next, and a success forgets its failures. Counted per tenant and username as
//! typed (lower-cased) whether or not such a user exists, so a lock-out says nothing about which
//! accounts are real. Per account rather than per source address: behind a reverse proxy, vacd's
//! usual place, every login comes from the proxy.
//!
//! Sans-IO: the caller passes the time. The API holds one guard behind a mutex; its critical
//! sections are a hash lookup (and, once the table is long, a sweep of expired windows).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Accounts remembered before expired windows are swept out.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
struct Failures {
    /// The first failure of the window.
    since: Instant,
    count: u32,
}

#[derive(Debug)]
pub struct LoginGuard {
    max_failures: u32,
    window: Duration,
    accounts: HashMap<(String, String), Failures>,
}

impl LoginGuard {
    /// `max_failures` 0 turns the guard off.
    pub fn new(max_failures: u32, window: Duration) -> LoginGuard {
        LoginGuard {
            max_failures,
            window,
            accounts: HashMap::new(),
        }
    }

    /// `Err` with the time left until the account may try again, if it is locked now.
    pub fn check(&self, tenant: &str, username: &str, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        match self.accounts.get(&key(tenant, username)) {
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

    /// Counts a failed login of the account.
    pub fn failed(&mut self, tenant: &str, username: &str, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        if self.accounts.len() >= SWEEP_ABOVE {
            let window = self.window;
            self.accounts
                .retain(|_, f| now.saturating_duration_since(f.since) < window);
        }
        let failures = self
            .accounts
            .entry(key(tenant, username))
            .or_insert(Failures {
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

    /// Forgets the account's failures after a successful login.
    pub fn succeeded(&mut self, tenant: &str, username: &str) {
        self.accounts.remove(&key(tenant, username));
    }
}

fn key(tenant: &str, username: &str) -> (String, String) {
    (tenant.to_lowercase(), username.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn an_account_is_locked_after_its_failures_until_the_window_ends() {
        let mut guard = LoginGuard::new(3, WINDOW);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(guard.check("demo", "alice", t0), Ok(()), "attempt {i}");
            guard.failed("demo", "Alice", t0 + Duration::from_secs(i));
        }
        assert_eq!(
            guard.check("Demo", "alice", t0 + Duration::from_secs(100)),
            Err(Duration::from_secs(200)),
            "locked, counted from the first failure, whatever the case"
        );
        assert_eq!(guard.check("demo", "bob", t0), Ok(()), "others may log in");
        assert_eq!(guard.check("other", "alice", t0), Ok(()), "per tenant");
        assert_eq!(guard.check("demo", "alice", t0 + WINDOW), Ok(()));
        // A new window counts from zero.
        guard.failed("demo", "alice", t0 + WINDOW);
        assert_eq!(guard.check("demo", "alice", t0 + WINDOW), Ok(()));
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let mut guard = LoginGuard::new(2, WINDOW);
        let t0 = Instant::now();
        guard.failed("demo", "alice", t0);
        guard.succeeded("demo", "alice");
        guard.failed("demo", "alice", t0);
        assert_eq!(guard.check("demo", "alice", t0), Ok(()));
    }

    #[test]
    fn zero_turns_it_off() {
        let mut guard = LoginGuard::new(0, WINDOW);
        let t0 = Instant::now();
        for _ in 0..100 {
            guard.failed("demo", "alice", t0);
        }
        assert_eq!(guard.check("demo", "alice", t0), Ok(()));
    }

    #[test]
    fn expired_windows_are_swept_once_the_table_is_long() {
        let mut guard = LoginGuard::new(1, WINDOW);
        let t0 = Instant::now();
        for i in 0..SWEEP_ABOVE {
            guard.failed("demo", &format!("user{i}"), t0);
        }
        guard.failed("demo", "late", t0 + WINDOW);
        assert_eq!(guard.accounts.len(), 1, "only the live window is left");
    }
}
