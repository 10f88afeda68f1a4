//! Letters out: a reply rendered as an A4 PDF (`printpdf`: the recipient block, the subject,
//! the wrapped text over as many pages as it needs) and written into the service address's
//! outbox directory as `T-<ticket>-<time>.pdf`, atomically (a temporary name, then renamed),
//! so a mail-room process never picks up half a file.
//!
//! Printed in Helvetica (Windows-1252 only) unless `channels.letter_font` names a TrueType font
//! ([`LetterFonts`]), which is then embedded in each letter. Text printpdf cannot lay out —
//! characters the font has no glyph for, and scripts that need shaping or run right to left
//! (Arabic, Hebrew, the Indic scripts, …) — is refused rather than printed wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use printpdf::{BuiltinFont, IndirectFontRef, Mm, PdfDocument, PdfDocumentReference};

use crate::store::NewAttachment;

#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// The font has no glyph for these, or they need a layout printpdf does not do: printed,
    /// they would silently vanish or come out garbled.
    #[error(
        "the letter font cannot print {0}: write the letter without them (or answer on \
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

/// A configured letter font that cannot be used (vacd does not start).
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    #[error("reading the letter font {path}: {reason}")]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("the letter font {path} is not a TrueType font: {reason}")]
    Parse {
        path: PathBuf,
        reason: ttf_parser::FaceParsingError,
    },
}

/// The typefaces letters are printed in.
#[derive(Clone, Default)]
pub enum LetterFonts {
    /// Helvetica, which every PDF reader has: Windows-1252's characters only.
    #[default]
    Builtin,
    /// TrueType faces embedded in every letter (the same one twice if no bold was given).
    Embedded {
        regular: Arc<Vec<u8>>,
        bold: Arc<Vec<u8>>,
    },
}

impl LetterFonts {
    /// The fonts `channels.letter_font` and `channels.letter_bold_font` name, read and checked
    /// once at start.
    pub fn load(regular: Option<&Path>, bold: Option<&Path>) -> Result<LetterFonts, FontError> {
        let Some(regular) = regular else {
            return Ok(LetterFonts::Builtin);
        };
        let regular = Arc::new(read_font(regular)?);
        let bold = match bold {
            Some(bold) => Arc::new(read_font(bold)?),
            None => regular.clone(),
        };
        Ok(LetterFonts::Embedded { regular, bold })
    }
}

impl std::fmt::Debug for LetterFonts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LetterFonts::Builtin => f.write_str("Builtin"),
            LetterFonts::Embedded { regular, bold } => write!(
                f,
                "Embedded {{ regular: {} bytes, bold: {} bytes }}",
                regular.len(),
                bold.len()
            ),
        }
    }
}

