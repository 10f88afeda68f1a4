//! What an offer shows the agent: the interaction's record. Routing offers most interactions
//! moments after they were created, so the rows just created are kept in memory
//! ([`Fresh`]) until their first offer takes them, and the offer needs no database read. A
//! later change or deletion of the row through this store drops its copy; a row not held
//! (offered before, or the holding was full) is read from the database.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value as Json;

use super::{Result, Store};
use crate::catalog::INTERACTIONS;

/// Rows held at most; interactions that wait long (or are never offered) must not make the
/// holding grow without bound, so when it is full it is emptied.
const MAX_HELD: usize = 50_000;

/// Interaction rows as created, by tenant and id, not yet offered.
#[derive(Debug, Default)]
pub(super) struct Fresh {
    rows: Mutex<HashMap<(i64, i64), Json>>,
}

impl Fresh {
    fn lock(&self) -> MutexGuard<'_, HashMap<(i64, i64), Json>> {
        // Every update is one call, so the map is consistent even after a holder panicked.
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn hold(&self, tenant: i64, row: &Json) {
        let Some(id) = row["id"].as_i64() else { return };
        let mut rows = self.lock();
        if rows.len() >= MAX_HELD {
            rows.clear();
        }
        rows.insert((tenant, id), row.clone());
    }

    pub(super) fn take(&self, tenant: i64, id: i64) -> Option<Json> {
        self.lock().remove(&(tenant, id))
    }

    pub(super) fn forget(&self, tenant: i64, id: i64) {
        self.lock().remove(&(tenant, id));
    }
}

impl Store {
    /// The record of an interaction being offered: the row as created if this is its first
    /// offer and nothing changed it since, else as stored now.
    pub async fn offer_details(&self, tenant: i64, id: i64) -> Result<Json> {
        match self.fresh.take(tenant, id) {
            Some(row) => Ok(row),
            None => self.get(&INTERACTIONS, tenant, id).await,
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
            fresh.take(1, 7).map(|r| r["subject"].clone()),
            Some("a".into())
        );
        assert_eq!(fresh.take(1, 7), None, "taken by the first offer");
        fresh.forget(1, 8);
        assert_eq!(fresh.take(1, 8), None, "forgotten after a change");
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
