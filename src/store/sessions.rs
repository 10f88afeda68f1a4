//! Logins and bearer tokens. Only a SHA-256 of each token is stored, so a leaked database does
//! not leak usable tokens; a token resolves to a [`Principal`] (user, tenant, role) until it
//! expires or is logged out.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Result, Store};
use crate::catalog::Role;

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

    pub async fn create_session(
        &self,
        token_hash: &str,
        who: Principal,
        expires_at: i64,
    ) -> Result<()> {
        // Expired sessions are swept whenever a new one starts.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, tenant_id, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash.to_owned())
            .bind(who.user_id)
            .bind(who.tenant_id)
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The principal of a live session; the role is read from the user now, so a role change
    /// takes effect on the next request.
    pub async fn session(&self, token_hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT u.id, u.tenant_id, u.role FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash.to_owned())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        principal(&row)
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.to_owned())
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
