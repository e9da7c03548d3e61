//! Node-local OCI images: a content-addressed store, layer unpacking, import, registry pull,
//! overlay root filesystems and pull policies.
//!
//! On disk, under `<data-dir>/images`:
//! - `blobs/sha256/<hex>`: every blob (manifests, configs, compressed layers), written to
//!   `tmp/` first, checked against its digest, then renamed into place;
//! - `layers/<diff-id hex>/`: each layer unpacked once (`rootfs/`, plus `size`: the bytes of file
//!   content), shared by all images that use it; unpacked in `tmp/` and renamed into place;
//! - `diffids/<blob hex>`: the diff id a layer blob unpacked to, so it is not unpacked again;
//! - `images/<config hex>.json`: one [`store::ImageRecord`] per image (id = config digest);
//! - `refs.json`: tag and digest references -> image id;
//! - `tmp/`: writes in progress (and leftovers of interrupted ones, removed by prune);
//! - `lock`: an advisory file lock taken for every change of records or refs, so the CLI and the
//!   node agent can use one store at once;
//! - `gc.lock`: shared by writers of blobs and layers ([`store::ImageStore::lease`]), exclusive
//!   for remove and prune, so garbage collection never deletes what a pull is writing.

pub mod digest;
pub mod import;
pub mod keyring;
pub mod layer;
pub mod pipe;
pub mod policy;
pub mod pull;
pub mod reference;
pub mod rootfs;
pub mod store;

/// Errors of the image subsystem. Each says what failed and what the user can do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },
    #[error("image {0:?} not found in the node's image store; pull it (`skiff image pull`) or import it (`skiff image import`)")]
    NotFound(String),
    #[error(
        "blob {digest} does not match its digest (got {actual}): it was corrupted or truncated"
    )]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {0} is not in the node's image store")]
    BlobNotFound(String),
    #[error("blob {digest} has {actual} bytes but its descriptor says {expected}")]
    BlobSize {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{prefix:?} matches several images ({matches}); give more of the id")]
    AmbiguousId { prefix: String, matches: String },
    #[error("layer {layer}: {reason}")]
    UnsafeLayer { layer: String, reason: String },
    #[error("layer {layer} cannot be unpacked: {reason}")]
    BadLayer { layer: String, reason: String },
    #[error("{path}: not an image archive this store can import: {reason}")]
    BadArchive { path: String, reason: String },
    #[error("pulling {reference}: {reason}")]
    Pull { reference: String, reason: String },
    #[error("image {image} is used by {users}; stop them first")]
    InUse { image: String, users: String },
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O error with what was being done and to which path.
    pub fn io(operation: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ImageError::Io {
            operation,
            path: path.display().to_string(),
            source,
        }
    }
}
