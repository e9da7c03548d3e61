//! SPDY/3.1 as kubectl's port-forward speaks it: the frames (8-byte headers, big-endian), and
//! header blocks compressed with zlib primed with the SPDY/3 dictionary, one compression
//! context per direction for the whole connection, each block ended with a sync flush.
//!
//! Only what a server needs: it parses every frame kubectl sends and builds the frames it
//! answers with (SYN_REPLY, DATA, RST_STREAM, PING). No flow control: kubectl sends no
//! WINDOW_UPDATE and expects none.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The last frame of a stream in this direction.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream is refused or malformed.
pub const PROTOCOL_ERROR: u32 = 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
#[cfg(test)]
const WINDOW_UPDATE: u16 = 9;

/// The largest header block accepted once decompressed (a bomb stops here).
const MAX_HEADER_BLOCK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
    #[error("SPDY header compression: {0}")]
    Compression(String),
}

type Result<T, E = SpdyError> = std::result::Result<T, E>;

/// The SPDY/3 header dictionary: the length-prefixed words, then the text that follows them
/// (SPDY/3 draft, section 2.6.10.1). 1423 bytes, Adler-32 0xE3C6A7C2.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 ",
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 ",
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, ",
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The dictionary's Adler-32, as the first compressed block announces it.
const DICTIONARY_ADLER32: u32 = 0xE3C6_A7C2;

fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut bytes = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            bytes.put_u32(word.len() as u32);
            bytes.extend_from_slice(word.as_bytes());
        }
        bytes.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        bytes
    })
}

/// Name/value pairs of a header block, in order (names lower-case).
pub type Headers = Vec<(String, String)>;

/// The value of header `name`.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// One frame as it came off the wire, its payload not yet interpreted.
#[derive(Debug, PartialEq, Eq)]
pub enum RawFrame {
    Control {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
    Data {
        stream_id: u32,
        flags: u8,
        payload: Bytes,
    },
}

impl RawFrame {
    /// Takes the first complete frame off `buf`; None until a whole frame is there.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<RawFrame>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + length {
            return Ok(None);
        }
        let mut frame = buf.split_to(8 + length).freeze();
        let first = frame.get_u32();
        let flags = frame.get_u8();
        frame.advance(3);
        if first & 0x8000_0000 != 0 {
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != VERSION {
                return Err(SpdyError::Malformed(format!(
                    "version {version}, not {VERSION}"
                )));
            }
            Ok(Some(RawFrame::Control {
                kind: (first & 0xffff) as u16,
                flags,
                payload: frame,
            }))
        } else {
            Ok(Some(RawFrame::Data {
                stream_id: first,
                flags,
                payload: frame,
            }))
        }
    }
}

/// A frame, interpreted.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// SYN_REPLY or HEADERS: their header blocks are read only to keep the context in step.
    StreamHeaders {
        stream_id: u32,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream_id: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE and types a server may ignore.
    Ignored {
        kind: u16,
    },
}

fn need(payload: &Bytes, len: usize, what: &str) -> Result<()> {
    if payload.len() < len {
        return Err(SpdyError::Malformed(format!(
            "{what} of {} bytes, at least {len} needed",
            payload.len()
        )));
    }
    Ok(())
}

impl Frame {
    /// Interprets `raw`; header blocks go through `decoder` (every one, in order).
    pub fn decode(raw: RawFrame, decoder: &mut HeaderDecoder) -> Result<Frame> {
        let (kind, flags, mut payload) = match raw {
            RawFrame::Data {
                stream_id,
                flags,
                payload,
            } => {
                return Ok(Frame::Data {
                    stream_id,
                    fin: flags & FLAG_FIN != 0,
                    data: payload,
                })
            }
            RawFrame::Control {
                kind,
                flags,
                payload,
            } => (kind, flags, payload),
        };
        let fin = flags & FLAG_FIN != 0;
        Ok(match kind {
            SYN_STREAM => {
                need(&payload, 10, "SYN_STREAM")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                // Associated stream, priority and slot: unused by port-forward.
                payload.advance(6);
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers: decoder.decode(&payload)?,
                }
            }
            SYN_REPLY | HEADERS => {
                need(&payload, 4, "SYN_REPLY/HEADERS")?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                decoder.decode(&payload)?;
                Frame::StreamHeaders { stream_id }
            }
            RST_STREAM => {
                need(&payload, 8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    status: payload.get_u32(),
                }
            }
            PING => {
                need(&payload, 4, "PING")?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            GOAWAY => {
                need(&payload, 4, "GOAWAY")?;
                let last_stream_id = payload.get_u32() & 0x7fff_ffff;
                // SPDY/3.1 adds a status; older peers may leave it out.
                let status = if payload.len() >= 4 {
                    payload.get_u32()
                } else {
                    0
                };
                Frame::GoAway {
                    last_stream_id,
                    status,
                }
            }
            // SETTINGS, WINDOW_UPDATE and anything newer.
            kind => Frame::Ignored { kind },
        })
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + payload.len());
    frame.put_u32(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind));
    frame.put_u32((u32::from(flags) << 24) | payload.len() as u32);
    frame.put_slice(payload);
    frame.freeze()
}

