//! The generic admin routes: list, create, read, update and delete for every resource in
//! `crate::catalog::RESOURCES`, mounted at `/api/v1/{path}` and `/api/v1/{path}/{id}`.
//!
//! This module turns untrusted JSON and query strings into checked column values: unknown or
//! read-only fields, wrong types, out-of-range values, bad enum values and missing required
//! fields are rejected here with a 422 naming the field, before the store is touched. The
//! tenant always comes from the caller's token, never from the request, which is what makes
//! tenant isolation hold for every resource at once.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value as JsonValue;

use super::auth::{hash_password, Caller};
use super::error::{Error, Result};
use super::AppState;
use crate::catalog::{
    Column, DefaultValue, Kind, Resource, Role, ATTACHMENTS, INTERACTIONS, MAILBOXES,
    MAIL_ACCOUNTS, QUEUE_ESCALATIONS, RESOURCES, USERS,
};
use crate::store::{ListQuery, Page, Value};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 500;

/// Most filters one list request may give: each is a condition of the query, and a thousand
/// of them made SQLite refuse it as too deep (a server error for a bad request).
const MAX_FILTERS: usize = 32;

/// The routes of every catalog resource, plus the two that go beyond plain CRUD.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for resource in RESOURCES {
        let r: &'static Resource = resource;
        router = router
            .route(
                &format!("/api/v1/{}", r.path),
                get(move |s, c, q| list(r, s, c, q)).post(move |s, c, b| create(r, s, c, b)),
            )
            .route(
                &format!("/api/v1/{}/{{id}}", r.path),
                get(move |s, c, p| read(r, s, c, p))
                    .patch(move |s, c, p, b| update(r, s, c, p, b))
                    .delete(move |s, c, p| remove(r, s, c, p)),
            );
    }
    router
        .route("/api/v1/mailboxes/{id}/effective", get(effective_mailbox))
        .route(
            "/api/v1/attachments/{id}/content",
            get(attachment_content).put(put_attachment_content),
        )
}

