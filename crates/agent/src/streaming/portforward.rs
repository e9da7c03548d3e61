//! `GET|POST /portForward/{namespace}/{pod}`: TCP connections to ports inside a pod's network
//! namespace, in the three ways clients ask for them:
//! - kubectl 1.35: SPDY/3.1 tunnelled in WebSocket binary messages (subprotocol
//!   `SPDY/3.1+portforward.k8s.io`), or after a plain `Upgrade: SPDY/3.1` (its fallback). Each
//!   local connection opens a pair of streams (`streamtype` error and data, with `port` and
//!   `requestid`); the data stream carries the connection, the error stream a failure's text.
//! - the Python client: the WebSocket channel protocol (`v4.channel.k8s.io`), ports from
//!   `?ports=`, channel 2i the data of port i and 2i+1 its errors, each opened by the port as
//!   two little-endian bytes.
//!
//! A connection is made by a short-lived thread that enters the pod's network namespace, so
//! the socket lives there while the agent's own threads stay on the host.

use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::spdy::{self, Frame, HeaderDecoder, HeaderEncoder, RawFrame};
use super::{
    pod_on_this_node, status, switching_protocols, websocket_accepted, Body, StreamingContext,
};

/// kubectl's WebSocket subprotocol: SPDY inside.
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `X-Stream-Protocol-Version` of a plain SPDY upgrade.
const PORT_FORWARD_V1: &str = "portforward.k8s.io";
/// The channel protocols, preferred first (the Python client offers v5 and v4; Kubernetes
/// answers port-forward with v4).
const CHANNEL_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "v5.channel.k8s.io"];
const X_STREAM_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("x-stream-protocol-version");

/// How long connecting to a port in the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read from a pod's connection per message.
const CHUNK: usize = 32 * 1024;

/// Connects to a port of the pod; the error is the text for the client.
pub(crate) type Dial = Arc<
    dyn Fn(u16) -> Pin<Box<dyn Future<Output = Result<TcpStream, String>> + Send>> + Send + Sync,
>;

/// The protocol a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    SpdyOverWebSocket,
    Spdy,
    Channels(&'static str),
}

fn header_values(req: &Request<Incoming>, name: &HeaderName) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect()
}

fn pick_protocol(req: &Request<Incoming>) -> Result<Protocol, String> {
    let upgrade = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if upgrade.eq_ignore_ascii_case("websocket") {
        let offered = header_values(req, &hyper::header::SEC_WEBSOCKET_PROTOCOL);
        if offered.iter().any(|p| p == SPDY_TUNNEL) {
            return Ok(Protocol::SpdyOverWebSocket);
        }
        return CHANNEL_PROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
            .map(|p| Protocol::Channels(p))
            .ok_or_else(|| {
                format!("none of the offered subprotocols is served: use {SPDY_TUNNEL} or v4.channel.k8s.io")
            });
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        if header_values(req, &X_STREAM_PROTOCOL_VERSION)
            .iter()
            .any(|p| p == PORT_FORWARD_V1)
        {
            return Ok(Protocol::Spdy);
        }
        return Err(format!(
            "the SPDY upgrade must offer X-Stream-Protocol-Version {PORT_FORWARD_V1}"
        ));
    }
    Err(format!(
        "port-forward needs an upgrade: WebSocket ({SPDY_TUNNEL} or v4.channel.k8s.io) or SPDY/3.1"
    ))
}

/// The ports of a channel-protocol request: `ports=8080,9090` (or repeated).
fn parse_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key != "ports" && key != "port" {
            continue;
        }
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.parse::<u16>() {
                Ok(port) if port > 0 => {
                    if ports.contains(&port) {
                        return Err(format!("port {port} is given twice"));
                    }
                    ports.push(port);
                }
                _ => return Err(format!("invalid port {item:?}: ports are 1 to 65535")),
            }
        }
    }
    if ports.is_empty() {
        return Err("at least one port must be given (ports=PORT,...)".into());
    }
    // Two channels per port, numbered in one byte.
    if ports.len() > 128 {
        return Err("at most 128 ports can be forwarded at once".into());
    }
    Ok(ports)
}