/// A DATA frame (`data` at most 16 MiB; callers send far less).
pub fn data(stream_id: u32, fin: bool, data: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(8 + data.len());
    frame.put_u32(stream_id & 0x7fff_ffff);
    frame.put_u32((u32::from(if fin { FLAG_FIN } else { 0 }) << 24) | data.len() as u32);
    frame.put_slice(data);
    frame.freeze()
}

/// A SYN_REPLY accepting `stream_id`, with no headers.
pub fn syn_reply(stream_id: u32, encoder: &mut HeaderEncoder) -> Result<Bytes> {
    let mut payload = Vec::new();
    payload.put_u32(stream_id & 0x7fff_ffff);
    payload.extend_from_slice(&encoder.encode(&[])?);
    Ok(control(SYN_REPLY, 0, &payload))
}

/// A RST_STREAM ending `stream_id` with `status`.
pub fn rst_stream(stream_id: u32, status: u32) -> Bytes {
    let mut payload = Vec::with_capacity(8);
    payload.put_u32(stream_id & 0x7fff_ffff);
    payload.put_u32(status);
    control(RST_STREAM, 0, &payload)
}

/// A PING (the answer to one carries the same id).
pub fn ping(id: u32) -> Bytes {
    control(PING, 0, &id.to_be_bytes())
}

/// A SYN_STREAM, as a client opens a stream (the tests play kubectl with it).
#[cfg(test)]
pub fn syn_stream(
    stream_id: u32,
    headers: &[(&str, &str)],
    encoder: &mut HeaderEncoder,
) -> Result<Bytes> {
    let mut payload = Vec::new();
    payload.put_u32(stream_id & 0x7fff_ffff);
    payload.put_u32(0);
    payload.put_u16(0);
    payload.extend_from_slice(&encoder.encode(headers)?);
    Ok(control(SYN_STREAM, 0, &payload))
}

/// A GOAWAY (the tests end sessions with it).
#[cfg(test)]
pub fn goaway(last_stream_id: u32) -> Bytes {
    let mut payload = Vec::with_capacity(8);
    payload.put_u32(last_stream_id);
    payload.put_u32(0);
    control(GOAWAY, 0, &payload)
}

