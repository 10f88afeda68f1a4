//! Customers by identity: the caller's number, the visitor's email address. Channels find the
//! customer behind an identity, or create one, inside their own transaction.

use sqlx::{Any, Row, Transaction};

use super::Result;

/// The customer with identity `kind` = `value` in `tenant`, created (named `name`) if there is
/// none.
pub(super) async fn find_or_create(
    tx: &mut Transaction<'static, Any>,
    tenant: i64,
    kind: &str,
    value: &str,
    name: &str,
    now: i64,
) -> Result<i64> {
    let known = sqlx::query(
        "SELECT customer_id FROM customer_identities \
         WHERE tenant_id = $1 AND kind = $2 AND value = $3",
    )
    .bind(tenant)
    .bind(kind.to_owned())
    .bind(value.to_owned())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = known {
        return Ok(row.try_get("customer_id")?);
    }
    let id: i64 = sqlx::query(
        "INSERT INTO customers (tenant_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(tenant)
    .bind(name.to_owned())
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    sqlx::query(
        "INSERT INTO customer_identities (tenant_id, customer_id, kind, value) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(tenant)
    .bind(id)
    .bind(kind.to_owned())
    .bind(value.to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
