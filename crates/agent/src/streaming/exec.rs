//! `GET /exec/{namespace}/{pod}/{container}?command=...`: a command run in a running container,
//! its stdio carried over a WebSocket in the channel protocol kubectl speaks (`v5.channel.k8s.io`,
//! or `v4.channel.k8s.io` for older clients): byte 0 of each binary message is the channel (0
//! stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resizes, 255 close-a-channel in v5).
//!
//! The session owns the process: when the client goes away the process is killed by the pid the
//! runtime recorded (killing the runtime's exec alone would leave it running in the container).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use skiff_runtime::container::exec::{is_start_failure, start_failure_code, PreparedExec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::{running_container, status, websocket_accepted, Body, StreamingContext};

/// The header with the runtime id of the container, from the API server.
const CONTAINER_ID_HEADER: &str = "x-skiff-container-id";

/// Whether runtime id `id` (`<pod-uid>_<restart>_<name>`) is an instance of `container`.
fn names_container(id: &str, container: &str) -> bool {
    let mut parts = id.splitn(3, '_');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(uid), Some(restart), Some(name)) => {
            !uid.is_empty()
                && restart.parse::<u32>().is_ok()
                && name == container
                && !id.contains('/')
        }
        _ => false,
    }
}

/// How long a session whose client left waits for the runtime to record the process's pid.
const PID_FILE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The subprotocols served, preferred first.
pub(super) const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub(super) const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
pub(super) const ERROR: u8 = 3;
pub(super) const RESIZE: u8 = 4;
pub(super) const CLOSE: u8 = 255;

/// The streams an exec or attach client asks for, by kubectl's names or the older ones.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Stdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Stdio {
    /// Takes the query parameter `key=value` if it names a stream or the terminal; false when
    /// it is another parameter.
    pub(super) fn take(&mut self, key: &str, value: &str) -> bool {
        let on = matches!(value, "" | "true" | "1");
        match key {
            "stdin" | "input" => self.stdin = on,
            "stdout" | "output" => self.stdout = on,
            "stderr" | "error" => self.stderr = on,
            "tty" => self.tty = on,
            _ => return false,
        }
        true
    }

    /// Refuses a request for no stream; with a terminal, no stderr (a terminal has one output:
    /// kubectl never asks for both).
    pub(super) fn checked(mut self) -> Result<Self, String> {
        if !(self.stdin || self.stdout || self.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        if self.tty {
            self.stderr = false;
        }
        Ok(self)
    }
}

/// What the client asked for.
#[derive(Debug, Default, PartialEq, Eq)]
struct ExecOptions {
    command: Vec<String>,
    stdio: Stdio,
}

fn parse_options(query: Option<&str>) -> Result<ExecOptions, String> {
    let mut options = ExecOptions::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "command" {
            options.command.push(value.into_owned());
        } else {
            options.stdio.take(&key, &value);
        }
    }
    if options.command.is_empty() {
        return Err("you must specify at least one command for the container".into());
    }
    options.stdio = options.stdio.checked()?;
    Ok(options)
}

/// The subprotocol to answer with, from the client's offers (one header, comma-separated, or
/// several headers).
pub(super) fn pick_protocol(req: &Request<Incoming>) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    PROTOCOLS
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .copied()
}

/// The final Status kubectl reads on the error channel.
fn exit_status(command: &[String], code: Option<i32>) -> serde_json::Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        None => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("error executing command [{}]: the process was killed", command.join(" ")),
            "reason": "InternalError",
        }),
    }
}

pub async fn serve(
    ctx: &StreamingContext,
    namespace: &str,
    pod: &str,
    container: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let request = match ChannelRequest::read(&req, "exec", container, parse_options) {
        Ok(request) => request,
        Err(message) => return status(400, "BadRequest", &message),
    };
    // The API server says which container runs (it has the pod at hand); else ask the API.
    let id = match request.told_id.clone() {
        Some(id) => id,
        None => match running_container(ctx, namespace, pod, container).await {
            Ok(id) => id,
            Err(resp) => return resp,
        },
    };
    let runtime = ctx.runtime.clone();
    let (command, tty) = (request.options.command.clone(), request.options.stdio.tty);
    let prepared =
        match tokio::task::spawn_blocking(move || runtime.prepare_exec(&id, &command, tty)).await {
            Ok(Ok(prepared)) => prepared,
            Ok(Err(e)) => return status(500, "InternalError", &e.0),
            Err(e) => return status(500, "InternalError", &e.to_string()),
        };
    request.upgrade(&mut req, tracing::Span::none(), |ws, options, v5| {
        session(ws, prepared, options, v5)
    })
}

