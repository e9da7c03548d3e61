//! `skiff image import`: `docker save` archives, OCI image layout archives (tar or directory),
//! and images made from a root filesystem (like `docker import`).
//! OWNER: helper "image-import". Signatures are the contract; keep them.

use std::path::Path;

use super::store::{ImageRecord, ImageStore};
use super::Result;

/// Image settings for an image made from a root filesystem.
#[derive(Clone, Debug, Default)]
pub struct RootfsOptions {
    /// `NAME[:TAG]`, normalised like any reference.
    pub tag: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub workdir: Option<String>,
}

/// Imports every image of a `docker save` or OCI layout archive (`.tar`, `.tar.gz`, or an OCI
/// layout directory). `tag` (optional) names the image when the archive has exactly one.
pub fn import_archive(
    store: &ImageStore,
    path: &Path,
    tag: Option<&str>,
) -> Result<Vec<ImageRecord>> {
    let _ = (store, path, tag);
    todo!("image-import helper")
}

/// Makes a one-layer image from a directory or a tar of a root filesystem.
pub fn import_rootfs(
    store: &ImageStore,
    source: &Path,
    options: &RootfsOptions,
) -> Result<ImageRecord> {
    let _ = (store, source, options);
    todo!("image-import helper")
}
