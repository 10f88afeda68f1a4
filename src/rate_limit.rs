//! Flood protection: at most N of something per second from one source (an IPv4 address or an
//! IPv6 /64), counted in one-second windows — SIP messages, chat frames and TLS handshakes.
//! A SIP datagram over the limit is dropped before it is parsed; a SIP TCP connection over it
//! stops being read until the window ends (dropping part of a stream would lose messages that
//! nobody retransmits); a TLS handshake over it is not begun (the connection is closed). The
//! first refusal of a window is reported (one log line per source and window, not one per
//! packet), so a flood can neither starve the server nor fill the log.
//!
//! Sans-IO: [`RateLimiter::check`] takes the time explicitly. The tasks that count against one
//! limit share it as a [`SharedLimit`] (behind a mutex; the critical section is a hash lookup),
//! which also logs the refusals.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
/// Forget idle sources after this long, so the table stays as small as the active set.
const IDLE: Duration = Duration::from_secs(10);

/// The source a limit counts for: an IPv4 address, or an IPv6 /64 — the network one subscriber
/// usually gets, whose 2^64 addresses would otherwise each have a limit of their own.
pub fn subscriber(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Over the limit until `until` (the window's end): a datagram is dropped, a stream waits.
    /// `report` is set on the first refusal of the window (log it), and `dropped_before` is how
    /// many were refused from this source in the previous window.
    Drop {
        report: bool,
        dropped_before: u64,
        until: Instant,
    },
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
    dropped: u64,
    dropped_before: u64,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: u32,
    sources: HashMap<IpAddr, Window>,
    last_sweep: Option<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            sources: HashMap::new(),
            last_sweep: None,
        }
    }

    pub fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        self.sweep(now);
        let window = self.sources.entry(subscriber(source)).or_insert(Window {
            start: now,
            count: 0,
            dropped: 0,
            dropped_before: 0,
        });
        if now.saturating_duration_since(window.start) >= WINDOW {
            window.dropped_before = window.dropped;
            window.start = now;
            window.count = 0;
            window.dropped = 0;
        }
        if window.count < self.per_second {
            window.count += 1;
            return Verdict::Accept;
        }
        window.dropped += 1;
        Verdict::Drop {
            report: window.dropped == 1,
            dropped_before: window.dropped_before,
            until: window.start + WINDOW,
        }
    }

    /// Sources tracked right now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    fn sweep(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|at| now.saturating_duration_since(at) < IDLE)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.sources
            .retain(|_, w| now.saturating_duration_since(w.start) < IDLE);
    }
}

/// A [`RateLimiter`] shared by the tasks that count against it — SIP's transports, chat's
/// visitors, a TLS listener's connections — which logs the first refusal of each source's
/// window, with how many the window before refused.
#[derive(Debug)]
pub struct SharedLimit {
    limiter: Mutex<RateLimiter>,
    /// What is counted and what happens past the limit, for the log (`new chats (refused)`).
    what: std::borrow::Cow<'static, str>,
}

impl SharedLimit {
    /// At most `per_second` of `what` per source.
    pub fn new(per_second: u32, what: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        Self {
            limiter: Mutex::new(RateLimiter::new(per_second)),
            what: what.into(),
        }
    }

    /// Counts one from `source`; over the limit, `Err` with the end of the source's window.
    pub fn admit(&self, source: IpAddr) -> Result<(), Instant> {
        let verdict = self
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .check(source, Instant::now());
        match verdict {
            Verdict::Accept => Ok(()),
            Verdict::Drop {
                report,
                dropped_before,
                until,
            } => {
                if report {
                    tracing::warn!(%source, what = %self.what, refused_last_second = dropped_before, "rate limit reached for one address until its second ends");
                }
                Err(until)
            }
        }
    }
}

/// The per-source limit on the TLS handshakes of one listener (`http.tls_handshakes_per_second`,
/// `sip.tls_handshakes_per_second`), shared by its connection tasks.
#[derive(Debug, Clone)]
pub struct HandshakeLimit {
    /// `None`: no limit.
    limiter: Option<Arc<SharedLimit>>,
}

impl HandshakeLimit {
    /// At most `per_second` handshakes per source on `listener` (named in the log, such as
    /// `HTTPS`); 0: any.
    pub fn new(per_second: u32, listener: &'static str) -> Self {
        Self {
            limiter: (per_second > 0).then(|| {
                let what = format!("{listener} handshakes (connections closed before theirs)");
                Arc::new(SharedLimit::new(per_second, what))
            }),
        }
    }

    /// Whether a handshake from `peer` may begin now.
    pub fn admit(&self, peer: SocketAddr) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|limiter| limiter.admit(peer.ip()).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_limit_of_zero_is_none() {
        let peer: SocketAddr = "192.0.2.7:40000".parse().expect("address");
        let none = HandshakeLimit::new(0, "test");
        assert!((0..1000).all(|_| none.admit(peer)));
        let one = HandshakeLimit::new(1, "test");
        assert!(one.admit(peer));
        assert!(!one.admit(peer), "one per second");
    }

    #[test]
    fn an_ipv6_subscriber_network_shares_one_limit() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1);
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(limiter.check(ip("2001:db8:1:2::1"), t0), Verdict::Accept);
        assert!(
            matches!(
                limiter.check(ip("2001:db8:1:2:ffff::9"), t0),
                Verdict::Drop { .. }
            ),
            "the same /64"
        );
        assert_eq!(limiter.check(ip("2001:db8:1:3::1"), t0), Verdict::Accept);
        assert_eq!(limiter.check(ip("192.0.2.7"), t0), Verdict::Accept);
        assert!(
            matches!(
                limiter.check(ip("::ffff:192.0.2.7"), t0),
                Verdict::Drop { .. }
            ),
            "an IPv4-mapped address is its IPv4 address"
        );
    }

    #[test]
    fn drops_beyond_the_limit_and_reports_once_per_window() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(3);
        let flood: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let other: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        for _ in 0..3 {
            assert_eq!(limiter.check(flood, t0), Verdict::Accept);
        }
        assert_eq!(
            limiter.check(flood, t0),
            Verdict::Drop {
                report: true,
                dropped_before: 0,
                until: t0 + WINDOW
            }
        );
        assert_eq!(
            limiter.check(flood, t0 + Duration::from_millis(10)),
            Verdict::Drop {
                report: false,
                dropped_before: 0,
                until: t0 + WINDOW
            }
        );
        // Another source is not affected.
        assert_eq!(limiter.check(other, t0), Verdict::Accept);
        // A new window accepts again and remembers the previous window's drops.
        let t1 = t0 + WINDOW;
        for _ in 0..3 {
            assert_eq!(limiter.check(flood, t1), Verdict::Accept);
        }
        assert_eq!(
            limiter.check(flood, t1),
            Verdict::Drop {
                report: true,
                dropped_before: 2,
                until: t1 + WINDOW
            }
        );
    }

    #[test]
    fn idle_sources_are_forgotten() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(1);
        for i in 0..100u8 {
            limiter.check(IpAddr::from([10, 0, 0, i]), t0);
        }
        assert_eq!(limiter.tracked(), 100);
        limiter.check(IpAddr::from([10, 0, 1, 1]), t0 + IDLE + WINDOW);
        assert_eq!(limiter.tracked(), 1);
    }
}
