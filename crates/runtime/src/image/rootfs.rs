//! Container root filesystems: an overlayfs mount over an image's layers with the container's
//! own upper and work directories, created with the container and removed with it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use super::store::{ImageRecord, ImageStore};
use super::{ImageError, Result};

/// The kernel copies at most one page of mount options, its NUL included.
const MOUNT_DATA_MAX: usize = 4095;

/// A mounted container root filesystem. `remove` unmounts it and deletes its directories; drop
/// does the same if `remove` was not called (errors logged).
#[derive(Debug)]
pub struct RootFs {
    /// `<dir>/merged`, the container's `/`.
    pub merged: PathBuf,
    dir: PathBuf,
    /// Set once torn down, so drop does not do it again.
    removed: bool,
}

impl RootFs {
    /// Creates `<dir>/{upper,work,merged}` and mounts the overlay (lowerdirs: the image's layers,
    /// top first). `dir` must not exist yet.
    pub fn create(store: &ImageStore, image: &ImageRecord, dir: &Path) -> Result<RootFs> {
        let mut lowers = store.layer_dirs(image);
        lowers.reverse();
        for (lower, layer) in lowers.iter().zip(image.layers.iter().rev()) {
            if !lower.is_dir() {
                return Err(ImageError::Other(format!(
                    "layer {} of image {} is not unpacked in the store (no {}); pull or import the image again",
                    layer.diff_id,
                    image.id,
                    lower.display()
                )));
            }
        }
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ImageError::io("creating directory", parent, e))?;
        }
        std::fs::create_dir(dir).map_err(|e| {
            ImageError::io(
                "creating the root filesystem directory (it must not exist yet)",
                dir,
                e,
            )
        })?;
        // From here on, dropping `rootfs` undoes whatever was done, on every error path.
        let rootfs = RootFs {
            merged: dir.join("merged"),
            dir: dir.to_path_buf(),
            removed: false,
        };
        let upper = dir.join("upper");
        let work = dir.join("work");
        for sub in [&upper, &work, &rootfs.merged] {
            std::fs::create_dir(sub).map_err(|e| ImageError::io("creating directory", sub, e))?;
        }
        if lowers.is_empty() {
            // An image without layers: overlay needs one lower directory, an empty one will do.
            let empty = dir.join("empty");
            std::fs::create_dir(&empty)
                .map_err(|e| ImageError::io("creating directory", &empty, e))?;
            lowers.push(empty);
        }
        mount_overlay(&lowers, &upper, &work, &rootfs.merged)?;
        Ok(rootfs)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Unmounts and deletes everything under `dir`; reports every error, keeps going.
    pub fn remove(mut self) -> Result<()> {
        self.removed = true;
        teardown(&self.dir, &self.merged)
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        if !self.removed {
            self.removed = true;
            if let Err(e) = teardown(&self.dir, &self.merged) {
                tracing::error!(dir = %self.dir.display(), "removing a root filesystem: {e}");
            }
        }
    }
}

/// The overlay options for these directories, as paths.
fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Option<String> {
    let mut text = String::from("lowerdir=");
    for (i, lower) in lowers.iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        text.push_str(plain_option_path(lower)?);
    }
    text.push_str(",upperdir=");
    text.push_str(plain_option_path(upper)?);
    text.push_str(",workdir=");
    text.push_str(plain_option_path(work)?);
    Some(text)
}

/// A path as it can stand in overlay options: UTF-8 without the separators `,` and `:` or the
/// escape `\`; None otherwise.
fn plain_option_path(path: &Path) -> Option<&str> {
    path.to_str()
        .filter(|p| !p.contains([',', ':', '\\']) && !p.is_empty())
}

