//! The actions of probes and lifecycle hooks: a command run in the container (the same path as
//! `kubectl exec`), an HTTP GET or a TCP connect from the node into the pod's network
//! namespace. Sockets are made in the pod's namespace by one thread of the agent that enters
//! it, makes the socket and comes back: no process and no thread per probe.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, HTTPHeader};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::runtime::PodRuntime;

/// How much of a command's output or of a response a probe keeps (kubelet's 10 KiB).
const MAX_OUTPUT: usize = 10 * 1024;

/// What an action reached: success or failure with the output kubelet shows in its event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// A success with something to say (kubelet's `probe.Warning`: an httpGet answered by a
    /// redirect that was not followed); recorded as a `ProbeWarning` event.
    Warning(String),
    Failure(String),
}

/// Where a container's network actions go: the pod's network namespace and IP.
#[derive(Clone, Debug)]
pub struct PodTarget {
    /// The pod's network namespace file (None: the pod has no sandbox on this node).
    pub netns: Option<PathBuf>,
    /// The pod's IP, the default host of httpGet and tcpSocket.
    pub pod_ip: Option<String>,
}

/// The port an action names, by number or by the name of one of the container's ports
/// (kubelet's ResolveContainerPort, with its messages).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| format!("port {name:?} not found"))?,
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid port number: {number}"))
}

/// The host an action names, else the pod's IP.
fn host_of<'a>(host: Option<&'a str>, target: &'a PodTarget) -> Result<&'a str, String> {
    host.filter(|h| !h.is_empty())
        .or(target.pod_ip.as_deref())
        .ok_or_else(|| "the pod has no IP yet".to_string())
}

/// The address of `host` (an IP, or a name the node's resolver knows, as kubelet's dialer
/// resolves it) and `port`; a name that does not resolve is Go's dial error.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let no_such_host = || format!("dial tcp: lookup {host}: no such host");
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| no_such_host())?
        .collect();
    if found.is_empty() {
        return Err(no_such_host());
    }
    Ok(found)
}

