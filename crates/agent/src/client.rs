//! Kubernetes clients for the agent: from the admin kubeconfig the server writes, from a server
//! URL and token, and the join of a node (`skiff agent --server URL --token TOKEN`): check the
//! server's CA against the token, obtain the node's own credentials with the token, and talk as
//! the node from then on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use skiff_api::join_token::{self, JoinToken};

use crate::{Error, Result};

/// The server's endpoint that records a node's credentials (see the API server's
/// `node_credentials`).
const BOOTSTRAP_PATH: &str = "/skiff/v1/node-credentials";
/// Where the agent keeps the password that is its credential (0600), as k3s'
/// `/etc/rancher/node/password`.
pub const PASSWORD_FILE: &str = "node-password";
/// Where the agent keeps the CA it trusts (fetched and checked at join, or from --ca-file).
pub const CA_FILE: &str = "server-ca.crt";

/// A client from a kubeconfig file, with its current context.
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    client_from(kubeconfig, path.display().to_string()).await
}

/// A client for `server` authenticating with a bearer `token`. The server's certificate is
/// checked against `ca_file` when given, else against the system's roots, unless
/// `insecure_skip_tls_verify`.
pub async fn client_for_server(
    server: &str,
    token: &str,
    ca_file: Option<&Path>,
    insecure_skip_tls_verify: bool,
) -> Result<kube::Client> {
    client_with(server, Some(token), ca_file, insecure_skip_tls_verify).await
}

async fn client_with(
    server: &str,
    token: Option<&str>,
    ca_file: Option<&Path>,
    insecure_skip_tls_verify: bool,
) -> Result<kube::Client> {
    let mut cluster = serde_json::json!({"server": server});
    if let Some(ca) = ca_file {
        // Read here so a wrong path is reported as such, not as a TLS failure later.
        std::fs::metadata(ca).map_err(|source| Error::CaFile {
            path: ca.to_path_buf(),
            source,
        })?;
        cluster["certificate-authority"] = ca.display().to_string().into();
    }
    if insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = true.into();
    }
    let user = match token {
        Some(token) => serde_json::json!({"token": token}),
        None => serde_json::json!({}),
    };
    // JSON is YAML, so kube's own kubeconfig reader builds the TLS and auth settings.
    let text = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": cluster}],
        "users": [{"name": "node", "user": user}],
        "contexts": [{"name": "skiff", "context": {"cluster": "skiff", "user": "node"}}],
        "current-context": "skiff",
    })
    .to_string();
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|source| Error::Kubeconfig {
        path: server.into(),
        source,
    })?;
    client_from(kubeconfig, server.to_string()).await
}

async fn client_from(kubeconfig: Kubeconfig, origin: String) -> Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| Error::Kubeconfig {
            path: origin.clone().into(),
            source,
        })?;
    let server = config.cluster_url.to_string();
    kube::Client::try_from(config).map_err(|source| Error::Client { server, source })
}

/// How a node joins.
#[derive(Clone, Debug)]
pub struct JoinOptions<'a> {
    /// The API server's URL.
    pub server: &'a str,
    /// The join token (`K10<CA hash>::server:<secret>`), or an opaque token (the admin's, or a
    /// bare secret) with which the CA must come from `ca_file` or the system's roots.
    pub token: &'a str,
    pub ca_file: Option<&'a Path>,
    /// Do not verify the server's certificate when nothing else says which CA to trust.
    pub insecure_skip_tls_verify: bool,
    pub node_name: &'a str,
    /// Where the node's password and the trusted CA are kept.
    pub data_dir: &'a Path,
}

/// A joined node: its client, authenticated as `system:node:<name>`.
pub struct Joined {
    pub client: kube::Client,
    /// The cluster CA the agent trusts (PEM), when it knows it.
    pub ca_pem: Option<String>,
}