pub async fn serve(
    ctx: &StreamingContext,
    namespace: &str,
    pod: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let protocol = match pick_protocol(&req) {
        Ok(protocol) => protocol,
        Err(message) => return status(400, "BadRequest", &message),
    };
    let ports = match protocol {
        Protocol::Channels(_) => match parse_ports(req.uri().query()) {
            Ok(ports) => ports,
            Err(message) => return status(400, "BadRequest", &message),
        },
        _ => Vec::new(),
    };
    let key = req.headers().get(hyper::header::SEC_WEBSOCKET_KEY).cloned();
    if protocol != Protocol::Spdy && key.is_none() {
        return status(
            400,
            "BadRequest",
            "a WebSocket upgrade needs Sec-WebSocket-Key",
        );
    }
    let found = match pod_on_this_node(ctx, namespace, pod).await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let phase = found
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_else(|| "Pending".into());
    if phase != "Running" {
        return status(
            400,
            "BadRequest",
            &format!("unable to forward port because pod is not running. Current status={phase}"),
        );
    }
    let uid = found.metadata.uid.clone().unwrap_or_default();
    let runtime = ctx.runtime.clone();
    let lookup = uid.clone();
    let netns =
        match tokio::task::spawn_blocking(move || runtime.pod_network_namespace(&lookup)).await {
            Ok(Ok(Some(netns))) => netns,
            Ok(Ok(None)) => {
                return status(
                    400,
                    "BadRequest",
                    &format!("pod {pod:?} has no network namespace on this node"),
                )
            }
            Ok(Err(e)) => return status(500, "InternalError", &e.0),
            Err(e) => return status(500, "InternalError", &e.to_string()),
        };
    let dial = pod_dialer(netns, pod.to_string(), uid);
    let label = format!("{namespace}/{pod}");
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => super::ShutdownOnDrop::new(TokioIo::new(upgraded)),
            Err(e) => {
                tracing::debug!(pod = %label, error = %e, "port-forward: the upgrade failed");
                return;
            }
        };
        tracing::debug!(pod = %label, protocol = ?protocol, "port-forward session");
        match protocol {
            Protocol::Spdy => spdy_session(upgraded, dial).await,
            Protocol::SpdyOverWebSocket => {
                let ws = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
                spdy_over_websocket(ws, dial).await;
            }
            Protocol::Channels(_) => {
                let ws = WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await;
                channel_session(ws, ports, dial).await;
            }
        }
        tracing::debug!(pod = %label, "port-forward session ended");
    });

    match (protocol, key) {
        (Protocol::Spdy, _) => {
            let mut resp = switching_protocols("SPDY/3.1");
            resp.headers_mut().insert(
                X_STREAM_PROTOCOL_VERSION,
                HeaderValue::from_static(PORT_FORWARD_V1),
            );
            resp
        }
        (Protocol::SpdyOverWebSocket, Some(key)) => websocket_accepted(&key, SPDY_TUNNEL),
        (Protocol::Channels(chosen), Some(key)) => websocket_accepted(&key, chosen),
        // Refused above, before anything started.
        (Protocol::SpdyOverWebSocket | Protocol::Channels(_), None) => status(
            400,
            "BadRequest",
            "a WebSocket upgrade needs Sec-WebSocket-Key",
        ),
    }
}

/// Connects to ports of the pod whose network namespace is the file `netns`.
fn pod_dialer(netns: PathBuf, pod: String, uid: String) -> Dial {
    Arc::new(move |port| {
        let (netns, pod, uid) = (netns.clone(), pod.clone(), uid.clone());
        Box::pin(async move {
            connect_in_namespace(netns, port)
                .await
                .map_err(|e| format!("error forwarding port {port} to pod {pod}, uid {uid}: {e}"))
        })
    })
}

