//! Per-node credentials, as k3s' node passwords: a node presents the join token, its name and a
//! password it generated; the server keeps only the password's hash, in the store (so every
//! server sharing the store knows it), and refuses a name already claimed with another password
//! until its Node is deleted. The node then authenticates as `node:<name>:<password>`.

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_store::Store;

use crate::error::{ApiError, Result};

/// The bootstrap endpoint: `POST` with the join token and `{"nodeName", "password"}`.
pub const BOOTSTRAP_PATH: &str = "/skiff/v1/node-credentials";
/// Where the hashes live: Secrets in kube-system, as k3s' `<node>.node-password.k3s` Secrets
/// (immutable; `kubectl delete secret` of one frees its node's name, as deleting the Node does).
const KEY_PREFIX: &str = "/registry/secrets/kube-system/";
/// The namespace of those Secrets.
pub const NAMESPACE: &str = "kube-system";
const NAME_SUFFIX: &str = ".node-password.skiff";

/// The node whose credentials the Secret `name` (in kube-system) holds, if it is such a record.
pub fn node_of_record(name: &str) -> Option<&str> {
    name.strip_suffix(NAME_SUFFIX).filter(|n| !n.is_empty())
}
/// A password shorter than this is refused: it would be guessable.
const MIN_PASSWORD_LEN: usize = 16;

/// The store key of `node`'s credentials.
fn key(node: &str) -> String {
    format!("{KEY_PREFIX}{node}{NAME_SUFFIX}")
}

/// The hash kept for a password (passwords are random, so a plain sha256 suffices).
pub fn password_hash(password: &str) -> String {
    skiff_api::join_token::sha256_hex(password.as_bytes())
}

fn record(node: &str, hash: &str) -> Result<Bytes> {
    use base64::Engine;
    let value = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": format!("{node}{NAME_SUFFIX}"),
            "namespace": "kube-system",
            "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": crate::registry::now(),
            "labels": {"skiff.io/node": node},
        },
        "type": "skiff.io/node-password",
        "immutable": true,
        "data": {"hash": base64::engine::general_purpose::STANDARD.encode(hash)},
    });
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(format!("cannot encode the node credentials: {e}")))
}

fn hash_of(value: &[u8]) -> Result<String> {
    use base64::Engine;
    let object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("stored node credentials are not JSON: {e}")))?;
    object
        .pointer("/data/hash")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::internal("stored node credentials hold no hash"))
}

/// The password hash stored for `node`, if it has credentials.
pub async fn stored_hash(store: &dyn Store, node: &str) -> Result<Option<String>> {
    match store.get(&key(node)).await? {
        Some(kv) => hash_of(&kv.value).map(Some),
        None => Ok(None),
    }
}

fn refused(node: &str) -> ApiError {
    ApiError::conflict_message(
        "nodes",
        node,
        format!(
            "node {node:?} is already registered with other credentials (another machine uses \
             this name, or this one lost its <data-dir>/node-password): start the agent with \
             another --node-name, or free the name by deleting the node (kubectl delete node \
             {node}), which deletes its credentials"
        ),
    )
}

/// Claims `node` for `password`: records its hash if the name is free; succeeds again for the
/// same password (an agent restarting); 409 Conflict if it was claimed with another one.
pub async fn claim(store: &dyn Store, node: &str, password: &str) -> Result<()> {
    let problems = skiff_api::validation::is_dns1123_subdomain(node);
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid node name {node:?}: {}",
            problems.join("; ")
        )));
    }
    if password.len() < MIN_PASSWORD_LEN {
        return Err(ApiError::bad_request(format!(
            "the node password must have at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let hash = password_hash(password);
    let existing = match store.create(&key(node), record(node, &hash)?).await {
        Ok(_) => {
            tracing::info!(node, "node credentials created");
            return Ok(());
        }
        Err(skiff_store::Error::AlreadyExists(_)) => stored_hash(store, node).await?,
        Err(e) => return Err(e.into()),
    };
    match existing {
        Some(stored) if stored == hash => Ok(()),
        Some(_) => Err(refused(node)),
        // Deleted in between: claim it afresh.
        None => match store.create(&key(node), record(node, &hash)?).await {
            Ok(_) => Ok(()),
            Err(skiff_store::Error::AlreadyExists(_)) => Err(refused(node)),
            Err(e) => Err(e.into()),
        },
    }
}

/// Deletes `node`'s credentials (its Node was deleted), freeing the name. Missing is fine.
pub async fn release(store: &dyn Store, node: &str) -> Result<()> {
    match store.delete(&key(node), None).await {
        Ok(_) => {
            tracing::info!(node, "node credentials deleted with the node");
            Ok(())
        }
        Err(skiff_store::Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The bootstrap request's body.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapRequest {
    pub node_name: String,
    pub password: String,
}

/// Parses a bootstrap request body.
pub fn parse_request(body: &[u8]) -> Result<BootstrapRequest> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the node credentials request is not {{\"nodeName\": ..., \"password\": ...}}: {e}"
        ))
    })
}

/// The bootstrap response: who the node now is.
pub fn response(node: &str) -> Value {
    json!({
        "nodeName": node,
        "user": format!("system:node:{node}"),
        "groups": ["system:nodes", "system:authenticated"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_is_claimed_once_and_freed_by_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = skiff_store::SqliteStore::open(&dir.path().join("db/state.db")).expect("store");
        let pw_a = "a".repeat(32);
        let pw_b = "b".repeat(32);
        claim(store.as_ref(), "n1", &pw_a).await.expect("claims");
        claim(store.as_ref(), "n1", &pw_a)
            .await
            .expect("the same password again");
        let err = claim(store.as_ref(), "n1", &pw_b)
            .await
            .expect_err("another password");
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("kubectl delete node n1"),
            "{}",
            err.message
        );
        assert_eq!(
            stored_hash(store.as_ref(), "n1").await.expect("read"),
            Some(password_hash(&pw_a))
        );
        release(store.as_ref(), "n1").await.expect("released");
        release(store.as_ref(), "n1").await.expect("twice is fine");
        claim(store.as_ref(), "n1", &pw_b)
            .await
            .expect("a freed name is claimed again");
        assert_eq!(
            claim(store.as_ref(), "Bad_Name", &pw_a)
                .await
                .expect_err("invalid")
                .code,
            400
        );
        assert_eq!(
            claim(store.as_ref(), "n2", "short")
                .await
                .expect_err("short")
                .code,
            400
        );
        // Only the hash is stored.
        let kv = store.get(&key("n1")).await.expect("get").expect("present");
        let text = String::from_utf8_lossy(&kv.value);
        assert!(!text.contains(&pw_b));
    }
}
