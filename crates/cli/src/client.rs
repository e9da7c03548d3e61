//! Requests to the API server through the workspace's kube client, keeping what kubectl needs
//! to print: the HTTP status and the `Status` body of a failure.

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::{kubeconfig, Error, Flags, Result};

/// A WebSocket to the API server (exec, attach, port-forward).
pub type WebSocket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The Accept header of `kubectl get` with human output: a server-side Table.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// The Accept header of every other request of this slice.
pub const ACCEPT_JSON: &str = "application/json";

/// A connection to the API server of the selected kubeconfig context.
pub struct ApiClient {
    client: kube::Client,
    /// The namespace of `-n`, else of the context, else `default`.
    namespace: String,
    server: String,
    /// `host:port` of the server, for kubectl's "connection refused" message.
    authority: String,
}

/// A failed request, as the server described it (a `Status`), or as kubectl describes an answer
/// that was not a `Status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// `details.kind` and `details.name` of the Status.
    pub kind: String,
    pub name: String,
    /// `(field, message)` of each of `details.causes`.
    pub causes: Vec<(String, String)>,
    /// A line of ours after kubectl's message (where a field is written), if any.
    pub hint: Option<String>,
}

impl ApiError {
    pub(crate) fn from_response(
        code: StatusCode,
        body: &[u8],
        verb: &str,
        plural: &str,
    ) -> ApiError {
        let status: Option<Value> = serde_json::from_slice(body)
            .ok()
            .filter(|v: &Value| v["kind"] == "Status");
        match status {
            Some(status) => {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                let causes = status["details"]["causes"]
                    .as_array()
                    .map(|causes| {
                        causes
                            .iter()
                            .map(|c| (text(&c["field"]), text(&c["message"])))
                            .collect()
                    })
                    .unwrap_or_default();
                ApiError {
                    code: code.as_u16(),
                    reason: text(&status["reason"]),
                    message: text(&status["message"]),
                    kind: text(&status["details"]["kind"]),
                    name: text(&status["details"]["name"]),
                    causes,
                    hint: None,
                }
            }
            None => {
                // client-go's rendering of a non-Status error body.
                let body = String::from_utf8_lossy(body).trim().to_owned();
                let (reason, message) = match code.as_u16() {
                    404 => (
                        "NotFound",
                        "the server could not find the requested resource".to_owned(),
                    ),
                    403 => ("Forbidden", body),
                    401 => ("Unauthorized", "Unauthorized".to_owned()),
                    _ => (
                        "InternalError",
                        format!(
                            "an error on the server (\"{body}\") has prevented the request from succeeding"
                        ),
                    ),
                };
                ApiError {
                    code: code.as_u16(),
                    reason: reason.to_owned(),
                    message: format!("{message} ({verb} {plural})"),
                    kind: String::new(),
                    name: String::new(),
                    causes: Vec::new(),
                    hint: None,
                }
            }
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404 && self.reason == "NotFound"
    }

    /// kubectl's message for this error (cmdutil.CheckErr / StandardErrorMessage), then our
    /// hint if there is one.
    pub fn render(&self) -> String {
        match &self.hint {
            Some(hint) => format!("{}\n{hint}", self.render_kubectl()),
            None => self.render_kubectl(),
        }
    }

    fn render_kubectl(&self) -> String {
        if self.reason == "Invalid" {
            let mut head = "The request is invalid".to_owned();
            if !self.kind.is_empty() || !self.name.is_empty() {
                head = format!("The {} \"{}\" is invalid", self.kind, self.name);
            }
            return match self.causes.as_slice() {
                [] => head,
                [(field, message)] => format!("{head}: {field}: {message}"),
                causes => {
                    let mut text = format!("{head}: ");
                    for (field, message) in causes {
                        text.push_str(&format!("\n* {field}: {message}"));
                    }
                    text
                }
            };
        }
        match self.reason.as_str() {
            "Unauthorized" => format!(
                "error: You must be logged in to the server ({})",
                self.message
            ),
            "" => format!("Error from server: {}", self.message),
            reason => format!("Error from server ({reason}): {}", self.message),
        }
    }
}

impl ApiClient {
    /// Reads the kubeconfig as kubectl would and prepares a client (no request is sent yet).
    pub async fn connect(flags: &Flags) -> Result<ApiClient> {
        let kubeconfig = kubeconfig::load(flags)?;
        kubeconfig::check_context(&kubeconfig, flags)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kubeconfig::options(flags))
            .await
            .map_err(|source| Error::Kubeconfig {
                what: "cannot use the kubeconfig".to_owned(),
                source: Box::new(source),
            })?;
        let namespace = flags
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let server = server.trim_end_matches('/').to_owned();
        let authority = config
            .cluster_url
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_else(|| server.clone());
        let client = kube::Client::try_from(config).map_err(|source| Error::Request {
            what: format!("cannot set up a client for {server}"),
            source,
        })?;
        Ok(ApiClient {
            client,
            namespace,
            server,
            authority,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// Sends one request; a non-2xx answer becomes [`Error::Api`]. `what` is kubectl's
    /// `(verb plural)` suffix for answers that are not a `Status`.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        accept: &str,
        body: Option<Vec<u8>>,
        what: (&str, &str),
    ) -> Result<Vec<u8>> {
        let body = body.map(|body| ("application/json", body));
        self.send_request(method, uri, accept, body, what).await
    }

    async fn send_request(
        &self,
        method: Method,
        uri: &str,
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
        what: (&str, &str),
    ) -> Result<Vec<u8>> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::ACCEPT, accept);
        if let Some((content_type, _)) = &body {
            request = request.header(http::header::CONTENT_TYPE, *content_type);
        }
        let request = request
            .body(kube::client::Body::from(
                body.map(|(_, body)| body).unwrap_or_default(),
            ))
            .map_err(|err| Error::Message(format!("cannot build the request {uri}: {err}")))?;
        let response = self.dispatch(request, uri).await?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|source| Error::Request {
                what: format!("reading the answer to {uri} failed"),
                source,
            })?
            .to_bytes()
            .to_vec();
        if !status.is_success() {
            return Err(ApiError::from_response(status, &bytes, what.0, what.1).into());
        }
        Ok(bytes)
    }

    /// Sends one request with a body of `content_type` (a PATCH's), else as [`ApiClient::send`].
    pub async fn send_typed(
        &self,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Vec<u8>,
        what: (&str, &str),
    ) -> Result<Vec<u8>> {
        self.send_request(method, uri, ACCEPT_JSON, Some((content_type, body)), what)
            .await
    }

    /// Watches `uri` (a collection with `watch=true`) and returns once `done` holds for an
    /// event (`Ok(true)`), or when the server ends the stream (`Ok(false)`).
    pub async fn watch_until(&self, uri: &str, done: impl FnMut(&Value) -> bool) -> Result<bool> {
        self.watch_with_accept(uri, ACCEPT_JSON, done).await
    }

    /// As [`ApiClient::watch_until`], with another Accept header (`get -w` asks for Tables).
    pub async fn watch_with_accept(
        &self,
        uri: &str,
        accept: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Result<bool> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::ACCEPT, accept)
            .body(kube::client::Body::empty())
            .map_err(|err| Error::Message(format!("cannot build the request {uri}: {err}")))?;
        let response = self
            .client
            .send(request)
            .await
            .map_err(|source| Error::Request {
                what: format!("watch {}{uri} failed", self.server),
                source,
            })?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            return Err(refusal(status, body, ("watch", "")).await);
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| Error::Request {
                what: format!("reading the watch {uri} failed"),
                source,
            })?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            pending.extend_from_slice(data);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                    if done(&event) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Opens a WebSocket on `uri` (exec, attach, port-forward) offering `protocol`, over the
    /// connection the kubeconfig describes (its TLS and credentials, through the kube client).
    /// A refusal (no 101) becomes [`Error::Api`] from the server's `Status`, `what` being
    /// kubectl's `(verb plural)` suffix for answers that are not one.
    pub async fn websocket(
        &self,
        uri: &str,
        protocol: &str,
        what: (&str, &str),
    ) -> Result<WebSocket> {
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            .header(http::header::SEC_WEBSOCKET_KEY, &key)
            .header(http::header::SEC_WEBSOCKET_PROTOCOL, protocol)
            .body(kube::client::Body::empty())
            .map_err(|err| Error::Message(format!("cannot build the request {uri}: {err}")))?;
        let response = self.dispatch(request, uri).await?;
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            return Err(refusal(status, response.into_body(), what).await);
        }
        let accepted = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if accepted != protocol {
            return Err(Error::Message(format!(
                "unable to upgrade connection: the server chose subprotocol {accepted:?}, not {protocol:?}"
            )));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|err| Error::Message(format!("unable to upgrade connection: {err}")))?;
        Ok(WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await)
    }

    /// Sends `request` (to `uri`); a refused connection says which server did not answer.
    async fn dispatch(
        &self,
        request: Request<kube::client::Body>,
        uri: &str,
    ) -> Result<http::Response<kube::client::Body>> {
        self.client.send(request).await.map_err(|source| {
            if is_refused(&source) {
                Error::Connect {
                    server: self.authority.clone(),
                }
            } else {
                Error::Request {
                    what: format!("request to {}{uri} failed", self.server),
                    source,
                }
            }
        })
    }

    /// GETs `uri` and hands each chunk of the answer to `sink` as it arrives (logs, `-f`).
    pub async fn get_stream(
        &self,
        uri: &str,
        what: (&str, &str),
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(http::header::ACCEPT, "*/*")
            .body(kube::client::Body::empty())
            .map_err(|err| Error::Message(format!("cannot build the request {uri}: {err}")))?;
        let response = self.dispatch(request, uri).await?;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            return Err(refusal(status, body, what).await);
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|source| Error::Request {
                what: format!("reading the answer to {uri} failed"),
                source,
            })?;
            if let Some(data) = frame.data_ref() {
                sink(data)?;
            }
        }
        Ok(())
    }

    /// GETs `uri`, an object or a list of `plural`, and parses the answer as JSON; a failure
    /// that is not a `Status` reads as kubectl's `(get plural)`.
    pub async fn get_resource_json(&self, uri: &str, accept: &str, plural: &str) -> Result<Value> {
        let bytes = self
            .send(Method::GET, uri, accept, None, ("get", plural))
            .await?;
        parse(&bytes, uri)
    }

    /// GETs `uri` and parses the answer as JSON.
    pub async fn get_json(&self, uri: &str, accept: &str) -> Result<Value> {
        let bytes = self
            .send(Method::GET, uri, accept, None, ("get", ""))
            .await?;
        parse(&bytes, uri)
    }
}

