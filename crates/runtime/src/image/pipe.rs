//! Handing a byte stream from one thread to another in recycled chunks, so reading,
//! decompressing, hashing and writing a layer run on separate cores instead of one after the
//! other.

use std::io::{BufRead, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

/// Bytes per chunk: big enough that the per-chunk hand-over costs nothing beside the work on
/// it, small enough that a few in flight fit in the CPU caches.
pub const CHUNK: usize = 256 << 10;

/// Chunks in flight: lets producer and consumer run apart for a while, bounding memory.
const DEPTH: usize = 8;

/// A pipe: what the [`ChunkSender`] sends, the [`ChunkReader`] reads, in order.
pub fn pipe() -> (ChunkSender, ChunkReader) {
    let (chunks, received) = mpsc::sync_channel(DEPTH);
    let (spent, recycled) = mpsc::channel();
    (
        ChunkSender { chunks, recycled },
        ChunkReader {
            received,
            spent,
            current: Vec::new(),
            pos: 0,
            done: false,
        },
    )
}

/// The sending end of a [`pipe`].
#[derive(Debug)]
pub struct ChunkSender {
    chunks: SyncSender<std::io::Result<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
}

impl ChunkSender {
    /// An empty buffer with room for [`CHUNK`] bytes: one the reader finished with when there
    /// is one, so the same few buffers go round (fresh ones cost page faults).
    pub fn buffer(&self) -> Vec<u8> {
        match self.recycled.try_recv() {
            Ok(mut buf) => {
                buf.clear();
                buf
            }
            Err(_) => Vec::with_capacity(CHUNK),
        }
    }

    /// Sends a chunk (empty ones are dropped); false when the reader is gone.
    pub fn send(&self, chunk: Vec<u8>) -> bool {
        chunk.is_empty() || self.chunks.send(Ok(chunk)).is_ok()
    }

    /// Makes the reader's next read fail with `error`, after the chunks already sent.
    pub fn fail(&self, error: std::io::Error) {
        // A reader that is gone no longer cares.
        let _ = self.chunks.send(Err(error));
    }
}

/// The reading end of a [`pipe`]: end of file once the sender is dropped and every chunk read.
#[derive(Debug)]
pub struct ChunkReader {
    received: Receiver<std::io::Result<Vec<u8>>>,
    spent: Sender<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos == self.current.len() && !self.done {
            match self.received.recv() {
                Ok(Ok(chunk)) => {
                    let spent = std::mem::replace(&mut self.current, chunk);
                    self.pos = 0;
                    if spent.capacity() > 0 {
                        // The sender may be gone; then the buffer is simply freed.
                        let _ = self.spent.send(spent);
                    }
                }
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvError) => self.done = true,
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, amount: usize) {
        self.pos = (self.pos + amount).min(self.current.len());
    }
}

/// Reads into `buf` (cleared first) until it holds [`CHUNK`] bytes or the input ends; retries
/// interrupted reads. Returns the bytes read (0 at end of input).
pub fn fill_chunk(reader: &mut dyn Read, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    buf.resize(CHUNK, 0);
    let mut filled = 0;
    while filled < CHUNK {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                buf.truncate(filled);
                return Err(e);
            }
        }
    }
    buf.truncate(filled);
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order_and_buffers_go_round() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17) as u32)
            .map(|i| (i % 253) as u8)
            .collect();
        let (tx, mut rx) = pipe();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            rx.read_to_end(&mut out).expect("read the pipe");
            out
        });
        let mut input = data.as_slice();
        loop {
            let mut buf = tx.buffer();
            if fill_chunk(&mut input, &mut buf).expect("read a slice") == 0 {
                break;
            }
            assert!(tx.send(buf));
        }
        drop(tx);
        assert_eq!(reader.join().expect("reader thread"), data);
    }

    #[test]
    fn errors_reach_the_reader_after_the_data() {
        let (tx, mut rx) = pipe();
        let mut chunk = tx.buffer();
        chunk.extend_from_slice(b"abc");
        assert!(tx.send(chunk));
        tx.fail(std::io::Error::other("network down"));
        let mut buf = [0u8; 8];
        assert_eq!(rx.read(&mut buf).expect("data first"), 3);
        let err = rx.read(&mut buf).expect_err("then the error");
        assert_eq!(err.to_string(), "network down");
    }

    #[test]
    fn a_gone_reader_is_reported() {
        let (tx, rx) = pipe();
        drop(rx);
        let mut chunk = tx.buffer();
        chunk.push(1);
        assert!(!tx.send(chunk));
    }
}
