//! Follow-up dates: a ticket whose date has come while nobody works on it is opened again and
//! routed, as if its customer had written. Checked every poll interval; a date is acted on
//! once — a ticket still waiting or in someone's hands at its date keeps going as it is.

use tokio::sync::watch;

use super::Channels;
use crate::store::now_ms;

/// Looks for due follow-ups every poll interval until `stop`.
pub async fn watch(channels: Channels, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = reopen_due(&channels).await {
            tracing::warn!(error = %e, "follow-up dates not checked");
        }
        tokio::select! {
            _ = tokio::time::sleep(channels.config().poll_interval()) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Reopens the tickets whose date has come, each on its own: one the database refuses keeps
/// its date (and is tried again next time) without holding back the others.
async fn reopen_due(channels: &Channels) -> crate::store::Result<()> {
    let store = &channels.inner.store;
    let now = now_ms();
    let due = store.due_follow_ups(now).await?;
    if due.is_empty() {
        return Ok(());
    }
    // The stored states must include what routing did before.
    channels.routing().flushed().await;
    for (tenant, id) in due {
        match store.reopen_for_follow_up(tenant, id, now).await {
            Ok(true) => {
                tracing::info!(
                    tenant,
                    interaction_id = id,
                    "ticket reopened: its follow-up date came"
                );
                channels.route(tenant, id).await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(tenant, interaction_id = id, error = %e, "ticket not reopened for its follow-up date; tried again later")
            }
        }
    }
    Ok(())
}
