//! `GET /attach/{namespace}/{pod}/{container}?stdin=&stdout=&stderr=&tty=`: the stdio of a
//! running container's own process (`kubectl attach`, `kubectl run -it`), over a WebSocket in
//! the channel protocol exec speaks (see [`super::exec`]).
//!
//! A container with `stdin` or `tty` is attached through its monitor's socket
//! ([`skiff_runtime::container::attach`]): output as the container writes it, input and terminal
//! sizes to it. Leaving does not stop the container (with `stdinOnce` its stdin closes). A
//! container with neither has no socket: its output is followed in its log from now on (a
//! follower per stream). The session ends when the container's
//! output does, with a Success status, as kubelet ends it.

use std::os::unix::net::UnixStream;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;
use skiff_runtime::container::attach as monitor;
use skiff_runtime::container::log::LogStream;
use skiff_runtime::container::log_read::{LogQuery, LogReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::exec::{frame, ChannelRequest, Stdio, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT};
use super::{pod_on_this_node, running_container_of, status, Body, StreamingContext};
use crate::runtime::parse_container_id;

fn parse_options(query: Option<&str>) -> Result<Stdio, String> {
    let mut options = Stdio::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        options.take(&key, &value);
    }
    options.checked()
}

/// The refusal of an attach with stdin to a container started without it (the API server
/// gives the same, so kubectl shows it whichever protocol it tried).
pub(crate) fn stdin_refused(pod: &str, container: &str) -> String {
    format!(
        "cannot attach stdin: container {container} in pod {pod} was not created with stdin: true (attach without -i to see its output)"
    )
}

/// Where the container's output comes from.
enum Source {
    /// Its monitor's attach socket.
    Monitor(UnixStream),
    /// Its log, from its end on (a container without stdin or terminal): a reader per stream
    /// asked for, with its channel.
    Log {
        readers: Vec<(LogReader, u8)>,
        id: String,
    },
}

pub async fn serve(
    ctx: &StreamingContext,
    namespace: &str,
    pod: &str,
    container: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let request = match ChannelRequest::read(&req, "attach", container, parse_options) {
        Ok(request) => request,
        Err(message) => return status(400, "BadRequest", &message),
    };
    let options = &request.options;
    let found = match pod_on_this_node(ctx, namespace, pod).await {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let Some(spec) = found
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == container))
    else {
        return status(
            400,
            "BadRequest",
            &format!("container {container} is not valid for pod {pod}"),
        );
    };
    if options.stdin && !spec.stdin.unwrap_or(false) {
        return status(400, "BadRequest", &stdin_refused(pod, container));
    }
    let id = match request.told_id.clone() {
        Some(id) => id,
        None => match running_container_of(&found, container) {
            Ok(id) => id,
            Err(message) => return status(400, "BadRequest", &message),
        },
    };
    let runtime = ctx.runtime.clone();
    let attach_id = id.clone();
    let socket = match tokio::task::spawn_blocking(move || runtime.attach(&attach_id)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => return status(500, "InternalError", &e.0),
        Err(e) => return status(500, "InternalError", &e.to_string()),
    };
    let source = match socket {
        Some(socket) => Source::Monitor(socket),
        None => {
            let uid = found.metadata.uid.clone().unwrap_or_default();
            let attempt = parse_container_id(&uid, &id).map_or(0, |(a, _)| a);
            let path = ctx.container_log_path(&uid, container, attempt);
            let mut readers = Vec::new();
            for (wanted, stream, channel) in [
                (options.stdout, LogStream::Stdout, STDOUT),
                (options.stderr, LogStream::Stderr, STDERR),
            ] {
                if !wanted {
                    continue;
                }
                // From the end: attach shows what comes, not what was.
                let query = LogQuery {
                    tail_lines: Some(0),
                    stream: Some(stream),
                    ..LogQuery::default()
                };
                match LogReader::open(&path, &query) {
                    Ok((reader, _)) => readers.push((reader, channel)),
                    Err(e) => {
                        return status(
                            500,
                            "InternalError",
                            &format!("cannot read the log {}: {e}", path.display()),
                        )
                    }
                }
            }
            Source::Log { readers, id }
        }
    };
    let runtime = ctx.runtime.clone();
    let (namespace, pod, uid) = (
        namespace.to_owned(),
        pod.to_owned(),
        found.metadata.uid.clone().unwrap_or_default(),
    );
    let span = tracing::debug_span!("attach", %namespace, %pod, %uid);
    request.upgrade(&mut req, span, |ws, options, v5| {
        session(ws, source, options, v5, runtime)
    })
}

/// How a session ended.
enum Ended {
    /// The container's output ended.
    Output,
    /// The client left.
    Client,
}