/// A connection to the first of `addrs` that takes one, as Go's dialer tries a name's
/// addresses in turn; else the last error.
async fn connect_any(
    target: &PodTarget,
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, String> {
    let mut last = "no address".to_string();
    for addr in addrs {
        match connect(target, *addr, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The pod's network cannot be reached (no sandbox here): the probe errors out, uncounted,
/// rather than failing (which would kill a healthy container for the node's fault).
fn has_namespace(target: &PodTarget) -> Result<(), String> {
    match target.netns {
        Some(_) => Ok(()),
        None => Err("the pod has no network namespace on this node".into()),
    }
}

/// A request for a socket made in a network namespace.
struct SocketRequest {
    netns: PathBuf,
    v6: bool,
    reply: tokio::sync::oneshot::Sender<Result<TcpSocket, String>>,
}

/// The thread that makes sockets in pods' network namespaces.
struct NamespaceSockets {
    tx: std::sync::mpsc::Sender<SocketRequest>,
}

static SOCKETS: OnceLock<Result<NamespaceSockets, String>> = OnceLock::new();

impl NamespaceSockets {
    fn start() -> Result<NamespaceSockets, String> {
        let home = std::fs::File::open("/proc/thread-self/ns/net")
            .map_err(|e| format!("cannot open the agent's network namespace: {e}"))?;
        let (tx, rx) = std::sync::mpsc::channel::<SocketRequest>();
        std::thread::Builder::new()
            .name("netns-sockets".into())
            .spawn(move || {
                for request in rx {
                    let made = socket_in(&request.netns, request.v6);
                    // Back home, so no pod's namespace is kept alive by this thread.
                    if let Err(e) = rustix::thread::move_into_link_name_space(
                        home.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    ) {
                        tracing::warn!(error = %e, "cannot return to the agent's network namespace");
                    }
                    let _ = request.reply.send(made);
                }
            })
            .map_err(|e| format!("cannot start the thread that makes sockets in pods: {e}"))?;
        Ok(NamespaceSockets { tx })
    }
}

/// A TCP socket made in network namespace `netns` (by the calling thread, which stays there).
fn socket_in(netns: &std::path::Path, v6: bool) -> Result<TcpSocket, String> {
    crate::netns::enter(netns)?;
    let socket = if v6 {
        TcpSocket::new_v6()
    } else {
        TcpSocket::new_v4()
    };
    socket.map_err(|e| format!("cannot make a socket: {e}"))
}

/// Connects to `addr` from inside the pod's network namespace, within `timeout`; the error
/// reads like Go's dialer's (`dial tcp 10.0.0.5:80: connect: connection refused`).
pub async fn connect(
    target: &PodTarget,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let netns = target
        .netns
        .clone()
        .ok_or_else(|| "the pod has no network namespace on this node".to_string())?;
    let sockets = SOCKETS
        .get_or_init(NamespaceSockets::start)
        .as_ref()
        .map_err(Clone::clone)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    sockets
        .tx
        .send(SocketRequest {
            netns,
            v6: addr.is_ipv6(),
            reply,
        })
        .map_err(|_| "the thread that makes sockets in pods is gone".to_string())?;
    let socket = answer
        .await
        .map_err(|_| "the thread that makes sockets in pods did not answer".to_string())??;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {}", io_text(&e))),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// An I/O error as Go prints it (`connection refused`), without Rust's `(os error 111)`.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    };
    text.to_lowercase()
}

/// tcpSocket: a connection is success.
pub async fn tcp_check(
    host: Option<&str>,
    port: u16,
    target: &PodTarget,
    timeout: Duration,
) -> Result<Outcome, String> {
    let host = host_of(host, target)?;
    has_namespace(target)?;
    let addrs = match resolve(host, port).await {
        Ok(addrs) => addrs,
        Err(e) => return Ok(Outcome::Failure(e)),
    };
    Ok(match connect_any(target, &addrs, timeout).await {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::Failure(e),
    })
}

/// The status code of an HTTP/1.1 response's status line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..1000).contains(&code).then_some(code)
}

/// The request kubelet's prober sends: its User-Agent and Accept unless the spec's headers
/// set them, Host from the spec's headers or the address.
pub fn http_request(path: &str, authority: &str, headers: &[HTTPHeader]) -> Vec<u8> {
    let path = if path.is_empty() { "/" } else { path };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let has = |name: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(name));
    let mut text = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        text.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        text.push_str("User-Agent: kube-probe/1.35\r\n");
    }
    if !has("accept") {
        text.push_str("Accept: */*\r\n");
    }
    for h in headers {
        // A header with a line break would smuggle a second request: dropped.
        if h.name.contains(['\r', '\n', ':']) || h.value.contains(['\r', '\n']) {
            continue;
        }
        text.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.into_bytes()
}

/// A response as a probe needs it: the status code, and for a redirect (3xx) its `Location`
/// and its body (the first [`MAX_OUTPUT`] bytes, lossily as text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub location: Option<String>,
    pub body: String,
}

/// Sends `request` on `stream` and reads the response's status code; for a redirect, the
/// rest of the response too (the request asks the server to close the connection after it).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    let mut code = None;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() >= 2 * MAX_OUTPUT {
            break;
        }
        if code.is_none() && head.contains(&b'\n') {
            code = parse_status_line(&head);
            // Only a redirect needs the rest.
            if !code.is_some_and(|c| (300..400).contains(&c)) {
                break;
            }
        }
        if response_complete(&head) {
            break;
        }
    }
    let code = code.or_else(|| parse_status_line(&head)).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "malformed HTTP response".to_string(),
        )
    })?;
    let redirect = (300..400).contains(&code);
    let location = redirect.then(|| header_value(&head, "location")).flatten();
    let body = match head.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) if redirect => {
            let body = &head[end + 4..];
            String::from_utf8_lossy(&body[..body.len().min(MAX_OUTPUT)]).into_owned()
        }
        _ => String::new(),
    };
    Ok(Answer {
        code,
        location,
        body,
    })
}

