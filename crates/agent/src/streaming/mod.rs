//! The node's streaming server (kubelet's port 10250): container logs, exec, attach and
//! port-forward. It speaks HTTPS with a self-signed certificate whose SHA-256 the agent
//! publishes on its Node (the API server pins it), and it accepts only clients whose certificate
//! the cluster CA signed for the API server: nothing else may call it.

mod attach;
mod exec;
mod logs;
mod portforward;
mod spdy;
mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::runtime::PodRuntime;

/// Starts the one task that writes a WebSocket session's messages, so frames never interleave
/// mid-message: it sends what comes on the returned channel (of `capacity` messages), and
/// closes the WebSocket after a Close message, a failed send, or once every sender is gone.
pub(super) fn spawn_writer<S>(
    mut sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<S>,
        tokio_tungstenite::tungstenite::Message,
    >,
    capacity: usize,
) -> (
    tokio::sync::mpsc::Sender<tokio_tungstenite::tungstenite::Message>,
    tokio::task::JoinHandle<()>,
)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use futures_util::SinkExt;
    let (tx, mut out_rx) = tokio::sync::mpsc::channel(capacity);
    let writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let last = matches!(message, tokio_tungstenite::tungstenite::Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (tx, writer)
}

/// An upgraded connection that is shut down when its session drops it: TLS sends its
/// close_notify and TCP its FIN (a session's WebSocket is split between tasks, so none of
/// them holds the whole connection to shut it down at its end). Without it the API server saw
/// every session end with "peer closed connection without sending TLS close_notify".
pub(crate) struct ShutdownOnDrop<T: tokio::io::AsyncWrite + Unpin + Send + 'static>(Option<T>);

impl<T: tokio::io::AsyncWrite + Unpin + Send + 'static> ShutdownOnDrop<T> {
    pub(crate) fn new(io: T) -> Self {
        ShutdownOnDrop(Some(io))
    }

    fn io(&mut self) -> std::io::Result<&mut T> {
        self.0
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl<T: tokio::io::AsyncWrite + Unpin + Send + 'static> Drop for ShutdownOnDrop<T> {
    fn drop(&mut self) {
        let Some(mut io) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let wait = std::time::Duration::from_secs(2);
                let _ = tokio::time::timeout(wait, io.shutdown()).await;
            });
        }
    }
}

impl<T> tokio::io::AsyncRead for ShutdownOnDrop<T>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.io() {
            Ok(io) => std::pin::Pin::new(io).poll_read(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin + Send + 'static> tokio::io::AsyncWrite
    for ShutdownOnDrop<T>
{
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.io() {
            Ok(io) => std::pin::Pin::new(io).poll_write(cx, buf),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.io() {
            Ok(io) => std::pin::Pin::new(io).poll_flush(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.io() {
            Ok(io) => std::pin::Pin::new(io).poll_shutdown(cx),
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

/// An upgraded connection of the streaming server.
pub(crate) type UpgradedIo = ShutdownOnDrop<TokioIo<hyper::upgrade::Upgraded>>;

pub use tls::{serving_cert_sha256, SERVING_CERT_ANNOTATION};

/// A response body: whole, or streamed (a followed log).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The common name of the client certificate the API server presents (as Kubernetes names it).
pub const API_SERVER_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("cannot listen on {address} for the streaming server: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("streaming server TLS: {0}")]
    Tls(String),
}

/// What the handlers need: the API (to find a pod's uid and containers), the runtime (whether a
/// container still runs), and where logs live.
pub struct StreamingContext {
    pub client: kube::Client,
    pub runtime: Arc<dyn PodRuntime>,
    pub data_dir: PathBuf,
    pub node_name: String,
}

impl StreamingContext {
    /// The log file of attempt `attempt` of `container` of the pod with uid `uid`, where the
    /// agent's runtime writes it.
    fn container_log_path(&self, uid: &str, container: &str, attempt: u32) -> PathBuf {
        crate::node_runtime::container_log_path(&self.data_dir, uid, container, attempt)
    }
}

/// The bound streaming server.
pub struct StreamingServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// The port it listens on (the Node's daemonEndpoints.kubeletEndpoint.Port).
    pub port: u16,
    /// The SHA-256 of its certificate, hex (the Node's [`SERVING_CERT_ANNOTATION`]).
    pub cert_sha256: String,
}

impl StreamingServer {
    /// Binds `address`, with the serving certificate kept in `tls_dir` (made at first start) and
    /// client certificates checked against `client_ca_pem` (the cluster CA).
    pub async fn bind(
        address: SocketAddr,
        tls_dir: &std::path::Path,
        hostnames: &[String],
        client_ca_pem: &str,
    ) -> Result<StreamingServer, StreamingError> {
        let (config, cert_sha256) = tls::server_config(tls_dir, hostnames, client_ca_pem)?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StreamingError::Listen { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StreamingError::Listen { address, source })?
            .port();
        Ok(StreamingServer {
            listener,
            acceptor: TlsAcceptor::from(config),
            port,
            cert_sha256,
        })
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, ctx: Arc<StreamingContext>) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server: accept failed");
                    continue;
                }
            };
            let acceptor = self.acceptor.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "streaming server: TLS handshake refused");
                        return;
                    }
                };
                let allowed = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .is_some_and(|cert| tls::common_name_is(cert, API_SERVER_CLIENT_CN));
                if !allowed {
                    tracing::warn!(%peer, "streaming server: a client certificate that is not the API server's");
                    return;
                }
                let service = hyper::service::service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move { Ok::<_, Infallible>(route(&ctx, req).await) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(%peer, error = %e, "streaming connection ended");
                }
            });
        }
    }
}