/// The WebSocket of an exec or attach session, once the connection is upgraded.
pub(super) type ChannelSocket = WebSocketStream<super::UpgradedIo>;

/// What an exec and an attach read from their request before anything else: the client's
/// options, the WebSocket key and channel protocol, and the runtime id of the container when
/// the API server told it.
pub(super) struct ChannelRequest<O> {
    pub options: O,
    /// From [`CONTAINER_ID_HEADER`], when it names an instance of the container.
    pub told_id: Option<String>,
    verb: &'static str,
    key: hyper::header::HeaderValue,
    protocol: &'static str,
}

impl<O: Send + 'static> ChannelRequest<O> {
    /// Reads `req`, an exec or attach (`verb`) of `container` whose query `parse_options` reads;
    /// else the message of the 400 answer.
    pub(super) fn read(
        req: &Request<Incoming>,
        verb: &'static str,
        container: &str,
        parse_options: fn(Option<&str>) -> Result<O, String>,
    ) -> Result<Self, String> {
        let options = parse_options(req.uri().query())?;
        let (key, protocol) = channel_upgrade(req, verb)?;
        let told_id = req
            .headers()
            .get(CONTAINER_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|id| names_container(id, container))
            .map(str::to_string);
        Ok(ChannelRequest {
            options,
            told_id,
            verb,
            key,
            protocol,
        })
    }

    /// The 101 answer; once the connection is upgraded, `session` runs (in `span`) on its
    /// WebSocket with the options and whether the client speaks v5.
    pub(super) fn upgrade<F, Fut>(
        self,
        req: &mut Request<Incoming>,
        span: tracing::Span,
        session: F,
    ) -> Response<Body>
    where
        F: FnOnce(ChannelSocket, O, bool) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let upgrade = hyper::upgrade::on(req);
        let ChannelRequest {
            options,
            verb,
            key,
            protocol,
            ..
        } = self;
        tokio::spawn(
            async move {
                match upgrade.await {
                    Ok(upgraded) => {
                        let ws = WebSocketStream::from_raw_socket(
                            super::ShutdownOnDrop::new(TokioIo::new(upgraded)),
                            Role::Server,
                            None,
                        )
                        .await;
                        session(ws, options, protocol == PROTOCOLS[0]).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "{verb}: the upgrade failed"),
                }
            }
            .instrument(span),
        );
        websocket_accepted(&key, protocol)
    }
}

/// The WebSocket key and the channel protocol (v5 or v4) of an exec or attach (`verb`) request,
/// or what is missing (for a 400 answer).
fn channel_upgrade(
    req: &Request<Incoming>,
    verb: &str,
) -> Result<(hyper::header::HeaderValue, &'static str), String> {
    let websocket = req
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(hyper::header::SEC_WEBSOCKET_KEY).cloned();
    let (true, Some(key)) = (websocket, key) else {
        return Err(format!(
            "{verb} needs a WebSocket upgrade (v5.channel.k8s.io or v4.channel.k8s.io)"
        ));
    };
    let Some(protocol) = pick_protocol(req) else {
        return Err(
            "none of the offered subprotocols is served: use v5.channel.k8s.io or v4.channel.k8s.io"
                .to_owned(),
        );
    };
    Ok((key, protocol))
}

/// Gives the terminal the size kubectl sent (`{"Width":W,"Height":H}`) and tells the runtime,
/// which passes it on to the container's terminal.
fn resize(pty: &OwnedFd, size: &serde_json::Value, runtime_pid: Option<i32>) {
    let dim = |k: &str| {
        size.get(k)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(0)
    };
    let winsize = rustix::termios::Winsize {
        ws_row: dim("Height"),
        ws_col: dim("Width"),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    if rustix::termios::tcsetwinsize(pty, winsize).is_err() {
        return;
    }
    if let Some(pid) = runtime_pid.and_then(rustix::process::Pid::from_raw) {
        // Gone already is fine: the session is ending.
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::WINCH);
    }
}

