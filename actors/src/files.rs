//! Uploaded files, shared by chat attachments (`crate::chat`) and ticket attachments
//! (`crate::crm::attachments`): the checks an upload passes (declared type among the accepted
//! ones: else 415 naming `Content-Type`; size: else 413 naming `body`; not empty), the file
//! store under the data directory (random ids, written off the async thread), safe file names,
//! and the download response (stored type, `nosniff`, `Content-Disposition`).
//!
//! The body is raw: `Content-Type` is the file's type and the name comes from the route's
//! `name` query parameter, so a client needs no multipart encoder (`curl --data-binary @f`).

use actix_web::{web, HttpRequest, HttpResponse};
use std::path::{Path, PathBuf};

/// Why an upload or download failed: an HTTP status, a message and the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// HTTP status (413, 415, 400, 404, 500, 503).
    pub status: u16,
    /// What is wrong.
    pub error: String,
    /// The field at fault (`Content-Type`, `body`, …), if one.
    pub field: Option<String>,
}

impl FileError {
    fn new(status: u16, field: Option<&str>, error: String) -> FileError {
        FileError {
            status,
            error,
            field: field.map(str::to_string),
        }
    }
}

impl From<FileError> for crate::contact::ContactError {
    fn from(e: FileError) -> Self {
        crate::contact::ContactError {
            status: e.status,
            error: e.error,
            field: e.field,
        }
    }
}

impl From<FileError> for crate::crm::ApiError {
    fn from(e: FileError) -> Self {
        crate::crm::ApiError {
            status: e.status,
            error: e.error,
            field: e.field,
            contact_id: None,
            merge: None,
        }
    }
}

/// What an upload may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits<'a> {
    /// Largest accepted size in bytes.
    pub max_bytes: usize,
    /// Accepted MIME types (lower case, without parameters).
    pub types: &'a [String],
}

/// The request's `Content-Type` without parameters, lower case (empty when absent).
pub fn mime_of(req: &HttpRequest) -> String {
    req.headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Checks the declared type and reads the body within the size limit. Returns the type and
/// the bytes.
pub async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    limits: Limits<'_>,
) -> Result<(String, web::Bytes), FileError> {
    let mime = mime_of(req);
    if !limits.types.contains(&mime) {
        return Err(FileError::new(
            415,
            Some("Content-Type"),
            format!(
                "attachment type `{mime}` is not accepted; accepted: {}",
                limits.types.join(", ")
            ),
        ));
    }
    let max = limits.max_bytes;
    let too_large = || {
        FileError::new(
            413,
            Some("body"),
            format!("attachment larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get("Content-Length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let bytes = payload
        .to_bytes_limited(max)
        .await
        .map_err(|_| too_large())?
        .map_err(|e| FileError::new(400, Some("body"), e.to_string()))?;
    if bytes.is_empty() {
        return Err(FileError::new(400, Some("body"), "empty file".into()));
    }
    Ok((mime, bytes))
}

/// A random id of 12 bytes, hex: the stored file's name (never the uploader's).
pub fn random_id() -> String {
    format!(
        "{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}

/// A file name safe to echo back and to quote in `Content-Disposition`: letters, digits,
/// `.`, `-`, `_` (anything else becomes `_`); at most 100 characters; `file` when nothing is
/// left.
pub fn clean_name(n: Option<&str>) -> String {
    let s: String = n
        .unwrap_or("file")
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    if s.trim_matches(['.', '_']).is_empty() {
        "file".into()
    } else {
        s
    }
}

/// Writes `bytes` to `data_dir/rel` (creating folders) on the blocking pool. A failure is
/// logged and answered 500 without the path.
pub async fn store(data_dir: &Path, rel: &str, bytes: web::Bytes) -> Result<(), FileError> {
    let file = data_dir.join(rel);
    web::block(move || {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, &bytes)
    })
    .await
    .map_err(|_| FileError::new(503, None, "busy; try again".into()))?
    .map_err(|e| {
        tracing::error!(error = %e, "attachment not stored");
        FileError::new(500, None, "attachment could not be stored".into())
    })
}

/// Reads `data_dir/rel` on the blocking pool (404 naming `field` when it is gone).
pub async fn load(data_dir: &Path, rel: &str, field: &str) -> Result<Vec<u8>, FileError> {
    let file: PathBuf = data_dir.join(rel);
    web::block(move || std::fs::read(file))
        .await
        .map_err(|_| FileError::new(503, None, "busy; try again".into()))?
        .map_err(|_| FileError::new(404, Some(field), "no attachment file".into()))
}

/// Removes `data_dir/rel` (a file already gone is fine; other failures are logged).
pub async fn remove(data_dir: &Path, rel: &str) {
    let file: PathBuf = data_dir.join(rel);
    let r = web::block(move || match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    })
    .await;
    if let Ok(Err(e)) = r {
        tracing::warn!(error = %e, "attachment file not removed");
    }
}

/// How a download is presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// `inline` (shown in the page where the browser can).
    Inline,
    /// `attachment` (saved).
    Attachment,
}

/// The download response: the stored type, `X-Content-Type-Options: nosniff` and a
/// `Content-Disposition` with the (already clean) name.
pub fn serve(mime: &str, name: &str, disposition: Disposition, bytes: Vec<u8>) -> HttpResponse {
    let kind = match disposition {
        Disposition::Inline => "inline",
        Disposition::Attachment => "attachment",
    };
    HttpResponse::Ok()
        .content_type(mime.to_string())
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Disposition",
            format!("{kind}; filename=\"{}\"", clean_name(Some(name))),
        ))
        .body(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(Some("report 2024.pdf")), "report_2024.pdf");
        assert_eq!(clean_name(Some("../../etc/passwd")), ".._.._etc_passwd");
        assert_eq!(clean_name(Some("\"x\r\n.txt")), "_x.txt");
        assert_eq!(clean_name(Some("...")), "file");
        assert_eq!(clean_name(None), "file");
        assert_eq!(clean_name(Some(&"a".repeat(300))).len(), 100);
        assert_eq!(random_id().len(), 24);
    }
}
