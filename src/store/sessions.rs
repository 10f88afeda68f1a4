//! Logins and bearer tokens. Only a SHA-256 of each token is stored, so a leaked database does
//! not leak usable tokens; a token resolves to a [`Principal`] (user, tenant, role) until it
//! expires or is logged out.
//!
//! Resolved sessions are kept in memory ([`Cache`]), so a request does not read the database to
//! learn who is calling. The cache honours the expiry itself and is invalidated by every change
//! that could make an entry wrong — a logout, a change or deletion of the user (its role), the
//! deletion of a tenant — all of which go through this store. A read that raced with such a
//! change does not fill the cache (each invalidation advances an epoch the read checks).
//! This holds for one vacd process per database, which routing assumes anyway.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sqlx::any::AnyRow;
use sqlx::Row;
use tokio::sync::watch;

use super::{now_ms, Backend, Result, Store};
use crate::catalog::Role;

/// Sessions kept at most; beyond that the expired ones go, and if that is not enough, all.
const MAX_CACHED: usize = 100_000;

/// Live sessions by token hash.
#[derive(Debug)]
pub(super) struct Cache {
    inner: Mutex<CacheInner>,
    /// The epoch after every invalidation, for long-lived connections that must learn that
    /// their session may have changed (see [`Store::session_changes`]).
    changes: watch::Sender<u64>,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache {
            inner: Mutex::default(),
            changes: watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct CacheInner {
    sessions: HashMap<String, (Principal, i64)>,
    /// Advanced by every invalidation.
    epoch: u64,
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached principal of a live session, and the epoch to pass to [`Cache::fill`] if
    /// there is none.
    fn get(&self, token_hash: &str, now: i64) -> std::result::Result<(Principal, i64), u64> {
        let mut inner = self.lock();
        match inner.sessions.get(token_hash) {
            Some((principal, expires_at)) if *expires_at > now => Ok((*principal, *expires_at)),
            Some(_) => {
                inner.sessions.remove(token_hash);
                Err(inner.epoch)
            }
            None => Err(inner.epoch),
        }
    }

    /// Remembers a session read from the database, unless something was invalidated since
    /// the read began (`epoch`).
    fn fill(&self, epoch: u64, token_hash: &str, principal: Principal, expires_at: i64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        if inner.sessions.len() >= MAX_CACHED {
            let now = now_ms();
            inner
                .sessions
                .retain(|_, (_, expires_at)| *expires_at > now);
            if inner.sessions.len() >= MAX_CACHED {
                inner.sessions.clear();
            }
        }
        inner
            .sessions
            .insert(token_hash.to_owned(), (principal, expires_at));
    }

    /// Forgets the sessions `stale` picks.
    fn invalidate(&self, stale: impl Fn(&str, &Principal) -> bool) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner
            .sessions
            .retain(|hash, (principal, _)| !stale(hash, principal));
        self.changes.send_replace(inner.epoch);
    }
}

/// Who is calling: resolved from a bearer token on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: i64,
    pub tenant_id: i64,
    pub role: Role,
}

/// What a login attempt needs to check a password.
#[derive(Debug, Clone)]
pub struct Login {
    pub principal: Principal,
    pub display_name: String,
    pub password_hash: String,
}

/// A user row (`id`, `tenant_id`, `role`) as a principal; `None` for a role this build does not know.
fn principal(row: &AnyRow) -> Result<Option<Principal>> {
    let role: String = row.try_get("role")?;
    let Some(role) = Role::parse(&role) else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user_id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        role,
    }))
}