/// The decompressing side of one direction of a connection.
pub struct HeaderDecoder {
    inflate: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    /// The header block `block`, decompressed in the connection's context and parsed.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression(format!(
                    "a header block larger than {MAX_HEADER_BLOCK} bytes"
                )));
            }
            if out.len() == out.capacity() {
                out.reserve(out.len().max(256));
            }
            let (in_before, out_before) = (self.inflate.total_in(), out.len());
            let status =
                self.inflate
                    .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.inflate.total_in() - in_before) as usize;
            match status {
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.inflate
                            .set_dictionary(dictionary())
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(SpdyError::Compression(format!(
                            "the peer's dictionary has Adler-32 {other:#x}, not SPDY/3's"
                        )))
                    }
                    None => return Err(SpdyError::Compression(e.to_string())),
                },
            }
            let progressed = self.inflate.total_in() != in_before || out.len() != out_before;
            if consumed == block.len() && out.len() < out.capacity() {
                if out.len() > MAX_HEADER_BLOCK {
                    return Err(SpdyError::Compression(format!(
                        "a header block larger than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                break;
            }
            if !progressed {
                return Err(SpdyError::Compression("a truncated header block".into()));
            }
        }
        parse_header_block(&out)
    }
}

fn parse_header_block(block: &[u8]) -> Result<Headers> {
    let mut buf = block;
    let malformed = || SpdyError::Malformed("a truncated header block".into());
    let take = |buf: &mut &[u8]| -> Result<String> {
        if buf.len() < 4 {
            return Err(malformed());
        }
        let len = buf.get_u32() as usize;
        if buf.len() < len {
            return Err(malformed());
        }
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        buf.advance(len);
        Ok(text)
    };
    if buf.len() < 4 {
        return Err(malformed());
    }
    let count = buf.get_u32() as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name = take(&mut buf)?;
        let value = take(&mut buf)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// The compressing side of one direction of a connection.
pub struct HeaderEncoder {
    deflate: Compress,
}

impl HeaderEncoder {
    pub fn new() -> Result<HeaderEncoder> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(dictionary())
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(HeaderEncoder { deflate })
    }

    /// `headers` as a header block, compressed in the connection's context.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (name, value) in headers {
            raw.put_u32(name.len() as u32);
            raw.extend_from_slice(name.as_bytes());
            raw.put_u32(value.len() as u32);
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut consumed = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(64);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            consumed += (self.deflate.total_in() - before) as usize;
            // A sync flush is complete once the output did not fill up.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // Adler-32, computed here rather than trusted to zlib.
        let (mut a, mut b) = (1u32, 0u32);
        for byte in dict {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ADLER32);
    }

    #[test]
    fn header_blocks_from_another_zlib_decode() {
        // Two blocks from Python's zlib (compressobj(zdict=SPDY/3 dictionary), Z_SYNC_FLUSH
        // after each), as kubectl sends them: one context for both.
        let first = hex("78bbe3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff");
        let second = hex("c2aa19540e2512d60b000000ffff");
        let mut decoder = HeaderDecoder::default();
        let pairs = |h: Headers| h.into_iter().collect::<Vec<_>>();
        let expected = |kind: &str| {
            vec![
                ("streamtype".to_string(), kind.to_string()),
                ("port".to_string(), "8080".to_string()),
                ("requestid".to_string(), "0".to_string()),
            ]
        };
        assert_eq!(
            pairs(decoder.decode(&first).expect("first")),
            expected("error")
        );
        assert_eq!(
            pairs(decoder.decode(&second).expect("second")),
            expected("data")
        );
    }

    #[test]
    fn header_blocks_round_trip_in_one_context() {
        let mut encoder = HeaderEncoder::new().expect("encoder");
        let mut decoder = HeaderDecoder::default();
        let first = encoder.encode(&[("streamtype", "error")]).expect("encode");
        // zlib header with FDICT set, then the dictionary's Adler-32.
        assert_eq!(first[1] & 0x20, 0x20);
        assert_eq!(first[2..6], DICTIONARY_ADLER32.to_be_bytes());
        assert_eq!(
            decoder.decode(&first).expect("decode"),
            vec![("streamtype".to_string(), "error".to_string())]
        );
        let long = "x".repeat(100_000);
        for round in 0..5 {
            let port = round.to_string();
            let headers = [("port", port.as_str()), ("long", long.as_str())];
            let block = encoder.encode(&headers).expect("encode");
            let decoded = decoder.decode(&block).expect("decode");
            assert_eq!(header(&decoded, "port"), Some(port.as_str()));
            assert_eq!(header(&decoded, "long").map(str::len), Some(100_000));
        }
        assert_eq!(encoder.encode(&[]).map(|b| b.is_empty()).ok(), Some(false));
    }

    #[test]
    fn a_block_too_large_or_truncated_is_refused() {
        let mut encoder = HeaderEncoder::new().expect("encoder");
        let huge = "y".repeat(MAX_HEADER_BLOCK + 1);
        let block = encoder.encode(&[("big", huge.as_str())]).expect("encode");
        assert!(HeaderDecoder::default().decode(&block).is_err());
        let mut encoder = HeaderEncoder::new().expect("encoder");
        let block = encoder.encode(&[("a", "b")]).expect("encode");
        assert!(HeaderDecoder::default()
            .decode(&block[..block.len() / 2])
            .is_err());
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
    }

    #[test]
    fn frames_are_split_off_a_byte_stream_and_decoded() {
        let mut client = HeaderEncoder::new().expect("encoder");
        let mut decoder = HeaderDecoder::default();
        let mut wire = BytesMut::new();
        wire.extend_from_slice(
            &syn_stream(1, &[("streamtype", "error"), ("port", "80")], &mut client).expect("syn"),
        );
        wire.extend_from_slice(&data(3, true, b"hello"));
        wire.extend_from_slice(&ping(7));
        wire.extend_from_slice(&rst_stream(3, 5));
        wire.extend_from_slice(&goaway(3));
        wire.extend_from_slice(&control(WINDOW_UPDATE, 0, &[0, 0, 0, 1, 0, 0, 1, 0]));
        // Byte by byte, as kubectl's WebSocket tunnel may cut it.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in wire {
            buf.put_u8(byte);
            while let Some(raw) = RawFrame::parse(&mut buf).expect("parse") {
                frames.push(Frame::decode(raw, &mut decoder).expect("decode"));
            }
        }
        assert!(buf.is_empty());
        assert_eq!(
            frames,
            vec![
                Frame::SynStream {
                    stream_id: 1,
                    fin: false,
                    headers: vec![
                        ("streamtype".into(), "error".into()),
                        ("port".into(), "80".into())
                    ],
                },
                Frame::Data {
                    stream_id: 3,
                    fin: true,
                    data: Bytes::from_static(b"hello")
                },
                Frame::Ping { id: 7 },
                Frame::RstStream {
                    stream_id: 3,
                    status: 5
                },
                Frame::GoAway {
                    last_stream_id: 3,
                    status: 0
                },
                Frame::Ignored {
                    kind: WINDOW_UPDATE
                },
            ]
        );
    }

    #[test]
    fn frames_are_laid_out_as_spdy3_says() {
        assert_eq!(
            data(5, true, b"ab")[..],
            [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']
        );
        assert_eq!(ping(3)[..], [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 3]);
        assert_eq!(
            rst_stream(1, 5)[..],
            [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 5]
        );
        let mut encoder = HeaderEncoder::new().expect("encoder");
        let reply = syn_reply(9, &mut encoder).expect("reply");
        assert_eq!(reply[..4], [0x80, 3, 0, 2]);
        assert_eq!(reply[8..12], [0, 0, 0, 9]);
        let mut decoder = HeaderDecoder::default();
        assert!(decoder.decode(&reply[12..]).expect("headers").is_empty());
        // Another version is refused.
        let mut wrong = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(RawFrame::parse(&mut wrong).is_err());
    }
}