fn read_font(path: &Path) -> Result<Vec<u8>, FontError> {
    let data = std::fs::read(path).map_err(|reason| FontError::Read {
        path: path.to_owned(),
        reason,
    })?;
    ttf_parser::Face::parse(&data, 0).map_err(|reason| FontError::Parse {
        path: path.to_owned(),
        reason,
    })?;
    Ok(data)
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

/// Whether Helvetica's WinAnsi encoding (Windows-1252) has `c`.
fn in_win_ansi(c: char) -> bool {
    matches!(c, ' '..='~' | '\u{a0}'..='\u{ff}') || "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ".contains(c)
}

/// Whether `c` belongs to a script whose letters change shape with their neighbours or that
/// runs right to left: printpdf places one glyph after the other, left to right, so a text in
/// it would come out as a row of isolated, reversed letters.
fn needs_shaping(c: char) -> bool {
    matches!(c,
        '\u{0590}'..='\u{08ff}'     // Hebrew, Arabic, Syriac, Thaana, NKo, Samaritan, Mandaic
        | '\u{0900}'..='\u{0dff}'   // Devanagari … Sinhala
        | '\u{0f00}'..='\u{109f}'   // Tibetan, Myanmar
        | '\u{1780}'..='\u{17ff}'   // Khmer
        | '\u{fb1d}'..='\u{fdff}'   // Hebrew and Arabic presentation forms
        | '\u{fe70}'..='\u{feff}'   // Arabic presentation forms B
        | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    // bidi controls
}

/// The characters of `texts` the letter cannot print (sorted, once each); line breaks and
/// tabs are laid out, not printed.
fn unprintable(fonts: &LetterFonts, texts: &[&str]) -> Vec<char> {
    let faces = match fonts {
        LetterFonts::Builtin => None,
        // Checked when loaded: they parse.
        LetterFonts::Embedded { regular, bold } => {
            let regular = ttf_parser::Face::parse(regular, 0).ok();
            let bold = ttf_parser::Face::parse(bold, 0).ok();
            Some((regular, bold))
        }
    };
    let printable = |c: char| match &faces {
        None => in_win_ansi(c),
        Some((regular, bold)) => {
            let has = |face: &Option<ttf_parser::Face>| {
                face.as_ref().is_some_and(|f| f.glyph_index(c).is_some())
            };
            !needs_shaping(c) && !c.is_control() && has(regular) && has(bold)
        }
    };
    let mut missing: Vec<char> = texts
        .iter()
        .flat_map(|text| text.chars())
        .filter(|c| !matches!(c, '\n' | '\r' | '\t') && !printable(*c))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    missing
}

/// The regular and the bold font of a new letter.
fn add_fonts(
    doc: &PdfDocumentReference,
    fonts: &LetterFonts,
) -> Result<(IndirectFontRef, IndirectFontRef), LetterError> {
    Ok(match fonts {
        LetterFonts::Builtin => (
            doc.add_builtin_font(BuiltinFont::Helvetica)?,
            doc.add_builtin_font(BuiltinFont::HelveticaBold)?,
        ),
        LetterFonts::Embedded { regular, bold } => {
            let regular_font = doc.add_external_font(regular.as_slice())?;
            let bold_font = if Arc::ptr_eq(regular, bold) {
                regular_font.clone()
            } else {
                doc.add_external_font(bold.as_slice())?
            };
            (regular_font, bold_font)
        }
    })
}

/// The PDF of a letter to `recipient` (name and postal address, one line each). Refused if
/// any of it cannot be printed: a letter missing letters is worse than none.
pub fn render(
    fonts: &LetterFonts,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<Vec<u8>, LetterError> {
    let unprintable = unprintable(fonts, &[recipient, subject, body]);
    if !unprintable.is_empty() {
        let shown: String = unprintable.iter().take(20).collect();
        return Err(LetterError::Unprintable(format!("“{shown}”")));
    }
    let (doc, page, layer) = PdfDocument::new(subject, Mm(210.0), Mm(297.0), "text");
    let (font, bold) = add_fonts(&doc, fonts)?;
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
    fonts: &LetterFonts,
    outbox: &Path,
    ticket: i64,
    recipient: &str,
    subject: &str,
    body: &str,
) -> Result<NewAttachment, LetterError> {
    let data = render(fonts, recipient, subject, body)?;
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

    /// Debian's DejaVu (`fonts-dejavu-core`, which `scripts/test.sh` installs).
    const DEJAVU: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    const DEJAVU_BOLD: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf";

    fn dejavu() -> LetterFonts {
        LetterFonts::load(Some(Path::new(DEJAVU)), Some(Path::new(DEJAVU_BOLD))).expect("DejaVu")
    }

    /// The text of a PDF as a reader extracts it (poppler's `pdftotext`).
    fn text_of(pdf: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("letter.pdf");
        std::fs::write(&file, pdf).expect("written");
        let out = std::process::Command::new("pdftotext")
            .arg(&file)
            .arg("-")
            .output()
            .expect("pdftotext (poppler-utils) runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 text")
    }

    fn refused(result: Result<Vec<u8>, LetterError>) -> String {
        match result {
            Err(LetterError::Unprintable(chars)) => chars,
            other => panic!("printed: {:?}", other.map(|pdf| pdf.len())),
        }
    }

    #[test]
    fn wrapping_keeps_words_and_paragraphs() {
        assert_eq!(wrap("aa bb cc\n\ndd", 5), ["aa bb", "cc", "", "dd"]);
    }

    #[test]
    fn what_the_builtin_font_cannot_print_is_refused_not_dropped() {
        let builtin = LetterFonts::Builtin;
        let pdf = render(
            &builtin,
            "Frau Müller\nHauptstraße 1",
            "Rückfrage – 5 €",
            "Grüße\n",
        )
        .expect("Windows-1252 prints");
        assert!(text_of(&pdf).contains("Hauptstraße 1"));
        let chars = refused(render(&builtin, "Pan Łukasz", "Dzień dobry", "Шановний"));
        for c in ['Ł', 'ń', 'Ш'] {
            assert!(chars.contains(c), "{chars}");
        }
    }

    #[test]
    fn an_embedded_font_prints_what_it_has_glyphs_for() {
        let fonts = dejavu();
        let pdf = render(
            &fonts,
            "Pan Łukasz Wójcik\nul. Piękna 5, 00-549 Warszawa",
            "Ваш лист [#T-7]",
            "Dzień dobry,\nΕυχαριστούμε για την επιστολή σας.\nШановний пане, дякуємо.",
        )
        .expect("Polish, Cyrillic and Greek print");
        let text = text_of(&pdf);
        for expected in [
            "Pan Łukasz Wójcik",
            "ul. Piękna 5",
            "Ваш лист [#T-7]",
            "Ευχαριστούμε για την επιστολή σας.",
            "Шановний пане, дякуємо.",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text:?}");
        }
        // DejaVu has no CJK glyphs; it has Arabic and Hebrew ones, but printpdf would set them
        // unjoined and left to right.
        let chars = refused(render(&fonts, "山田太郎", "Re", "שלום مرحبا"));
        for c in ['山', 'ש', 'م'] {
            assert!(chars.contains(c), "{chars}");
        }
        assert!(!chars.contains(' '), "{chars}");
    }

    #[test]
    fn a_font_that_is_missing_or_no_font_is_refused_at_start() {
        assert!(matches!(
            LetterFonts::load(Some(Path::new("/nonexistent/font.ttf")), None),
            Err(FontError::Read { .. })
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let bogus = dir.path().join("bogus.ttf");
        std::fs::write(&bogus, b"not a font at all").expect("written");
        let err = LetterFonts::load(Some(&bogus), None).expect_err("not a font");
        assert!(err.to_string().contains("bogus.ttf"), "{err}");
        // No regular face: the built-in font; a regular face alone serves as bold too.
        assert!(matches!(
            LetterFonts::load(None, None),
            Ok(LetterFonts::Builtin)
        ));
        match LetterFonts::load(Some(Path::new(DEJAVU)), None) {
            Ok(LetterFonts::Embedded { regular, bold }) => assert!(Arc::ptr_eq(&regular, &bold)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_letters_get_more_pages() {
        let body = "word ".repeat(5000);
        for fonts in [LetterFonts::Builtin, dejavu()] {
            let pdf = render(
                &fonts,
                "Erika Mustermann\nHauptstr. 1",
                "Your letter [#T-1]",
                &body,
            )
            .expect("renders");
            let pages = text_of(&pdf).matches('\u{c}').count();
            assert!(pages > 1, "{pages} page(s)");
        }
    }
}
