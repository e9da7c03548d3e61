//! The node's image store: content-addressed blobs, layers unpacked once and shared, image
//! records by reference and by digest, and garbage collection.
//!
//! Concurrency: blobs, layers, records and refs only ever appear by an atomic rename from
//! `tmp/`, so readers never see half a file and take no lock. Changes of records and refs take
//! an exclusive `flock` on `lock`. Writers of blobs and layers hold a shared `flock` on
//! `gc.lock` (a [`StoreLease`]) and garbage collection an exclusive one, so a collection never
//! deletes what a pull or import in any process is still writing.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::digest::{Digest, Hasher};
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
            let path = self.blob_path(digest);
            // Only remove the file we read: another writer may have renamed a good copy over it
            // meanwhile.
            let same = match (file.metadata(), fs::symlink_metadata(&path)) {
                (Ok(ours), Ok(now)) => ours.dev() == now.dev() && ours.ino() == now.ino(),
                _ => false,
            };
            if same {
                if let Err(e) = fs::remove_file(&path) {
                    tracing::warn!(blob = %digest, error = %e, "cannot remove corrupt blob");
                }
            }
            tracing::warn!(blob = %digest, actual = %actual, "corrupt blob discarded");
            return Err(mismatch);
        }
        Ok(())
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
    pub fn ensure_layer(
        &self,
        blob: &Digest,
        media_type: &str,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerRecord> {
        let _ = (blob, media_type, expected_diff_id);
        todo!("image-store helper")
    }

    /// The unpacked directory of a layer (its `rootfs/`).
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex()).join("rootfs")
    }

    /// Records an image and points its tags and digests at it (a tag moves from any image that
    /// had it). All its blobs and layers must be present.
    pub fn put_image(&self, record: ImageRecord) -> Result<()> {
        let _ = record;
        todo!("image-store helper")
    }

    /// Finds an image by reference (`busybox`, `busybox:1.36`, `x@sha256:...`), by full id or by
    /// a unique id prefix (`sha256:abc...` or `abc123`).
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let _ = reference;
        todo!("image-store helper")
    }

    /// Finds an image by parsed reference.
    pub fn get(&self, reference: &Reference) -> Result<Option<ImageRecord>> {
        let _ = reference;
        todo!("image-store helper")
    }

    /// Every image, sorted by first tag.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        todo!("image-store helper")
    }

    /// Removes a tag, or the whole image when given by id or when it was its last tag; then frees
    /// layers and blobs nothing else uses. Images in `in_use` (ids) are refused with `InUse`.
    pub fn remove(&self, reference: &str, in_use: &[Digest]) -> Result<Freed> {
        let _ = (reference, in_use);
        todo!("image-store helper")
    }

    /// Removes every image not in `in_use` (`all`), or only untagged ones, then unreferenced
    /// layers, blobs and temporary files.
    pub fn prune(&self, in_use: &[Digest], all: bool) -> Result<Freed> {
        let _ = (in_use, all);
        todo!("image-store helper")
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
