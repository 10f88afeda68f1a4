//! Authentication and the caller's identity. `POST /api/v1/auth/login` checks an argon2
//! password hash and issues a random bearer token (only its SHA-256 is stored); every other
//! route takes a [`Caller`]: a tenant's user resolved from that token, or the operator, whose
//! token comes from the config (`auth.operator_token`) and who alone manages tenants.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Instant;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use utoipa::ToSchema;

use super::error::{Error, Result};
use super::login_guard::Locked;
use super::AppState;
use crate::catalog::{Role, USERS};
use crate::store::{now_ms, Principal};

/// A websocket's session: who connected, and what tells when that no longer holds.
pub struct LiveSession {
    pub who: Principal,
    token_hash: String,
    /// Fires when the session expires.
    expiry: Pin<Box<tokio::time::Sleep>>,
    changes: watch::Receiver<u64>,
    /// The store's session epoch this session was last checked at.
    checked: u64,
}

impl LiveSession {
    /// The live session of `token` with the principal it resolves to now; refused like
    /// [`resolve`] refuses, and the operator's token is no user's.
    pub async fn of(state: &AppState, token: &str) -> Result<LiveSession> {
        let token_hash = token_hash(token);
        if state.operator_token_hash.as_ref() == Some(&token_hash) {
            return Err(Error::Forbidden("the operator token is no user".into()));
        }
        let changes = state.store.session_changes();
        let checked = *changes.borrow();
        let Some((who, expires_at)) = state.store.session_until(&token_hash).await? else {
            return Err(unknown_token());
        };
        Ok(LiveSession {
            who,
            token_hash,
            expiry: Box::pin(tokio::time::sleep_until(instant_of(expires_at))),
            changes,
            checked,
        })
    }

    /// Resolves once the session no longer grants what it granted when the socket connected:
    /// it was logged out or expired, its user was changed (another role, another tenant) or
    /// deleted, its tenant deleted — or it could not be checked. Cancel-safe: a check cut short
    /// is made again at the next call.
    pub async fn ended(&mut self, state: &AppState) {
        loop {
            let checked = self.checked;
            tokio::select! {
                () = &mut self.expiry => {}
                open = async { self.changes.wait_for(|epoch| *epoch != checked).await.is_ok() } => {
                    if !open {
                        // The store is gone; the server is stopping.
                        std::future::pending::<()>().await;
                    }
                }
            }
            let epoch = *self.changes.borrow();
            match state.store.session_until(&self.token_hash).await {
                Ok(Some((who, expires_at))) if who == self.who => {
                    self.expiry.as_mut().reset(instant_of(expires_at));
                    self.checked = epoch;
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(user = self.who.user_id, error = %e, "session not checked again; its socket closes");
                    return;
                }
            }
        }
    }
}

/// The instant of a Unix time in ms (now, if it has passed).
fn instant_of(unix_ms: i64) -> tokio::time::Instant {
    let left = std::time::Duration::from_millis(u64::try_from(unix_ms - now_ms()).unwrap_or(0));
    let now = tokio::time::Instant::now();
    // Past the clock's range: a year is as good as never for a session.
    now.checked_add(left)
        .unwrap_or(now + std::time::Duration::from_secs(365 * 86_400))
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    Operator,
    User(Principal),
}

impl Caller {
    /// The tenant user behind the call, if it has at least `role`.
    pub fn user_with(self, role: Role) -> Result<Principal> {
        match self {
            Caller::User(p) if p.role >= role => Ok(p),
            Caller::User(p) => Err(Error::Forbidden(format!(
                "role {} may not do this; it needs {}",
                p.role.as_str(),
                role.as_str()
            ))),
            Caller::Operator => Err(Error::Forbidden(
                "the operator token manages tenants only".into(),
            )),
        }
    }

    pub fn operator(self) -> Result<()> {
        match self {
            Caller::Operator => Ok(()),
            Caller::User(_) => Err(Error::Forbidden("only the operator may do this".into())),
        }
    }
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn bearer(headers: &HeaderMap) -> Result<&str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthorized("missing bearer token"))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Error::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller> {
        resolve(state, bearer(&parts.headers)?).await
    }
}

/// The caller a bearer token stands for.
pub async fn resolve(state: &AppState, token: &str) -> Result<Caller> {
    let hash = token_hash(token);
    if let Some(operator) = &state.operator_token_hash {
        if *operator == hash {
            return Ok(Caller::Operator);
        }
    }
    match state.store.session(&hash).await? {
        Some(principal) => Ok(Caller::User(principal)),
        None => Err(unknown_token()),
    }
}

/// The refusal of a token that names no live session (logged).
fn unknown_token() -> Error {
    tracing::warn!("invalid or expired token presented");
    Error::Unauthorized("invalid or expired token")
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::invalid("invalid_value", format!("password cannot be hashed: {e}")))
}

/// A fresh bearer or resume token: 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so both failures take as long.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password").unwrap_or_default())
}

