//! How objects are stored: compact JSON without `metadata.resourceVersion`, which is the store's
//! revision and is spliced in when an object is read, without re-parsing it.

use bytes::Bytes;
use skiff_api::kinds::ApiKind;
use skiff_store::{KeyValue, Revision};

use crate::error::ApiError;

const METADATA: &[u8] = b"\"metadata\":{";

/// Serializes an object for storage; its resourceVersion is dropped.
pub fn encode<K: ApiKind>(object: &K) -> Result<Bytes, ApiError> {
    let mut copy = object.clone();
    copy.metadata_mut().resource_version = None;
    serde_json::to_vec(&copy)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode {}: {e}", K::KIND)))
}

/// The stored JSON with `metadata.resourceVersion` set to `revision`.
///
/// Stored objects are written by `encode`, so they start with apiVersion and kind (fixed strings
/// that cannot contain `"metadata":{`) and their metadata is never empty (it has at least a
/// name and a uid): the first `"metadata":{` is the object's own and a comma can follow the
/// inserted field.
pub fn with_revision(stored: &[u8], revision: Revision) -> Vec<u8> {
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let mut out = Vec::with_capacity(stored.len() + field.len() + 1);
    match find(stored, METADATA) {
        Some(at) => {
            let insert = at + METADATA.len();
            out.extend_from_slice(&stored[..insert]);
            out.extend_from_slice(field.as_bytes());
            if stored.get(insert) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&stored[insert..]);
        }
        None => out.extend_from_slice(stored),
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The object stored in `kv`, with its resourceVersion.
pub fn decode<K: ApiKind>(kv: &KeyValue) -> Result<K, ApiError> {
    let mut object: K = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::internal(format!("stored object {} cannot be decoded: {e}", kv.key))
    })?;
    object.metadata_mut().resource_version = Some(kv.mod_revision.to_string());
    Ok(object)
}

/// The stored object of `kv` as JSON bytes with its resourceVersion.
pub fn read(kv: &KeyValue) -> Vec<u8> {
    with_revision(&kv.value, kv.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn splices_resource_version_into_metadata() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("a".into());
        pod.metadata.uid = Some("u".into());
        pod.metadata.resource_version = Some("99".into());
        let stored = encode(&pod).expect("encode");
        assert!(!String::from_utf8_lossy(&stored).contains("resourceVersion"));
        let read = with_revision(&stored, 42);
        let value: serde_json::Value = serde_json::from_slice(&read).expect("valid JSON");
        assert_eq!(value["metadata"]["resourceVersion"], "42");
        assert_eq!(value["metadata"]["name"], "a");
        assert_eq!(value["kind"], "Pod");
    }

    #[test]
    fn empty_metadata_stays_valid_json() {
        let read = with_revision(br#"{"apiVersion":"v1","kind":"Pod","metadata":{}}"#, 7);
        let value: serde_json::Value = serde_json::from_slice(&read).expect("valid JSON");
        assert_eq!(value["metadata"]["resourceVersion"], "7");
    }
}
