//! Fax and letter inboxes: a directory per service address, checked every poll interval.
//! Each TIFF or PDF file dropped there (optionally with `<name>.json` beside it giving
//! `sender`, `contact` and `subject`) becomes a ticket with the document attached; once the
//! ticket is committed the files move to `processed/` inside the inbox. A crash in between
//! leaves the file in place; its source key (`<kind>:<address>:<file name>:<SHA-256>`) tells
//! the store it is a ticket already, and it is only moved.
//!
//! A file is taken only when its size was the same at two checks in a row, so a document still
//! being written is left for the next round; one that cannot be taken (unreadable, or not
//! movable to `processed/`) is logged and tried again next round while the others go on. A
//! document that is not a readable TIFF or PDF still becomes a ticket (nothing is lost), with a
//! note saying so; so does one larger than `channels.max_attachment_bytes`, which is not held
//! in memory beyond that limit nor attached (the note points to `processed/`). A document whose name is taken
//! in `processed/` by an earlier one is moved there under a name with its content hash.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::config::{DirectoryConfig, DirectoryKind};
use super::Channels;
use crate::language;
use crate::store::{NewAttachment, NewWritten, WrittenAddress};

/// Largest side file read.
const MAX_SIDE_FILE: u64 = 64 * 1024;

/// What the side file may say.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SideFile {
    sender: Option<String>,
    contact: Option<String>,
    subject: Option<String>,
    text: Option<String>,
}

/// The kind of document `data` is, if it is one we take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    Pdf,
    Tiff,
}

impl Document {
    /// By file extension.
    pub fn of_name(path: &Path) -> Option<Document> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "pdf" => Some(Document::Pdf),
            "tif" | "tiff" => Some(Document::Tiff),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Document::Pdf => "application/pdf",
            Document::Tiff => "image/tiff",
        }
    }

    /// Why `data` is not a readable document of this kind, if it is not.
    pub fn check(self, data: &[u8]) -> Option<&'static str> {
        match self {
            Document::Pdf => {
                let tail = &data[data.len().saturating_sub(1024)..];
                if !data.starts_with(b"%PDF-") {
                    Some("the file is not a PDF (no %PDF- header)")
                } else if !tail.windows(5).any(|w| w == b"%%EOF") {
                    Some("the PDF is truncated (no %%EOF trailer)")
                } else {
                    None
                }
            }
            Document::Tiff => {
                let header_ok =
                    data.len() >= 8 && (data.starts_with(b"II*\0") || data.starts_with(b"MM\0*"));
                if !header_ok {
                    return Some("the file is not a TIFF (bad header)");
                }
                let offset = if data.starts_with(b"II") {
                    u32::from_le_bytes([data[4], data[5], data[6], data[7]])
                } else {
                    u32::from_be_bytes([data[4], data[5], data[6], data[7]])
                } as usize;
                (offset < 8 || offset.saturating_add(2) > data.len())
                    .then_some("the TIFF is truncated (its first directory lies outside the file)")
            }
        }
    }
}

