//! The node's image store: content-addressed blobs, layers unpacked once and shared, image
//! records by reference and by digest, and garbage collection.
//! OWNER: helper "image-store". Signatures are the contract; keep them.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::reference::Reference;
use super::Result;

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

impl ImageStore {
    /// Opens (creating if needed) the store of the node whose data dir is `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let _ = data_dir;
        todo!("image-store helper")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a blob is present and intact (its digest is checked; a corrupt one is removed).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        let _ = digest;
        todo!("image-store helper")
    }

    /// Streams a blob into the store, checking its digest (and size when known) before it
    /// becomes visible. Returns its size.
    pub fn write_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: &mut dyn Read,
    ) -> Result<u64> {
        let _ = (digest, size, reader);
        todo!("image-store helper")
    }

    /// A blob's bytes, checked against its digest before they are returned.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let _ = digest;
        todo!("image-store helper")
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