/// Whether `response` holds a whole response: its head, and its body as long as its
/// `Content-Length` says, or a chunked body's last chunk; else it ends when the server closes.
fn response_complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = &response[..end + 4];
    let body = &response[end + 4..];
    if let Some(length) = header_value(head, "content-length").and_then(|v| v.parse::<usize>().ok())
    {
        return body.len() >= length;
    }
    header_value(head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        && body.ends_with(b"0\r\n\r\n")
}

/// The value of header `name` (lower case) in a response head.
fn header_value(head: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    text.split("\r\n").skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_string())
    })
}

/// Where a redirect leads, as Go's client resolves `Location` against the request's URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hop {
    pub https: bool,
    /// The host as written (an IP; kubelet compares host names, not addresses).
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Hop {
    /// `host:port` (`[v6]:port`), as the Host header and URLs write it.
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// The next hop of a redirect from `from` to `location`: an absolute URL, a scheme-relative
/// one, an absolute path or a path relative to the current one. None: not a URL we can follow.
pub fn resolve_redirect(from: &Hop, location: &str) -> Option<Hop> {
    let (https, rest) = if let Some(rest) = location.strip_prefix("http://") {
        (false, Some(rest))
    } else if let Some(rest) = location.strip_prefix("https://") {
        (true, Some(rest))
    } else if let Some(rest) = location.strip_prefix("//") {
        (from.https, Some(rest))
    } else {
        (from.https, None)
    };
    let Some(rest) = rest else {
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = from.path.split(['?', '#']).next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
            format!("{}{location}", if dir.is_empty() { "/" } else { dir })
        };
        return Some(Hop {
            path,
            ..from.clone()
        });
    };
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let default_port = if https { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), port.parse().ok()?),
            None => (authority.to_string(), default_port),
        }
    };
    Some(Hop {
        https,
        host,
        port,
        path,
    })
}

/// How many redirects kubelet's client follows before giving up (Go's default).
const MAX_REDIRECTS: usize = 10;

/// httpGet: a status from 200 to 399 is success. Redirects are followed as kubelet's client
/// follows them: to the same host (another port or scheme too), at most 10; one to another
/// host is not followed and its 3xx counts as success with a warning (kubelet's `Probe
/// terminated redirects, Response body: ...`). HTTPS does not verify the certificate, as
/// kubelet does not.
pub async fn http_get(
    action: &HTTPGetAction,
    container: &Container,
    target: &PodTarget,
    timeout: Duration,
) -> Result<Outcome, String> {
    Ok(
        match http_status(action, container, target, timeout).await? {
            Ok(answer) if (200..300).contains(&answer.code) => Outcome::Success,
            Ok(answer) if (300..400).contains(&answer.code) => Outcome::Warning(format!(
                "Probe terminated redirects, Response body: {}",
                answer.body
            )),
            Ok(answer) => Outcome::Failure(format!(
                "HTTP probe failed with statuscode: {}",
                answer.code
            )),
            Err(e) => Outcome::Failure(e),
        },
    )
}