/// One `[channel] + data` message.
pub(super) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Kills the exec'd process (by the pid the runtime recorded) if the session ends before it.
struct KillOnDrop {
    pid_file: std::path::PathBuf,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // Already gone is fine.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

async fn session<S>(
    ws: WebSocketStream<S>,
    mut prepared: PreparedExec,
    options: ExecOptions,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (out_tx, writer) = super::spawn_writer(sink, 32);

    let mut command = std::mem::replace(&mut prepared.command, std::process::Command::new("true"));
    let tty = options.stdio.tty;
    let terminal = prepared.terminal.take();
    let stdio = |want: bool| {
        if want {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        }
    };
    match &terminal {
        // The runtime's stdio is our terminal: it copies between it and the container's.
        Some(t) => {
            for (i, fd) in (0..3).map(|i| (i, t.child.try_clone())) {
                let Ok(fd) = fd else { continue };
                match i {
                    0 => command.stdin(fd),
                    1 => command.stdout(fd),
                    _ => command.stderr(fd),
                };
            }
        }
        None => {
            command.stdin(stdio(options.stdio.stdin));
            command.stdout(stdio(options.stdio.stdout));
            // The runtime's own errors come on its stderr: always read it.
            command.stderr(std::process::Stdio::piped());
        }
    }
    let spawned = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn();
    // Our copy of the runtime's side: the terminal ends when the runtime's copies close.
    let terminal = terminal.map(|t| t.parent);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("cannot run the container runtime: {e}")});
            let _ = out_tx
                .send(frame(ERROR, status.to_string().as_bytes()))
                .await;
            let _ = out_tx.send(Message::Close(None)).await;
            let _ = writer.await;
            return;
        }
    };
    let runtime_pid = child.id().and_then(|p| i32::try_from(p).ok());
    let mut guard = KillOnDrop {
        pid_file: prepared.pid_file.clone(),
        armed: true,
    };

    // Output pumps: each ends at EOF.
    let mut pumps = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 || tx.send(frame(STDOUT, &buf[..n])).await.is_err() {
                    break;
                }
            }
            String::new()
        }));
    }
    // stderr: the process's (without a tty) and the runtime's; the start of it is kept to tell
    // a command the runtime could not start. With a tty the runtime's words go to stdout, the
    // terminal's only channel.
    if let Some(mut stderr) = child.stderr.take() {
        let tx = out_tx.clone();
        let channel = if tty {
            STDOUT
        } else if options.stdio.stderr {
            STDERR
        } else {
            0
        };
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut head = Vec::new();
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if head.len() < 4096 {
                    head.extend_from_slice(&buf[..n.min(4096 - head.len())]);
                }
                if channel != 0 && tx.send(frame(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
            String::from_utf8_lossy(&head).into_owned()
        }));
    }

    // The terminal: its output is a pump too (the start kept, as the runtime's errors come
    // there); its input and size are set from the client's messages.
    let mut pty_writer: Option<std::fs::File> = None;
    let mut pty_size: Option<OwnedFd> = None;
    if let Some(parent) = terminal {
        let reader = std::fs::File::from(parent);
        pty_writer = reader.try_clone().ok();
        pty_size = reader.try_clone().ok().map(OwnedFd::from);
        let tx = out_tx.clone();
        pumps.push(tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            let mut buf = vec![0u8; 64 * 1024];
            let mut head = Vec::new();
            // EIO once the runtime and everything it started closed the terminal.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if head.len() < 4096 {
                    head.extend_from_slice(&buf[..n.min(4096 - head.len())]);
                }
                if tx.blocking_send(frame(STDOUT, &buf[..n])).is_err() {
                    break;
                }
            }
            String::from_utf8_lossy(&head).into_owned()
        }));
    }

    // Input: stdin to the process, resizes to the pty; the session ends early if the client
    // goes away.
    let mut stdin = child.stdin.take();
    let (stdin_tx, stdin_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    let pty_input = pty_writer.map(|mut pty| {
        std::thread::spawn(move || {
            while let Ok(Some(data)) = stdin_rx.recv() {
                if pty.write_all(&data).is_err() {
                    break;
                }
            }
        })
    });
    let client_gone = loop {
        tokio::select! {
            exited = child.wait() => {
                break exited.ok().map(|s| s.code());
            }
            message = incoming.next() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    // The Python client sends str data as text frames: the same channel byte
                    // first.
                    Some(Ok(Message::Text(text))) => Bytes::copy_from_slice(text.as_bytes()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => continue,
                };
                match data.first().copied() {
                    Some(STDIN) => {
                        if let Some(pipe) = stdin.as_mut() {
                            if pipe.write_all(&data[1..]).await.is_err() {
                                stdin = None;
                            }
                        } else if pty_input.is_some() {
                            let _ = stdin_tx.send(Some(data[1..].to_vec()));
                        }
                    }
                    Some(RESIZE) => {
                        if let (Some(pty), Ok(size)) = (pty_size.as_ref(), serde_json::from_slice::<serde_json::Value>(&data[1..])) {
                            resize(pty, &size, runtime_pid);
                        }
                    }
                    Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => {
                        // Stdin ended: close the pipe so the process sees EOF.
                        stdin = None;
                    }
                    _ => {}
                }
            }
        }
    };
    let code = match client_gone {
        Some(code) => code,
        None => {
            // The client left (or the socket broke): the process goes, by its pid. The runtime
            // writes that pid just after the process starts (which may already have printed):
            // wait for it while the runtime runs, briefly.
            let deadline = std::time::Instant::now() + PID_FILE_WAIT;
            while prepared.pid().is_none()
                && std::time::Instant::now() < deadline
                && matches!(child.try_wait(), Ok(None))
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            drop(guard);
            let _ = child.kill().await;
            let _ = stdin_tx.send(None);
            for pump in pumps {
                pump.abort();
            }
            drop(out_tx);
            writer.abort();
            return;
        }
    };
    guard.armed = false;
    drop(stdin);
    let _ = stdin_tx.send(None);
    let mut runtime_stderr = String::new();
    for pump in pumps {
        if let Ok(text) = pump.await {
            runtime_stderr.push_str(&text);
        }
    }
    let code = match code {
        Some(code) if is_start_failure(&runtime_stderr) => {
            Some(start_failure_code(&runtime_stderr, code))
        }
        other => other,
    };
    let final_status = exit_status(&options.command, code);
    let _ = out_tx
        .send(frame(ERROR, final_status.to_string().as_bytes()))
        .await;
    let _ = out_tx
        .send(Message::Close(Some(CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    drop(out_tx);
    let _ = writer.await;
    drop(prepared);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_kubectl_sends_them() {
        let o = parse_options(Some(
            "command=sh&command=-c&command=echo+hi&container=c&stderr=true&stdout=true",
        ))
        .expect("options");
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdio.stdout && o.stdio.stderr && !o.stdio.stdin && !o.stdio.tty);
        let tty = parse_options(Some("command=sh&stdin=true&stdout=true&tty=true")).expect("tty");
        assert!(tty.stdio.tty && tty.stdio.stdin && !tty.stdio.stderr);
        assert!(parse_options(Some("stdout=true")).is_err());
        assert!(parse_options(Some("command=ls&stdin=false&stdout=false&stderr=false")).is_err());
    }

    #[test]
    fn container_ids_from_the_api_server_are_checked() {
        assert!(names_container("0b1c-uid_2_main", "main"));
        assert!(!names_container("0b1c-uid_2_main", "side"));
        assert!(!names_container("0b1c-uid_x_main", "main"));
        assert!(!names_container("../../etc_1_main", "main"));
    }

    #[test]
    fn final_status_as_kubectl_reads_it() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(exit_status(&command, Some(0))["status"], "Success");
        let failed = exit_status(&command, Some(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert_eq!(
            failed["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }
}
