//! The language of a written message, from its text (`whatlang`), as the ISO 639-1 code that
//! names the tenant's language skill. No I/O. Short or ambiguous texts give `None`, and the
//! mailbox's language applies instead.

/// The language of `text`, when the detector is confident.
pub fn detect(text: &str) -> Option<&'static str> {
    let info = whatlang::detect(text)?;
    if !info.is_reliable() {
        return None;
    }
    use whatlang::Lang::*;
    Some(match info.lang() {
        Eng => "en",
        Deu => "de",
        Fra => "fr",
        Spa => "es",
        Ita => "it",
        Nld => "nl",
        Por => "pt",
        Pol => "pl",
        Swe => "sv",
        Dan => "da",
        Fin => "fi",
        Tur => "tr",
        Rus => "ru",
        Ces => "cs",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::detect;

    #[test]
    fn common_languages() {
        assert_eq!(
            detect("Bonjour, je voudrais savoir pourquoi ma facture est si élevée ce mois-ci."),
            Some("fr")
        );
        assert_eq!(
            detect("Guten Tag, ich möchte wissen, warum meine Rechnung diesen Monat so hoch ist."),
            Some("de")
        );
        assert_eq!(
            detect("Hello, I would like to know why my invoice is so high this month."),
            Some("en")
        );
        assert_eq!(detect("ok"), None);
    }
}
