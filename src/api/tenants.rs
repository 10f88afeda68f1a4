//! `/api/v1/tenants`: the operator creates (with the tenant's first admin), lists and deletes
//! tenants; a tenant's own users read it and its admin changes its display name, time zone and
//! routing settings (blending, missed-offer policy), which the running routing takes before the
//! answer.
//! Another tenant's id answers 404, exactly like an id that does not exist.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{Error, Result};
use super::resources::{new_values, one_of, DEFAULT_LIMIT, MAX_LIMIT};
use super::AppState;
use crate::catalog::{Role, BLENDINGS, MISSED_OFFERS, USERS};
use crate::store::{Tenant, TenantUpdate};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/tenants", get(list).post(create))
        .route(
            "/api/v1/tenants/{id}",
            get(read).patch(update).delete(remove),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Short name used at login: 2–63 characters of a–z, 0–9 and `-`.
    pub name: String,
    pub display_name: String,
    /// Username of the tenant's first admin.
    pub admin_username: String,
    pub admin_password: String,
    /// IANA time zone (`Europe/Berlin`) on whose clock business hours are read; UTC if left out.
    pub time_zone: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

fn check_name(name: &str) -> Result<()> {
    let ok = (2..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid_value",
            "`name` must be 2–63 characters of a–z, 0–9 and `-`",
        ))
    }
}

fn check_display_name(display_name: &str) -> Result<()> {
    if display_name.trim().is_empty() || display_name.chars().count() > 200 {
        return Err(Error::invalid(
            "out_of_range",
            "`display_name` must be 1 to 200 characters",
        ));
    }
    Ok(())
}

fn check_reason(reason: &str) -> Result<()> {
    vacd_actors::check_reason(reason).map_err(|problem| {
        Error::invalid("out_of_range", format!("`missed_offer_reason`: {problem}"))
    })
}

/// The IANA name of the time zone `zone` names, as the time zone database spells it
/// (`europe/berlin` is `Europe/Berlin`).
fn check_time_zone(zone: &str) -> Result<String> {
    let known = (zone.len() <= 64)
        .then(|| crate::channels::sla::time_zone(zone))
        .flatten();
    match known.as_ref().and_then(|z| z.iana_name()) {
        Some(name) => Ok(name.to_owned()),
        None => Err(Error::invalid(
            "invalid_value",
            "`time_zone` must be an IANA time zone such as `Europe/Berlin`",
        )),
    }
}

/// Checks every field of an update before anything is written; a time zone is respelled as
/// the database spells it.
fn check_update(update: &mut TenantUpdate) -> Result<()> {
    if let Some(display_name) = &update.display_name {
        check_display_name(display_name)?;
    }
    if let Some(blending) = &update.blending {
        one_of("blending", blending, BLENDINGS)?;
    }
    if let Some(missed_offer) = &update.missed_offer {
        one_of("missed_offer", missed_offer, MISSED_OFFERS)?;
    }
    if let Some(reason) = &update.missed_offer_reason {
        check_reason(reason)?;
    }
    if let Some(zone) = &mut update.time_zone {
        *zone = check_time_zone(zone)?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(Paging), security(("bearer" = [])),
    responses((status = 200, body = TenantPage), (status = 403, body = super::error::ErrorBody)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    paging: std::result::Result<Query<Paging>, QueryRejection>,
) -> Result<Json<TenantPage>> {
    caller.operator()?;
    let Query(paging) = paging?;
    let limit = paging.limit.unwrap_or(DEFAULT_LIMIT);
    let offset = paging.offset.unwrap_or(0);
    if !(1..=MAX_LIMIT).contains(&limit) || offset < 0 {
        return Err(Error::InvalidQuery(format!(
            "`limit` must be 1 to {MAX_LIMIT}, `offset` not negative"
        )));
    }
    let (items, total) = state.store.tenants(limit, offset).await?;
    Ok(Json(TenantPage {
        items,
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = NewTenant, security(("bearer" = [])),
    responses((status = 201, body = Tenant), (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: std::result::Result<Json<NewTenant>, JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>)> {
    caller.operator()?;
    let Json(new) = body?;
    check_name(&new.name)?;
    check_display_name(&new.display_name)?;
    let time_zone = check_time_zone(new.time_zone.as_deref().unwrap_or("UTC"))?;
    // Validate the admin before anything is written, so a bad password creates nothing.
    let admin = new_values(
        &USERS,
        json!({
            "username": new.admin_username,
            "display_name": new.admin_username,
            "password": new.admin_password,
            "role": Role::Admin.as_str(),
        }),
    )?;
    let tenant = state
        .store
        .create_tenant_in(&new.name, &new.display_name, &time_zone)
        .await?;
    if let Err(e) = state.store.create(&USERS, tenant.id, None, &admin).await {
        state.store.delete_tenant(tenant.id).await?;
        return Err(e.into());
    }
    tracing::info!(tenant = tenant.id, name = %tenant.name, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// The operator sees every tenant; a user only its own.
fn visible(caller: Caller, id: i64, role: Role) -> Result<()> {
    match caller {
        Caller::Operator => Ok(()),
        Caller::User(p) if p.tenant_id == id => caller.user_with(role).map(|_| ()),
        Caller::User(_) => Err(Error::NotFound("no such tenant".into())),
    }
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Tenant), (status = 404, body = super::error::ErrorBody)))]
async fn read(
    State(state): State<AppState>,
    caller: Caller,
    id: std::result::Result<Path<i64>, PathRejection>,
) -> Result<Json<Tenant>> {
    let Path(id) = id?;
    visible(caller, id, Role::Agent)?;
    Ok(Json(state.store.tenant(id).await?))
}

/// Changes the display name and routing settings; like every admin change it writes an audit
/// event, and the tenant's routing is reloaded before the answer, so the next offer follows
/// the new settings.
#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", request_body = TenantUpdate, security(("bearer" = [])),
    responses((status = 200, body = Tenant), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
async fn update(
    State(state): State<AppState>,
    caller: Caller,
    id: std::result::Result<Path<i64>, PathRejection>,
    body: std::result::Result<Json<TenantUpdate>, JsonRejection>,
) -> Result<Json<Tenant>> {
    let Path(id) = id?;
    let actor = match &caller {
        Caller::Operator => None,
        Caller::User(p) => Some(p.user_id),
    };
    visible(caller, id, Role::Admin)?;
    let Json(mut update) = body?;
    check_update(&mut update)?;
    let tenant = state.store.update_tenant(id, actor, &update).await?;
    if update.touches_routing() {
        state.routing.reconfigure(id).await;
    }
    Ok(Json(tenant))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants", security(("bearer" = [])),
    responses((status = 204), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody),
        (status = 503, description = "journal_behind: routing's writes are behind (the database is down or slow); try again", body = super::error::ErrorBody)))]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    id: std::result::Result<Path<i64>, PathRejection>,
) -> Result<StatusCode> {
    caller.operator()?;
    let Path(id) = id?;
    // What routing did last is in the table before it is asked whether any work is left.
    state.routing.caught_up().await?;
    state.store.delete_tenant(id).await?;
    // Its routing stops for good: no timers, no outputs recorded for a tenant that is gone.
    if let Err(e) = state
        .routing
        .router()
        .forget(vacd_actors::TenantId(id as u64))
        .await
    {
        tracing::warn!(tenant = id, error = %e, "deleted tenant's routing not stopped");
    }
    tracing::info!(tenant = id, "tenant deleted");
    Ok(StatusCode::NO_CONTENT)
}
