//! Reading YAML or JSON documents (manifests, programs) into JSON values.

use std::path::Path;

use serde_json::Value;

/// Largest manifest or program file accepted: these are hand-written, so anything
/// larger is a mistake or an attack.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Why a document could not be read. The messages leave the path out: callers name the
/// file in their own context (a manifest, a program field).
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("file is {bytes} bytes; the limit is {MAX_DOCUMENT_BYTES}")]
    TooLarge { bytes: u64 },
    // Boxed: the YAML parser's error is large and this travels in every `Result`.
    #[error("invalid YAML: {0}")]
    Yaml(#[source] Box<serde_saphyr::Error>),
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("unsupported extension (use .yaml, .yml or .json)")]
    Extension,
}

/// Reads `path` as YAML (`.yaml`, `.yml`) or JSON (`.json`).
pub fn read_document(path: &Path) -> Result<Value, DocumentError> {
    let meta = std::fs::metadata(path).map_err(DocumentError::Read)?;
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge { bytes: meta.len() });
    }
    let text = std::fs::read_to_string(path).map_err(DocumentError::Read)?;
    parse_document(&text, path)
}

/// Parses `text` by the extension of `path`.
pub fn parse_document(text: &str, path: &Path) -> Result<Value, DocumentError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            serde_saphyr::from_str::<Value>(text).map_err(|e| DocumentError::Yaml(Box::new(e)))
        }
        Some("json") => serde_json::from_str(text).map_err(DocumentError::Json),
        _ => Err(DocumentError::Extension),
    }
}