/// Joins the node: finds the CA to trust (from `--ca-file`, or fetched from `/cacerts` and
/// checked against the token's hash), claims the node's name with its password (generated once
/// and kept in the data dir), and returns a client with the node's own credentials. Network
/// failures are retried (the server may be starting); refusals are returned.
pub async fn join(options: &JoinOptions<'_>) -> Result<Joined> {
    let token = JoinToken::parse(options.token)?;
    let server = options.server;
    let ca_pem = match (options.ca_file, &token.ca_hash) {
        (Some(path), _) => {
            let pem = std::fs::read_to_string(path).map_err(|source| Error::CaFile {
                path: path.to_path_buf(),
                source,
            })?;
            if !token.matches_ca(pem.as_bytes()) {
                tracing::warn!(ca_file = %path.display(), "the CA file's hash differs from the join token's; trusting the CA file as asked");
            }
            Some(pem)
        }
        (None, Some(expected)) => {
            let served = retrying("fetch the server's CA", || fetch_ca(server))
                .await
                .map_err(|source| Error::Api {
                    what: format!("fetch the CA from {server}/cacerts"),
                    source,
                })?;
            if !token.matches_ca(served.as_bytes()) {
                return Err(Error::CaMismatch {
                    server: server.to_string(),
                    served: join_token::ca_hash(served.as_bytes()),
                    expected: expected.clone(),
                });
            }
            Some(served)
        }
        (None, None) => None,
    };
    let ca_path = match &ca_pem {
        Some(pem) => Some(write_file(&options.data_dir.join(CA_FILE), pem, 0o644)?),
        None => None,
    };
    // A verified CA makes --insecure-skip-tls-verify moot.
    let insecure = options.insecure_skip_tls_verify && ca_path.is_none();
    let password = load_or_create_password(options.data_dir)?;
    let bootstrap = client_with(
        server,
        Some(&token.credential),
        ca_path.as_deref(),
        insecure,
    )
    .await?;
    let node = options.node_name;
    retrying("obtain the node's credentials", || {
        claim(&bootstrap, node, &password)
    })
    .await
    .map_err(|e| match e {
        kube::Error::Api(status) => Error::Join {
            server: server.to_string(),
            node: node.to_string(),
            message: match status.code {
                401 => "the token was refused (401 Unauthorized): check --token (the server's <data-dir>/node-token)".to_string(),
                code => format!("{} ({code} {})", status.message, status.reason),
            },
        },
        other => Error::Api {
            what: format!("obtain the credentials of node {node}"),
            source: other,
        },
    })?;
    tracing::info!(node, server, "node credentials obtained");
    let client = client_with(
        server,
        Some(&join_token::node_bearer_token(node, &password)),
        ca_path.as_deref(),
        insecure,
    )
    .await?;
    Ok(Joined { client, ca_pem })
}

/// Retries `attempt` while the server cannot be reached; returns its answer otherwise.
async fn retrying<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e @ kube::Error::Api(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "cannot {what} yet; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// The server's CA as it serves it, read without trusting anything (the caller checks it).
async fn fetch_ca(server: &str) -> Result<String, kube::Error> {
    let client = client_with(server, None, None, true)
        .await
        .map_err(|e| kube::Error::Service(Box::new(e)))?;
    let request = kube::core::Request::new("")
        .get("cacerts", &Default::default())
        .map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await
}

/// Claims `node` with `password` (idempotent for the same password).
async fn claim(client: &kube::Client, node: &str, password: &str) -> Result<(), kube::Error> {
    let body = serde_json::json!({"nodeName": node, "password": password}).to_string();
    let request = kube::core::Request::new(BOOTSTRAP_PATH)
        .create(&Default::default(), body.into_bytes())
        .map_err(kube::Error::BuildRequest)?;
    client
        .request::<serde_json::Value>(request)
        .await
        .map(|_| ())
}

/// The node's password from `<data-dir>/node-password`, generated (32 random bytes, hex) the
/// first time.
fn load_or_create_password(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(PASSWORD_FILE);
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().len() >= 32 => return Ok(text.trim().to_string()),
        Ok(_) => {
            return Err(Error::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the node password is too short; remove the file to generate a new one (and delete the node so its name can be claimed again)",
                ),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut bytes = [0u8; 32];
    {
        use std::io::Read;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(|source| Error::Io {
                path: "/dev/urandom".into(),
                source,
            })?;
    }
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir).map_err(io)?;
    write_file(&path, &format!("{password}\n"), 0o600)?;
    Ok(password)
}

/// Writes `contents` to `path` atomically with `mode`.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_generated_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_password(dir.path()).expect("created");
        assert_eq!(first.len(), 64);
        let again = load_or_create_password(dir.path()).expect("loaded");
        assert_eq!(first, again);
        let mode = std::fs::metadata(dir.path().join(PASSWORD_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(load_or_create_password(other.path()).expect("other"), first);
    }
}