/// A TCP connection to `port` on the loopback of network namespace `netns`. A fresh thread
/// enters the namespace, connects and exits: the socket stays in the namespace it was made in,
/// and no thread of the agent is left in the pod's.
pub(crate) async fn connect_in_namespace(netns: PathBuf, port: u16) -> Result<TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pf-dial".into())
        .spawn(move || {
            let _ = tx.send(connect_from_this_thread(&netns, port));
        })
        .map_err(|e| format!("cannot start a thread to connect: {e}"))?;
    let stream = rx
        .await
        .map_err(|_| "the connecting thread ended without an answer".to_string())??;
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("the connection: {e}"))?;
    let _ = stream.set_nodelay(true);
    TcpStream::from_std(stream).map_err(|e| format!("the connection: {e}"))
}

/// Moves the calling thread into `netns` for good, then connects to localhost:`port` there
/// (IPv4, then IPv6, as kubelet does).
fn connect_from_this_thread(
    netns: &std::path::Path,
    port: u16,
) -> Result<std::net::TcpStream, String> {
    crate::netns::enter(netns)?;
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(stream) => Ok(stream),
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
            format!(
                "failed to connect to localhost:{port} inside the pod's network namespace, IPv4: {e4}, IPv6: {e6}"
            )
        }),
    }
}

/// SPDY carried in WebSocket binary messages, split anywhere: the messages are joined into a
/// byte stream for [`spdy_session`], and its output goes back one message per write.
async fn spdy_over_websocket<S>(ws: WebSocketStream<S>, dial: Dial)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    let (mut sink, mut incoming) = ws.split();
    let inbound = tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            let written = match message {
                Message::Binary(data) => to_session.write_all(&data).await,
                Message::Close(_) => break,
                // Pings are answered by the WebSocket layer.
                _ => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
        // The session sees the end of its input.
        let _ = to_session.shutdown().await;
    });
    let outbound = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = from_session.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    });
    spdy_session(ours, dial).await;
    // The session is over: give the last frames a moment to leave, then drop the connection.
    let_writer_finish(outbound).await;
    inbound.abort();
}

/// What a stream of the SPDY session is.
enum StreamKind {
    Error,
    Data {
        /// Bytes for the pod's connection; None once the client finished sending.
        to_pod: Option<mpsc::Sender<Bytes>>,
    },
}

struct StreamEntry {
    request: String,
    kind: StreamKind,
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, String, mpsc::Receiver<Bytes>)>,
    /// Set by whoever sends FIN on the error stream first (the forwarder or a reset).
    error_closed: Arc<AtomicBool>,
    forwarder: Option<AbortHandle>,
}

