//! Content digests (`sha256:<hex>`): parsing, computing while streaming, checking.

use std::io::{Read, Write};

use sha2::Digest as _;

use super::{ImageError, Result};

/// A sha256 content digest.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lower-case hex>`; any other algorithm or form is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: &str| ImageError::InvalidDigest {
            digest: text.to_string(),
            reason: reason.to_string(),
        };
        let hex = text
            .strip_prefix("sha256:")
            .ok_or_else(|| invalid("not a digest: expected sha256:<64 hex digits>"))?;
        Self::from_hex(hex).ok_or_else(|| {
            invalid("a sha256 digest has exactly 64 lower-case hex digits after `sha256:`")
        })
    }

    /// A digest from its 64 lower-case hex digits without the `sha256:` prefix (as blob file
    /// names and layer directories spell it); None when `hex` is not exactly that.
    pub fn from_hex(hex: &str) -> Option<Self> {
        // Upper case is refused, not folded: the OCI spec's sha256 encoding is lower case, and
        // one digest must have one spelling so it maps to one file.
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Digest {
            hex: hex.to_string(),
        })
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `crictl images` shows IMAGE ID.
    pub fn short(&self) -> &str {
        &self.hex[..12.min(self.hex.len())]
    }

    /// `Ok` when `actual` is this digest, else `DigestMismatch` naming both.
    pub fn verify(&self, actual: &Digest) -> Result<()> {
        if self == actual {
            Ok(())
        } else {
            Err(ImageError::DigestMismatch {
                digest: self.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl std::str::FromStr for Digest {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self> {
        Digest::parse(text)
    }
}

impl TryFrom<String> for Digest {
    type Error = super::ImageError;
    fn try_from(text: String) -> Result<Self> {
        Digest::parse(&text)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

/// An incremental sha256 that also counts the bytes it saw.
#[derive(Clone, Debug, Default)]
pub struct Hasher {
    sha: sha2::Sha256,
    len: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        let out = self.sha.finalize();
        let mut hex = String::with_capacity(64);
        for byte in out.iter() {
            hex.push(HEX[usize::from(byte >> 4)] as char);
            hex.push(HEX[usize::from(byte & 0xf)] as char);
        }
        Digest { hex }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A writer that hashes everything written through it to `inner`.
#[derive(Debug)]
pub struct DigestWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        DigestWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The digest and size of what was written, and the inner writer (not flushed).
    pub fn finish(self) -> (Digest, u64, W) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        // Only what the inner writer took counts, so a short write is hashed exactly once.
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it from `inner`.
#[derive(Debug)]
pub struct DigestReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestReader<R> {
    pub fn new(inner: R) -> Self {
        DigestReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.hasher.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hasher.is_empty()
    }

    /// The digest and size of what was read, and the inner reader.
    pub fn finish(self) -> (Digest, u64, R) {
        let len = self.hasher.len();
        (self.hasher.finish(), len, self.inner)
    }
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reader that hashes what passes through it on another thread, so hashing overlaps the
/// consumer's work (decompressing, writing files) instead of adding to it: unpacking a layer
/// hashes every byte of the uncompressed stream, which costs as much as writing it.
#[derive(Debug)]
pub struct ParallelDigestReader<R> {
    inner: R,
    hashing: Hashing,
    len: u64,
}

#[derive(Debug)]
enum Hashing {
    Thread {
        chunks: std::sync::mpsc::SyncSender<Vec<u8>>,
        worker: std::thread::JoinHandle<Hasher>,
    },
    /// No thread could be started: hash inline.
    Inline(Hasher),
}

impl<R: Read> ParallelDigestReader<R> {
    pub fn new(inner: R) -> Self {
        // A few chunks in flight bound the memory while letting the two sides run apart.
        let (chunks, received) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let spawned = std::thread::Builder::new()
            .name("digest".into())
            .spawn(move || {
                let mut hasher = Hasher::new();
                for chunk in received {
                    hasher.update(&chunk);
                }
                hasher
            });
        let hashing = match spawned {
            Ok(worker) => Hashing::Thread { chunks, worker },
            Err(e) => {
                tracing::debug!(error = %e, "no digest thread; hashing inline");
                Hashing::Inline(Hasher::new())
            }
        };
        ParallelDigestReader {
            inner,
            hashing,
            len: 0,
        }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The digest and size of what was read, and the inner reader.
    pub fn finish(self) -> std::io::Result<(Digest, u64, R)> {
        let hasher = match self.hashing {
            Hashing::Inline(hasher) => hasher,
            Hashing::Thread { chunks, worker } => {
                drop(chunks);
                worker
                    .join()
                    .map_err(|_| std::io::Error::other("the digest thread panicked"))?
            }
        };
        Ok((hasher.finish(), self.len, self.inner))
    }
}

impl<R: Read> Read for ParallelDigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            match &mut self.hashing {
                Hashing::Inline(hasher) => hasher.update(&buf[..n]),
                Hashing::Thread { chunks, .. } => chunks
                    .send(buf[..n].to_vec())
                    .map_err(|_| std::io::Error::other("the digest thread stopped"))?,
            }
            self.len += n as u64;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn of_matches_known_vectors() {
        assert_eq!(Digest::of(b"").to_string(), EMPTY);
        assert_eq!(
            Digest::of(b"abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_is_strict() {
        let d = Digest::parse(EMPTY).expect("valid");
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.short(), "e3b0c44298fc");
        for bad in [
            "",
            "sha256:",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "SHA256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            " sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:../../c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).expect("serialise");
        assert_eq!(json, format!("\"{d}\""));
        let back: Digest = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = DigestWriter::new(Vec::new());
        for chunk in data.chunks(777) {
            w.write_all(chunk).expect("write to vec");
        }
        let (digest, len, inner) = w.finish();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(len, data.len() as u64);
        assert_eq!(inner, data);

        let mut r = DigestReader::new(&data[..]);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).expect("read from slice");
        let (digest, len, _) = r.finish();
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(len, data.len() as u64);

        let mut r = ParallelDigestReader::new(&data[..]);
        let mut buf = vec![0u8; 1000];
        while r.read(&mut buf).expect("read from slice") > 0 {}
        let (digest, len, _) = r.finish().expect("digest thread");
        assert_eq!(digest, Digest::of(&data));
        assert_eq!(len, data.len() as u64);
    }

    #[test]
    fn verify_names_both_digests() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert!(a.verify(&a).is_ok());
        let err = a.verify(&b).expect_err("differs").to_string();
        assert!(
            err.contains(&a.to_string()) && err.contains(&b.to_string()),
            "{err}"
        );
    }
}