/// The error of an answer that is not the one asked for: the server's `Status` in `body`
/// (read whole; one that cannot be read counts as empty), `what` as in [`ApiClient::send`].
async fn refusal(status: StatusCode, body: kube::client::Body, what: (&str, &str)) -> Error {
    let bytes = body
        .collect()
        .await
        .map(|c| c.to_bytes().to_vec())
        .unwrap_or_default();
    ApiError::from_response(status, &bytes, what.0, what.1).into()
}

pub fn parse(bytes: &[u8], uri: &str) -> Result<Value> {
    serde_json::from_slice(bytes)
        .map_err(|err| Error::Message(format!("the answer to {uri} is not JSON: {err}")))
}

fn is_refused(err: &kube::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        if current.to_string().contains("Connection refused") {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str, code: u16) -> ApiError {
        let code = StatusCode::from_u16(code).expect("a valid code");
        ApiError::from_response(code, body.as_bytes(), "get", "pods")
    }

    #[test]
    fn statuses_render_as_kubectl_renders_them() {
        let not_found = status(
            r#"{"kind":"Status","status":"Failure","message":"pods \"nope\" not found","reason":"NotFound","details":{"name":"nope","kind":"pods"},"code":404}"#,
            404,
        );
        assert!(not_found.is_not_found());
        assert_eq!(
            not_found.render(),
            r#"Error from server (NotFound): pods "nope" not found"#
        );
        let invalid = status(
            r#"{"kind":"Status","reason":"Invalid","message":"x","details":{"name":"kubia-bad","kind":"Pod","causes":[{"field":"metadata.label","message":"unknown field"}]},"code":422}"#,
            422,
        );
        assert_eq!(
            invalid.render(),
            r#"The Pod "kubia-bad" is invalid: metadata.label: unknown field"#
        );
        let text = status("boom", 500);
        assert_eq!(
            text.render(),
            "Error from server (InternalError): an error on the server (\"boom\") has prevented the request from succeeding (get pods)"
        );
    }
}
