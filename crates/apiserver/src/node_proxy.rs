//! The pod subresources a node serves (`pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward`): the API server checks the request, finds the pod's node and its streaming server (the
//! Node's InternalIP and daemonEndpoints.kubeletEndpoint.Port), connects with its own client
//! certificate, trusting only the certificate whose SHA-256 the node published, and streams the
//! node's answer back unchanged (an upgraded connection: its bytes, both ways).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::ApiError;
use crate::handlers::Body;
use crate::registry::Registry;

/// The Node annotation with the SHA-256 (hex) of its streaming server's certificate.
pub const SERVING_CERT_ANNOTATION: &str = "skiff.dev/serving-cert-sha256";

/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The API server's client side of nodes' streaming servers.
pub struct NodeClient {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl NodeClient {
    /// From the client certificate and key PEM ([`crate::tls::ensure_kubelet_client`]).
    pub fn new(cert_pem: &str, key_pem: &str) -> std::result::Result<NodeClient, String> {
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| format!("the kubelet client certificate: {e}"))?;
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .map_err(|e| format!("the kubelet client key: {e}"))?
            .ok_or("no private key in the kubelet client key file")?;
        Ok(NodeClient { chain, key })
    }

    /// A TLS connection to `address` whose certificate has SHA-256 `pin`.
    async fn connect(
        &self,
        node: &str,
        address: SocketAddr,
        pin: &str,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let unavailable = |what: String| ApiError::unavailable(what);
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unavailable(format!("TLS to node {node}: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                sha256: pin.to_string(),
                provider,
            }))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| unavailable(format!("TLS to node {node}: {e}")))?;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| {
                unavailable(format!(
                    "cannot reach node {node}'s streaming server at {address}: timed out"
                ))
            })?
            .map_err(|e| {
                unavailable(format!(
                    "cannot reach node {node}'s streaming server at {address}: {e}"
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::IpAddress(address.ip().into());
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| unavailable(format!("TLS with node {node} at {address} failed: {e}")))
    }
}

/// Trusts exactly the certificate the node published.
#[derive(Debug)]
struct Pinned {
    sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if sha256_hex(end_entity.as_ref()) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the node's certificate is not the one its Node object publishes".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The container a log request names, defaulted as the API server does: the only container,
/// else an error listing them; a name the pod does not have is refused.
pub fn log_container(pod: &Pod, requested: Option<&str>) -> Result<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let containers: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let init: Vec<&str> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|c| c.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(&c) || init.contains(&c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].to_string()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where the node's streaming server answers, and the certificate hash to trust.
async fn node_endpoint(registry: &Registry, node: &str) -> Result<(SocketAddr, String)> {
    let info = crate::resources::find("", "v1", "nodes").ok_or_else(ApiError::no_route)?;
    let node_obj: Node = registry.get_typed(info, None, node).await.map_err(|e| {
        if e.code == 404 {
            ApiError::unavailable(format!("node {node} is not registered"))
        } else {
            e
        }
    })?;
    let status = node_obj.status.unwrap_or_default();
    let ip: IpAddr = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .and_then(|a| a.address.parse().ok())
        .ok_or_else(|| ApiError::unavailable(format!("node {node} has no InternalIP")))?;
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map(|e| e.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            ApiError::unavailable(format!("node {node} does not publish a streaming port"))
        })?;
    let pin = node_obj
        .metadata
        .annotations
        .and_then(|a| a.get(SERVING_CERT_ANNOTATION).cloned())
        .filter(|p| p.len() == 64)
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {node} does not publish its streaming certificate"
            ))
        })?;
    Ok((SocketAddr::new(ip, port), pin))
}

/// The node `pod` is bound to.
fn pod_node(pod: &Pod) -> Result<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {} does not have a host assigned",
                pod.metadata.name.as_deref().unwrap_or_default()
            ))
        })
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `path`, with the query passed on.
fn with_query(mut path: String, raw_query: Option<&str>) -> String {
    if let Some(query) = raw_query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(query);
    }
    path
}

/// The container the query's `container` parameter names, defaulted and checked as
/// [`log_container`] does.
fn query_container(pod: &Pod, raw_query: Option<&str>) -> Result<String> {
    let requested = form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.into_owned());
    log_container(pod, requested.as_deref())
}