type Body = std::result::Result<Json<JsonValue>, JsonRejection>;
type Id = std::result::Result<Path<i64>, PathRejection>;
type Params = std::result::Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn list(
    r: &'static Resource,
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<Json<Page>> {
    let who = caller.user_with(r.read)?;
    let Query(params) = params?;
    let query = list_query(r, &params)?;
    Ok(Json(state.store.list(r, who.tenant_id, &query).await?))
}

async fn read(
    r: &'static Resource,
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<Json<JsonValue>> {
    let who = caller.user_with(r.read)?;
    let Path(id) = id?;
    Ok(Json(state.store.get(r, who.tenant_id, id).await?))
}

async fn create(
    r: &'static Resource,
    State(state): State<AppState>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<JsonValue>)> {
    let who = caller.user_with(writer(r)?)?;
    let Json(body) = body?;
    let values = fields(r, body, Mode::Create)?;
    if std::ptr::eq(r, &QUEUE_ESCALATIONS) {
        escalation_step(&JsonValue::Null, &values)?;
    }
    if std::ptr::eq(r, &MAIL_ACCOUNTS) {
        mail_account(&JsonValue::Null, &values)?;
    }
    let created = super::to_the_end(async move {
        if std::ptr::eq(r, &INTERACTIONS) {
            let routed = state
                .routing
                .create_routed(who.tenant_id, Some(who.user_id), &values)
                .await;
            if let Some(written) = routed {
                return Ok(written?);
            }
        }
        let created = state
            .store
            .create(r, who.tenant_id, Some(who.user_id), &values)
            .await?;
        state
            .routing
            .after_change(r, who.tenant_id, Some(&created), true)
            .await;
        Ok(created)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn update(
    r: &'static Resource,
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
    body: Body,
) -> Result<Json<JsonValue>> {
    let who = caller.user_with(writer(r)?)?;
    let Path(id) = id?;
    let Json(body) = body?;
    let values = fields(r, body, Mode::Update)?;
    if std::ptr::eq(r, &QUEUE_ESCALATIONS) {
        escalation_step(&state.store.get(r, who.tenant_id, id).await?, &values)?;
    }
    if std::ptr::eq(r, &MAIL_ACCOUNTS) {
        mail_account(&state.store.get(r, who.tenant_id, id).await?, &values)?;
    }
    // New SIP credentials void the phone registered with the old ones.
    let sip_changed = std::ptr::eq(r, &USERS)
        && values
            .iter()
            .any(|(c, _)| matches!(c.kind, Kind::SipUser | Kind::SipPassword));
    let updated = super::to_the_end(async move {
        let updated = state
            .store
            .update(r, who.tenant_id, Some(who.user_id), id, &values)
            .await?;
        if sip_changed {
            state.routing.calls().forget_phone(who.tenant_id, id);
        }
        state
            .routing
            .after_change(r, who.tenant_id, Some(&updated), false)
            .await;
        Ok(updated)
    })
    .await?;
    Ok(Json(updated))
}

async fn remove(
    r: &'static Resource,
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<StatusCode> {
    let role = r.delete.ok_or_else(|| read_only(r))?;
    let who = caller.user_with(role)?;
    let Path(id) = id?;
    if std::ptr::eq(r, &INTERACTIONS) {
        let row = state.store.get(r, who.tenant_id, id).await?;
        let routed = match row["state"].as_str() {
            Some("queued" | "offered" | "connected" | "wrap_up") => true,
            Some("new") => !row["queue_id"].is_null(),
            _ => false,
        };
        if routed {
            // Routing would go on offering and working a row that is gone.
            return Err(Error::Conflict {
                code: "in_routing",
                message: format!("interaction {id} is still routed or worked on; it can be deleted once it is done"),
            });
        }
    }
    super::to_the_end(async move {
        state
            .store
            .delete(r, who.tenant_id, Some(who.user_id), id)
            .await?;
        if std::ptr::eq(r, &USERS) {
            state.routing.calls().forget_phone(who.tenant_id, id);
        }
        state
            .routing
            .after_change(r, who.tenant_id, None, false)
            .await;
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn writer(r: &Resource) -> Result<Role> {
    r.write.ok_or_else(|| read_only(r))
}

fn read_only(r: &Resource) -> Error {
    Error::Forbidden(format!("{} are read-only through the API", r.path))
}

/// A mailbox with the settings it inherits from its ancestors filled in.
#[utoipa::path(get, path = "/api/v1/mailboxes/{id}/effective", tag = "mailboxes",
    params(("id" = i64, Path, description = "a mailbox of the caller's tenant")),
    security(("bearer" = [])),
    responses((status = 200, description = "the mailbox, with `language`, `sla_seconds`, `business_hours` and `signature` it leaves empty taken from its nearest ancestor that sets them"),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody)))]
pub(super) async fn effective_mailbox(
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<Json<JsonValue>> {
    let who = caller.user_with(MAILBOXES.read)?;
    let Path(id) = id?;
    let mut mailbox = state.store.get(&MAILBOXES, who.tenant_id, id).await?;
    let mut parent = mailbox["parent_id"].as_i64();
    // Hierarchies are acyclic (updates refuse cycles); the bound guards a corrupt table.
    for _ in 0..crate::catalog::MAX_HIERARCHY_DEPTH {
        let Some(up) = parent else { break };
        let ancestor = state.store.get(&MAILBOXES, who.tenant_id, up).await?;
        for key in ["language", "sla_seconds", "business_hours", "signature"] {
            if mailbox[key].is_null() {
                mailbox[key] = ancestor[key].clone();
            }
        }
        parent = ancestor["parent_id"].as_i64();
    }
    Ok(Json(mailbox))
}

#[utoipa::path(get, path = "/api/v1/attachments/{id}/content", tag = "attachments",
    params(("id" = i64, Path, description = "an attachment of the caller's tenant")),
    security(("bearer" = [])),
    responses((status = 200, description = "the bytes, with the attachment's content type (`nosniff`, sandboxed)"),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "no such attachment, or no content stored", body = super::error::ErrorBody)))]
pub(super) async fn attachment_content(
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
) -> Result<Response> {
    let who = caller.user_with(ATTACHMENTS.read)?;
    let Path(id) = id?;
    let meta = state.store.get(&ATTACHMENTS, who.tenant_id, id).await?;
    let bytes = state.store.attachment_content(who.tenant_id, id).await?;
    // Rows written before the API checked media types may hold no valid header value.
    let content_type = meta["content_type"]
        .as_str()
        .filter(|t| is_media_type(t))
        .unwrap_or("application/octet-stream")
        .to_owned();
    // The content type is the customer's: a page or script sent as an attachment must not run
    // as vacd's own (no sniffing, a sandbox without scripts or origin).
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

#[utoipa::path(put, path = "/api/v1/attachments/{id}/content", tag = "attachments",
    params(("id" = i64, Path, description = "an attachment of the caller's tenant")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the bytes"),
    security(("bearer" = [])),
    responses((status = 200, description = "the attachment's record"),
        (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody),
        (status = 409, description = "`content_stored`: written once; only an admin may replace it", body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody)))]
pub(super) async fn put_attachment_content(
    State(state): State<AppState>,
    caller: Caller,
    id: Id,
    bytes: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<JsonValue>> {
    let who = caller.user_with(writer(&ATTACHMENTS)?)?;
    let Path(id) = id?;
    let bytes = bytes?;
    // Content is written once; replacing it destroys the old bytes, which only those who may
    // delete attachments may do.
    let may_replace = ATTACHMENTS.delete.is_some_and(|role| who.role >= role);
    Ok(Json(
        state
            .store
            .put_attachment_content(who.tenant_id, Some(who.user_id), id, &bytes, may_replace)
            .await?,
    ))
}

fn list_query(r: &Resource, params: &[(String, String)]) -> Result<ListQuery> {
    let mut query = ListQuery {
        filters: Vec::new(),
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    for (name, raw) in params {
        let number = || {
            raw.parse::<i64>()
                .map_err(|_| Error::InvalidQuery(format!("`{name}` must be an integer")))
        };
        match name.as_str() {
            "limit" => {
                query.limit = number()?;
                if !(1..=MAX_LIMIT).contains(&query.limit) {
                    return Err(Error::InvalidQuery(format!(
                        "`limit` must be between 1 and {MAX_LIMIT}"
                    )));
                }
            }
            "offset" => {
                query.offset = number()?;
                if query.offset < 0 {
                    return Err(Error::InvalidQuery("`offset` must not be negative".into()));
                }
            }
            _ if query.filters.len() == MAX_FILTERS => {
                return Err(Error::InvalidQuery(format!(
                    "at most {MAX_FILTERS} filters per request"
                )));
            }
            _ => {
                let column = r.column(name).filter(|c| c.filter).ok_or_else(|| {
                    Error::InvalidQuery(format!("`{name}` is not a filter of {}", r.path))
                })?;
                let value = if column.is_int() {
                    Value::Int(Some(number()?))
                } else {
                    Value::Text(Some(raw.clone()))
                };
                query.filters.push((column, value));
            }
        }
    }
    Ok(query)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    Update,
}

/// Checks a JSON object against the resource's columns and returns the values to store.
fn fields(r: &Resource, body: JsonValue, mode: Mode) -> Result<Vec<(&'static Column, Value)>> {
    let JsonValue::Object(mut object) = body else {
        return Err(Error::invalid(
            "invalid_body",
            "the body must be a JSON object",
        ));
    };
    for name in object.keys() {
        let column = r.column(name).filter(|c| c.writable());
        match column {
            None => {
                return Err(Error::invalid(
                    "unknown_field",
                    format!("`{name}` is not a writable field of {}", r.path),
                ))
            }
            Some(c) if mode == Mode::Update && !c.mutable => {
                return Err(Error::invalid(
                    "immutable_field",
                    format!("`{name}` cannot be changed after creation"),
                ))
            }
            Some(_) => {}
        }
    }
    let mut values = Vec::new();
    for column in r.columns.iter().filter(|c| c.writable()) {
        match object.remove(column.name) {
            Some(json) => values.push((column, value(column, json)?)),
            None if mode == Mode::Update => {}
            None => match column.default {
                Some(DefaultValue::Int(v)) => values.push((column, Value::Int(Some(v)))),
                Some(DefaultValue::Text(v)) => values.push((column, Value::Text(Some(v.into())))),
                None if column.required => {
                    return Err(Error::invalid(
                        "missing_field",
                        format!("`{}` is required", column.name),
                    ))
                }
                None => {}
            },
        }
    }
    sip_credentials(&mut values)?;
    if std::ptr::eq(r, &ATTACHMENTS) {
        media_type(&values)?;
    }
    Ok(values)
}

/// An attachment's `content_type` is served as its `Content-Type` header: a `type/subtype`
/// (parameters after it allowed) of printable ASCII only.
fn media_type(values: &[(&'static Column, Value)]) -> Result<()> {
    let Some((_, Value::Text(Some(given)))) = values.iter().find(|(c, _)| c.name == "content_type")
    else {
        return Ok(());
    };
    if is_media_type(given) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_value",
            "`content_type` must be a media type such as `application/pdf`",
        ))
    }
}

fn is_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    value.bytes().all(|b| matches!(b, b' '..=b'~'))
        && essence
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

/// The text of column `name` as a row would be stored: `values` written over `stored`.
fn text_after<'a>(
    stored: &'a JsonValue,
    values: &'a [(&'static Column, Value)],
    name: &str,
) -> Option<&'a str> {
    match values.iter().find(|(c, _)| c.name == name) {
        Some((_, Value::Text(text))) => text.as_deref(),
        Some((_, Value::Int(_))) => None,
        None => stored[name].as_str(),
    }
}

/// A mail account as it would be stored must be one the channels can run safely (see
/// `channels::config::account_problem`).
fn mail_account(stored: &JsonValue, values: &[(&'static Column, Value)]) -> Result<()> {
    use crate::channels::config::{account_problem, AfterFetch, Protocol, Security};
    fn parse<T: serde::de::DeserializeOwned>(text: Option<&str>) -> Option<T> {
        serde_json::from_value(JsonValue::String(text?.to_owned())).ok()
    }
    let text = |name| text_after(stored, values, name);
    let (Some(protocol), Some(security)) = (
        parse::<Protocol>(text("protocol")),
        parse::<Security>(text("security")),
    ) else {
        return Ok(());
    };
    let after_fetch = parse::<AfterFetch>(text("after_fetch")).unwrap_or_default();
    let smtp = text("smtp_host").zip(parse::<Security>(text("smtp_security")));
    match account_problem(
        protocol,
        after_fetch,
        text("host").unwrap_or_default(),
        security,
        smtp,
    ) {
        Some(problem) => Err(Error::invalid("invalid_value", problem)),
        None => Ok(()),
    }
}

/// An escalation step as it would be stored — `values` written over `stored` (`Null` for a
/// new step) — must be one routing takes: a step adding an overflow queue names one, other
/// than its own queue (routing refuses a queue whose step does not).
fn escalation_step(stored: &JsonValue, values: &[(&'static Column, Value)]) -> Result<()> {
    let int = |name: &str| match values.iter().find(|(c, _)| c.name == name) {
        Some((_, Value::Int(v))) => *v,
        Some((_, Value::Text(_))) => None,
        None => stored[name].as_i64(),
    };
    if text_after(stored, values, "action") != Some("add_overflow_queue") {
        return Ok(());
    }
    match int("overflow_queue_id") {
        None => Err(Error::invalid(
            "missing_field",
            "`overflow_queue_id` is required for `add_overflow_queue`",
        )),
        Some(overflow) if Some(overflow) == int("queue_id") => Err(Error::invalid(
            "invalid_value",
            "a queue cannot overflow into itself",
        )),
        Some(_) => Ok(()),
    }
}

/// The digest hashes of a SIP password bind it to the SIP username (HA1 =
/// H(username:realm:password)), so the two are written together: the plain password is
/// replaced by its hashes here, and clearing the username clears the credentials.
fn sip_credentials(values: &mut Vec<(&'static Column, Value)>) -> Result<()> {
    let find = |values: &[(&'static Column, Value)], kind: fn(&Kind) -> bool| {
        values.iter().position(|(c, _)| kind(&c.kind))
    };
    let user = find(values, |k| matches!(k, Kind::SipUser));
    let password = find(values, |k| matches!(k, Kind::SipPassword));
    let username = user.map(|i| values[i].1.clone());
    let together = |missing: &str, given: &str| {
        Error::invalid(
            "missing_field",
            format!("`{missing}` must be sent together with `{given}`"),
        )
    };
    match (username, password) {
        (None, None) => {}
        (Some(Value::Text(Some(username))), Some(i)) => match &values[i].1 {
            Value::Text(Some(plain)) => {
                let hashes = crate::sip::credentials::ha1_values(&username, plain);
                values[i].1 = Value::Text(Some(hashes));
            }
            _ => return Err(together("sip_password", "sip_username")),
        },
        (Some(Value::Text(Some(_))), None) => return Err(together("sip_password", "sip_username")),
        (Some(_), Some(i)) => values[i].1 = Value::Text(None),
        (Some(_), None) => {
            if let Some(column) = USERS.column("sip_password") {
                values.push((column, Value::Text(None)));
            }
        }
        (None, Some(i)) => {
            if values[i].1 != Value::Text(None) {
                return Err(together("sip_username", "sip_password"));
            }
        }
    }
    Ok(())
}

/// `value` of the field `name` must be one of `allowed` (`invalid_value` otherwise).
pub(super) fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<()> {
    if allowed.contains(&value) {
        return Ok(());
    }
    Err(Error::invalid(
        "invalid_value",
        format!("`{name}` must be one of {}", allowed.join(", ")),
    ))
}

fn value(c: &Column, json: JsonValue) -> Result<Value> {
    let name = c.name;
    let nullable = !c.required && c.default.is_none();
    if json.is_null() {
        return if nullable {
            Ok(if c.is_int() {
                Value::Int(None)
            } else {
                Value::Text(None)
            })
        } else {
            Err(Error::invalid(
                "invalid_type",
                format!("`{name}` must not be null"),
            ))
        };
    }
    let wrong = |what: &str| Error::invalid("invalid_type", format!("`{name}` must be {what}"));
    // PostgreSQL's text cannot hold NUL, and no field means anything by it.
    if json.as_str().is_some_and(|s| s.contains('\0')) {
        return Err(Error::invalid(
            "invalid_value",
            format!("`{name}` must not contain NUL characters"),
        ));
    }
    match c.kind {
        Kind::Int { min, max } => {
            let v = json.as_i64().ok_or_else(|| wrong("an integer"))?;
            if !(min..=max).contains(&v) {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must be between {min} and {max}"),
                ));
            }
            Ok(Value::Int(Some(v)))
        }
        Kind::Ref(table) => {
            let v = json.as_i64().ok_or_else(|| wrong("an integer id"))?;
            if v < 1 {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must be the id of one of the tenant's {table}"),
                ));
            }
            Ok(Value::Int(Some(v)))
        }
        Kind::Text { max_len } | Kind::Secret { max_len } => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if s.trim().is_empty() && c.required {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must not be empty"),
                ));
            }
            if s.chars().count() > max_len {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must be at most {max_len} characters"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::OneOf(allowed) => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            one_of(name, s, allowed)?;
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::Language => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(Error::invalid(
                    "invalid_value",
                    format!("`{name}` must be an ISO 639-1 code such as `en`"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::Hours => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if s.len() > 200 || crate::channels::sla::BusinessHours::parse(s).is_none() {
                return Err(Error::invalid(
                    "invalid_value",
                    format!("`{name}` must be opening hours such as `Mo-Fr 08:00-18:00` (on the tenant's clock)"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::SoundFile => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            let plain = s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !(5..=100).contains(&s.len())
                || !plain
                || s.starts_with('.')
                || !s.to_ascii_lowercase().ends_with(".wav")
            {
                return Err(Error::invalid(
                    "invalid_value",
                    format!("`{name}` must be a WAV file name in the sounds directory, such as `sales-music.wav`"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::Password => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if !(8..=256).contains(&s.chars().count()) {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must be 8 to 256 characters"),
                ));
            }
            Ok(Value::Text(Some(hash_password(s)?)))
        }
        Kind::SipUser => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            let valid = (1..=64).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                return Err(Error::invalid(
                    "invalid_value",
                    format!("`{name}` must be 1 to 64 characters of A-Z, a-z, 0-9, `.`, `_`, `-`"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        // Still the plain password here; `sip_credentials` turns it into the digest hashes
        // before anything is stored.
        Kind::SipPassword => {
            let s = json.as_str().ok_or_else(|| wrong("a string"))?;
            if !(8..=256).contains(&s.chars().count()) {
                return Err(Error::invalid(
                    "out_of_range",
                    format!("`{name}` must be 8 to 256 characters"),
                ));
            }
            Ok(Value::Text(Some(s.to_owned())))
        }
        Kind::CreatedAt | Kind::Derived => Err(Error::invalid(
            "unknown_field",
            format!("`{name}` is set by the server"),
        )),
    }
}

/// Validates a create request body outside HTTP (the demo seed uses it).
pub fn new_values(r: &Resource, body: JsonValue) -> Result<Vec<(&'static Column, Value)>> {
    fields(r, body, Mode::Create)
}
