//! The node's image store: content-addressed blobs, layers unpacked once and shared, image
//! records by reference and by digest, and garbage collection.
//!
//! Concurrency: blobs, layers, records and refs only ever appear by an atomic rename from
//! `tmp/`, so readers never see half a file and take no lock. Changes of records and refs take
//! an exclusive `flock` on `lock`. Writers of blobs and layers hold a shared `flock` on
//! `gc.lock` (a [`StoreLease`]) and garbage collection an exclusive one, so a collection never
//! deletes what a pull or import in any process is still writing.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Digest, Hasher, ParallelDigestReader};
use super::layer::{self, Compression};
use super::pipe;
use super::reference::Reference;
use super::{ImageError, Result};
/// One layer of an image.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerRecord {
    /// The (compressed) blob's digest, as in the manifest.
    pub digest: Digest,
    pub media_type: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The digest of the uncompressed tar, as in the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// One image in the store. Its id is the config's digest, as Docker and containerd use.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    /// The manifest's digest (what `image@sha256:` pins), if the image came with a manifest.
    pub manifest_digest: Option<Digest>,
    /// Full normalised tag references: `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Full normalised digest references: `docker.io/library/busybox@sha256:...`.
    pub repo_digests: Vec<String>,
    /// The OCI image configuration (JSON as in the config blob).
    pub config: serde_json::Value,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
    /// Unpacked size in bytes (what `skiff image ls` shows).
    pub size: u64,
    /// RFC 3339 creation time from the config, if any.
    pub created: Option<String>,
}

/// What a prune or remove freed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub images: Vec<Digest>,
    pub layers: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// The store under `<data-dir>/images`. Cheap to clone; safe to use from several threads and
/// from several processes at once.
#[derive(Clone, Debug)]
pub struct ImageStore {
    root: PathBuf,
}

/// Big reads: blobs are mostly compressed layers of tens of megabytes.
const BUF_SIZE: usize = 1 << 20;