/// The node of `pod` and the path on its streaming server of `endpoint` (`containerLogs`,
/// `exec`) for the container the query names (defaulted as the API server does), with the
/// query passed on.
fn node_path(pod: &Pod, endpoint: &str, raw_query: Option<&str>) -> Result<(String, String)> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let container = query_container(pod, raw_query)?;
    let node = pod_node(pod)?;
    let path = format!(
        "/{endpoint}/{}/{}/{}",
        encode(namespace),
        encode(name),
        encode(&container)
    );
    Ok((node, with_query(path, raw_query)))
}

fn no_client() -> ApiError {
    ApiError::unavailable("this API server has no client certificate for nodes")
}

/// The header in which the API server tells the node the runtime id of the running container
/// an exec is for (the node checks it names that container).
pub const CONTAINER_ID_HEADER: &str = "x-skiff-container-id";

/// The runtime id (without `skiff://`) of the running container the query names, if the pod's
/// status has it.
fn running_container_id(pod: &Pod, raw_query: Option<&str>) -> Option<String> {
    let container = query_container(pod, raw_query).ok()?;
    let status = pod
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container)?;
    status.state.as_ref()?.running.as_ref()?;
    let id = status.container_id.as_deref()?;
    Some(id.strip_prefix("skiff://").unwrap_or(id).to_string())
}

/// `GET pods/NAME/log`: the container's log from its node, streamed as the node sends it.
pub async fn log(
    registry: &Registry,
    client: Option<&NodeClient>,
    pod: &Pod,
    raw_query: Option<&str>,
) -> Result<Response<Body>> {
    let client = client.ok_or_else(no_client)?;
    let (node, path) = node_path(pod, "containerLogs", raw_query)?;
    let request = Request::get(path)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::bad_request(format!("the log request: {e}")))?;
    let response = send_to_node(registry, client, &node, request).await?;
    Ok(relay(response))
}

/// SPDY's protocol negotiation header (kubectl's port-forward fallback).
const X_STREAM_PROTOCOL_VERSION: hyper::header::HeaderName =
    hyper::header::HeaderName::from_static("x-stream-protocol-version");

/// The headers of an upgrade passed to the node: WebSocket's, and SPDY's protocol versions.
const UPGRADE_HEADERS: [hyper::header::HeaderName; 6] = [
    hyper::header::CONNECTION,
    hyper::header::UPGRADE,
    hyper::header::SEC_WEBSOCKET_KEY,
    hyper::header::SEC_WEBSOCKET_VERSION,
    hyper::header::SEC_WEBSOCKET_PROTOCOL,
    X_STREAM_PROTOCOL_VERSION,
];

/// The headers of the node's 101 passed back to the client.
const SWITCHED_HEADERS: [hyper::header::HeaderName; 5] = [
    hyper::header::CONNECTION,
    hyper::header::UPGRADE,
    hyper::header::SEC_WEBSOCKET_ACCEPT,
    hyper::header::SEC_WEBSOCKET_PROTOCOL,
    X_STREAM_PROTOCOL_VERSION,
];

/// Whether the request asks to switch to `protocol` (`websocket`, `SPDY/3.1`).
fn upgrades_to(req: &hyper::http::request::Parts, protocol: &str) -> bool {
    req.headers
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(protocol))
}

