//! Reply templates and text modules: variables (`{{customer.name}}`, `{{ticket.id}}`,
//! `{{agent.name}}`, …; the single-brace form `{customer.name}` of older templates too) filled
//! from a [`Vars`] map, and salutations by language. No I/O: the store supplies the texts and
//! the values.
//!
//! An unknown variable is left as written, so a typo shows in the editor's preview instead of
//! vanishing from the sent mail.

use std::collections::BTreeMap;

/// Variable values by name (`customer.name` → `Erika Mustermann`).
pub type Vars = BTreeMap<String, String>;

/// Longest variable name between braces, in bytes; a brace whose close is farther is text.
const MAX_NAME_BYTES: usize = 128;

/// `text` with every known variable replaced by its value.
pub fn render(text: &str, vars: &Vars) -> String {
    render_within(text, vars, usize::MAX).unwrap_or_default()
}

/// [`render`], or `None` as soon as the result passes `limit` bytes: a text of many
/// placeholders for one long value would otherwise grow a thousandfold.
pub fn render_within(text: &str, vars: &Vars, limit: usize) -> Option<String> {
    let mut out = String::with_capacity(text.len().min(limit));
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if out.len() > limit {
            return None;
        }
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let (double, inner_start) = if after.starts_with("{{") {
            (true, 2)
        } else {
            (false, 1)
        };
        let close = if double { "}}" } else { "}" };
        // Looked for only as far as a name can reach: searching to the end for every `{` made
        // a text of many unclosed braces take quadratic time.
        let window = &after.as_bytes()[inner_start..];
        let window = &window[..window.len().min(MAX_NAME_BYTES + close.len())];
        let found = window
            .windows(close.len())
            .position(|w| w == close.as_bytes());
        let replaced = found.and_then(|end| {
            let name = after[inner_start..inner_start + end].trim();
            let valid = !name.is_empty() && name.chars().all(|c| c == '.' || is_name_char(c));
            let value = vars.get(name).filter(|_| valid)?;
            Some((value, inner_start + end + close.len()))
        });
        match replaced {
            Some((value, consumed)) => {
                out.push_str(value);
                rest = &after[consumed..];
            }
            None => {
                let skip = if double { 2 } else { 1 };
                out.push_str(&after[..skip]);
                rest = &after[skip..];
            }
        }
    }
    out.push_str(rest);
    (out.len() <= limit).then_some(out)
}

/// Whether `c` may be part of a variable's name after its `.`: a text module's name or
/// shortcut (`{{module.bye-now}}`, `{{module./hi}}`).
pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/')
}

/// The salutation that opens a reply in `language` (ISO 639-1) to `name`.
pub fn salutation(language: &str, name: Option<&str>) -> String {
    match (language, name) {
        ("de", Some(n)) => format!("Guten Tag {n},"),
        ("de", None) => "Guten Tag,".into(),
        ("fr", Some(n)) => format!("Bonjour {n},"),
        ("fr", None) => "Bonjour,".into(),
        ("es", Some(n)) => format!("Hola {n}:"),
        ("es", None) => "Hola:".into(),
        (_, Some(n)) => format!("Dear {n},"),
        (_, None) => "Hello,".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [
            ("customer.name", "Erika"),
            ("ticket.id", "T-7"),
            ("agent.name", "Chloé"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn both_brace_forms() {
        assert_eq!(
            render(
                "Hi {{customer.name}}, ticket {ticket.id} — {{ agent.name }}",
                &vars()
            ),
            "Hi Erika, ticket T-7 — Chloé"
        );
    }

    #[test]
    fn unknown_and_broken_placeholders_stay() {
        assert_eq!(
            render("{{nope}} {x y} { {{ }} {", &vars()),
            "{{nope}} {x y} { {{ }} {"
        );
        assert_eq!(render("json {\"a\": 1}", &vars()), "json {\"a\": 1}");
        assert_eq!(render("ünï {{customer.name}}€", &vars()), "ünï Erika€");
        // A close beyond the longest name is not looked for: the braces stay text, and a text
        // of unclosed braces is passed once, not searched to its end for each of them.
        let far = format!("{{{{customer.name{}}}}}", " ".repeat(MAX_NAME_BYTES));
        assert_eq!(render(&far, &vars()), far);
        let braces = "{".repeat(100_000) + "ü {{customer.name}}";
        assert_eq!(render(&braces, &vars()), "{".repeat(100_000) + "ü Erika");
    }

    #[test]
    fn module_names_and_shortcuts_are_variables_too() {
        let mut vars = vars();
        vars.insert("module.bye-now".into(), "Bye!".into());
        vars.insert("module./hi".into(), "Hi!".into());
        assert_eq!(
            render("{{module./hi}} … {{module.bye-now}}", &vars),
            "Hi! … Bye!"
        );
    }

    #[test]
    fn salutations_by_language() {
        assert_eq!(
            salutation("de", Some("Frau Muster")),
            "Guten Tag Frau Muster,"
        );
        assert_eq!(salutation("en", None), "Hello,");
        assert_eq!(salutation("xx", Some("A")), "Dear A,");
    }
}
