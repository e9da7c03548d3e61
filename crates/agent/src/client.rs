//! Kubernetes clients for the agent: from the admin kubeconfig the server writes (the agent
//! inside `skiff server`) or from a server URL and token (`skiff agent` on another machine).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, Result};

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
    // JSON is YAML, so kube's own kubeconfig reader builds the TLS and auth settings.
    let text = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "skiff", "cluster": cluster}],
        "users": [{"name": "node", "user": {"token": token}}],
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
