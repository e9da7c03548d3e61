//! Attaching to a container's own stdio (`kubectl attach`, `kubectl run -it`). A container
//! started with `stdin` or `tty` gets, from its monitor, a pipe as stdin (without a terminal) or
//! a pty (with one: the runtime makes it and sends its master over a console socket); the
//! monitor then serves `attach.sock` in the container directory. Every client connected there
//! gets the container's output as it is logged, and may write its input and, with a terminal,
//! set its window size.
//!
//! One thread of the monitor serves everything with poll(2): the container's output (to the
//! log and to clients), its input, and the clients. A client that does not keep up is
//! disconnected once a bounded queue fills: the container's output and its log never wait for
//! a client. Containers without `stdin` or `tty` get none of this (no socket, no thread).
//!
//! The protocol on the socket: frames of a kind byte, a 16-bit big-endian length, and that many
//! bytes. A client first sends [`HELLO`] (one byte: 1 when it attaches stdin), then [`STDIN`]
//! data, [`STDIN_CLOSE`], or [`RESIZE`] (rows and columns, 16 bits each, big-endian); the
//! monitor sends [`STDOUT`] and [`STDERR`] data, and closes the connection when the
//! container's output ends.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_spec::runtime::Spec;
use rustix::event::{PollFd, PollFlags};

use super::log::{CriLogWriter, LogStream};

/// The attach socket, in the container directory.
pub const SOCKET_FILE: &str = "attach.sock";
/// Where the runtime sends a terminal's master, in the container directory (for a moment).
pub(crate) const CONSOLE_SOCKET_FILE: &str = "console.sock";

/// OCI annotations by which the spec tells the monitor about the container's stdin.
pub const STDIN_ANNOTATION: &str = "dev.skiff.stdin";
pub const STDIN_ONCE_ANNOTATION: &str = "dev.skiff.stdin-once";

/// Client to monitor: the first frame; payload one byte, 1 when the client attaches stdin.
pub const HELLO: u8 = 0;
/// Client to monitor: input. Monitor to client: output of stdout (or of the terminal).
pub const STDIN: u8 = 1;
pub const STDOUT: u8 = 1;
/// Client to monitor: the client's stdin ended. Monitor to client: output of stderr.
pub const STDIN_CLOSE: u8 = 2;
pub const STDERR: u8 = 2;
/// Client to monitor: the terminal's new size.
pub const RESIZE: u8 = 3;

/// The largest payload of a frame.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;
/// How much output may wait for one client before it counts as stalled and is disconnected.
const MAX_CLIENT_QUEUE: usize = 1 << 20;
/// How much input may wait for the container to read it; clients are not read meanwhile.
const MAX_PENDING_INPUT: usize = 64 * 1024;
/// The terminal's end-of-file character: what closing a terminal's input means to a shell.
const EOT: u8 = 0x04;
/// How long the runtime may take to send the terminal after it started the container.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The stdio a container was given, from its pod spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StdioConfig {
    pub stdin: bool,
    /// Close the container's stdin when the first session that attached it ends.
    pub stdin_once: bool,
    pub tty: bool,
}

impl StdioConfig {
    /// From an OCI spec: `process.terminal` and the stdin annotations.
    pub fn from_spec(spec: &Spec) -> StdioConfig {
        let annotation = |key: &str| {
            spec.annotations()
                .as_ref()
                .and_then(|a| a.get(key))
                .is_some_and(|v| v == "true")
        };
        StdioConfig {
            stdin: annotation(STDIN_ANNOTATION),
            stdin_once: annotation(STDIN_ONCE_ANNOTATION),
            tty: spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false),
        }
    }

    /// Whether the monitor serves an attach socket for the container.
    pub fn attachable(&self) -> bool {
        self.stdin || self.tty
    }
}

/// One frame.
pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    push_frame(&mut out, kind, payload);
    out
}

/// Appends frames of `payload` (split at [`MAX_PAYLOAD`]) to `out`.
fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut chunks = payload.chunks(MAX_PAYLOAD).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[kind, 0, 0]);
    }
    for chunk in chunks {
        out.push(kind);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The frame telling the terminal's size.
pub fn resize_frame(rows: u16, cols: u16) -> Vec<u8> {
    let mut size = rows.to_be_bytes().to_vec();
    size.extend_from_slice(&cols.to_be_bytes());
    encode(RESIZE, &size)
}

/// Frames out of a byte stream read in arbitrary pieces.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if there is one.
    pub fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        if self.buf.len() < 3 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[1], self.buf[2]]));
        if self.buf.len() < 3 + len {
            return None;
        }
        let kind = self.buf[0];
        let payload = self.buf[3..3 + len].to_vec();
        self.buf.drain(..3 + len);
        Some((kind, payload))
    }
}

