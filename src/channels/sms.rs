//! SMS through a generic HTTP gateway. Inbound: the gateway POSTs
//! `{"from": "+49…", "to": "+49…", "text": "…", "id": "…"}` to `/api/v1/sms/inbound` with the
//! configured bearer token; [`inbound`] turns that into a written message of the service
//! address `to` (threaded into the sender's open SMS ticket, else a new one). Outbound:
//! [`send`] POSTs `{"from", "to", "text"}` to the configured endpoint.

use serde::Deserialize;

use super::config::SmsConfig;
use super::Error;
use crate::language;
use crate::store::{NewWritten, WrittenAddress};

/// What the gateway posts.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundSms {
    /// The sender's number.
    pub from: String,
    /// The service number it was sent to.
    pub to: String,
    pub text: String,
    /// The gateway's id of the message; repeated posts with the same id are stored once.
    #[serde(default)]
    pub id: Option<String>,
}

/// The written message of `sms`, to `address`; `open_ticket` is the sender's open SMS ticket
/// at that address, which the message joins.
pub fn inbound(
    sms: &InboundSms,
    address: &WrittenAddress,
    open_ticket: Option<i64>,
    now_ms: i64,
) -> NewWritten {
    let from = sms.from.trim().to_owned();
    let preview: String = sms.text.chars().take(60).collect();
    NewWritten {
        tenant: address.tenant,
        service_address: address.id,
        mailbox: address.mailbox,
        queue: address.queue,
        channel: "sms",
        source_key: match &sms.id {
            Some(id) => format!("sms:{}:{id}", address.id),
            None => format!("sms:{}:{from}:{now_ms}", address.id),
        },
        open_ticket,
        sender_name: None,
        contact: Some(from.clone()),
        identity_kind: "phone",
        recipients: vec![address.address.clone()],
        subject: format!("SMS from {from}: {preview}"),
        text: sms.text.clone(),
        language: language::detect(&sms.text)
            .map(str::to_owned)
            .or_else(|| address.language.clone()),
        first_answer_due: address.first_answer_due(now_ms),
        ..NewWritten::default()
    }
}

/// Sends `text` from the service number `from` to `to` through the gateway.
pub async fn send(
    http: &reqwest::Client,
    config: &SmsConfig,
    from: &str,
    to: &str,
    text: &str,
) -> Result<(), Error> {
    let url = config.outbound_url.as_deref().ok_or_else(|| {
        Error::NotConfigured("no SMS gateway is configured (channels.sms.outbound_url)".into())
    })?;
    let mut request = http
        .post(url)
        .json(&serde_json::json!({ "from": from, "to": to, "text": text }));
    if let Some(token) = &config.outbound_token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::Sms(e.to_string()))?;
    if !response.status().is_success() {
        return Err(Error::Sms(format!(
            "the gateway answered {}",
            response.status()
        )));
    }
    Ok(())
}