impl ImageStore {
    /// Opens (creating if needed) the store of the node whose data dir is `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let root = data_dir.join("images");
        for dir in ["blobs/sha256", "layers", "images", "diffids", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path)
                .map_err(|e| ImageError::io("creating the image store directory", &path, e))?;
        }
        for lock in ["lock", "gc.lock"] {
            let path = root.join(lock);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| ImageError::io("creating the image store lock", &path, e))?;
        }
        Ok(ImageStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Holds off garbage collection (in every process) until dropped. A pull or import takes
    /// one before writing its first blob and drops it after `put_image`, so a concurrent prune
    /// cannot delete blobs and layers that no record references yet. `write_blob` and
    /// `ensure_layer` take one themselves for their own duration.
    pub fn lease(&self) -> Result<StoreLease> {
        Ok(StoreLease {
            _lock: FileLock::take(
                &self.root.join("gc.lock"),
                rustix::fs::FlockOperation::LockShared,
            )?,
        })
    }

    /// Whether a blob is present and intact (its digest is checked; a corrupt one is removed).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.verify_blob(digest).is_ok()
    }

    /// Checks a present blob against its digest and returns its size: `BlobNotFound` when it is
    /// missing, `DigestMismatch` when it is corrupt (and then it is removed, so it is fetched
    /// again rather than used).
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob_file(digest)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = read_retrying(&mut file, &mut buf)
                .map_err(|e| ImageError::io("reading blob", &path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let size = hasher.len();
        self.check_or_discard(digest, &file, hasher.finish())?;
        Ok(size)
    }

    /// Streams a blob into the store, checking its digest (and size when known) before it
    /// becomes visible. Returns its size.
    pub fn write_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<u64> {
        let _lease = self.lease()?;
        let tmp = TmpGuard::new(self.tmp_path(&format!("blob-{}", digest.hex())));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.0)
            .map_err(|e| ImageError::io("creating temporary blob", &tmp.0, e))?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; BUF_SIZE];
        loop {
            let n = read_retrying(reader, &mut buf).map_err(|e| ImageError::Io {
                operation: "receiving blob",
                path: digest.to_string(),
                source: e,
            })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            // Stop a stream that is longer than announced before it fills the disk.
            if let Some(expected) = size {
                if hasher.len() > expected {
                    return Err(ImageError::BlobSize {
                        digest: digest.to_string(),
                        expected,
                        actual: hasher.len(),
                    });
                }
            }
            file.write_all(&buf[..n])
                .map_err(|e| ImageError::io("writing temporary blob", &tmp.0, e))?;
        }
        let written = hasher.len();
        if let Some(expected) = size {
            if written != expected {
                return Err(ImageError::BlobSize {
                    digest: digest.to_string(),
                    expected,
                    actual: written,
                });
            }
        }
        digest.verify(&hasher.finish())?;
        file.sync_data()
            .map_err(|e| ImageError::io("syncing temporary blob", &tmp.0, e))?;
        drop(file);
        let path = self.blob_path(digest);
        // Concurrent writers of one blob each rename their own complete copy; the last one wins
        // and both copies are the same bytes, so every writer succeeds.
        fs::rename(&tmp.0, &path).map_err(|e| ImageError::io("storing blob", &path, e))?;
        tmp.disarm();
        sync_dir(&self.root.join("blobs/sha256"))?;
        Ok(written)
    }

    /// A blob's bytes, checked against its digest before they are returned.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob_file(digest)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| ImageError::io("reading blob", &path, e))?;
        self.check_or_discard(digest, &file, Digest::of(&bytes))?;
        Ok(bytes)
    }

    fn open_blob_file(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => ImageError::BlobNotFound(digest.to_string()),
            _ => ImageError::io("opening blob", &path, e),
        })
    }

    /// Compares what `file` (the opened blob) hashed to; a corrupt blob is removed so the next
    /// user fetches it again instead of using it.
    fn check_or_discard(&self, digest: &Digest, file: &File, actual: Digest) -> Result<()> {
        if let Err(mismatch) = digest.verify(&actual) {
            match file.metadata() {
                Ok(inode) => self.discard_corrupt(digest, &inode, &actual),
                Err(e) => tracing::warn!(blob = %digest, error = %e, "cannot inspect corrupt blob"),
            }
            return Err(mismatch);
        }
        Ok(())
    }

    /// Removes a blob found corrupt, if the file at its path is still the one that was read
    /// (`inode`): another writer may have renamed a good copy over it meanwhile.
    fn discard_corrupt(&self, digest: &Digest, inode: &fs::Metadata, actual: &Digest) {
        let path = self.blob_path(digest);
        let same = fs::symlink_metadata(&path)
            .is_ok_and(|now| now.dev() == inode.dev() && now.ino() == inode.ino());
        if same {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(blob = %digest, error = %e, "cannot remove corrupt blob");
            }
        }
        tracing::warn!(blob = %digest, actual = %actual, "corrupt blob discarded");
    }

    /// A fresh path under `tmp/`, unique across threads and processes.
    fn tmp_path(&self, what: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}.{}.{n}", std::process::id()))
    }

    /// Unpacks a layer blob once (tar, gzip or zstd, by media type or by sniffing) and returns
    /// its record; a layer already unpacked is not unpacked again. Its diff id is checked against
    /// `expected_diff_id` when given.
    ///
    /// The blob is checked against its digest while it is unpacked; a corrupt or truncated one
    /// is removed and reported as `DigestMismatch`, so the caller fetches it again.
    pub fn ensure_layer(
        &self,
        blob: &Digest,
        media_type: &str,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerRecord> {
        let _lease = self.lease()?;
        let blob_path = self.blob_path(blob);
        let blob_size = match fs::metadata(&blob_path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(ImageError::BlobNotFound(blob.to_string()))
            }
            Err(e) => return Err(ImageError::io("inspecting blob", &blob_path, e)),
        };
        let record = |diff_id: Digest| -> Result<LayerRecord> {
            if let Some(expected) = expected_diff_id {
                if *expected != diff_id {
                    return Err(ImageError::BadLayer {
                        layer: blob.to_string(),
                        reason: format!(
                            "its content is {diff_id} but the image configuration says {expected}"
                        ),
                    });
                }
            }
            Ok(LayerRecord {
                digest: blob.clone(),
                media_type: media_type.to_string(),
                size: blob_size,
                diff_id,
            })
        };
        if let Some(diff_id) = self.unpacked_diff_id(blob) {
            return record(diff_id);
        }
        // One unpack of a blob at a time, across threads and processes; the others wait and
        // then find it done.
        let _unpacking = FileLock::take(
            &self.unpack_lock_path(blob),
            rustix::fs::FlockOperation::LockExclusive,
        )?;
        if let Some(diff_id) = self.unpacked_diff_id(blob) {
            return record(diff_id);
        }

        let tmp = TmpGuard::new(self.tmp_path(&format!("layer-{}", blob.hex())));
        let rootfs = tmp.0.join("rootfs");
        for dir in [&tmp.0, &rootfs] {
            fs::create_dir(dir).map_err(|e| ImageError::io("creating layer directory", dir, e))?;
        }
        let file = self.open_blob_file(blob)?;
        let inode = file
            .metadata()
            .map_err(|e| ImageError::io("inspecting blob", &blob_path, e))?;
        let mut input =
            std::io::BufReader::with_capacity(BUF_SIZE, ParallelDigestReader::new(file));
        // The bytes decide when they are compressed (some registries mislabel layers); the media
        // type only when they look like a plain tar.
        let head = input
            .fill_buf()
            .map_err(|e| ImageError::io("reading blob", &blob_path, e))?;
        let compression = match Compression::sniff(head) {
            Compression::None => {
                Compression::from_media_type(media_type).unwrap_or(Compression::None)
            }
            sniffed => sniffed,
        };
        let unpacked = layer::unpack_parallel(&blob.to_string(), &mut input, compression, &rootfs);
        // Hash what the decoder left unread, then judge the blob before the layer: a corrupt
        // blob usually also fails to unpack, and must be fetched again rather than reported
        // as a bad layer.
        let drained = std::io::copy(&mut input, &mut std::io::sink());
        let (actual, _, file) = input
            .into_inner()
            .finish()
            .map_err(|e| ImageError::io("hashing blob", &blob_path, e))?;
        if actual != *blob {
            self.discard_corrupt(blob, &inode, &actual);
            return Err(ImageError::DigestMismatch {
                digest: blob.to_string(),
                actual: actual.to_string(),
            });
        }
        drop(file);
        let unpacked = unpacked?;
        drained.map_err(|e| ImageError::io("reading blob", &blob_path, e))?;
        let checked = record(unpacked.diff_id.clone())?;
        self.store_layer(blob, tmp, &unpacked)?;
        Ok(checked)
    }

    /// Moves a layer unpacked in `tmp` (its `rootfs/`) into place and records which blob it
    /// came from. The caller holds the blob's unpack lock.
    fn store_layer(&self, blob: &Digest, tmp: TmpGuard, unpacked: &layer::Unpacked) -> Result<()> {
        let size_path = tmp.0.join("size");
        fs::write(&size_path, unpacked.size.to_string())
            .map_err(|e| ImageError::io("writing layer size", &size_path, e))?;
        let dest = self.root.join("layers").join(unpacked.diff_id.hex());
        match fs::rename(&tmp.0, &dest) {
            Ok(()) => tmp.disarm(),
            // The same layer from another blob (the same tar compressed differently) is already
            // there; ours is removed with the guard.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(code) if code == rustix::io::Errno::NOTEMPTY.raw_os_error()
                        || code == rustix::io::Errno::EXIST.raw_os_error()
                ) => {}
            Err(e) => return Err(ImageError::io("storing layer", &dest, e)),
        }
        sync_dir(&self.root.join("layers"))?;
        self.write_atomic(
            &self.root.join("diffids").join(blob.hex()),
            unpacked.diff_id.to_string().as_bytes(),
        )
    }

    /// Receives a layer blob and unpacks it in the same pass: what `write_blob` then
    /// `ensure_layer` do, leaving the same blob, layer and mapping, but reading the bytes once.
    /// The compressed stream is written to a temporary blob and hashed on this thread while
    /// other threads decompress it, hash the tar and write its files; the blob and the layer
    /// only move into place when the blob's size and digest and the layer's diff id
    /// (`expected_diff_id`, when given) all match. On any error nothing of them is left.
    ///
    /// A blob whose layer is already unpacked is only written. When another thread or process
    /// is unpacking the same blob, this one writes the blob and waits for that unpack (doing it
    /// from the stored blob if that one fails), so a blob is unpacked once.
    pub fn write_layer_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        media_type: &str,
        expected_diff_id: Option<&Digest>,
        reader: &mut dyn Read,
    ) -> Result<LayerRecord> {
        let _lease = self.lease()?;
        let blob_then_layer = |reader: &mut dyn Read| {
            self.write_blob(digest, size, reader)?;
            self.ensure_layer(digest, media_type, expected_diff_id)
        };
        if self.unpacked_diff_id(digest).is_some() {
            return blob_then_layer(reader);
        }
        let Some(_unpacking) = FileLock::try_take(
            &self.unpack_lock_path(digest),
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        )?
        else {
            return blob_then_layer(reader);
        };
        if self.unpacked_diff_id(digest).is_some() {
            return blob_then_layer(reader);
        }

        let blob_tmp = TmpGuard::new(self.tmp_path(&format!("blob-{}", digest.hex())));
        let layer_tmp = TmpGuard::new(self.tmp_path(&format!("layer-{}", digest.hex())));
        let rootfs = layer_tmp.0.join("rootfs");
        for dir in [&layer_tmp.0, &rootfs] {
            fs::create_dir(dir).map_err(|e| ImageError::io("creating layer directory", dir, e))?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&blob_tmp.0)
            .map_err(|e| ImageError::io("creating temporary blob", &blob_tmp.0, e))?;
        let mut pump = BlobPump {
            digest,
            size,
            file,
            path: &blob_tmp.0,
            hasher: Hasher::new(),
        };
        let (chunks, mut compressed) = pipe::pipe();
        let mut first = chunks.buffer();
        pipe::fill_chunk(reader, &mut first).map_err(|e| receiving(digest, e))?;
        // As in `ensure_layer`: the bytes say whether they are compressed, the media type only
        // when they look like a plain tar.
        let compression = match Compression::sniff(&first) {
            Compression::None => {
                Compression::from_media_type(media_type).unwrap_or(Compression::None)
            }
            sniffed => sniffed,
        };
        let name = digest.to_string();
        let (pumped, unpacked) = std::thread::scope(|scope| {
            let unpacker = std::thread::Builder::new()
                .name("layer-unpack".into())
                .spawn_scoped(scope, {
                    let (name, rootfs) = (&name, &rootfs);
                    // `compressed` moves in and is dropped when the unpack ends, so the pump
                    // stops feeding a finished (or failed) unpacker instead of blocking on it.
                    move || layer::unpack_parallel(name, &mut compressed, compression, rootfs)
                });
            let unpacker = match unpacker {
                Ok(unpacker) => unpacker,
                Err(e) => {
                    return (
                        Err(ImageError::Other(format!(
                            "starting the unpack thread: {e}"
                        ))),
                        None,
                    )
                }
            };
            let pumped = pump.run(reader, first, chunks);
            // The blob is complete and checked while the unpacker may still be writing files:
            // make it durable now, in parallel, rather than after.
            let pumped = pumped.and_then(|()| pump.sync());
            let unpacked = unpacker.join().unwrap_or_else(|_| {
                Err(ImageError::Other(format!(
                    "unpacking layer {digest}: the unpack thread panicked"
                )))
            });
            (pumped, Some(unpacked))
        });
        pumped?;
        let unpacked = unpacked.ok_or_else(|| {
            ImageError::Other(format!("unpacking layer {digest}: no unpack result"))
        })??;
        if let Some(expected) = expected_diff_id {
            if *expected != unpacked.diff_id {
                return Err(ImageError::BadLayer {
                    layer: digest.to_string(),
                    reason: format!(
                        "its content is {} but the image configuration says {expected}",
                        unpacked.diff_id
                    ),
                });
            }
        }
        let written = pump.hasher.len();
        drop(pump.file);
        let path = self.blob_path(digest);
        fs::rename(&blob_tmp.0, &path).map_err(|e| ImageError::io("storing blob", &path, e))?;
        blob_tmp.disarm();
        sync_dir(&self.root.join("blobs/sha256"))?;
        self.store_layer(digest, layer_tmp, &unpacked)?;
        Ok(LayerRecord {
            digest: digest.clone(),
            media_type: media_type.to_string(),
            size: written,
            diff_id: unpacked.diff_id,
        })
    }

    /// Held by whoever unpacks a blob, so each blob is unpacked once across processes.
    fn unpack_lock_path(&self, blob: &Digest) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("unpack-{}.lock", blob.hex()))
    }

    /// The diff id of a blob whose layer is unpacked and present.
    fn unpacked_diff_id(&self, blob: &Digest) -> Option<Digest> {
        let text = fs::read_to_string(self.root.join("diffids").join(blob.hex())).ok()?;
        let diff_id = Digest::parse(text.trim()).ok()?;
        self.layer_dir(&diff_id).is_dir().then_some(diff_id)
    }

    /// The unpacked size of a layer in bytes (file contents), as recorded when it was unpacked.
    pub fn layer_size(&self, diff_id: &Digest) -> Result<u64> {
        let path = self.root.join("layers").join(diff_id.hex()).join("size");
        let text = fs::read_to_string(&path)
            .map_err(|e| ImageError::io("reading layer size", &path, e))?;
        text.trim()
            .parse()
            .map_err(|_| ImageError::Other(format!("{}: not a size: {text:?}", path.display())))
    }

    /// The unpacked directory of a layer (its `rootfs/`).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex()).join("rootfs")
    }

    /// Records an image and points its tags and digests at it (a tag moves from any image that
    /// had it). All its blobs and layers must be present. Tags and digests are normalised, an
    /// image recorded before keeps its other tags, and `size` is the sum of its layers'.
    pub fn put_image(&self, mut record: ImageRecord) -> Result<()> {
        let _lock = self.lock_records()?;
        let id = record.id.clone();
        let mut needed: Vec<&Digest> = vec![&record.id];
        needed.extend(record.manifest_digest.as_ref());
        needed.extend(record.layers.iter().map(|l| &l.digest));
        for blob in needed {
            if !self.blob_path(blob).is_file() {
                return Err(ImageError::BlobNotFound(blob.to_string()));
            }
        }
        let mut size = 0;
        for layer in &record.layers {
            if !self.layer_dir(&layer.diff_id).is_dir() {
                return Err(ImageError::Other(format!(
                    "image {id}: layer {} is not unpacked in the store",
                    layer.diff_id
                )));
            }
            size += self.layer_size(&layer.diff_id)?;
        }
        record.size = size;
        let mut tags = Vec::new();
        for tag in &record.repo_tags {
            tags.push(tag_key(tag)?);
        }
        let mut digests = Vec::new();
        for digest in &record.repo_digests {
            digests.push(digest_key(digest)?);
        }
        if let Some(old) = self.load(&id)? {
            tags = union(old.repo_tags, tags);
            digests = union(old.repo_digests, digests);
            if record.manifest_digest.is_none() {
                record.manifest_digest = old.manifest_digest;
            }
        }
        record.repo_tags = tags;
        record.repo_digests = digests;

        let mut refs = self.read_refs()?;
        for key in record.repo_tags.iter().chain(&record.repo_digests) {
            if let Some(previous) = refs.insert(key.clone(), id.clone()) {
                if previous != id {
                    // The tag moves: the image that had it loses it (and may become untagged).
                    if let Some(mut other) = self.load(&previous)? {
                        other.repo_tags.retain(|t| t != key);
                        other.repo_digests.retain(|t| t != key);
                        self.save(&other)?;
                    }
                }
            }
        }
        self.save(&record)?;
        self.write_refs(&refs)
    }

    /// Finds an image by reference (`busybox`, `busybox:1.36`, `x@sha256:...`), by full id or by
    /// a unique id prefix (`sha256:abc...` or `abc123`).
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>> {
        Ok(self.find(reference)?.map(|(record, _)| record))
    }

    /// `resolve`, also saying whether a reference (which) or the id matched.
    fn find(&self, text: &str) -> Result<Option<(ImageRecord, Option<String>)>> {
        let text = text.trim();
        let by_id = |prefix: &str| -> Result<Option<(ImageRecord, Option<String>)>> {
            Ok(self.by_id_prefix(prefix, text)?.map(|r| (r, None)))
        };
        if let Some(hex) = text.strip_prefix("sha256:") {
            return by_id(hex);
        }
        let hex = !text.is_empty() && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex && text.len() == 64 {
            return by_id(text);
        }
        match Reference::parse(text) {
            Ok(reference) => {
                if let Some(found) = self.get_with_key(&reference)? {
                    return Ok(Some(found));
                }
            }
            Err(e) if !hex => return Err(e),
            Err(_) => {}
        }
        // Like Docker: a name that is no tag but hex may be an id prefix.
        if hex {
            return by_id(text);
        }
        Ok(None)
    }

    fn by_id_prefix(&self, prefix: &str, text: &str) -> Result<Option<ImageRecord>> {
        if prefix.is_empty() {
            return Ok(None);
        }
        let mut matches: Vec<Digest> = self
            .ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => self.load(&matches.remove(0)),
            _ => Err(ImageError::AmbiguousId {
                prefix: text.to_string(),
                matches: matches
                    .iter()
                    .map(|d| d.short().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Finds an image by parsed reference.
    pub fn get(&self, reference: &Reference) -> Result<Option<ImageRecord>> {
        Ok(self.get_with_key(reference)?.map(|(record, _)| record))
    }

    fn get_with_key(&self, reference: &Reference) -> Result<Option<(ImageRecord, Option<String>)>> {
        // A digest pins the image whatever the tag says, as in Docker.
        let key = match (&reference.digest, reference.tagged()) {
            (Some(digest), _) => reference.with_digest(digest),
            (None, Some(tagged)) => tagged,
            (None, None) => return Ok(None),
        };
        let refs = self.read_refs()?;
        if let Some(id) = refs.get(&key) {
            if let Some(record) = self.load(id)? {
                return Ok(Some((record, Some(key))));
            }
        }
        // `name@sha256:<manifest>` of an image known under that name by tag.
        if let Some(digest) = &reference.digest {
            let name = reference.name();
            let same_name = |r: &String| {
                r.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
            };
            for record in self.list()? {
                if record.manifest_digest.as_ref() == Some(digest)
                    && record
                        .repo_tags
                        .iter()
                        .chain(&record.repo_digests)
                        .any(same_name)
                {
                    return Ok(Some((record, None)));
                }
            }
        }
        Ok(None)
    }

    /// Every image, sorted by first tag (untagged ones last, by id).
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let mut images = Vec::new();
        for id in self.ids()? {
            // A record removed since the listing is simply gone.
            if let Some(record) = self.load(&id)? {
                images.push(record);
            }
        }
        images.sort_by(|a, b| {
            let key = |r: &ImageRecord| (r.repo_tags.is_empty(), r.repo_tags.first().cloned());
            key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(images)
    }

    /// Removes a tag, or the whole image when given by id or when it was its last tag; then frees
    /// layers and blobs nothing else uses. Images in `in_use` (ids) are refused with `InUse`.
    pub fn remove(&self, reference: &str, in_use: &[Digest]) -> Result<Freed> {
        let _gc = self.lock_gc()?;
        let _lock = self.lock_records()?;
        let Some((mut record, key)) = self.find(reference)? else {
            return Err(ImageError::NotFound(reference.to_string()));
        };
        if let Some(key) = key {
            let mut untagged = record.clone();
            untagged.repo_tags.retain(|t| *t != key);
            untagged.repo_digests.retain(|t| *t != key);
            if !untagged.repo_tags.is_empty() {
                let mut refs = self.read_refs()?;
                refs.remove(&key);
                self.save(&untagged)?;
                self.write_refs(&refs)?;
                return Ok(Freed::default());
            }
            record = untagged;
        }
        if in_use.contains(&record.id) {
            return Err(ImageError::InUse {
                image: reference.to_string(),
                users: "containers on this node".to_string(),
            });
        }
        self.delete_records(std::slice::from_ref(&record))?;
        let mut freed = self.collect(Some(std::slice::from_ref(&record)))?;
        freed.images.push(record.id);
        Ok(freed)
    }

    /// Removes every image not in `in_use` (`all`), or only untagged ones, then unreferenced
    /// layers, blobs and temporary files.
    pub fn prune(&self, in_use: &[Digest], all: bool) -> Result<Freed> {
        let _gc = self.lock_gc()?;
        let _lock = self.lock_records()?;
        let victims: Vec<ImageRecord> = self
            .list()?
            .into_iter()
            .filter(|r| !in_use.contains(&r.id) && (all || r.repo_tags.is_empty()))
            .collect();
        self.delete_records(&victims)?;
        let mut freed = self.collect(None)?;
        freed.images = victims.into_iter().map(|r| r.id).collect();
        Ok(freed)
    }

    /// The unpacked layer directories of an image, bottom first (overlay lowerdirs reversed).
    pub fn layer_dirs(&self, image: &ImageRecord) -> Vec<PathBuf> {
        image
            .layers
            .iter()
            .map(|l| self.layer_dir(&l.diff_id))
            .collect()
    }
}

/// Records, refs and garbage collection.
impl ImageStore {
    fn lock_records(&self) -> Result<FileLock> {
        FileLock::take(
            &self.root.join("lock"),
            rustix::fs::FlockOperation::LockExclusive,
        )
    }

    /// Waits until no lease is held in any process, and keeps new ones out.
    fn lock_gc(&self) -> Result<FileLock> {
        FileLock::take(
            &self.root.join("gc.lock"),
            rustix::fs::FlockOperation::LockExclusive,
        )
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    fn load(&self, id: &Digest) -> Result<Option<ImageRecord>> {
        let path = self.record_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ImageError::io("reading image record", &path, e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ImageError::Other(format!("{}: corrupt image record: {e}", path.display()))
        })
    }

    fn save(&self, record: &ImageRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| ImageError::Other(format!("encoding image record: {e}")))?;
        self.write_atomic(&self.record_path(&record.id), &bytes)
    }

    /// Ids of every recorded image.
    fn ids(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("images");
        let entries = fs::read_dir(&dir).map_err(|e| ImageError::io("listing images", &dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("listing images", &dir, e))?;
            let name = entry.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(Digest::from_hex)
            {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn read_refs(&self) -> Result<BTreeMap<String, Digest>> {
        let path = self.root.join("refs.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ImageError::Other(format!("{}: corrupt references: {e}", path.display()))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io("reading references", &path, e)),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, Digest>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(refs)
            .map_err(|e| ImageError::Other(format!("encoding references: {e}")))?;
        self.write_atomic(&self.root.join("refs.json"), &bytes)
    }

    /// Replaces `path` with `bytes` so readers see the old or the new content, never a mix.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = TmpGuard::new(self.tmp_path("write"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.0)
            .map_err(|e| ImageError::io("creating temporary file", &tmp.0, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_data())
            .map_err(|e| ImageError::io("writing temporary file", &tmp.0, e))?;
        drop(file);
        fs::rename(&tmp.0, path).map_err(|e| ImageError::io("replacing", path, e))?;
        tmp.disarm();
        match path.parent() {
            Some(dir) => sync_dir(dir),
            None => Ok(()),
        }
    }

    /// Deletes image records and every reference to them (the records lock is held).
    fn delete_records(&self, records: &[ImageRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let ids: HashSet<&Digest> = records.iter().map(|r| &r.id).collect();
        let mut refs = self.read_refs()?;
        refs.retain(|_, id| !ids.contains(id));
        self.write_refs(&refs)?;
        for id in ids {
            let path = self.record_path(id);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(ImageError::io("removing image record", &path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes blobs and layers no remaining image uses: those of `removed`, or (None) every
    /// one in the store, then also temporary files and stale diff id mappings. Both locks are
    /// held, so no pull or import is under way. Errors are collected; the rest goes on.
    fn collect(&self, removed: Option<&[ImageRecord]>) -> Result<Freed> {
        let mut keep_blobs = BTreeSet::new();
        let mut keep_layers = BTreeSet::new();
        for image in self.list()? {
            keep_blobs.extend(image_blobs(&image));
            keep_layers.extend(image.layers.into_iter().map(|l| l.diff_id));
        }
        let (blobs, layers): (BTreeSet<Digest>, BTreeSet<Digest>) = match removed {
            Some(records) => (
                records.iter().flat_map(image_blobs).collect(),
                records
                    .iter()
                    .flat_map(|r| r.layers.iter().map(|l| l.diff_id.clone()))
                    .collect(),
            ),
            None => (
                hex_names(&self.root.join("blobs/sha256"))?,
                hex_names(&self.root.join("layers"))?,
            ),
        };
        let mut freed = Freed::default();
        let mut errors: Vec<String> = Vec::new();
        for blob in blobs.difference(&keep_blobs) {
            let path = self.blob_path(blob);
            let len = match fs::symlink_metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            match fs::remove_file(&path) {
                Ok(()) => {
                    freed.blobs += 1;
                    freed.bytes += len;
                }
                Err(e) => errors.push(format!("removing {}: {e}", path.display())),
            }
            let mapping = self.root.join("diffids").join(blob.hex());
            if let Err(e) = remove_any(&mapping) {
                errors.push(format!("removing {}: {e}", mapping.display()));
            }
        }
        for layer in layers.difference(&keep_layers) {
            let dir = self.root.join("layers").join(layer.hex());
            if !dir.exists() {
                continue;
            }
            let size = self.layer_size(layer).unwrap_or(0);
            // Moved out of `layers/` first: a crash half-way through the deletion must not
            // leave half a layer that looks complete.
            let doomed = self.tmp_path(&format!("deleting-{}", layer.hex()));
            if let Err(e) = fs::rename(&dir, &doomed) {
                errors.push(format!("removing {}: {e}", dir.display()));
                continue;
            }
            freed.layers += 1;
            freed.bytes += size;
            if let Err(e) = fs::remove_dir_all(&doomed) {
                errors.push(format!("removing {}: {e}", doomed.display()));
            }
        }
        if removed.is_none() {
            self.sweep(&mut errors);
        }
        if errors.is_empty() {
            Ok(freed)
        } else {
            Err(ImageError::Other(format!(
                "cleaning the image store: {}",
                errors.join("; ")
            )))
        }
    }

    /// Removes leftovers of interrupted writes (everything in `tmp/`: no writer is running) and
    /// diff id mappings whose blob is gone.
    fn sweep(&self, errors: &mut Vec<String>) {
        let tmp = self.root.join("tmp");
        match fs::read_dir(&tmp) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    if let Err(e) = remove_any(&entry.path()) {
                        errors.push(format!("removing {}: {e}", entry.path().display()));
                    }
                }
            }
            Err(e) => errors.push(format!("listing {}: {e}", tmp.display())),
        }
        let diffids = self.root.join("diffids");
        match fs::read_dir(&diffids) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let blob = name.to_str().and_then(Digest::from_hex);
                    if blob.is_some_and(|b| !self.blob_path(&b).exists()) {
                        if let Err(e) = remove_any(&entry.path()) {
                            errors.push(format!("removing {}: {e}", entry.path().display()));
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("listing {}: {e}", diffids.display())),
        }
    }
}

/// Every blob an image needs: config, manifest, layers, and what its digest references name
/// (an image index pulled by digest).
fn image_blobs(image: &ImageRecord) -> Vec<Digest> {
    let mut blobs = vec![image.id.clone()];
    blobs.extend(image.manifest_digest.clone());
    blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
    blobs.extend(
        image
            .repo_digests
            .iter()
            .filter_map(|r| r.rsplit_once('@'))
            .filter_map(|(_, d)| Digest::parse(d).ok()),
    );
    blobs
}

/// The digests named by the entries of `dir` (`<64 hex>`); anything else is left alone.
fn hex_names(dir: &Path) -> Result<BTreeSet<Digest>> {
    let entries = fs::read_dir(dir).map_err(|e| ImageError::io("listing", dir, e))?;
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("listing", dir, e))?;
        if let Some(d) = entry.file_name().to_str().and_then(Digest::from_hex) {
            names.insert(d);
        }
    }
    Ok(names)
}

/// The full normalised tag reference (`docker.io/library/busybox:latest`).
fn tag_key(text: &str) -> Result<String> {
    let reference = Reference::parse(text)?;
    match (&reference.digest, reference.tagged()) {
        (None, Some(tagged)) => Ok(tagged),
        _ => Err(ImageError::InvalidReference {
            reference: text.to_string(),
            reason: "a tag reference is NAME:TAG, without a digest".to_string(),
        }),
    }
}

/// The full normalised digest reference (`docker.io/library/busybox@sha256:...`).
fn digest_key(text: &str) -> Result<String> {
    let reference = Reference::parse(text)?;
    match &reference.digest {
        Some(digest) => Ok(reference.with_digest(digest)),
        None => Err(ImageError::InvalidReference {
            reference: text.to_string(),
            reason: "a digest reference is NAME@sha256:<hex>".to_string(),
        }),
    }
}

/// `a` followed by what `b` adds, without repeats.
fn union(a: Vec<String>, b: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    for item in a.into_iter().chain(b) {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// A shared hold on the store's garbage collection; see [`ImageStore::lease`].
#[derive(Debug)]
pub struct StoreLease {
    _lock: FileLock,
}

/// An advisory `flock`, released when the file is closed (on drop).
#[derive(Debug)]
struct FileLock {
    _file: File,
}

impl FileLock {
    fn take(path: &Path, operation: rustix::fs::FlockOperation) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| ImageError::io("opening lock", path, e))?;
        loop {
            match rustix::fs::flock(&file, operation) {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ImageError::io("locking", path, e.into())),
            }
        }
    }
}

impl FileLock {
    /// `take` without waiting: None when another holder has the lock.
    fn try_take(path: &Path, operation: rustix::fs::FlockOperation) -> Result<Option<Self>> {
        match Self::take(path, operation) {
            Ok(lock) => Ok(Some(lock)),
            Err(ImageError::Io { source, .. })
                if source.raw_os_error() == Some(rustix::io::Errno::WOULDBLOCK.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// The writing side of [`ImageStore::write_layer_blob`]: stores and hashes the compressed
/// stream and hands it on to the unpacker.
struct BlobPump<'a> {
    digest: &'a Digest,
    size: Option<u64>,
    file: File,
    path: &'a Path,
    hasher: Hasher,
}

impl BlobPump<'_> {
    /// Reads `reader` to its end (`first` is what was read of it already), writing every chunk
    /// to the temporary blob and hashing it, and sends it to `chunks` while the unpacker reads
    /// them. Then checks the size and the digest.
    fn run(
        &mut self,
        reader: &mut dyn Read,
        mut chunk: Vec<u8>,
        chunks: pipe::ChunkSender,
    ) -> Result<()> {
        let mut feeding = true;
        while !chunk.is_empty() {
            self.hasher.update(&chunk);
            // Stop a stream that is longer than announced before it fills the disk.
            if let Some(expected) = self.size {
                if self.hasher.len() > expected {
                    return Err(ImageError::BlobSize {
                        digest: self.digest.to_string(),
                        expected,
                        actual: self.hasher.len(),
                    });
                }
            }
            self.file
                .write_all(&chunk)
                .map_err(|e| ImageError::io("writing temporary blob", self.path, e))?;
            if feeding {
                feeding = chunks.send(std::mem::take(&mut chunk));
                chunk = chunks.buffer();
            }
            pipe::fill_chunk(reader, &mut chunk).map_err(|e| receiving(self.digest, e))?;
        }
        drop(chunks);
        if let Some(expected) = self.size {
            if self.hasher.len() != expected {
                return Err(ImageError::BlobSize {
                    digest: self.digest.to_string(),
                    expected,
                    actual: self.hasher.len(),
                });
            }
        }
        self.digest.verify(&self.hasher.clone().finish())
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| ImageError::io("syncing temporary blob", self.path, e))
    }
}

fn receiving(digest: &Digest, source: std::io::Error) -> ImageError {
    ImageError::Io {
        operation: "receiving blob",
        path: digest.to_string(),
        source,
    }
}

/// Removes a temporary file or directory on drop unless disarmed (it was renamed into place).
struct TmpGuard(PathBuf, bool);

impl TmpGuard {
    fn new(path: PathBuf) -> Self {
        TmpGuard(path, true)
    }

    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if self.1 {
            if let Err(e) = remove_any(&self.0) {
                tracing::warn!(path = %self.0.display(), error = %e, "cannot remove temporary file");
            }
        }
    }
}

/// Removes a file, symlink or directory tree; a missing one is not an error.
fn remove_any(path: &Path) -> std::io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn read_retrying(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Makes renames into `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("syncing directory", dir, e))
}
