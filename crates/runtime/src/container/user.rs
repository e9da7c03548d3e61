//! The user a container runs as: the image's `User` (`uid`, `uid:gid`, `name`, `name:group`)
//! resolved in the root filesystem's /etc/passwd and /etc/group, then the pod's securityContext.

use std::path::Path;

use super::Result;

/// A resolved user: uid, primary gid and supplementary groups from /etc/group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves the image's `User` field in `rootfs`.
pub fn resolve(user: &str, rootfs: &Path) -> Result<ResolvedUser> {
    let _ = (user, rootfs);
    todo!()
}
