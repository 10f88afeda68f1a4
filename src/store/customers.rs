//! Customers by identity: the caller's number, the visitor's email address. Channels find the
//! customer behind an identity, or create one, inside their own transaction; the agent's screen
//! pop and the ticket desk show the customer's card (record, identities, recent history).

use serde_json::{json, Value as Json};
use sqlx::{Any, Row, Transaction};

use super::{text, truncate, Backend, Result, Store};

/// Earlier interactions a customer's card shows at most, newest first.
const HISTORY: i64 = 50;

/// What an agent sees of a customer beside an interaction.
#[derive(Debug)]
pub struct CustomerCard {
    /// `id`, `name`, `language`, `notes` and `identities` (`kind`, `value`).
    pub customer: Json,
    /// The customer's other interactions, newest first: `id`, `channel`, `state`, `subject`,
    /// `created_at`.
    pub history: Vec<Json>,
}

impl Store {
    /// The card of customer `customer` of `tenant` beside interaction `current` (left out of the
    /// history).
    pub async fn customer_card(
        &self,
        tenant: i64,
        customer: i64,
        current: i64,
    ) -> Result<CustomerCard> {
        // The customer with its identities (one row each, or one row of NULLs if it has none).
        let rows = sqlx::query(
            "SELECT c.name, c.language, c.notes, ci.kind, ci.value FROM customers c \
             LEFT JOIN customer_identities ci ON ci.tenant_id = c.tenant_id AND ci.customer_id = c.id \
             WHERE c.tenant_id = $1 AND c.id = $2 ORDER BY ci.id",
        )
        .bind(tenant)
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        let c = rows.first().ok_or(super::Error::NotFound)?;
        let history = sqlx::query(
            "SELECT id, channel, state, subject, created_at FROM interactions \
             WHERE tenant_id = $1 AND customer_id = $2 AND id <> $3 ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant)
        .bind(customer)
        .bind(current)
        .bind(HISTORY)
        .fetch_all(&self.pool)
        .await?;
        let mut identities = Vec::new();
        for r in &rows {
            if let (Some(kind), Some(value)) = (
                r.try_get::<Option<String>, _>("kind")?,
                r.try_get::<Option<String>, _>("value")?,
            ) {
                identities.push(json!({ "kind": kind, "value": value }));
            }
        }
        let history = history
            .iter()
            .map(|r| {
                Ok(json!({
                    "id": r.try_get::<i64, _>("id")?,
                    "channel": r.try_get::<String, _>("channel")?,
                    "state": r.try_get::<String, _>("state")?,
                    "subject": r.try_get::<Option<String>, _>("subject")?,
                    "created_at": r.try_get::<i64, _>("created_at")?,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CustomerCard {
            customer: json!({
                "id": customer,
                "name": c.try_get::<String, _>("name")?,
                "language": c.try_get::<Option<String>, _>("language")?,
                "notes": c.try_get::<Option<String>, _>("notes")?,
                "identities": identities,
            }),
            history,
        })
    }
}

/// Who a channel met: an identity (`kind` = `value`, e.g. a phone number) and, for a customer
/// made for it, a name and a language.
pub(super) struct Identity<'a> {
    pub kind: &'a str,
    pub value: &'a str,
    pub name: &'a str,
    pub language: Option<&'a str>,
}

/// The customer with `identity` in `tenant`, created if there is none.
pub(super) async fn find_or_create(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    tenant: i64,
    identity: Identity<'_>,
    now: i64,
) -> Result<i64> {
    let value = text(identity.value);
    if backend == Backend::Postgres {
        // Two channels meeting a new customer at once (two calls from one switchboard number,
        // an SMS and a mail) would each make one, and the second fail on the identity's
        // uniqueness: one after the other, the second finds the first's.
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(super::IDENTITY_LOCKS)
            .bind(super::advisory_key(tenant, &[identity.kind, &value]))
            .execute(&mut **tx)
            .await?;
    }
    let known = sqlx::query(
        "SELECT customer_id FROM customer_identities \
         WHERE tenant_id = $1 AND kind = $2 AND value = $3",
    )
    .bind(tenant)
    .bind(identity.kind.to_owned())
    .bind(value.clone())
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = known {
        return Ok(row.try_get("customer_id")?);
    }
    let id: i64 = sqlx::query(
        "INSERT INTO customers (tenant_id, name, language, created_at) \
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(tenant)
    .bind(truncate(identity.name, 200))
    .bind(identity.language.map(str::to_owned))
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
    .bind(identity.kind.to_owned())
    .bind(value)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}
