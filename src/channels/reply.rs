//! Composing an answer in a ticket: the template (by name, in the ticket's language) or the
//! agent's text, with variables filled ([`variables`]), text modules inserted
//! (`{{module.NAME}}`), the ticket tag kept in the subject and the mailbox's signature appended
//! when the text does not carry it. The console's preview and the sent reply use the same
//! [`compose`], so what the agent sees is what goes out.

use super::template::{self, Vars};
use super::{threading, Error};
use crate::store::{ReplyContext, Store};

/// A composed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    pub subject: String,
    pub body: String,
}

/// The variables of a reply in `ctx` written by `agent`.
pub fn variables(ctx: &ReplyContext, agent: Option<&str>) -> Vars {
    let number = format!("T-{}", ctx.interaction);
    let signature = ctx
        .address
        .as_ref()
        .and_then(|a| a.signature.clone())
        .unwrap_or_default();
    let mut vars = Vars::new();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_owned(), v);
    };
    set(
        "customer.name",
        ctx.customer_name.clone().unwrap_or_default(),
    );
    set("customer.contact", ctx.contact.clone().unwrap_or_default());
    set(
        "customer.email",
        ctx.contact
            .clone()
            .filter(|c| c.contains('@'))
            .unwrap_or_default(),
    );
    set("ticket", number.clone());
    set("ticket.id", number.clone());
    set("ticket.number", number);
    set("ticket.tag", threading::tag(ctx.interaction));
    set("ticket.subject", ctx.subject.clone());
    set("agent.name", agent.unwrap_or_default().to_owned());
    set("signature", signature.clone());
    set("mailbox.signature", signature);
    set("language", ctx.language.clone());
    set(
        "salutation",
        template::salutation(&ctx.language, ctx.customer_name.as_deref()),
    );
    vars
}

/// Most text modules one reply draws on; references to more are left as written.
const MAX_MODULES: usize = 100;

/// Longest reply body, in bytes, once its placeholders are filled in.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Names (or shortcuts) of the text modules `text` refers to as `{{module.NAME}}` or
/// `{module.NAME}` (the first [`MAX_MODULES`]).
fn module_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("module.") {
        if names.len() == MAX_MODULES {
            break;
        }
        let name: String = text[at + 7..]
            .chars()
            .take_while(|c| template::is_name_char(*c))
            .collect();
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Composes a reply in `ctx`: from `template` (a name), or `body` (the agent's text, which
/// wins when both are given), written by `agent`.
pub async fn compose(
    store: &Store,
    ctx: &ReplyContext,
    template: Option<&str>,
    body: Option<&str>,
    agent: Option<&str>,
) -> Result<Composed, Error> {
    let mut vars = variables(ctx, agent);
    let (subject, text) = match template {
        Some(name) => {
            let (subject, text) = store
                .template(ctx.tenant, name, &ctx.language)
                .await?
                .ok_or_else(|| Error::UnknownTemplate(name.to_owned()))?;
            (subject, body.map(str::to_owned).unwrap_or(text))
        }
        None => (None, body.unwrap_or_default().to_owned()),
    };
    for name in module_names(&text) {
        if let Some(module) = store.text_module(ctx.tenant, &name, &ctx.language).await? {
            let rendered = template::render(&module, &vars);
            vars.insert(format!("module.{name}"), rendered);
        }
    }
    let mut body = template::render_within(&text, &vars, MAX_REPLY_BYTES)
        .ok_or(Error::ReplyTooLong(MAX_REPLY_BYTES))?;
    let signature = &vars["signature"];
    if !signature.is_empty() && !body.contains(signature.as_str()) {
        body = format!("{}\n\n-- \n{signature}", body.trim_end());
    }
    let subject = match subject {
        Some(s) => template::render(&s, &vars),
        None => threading::reply_subject(&ctx.subject, ctx.interaction),
    };
    // Ours the last tag: that is the one a customer's answer threads by.
    let subject = if threading::find_tag(&subject) == Some(ctx.interaction) {
        subject
    } else {
        format!("{subject} {}", threading::tag(ctx.interaction))
    };
    Ok(Composed { subject, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WrittenAddress;

    fn ctx() -> ReplyContext {
        ReplyContext {
            tenant: 1,
            interaction: 42,
            channel: "email".into(),
            subject: "Invoice".into(),
            contact: Some("erika@example.test".into()),
            customer_name: Some("Erika".into()),
            language: "de".into(),
            address: Some(WrittenAddress {
                tenant: 1,
                id: 1,
                address: "support@demo.test".into(),
                mailbox: 1,
                queue: None,
                language: None,
                sla_seconds: None,
                signature: Some("Ihr Team".into()),
                business_hours: None,
                time_zone: "UTC".into(),
            }),
            thread_ids: Vec::new(),
            last_inbound: None,
        }
    }

    #[test]
    fn variables_of_a_ticket() {
        let vars = variables(&ctx(), Some("Bruno"));
        let text = "{{salutation}} {{ticket.id}} {{agent.name}} {{customer.email}} {{ticket.tag}}";
        assert_eq!(
            template::render(text, &vars),
            "Guten Tag Erika, T-42 Bruno erika@example.test [#T-42]"
        );
    }

    #[test]
    fn module_references() {
        assert_eq!(
            module_names(
                "{{module.greeting}} and {module.bye-now} {{module.greeting}} {{module./hi}}"
            ),
            ["greeting", "bye-now", "/hi"]
        );
    }
}