async fn route(ctx: &StreamingContext, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&hyper::Method::GET, ["containerLogs", namespace, pod, container]) => {
            logs::serve(ctx, namespace, pod, container, req.uri().query()).await
        }
        (&hyper::Method::GET, ["exec", namespace, pod, container]) => {
            let (namespace, pod, container) = (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            exec::serve(ctx, &namespace, &pod, &container, req).await
        }
        (&hyper::Method::GET, ["attach", namespace, pod, container]) => {
            let (namespace, pod, container) = (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            attach::serve(ctx, &namespace, &pod, &container, req).await
        }
        (&hyper::Method::GET | &hyper::Method::POST, ["portForward", namespace, pod]) => {
            let (namespace, pod) = (namespace.to_string(), pod.to_string());
            portforward::serve(ctx, &namespace, &pod, req).await
        }
        _ => status(404, "NotFound", &format!("the node serves no {path}")),
    }
}

/// The pod `namespace/pod` as the API has it, if it runs on this node; else the response to
/// give.
pub(crate) async fn pod_on_this_node(
    ctx: &StreamingContext,
    namespace: &str,
    pod: &str,
) -> Result<k8s_openapi::api::core::v1::Pod, Response<Body>> {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(ctx.client.clone(), namespace);
    let found = match pods.get_opt(pod).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(status(404, "NotFound", &format!("pods {pod:?} not found"))),
        Err(e) => {
            return Err(status(
                503,
                "ServiceUnavailable",
                &format!("cannot read the pod: {e}"),
            ))
        }
    };
    let here = found
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| n == ctx.node_name);
    if here {
        Ok(found)
    } else {
        Err(status(
            404,
            "NotFound",
            &format!("pod {pod:?} does not run on node {:?}", ctx.node_name),
        ))
    }
}

/// The runtime id of `container` of the pod if it runs now; else kubelet's error.
pub(crate) async fn running_container(
    ctx: &StreamingContext,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response<Body>> {
    let found = pod_on_this_node(ctx, namespace, pod).await?;
    running_container_of(&found, container).map_err(|message| status(400, "BadRequest", &message))
}

/// The runtime id of `container` of `pod` if its status says it runs; else kubelet's message.
pub(crate) fn running_container_of(
    pod: &k8s_openapi::api::core::v1::Pod,
    container: &str,
) -> Result<String, String> {
    // Init containers too: a sidecar runs beside the others, and kubectl exec -c reaches it.
    let status_of = pod.status.as_ref().and_then(|s| {
        s.container_statuses
            .iter()
            .flatten()
            .chain(s.init_container_statuses.iter().flatten())
            .find(|s| s.name == container)
    });
    let running = status_of
        .filter(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()))
        .and_then(|s| s.container_id.as_deref());
    match running {
        Some(id) => Ok(id.strip_prefix("skiff://").unwrap_or(id).to_string()),
        None => Err(format!(
            "container {container:?} in pod {:?} is not running",
            pod.metadata.name.as_deref().unwrap_or_default()
        )),
    }
}

/// A 101 answer switching to `upgrade` (`websocket`, `SPDY/3.1`); the caller adds the headers
/// of the protocol.
pub(super) fn switching_protocols(upgrade: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(
        hyper::header::UPGRADE,
        hyper::header::HeaderValue::from_static(upgrade),
    );
    headers.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    resp
}

/// The 101 answer to a WebSocket upgrade with key `key`, speaking subprotocol `protocol`.
pub(super) fn websocket_accepted(
    key: &hyper::header::HeaderValue,
    protocol: &'static str,
) -> Response<Body> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = switching_protocols("websocket");
    let headers = resp.headers_mut();
    if let Ok(value) = hyper::header::HeaderValue::from_str(&accept) {
        headers.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, value);
    }
    headers.insert(
        hyper::header::SEC_WEBSOCKET_PROTOCOL,
        hyper::header::HeaderValue::from_static(protocol),
    );
    resp
}

/// A Kubernetes Status response.
pub(crate) fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let mut resp = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}