/// The longest tenant name, username or password a login may send. No account has a longer
/// one (passwords are at most 256 characters, names less), and a made-up name of any length
/// would otherwise be kept in the failed-login table and written to the log at every try.
const MAX_LOGIN_FIELD: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's short name, e.g. `demo`.
    pub tenant: String,
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub user: Me,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: i64,
    pub tenant_id: i64,
    pub role: String,
    pub display_name: String,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody), (status = 429, body = super::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: std::result::Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Json<LoginResponse>> {
    let Json(request) = body?;
    let source = state.client_ip(peer, &headers);
    for (field, value) in [
        ("tenant", &request.tenant),
        ("username", &request.username),
        ("password", &request.password),
    ] {
        if value.chars().count() > MAX_LOGIN_FIELD {
            tracing::info!(%source, field, "login refused: a field longer than any account's");
            return Err(Error::invalid(
                "too_long",
                format!("`{field}` is longer than {MAX_LOGIN_FIELD} characters"),
            ));
        }
    }
    let (tenant, username) = (request.tenant.as_str(), request.username.as_str());
    let locked = || match guard(&state).check(tenant, username, source, Instant::now()) {
        Ok(()) => Ok(()),
        Err(locked) => {
            let (whose, left) = match locked {
                Locked::Account(left) => ("this account", left),
                Locked::Source(left) => ("this address", left),
            };
            tracing::warn!(%tenant, %username, %source, "login refused: too many failed logins from {whose}");
            Err(Error::RateLimited(format!(
                "too many failed logins from {whose}; try again in {} seconds",
                left.as_secs() + 1
            )))
        }
    };
    locked()?;
    let login = state.store.find_login(tenant, username).await?;
    let hash = login
        .as_ref()
        .map_or(decoy_hash(), |l| l.password_hash.as_str())
        .to_owned();
    // Argon2 takes tens of milliseconds of CPU and ~19 MiB on purpose: off the async workers,
    // so that a burst of logins does not stall every other request, and a few at a time, so
    // that a flood of them cannot take every core and gigabytes of memory.
    let valid = {
        let _turn = state
            .password_checks
            .acquire()
            .await
            .map_err(|_| Error::Internal(crate::store::Error::Closed))?;
        // Again with the turn: guesses sent side by side all passed the first check while
        // they queued for it. A failure is counted before the turn is handed on, so at most
        // one guess per turn gets past the limit.
        locked()?;
        let password = request.password.clone();
        let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        if !(valid && login.is_some()) {
            guard(&state).failed(tenant, username, source, Instant::now());
        }
        valid
    };
    let Some(login) = login.filter(|_| valid) else {
        tracing::warn!(%tenant, %username, %source, "login failed");
        return Err(Error::Unauthorized("unknown tenant, user or password"));
    };
    guard(&state).succeeded(tenant, username);
    let token = random_token();
    let expires_at = now_ms() + state.token_ttl_ms;
    let started = state
        .store
        .create_session(&token_hash(&token), &login, expires_at)
        .await?;
    if !started {
        tracing::warn!(%tenant, %username, "login refused: the password changed while it was checked");
        return Err(Error::Unauthorized("unknown tenant, user or password"));
    }
    tracing::info!(
        tenant = login.principal.tenant_id,
        user = login.principal.user_id,
        "login"
    );
    Ok(Json(LoginResponse {
        token,
        expires_at,
        user: Me {
            id: login.principal.user_id,
            tenant_id: login.principal.tenant_id,
            role: login.principal.role.as_str().into(),
            display_name: login.display_name,
        },
    }))
}

fn guard(state: &AppState) -> std::sync::MutexGuard<'_, super::login_guard::LoginGuard> {
    state
        .login_guard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody)))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode> {
    let token = bearer(&headers)?;
    state.store.delete_session(&token_hash(token)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The calling user's own record, whatever the role.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "the caller's user record"), (status = 401, body = super::error::ErrorBody)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>> {
    let who = caller.user_with(Role::Agent)?;
    Ok(Json(
        state.store.get(&USERS, who.tenant_id, who.user_id).await?,
    ))
}

/// `GET /api/v1/colleagues`: the users of the caller's tenant by id, name and role — what any
/// agent needs to invite or transfer to a colleague (the users resource itself is for team
/// leads and up).
#[utoipa::path(get, path = "/api/v1/colleagues", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "`{items: [{id, display_name, role, team_id}]}`"), (status = 401, body = super::error::ErrorBody)))]
pub async fn colleagues(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>> {
    let who = caller.user_with(Role::Agent)?;
    let all = crate::store::ListQuery {
        filters: Vec::new(),
        limit: 10_000,
        offset: 0,
    };
    let users = state.store.list(&USERS, who.tenant_id, &all).await?;
    let items: Vec<serde_json::Value> = users
        .items
        .iter()
        .map(|u| serde_json::json!({ "id": u["id"], "display_name": u["display_name"], "role": u["role"], "team_id": u["team_id"] }))
        .collect();
    Ok(Json(serde_json::json!({ "items": items })))
}