/// Connects to the attach socket of the container in `dir` (whose path may be longer than a
/// socket address holds: the connection goes through a descriptor of the directory).
pub fn connect(dir: &Path) -> std::io::Result<UnixStream> {
    let dir_fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}/{SOCKET_FILE}", dir_fd.as_raw_fd());
    let stream = UnixStream::connect(path);
    drop(dir_fd);
    stream
}

/// The listening console socket: the runtime connects and sends the terminal's master.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds [`CONSOLE_SOCKET_FILE`] in the working directory (the container directory).
    pub(crate) fn bind() -> std::io::Result<ConsoleSocket> {
        let path = PathBuf::from(CONSOLE_SOCKET_FILE);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { listener, path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The master the runtime sent (it did so before it exited: the connection waits in the
    /// backlog).
    pub(crate) fn receive(self) -> std::io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: CONSOLE_TIMEOUT.as_secs() as i64,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(0) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the runtime sent no terminal",
                    ))
                }
                Ok(_) => break,
            }
        }
        let (conn, _) = self.listener.accept()?;
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
        let mut name = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        rustix::net::recvmsg(
            &conn,
            &mut iov,
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        )?;
        let received = control.drain().find_map(|message| match message {
            rustix::net::RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        });
        received.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the runtime's console message carried no descriptor",
            )
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One stream of the container's output.
struct Output {
    file: File,
    stream: LogStream,
    open: bool,
}

struct Client {
    stream: UnixStream,
    frames: FrameReader,
    /// Output not written yet.
    queued: Vec<u8>,
    /// Whether this session attached stdin (said in its hello).
    stdin: bool,
    gone: bool,
}

/// What the container's stdio are, for [`AttachServer::new`].
pub(crate) enum ContainerIo {
    /// Without a terminal: its stdout and stderr pipes, and the write end of its stdin.
    Pipes {
        stdout: std::io::PipeReader,
        stderr: std::io::PipeReader,
        stdin: Option<std::io::PipeWriter>,
    },
    /// With one: the pty's master, its output and input.
    Terminal(OwnedFd),
}

/// The monitor's side: the container's stdio, the log, and the attached clients.
pub(crate) struct AttachServer {
    listener: UnixListener,
    socket_path: PathBuf,
    outputs: Vec<Output>,
    /// Where input goes (the stdin pipe, or the terminal's master).
    input: Option<File>,
    /// The terminal's master, for its size.
    terminal: Option<File>,
    stdio: StdioConfig,
    log: Arc<Mutex<CriLogWriter>>,
    clients: Vec<Client>,
    pending_input: Vec<u8>,
    /// stdinOnce: the first session with stdin ended.
    stdin_closed: bool,
}

impl AttachServer {
    /// Binds [`SOCKET_FILE`] in the working directory (the container directory).
    pub(crate) fn new(
        io: ContainerIo,
        stdio: StdioConfig,
        log: Arc<Mutex<CriLogWriter>>,
    ) -> std::io::Result<AttachServer> {
        let socket_path = PathBuf::from(SOCKET_FILE);
        let _ = std::fs::remove_file(&socket_path);
        let listener = UnixListener::bind(&socket_path)?;
        listener.set_nonblocking(true)?;
        let (outputs, input, terminal) = match io {
            ContainerIo::Pipes {
                stdout,
                stderr,
                stdin,
            } => {
                let outputs = vec![
                    output(OwnedFd::from(stdout), LogStream::Stdout)?,
                    output(OwnedFd::from(stderr), LogStream::Stderr)?,
                ];
                let input = stdin.map(OwnedFd::from).map(File::from);
                if let Some(input) = &input {
                    set_nonblocking(input)?;
                }
                (outputs, input, None)
            }
            ContainerIo::Terminal(master) => {
                let master = File::from(master);
                set_nonblocking(&master)?;
                let input = master.try_clone()?;
                let size = master.try_clone()?;
                let outputs = vec![Output {
                    file: master,
                    stream: LogStream::Stdout,
                    open: true,
                }];
                (outputs, Some(input), Some(size))
            }
        };
        Ok(AttachServer {
            listener,
            socket_path,
            outputs,
            input,
            terminal,
            stdio,
            log,
            clients: Vec::new(),
            pending_input: Vec::new(),
            stdin_closed: false,
        })
    }

