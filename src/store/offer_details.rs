//! What an offer shows the agent: the interaction's record. Routing offers most interactions
//! moments after they were created, so the rows just created are kept in memory
//! ([`Fresh`]), serialized once, until their first offer takes them, and the offer needs no
//! database read. A later change or deletion of the row through this store drops its copy; a
//! row not held (offered before, or the holding was full) is read from the database.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::value::RawValue;
use serde_json::Value as Json;

use super::{Result, Store};
use crate::catalog::INTERACTIONS;

/// Rows held at most; interactions that wait long (or are never offered) must not make the
/// holding grow without bound, so when it is full it is emptied.
const MAX_HELD: usize = 50_000;

/// An interaction's record as an offer carries it.
#[derive(Debug)]
pub struct OfferDetails {
    /// The record, serialized.
    pub record: Box<RawValue>,
    /// Its `customer_id`, for the screen pop.
    pub customer: Option<i64>,
}

impl OfferDetails {
    fn of(row: &Json) -> Result<OfferDetails> {
        Ok(OfferDetails {
            record: serde_json::value::to_raw_value(row).map_err(|e| {
                super::Error::Database(sqlx::Error::Protocol(format!(
                    "interaction record not serializable: {e}"
                )))
            })?,
            customer: row["customer_id"].as_i64(),
        })
    }
}

/// Interaction rows as created, by tenant and id, not yet offered.
#[derive(Debug, Default)]
pub(super) struct Fresh {
    rows: Mutex<HashMap<(i64, i64), OfferDetails>>,
}

impl Fresh {
    fn lock(&self) -> MutexGuard<'_, HashMap<(i64, i64), OfferDetails>> {
        // Every update is one call, so the map is consistent even after a holder panicked.
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn hold(&self, tenant: i64, row: &Json) {
        let (Some(id), Ok(details)) = (row["id"].as_i64(), OfferDetails::of(row)) else {
            return;
        };
        let mut rows = self.lock();
        if rows.len() >= MAX_HELD {
            rows.clear();
        }
        rows.insert((tenant, id), details);
    }

    pub(super) fn take(&self, tenant: i64, id: i64) -> Option<OfferDetails> {
        self.lock().remove(&(tenant, id))
    }

    pub(super) fn forget(&self, tenant: i64, id: i64) {
        self.lock().remove(&(tenant, id));
    }
}

impl Store {
    /// The record of an interaction being offered: the row as created if this is its first
    /// offer and nothing changed it since, else as stored now.
    pub async fn offer_details(&self, tenant: i64, id: i64) -> Result<OfferDetails> {
        match self.fresh.take(tenant, id) {
            Some(details) => Ok(details),
            None => OfferDetails::of(&self.get(&INTERACTIONS, tenant, id).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_taken_or_forgotten() {
        let fresh = Fresh::default();
        fresh.hold(1, &serde_json::json!({ "id": 7, "subject": "a" }));
        fresh.hold(1, &serde_json::json!({ "id": 8 }));
        fresh.hold(2, &serde_json::json!({ "id": 7 }));
        assert_eq!(
            fresh.take(1, 7).map(|d| d.record.get().to_owned()),
            Some(r#"{"id":7,"subject":"a"}"#.into())
        );
        assert!(fresh.take(1, 7).is_none(), "taken by the first offer");
        fresh.forget(1, 8);
        assert!(fresh.take(1, 8).is_none(), "forgotten after a change");
        assert!(fresh.take(2, 7).is_some(), "tenants apart");
    }

    #[test]
    fn a_full_holding_is_emptied() {
        let fresh = Fresh::default();
        for id in 0..MAX_HELD as i64 {
            fresh.hold(1, &serde_json::json!({ "id": id }));
        }
        fresh.hold(1, &serde_json::json!({ "id": -1 }));
        assert_eq!(fresh.lock().len(), 1);
    }
}