/// Checks `config.inbox` every poll interval until `stop`.
pub async fn watch(channels: Channels, config: DirectoryConfig, mut stop: watch::Receiver<bool>) {
    let mut sizes: HashMap<PathBuf, u64> = HashMap::new();
    loop {
        if let Err(e) = scan(&channels, &config, &mut sizes).await {
            tracing::warn!(inbox = %config.inbox.display(), error = %e, "inbox directory not read");
        }
        tokio::select! {
            _ = tokio::time::sleep(channels.config().poll_interval()) => {}
            _ = stop.changed() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no {kind} service address `{address}` exists")]
    NoAddress { kind: &'static str, address: String },
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
}

async fn scan(
    channels: &Channels,
    config: &DirectoryConfig,
    sizes: &mut HashMap<PathBuf, u64>,
) -> Result<(), ScanError> {
    let kind = config.kind.as_str();
    let address = channels
        .store()
        .service_address(kind, &config.address)
        .await?
        .ok_or_else(|| ScanError::NoAddress {
            kind,
            address: config.address.clone(),
        })?;
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir(&config.inbox)? {
        // An entry gone since the listing is no document.
        let Ok((path, meta)) = entry.and_then(|e| Ok((e.path(), e.metadata()?))) else {
            continue;
        };
        let Some(document) = Document::of_name(&path).filter(|_| meta.is_file()) else {
            continue;
        };
        let size = meta.len();
        seen.insert(path.clone(), size);
        if sizes.get(&path) != Some(&size) {
            continue;
        }
        // A file that cannot be taken (unreadable, not movable) stays for the next round; the
        // others go on.
        match take(channels, config, &address, &path, document).await {
            Ok(()) => {
                seen.remove(&path);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "inbox document not taken; tried again next round")
            }
        }
    }
    *sizes = seen;
    Ok(())
}

/// Makes the ticket of one document (stable in size since the last round) and moves the
/// document and its side file to `processed/`.
async fn take(
    channels: &Channels,
    config: &DirectoryConfig,
    address: &WrittenAddress,
    path: &Path,
    document: Document,
) -> Result<(), ScanError> {
    let kind = config.kind.as_str();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let side_path = path.with_extension("json");
    let mut notes = Vec::new();
    // Not followed if a link, and only a plain file: a FIFO of that name would block the read
    // for ever, a link to /dev/zero never end it.
    let mut side = match std::fs::symlink_metadata(&side_path) {
        Ok(meta) if !meta.is_file() => {
            tracing::warn!(file = %side_path.display(), "side file is no plain file; ignored");
            notes.push(format!(
                "the side file {} is no plain file (a link, a pipe, a directory); it was ignored",
                side_path.display()
            ));
            SideFile::default()
        }
        Ok(meta) if meta.len() > MAX_SIDE_FILE => {
            tracing::warn!(file = %side_path.display(), size = meta.len(), "side file too large; ignored");
            notes.push(format!(
                "the side file {} has {} bytes, more than the {MAX_SIDE_FILE} read; it was ignored",
                side_path.display(),
                meta.len()
            ));
            SideFile::default()
        }
        // Unreadable (a directory of its name, no permission) or not JSON: the document goes on
        // without it.
        Ok(_) => std::fs::File::open(&side_path)
            .and_then(|file| {
                // Read no more than the limit, should the file have grown since.
                let mut bytes = Vec::new();
                file.take(MAX_SIDE_FILE).read_to_end(&mut bytes)?;
                Ok(bytes)
            })
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<SideFile>(&bytes).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                tracing::warn!(file = %side_path.display(), error = %e, "side file not readable as JSON; ignored");
                notes.push(format!("the side file {} was not readable as JSON: {e}", side_path.display()));
                SideFile::default()
            }),
        Err(_) => SideFile::default(),
    };
    // One pass: up to the limit into memory, the rest of a larger document only hashed.
    let limit = channels.config().max_attachment_bytes;
    let mut file = std::fs::File::open(path)?;
    let mut data = Vec::new();
    (&mut file).take(limit as u64 + 1).read_to_end(&mut data)?;
    let mut hasher = Sha256::new();
    hasher.update(&data);
    let too_large = data.len() > limit;
    let mut size = data.len() as u64;
    if too_large {
        data = Vec::new();
        size += std::io::copy(&mut file, &mut hasher)?;
    }
    let hash = hex::encode(hasher.finalize());
    let done = config.inbox.join("processed");
    let target = unused_name(&done, path, &hash);
    let attachments = if too_large {
        tracing::warn!(file = %path.display(), size, limit, "document too large to attach");
        notes.push(format!(
            "{name} has {size} bytes, more than the {limit} kept: it is not attached; find it as {} in the {kind} inbox",
            target.strip_prefix(&config.inbox).unwrap_or(&target).display()
        ));
        Vec::new()
    } else {
        let problem = document.check(&data);
        if let Some(problem) = problem {
            tracing::warn!(file = %path.display(), problem, "document accepted with a problem");
            notes.push(format!("{name}: {problem}"));
        }
        vec![NewAttachment {
            filename: name.clone(),
            content_type: match problem {
                Some(_) => "application/octet-stream".into(),
                None => document.content_type().into(),
            },
            data,
        }]
    };
    if let Some(length) = side.contact.as_ref().map(String::len) {
        if length > super::MAX_INDEXED {
            tracing::warn!(file = %side_path.display(), length, "contact in the side file too long; ignored");
            notes.push(format!(
                "the side file's contact has {length} bytes, more than the {} kept; it was ignored",
                super::MAX_INDEXED
            ));
            side.contact = None;
        }
    }
    let sender = side.sender.clone().or_else(|| side.contact.clone());
    let text = side
        .text
        .clone()
        .unwrap_or_else(|| format!("{} received: {name}", label(config.kind)));
    let new = NewWritten {
        tenant: address.tenant,
        service_address: address.id,
        mailbox: address.mailbox,
        queue: address.queue,
        channel: kind,
        source_key: format!("{kind}:{}:{name}:{hash}", address.id),
        sender_name: sender.clone(),
        contact: side.contact.clone(),
        identity_kind: match config.kind {
            DirectoryKind::Fax => "phone",
            DirectoryKind::Letter => "postal",
        },
        subject: side.subject.clone().unwrap_or_else(|| {
            format!(
                "{} from {}",
                label(config.kind),
                sender.as_deref().unwrap_or("unknown sender")
            )
        }),
        language: side
            .text
            .as_deref()
            .and_then(language::detect)
            .map(str::to_owned)
            .or_else(|| address.language.clone()),
        text,
        attachments,
        notes,
        first_answer_due: address.first_answer_due(crate::store::now_ms()),
        ..NewWritten::default()
    };
    channels.accept(&new).await?;
    std::fs::create_dir_all(&done)?;
    std::fs::rename(path, &target)?;
    if side_path.exists() {
        std::fs::rename(&side_path, target.with_extension("json"))?;
    }
    Ok(())
}

