//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch
//! (lists merged by key where Kubernetes' types declare a merge key: containers by name, ...).
//! OWNER: helper "api-select". Signatures are the contract with the API server; keep them.

/// The patch formats, by their Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
}

/// A patch that is malformed or does not apply; the message says which operation and path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Applies `patch` (raw body) to `original` (the stored object as JSON) of kind `kind` (`Pod`, ...).
pub fn apply(original: &serde_json::Value, patch: &[u8], patch_type: PatchType, kind: &str) -> Result<serde_json::Value, PatchError> {
    let _ = (original, patch, patch_type, kind);
    todo!("api-select helper")
}