impl Store {
    pub async fn find_login(&self, tenant: &str, username: &str) -> Result<Option<Login>> {
        let row = sqlx::query(
            "SELECT u.id, u.tenant_id, u.role, u.display_name, u.password_hash \
             FROM users u JOIN tenants t ON t.id = u.tenant_id \
             WHERE t.name = $1 AND u.username = $2",
        )
        .bind(tenant.to_owned())
        .bind(username.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(principal) = principal(&row)? else {
            return Ok(None);
        };
        Ok(Some(Login {
            principal,
            display_name: row.try_get("display_name")?,
            password_hash: row.try_get("password_hash")?,
        }))
    }

    /// Starts a session for `login`, if its password is still the one the login was checked
    /// against: a password reset committed while the (slow) check ran ends every session of the
    /// user, and must not be outlived by one made with the old password. `false` when it
    /// changed. On PostgreSQL the user's row is locked for the insert, so a reset under way is
    /// waited for and seen.
    pub async fn create_session(
        &self,
        token_hash: &str,
        login: &Login,
        expires_at: i64,
    ) -> Result<bool> {
        // Expired sessions are swept whenever a new one starts.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        };
        let inserted = sqlx::query(&format!(
            "INSERT INTO sessions (token_hash, user_id, tenant_id, expires_at) \
             SELECT $1, id, tenant_id, $2 FROM users \
             WHERE id = $3 AND tenant_id = $4 AND password_hash = $5{lock}"
        ))
        .bind(token_hash.to_owned())
        .bind(expires_at)
        .bind(login.principal.user_id)
        .bind(login.principal.tenant_id)
        .bind(login.password_hash.clone())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// The principal of a live session. The role is the user's current one: a change of the
    /// user through this store takes effect on the next request.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Principal>> {
        Ok(self.session_until(token_hash).await?.map(|(who, _)| who))
    }

    /// The principal of a live session and when the session expires (Unix ms).
    pub async fn session_until(&self, token_hash: &str) -> Result<Option<(Principal, i64)>> {
        let now = now_ms();
        let epoch = match self.sessions.get(token_hash, now) {
            Ok(live) => return Ok(Some(live)),
            Err(epoch) => epoch,
        };
        let row = sqlx::query(
            "SELECT u.id, u.tenant_id, u.role, s.expires_at FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash.to_owned())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let Some(who) = principal(&row)? else {
            return Ok(None);
        };
        let expires_at = row.try_get("expires_at")?;
        self.sessions.fill(epoch, token_hash, who, expires_at);
        Ok(Some((who, expires_at)))
    }

    /// Changes whenever a session may have ended or changed (a logout, a user changed or
    /// deleted, a tenant deleted): a websocket holding a session checks it again then. A user
    /// added changes it too (the supervisors' feeds read their names again).
    pub fn session_changes(&self) -> watch::Receiver<u64> {
        self.sessions.changes.subscribe()
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(&self.writer)
            .await?;
        self.sessions.invalidate(|hash, _| hash == token_hash);
        Ok(())
    }

    /// After a committed change or deletion of a user: its cached sessions are read again.
    pub(super) fn user_changed(&self, tenant: i64, user: i64) {
        self.sessions
            .invalidate(|_, p| p.tenant_id == tenant && p.user_id == user);
    }

    /// After a tenant was deleted: none of its sessions live on.
    pub(super) fn tenant_deleted(&self, tenant: i64) {
        self.sessions.invalidate(|_, p| p.tenant_id == tenant);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(user_id: i64, tenant_id: i64) -> Principal {
        Principal {
            user_id,
            tenant_id,
            role: Role::Agent,
        }
    }

    fn epoch(cache: &Cache, hash: &str) -> u64 {
        cache.get(hash, 0).expect_err("not cached yet")
    }

    #[test]
    fn an_entry_lives_until_its_expiry() {
        let cache = Cache::default();
        cache.fill(epoch(&cache, "a"), "a", who(1, 1), 1_000);
        assert_eq!(cache.get("a", 999), Ok((who(1, 1), 1_000)));
        assert!(cache.get("a", 1_000).is_err(), "expired at its expiry");
        assert!(cache.get("a", 10).is_err(), "and gone once seen expired");
    }

    #[test]
    fn logout_user_changes_and_tenant_deletion_invalidate() {
        let cache = Cache::default();
        for (hash, user, tenant) in [("a", 1, 1), ("b", 2, 1), ("c", 3, 2), ("d", 4, 2)] {
            cache.fill(epoch(&cache, hash), hash, who(user, tenant), i64::MAX);
        }
        cache.invalidate(|hash, _| hash == "a");
        assert!(cache.get("a", 0).is_err());
        cache.invalidate(|_, p| p.tenant_id == 1 && p.user_id == 2);
        assert!(cache.get("b", 0).is_err());
        assert_eq!(cache.get("c", 0), Ok((who(3, 2), i64::MAX)));
        cache.invalidate(|_, p| p.tenant_id == 2);
        assert!(cache.get("c", 0).is_err() && cache.get("d", 0).is_err());
    }

    #[test]
    fn a_read_that_raced_with_an_invalidation_is_not_kept() {
        let cache = Cache::default();
        let before = epoch(&cache, "a");
        // The database read of "a" happened before its logout committed …
        cache.invalidate(|hash, _| hash == "a");
        // … so what it found must not be cached.
        cache.fill(before, "a", who(1, 1), i64::MAX);
        assert!(cache.get("a", 0).is_err());
    }
}