/// Where `path` goes in `done` (its side file beside it, as `.json`): under its own name, or —
/// if an earlier document or side file took that name — with the start of its content hash added
/// (`scan.3fa4…c2.pdf`), so nothing overwrites another's. (The same name with the same content is
/// the same document: it may overwrite.)
fn unused_name(done: &Path, path: &Path, hash: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default();
    let plain = done.join(name);
    if !plain.exists() && !plain.with_extension("json").exists() {
        return plain;
    }
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let tag = &hash[..hash.len().min(12)];
    match path.extension() {
        Some(ext) => done.join(format!("{stem}.{tag}.{}", ext.to_string_lossy())),
        None => done.join(format!("{stem}.{tag}")),
    }
}

fn label(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::Fax => "Fax",
        DirectoryKind::Letter => "Letter",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_checked() {
        assert_eq!(Document::Pdf.check(b"%PDF-1.4 ... %%EOF\n"), None);
        assert!(Document::Pdf.check(b"%PDF-1.4 truncated").is_some());
        assert!(Document::Pdf.check(b"hello").is_some());
        assert_eq!(Document::Tiff.check(b"II*\0\x08\0\0\0\0\0"), None);
        assert!(Document::Tiff.check(b"II*\0\xff\0\0\0").is_some());
        assert!(Document::Tiff.check(b"GIF89a").is_some());
        assert!(Document::Tiff.check(b"").is_some());
        assert_eq!(
            Document::of_name(Path::new("a/Fax.TIFF")),
            Some(Document::Tiff)
        );
        assert_eq!(Document::of_name(Path::new("a/x.json")), None);
    }
}
