//! What the SIP endpoint reads from the store: an agent's phone credentials by SIP username
//! (globally unique, so a REGISTER finds its tenant) and the tenant, mailbox, queue and
//! language a dialled phone number belongs to (phone service addresses are globally unique
//! too). Both are plain
//! reads; the endpoint calls them off its own task so a slow database never stalls signalling.

use sqlx::Row;

use super::{Result, Store};

/// An agent's SIP credentials as stored: the digest HA1 values, never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUser {
    pub tenant_id: i64,
    pub user_id: i64,
    pub sip_username: String,
    /// `<MD5 hex>:<SHA-256 hex>` (see `crate::sip::credentials`); `None` when no SIP password
    /// is set.
    pub ha1: Option<String>,
}

/// The owner of a dialled phone service number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNumber {
    pub tenant_id: i64,
    pub address_id: i64,
    pub mailbox_id: i64,
    /// The number's queue — or, for a number without one, the queue a routing rule gives its
    /// calls now (judged without the caller, whom the call's own classification then knows).
    pub queue_id: Option<i64>,
    /// The mailbox's language (inherited from its parents): the callers' unless a caller's
    /// own is known.
    pub language: Option<String>,
}

impl Store {
    pub async fn sip_user(&self, sip_username: &str) -> Result<Option<SipUser>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, sip_username, sip_ha1 FROM users WHERE sip_username = $1",
        )
        .bind(sip_username.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(SipUser {
                tenant_id: row.try_get("tenant_id")?,
                user_id: row.try_get("id")?,
                sip_username: row.try_get("sip_username")?,
                ha1: row.try_get("sip_ha1")?,
            })
        })
        .transpose()
    }

    /// The phone service address stored exactly as `number` (E.164, `+4930123456`).
    pub async fn phone_number(&self, number: &str) -> Result<Option<ServiceNumber>> {
        let Some(address) = self.service_address("phone", number).await? else {
            return Ok(None);
        };
        let queue_id = match address.queue {
            Some(queue) => Some(queue),
            None => {
                self.rule_queue_before_words(
                    address.tenant,
                    "call",
                    address.id,
                    address.language.as_deref(),
                )
                .await?
            }
        };
        Ok(Some(ServiceNumber {
            tenant_id: address.tenant,
            address_id: address.id,
            mailbox_id: address.mailbox,
            queue_id,
            language: address.language,
        }))
    }
}
