//! Reading YAML or JSON documents (manifests, programs) into JSON values.

use std::path::Path;

use serde_json::Value;

/// Largest manifest or program file accepted: these are hand-written, so anything
/// larger is a mistake or an attack.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

/// Reads `path` as YAML (`.yaml`, `.yml`) or JSON (`.json`).
pub fn read_document(path: &Path) -> Result<Value, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.len() > MAX_DOCUMENT_BYTES {
        return Err(format!(
            "file is {} bytes; the limit is {MAX_DOCUMENT_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    parse_document(&text, path)
}

/// Parses `text` by the extension of `path`.
pub fn parse_document(text: &str, path: &Path) -> Result<Value, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => {
            serde_saphyr::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
        }
        Some("json") => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}")),
        _ => Err("unsupported extension (use .yaml, .yml or .json)".into()),
    }
}
