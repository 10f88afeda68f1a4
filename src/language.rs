//! The language of a customer's text — a chat message, a mail, an SMS — as the ISO 639-1 code
//! the tenant's language skills use. No I/O. Detection (whatlang) is trusted only when it says
//! it is reliable; short texts are not, and then the browser's or the mailbox's language
//! stands.

use whatlang::Lang;

/// The language `text` is written in, if that is clear.
pub fn detect(text: &str) -> Option<&'static str> {
    let info = whatlang::detect(text)?;
    if !info.is_reliable() {
        return None;
    }
    iso639_1(info.lang())
}

/// The two-letter code of the languages vacd's tenants are likely to staff.
fn iso639_1(lang: Lang) -> Option<&'static str> {
    Some(match lang {
        Lang::Eng => "en",
        Lang::Deu => "de",
        Lang::Fra => "fr",
        Lang::Spa => "es",
        Lang::Ita => "it",
        Lang::Por => "pt",
        Lang::Nld => "nl",
        Lang::Pol => "pl",
        Lang::Tur => "tr",
        Lang::Rus => "ru",
        Lang::Ukr => "uk",
        Lang::Swe => "sv",
        Lang::Dan => "da",
        Lang::Nob => "no",
        Lang::Fin => "fi",
        Lang::Ces => "cs",
        Lang::Ell => "el",
        Lang::Ara => "ar",
        Lang::Cmn => "zh",
        Lang::Jpn => "ja",
        _ => return None,
    })
}

/// The primary subtag of a browser language tag (`de-AT` → `de`), if it is two letters.
pub fn primary(tag: &str) -> Option<String> {
    let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
    (primary.len() == 2 && primary.bytes().all(|b| b.is_ascii_lowercase())).then_some(primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_sentences_are_detected_and_greetings_are_not() {
        assert_eq!(
            detect("Guten Tag, ich habe eine Frage zu meiner letzten Rechnung und der Lieferung."),
            Some("de")
        );
        assert_eq!(
            detect("Hello, I have a question about my last invoice and the delivery date."),
            Some("en")
        );
        assert_eq!(
            detect("Bonjour, je voudrais savoir pourquoi ma facture est si élevée ce mois-ci."),
            Some("fr")
        );
        assert_eq!(detect("ok"), None);
    }

    #[test]
    fn browser_tags_give_their_primary_language() {
        assert_eq!(primary("de-AT").as_deref(), Some("de"));
        assert_eq!(primary("EN").as_deref(), Some("en"));
        assert_eq!(primary("zh_Hant").as_deref(), Some("zh"));
        assert_eq!(primary("x-klingon"), None);
        assert_eq!(primary(""), None);
    }
}
