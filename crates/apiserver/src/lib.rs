//! The Kubernetes-compatible HTTPS API server: discovery, OpenAPI, CRUD with Kubernetes'
//! semantics for pods, namespaces, nodes, events and leases, watches, authentication and authorization.

pub mod auth;
pub mod authorizer;
pub mod codec;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod namespaces;
pub mod node_credentials;
pub mod node_proxy;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod tls;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("cannot prepare the cluster: {0}")]
    Bootstrap(ApiError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to run the API server.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind_address: String,
    pub port: u16,
    /// Extra names and addresses for the serving certificate.
    pub tls_sans: Vec<String>,
}

/// A bound, ready API server.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<handlers::State>,
    pub address: SocketAddr,
    pub url: String,
    pub kubeconfig: PathBuf,
    /// The token other machines join with (`skiff agent --token`); also in
    /// `<data-dir>/node-token`.
    pub join_token: String,
}

impl ApiServer {
    /// Prepares certificates, credentials and built-in namespaces, and binds the listener.
    pub async fn bind(config: &Config, store: Arc<dyn Store>) -> Result<Self> {
        let mut sans = config.tls_sans.clone();
        sans.push(config.bind_address.clone());
        let files = tls::ensure(&config.data_dir, &sans)?;
        let acceptor = TlsAcceptor::from(tls::server_config(&files)?);
        let authenticator =
            auth::Authenticator::load_or_create(&config.data_dir, &files.ca_pem, store.clone())?;
        let address = format!("{}:{}", config.bind_address, config.port);
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| Error::Listen {
                address: address.clone(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Listen {
            address: address.clone(),
            source,
        })?;
        let host = match config.bind_address.as_str() {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_string(),
            other if other.contains(':') => format!("[{other}]"),
            other => other.to_string(),
        };
        let url = format!("https://{host}:{}", local.port());
        let kubeconfig = auth::write_admin_kubeconfig(
            &config.data_dir,
            &url,
            &files.ca_pem,
            authenticator.admin_token(),
        )?;
        let join_token = authenticator.join_token();
        let registry = registry::Registry::new(store);
        namespaces::ensure_built_in(&registry)
            .await
            .map_err(Error::Bootstrap)?;
        let state = Arc::new(handlers::State::new(
            registry,
            authenticator,
            format!("{host}:{}", local.port()),
            files.ca_pem.clone(),
        ));
        let (cert, key) = tls::ensure_kubelet_client(&config.data_dir)?;
        match node_proxy::NodeClient::new(&cert, &key) {
            Ok(client) => {
                let _ = state.node_client.set(client);
            }
            Err(e) => {
                tracing::warn!(error = %e, "no client certificate for nodes: pod logs, exec and port-forward are unavailable")
            }
        }
        Ok(ApiServer {
            listener,
            acceptor,
            state,
            address: local,
            url,
            kubeconfig,
            join_token,
        })
    }

    /// Serves until `shutdown` resolves; background controllers run alongside.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let registry = self.state.registry.clone();
        let controller = tokio::spawn(async move {
            // The controller rebuilds its state from the store, so a failure is survived by
            // starting it again after a pause.
            loop {
                match namespaces::run(registry.clone()).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(error = %e, "namespace controller failed; restarting it in 1 s")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let compactor = tokio::spawn(compact_history(self.state.registry.store.clone()));
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = self.acceptor.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let service = service_fn(move |req| handlers::handle(state.clone(), req));
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        controller.abort();
        compactor.abort();
        let _ = TokioExecutor::new();
        Ok(())
    }
}

/// Keeps about five minutes of history for watches, as Kubernetes' compaction does.
async fn compact_history(store: Arc<dyn Store>) {
    const EVERY: Duration = Duration::from_secs(300);
    let mut previous = store.current_revision();
    let mut tick = tokio::time::interval(EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        if previous > store.compacted_revision() {
            if let Err(e) = store.compact(previous).await {
                tracing::warn!(error = %e, "compaction failed");
            }
        }
        previous = store.current_revision();
    }
}
