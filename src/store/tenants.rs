//! Tenants, the isolation boundary. Unlike the catalog's resources they are not owned by a
//! tenant: the operator creates, lists and deletes them; a tenant's admin reads its own and
//! changes its display name and routing settings. Deleting a tenant removes every row it owns
//! (the schema cascades).

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::crud::audit;
use super::events;
use super::{now_ms, Error, Result, Store};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    /// How agents mix calls, chats and tickets unless a user sets its own `blending`.
    pub blending: String,
    /// What a rejected or timed-out offer does to the agent: `not_ready` or `stay_ready`.
    pub missed_offer: String,
    /// The not-ready reason a missed offer sets (with `missed_offer` `not_ready`).
    pub missed_offer_reason: String,
    /// IANA time zone (`Europe/Berlin`) on whose clock business hours and routing rules' hours
    /// are read.
    pub time_zone: String,
    pub created_at: i64,
}

fn tenant(row: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        blending: row.try_get("blending")?,
        missed_offer: row.try_get("missed_offer")?,
        missed_offer_reason: row.try_get("missed_offer_reason")?,
        time_zone: row.try_get("time_zone")?,
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str =
    "id, name, display_name, blending, missed_offer, missed_offer_reason, time_zone, created_at";

/// The fields of a tenant an admin may change (`PATCH /api/v1/tenants/{id}`, which validates
/// them): any subset; those left out keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[schema(min_length = 1, max_length = 200)]
    pub display_name: Option<String>,
    /// How agents mix calls, chats and tickets unless a user sets its own `blending`.
    pub blending: Option<String>,
    /// What a rejected or timed-out offer does to the agent.
    pub missed_offer: Option<String>,
    /// The not-ready reason a missed offer sets (with `missed_offer` `not_ready`).
    #[schema(min_length = 1, max_length = 64)]
    pub missed_offer_reason: Option<String>,
    /// IANA time zone such as `Europe/Berlin`; business hours and rules' hours are read on its
    /// clock from the next message on.
    pub time_zone: Option<String>,
}

impl TenantUpdate {
    /// Whether the change concerns routing (it reloads the tenant's routing).
    pub fn touches_routing(&self) -> bool {
        self.blending.is_some() || self.missed_offer.is_some() || self.missed_offer_reason.is_some()
    }

    /// Column and value of each field that changes.
    fn sets(&self) -> Vec<(&'static str, &str)> {
        [
            ("display_name", &self.display_name),
            ("blending", &self.blending),
            ("missed_offer", &self.missed_offer),
            ("missed_offer_reason", &self.missed_offer_reason),
            ("time_zone", &self.time_zone),
        ]
        .into_iter()
        .filter_map(|(column, value)| Some((column, value.as_deref()?)))
        .collect()
    }
}

impl Store {
    /// A new tenant on UTC's clock.
    pub async fn create_tenant(&self, name: &str, display_name: &str) -> Result<Tenant> {
        self.create_tenant_in(name, display_name, "UTC").await
    }

    /// A new tenant on the clock of `time_zone` (an IANA name the caller has checked).
    pub async fn create_tenant_in(
        &self,
        name: &str,
        display_name: &str,
        time_zone: &str,
    ) -> Result<Tenant> {
        let row = sqlx::query(&format!(
            "INSERT INTO tenants (name, display_name, time_zone, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING {COLUMNS}"
        ))
        .bind(name.to_owned())
        .bind(display_name.to_owned())
        .bind(time_zone.to_owned())
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| Error::classify(e, "Tenant"))?;
        tenant(&row)
    }

    pub async fn tenants(&self, limit: i64, offset: i64) -> Result<(Vec<Tenant>, i64)> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tenants")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tenants ORDER BY id LIMIT $1 OFFSET $2"
        ))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        Ok((rows.iter().map(tenant).collect::<Result<_>>()?, total))
    }

    pub async fn tenant(&self, id: i64) -> Result<Tenant> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound)?;
        tenant(&row)
    }

    /// The clock of `tenant`: its time zone (UTC, with a warning, if the time zone database
    /// does not know the stored name).
    pub async fn tenant_clock(&self, tenant: i64) -> Result<jiff::tz::TimeZone> {
        let name: String = sqlx::query("SELECT time_zone FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(Error::NotFound)?
            .try_get("time_zone")?;
        Ok(crate::channels::sla::tenant_clock(tenant, &name))
    }

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE name = $1"))
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant).transpose()
    }

    /// Changes a tenant's display name and routing settings; the change and its audit event
    /// (`admin.tenants.updated`, by `actor`, `None` for the operator) commit together.
    pub async fn update_tenant(
        &self,
        id: i64,
        actor: Option<i64>,
        change: &TenantUpdate,
    ) -> Result<Tenant> {
        let sets = change.sets();
        if sets.is_empty() {
            return self.tenant(id).await;
        }
        let assignments = sets
            .iter()
            .enumerate()
            .map(|(i, (column, _))| format!("{column} = ${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("UPDATE tenants SET {assignments} WHERE id = $1 RETURNING {COLUMNS}");
        let mut update = sqlx::query(&sql).bind(id);
        for (_, value) in &sets {
            update = update.bind(value.to_string());
        }
        let mut tx = self.begin().await?;
        let row = update
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound)?;
        let updated = tenant(&row)?;
        events::append_in(&mut tx, &audit("tenants", "updated", id, actor, id)).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes the tenant and everything of it — refused while routing holds any of its calls
    /// or chats (waiting, offered or connected): a caller or visitor would be left hanging.
    /// Written interactions go with it. The caller makes routing's pending writes land first.
    pub async fn delete_tenant(&self, id: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS live FROM interactions WHERE tenant_id = $1 \
             AND channel IN ('call', 'chat') AND state IN ('queued', 'offered', 'connected')",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("live")?;
        if live > 0 {
            return Err(Error::TenantBusy { live });
        }
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::classify(e, "Tenant"))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        tx.commit().await?;
        self.tenant_deleted(id);
        Ok(())
    }
}
