//! Sending mail over SMTP with `lettre`: replies, forwards and acknowledgements, with the
//! threading headers that bring the customer's answer back to its ticket (`Message-ID`,
//! `In-Reply-To`, `References`) and `Auto-Submitted: auto-replied` on acknowledgements
//! (RFC 3834), over TLS, STARTTLS (required, never opportunistic) or plain for loopback tests.

use std::path::Path;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::channels::config::{Security, SmtpConfig};

/// How long one SMTP conversation may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("`{0}` is not a mail address")]
    Address(String),
    #[error("building the message: {0}")]
    Build(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// One outgoing mail.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub from: String,
    pub from_name: Option<String>,
    pub to: String,
    pub subject: String,
    pub body: String,
    /// Without brackets.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// An acknowledgement: marked so that other systems do not answer it.
    pub automatic: bool,
}

/// `Auto-Submitted: auto-replied`.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-replied".into())
    }
}

/// Builds the RFC 5322 message of `out`.
pub fn build(out: &Outgoing) -> Result<Message, SendError> {
    let from: Mailbox = out
        .from
        .parse()
        .map_err(|_| SendError::Address(out.from.clone()))?;
    let from = Mailbox::new(out.from_name.clone(), from.email);
    let to: Mailbox = out
        .to
        .parse()
        .map_err(|_| SendError::Address(out.to.clone()))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(out.subject.clone())
        .message_id(Some(format!("<{}>", out.message_id)));
    if let Some(parent) = &out.in_reply_to {
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !out.references.is_empty() {
        let refs: Vec<String> = out.references.iter().map(|r| format!("<{r}>")).collect();
        builder = builder.references(refs.join(" "));
    }
    if out.automatic {
        builder = builder.header(AutoSubmitted);
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(out.body.clone())
        .map_err(|e| SendError::Build(e.to_string()))
}

/// Sends `out` through `smtp`.
pub async fn send(
    smtp: &SmtpConfig,
    ca_file: Option<&Path>,
    out: &Outgoing,
) -> Result<(), SendError> {
    let message = build(out)?;
    let tls = |host: &str| -> Result<TlsParameters, SendError> {
        let mut params = TlsParameters::builder(host.to_owned());
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| SendError::Tls(format!("{}: {e}", path.display())))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| SendError::Tls(e.to_string()))?;
            params = params.add_root_certificate(cert);
        }
        params
            .build_rustls()
            .map_err(|e| SendError::Tls(e.to_string()))
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
        .port(smtp.port)
        .timeout(Some(SEND_TIMEOUT));
    transport = match smtp.security {
        Security::Plain => transport.tls(Tls::None),
        Security::Starttls => transport.tls(Tls::Required(tls(&smtp.host)?)),
        Security::Tls => transport.tls(Tls::Wrapper(tls(&smtp.host)?)),
    };
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    // An automatic reply goes out with the null reverse path (RFC 3834 §3.3, RFC 5321
    // §4.5.5): a bounce of it comes back to nobody, not as a new ticket.
    let mut envelope = message.envelope().clone();
    if out.automatic {
        envelope = Envelope::new(None, envelope.to().to_vec())
            .map_err(|e| SendError::Build(e.to_string()))?;
    }
    transport
        .build()
        .send_raw(&envelope, &message.formatted())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_threading_headers() {
        let out = Outgoing {
            from: "support@demo.test".into(),
            from_name: Some("Demo Support".into()),
            to: "erika@example.test".into(),
            subject: "Re: Invoice [#T-5]".into(),
            body: "Hello".into(),
            message_id: "t5.m2.1@demo.test".into(),
            in_reply_to: Some("abc@example.test".into()),
            references: vec!["abc@example.test".into()],
            automatic: true,
        };
        let text = String::from_utf8(build(&out).expect("builds").formatted()).expect("UTF-8");
        assert!(text.contains("Message-ID: <t5.m2.1@demo.test>"), "{text}");
        assert!(text.contains("In-Reply-To: <abc@example.test>"), "{text}");
        assert!(text.contains("References: <abc@example.test>"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
        assert!(text.contains("Subject: Re: Invoice [#T-5]"), "{text}");
    }

    #[test]
    fn a_bad_address_is_an_error() {
        let out = Outgoing {
            from: "support@demo.test".into(),
            from_name: None,
            to: "not an address".into(),
            subject: String::new(),
            body: String::new(),
            message_id: "x@y".into(),
            in_reply_to: None,
            references: Vec::new(),
            automatic: false,
        };
        assert!(matches!(build(&out), Err(SendError::Address(_))));
    }
}
