//! Authentication: the admin token and kubeconfig written at first start, the node join token
//! (`<data-dir>/node-token`), and the per-node credentials nodes obtain with it.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use skiff_api::join_token::{self, JoinToken};
use skiff_store::Store;

use crate::error::ApiError;
use crate::node_credentials;

/// How long a node's credential hash read from the store is trusted before it is read again:
/// deleting a node's credentials takes effect within this time on every server.
const NODE_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a random token: {0}")]
    Random(String),
    #[error("the token file {path} is empty or malformed; remove it to generate a new one")]
    Malformed { path: PathBuf },
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub kind: UserKind,
}

/// The kinds of users the server knows, which the authorizer tells apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserKind {
    /// The admin token: everything is allowed.
    Admin,
    /// The node join token: may only obtain node credentials.
    Join,
    /// A node's own credentials, for the named node.
    Node(String),
}

impl User {
    pub fn admin() -> User {
        User {
            name: "admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
            kind: UserKind::Admin,
        }
    }

    /// The holder of the join token, named as Kubernetes names bootstrap-token users.
    pub fn join() -> User {
        User {
            name: "system:bootstrap:skiff-join".into(),
            groups: vec!["system:bootstrappers".into(), "system:authenticated".into()],
            kind: UserKind::Join,
        }
    }