/// Sends the GET of `action` (following same-host redirects) and reads the final response
/// ([`Answer`]), all within `timeout`. The outer error: the action cannot be run (a port name
/// that is not there); the inner one: the request failed, as Go's client words it.
pub async fn http_status(
    action: &HTTPGetAction,
    container: &Container,
    target: &PodTarget,
    timeout: Duration,
) -> Result<Result<Answer, String>, String> {
    let port = resolve_port(&action.port, container)?;
    let host = host_of(action.host.as_deref(), target)?;
    has_namespace(target)?;
    let https = action
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"));
    let path = action.path.as_deref().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let first = Hop {
        https,
        host: host.to_string(),
        port,
        path,
    };
    let headers = action.http_headers.as_deref().unwrap_or(&[]);
    let url = first.url();
    let attempt = async {
        let mut hop = first.clone();
        let mut redirects = 0;
        loop {
            let addrs = resolve(&hop.host, hop.port)
                .await
                .map_err(|e| (hop.url(), e))?;
            let request = http_request(&hop.path, &hop.authority(), headers);
            let stream = connect_any(target, &addrs, timeout)
                .await
                .map_err(|e| (hop.url(), e))?;
            let addr = stream.peer_addr().map_err(|e| (hop.url(), io_text(&e)))?;
            let answer = if hop.https {
                let connector =
                    tokio_rustls::TlsConnector::from(insecure_tls().map_err(|e| (hop.url(), e))?);
                let name = match rustls::pki_types::ServerName::try_from(hop.host.clone()) {
                    Ok(name) => name,
                    Err(_) => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
                };
                let tls = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| (hop.url(), format!("tls: {}", io_text(&e))))?;
                exchange(tls, &request).await
            } else {
                exchange(stream, &request).await
            };
            let answer = answer.map_err(|e| (hop.url(), io_text(&e)))?;
            let next = answer
                .location
                .as_deref()
                .and_then(|l| resolve_redirect(&hop, l));
            match next {
                // Another host: kubelet's client stops and keeps the redirect as the answer.
                Some(next) if next.host == first.host => {
                    redirects += 1;
                    if redirects >= MAX_REDIRECTS {
                        return Err((next.url(), "stopped after 10 redirects".to_string()));
                    }
                    hop = next;
                }
                _ => return Ok(answer),
            }
        }
    };
    Ok(match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err((at, e))) if e.starts_with("stopped after") => Err(format!("Get {at:?}: {e}")),
        Ok(Err((_, e))) => Err(format!("Get {url:?}: {e}")),
        Err(_) => Err(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    })
}

/// grpc: `grpc.health.v1.Health/Check` of `service` (default: the server as a whole) on the
/// pod's IP; SERVING is success. Messages as kubelet's.
pub async fn grpc_check(
    action: &GRPCAction,
    target: &PodTarget,
    timeout: Duration,
) -> Result<Outcome, String> {
    let port = u16::try_from(action.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {}", action.port))?;
    let addr = SocketAddr::new(
        host_of(None, target)?
            .parse::<IpAddr>()
            .map_err(|_| "the pod's IP is not an IP address".to_string())?,
        port,
    );
    has_namespace(target)?;
    let service = action.service.clone().unwrap_or_default();
    let secs = timeout.as_secs();
    let stream = match connect(target, addr, timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            return Ok(Outcome::Failure(format!(
                "timeout: failed to connect service \"{addr}\" within {secs}s: {e}"
            )))
        }
    };
    let authority = addr.to_string();
    let call = super::grpc::check(stream, &authority, &service);
    Ok(match tokio::time::timeout(timeout, call).await {
        Ok(Ok(None)) => Outcome::Success,
        Ok(Ok(Some(why))) => Outcome::Failure(why),
        Ok(Err(e)) => Outcome::Failure(format!("rpc error: {e}")),
        Err(_) => Outcome::Failure(format!(
            "timeout: health rpc did not complete within {secs}s"
        )),
    })
}

/// A TLS client that accepts any certificate (kubelet's probes set InsecureSkipVerify).
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a command run in a container did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecEnd {
    /// It exited with this code; its output (stdout then stderr, at most 10 KiB).
    Exited { code: i32, output: String },
    /// It ran past the timeout and was killed.
    TimedOut,
}