/// `pods/NAME/exec` and `pods/NAME/attach` (`endpoint` `exec` or `attach`): the WebSocket
/// upgrade goes to the node; once both sides switched protocols, the bytes flow between the
/// client and the node untouched.
pub async fn exec(
    registry: &Registry,
    client: Option<&NodeClient>,
    pod: &Pod,
    endpoint: &str,
    req: &hyper::http::request::Parts,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>> {
    let client = client.ok_or_else(no_client)?;
    let (node, path) = node_path(pod, endpoint, req.uri.query())?;
    if endpoint == "attach" {
        check_attach_stdin(pod, req.uri.query())?;
    }
    if !upgrades_to(req, "websocket") {
        // kubectl falls back to SPDY/3.1 (a POST) only when the WebSocket attempt failed, and
        // then shows this message.
        return Err(ApiError::bad_request(format!(
            "this server streams {endpoint} over WebSocket only (v5.channel.k8s.io or v4.channel.k8s.io, kubectl 1.30 or later); SPDY/3.1 is not supported"
        )));
    }
    let mut request = Request::get(path)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::bad_request(format!("the {endpoint} request: {e}")))?;
    // The running container's id, which the node would otherwise ask the API for.
    if let Some(id) = running_container_id(pod, req.uri.query()) {
        if let Ok(value) = hyper::header::HeaderValue::from_str(&id) {
            request.headers_mut().insert(CONTAINER_ID_HEADER, value);
        }
    }
    pass_upgrade(registry, client, &node, request, req, on_upgrade).await
}

/// An attach with stdin to a container created without `stdin: true` is refused here (as the
/// node refuses it): kubectl, after the node's refusal of its WebSocket, retries with SPDY and
/// shows what that attempt gets, so both must carry the reason.
fn check_attach_stdin(pod: &Pod, raw_query: Option<&str>) -> Result<()> {
    let wants_stdin = form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes())
        .any(|(k, v)| (k == "stdin" || k == "input") && matches!(v.as_ref(), "" | "true" | "1"));
    if !wants_stdin {
        return Ok(());
    }
    let container = query_container(pod, raw_query)?;
    let has_stdin = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
        .and_then(|c| c.stdin)
        .unwrap_or(false);
    if has_stdin {
        Ok(())
    } else {
        // The node's words (skiff-agent's streaming::attach::stdin_refused).
        Err(ApiError::bad_request(format!(
            "cannot attach stdin: container {container} in pod {} was not created with stdin: true (attach without -i to see its output)",
            pod.metadata.name.as_deref().unwrap_or_default()
        )))
    }
}

/// `pods/NAME/portforward`: kubectl's SPDY (in WebSocket, or after a plain SPDY/3.1 upgrade)
/// or the Python client's WebSocket channels, passed to the node as exec is.
pub async fn portforward(
    registry: &Registry,
    client: Option<&NodeClient>,
    pod: &Pod,
    req: &hyper::http::request::Parts,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>> {
    let client = client.ok_or_else(no_client)?;
    let node = pod_node(pod)?;
    if !(upgrades_to(req, "websocket") || upgrades_to(req, "SPDY/3.1")) {
        return Err(ApiError::bad_request(
            "port-forward needs an upgrade: WebSocket (SPDY/3.1+portforward.k8s.io or v4.channel.k8s.io) or SPDY/3.1",
        ));
    }
    let path = format!(
        "/portForward/{}/{}",
        encode(pod.metadata.namespace.as_deref().unwrap_or("default")),
        encode(pod.metadata.name.as_deref().unwrap_or_default())
    );
    let request = Request::builder()
        .method(req.method.clone())
        .uri(with_query(path, req.uri.query()))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::bad_request(format!("the port-forward request: {e}")))?;
    pass_upgrade(registry, client, &node, request, req, on_upgrade).await
}