    /// Serves until the container's output ends (every process holding it is gone).
    pub(crate) fn run(mut self) {
        // Small: a pipe or pty read returns what is there.
        let mut buf = vec![0u8; 8 * 1024];
        while self.outputs.iter().any(|o| o.open) {
            let ready = match self.poll() {
                Ok(ready) => ready,
                Err(e) => {
                    eprintln!("monitor: polling the container's stdio: {e}");
                    break;
                }
            };
            for (slot, flags) in ready {
                match slot {
                    Slot::Listener => self.accept(),
                    Slot::Output(i) => self.read_output(i, &mut buf),
                    Slot::Input => self.write_input(),
                    Slot::Client(i) => {
                        if flags.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                            self.read_client(i, &mut buf);
                        }
                        if flags.contains(PollFlags::OUT) {
                            flush(&mut self.clients[i]);
                        }
                    }
                }
            }
            self.drop_gone_clients();
        }
        // The last output, as far as the clients take it without waiting.
        for client in &mut self.clients {
            flush(client);
        }
        self.clients.clear();
        let _ = std::fs::remove_file(&self.socket_path);
    }

    /// Waits for something to do; returns what is ready.
    fn poll(&self) -> std::io::Result<Vec<(Slot, PollFlags)>> {
        let mut slots = Vec::new();
        let mut fds = Vec::new();
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        slots.push(Slot::Listener);
        for (i, output) in self.outputs.iter().enumerate() {
            if output.open {
                fds.push(PollFd::new(&output.file, PollFlags::IN));
                slots.push(Slot::Output(i));
            }
        }
        if let Some(input) = &self.input {
            if !self.pending_input.is_empty() {
                fds.push(PollFd::new(input, PollFlags::OUT));
                slots.push(Slot::Input);
            }
        }
        let reading = self.pending_input.len() < MAX_PENDING_INPUT;
        for (i, client) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            if reading {
                flags |= PollFlags::IN;
            }
            if !client.queued.is_empty() {
                flags |= PollFlags::OUT;
            }
            fds.push(PollFd::new(&client.stream, flags));
            slots.push(Slot::Client(i));
        }
        loop {
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(slots
            .into_iter()
            .zip(fds.iter().map(PollFd::revents))
            .filter(|(_, flags)| !flags.is_empty())
            .collect())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client {
                            stream,
                            frames: FrameReader::default(),
                            queued: Vec::new(),
                            stdin: false,
                            gone: false,
                        });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_output(&mut self, i: usize, buf: &mut [u8]) {
        let output = &mut self.outputs[i];
        let n = match output.file.read(buf) {
            Ok(0) => {
                output.open = false;
                return;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            // EIO: a terminal whose every other end closed.
            Err(_) => {
                output.open = false;
                return;
            }
        };
        let stream = output.stream;
        if let Ok(mut log) = self.log.lock() {
            if let Err(e) = log.write(stream, &buf[..n]) {
                eprintln!("monitor: writing the log: {e}");
            }
        }
        let kind = match stream {
            LogStream::Stdout => STDOUT,
            LogStream::Stderr => STDERR,
        };
        for client in &mut self.clients {
            if client.queued.len() + n > MAX_CLIENT_QUEUE {
                // A stalled client: it goes, the container does not wait.
                client.gone = true;
                continue;
            }
            push_frame(&mut client.queued, kind, &buf[..n]);
            flush(client);
        }
    }

    fn write_input(&mut self) {
        let Some(input) = self.input.as_mut() else {
            return;
        };
        match input.write(&self.pending_input) {
            Ok(n) => {
                self.pending_input.drain(..n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            // The container closed its stdin: nothing more can go there.
            Err(_) => {
                self.pending_input.clear();
                self.input = None;
            }
        }
    }

    fn read_client(&mut self, i: usize, buf: &mut [u8]) {
        let client = &mut self.clients[i];
        match client.stream.read(buf) {
            Ok(0) => client.gone = true,
            Ok(n) => client.frames.push(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => client.gone = true,
        }
        while let Some((kind, payload)) = self.clients[i].frames.next_frame() {
            match kind {
                HELLO => {
                    self.clients[i].stdin = self.stdio.stdin
                        && !self.stdin_closed
                        && payload.first().is_some_and(|f| f & 1 == 1);
                }
                STDIN if self.clients[i].stdin && !self.stdin_closed && self.input.is_some() => {
                    self.pending_input.extend_from_slice(&payload);
                    self.write_input();
                }
                STDIN_CLOSE if std::mem::take(&mut self.clients[i].stdin) => {
                    self.session_stdin_ended();
                }
                RESIZE => {
                    if let (Some(terminal), [r0, r1, c0, c1]) =
                        (self.terminal.as_ref(), payload.as_slice())
                    {
                        let size = rustix::termios::Winsize {
                            ws_row: u16::from_be_bytes([*r0, *r1]),
                            ws_col: u16::from_be_bytes([*c0, *c1]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // The kernel signals the terminal's foreground process group.
                        let _ = rustix::termios::tcsetwinsize(terminal, size);
                    }
                }
                _ => {}
            }
        }
    }

    /// A session that attached stdin ended (its stdin closed, or it left): with stdinOnce the
    /// container's stdin closes for good, as kubelet's runtimes do.
    fn session_stdin_ended(&mut self) {
        if !self.stdio.stdin_once || self.stdin_closed {
            return;
        }
        self.stdin_closed = true;
        if self.terminal.is_some() {
            // A terminal's input cannot be closed apart from its output: its end-of-file
            // character is what a reader at the start of a line sees as the end.
            self.pending_input.push(EOT);
            self.write_input();
        } else {
            self.pending_input.clear();
            self.input = None;
        }
    }

    fn drop_gone_clients(&mut self) {
        let mut ended = 0;
        self.clients.retain(|client| {
            if client.gone && client.stdin {
                ended += 1;
            }
            !client.gone
        });
        if ended > 0 {
            self.session_stdin_ended();
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Listener,
    Output(usize),
    Input,
    Client(usize),
}

fn output(fd: OwnedFd, stream: LogStream) -> std::io::Result<Output> {
    let file = File::from(fd);
    set_nonblocking(&file)?;
    Ok(Output {
        file,
        stream,
        open: true,
    })
}

fn set_nonblocking(fd: impl AsFd) -> std::io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Writes what the client can take now.
fn flush(client: &mut Client) {
    while !client.queued.is_empty() && !client.gone {
        match client.stream.write(&client.queued) {
            Ok(0) => client.gone = true,
            Ok(n) => {
                client.queued.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => client.gone = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_split() {
        let mut bytes = encode(HELLO, &[1]);
        bytes.extend(encode(STDIN, b"echo hi\n"));
        bytes.extend(resize_frame(40, 120));
        bytes.extend(encode(STDIN_CLOSE, &[]));
        for split in 0..bytes.len() {
            let mut reader = FrameReader::default();
            reader.push(&bytes[..split]);
            let mut got = Vec::new();
            while let Some(frame) = reader.next_frame() {
                got.push(frame);
            }
            reader.push(&bytes[split..]);
            while let Some(frame) = reader.next_frame() {
                got.push(frame);
            }
            assert_eq!(
                got,
                vec![
                    (HELLO, vec![1]),
                    (STDIN, b"echo hi\n".to_vec()),
                    (RESIZE, vec![0, 40, 0, 120]),
                    (STDIN_CLOSE, vec![]),
                ]
            );
        }
    }

    #[test]
    fn long_payloads_are_split() {
        let mut out = Vec::new();
        push_frame(&mut out, STDOUT, &vec![7u8; MAX_PAYLOAD + 10]);
        let mut reader = FrameReader::default();
        reader.push(&out);
        assert_eq!(reader.next_frame().map(|f| f.1.len()), Some(MAX_PAYLOAD));
        assert_eq!(reader.next_frame().map(|f| f.1.len()), Some(10));
        assert!(reader.next_frame().is_none());
    }

    #[test]
    fn stdio_from_the_spec() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": true, "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "annotations": {STDIN_ANNOTATION: "true"},
        }))
        .expect("spec");
        let stdio = StdioConfig::from_spec(&spec);
        assert_eq!(
            stdio,
            StdioConfig {
                stdin: true,
                stdin_once: false,
                tty: true
            }
        );
        assert!(stdio.attachable());
        assert!(!StdioConfig::default().attachable());
    }
}
