//! A test API server over real HTTPS on a SQLite store in a temporary directory, and a small
//! client for it: requests, Status assertions and watch streams read with timeouts.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use skiff_apiserver::{ApiServer, Config};
use skiff_store::SqliteStore;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Mutex};
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running server with its data directory and store handle.
pub struct TestServer {
    pub dir: Arc<tempfile::TempDir>,
    pub store: Arc<SqliteStore>,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on a fresh data directory.
    pub async fn start() -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::start_in(dir).await
    }

    /// Starts a server on an existing data directory (a restart).
    pub async fn start_in(dir: Arc<tempfile::TempDir>) -> TestServer {
        let store = SqliteStore::open(&dir.path().join("db/state.db")).expect("store opens");
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            bind_address: "127.0.0.1".into(),
            port: 0,
            tls_sans: vec![],
        };
        let server = ApiServer::bind(&config, store.clone())
            .await
            .expect("server binds");
        let client = Client::new(server.address, dir.path());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        TestServer {
            dir,
            store,
            client,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting connections and waits for the server loop to end.
    pub async fn stop(mut self) -> Arc<tempfile::TempDir> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
        self.store.close();
        self.dir.clone()
    }
}

impl std::ops::Deref for TestServer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts the status code and returns the JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        self.json()
    }

    /// Asserts a failure Status with this code and reason, and returns it.
    #[track_caller]
    pub fn expect_status(&self, code: u16, reason: &str) -> Value {
        let status = self.expect(code);
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["apiVersion"], "v1", "{status}");
        assert_eq!(status["status"], "Failure", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        status
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTPS client holding one kept-alive connection for plain requests.
pub struct Client {
    pub addr: std::net::SocketAddr,
    pub token: String,
    tls: tokio_rustls::TlsConnector,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Client {
    fn new(addr: std::net::SocketAddr, data_dir: &Path) -> Client {
        let ca = std::fs::read(data_dir.join("tls/ca.crt")).expect("CA written at bind");
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut ca.as_slice()) {
            roots.add(c.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let token = std::fs::read_to_string(data_dir.join("token"))
            .expect("token written at bind")
            .trim()
            .to_string();
        Client {
            addr,
            token,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            conn: Mutex::new(None),
        }
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        // The serving certificate names 127.0.0.1; verify it as a real client does.
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let tls = self.tls.connect(name, tcp).await.expect("TLS handshake");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP handshake");
        tokio::spawn(conn);
        send
    }

    fn build(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1");
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        for (k, v) in headers {
            if !v.is_empty() {
                req = req.header(*k, *v);
            }
        }
        req.body(Full::new(Bytes::from(body))).expect("request")
    }

    /// One request on the kept-alive connection (reconnecting when the server closed it).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Resp {
        let body = body.into();
        let mut guard = self.conn.lock().await;
        let mut send = match guard.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await,
        };
        let call = async {
            send.ready().await.expect("connection ready");
            let resp = send
                .send_request(self.build(method, path, headers, body))
                .await
                .expect("response");
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.expect("body").to_bytes();
            Resp {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            }
        };
        let resp = tokio::time::timeout(WAIT, call)
            .await
            .unwrap_or_else(|_| panic!("{method} {path} timed out"));
        *guard = Some(send);
        resp
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], Vec::new()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "POST",
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.request(
            "PUT",
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Resp {
        self.request(
            "PATCH",
            path,
            &[("content-type", content_type)],
            body.to_string(),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.request("DELETE", path, &[], Vec::new()).await
    }

    pub async fn delete_with(&self, path: &str, options: &Value) -> Resp {
        self.request(
            "DELETE",
            path,
            &[("content-type", "application/json")],
            options.to_string(),
        )
        .await
    }

    /// Creates a pod in `namespace` and returns it as the server answered.
    pub async fn create_pod(&self, namespace: &str, pod: &Value) -> Value {
        self.post(&format!("/api/v1/namespaces/{namespace}/pods"), pod)
            .await
            .expect(201)
    }

    /// Binds a pod to a node through the binding subresource.
    pub async fn bind(&self, namespace: &str, name: &str, node: &str) -> Resp {
        self.post(
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/binding"),
            &json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }),
        )
        .await
    }

    /// The names of the items of a list response, in order.
    pub async fn list_names(&self, path: &str) -> Vec<String> {
        let list = self.get(path).await.expect(200);
        names(&list)
    }

    /// Opens a watch (on its own connection) and returns its event stream.
    pub async fn watch(&self, path: &str) -> Watch {
        self.watch_with(path, &[]).await
    }

    pub async fn watch_with(&self, path: &str, headers: &[(&str, &str)]) -> Watch {
        let mut send = self.connect().await;
        let resp = tokio::time::timeout(
            WAIT,
            send.send_request(self.build("GET", path, headers, Vec::new())),
        )
        .await
        .expect("watch answered in time")
        .expect("watch response");
        Watch {
            status: resp.status().as_u16(),
            body: resp.into_body(),
            buffer: Vec::new(),
            _conn: send,
        }
    }
}

/// The `metadata.name` of every item of a list.
pub fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_string())
        .collect()
}

/// A pod with one container.
pub fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    })
}

/// A pod with labels.
pub fn labelled_pod(name: &str, labels: Value) -> Value {
    let mut p = pod(name);
    p["metadata"]["labels"] = labels;
    p
}

/// An open watch: newline-delimited JSON events.
pub struct Watch {
    pub status: u16,
    body: Incoming,
    buffer: Vec<u8>,
    _conn: SendRequest<Full<Bytes>>,
}

/// What reading a watch gave.
#[derive(Debug)]
pub enum Next {
    Event(Value),
    /// The server ended the stream.
    End,
    /// Nothing arrived in time.
    Quiet,
}

impl Watch {
    /// The next event, the end of the stream, or Quiet after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=at).collect();
                let event = serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!(
                        "watch line is not JSON ({e}): {}",
                        String::from_utf8_lossy(&line)
                    )
                });
                return Next::Event(event);
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::End,
                Ok(Some(Err(e))) => panic!("watch stream failed: {e}"),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next event; fails the test if none arrives within `WAIT`.
    #[track_caller]
    pub fn next(&mut self) -> impl std::future::Future<Output = Value> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_within(WAIT).await {
                Next::Event(e) => e,
                other => panic!("expected a watch event at {caller}, got {other:?}"),
            }
        }
    }

    /// The next event's type and object name.
    pub async fn next_typed(&mut self) -> (String, String, Value) {
        let event = self.next().await;
        let kind = event["type"].as_str().expect("type").to_string();
        let name = event["object"]["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (kind, name, event)
    }

    /// Asserts nothing more arrives within `wait` (a short, bounded check of absence).
    pub async fn expect_quiet(&mut self, wait: Duration) {
        match self.next_within(wait).await {
            Next::Quiet => {}
            other => panic!("expected no more watch events, got {other:?}"),
        }
    }
}
