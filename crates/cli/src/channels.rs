//! The channel protocol of exec and attach (`v5.channel.k8s.io`) on the client side: local
//! stdin to channel 0 (its end as a close of channel 0 on channel 255), channels 1 and 2 to
//! local stdout and stderr, the final `Status` from channel 3 turned into kubectl's message and
//! exit code, and with a terminal: raw mode, and its size on channel 4 at start and on SIGWINCH.

use std::convert::Infallible;
use std::io::{Read, Write};

use futures_util::{Sink, SinkExt, StreamExt};
use rustix::termios::{OptionalActions, Termios};
use serde_json::Value;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::client::WebSocket;
use crate::{Error, Result};

/// The subprotocol offered.
pub(crate) const PROTOCOL: &str = "v5.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which local streams a session carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streams {
    /// Local stdin goes to the process.
    pub stdin: bool,
    /// The local terminal is put in raw mode and its size sent.
    pub tty: bool,
    /// The size is first sent one larger, then as it is, so that a program already running
    /// redraws its screen (attach).
    pub redraw: bool,
}

/// Whether kubectl would use a terminal for `-i` and `-t`: only with `-i` and a terminal on
/// stdin (and it says so when `-t` was asked for and stdin is not one, unless `-q`).
pub(crate) fn use_tty(stdin: bool, tty: bool, quiet: bool) -> bool {
    if !stdin || !tty {
        return false;
    }
    if rustix::termios::isatty(std::io::stdin()) {
        return true;
    }
    if !quiet {
        crate::report("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    false
}

/// Carries the session until the server closes it; the result is the final Status's.
pub(crate) async fn run(mut ws: WebSocket, streams: Streams) -> Result<()> {
    let raw = if streams.tty {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let input = streams.stdin.then(spawn_stdin_reader);
    let mut stdout = |bytes: &[u8]| write_out(&mut std::io::stdout().lock(), bytes);
    let mut stderr = |bytes: &[u8]| write_out(&mut std::io::stderr().lock(), bytes);
    let result = carry(&mut ws, streams, input, &mut stdout, &mut stderr).await;
    // The terminal is itself again before any message is printed.
    drop(raw);
    decode_status(&result?)
}

/// A session with `input` as its stdin (if any) and its stdout collected (cp's tar over
/// exec); its stderr goes to the local stderr, or stdout (`kubectl cp` from a pod does that).
pub(crate) async fn run_captured(
    mut ws: WebSocket,
    input: Option<Vec<u8>>,
    stderr_to_stdout: bool,
) -> Result<Vec<u8>> {
    let input = input.map(|bytes| {
        let (sender, receiver) = mpsc::channel(4);
        tokio::spawn(async move {
            for chunk in bytes.chunks(64 * 1024) {
                if sender.send(chunk.to_vec()).await.is_err() {
                    break;
                }
            }
        });
        receiver
    });
    let streams = Streams {
        stdin: input.is_some(),
        tty: false,
        redraw: false,
    };
    let mut output = Vec::new();
    let mut collect = |bytes: &[u8]| {
        output.extend_from_slice(bytes);
        Ok(())
    };
    let mut stderr = |bytes: &[u8]| match stderr_to_stdout {
        true => write_out(&mut std::io::stdout().lock(), bytes),
        false => write_out(&mut std::io::stderr().lock(), bytes),
    };
    let status = carry(&mut ws, streams, input, &mut collect, &mut stderr).await?;
    decode_status(&status)?;
    Ok(output)
}

/// Reads the session's messages while, side by side, stdin and resizes are written: a
/// session that echoes much input never waits on itself.
async fn carry(
    ws: &mut WebSocket,
    streams: Streams,
    mut input: Option<mpsc::Receiver<Vec<u8>>>,
    stdout: &mut dyn FnMut(&[u8]) -> Result<()>,
    stderr: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<Vec<u8>> {
    let mut resizes =
        match streams.tty {
            true => Some(signal(SignalKind::window_change()).map_err(|err| {
                Error::Message(format!("cannot watch the terminal's size: {err}"))
            })?),
            false => None,
        };
    let (mut sink, mut source) = ws.split();
    let write = write_input(&mut sink, streams, &mut input, &mut resizes);
    let read = async {
        let mut status = Vec::new();
        while let Some(message) = source.next().await {
            match message {
                Ok(Message::Close(_)) => break,
                Ok(Message::Binary(data)) => match data.split_first() {
                    Some((&STDOUT, rest)) => stdout(rest)?,
                    Some((&STDERR, rest)) => stderr(rest)?,
                    Some((&ERROR, rest)) => status.extend_from_slice(rest),
                    _ => {}
                },
                Ok(_) => {}
                // A connection that ends without a closing handshake after the Status.
                Err(_) if !status.is_empty() => break,
                Err(err) => {
                    return Err(Error::Message(format!(
                        "error reading from the stream: {err}"
                    )))
                }
            }
        }
        Ok(status)
    };
    // The writer ends only on an error; the session ends with the reader.
    tokio::select! {
        status = read => status,
        Err(err) = write => Err(err),
    }
}

/// Sends the terminal's size (at start and on SIGWINCH) and stdin (its end as a close of
/// channel 0); returns only on an error.
async fn write_input<S>(
    sink: &mut S,
    streams: Streams,
    input: &mut Option<mpsc::Receiver<Vec<u8>>>,
    resizes: &mut Option<Signal>,
) -> Result<Infallible>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    if streams.tty {
        if streams.redraw {
            send_size_plus(sink, 1).await?;
        }
        send_size(sink).await?;
    }
    loop {
        tokio::select! {
            chunk = next_input(input) => {
                let frame = match chunk {
                    Some(bytes) => [&[STDIN][..], &bytes].concat(),
                    None => {
                        *input = None;
                        vec![CLOSE, STDIN]
                    }
                };
                send(sink, frame).await?;
            }
            () = next_resize(resizes) => send_size(sink).await?,
        }
    }
}

/// Writes `bytes` to the local stdout.
pub(crate) fn write_stdout(bytes: &[u8]) -> Result<()> {
    write_out(&mut std::io::stdout().lock(), bytes)
}

fn write_out(out: &mut impl Write, bytes: &[u8]) -> Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|err| Error::Message(format!("cannot write the output: {err}")))
}

async fn send<S>(sink: &mut S, frame: Vec<u8>) -> Result<()>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    sink.send(Message::binary(frame))
        .await
        .map_err(|err| Error::Message(format!("error writing to the stream: {err}")))
}