/// Mounts the overlay. The options name the directories by path; when those do not fit in the
/// kernel's one page (many layers, a long data dir) or contain characters the option syntax
/// reserves, they name them as `/proc/self/fd/N` of directories opened here instead, which the
/// kernel resolves at mount time (short and free of reserved characters).
fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, merged: &Path) -> Result<()> {
    let mount_error = |data: &str, e: rustix::io::Errno| {
        ImageError::Other(format!(
            "mounting the overlay root filesystem at {} ({} layers, options {data:?}): {}",
            merged.display(),
            lowers.len(),
            std::io::Error::from(e)
        ))
    };
    if let Some(data) = overlay_options(lowers, upper, work).filter(|d| d.len() <= MOUNT_DATA_MAX) {
        return mount_with(&data, merged).map_err(|e| mount_error(&data, e));
    }
    let open = |path: &Path| -> Result<OwnedFd> {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ImageError::io("opening directory", path, e.into()))
    };
    let fds: Vec<OwnedFd> = lowers.iter().map(|l| open(l)).collect::<Result<_>>()?;
    let upper_fd = open(upper)?;
    let work_fd = open(work)?;
    let by_fd = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        fds.iter().map(by_fd).collect::<Vec<_>>().join(":"),
        by_fd(&upper_fd),
        by_fd(&work_fd)
    );
    if data.len() > MOUNT_DATA_MAX {
        return Err(ImageError::Other(format!(
            "the image has {} layers: too many for one overlay mount (its options need {} bytes, the kernel takes {MOUNT_DATA_MAX})",
            lowers.len(),
            data.len()
        )));
    }
    // The fds are closed when dropped, after the mount holds its own references.
    mount_with(&data, merged).map_err(|e| mount_error(&data, e))
}

fn mount_with(data: &str, merged: &Path) -> std::result::Result<(), rustix::io::Errno> {
    let data = std::ffi::CString::new(data).map_err(|_| rustix::io::Errno::INVAL)?;
    rustix::mount::mount(
        "overlay",
        merged,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
}

/// Whether something is mounted on `path`: it is on another device than its parent.
fn is_mounted(path: &Path, parent: &Path) -> std::io::Result<bool> {
    let here = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(here.dev() != std::fs::symlink_metadata(parent)?.dev())
}

/// Unmounts `merged` (lazily only if a plain unmount fails) and deletes `dir`, unless something
/// is still mounted there: deleting through a live overlay would write whiteouts, not free space.
fn teardown(dir: &Path, merged: &Path) -> Result<()> {
    let mut errors: Vec<String> = Vec::new();
    match rustix::mount::unmount(merged, UnmountFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => {
            tracing::warn!(
                merged = %merged.display(),
                "unmounting the root filesystem failed ({}); detaching it lazily",
                std::io::Error::from(e)
            );
            if let Err(e) = rustix::mount::unmount(merged, UnmountFlags::DETACH) {
                errors.push(format!(
                    "unmounting {}: {}",
                    merged.display(),
                    std::io::Error::from(e)
                ));
            }
        }
    }
    match is_mounted(merged, dir) {
        Ok(false) => match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("deleting {}: {e}", dir.display())),
        },
        Ok(true) => errors.push(format!(
            "{} is still mounted; its directory {} was left in place",
            merged.display(),
            dir.display()
        )),
        Err(e) => errors.push(format!("checking {}: {e}", merged.display())),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ImageError::Other(format!(
            "removing the root filesystem {}: {}",
            dir.display(),
            errors.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_put_the_top_layer_first_and_refuse_reserved_characters() {
        let lowers = vec![PathBuf::from("/l/top"), PathBuf::from("/l/bottom")];
        assert_eq!(
            overlay_options(&lowers, Path::new("/c/upper"), Path::new("/c/work")).as_deref(),
            Some("lowerdir=/l/top:/l/bottom,upperdir=/c/upper,workdir=/c/work")
        );
        let odd = vec![PathBuf::from("/data,x/l")];
        assert_eq!(
            overlay_options(&odd, Path::new("/u"), Path::new("/w")),
            None
        );
        let colon = vec![PathBuf::from("/data:x/l")];
        assert_eq!(
            overlay_options(&colon, Path::new("/u"), Path::new("/w")),
            None
        );
    }
}