/// Runs `command` in the running container `id` (through the runtime's launcher: no process
/// of the agent's per command), its stdout and stderr into one pipe (kubelet's combined
/// output), stdin from /dev/null; killed, with its process group, after `timeout`. An error:
/// it could not be run at all.
pub async fn exec_in(
    runtime: &Arc<dyn PodRuntime>,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<ExecEnd, String> {
    use skiff_runtime::container::exec::{ExecEnd as Ended, ExecReport};
    let (output, output_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("cannot make a pipe for the command's output: {e}"))?;
    // One /dev/null for every command's stdin (the launcher passes a copy on).
    static NULL: OnceLock<Result<std::fs::File, String>> = OnceLock::new();
    let null = NULL
        .get_or_init(|| {
            std::fs::File::open("/dev/null")
                .map_err(|e| format!("cannot open /dev/null for the command's stdin: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)?;
    let control = runtime
        .spawn_exec(
            id,
            command,
            [null.as_fd(), output_write.as_fd(), output_write.as_fd()],
        )
        .map_err(|e| e.to_string())?;
    // The command holds its own copy: the output ends when it (and what it started) exits.
    drop(output_write);
    let setup = |e: std::io::Error| format!("waiting for the command: {e}");
    control.set_nonblocking(true).map_err(setup)?;
    // Dropping the control socket before the end (the timeout below) kills the command.
    let mut control = tokio::net::UnixStream::from_std(control).map_err(setup)?;
    let mut output = tokio::net::unix::pipe::Receiver::from_owned_fd(output).map_err(setup)?;
    let run = async {
        let mut report = String::new();
        let mut text = Vec::new();
        let (reported, read) = tokio::join!(
            control.read_to_string(&mut report),
            read_capped(&mut output, &mut text)
        );
        reported.and(read).map(|()| (report, text))
    };
    let (report, text) = match tokio::time::timeout(timeout, run).await {
        Err(_) => return Ok(ExecEnd::TimedOut),
        Ok(Err(e)) => return Err(format!("waiting for the command: {e}")),
        Ok(Ok(done)) => done,
    };
    match ExecReport::parse(&report).end {
        Ended::Exited(code) => Ok(ExecEnd::Exited {
            code,
            output: String::from_utf8_lossy(&text).into_owned(),
        }),
        Ended::NotStarted { code, message } => Ok(ExecEnd::Exited {
            code,
            output: message,
        }),
        Ended::Lost => Err("the command's exit was not reported (the launcher is gone)".into()),
    }
}

/// Reads `reader` to its end, keeping the first [`MAX_OUTPUT`] bytes in `kept` (allocated
/// only when there is output).
async fn read_capped<R: AsyncRead + Unpin>(
    reader: &mut R,
    kept: &mut Vec<u8>,
) -> std::io::Result<()> {
    let mut buf = [0u8; 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container_with_ports() -> Container {
        Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        }
    }

    #[test]
    fn ports_resolve_by_number_and_by_name() {
        let c = container_with_ports();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &c),
            Err("port \"metrics\" not found".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err("invalid port number: 70000".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c),
            Err("invalid port number: 0".into())
        );
    }

    #[test]
    fn redirects_resolve_as_gos_client_resolves_them() {
        let from = Hop {
            https: false,
            host: "10.0.0.5".into(),
            port: 8080,
            path: "/a/b?x=1".into(),
        };
        let hop = |https, host: &str, port, path: &str| Hop {
            https,
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            resolve_redirect(&from, "/ok"),
            Some(hop(false, "10.0.0.5", 8080, "/ok"))
        );
        assert_eq!(
            resolve_redirect(&from, "c"),
            Some(hop(false, "10.0.0.5", 8080, "/a/c"))
        );
        assert_eq!(
            resolve_redirect(&from, "https://10.0.0.5:8443/s"),
            Some(hop(true, "10.0.0.5", 8443, "/s"))
        );
        assert_eq!(
            resolve_redirect(&from, "http://10.0.0.5"),
            Some(hop(false, "10.0.0.5", 80, "/"))
        );
        assert_eq!(
            resolve_redirect(&from, "//example.invalid/x"),
            Some(hop(false, "example.invalid", 80, "/x"))
        );
        assert_eq!(
            resolve_redirect(&from, "https://[fd00::1]/v6"),
            Some(hop(true, "fd00::1", 443, "/v6"))
        );
        assert_eq!(resolve_redirect(&from, "http://10.0.0.5:bad/"), None);
        assert_eq!(
            hop(true, "fd00::1", 443, "/v6").url(),
            "https://[fd00::1]:443/v6"
        );
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 404 Not Found\r\nX: y"),
            Some(404)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 302\r\n"), Some(302));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn requests_carry_kubelets_headers_unless_overridden() {
        let text = String::from_utf8(http_request("healthz", "10.0.0.5:80", &[])).expect("ascii");
        assert!(text.starts_with("GET /healthz HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("Host: 10.0.0.5:80\r\n"));
        assert!(text.contains("User-Agent: kube-probe/1.35\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let headers = vec![
            HTTPHeader {
                name: "Host".into(),
                value: "example.com".into(),
            },
            HTTPHeader {
                name: "X-Evil".into(),
                value: "a\r\nGET / HTTP/1.1".into(),
            },
        ];
        let text = String::from_utf8(http_request("/", "10.0.0.5:80", &headers)).expect("ascii");
        assert!(text.contains("Host: example.com\r\n"));
        assert!(!text.contains("10.0.0.5"));
        assert!(!text.contains("X-Evil"));
    }

    #[tokio::test]
    async fn addresses_default_to_the_pod_ip_and_names_resolve_on_the_node() {
        let target = PodTarget {
            netns: None,
            pod_ip: Some("10.1.0.7".into()),
        };
        assert_eq!(host_of(None, &target), Ok("10.1.0.7"));
        assert_eq!(host_of(Some(""), &target), Ok("10.1.0.7"));
        assert_eq!(host_of(Some("localhost"), &target), Ok("localhost"));
        let none = PodTarget {
            netns: None,
            pod_ip: None,
        };
        assert!(host_of(None, &none).is_err());
        assert_eq!(
            resolve("10.1.0.7", 80).await,
            Ok(vec!["10.1.0.7:80".parse().expect("address")])
        );
        // From /etc/hosts: no query leaves the machine.
        let local = resolve("localhost", 8080)
            .await
            .expect("localhost resolves");
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080),
            "{local:?}"
        );
    }

    /// Runs `exchange` against a server that answers `response` and then keeps the connection
    /// open (as a server ignoring `Connection: close` would).
    fn exchange_with(response: &'static [u8]) -> Answer {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (client, mut server) = tokio::io::duplex(64 * 1024);
            let serve = async move {
                let mut request = [0u8; 1024];
                let _ = server.read(&mut request).await;
                server.write_all(response).await.expect("answer");
                // Held open until the exchange is over.
                server
            };
            let (answer, _server) =
                tokio::join!(exchange(client, b"GET / HTTP/1.1\r\n\r\n"), serve);
            answer.expect("an answer")
        })
    }

    #[test]
    fn redirects_are_read_whole_and_other_answers_by_their_status_line() {
        let answer = exchange_with(
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nContent-Length: 5\r\n\r\nmoved",
        );
        assert_eq!(
            answer,
            Answer {
                code: 302,
                location: Some("http://elsewhere.example/".into()),
                body: "moved".into()
            }
        );
        let chunked = exchange_with(
            b"HTTP/1.1 301 Moved\r\nLocation: /x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        assert_eq!(
            (chunked.code, chunked.location.as_deref()),
            (301, Some("/x"))
        );
        let ok = exchange_with(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        assert_eq!((ok.code, ok.location, ok.body), (200, None, String::new()));
    }

    #[test]
    fn io_errors_read_like_gos() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_text(&e), "connection refused");
    }
}