async fn session<S>(
    ws: WebSocketStream<S>,
    source: Source,
    options: Stdio,
    v5: bool,
    runtime: std::sync::Arc<dyn crate::runtime::PodRuntime>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (out_tx, writer) = super::spawn_writer(sink, 32);

    // The output pump ends when the container's output does; input goes to `to_monitor`.
    let mut to_monitor = None;
    let mut pump = match source {
        Source::Monitor(socket) => {
            let socket = match socket
                .set_nonblocking(true)
                .and_then(|()| tokio::net::UnixStream::from_std(socket))
            {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::warn!(error = %e, "attach: the monitor's socket is unusable");
                    writer.abort();
                    return;
                }
            };
            let (mut read, mut write) = socket.into_split();
            if write
                .write_all(&monitor::encode(monitor::HELLO, &[u8::from(options.stdin)]))
                .await
                .is_err()
            {
                writer.abort();
                return;
            }
            to_monitor = Some(write);
            let tx = out_tx.clone();
            let (want_stdout, want_stderr) = (options.stdout, options.stderr);
            tokio::spawn(async move {
                let mut frames = monitor::FrameReader::default();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    frames.push(&buf[..n]);
                    while let Some((kind, payload)) = frames.next_frame() {
                        let channel = match kind {
                            monitor::STDOUT if want_stdout => STDOUT,
                            monitor::STDERR if want_stderr => STDERR,
                            // Without a separate stderr channel, it shares stdout's.
                            monitor::STDERR if want_stdout => STDOUT,
                            _ => continue,
                        };
                        if tx.send(frame(channel, &payload)).await.is_err() {
                            return;
                        }
                    }
                }
            })
        }
        Source::Log { readers, id } => {
            let mut forwarders = Vec::new();
            for (reader, channel) in readers {
                let (bytes_tx, mut bytes_rx) = mpsc::channel::<Bytes>(16);
                let (id, runtime) = (id.clone(), runtime.clone());
                let follower = tokio::task::spawn_blocking(move || {
                    super::logs::follow_log(reader, &id, runtime, bytes_tx)
                });
                let tx = out_tx.clone();
                forwarders.push(tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            chunk = bytes_rx.recv() => match chunk {
                                Some(chunk) => {
                                    if tx.send(frame(channel, &chunk)).await.is_err() {
                                        break;
                                    }
                                }
                                None => break,
                            },
                            // The session ended: a quiet container must not keep the
                            // follower polling until it exits.
                            () = tx.closed() => break,
                        }
                    }
                    // The follower sees the closed channel and ends.
                    drop(bytes_rx);
                    let _ = follower.await;
                }));
            }
            tokio::spawn(async move {
                for forwarder in forwarders {
                    let _ = forwarder.await;
                }
            })
        }
    };

    let ended = loop {
        tokio::select! {
            _ = &mut pump => break Ended::Output,
            message = incoming.next() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    // The Python client sends str data as text frames: the same channel byte
                    // first.
                    Some(Ok(Message::Text(text))) => Bytes::copy_from_slice(text.as_bytes()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break Ended::Client,
                    Some(Ok(_)) => continue,
                };
                let Some(write) = to_monitor.as_mut() else { continue };
                let forwarded = match data.first().copied() {
                    Some(STDIN) if options.stdin => {
                        monitor::encode(monitor::STDIN, &data[1..])
                    }
                    Some(RESIZE) => match terminal_size(&data[1..]) {
                        Some((rows, cols)) => monitor::resize_frame(rows, cols),
                        None => continue,
                    },
                    Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) && options.stdin => {
                        monitor::encode(monitor::STDIN_CLOSE, &[])
                    }
                    _ => continue,
                };
                if write.write_all(&forwarded).await.is_err() {
                    // The monitor went away: the container's output ends too.
                    to_monitor = None;
                }
            }
        }
    };
    match ended {
        Ended::Output => {
            let success = json!({"metadata": {}, "status": "Success"});
            let _ = out_tx
                .send(frame(ERROR, success.to_string().as_bytes()))
                .await;
            let _ = out_tx
                .send(Message::Close(Some(CloseFrame {
                    code:
                        tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
                    reason: "".into(),
                })))
                .await;
            drop(out_tx);
            let _ = writer.await;
        }
        Ended::Client => {
            // Leaving the monitor's socket detaches; the container runs on.
            pump.abort();
            drop(to_monitor);
            drop(out_tx);
            writer.abort();
        }
    }
}

/// Rows and columns from kubectl's resize message (`{"Width":W,"Height":H}`).
fn terminal_size(json: &[u8]) -> Option<(u16, u16)> {
    let size: serde_json::Value = serde_json::from_slice(json).ok()?;
    let dim = |k: &str| {
        size.get(k)
            .and_then(serde_json::Value::as_u64)
            .and_then(|v| u16::try_from(v).ok())
    };
    Some((dim("Height")?, dim("Width")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_as_kubectl_sends_them() {
        let o = parse_options(Some("container=c&stdin=true&stdout=true&tty=true")).expect("it");
        assert_eq!(
            o,
            Stdio {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let o = parse_options(Some("container=c&stdout=true&stderr=true")).expect("plain");
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert!(parse_options(Some("container=c")).is_err());
    }

    #[test]
    fn resize_messages() {
        assert_eq!(
            terminal_size(br#"{"Width":120,"Height":40}"#),
            Some((40, 120))
        );
        assert_eq!(terminal_size(b"junk"), None);
    }
}
