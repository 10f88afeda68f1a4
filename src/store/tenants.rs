//! Tenants, the isolation boundary. Unlike the catalog's resources they are not owned by a
//! tenant: the operator creates, lists and deletes them; a tenant's admin reads and renames its
//! own. Deleting a tenant removes every row it owns (the schema cascades).

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{now_ms, Error, Result, Store};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Tenant {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    pub created_at: i64,
}

fn tenant(row: &AnyRow) -> Result<Tenant> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        created_at: row.try_get("created_at")?,
    })
}

const COLUMNS: &str = "id, name, display_name, created_at";

impl Store {
    pub async fn create_tenant(&self, name: &str, display_name: &str) -> Result<Tenant> {
        let row = sqlx::query(&format!(
            "INSERT INTO tenants (name, display_name, created_at) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
        ))
        .bind(name.to_owned())
        .bind(display_name.to_owned())
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

    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE name = $1"))
            .bind(name.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant).transpose()
    }

    pub async fn rename_tenant(&self, id: i64, display_name: &str) -> Result<Tenant> {
        let done = sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2")
            .bind(display_name.to_owned())
            .bind(id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        self.tenant(id).await
    }

    pub async fn delete_tenant(&self, id: i64) -> Result<()> {
        let done = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await
            .map_err(|e| Error::classify(e, "Tenant"))?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound);
        }
        self.tenant_deleted(id);
        Ok(())
    }
}
