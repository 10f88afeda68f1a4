//! What an offer shows the agent: the interaction's record. Routing offers most interactions
//! moments after they were created, so the rows just created are kept in memory
//! ([`Fresh`]), serialized once, until their first offer takes them, and the offer needs no
//! database read. A row created ahead of its insert is held, for every offer, until it is
//! written: before, the database has none to read, so a request that names it waits for the
//! insert ([`Store::settled`]) and a listing of interactions for every such insert
//! ([`Store::all_settled`]). A later change or deletion of the row through this store drops its
//! copy; a row not held (offered before, or the holding was full) is read from the database.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value as Json;

use super::{Result, Store};
use crate::catalog::INTERACTIONS;

/// Rows held at most; interactions that wait long (or are never offered) must not make the
/// holding grow without bound, so when it is full it is emptied of all but the rows not
/// written yet (the database has nothing to offer them from).
const MAX_HELD: usize = 50_000;

/// An interaction's record as an offer carries it.
#[derive(Debug, Clone)]
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

/// Interaction rows as created, by tenant and id, not yet offered (or not yet written).
#[derive(Debug, Default)]
pub(super) struct Fresh {
    rows: Mutex<HashMap<(i64, i64), Held>>,
}

#[derive(Debug)]
struct Held {
    details: OfferDetails,
    stage: Stage,
}

#[derive(Debug, PartialEq)]
enum Stage {
    Written,
    /// Created ahead of its insert, which has not committed yet; `offered` meanwhile.
    Unwritten {
        offered: bool,
    },
}

impl Fresh {
    fn lock(&self) -> MutexGuard<'_, HashMap<(i64, i64), Held>> {
        // Every update is one call, so the map is consistent even after a holder panicked.
        self.rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds `row`, written (`unwritten` false) or created ahead of its insert.
    pub(super) fn hold(&self, tenant: i64, row: &Json, unwritten: bool) {
        let (Some(id), Ok(details)) = (row["id"].as_i64(), OfferDetails::of(row)) else {
            return;
        };
        let mut rows = self.lock();
        if rows.len() >= MAX_HELD {
            rows.retain(|_, held| held.stage != Stage::Written);
        }
        let stage = if unwritten {
            Stage::Unwritten { offered: false }
        } else {
            Stage::Written
        };
        rows.insert((tenant, id), Held { details, stage });
    }

    /// The row for an offer: taken, unless it is not written yet.
    pub(super) fn take(&self, tenant: i64, id: i64) -> Option<OfferDetails> {
        let mut rows = self.lock();
        match rows.get_mut(&(tenant, id)) {
            Some(held) if held.stage != Stage::Written => {
                held.stage = Stage::Unwritten { offered: true };
                Some(held.details.clone())
            }
            Some(_) => rows.remove(&(tenant, id)).map(|held| held.details),
            None => None,
        }
    }

    /// A row created ahead is written: dropped if it was offered meanwhile (a later offer reads
    /// the database), else left for its first offer to take.
    pub(super) fn written(&self, tenant: i64, id: i64) {
        let mut rows = self.lock();
        match rows.get_mut(&(tenant, id)) {
            Some(held) if held.stage == (Stage::Unwritten { offered: true }) => {
                rows.remove(&(tenant, id));
            }
            Some(held) => held.stage = Stage::Written,
            None => {}
        }
    }

    pub(super) fn forget(&self, tenant: i64, id: i64) {
        self.lock().remove(&(tenant, id));
    }

    /// Whether row `id` of `tenant` was created ahead and its insert has not committed yet.
    fn unwritten(&self, tenant: i64, id: i64) -> bool {
        self.lock()
            .get(&(tenant, id))
            .is_some_and(|held| held.stage != Stage::Written)
    }
}

/// Longest a request naming an interaction created ahead waits for its insert; a database that
/// takes longer answers it as it is (without the row, most likely) rather than keep it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Returns once interaction `id` of `tenant` is written if it was created ahead of its
    /// insert (or its insert failed), at once for any other: an agent who asks for an
    /// interaction a moment after its offer finds the row, not a 404 (at most
    /// [`SETTLE_TIMEOUT`]).
    pub(super) async fn settled(&self, tenant: i64, id: i64) {
        if self.fresh.unwritten(tenant, id) {
            self.all_settled(tenant).await;
        }
    }

    /// Returns once every interaction created ahead of its insert so far is written (or its
    /// insert failed): a listing made a moment after an offer (a supervisor's, an agent's)
    /// shows the interaction offered (at most [`SETTLE_TIMEOUT`]). It waits for the journal
    /// as it stands rather than look for such rows: under load there nearly always is one, and
    /// looking would hold the offers' lock through a scan of every row held.
    pub(super) async fn all_settled(&self, tenant: i64) {
        if tokio::time::timeout(SETTLE_TIMEOUT, self.flushed())
            .await
            .is_err()
        {
            tracing::warn!(
                tenant,
                "interactions created ahead not written in time; answered without waiting"
            );
        }
    }

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
        fresh.hold(1, &serde_json::json!({ "id": 7, "subject": "a" }), false);
        fresh.hold(1, &serde_json::json!({ "id": 8 }), false);
        fresh.hold(2, &serde_json::json!({ "id": 7 }), false);
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
    fn a_row_created_ahead_is_held_for_every_offer_until_written() {
        let fresh = Fresh::default();
        fresh.hold(1, &serde_json::json!({ "id": 7 }), true);
        assert!(fresh.take(1, 7).is_some());
        assert!(fresh.take(1, 7).is_some(), "not written yet: offered again");
        fresh.written(1, 7);
        assert!(
            fresh.take(1, 7).is_none(),
            "offered, then written: read from the database"
        );
        fresh.hold(1, &serde_json::json!({ "id": 8 }), true);
        fresh.written(1, 8);
        assert!(
            fresh.take(1, 8).is_some(),
            "written before its first offer, which takes it"
        );
        assert!(fresh.take(1, 8).is_none());
    }

    #[test]
    fn a_full_holding_is_emptied() {
        let fresh = Fresh::default();
        fresh.hold(1, &serde_json::json!({ "id": -2 }), true);
        for id in 0..MAX_HELD as i64 - 1 {
            fresh.hold(1, &serde_json::json!({ "id": id }), false);
        }
        fresh.hold(1, &serde_json::json!({ "id": -1 }), false);
        assert_eq!(
            fresh.lock().len(),
            2,
            "all but the row not written and the new one"
        );
        assert!(fresh.take(1, -2).is_some());
    }
}