/// Sends `request` to the node with the client's upgrade headers; on its 101, answers 101 with
/// its headers and, once both sides switched, copies bytes both ways until either side closes.
async fn pass_upgrade(
    registry: &Registry,
    client: &NodeClient,
    node: &str,
    mut request: Request<Empty<Bytes>>,
    req: &hyper::http::request::Parts,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<Body>> {
    for name in UPGRADE_HEADERS {
        for value in req.headers.get_all(&name) {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    let mut response = send_to_node(registry, client, node, request).await?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(relay(response));
    }
    let mut ours = Response::new(
        Empty::<Bytes>::new()
            .map_err(|never| match never {})
            .boxed(),
    );
    *ours.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    for name in SWITCHED_HEADERS {
        if let Some(value) = response.headers().get(&name) {
            ours.headers_mut().insert(name, value.clone());
        }
    }
    let node_side = hyper::upgrade::on(&mut response);
    let client_side = on_upgrade.ok_or_else(|| {
        ApiError::bad_request("this connection cannot switch protocols (HTTP/1.1 is needed)")
    })?;
    tokio::spawn(async move {
        let (node_io, client_io) = match tokio::try_join!(node_side, client_side) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(error = %e, "an upgrade to a node failed");
                return;
            }
        };
        let (mut node_io, mut client_io) = (TokioIo::new(node_io), TokioIo::new(client_io));
        // Either side closing ends both: the node ends the session when its side closes.
        // 64 KiB buffers: tokio's default 8 KiB halves throughput.
        if let Err(e) = tokio::io::copy_bidirectional_with_sizes(
            &mut client_io,
            &mut node_io,
            64 << 10,
            64 << 10,
        )
        .await
        {
            // A node side that ends without a TLS close_notify is an error here, after all
            // its data was passed on: what is still buffered for the client is flushed and the
            // client's side closed cleanly, so the client sees every byte and a proper end.
            tracing::debug!(error = %e, "a stream through to a node ended");
            let _ = client_io.shutdown().await;
            // Then what the client still sends (its answer to the close, the end of its
            // stdin) is read and dropped until it closes too, for a while: closing a socket
            // with unread data sends a reset, which can reach the client before the last of
            // its output and fail its read ("connection reset without closing handshake").
            let drain = async {
                let mut sink = [0u8; 8192];
                while matches!(client_io.read(&mut sink).await, Ok(n) if n > 0) {}
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
        }
    });
    Ok(ours)
}

/// Sends `request` to the streaming server of `node` and returns its answer (upgradable).
async fn send_to_node(
    registry: &Registry,
    client: &NodeClient,
    node: &str,
    mut request: Request<Empty<Bytes>>,
) -> Result<Response<hyper::body::Incoming>> {
    let (address, pin) = node_endpoint(registry, node).await?;
    let tls = client.connect(node, address, &pin).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ApiError::unavailable(format!("node {node}: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "node connection ended");
        }
    });
    if let Ok(host) = hyper::header::HeaderValue::from_str(&address.to_string()) {
        request.headers_mut().insert(hyper::header::HOST, host);
    }
    sender
        .send_request(request)
        .await
        .map_err(|e| ApiError::unavailable(format!("node {node}: {e}")))
}

/// The node's answer as ours: its status, content type and body, streamed.
fn relay(response: Response<hyper::body::Incoming>) -> Response<Body> {
    let (parts, mut body) = response.into_parts();
    // Relay frames through a channel: the node's body can fail (the node goes away), ours
    // cannot; a failure just ends the stream, as a closed connection would.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    break;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *resp.status_mut() = parts.status;
    if let Some(content_type) = parts.headers.get(hyper::header::CONTENT_TYPE) {
        resp.headers_mut()
            .insert(hyper::header::CONTENT_TYPE, content_type.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Pod {
        let c: Vec<_> = containers
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        let i: Vec<_> = init
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": c, "initContainers": i},
        }))
        .expect("pod")
    }

    #[test]
    fn attach_with_stdin_needs_a_container_with_stdin() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "b", "stdin": true}]},
        }))
        .expect("pod");
        assert!(check_attach_stdin(&pod, Some("container=a&stdout=true")).is_ok());
        assert!(check_attach_stdin(&pod, Some("container=b&stdin=true&stdout=true")).is_ok());
        let refused = check_attach_stdin(&pod, Some("container=a&stdin=true&stdout=true"))
            .expect_err("no stdin");
        assert_eq!(refused.code, 400);
        assert!(refused
            .message
            .contains("container a in pod p was not created with stdin: true"));
    }

    #[test]
    fn log_container_defaults_as_kubernetes() {
        assert_eq!(log_container(&pod(&["a"], &[]), None).expect("one"), "a");
        assert_eq!(
            log_container(&pod(&["a", "b"], &["i"]), Some("i")).expect("init"),
            "i"
        );
        let many = log_container(&pod(&["a", "b"], &["i"]), None).expect_err("ambiguous");
        assert_eq!(
            many.message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let wrong = log_container(&pod(&["a"], &[]), Some("x")).expect_err("not there");
        assert_eq!(wrong.message, "container x is not valid for pod p");
        assert_eq!(wrong.code, 400);
    }
}