    /// Node `node`, named as Kubernetes' Node authorizer expects.
    pub fn node(node: &str) -> User {
        User {
            name: format!("system:node:{node}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            kind: UserKind::Node(node.to_string()),
        }
    }
}

/// The tokens the server accepts.
pub struct Authenticator {
    admin_token: String,
    join_token: JoinToken,
    store: Arc<dyn Store>,
    /// Node name -> (sha256 of its password, when it was read from the store).
    node_hashes: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No secrets in logs.
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Loads the admin token from `<data-dir>/token` and the join token from
    /// `<data-dir>/node-token`, generating them at first start. The join token carries the hash
    /// of `ca_pem` (the CA certificate as the server serves it); if the CA changed, the token
    /// file is rewritten with the new hash and the same secret.
    pub fn load_or_create(
        data_dir: &Path,
        ca_pem: &str,
        store: Arc<dyn Store>,
    ) -> Result<Self, AuthError> {
        let admin_token = load_or_create_secret(&data_dir.join("token"))?;
        let join_token = load_or_create_join_token(&data_dir.join("node-token"), ca_pem)?;
        Ok(Authenticator {
            admin_token,
            join_token,
            store,
            node_hashes: Mutex::new(HashMap::new()),
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The join token to give `skiff agent --token`.
    pub fn join_token(&self) -> String {
        self.join_token.to_string()
    }

    /// The user behind an `Authorization` header value; None if the token is unknown.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<User>, ApiError> {
        let Some(header) = authorization else {
            return Ok(None);
        };
        let Some((scheme, token)) = header.split_once(' ') else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let token = token.trim();
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(Some(User::admin()));
        }
        if constant_time_eq(token.as_bytes(), self.join_token.credential.as_bytes())
            || constant_time_eq(token.as_bytes(), self.join_token.to_string().as_bytes())
        {
            return Ok(Some(User::join()));
        }
        let Some((node, password)) = join_token::parse_node_bearer_token(token) else {
            return Ok(None);
        };
        let Some(hash) = self.node_hash(node).await? else {
            return Ok(None);
        };
        let presented = node_credentials::password_hash(password);
        if constant_time_eq(presented.as_bytes(), hash.as_bytes()) {
            Ok(Some(User::node(node)))
        } else {
            Ok(None)
        }
    }

    /// The stored password hash of `node`, from the cache when fresh.
    async fn node_hash(&self, node: &str) -> Result<Option<String>, ApiError> {
        if let Ok(cache) = self.node_hashes.lock() {
            if let Some((hash, at)) = cache.get(node) {
                if at.elapsed() < NODE_CACHE_TTL {
                    return Ok(Some(hash.clone()));
                }
            }
        }
        let hash = node_credentials::stored_hash(self.store.as_ref(), node).await?;
        if let Ok(mut cache) = self.node_hashes.lock() {
            match &hash {
                Some(h) => {
                    cache.insert(node.to_string(), (h.clone(), Instant::now()));
                }
                None => {
                    cache.remove(node);
                }
            }
        }
        Ok(hash)
    }

    /// Forgets what this server cached about `node`'s credentials (they were just deleted or
    /// claimed).
    pub fn forget_node(&self, node: &str) {
        if let Ok(mut cache) = self.node_hashes.lock() {
            cache.remove(node);
        }
    }

    /// Forgets every cached node credential (some were deleted, which ones is not known).
    pub fn forget_nodes(&self) {
        if let Ok(mut cache) = self.node_hashes.lock() {
            cache.clear();
        }
    }
}

fn load_or_create_secret(path: &Path) -> Result<String, AuthError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(AuthError::Malformed {
                    path: path.to_path_buf(),
                });
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = random_token()?;
            write_private(path, &format!("{token}\n"))?;
            Ok(token)
        }
        Err(source) => Err(AuthError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The join token in `path`, created at first start; its secret never changes, its CA hash
/// follows the CA.
fn load_or_create_join_token(path: &Path, ca_pem: &str) -> Result<JoinToken, AuthError> {
    let secret = match fs::read_to_string(path) {
        Ok(text) => {
            let parsed = JoinToken::parse(&text).map_err(|_| AuthError::Malformed {
                path: path.to_path_buf(),
            })?;
            match parsed.credential.split_once(':') {
                Some(("server", secret)) if secret.len() >= 16 => secret.to_string(),
                _ => {
                    return Err(AuthError::Malformed {
                        path: path.to_path_buf(),
                    })
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => random_token()?,
        Err(source) => {
            return Err(AuthError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let token = JoinToken::new(ca_pem.as_bytes(), &secret);
    let text = format!("{token}\n");
    if fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        write_private(path, &text)?;
    }
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, contents: &str) -> Result<(), AuthError> {
    crate::tls::write_private(path, contents).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `<data-dir>/admin.kubeconfig` for `server_url` and returns its path.
pub fn write_admin_kubeconfig(
    data_dir: &Path,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> Result<PathBuf, AuthError> {
    let path = data_dir.join("admin.kubeconfig");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\n\
         contexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\ncurrent-context: skiff\n\
         users:\n- name: admin\n  user:\n    token: {token}\npreferences: {{}}\n"
    );
    write_private(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn store(dir: &Path) -> Arc<dyn Store> {
        skiff_store::SqliteStore::open(&dir.join("db/state.db")).expect("store")
    }

    #[tokio::test]
    async fn tokens_are_stable_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let a = Authenticator::load_or_create(dir.path(), CA, s.clone()).expect("create");
        let b = Authenticator::load_or_create(dir.path(), CA, s.clone()).expect("load");
        assert_eq!(a.admin_token(), b.admin_token());
        assert_eq!(a.admin_token().len(), 64);
        assert_eq!(a.join_token(), b.join_token());
        assert_ne!(a.admin_token(), a.join_token());
        let auth = |h: &str| {
            let h = h.to_string();
            let a = &a;
            async move { a.authenticate(Some(&h)).await.expect("no store error") }
        };
        assert_eq!(
            auth(&format!("Bearer {}", a.admin_token())).await,
            Some(User::admin())
        );
        assert_eq!(auth("Bearer wrong").await, None);
        assert_eq!(auth(&format!("Basic {}", a.admin_token())).await, None);
        assert_eq!(a.authenticate(None).await.expect("ok"), None);
        // The join token, whole or as the credential the agent presents.
        let join = JoinToken::parse(&a.join_token()).expect("parses");
        assert!(join.matches_ca(CA.as_bytes()));
        assert_eq!(
            auth(&format!("Bearer {}", a.join_token())).await,
            Some(User::join())
        );
        assert_eq!(
            auth(&format!("Bearer {}", join.credential)).await,
            Some(User::join())
        );
    }

    #[tokio::test]
    async fn the_join_token_file_is_private_and_follows_the_ca() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let a = Authenticator::load_or_create(dir.path(), CA, s.clone()).expect("create");
        let path = dir.path().join("node-token");
        let mode = fs::metadata(&path)
            .expect("node-token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_to_string(&path).expect("read").trim(),
            a.join_token()
        );
        let other_ca = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n";
        let b = Authenticator::load_or_create(dir.path(), other_ca, s).expect("load");
        let (ta, tb) = (
            JoinToken::parse(&a.join_token()).expect("a"),
            JoinToken::parse(&b.join_token()).expect("b"),
        );
        assert_eq!(ta.credential, tb.credential, "the secret is kept");
        assert!(tb.matches_ca(other_ca.as_bytes()));
        assert_eq!(
            fs::read_to_string(&path).expect("read").trim(),
            b.join_token()
        );
    }

    #[tokio::test]
    async fn node_tokens_are_checked_against_the_stored_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = store(dir.path());
        let a = Authenticator::load_or_create(dir.path(), CA, s.clone()).expect("create");
        let token = join_token::node_bearer_token("n1", "pw-0123456789abcdef");
        let header = format!("Bearer {token}");
        assert_eq!(a.authenticate(Some(&header)).await.expect("ok"), None);
        node_credentials::claim(s.as_ref(), "n1", "pw-0123456789abcdef")
            .await
            .expect("claimed");
        assert_eq!(
            a.authenticate(Some(&header)).await.expect("ok"),
            Some(User::node("n1"))
        );
        let wrong = join_token::node_bearer_token("n1", "pw-fedcba9876543210");
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {wrong}")))
                .await
                .expect("ok"),
            None
        );
        // Deleted credentials stop working once the cache is told (or after its TTL).
        node_credentials::release(s.as_ref(), "n1")
            .await
            .expect("released");
        a.forget_node("n1");
        assert_eq!(a.authenticate(Some(&header)).await.expect("ok"), None);
    }
}
