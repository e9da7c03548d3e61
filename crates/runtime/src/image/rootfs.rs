//! Container root filesystems: an overlayfs mount over an image's layers with the container's
//! own upper and work directories, created with the container and removed with it.
//! OWNER: helper "image-import". Signatures are the contract; keep them.

use std::path::{Path, PathBuf};

use super::store::{ImageRecord, ImageStore};
use super::Result;

/// A mounted container root filesystem. `remove` unmounts it and deletes its directories; drop
/// does the same if `remove` was not called (errors logged).
#[derive(Debug)]
pub struct RootFs {
    /// `<dir>/merged`, the container's `/`.
    pub merged: PathBuf,
    dir: PathBuf,
}

impl RootFs {
    /// Creates `<dir>/{upper,work,merged}` and mounts the overlay (lowerdirs: the image's layers,
    /// top first). `dir` must not exist yet.
    pub fn create(store: &ImageStore, image: &ImageRecord, dir: &Path) -> Result<RootFs> {
        let _ = (store, image, dir);
        todo!("image-import helper")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts and deletes everything under `dir`; reports every error, keeps going.
    pub fn remove(self) -> Result<()> {
        todo!("image-import helper")
    }
}
