//! The user a container runs as: the image's `User` (`uid`, `uid:gid`, `name`, `name:group`)
//! resolved in the root filesystem's /etc/passwd and /etc/group, as containerd resolves it.

use std::path::Path;

use super::{ContainerError, Result};

/// A resolved user: uid, primary gid and supplementary groups from /etc/group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Reads a file of the rootfs without following symlinks out of it: a missing or unreadable
/// file counts as empty, as containerd treats a missing /etc/passwd.
fn read_rootfs_file(rootfs: &Path, name: &str) -> String {
    let path = rootfs.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => std::fs::read_to_string(path).unwrap_or_default(),
        _ => String::new(),
    }
}

/// (name, uid, gid) of each /etc/passwd line.
fn passwd(text: &str) -> Vec<(String, u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            Some((
                fields[0].to_owned(),
                fields[2].parse().ok()?,
                fields[3].parse().ok()?,
            ))
        })
        .collect()
}

/// (name, gid, members) of each /etc/group line.
fn groups(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 {
                return None;
            }
            let members = fields
                .get(3)
                .map(|m| {
                    m.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((fields[0].to_owned(), fields[2].parse().ok()?, members))
        })
        .collect()
}

/// Resolves the image's `User` field in `rootfs`.
pub fn resolve(user: &str, rootfs: &Path) -> Result<ResolvedUser> {
    let passwd = passwd(&read_rootfs_file(rootfs, "etc/passwd"));
    let groups = groups(&read_rootfs_file(rootfs, "etc/group"));
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let unknown = |what: &str, name: &str| {
        ContainerError::Spec(format!(
            "unable to find {what} {name}: no matching entries in {what} file"
        ))
    };
    let (uid, mut gid, name) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|(_, u, _)| *u == uid) {
            Some((name, _, gid)) => (uid, *gid, Some(name.clone())),
            None => (uid, 0, None),
        },
        Err(_) => match passwd.iter().find(|(n, _, _)| n == user_part) {
            Some((name, uid, gid)) => (*uid, *gid, Some(name.clone())),
            None => return Err(unknown("user", user_part)),
        },
    };
    if let Some(group) = group_part {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|(n, _, _)| n == group)
                .map(|(_, gid, _)| *gid)
                .ok_or_else(|| unknown("group", group))?,
        };
    }
    // Supplementary groups only when the user is named in /etc/group and no group was given.
    let mut additional_gids = Vec::new();
    if let (Some(name), None) = (&name, group_part) {
        for (_, g, members) in &groups {
            if members.contains(name) && *g != gid && !additional_gids.contains(g) {
                additional_gids.push(*g);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nbob:x:1000:\nwheel:x:10:bob,alice\naudio:x:29:bob\n",
        )
        .expect("group");
        dir
    }

    #[test]
    fn numeric_and_named_users_and_groups() {
        let dir = rootfs();
        let r = |u: &str| resolve(u, dir.path());
        assert_eq!(
            r("0").expect("0"),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(r("www").expect("www").uid, 33);
        assert_eq!(r("www").expect("www").gid, 33);
        let bob = r("bob").expect("bob");
        assert_eq!(
            (bob.uid, bob.gid, bob.additional_gids),
            (1000, 1000, vec![10, 29])
        );
        assert_eq!(r("1000").expect("1000").additional_gids, vec![10, 29]);
        let unknown_uid = r("4242").expect("uid not in passwd");
        assert_eq!((unknown_uid.uid, unknown_uid.gid), (4242, 0));
        let pair = r("1000:10").expect("uid:gid");
        assert_eq!(
            (pair.uid, pair.gid, pair.additional_gids),
            (1000, 10, vec![])
        );
        let named = r("bob:audio").expect("name:group");
        assert_eq!((named.uid, named.gid), (1000, 29));
        assert!(r("nobody").is_err());
        assert!(r("bob:nogroup").is_err());
    }

    #[test]
    fn a_rootfs_without_passwd_takes_numeric_ids_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve("5:6", dir.path()).expect("numeric").gid, 6);
        assert!(resolve("root", dir.path()).is_err());
    }
}