async fn send_size<S>(sink: &mut S) -> Result<()>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    send_size_plus(sink, 0).await
}

async fn send_size_plus<S>(sink: &mut S, plus: u16) -> Result<()>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin()) else {
        return Ok(());
    };
    let json = serde_json::json!({
        "Width": size.ws_col.saturating_add(plus),
        "Height": size.ws_row.saturating_add(plus),
    });
    send(sink, [&[RESIZE][..], json.to_string().as_bytes()].concat()).await
}

async fn next_input(input: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match input {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_resize(resizes: &mut Option<Signal>) {
    match resizes {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Reads stdin on a thread of its own (a blocking read cannot be cancelled; the thread ends
/// with the process), handing chunks over until end of file.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0; 64 * 1024];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if sender.blocking_send(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    receiver
}

/// The final Status of channel 3, as client-go's v4/v5 error decoder reads it.
pub(crate) fn decode_status(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let status: Value = serde_json::from_slice(bytes).map_err(|err| {
        Error::Message(format!(
            "error stream protocol error: {err} in {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })?;
    match status["status"].as_str() {
        Some("Success") => Ok(()),
        Some("Failure") if status["reason"] == "NonZeroExitCode" => {
            let causes = status["details"]["causes"].as_array();
            let code = causes
                .into_iter()
                .flatten()
                .find(|c| c["reason"] == "ExitCode")
                .and_then(|c| c["message"].as_str())
                .ok_or_else(|| {
                    Error::Message("error stream protocol error: no ExitCode cause given".into())
                })?;
            let code: u8 = code.parse().map_err(|_| {
                Error::Message(format!(
                    "error stream protocol error: invalid exit code value {code:?}"
                ))
            })?;
            Err(Error::Exited { code })
        }
        Some("Failure") => Err(Error::Message(
            status["message"].as_str().unwrap_or_default().to_owned(),
        )),
        _ => Err(Error::Message(
            "error stream protocol error: unknown error".into(),
        )),
    }
}

/// The local terminal in raw mode (keys go to the remote terminal as typed, Ctrl-C included)
/// until dropped.
struct RawTerminal {
    saved: Termios,
}

impl RawTerminal {
    fn enter() -> Result<RawTerminal> {
        let stdin = std::io::stdin();
        let failed = |err: rustix::io::Errno| {
            Error::Message(format!("cannot put the terminal in raw mode: {err}"))
        };
        let saved = rustix::termios::tcgetattr(&stdin).map_err(failed)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, OptionalActions::Now, &raw).map_err(failed)?;
        Ok(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        // Nothing more can be done if the terminal refuses its old settings back.
        let _ = rustix::termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_status_becomes_kubectls_result() {
        assert!(decode_status(b"").is_ok());
        assert!(decode_status(br#"{"metadata":{},"status":"Success"}"#).is_ok());
        let exited = decode_status(
            br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#,
        );
        assert!(matches!(exited, Err(Error::Exited { code: 3 })));
        let failed = decode_status(br#"{"status":"Failure","message":"boom"}"#);
        assert_eq!(failed.err().map(|e| e.render()), Some("error: boom".into()));
        let garbage = decode_status(b"{");
        assert!(garbage
            .err()
            .is_some_and(|e| e.render().starts_with("error: error stream protocol error")));
    }
}