/// A SPDY/3.1 server session on `io`: replies to every stream, echoes pings, and forwards each
/// pair of streams to a connection made by `dial`. Ends at the end of input, a GOAWAY or a
/// protocol error; every connection and task of the session ends with it.
pub(crate) async fn spdy_session<S>(io: S, dial: Dial)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
            if out_rx.is_empty() && writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let mut encoder = match HeaderEncoder::new() {
        Ok(encoder) => encoder,
        Err(e) => {
            tracing::warn!(error = %e, "port-forward: cannot compress headers");
            writer_task.abort();
            return;
        }
    };
    let mut decoder = HeaderDecoder::default();
    let mut streams: HashMap<u32, StreamEntry> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwarders = JoinSet::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);

    'session: loop {
        loop {
            let raw = match RawFrame::parse(&mut buf) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: ending the session");
                    break 'session;
                }
            };
            let frame = match Frame::decode(raw, &mut decoder) {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: ending the session");
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                    // Older clients send no request id: the pair is told by stream ids.
                    let request = match (spdy::header(&headers, "requestid"), kind) {
                        (Some(id), _) => id.to_string(),
                        (None, "data") => stream_id.saturating_sub(2).to_string(),
                        (None, _) => stream_id.to_string(),
                    };
                    let port = spdy::header(&headers, "port")
                        .unwrap_or_default()
                        .to_string();
                    if kind != "error" && kind != "data" {
                        let refused = spdy::rst_stream(stream_id, spdy::PROTOCOL_ERROR);
                        if out.send(refused).await.is_err() {
                            break 'session;
                        }
                        continue;
                    }
                    let reply = match spdy::syn_reply(stream_id, &mut encoder) {
                        Ok(reply) => reply,
                        Err(e) => {
                            tracing::debug!(error = %e, "port-forward: ending the session");
                            break 'session;
                        }
                    };
                    if out.send(reply).await.is_err() {
                        break 'session;
                    }
                    let pair = pairs.entry(request.clone()).or_default();
                    match kind {
                        "error" => {
                            pair.error = Some(stream_id);
                            streams.insert(
                                stream_id,
                                StreamEntry {
                                    request: request.clone(),
                                    kind: StreamKind::Error,
                                },
                            );
                        }
                        _ => {
                            let (to_pod, from_client) = mpsc::channel(16);
                            pair.data = Some((stream_id, port, from_client));
                            streams.insert(
                                stream_id,
                                StreamEntry {
                                    request: request.clone(),
                                    kind: StreamKind::Data {
                                        to_pod: Some(to_pod),
                                    },
                                },
                            );
                        }
                    }
                    // Both streams are there: forward.
                    if let (Some(error_id), Some(_)) = (pair.error, pair.data.as_ref()) {
                        if let Some((data_id, port, from_client)) = pair.data.take() {
                            let job = Forward {
                                dial: dial.clone(),
                                port,
                                data_id,
                                error_id,
                                error_closed: pair.error_closed.clone(),
                                out: out.clone(),
                            };
                            pair.forwarder = Some(forwarders.spawn(job.run(from_client)));
                        }
                    }
                }
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    let Some(entry) = streams.get_mut(&stream_id) else {
                        continue;
                    };
                    if let StreamKind::Data { to_pod } = &mut entry.kind {
                        if let (false, Some(tx)) = (data.is_empty(), to_pod.as_ref()) {
                            // Waits while the pod's side is slow: kubectl has no flow
                            // control to ask it to pause otherwise.
                            if tx.send(data).await.is_err() {
                                *to_pod = None;
                            }
                        }
                        if fin {
                            // The pod's side sees the end of input.
                            *to_pod = None;
                        }
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    let Some(entry) = streams.remove(&stream_id) else {
                        continue;
                    };
                    if let StreamKind::Data { .. } = entry.kind {
                        // kubectl resets the data stream when its side of the connection is
                        // done, then waits for the error stream to end.
                        if let Some(pair) = pairs.remove(&entry.request) {
                            if let Some(forwarder) = pair.forwarder {
                                forwarder.abort();
                            }
                            if let Some(error_id) = pair.error {
                                streams.remove(&error_id);
                                if !pair.error_closed.swap(true, Ordering::SeqCst)
                                    && out.send(spdy::data(error_id, true, &[])).await.is_err()
                                {
                                    break 'session;
                                }
                            }
                        }
                    }
                }
                Frame::Ping { id } => {
                    if out.send(spdy::ping(id)).await.is_err() {
                        break 'session;
                    }
                }
                Frame::GoAway { .. } => break 'session,
                Frame::StreamHeaders { .. } | Frame::Ignored { .. } => {}
            }
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break 'session,
                Ok(_) => {}
            },
            Some(_) = forwarders.join_next(), if !forwarders.is_empty() => {}
        }
    }
    // Every connection goes with the session.
    forwarders.shutdown().await;
    drop(out);
    if !let_writer_finish(writer_task).await {
        tracing::debug!("port-forward: the client stopped reading");
    }
}

