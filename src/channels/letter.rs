//! Letters out: a reply rendered as an A4 PDF (`printpdf`, Helvetica, the recipient block, the
//! subject, the wrapped text over as many pages as it needs) and written into the service
//! address's outbox directory as `T-<ticket>-<time>.pdf`, atomically (a temporary name, then
//! renamed), so a mail-room process never picks up half a file.

use std::path::Path;

use printpdf::{BuiltinFont, Mm, PdfDocument};

use crate::store::NewAttachment;

#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// The built-in font (WinAnsi) has no glyph for these: printed, they would silently vanish.
    #[error(
        "the letter font cannot print {0}: write the letter in Latin letters (or answer on \
         another channel)"
    )]
    Unprintable(String),
    #[error("rendering the PDF: {0}")]
    Pdf(#[from] printpdf::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

const LINE_MM: f32 = 5.5;
const TOP_MM: f32 = 270.0;
const BOTTOM_MM: f32 = 20.0;
const WRAP: usize = 90;

/// `text`'s lines wrapped at `width` characters on word boundaries.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// Whether Helvetica's WinAnsi encoding (Windows-1252) has `c`; line breaks and tabs are
/// laid out, not printed.
fn printable(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{ff}' | '\n' | '\r' | '\t')
        || "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ".contains(c)
}

/// The PDF of a letter to `recipient` (name and postal address, one line each). Refused if
/// any of it cannot be printed: a letter missing letters is worse than none.
pub fn render(recipient: &str, subject: &str, body: &str) -> Result<Vec<u8>, LetterError> {
    let mut unprintable: Vec<char> = [recipient, subject, body]
        .iter()
        .flat_map(|text| text.chars())
        .filter(|c| !printable(*c))
        .collect();
    if !unprintable.is_empty() {
        unprintable.sort_unstable();
        unprintable.dedup();
        let shown: String = unprintable.iter().take(20).collect();
        return Err(LetterError::Unprintable(format!("“{shown}”")));
    }
    let (doc, page, layer) = PdfDocument::new(subject, Mm(210.0), Mm(297.0), "text");
    let font = doc.add_builtin_font(BuiltinFont::Helvetica)?;
    let bold = doc.add_builtin_font(BuiltinFont::HelveticaBold)?;
    let mut current = doc.get_page(page).get_layer(layer);
    let mut y = TOP_MM;
    for line in recipient.lines() {
        current.use_text(line, 11.0, Mm(25.0), Mm(y), &font);
        y -= LINE_MM;
    }
    y -= 2.0 * LINE_MM;
    current.use_text(subject, 12.0, Mm(25.0), Mm(y), &bold);
    y -= 2.0 * LINE_MM;
    for line in wrap(body, WRAP) {
        if y < BOTTOM_MM {
            let (page, layer) = doc.add_page(Mm(210.0), Mm(297.0), "text");
            current = doc.get_page(page).get_layer(layer);
            y = TOP_MM;
        }
        current.use_text(line, 10.5, Mm(25.0), Mm(y), &font);
        y -= LINE_MM;
    }
    Ok(doc.save_to_bytes()?)
}

/// Renders the letter and writes it into `outbox`; returns it as an attachment for the ticket.
pub fn write(
    outbox: &Path,
    ticket: i64,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<NewAttachment, LetterError> {
    let data = render(recipient, subject, body)?;
    let name = format!("T-{ticket}-{}.pdf", crate::store::now_ms());
    let io = |path: &Path, source| LetterError::Write {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(outbox).map_err(|e| io(outbox, e))?;
    let partial = outbox.join(format!(".{name}.part"));
    std::fs::write(&partial, &data).map_err(|e| io(&partial, e))?;
    let target = outbox.join(&name);
    std::fs::rename(&partial, &target).map_err(|e| io(&target, e))?;
    tracing::info!(ticket, path = %target.display(), bytes = data.len(), "letter written");
    Ok(NewAttachment {
        filename: name,
        content_type: "application/pdf".into(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_keeps_words_and_paragraphs() {
        assert_eq!(wrap("aa bb cc\n\ndd", 5), ["aa bb", "cc", "", "dd"]);
    }

    #[test]
    fn what_the_font_cannot_print_is_refused_not_dropped() {
        assert!(render("Frau Müller\nHauptstraße 1", "Rückfrage – 5 €", "Grüße\n").is_ok());
        match render("Pan Łukasz", "Dzień dobry", "Шановний") {
            Err(LetterError::Unprintable(chars)) => {
                for c in ['Ł', 'ń', 'Ш'] {
                    assert!(chars.contains(c), "{chars}");
                }
            }
            other => panic!("printed: {:?}", other.map(|pdf| pdf.len())),
        }
    }

    #[test]
    fn long_letters_get_more_pages() {
        let body = "word ".repeat(5000);
        let pdf =
            render("Erika Mustermann\nHauptstr. 1", "Your letter [#T-1]", &body).expect("renders");
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