/// Gives a session's writer a second to send the frames already queued, then stops it: a
/// client that stopped reading does not keep the session's task alive. False when it had to
/// be stopped.
async fn let_writer_finish(writer: tokio::task::JoinHandle<()>) -> bool {
    let stalled = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        stalled.abort();
        return false;
    }
    true
}

/// One forwarded connection: the pod's connection on one side, a pair of streams on the other.
struct Forward {
    dial: Dial,
    port: String,
    data_id: u32,
    error_id: u32,
    error_closed: Arc<AtomicBool>,
    out: mpsc::Sender<Bytes>,
}

impl Forward {
    async fn run(self, from_client: mpsc::Receiver<Bytes>) {
        if let Err(message) = self.copy(from_client).await {
            tracing::debug!(%message, "port-forward: a connection failed");
            let _ = self
                .out
                .send(spdy::data(self.error_id, false, message.as_bytes()))
                .await;
        }
        // As kubelet: the error stream ends, then the data stream.
        if !self.error_closed.swap(true, Ordering::SeqCst) {
            let _ = self.out.send(spdy::data(self.error_id, true, &[])).await;
        }
        let _ = self.out.send(spdy::data(self.data_id, true, &[])).await;
    }

    /// Copies both ways until the pod's side ends (the client's end of input only half-closes
    /// the connection).
    async fn copy(&self, mut from_client: mpsc::Receiver<Bytes>) -> Result<(), String> {
        let port = self
            .port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port {:?}", self.port))?;
        let connection = (self.dial)(port).await?;
        let (mut from_pod, mut to_pod) = connection.into_split();
        let to_pod = async move {
            while let Some(chunk) = from_client.recv().await {
                if to_pod.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            let _ = to_pod.shutdown().await;
            // The other direction decides when the connection is over.
            std::future::pending::<()>().await;
        };
        let to_client = async {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from_pod.read(&mut buf).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        if self
                            .out
                            .send(spdy::data(self.data_id, false, &buf[..n]))
                            .await
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(format!("reading from port {port}: {e}")),
                }
            }
        };
        tokio::select! {
            ended = to_client => ended,
            () = to_pod => Ok(()),
        }
    }
}

/// The Python client's port-forward: one connection per port for the whole session, data on
/// channel 2i, errors on channel 2i+1. The session ends when the client leaves, or when every
/// port's connection has ended.
async fn channel_session<S>(ws: WebSocketStream<S>, ports: Vec<u16>, dial: Dial)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (out, writer) = super::spawn_writer(sink, 64);
    let frame = |channel: usize, data: &[u8]| {
        let mut bytes = Vec::with_capacity(data.len() + 1);
        // parse_ports keeps channels within a byte.
        bytes.push(channel as u8);
        bytes.extend_from_slice(data);
        Message::Binary(bytes.into())
    };
    // Each channel starts with its port.
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i, 2 * i + 1] {
            if out.send(frame(channel, &port.to_le_bytes())).await.is_err() {
                writer.abort();
                return;
            }
        }
    }
    let mut to_pods: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
    let mut pumps = JoinSet::new();
    let mut open = 0usize;
    for (i, port) in ports.iter().enumerate() {
        match dial(*port).await {
            Ok(connection) => {
                let (mut from_pod, to_pod) = connection.into_split();
                to_pods.push(Some(to_pod));
                open += 1;
                let out = out.clone();
                pumps.spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    while let Ok(n) = from_pod.read(&mut buf).await {
                        if n == 0 || out.send(frame(2 * i, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(message) => {
                to_pods.push(None);
                let _ = out.send(frame(2 * i + 1, message.as_bytes())).await;
            }
        }
    }
    while open > 0 {
        tokio::select! {
            message = incoming.next() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Text(text))) => Bytes::copy_from_slice(text.as_bytes()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Some(channel) = data.first().map(|c| usize::from(*c)) else { continue };
                if channel % 2 != 0 {
                    continue;
                }
                if let Some(slot) = to_pods.get_mut(channel / 2) {
                    if let Some(to_pod) = slot.as_mut() {
                        if to_pod.write_all(&data[1..]).await.is_err() {
                            *slot = None;
                        }
                    }
                }
            }
            Some(_) = pumps.join_next(), if !pumps.is_empty() => {
                open -= 1;
            }
        }
    }
    pumps.shutdown().await;
    drop(to_pods);
    let _ = out
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(out);
    if !let_writer_finish(writer).await {
        tracing::debug!("port-forward: the client stopped reading");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn ports_from_the_query() {
        assert_eq!(parse_ports(Some("ports=8080,9090")), Ok(vec![8080, 9090]));
        assert_eq!(parse_ports(Some("ports=80&ports=81")), Ok(vec![80, 81]));
        assert!(parse_ports(Some("ports=0")).is_err());
        assert!(parse_ports(Some("ports=70000")).is_err());
        assert!(parse_ports(Some("ports=80,80")).is_err());
        assert!(parse_ports(None).is_err());
    }

    /// A dialer to 127.0.0.1 on the host, for the tests (no namespace).
    fn local_dial() -> Dial {
        Arc::new(|port| {
            Box::pin(async move {
                TcpStream::connect(("127.0.0.1", port))
                    .await
                    .map_err(|e| format!("failed to connect to localhost:{port}: {e}"))
            })
        })
    }

    /// An echo server that answers one line with "you said: LINE" and closes.
    async fn line_server() -> (u16, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !got.contains(&b'\n') {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let mut answer = b"you said: ".to_vec();
                    answer.extend_from_slice(&got);
                    let _ = conn.write_all(&answer).await;
                });
            }
        });
        (port, task)
    }

    /// A port nothing listens on (bound, then closed).
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr").port()
    }

    /// kubectl's side of a SPDY session, over an in-memory pipe.
    struct Client {
        io: tokio::io::DuplexStream,
        encoder: HeaderEncoder,
        decoder: HeaderDecoder,
        buf: BytesMut,
    }

    impl Client {
        fn new(io: tokio::io::DuplexStream) -> Client {
            Client {
                io,
                encoder: HeaderEncoder::new().expect("encoder"),
                decoder: HeaderDecoder::default(),
                buf: BytesMut::new(),
            }
        }

        async fn send(&mut self, frame: Bytes) {
            self.io.write_all(&frame).await.expect("send");
        }

        async fn open(&mut self, id: u32, kind: &str, port: u16, request: u32) {
            let port = port.to_string();
            let request = request.to_string();
            let frame = spdy::syn_stream(
                id,
                &[
                    ("streamtype", kind),
                    ("port", &port),
                    ("requestid", &request),
                ],
                &mut self.encoder,
            )
            .expect("syn");
            self.send(frame).await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(raw) = RawFrame::parse(&mut self.buf).expect("parse") {
                    return Some(Frame::decode(raw, &mut self.decoder).expect("decode"));
                }
                let read =
                    tokio::time::timeout(Duration::from_secs(10), self.io.read_buf(&mut self.buf))
                        .await
                        .expect("a frame within 10 s");
                if read.expect("read") == 0 {
                    return None;
                }
            }
        }

        /// Frames until both `data_id` and `error_id` ended: (data bytes, error text).
        async fn collect(&mut self, data_id: u32, error_id: u32) -> (Vec<u8>, String) {
            let (mut data, mut error) = (Vec::new(), Vec::new());
            let (mut data_done, mut error_done) = (false, false);
            while !(data_done && error_done) {
                match self.next().await.expect("the session ended early") {
                    Frame::Data {
                        stream_id,
                        fin,
                        data: bytes,
                    } if stream_id == data_id => {
                        data.extend_from_slice(&bytes);
                        data_done |= fin;
                    }
                    Frame::Data {
                        stream_id,
                        fin,
                        data: bytes,
                    } if stream_id == error_id => {
                        error.extend_from_slice(&bytes);
                        error_done |= fin;
                    }
                    _ => {}
                }
            }
            (data, String::from_utf8_lossy(&error).into_owned())
        }
    }

    #[tokio::test]
    async fn a_spdy_session_forwards_connections_and_reports_failures() {
        let (port, server) = line_server().await;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(spdy_session(ours, local_dial()));
        let mut client = Client::new(theirs);

        // Two connections in a row, as kubectl opens them: error stream first, half-closed.
        for (request, ids) in [(0u32, (1u32, 3u32)), (1, (5, 7))] {
            let (error_id, data_id) = ids;
            client.open(error_id, "error", port, request).await;
            assert_eq!(
                client.next().await,
                Some(Frame::StreamHeaders {
                    stream_id: error_id
                })
            );
            client.send(spdy::data(error_id, true, &[])).await;
            client.open(data_id, "data", port, request).await;
            assert_eq!(
                client.next().await,
                Some(Frame::StreamHeaders { stream_id: data_id })
            );
            client
                .send(spdy::data(
                    data_id,
                    false,
                    format!("hello {request}\n").as_bytes(),
                ))
                .await;
            let (data, error) = client.collect(data_id, error_id).await;
            assert_eq!(data, format!("you said: hello {request}\n").into_bytes());
            assert_eq!(error, "");
            client.send(spdy::rst_stream(data_id, 5)).await;
        }

        // Pings come back.
        client.send(spdy::ping(9)).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 9 }));

        // A port nothing listens on: the error text, then both streams end.
        let closed = closed_port().await;
        client.open(11, "error", closed, 2).await;
        client.open(13, "data", closed, 2).await;
        let (data, error) = client.collect(13, 11).await;
        assert!(data.is_empty());
        assert!(
            error.contains(&format!("failed to connect to localhost:{closed}")),
            "{error}"
        );

        // A stream of another type is refused, the session goes on.
        client.open(15, "stdin", port, 3).await;
        assert_eq!(
            client.next().await,
            Some(Frame::RstStream {
                stream_id: 15,
                status: spdy::PROTOCOL_ERROR
            })
        );

        client.send(spdy::goaway(15)).await;
        assert_eq!(client.next().await, None);
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ends after GOAWAY")
            .expect("no panic");
        server.abort();
    }

    #[tokio::test]
    async fn a_reset_ends_the_connection_and_the_error_stream() {
        // A server that holds connections open and reports when one ends.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (ended_tx, mut ended) = mpsc::channel::<()>(4);
        let server = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let ended_tx = ended_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
                    let _ = ended_tx.send(()).await;
                });
            }
        });
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let session = tokio::spawn(spdy_session(ours, local_dial()));
        let mut client = Client::new(theirs);
        client.open(1, "error", port, 0).await;
        client.open(3, "data", port, 0).await;
        client.send(spdy::data(3, false, b"x")).await;
        assert!(matches!(
            client.next().await,
            Some(Frame::StreamHeaders { .. })
        ));
        assert!(matches!(
            client.next().await,
            Some(Frame::StreamHeaders { .. })
        ));
        client.send(spdy::rst_stream(3, 5)).await;
        // kubectl waits for the error stream to end after its reset.
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new()
            })
        );
        tokio::time::timeout(Duration::from_secs(5), ended.recv())
            .await
            .expect("the pod's connection closed after the reset");

        // The client going away ends the session and its connections.
        client.open(5, "error", port, 1).await;
        client.open(7, "data", port, 1).await;
        client.send(spdy::data(7, false, b"y")).await;
        assert!(matches!(
            client.next().await,
            Some(Frame::StreamHeaders { .. })
        ));
        assert!(matches!(
            client.next().await,
            Some(Frame::StreamHeaders { .. })
        ));
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), ended.recv())
            .await
            .expect("the pod's connection closed with the session");
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ended")
            .expect("no panic");
        server.abort();
    }
}
