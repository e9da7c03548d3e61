//! `kubectl cp SRC DEST [-c CONTAINER] [--no-preserve]`, one of them `[NAMESPACE/]POD:PATH`: a
//! tar archive over exec, as kubectl makes it — to a pod, `tar -xmf - -C DIR` reading the
//! archive built here; from a pod, `tar cf - PATH` unpacked here under DEST, with kubectl's
//! checks (entries outside DEST and symlinks are skipped with its warnings).

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::{exec, pods, ApiClient, Error, Flags, Result};

/// One side of the copy.
#[derive(Debug, PartialEq)]
struct Spec {
    namespace: Option<String>,
    /// None: a local path.
    pod: Option<String>,
    file: String,
}

fn parse_spec(arg: &str) -> Result<Spec> {
    let malformed = || {
        Error::Message(
            "filespec must match the canonical format: [[namespace/]pod:]file/path".into(),
        )
    };
    match arg.find(':') {
        Some(0) => Err(malformed()),
        None => Ok(Spec {
            namespace: None,
            pod: None,
            file: arg.to_owned(),
        }),
        Some(at) => {
            let (pod, file) = (&arg[..at], &arg[at + 1..]);
            let pieces: Vec<&str> = pod.split('/').collect();
            let (namespace, pod) = match pieces.as_slice() {
                [pod] => (None, *pod),
                [namespace, pod] => (Some((*namespace).to_owned()), *pod),
                _ => return Err(malformed()),
            };
            Ok(Spec {
                namespace,
                pod: Some(pod.to_owned()),
                file: file.to_owned(),
            })
        }
    }
}

pub async fn run(flags: &Flags) -> Result<()> {
    let [src, dest] = flags.args.as_slice() else {
        return Err(Error::Message("source and destination are required".into()));
    };
    let (src, dest) = (parse_spec(src)?, parse_spec(dest)?);
    if src.pod.is_some() && dest.pod.is_some() {
        return Err(Error::Message(
            "one of src or dest must be a local file specification".into(),
        ));
    }
    if src.file.is_empty() || dest.file.is_empty() {
        return Err(Error::Message("filepath can not be empty".into()));
    }
    let remote = match (&src.pod, &dest.pod) {
        (Some(_), _) => &src,
        (_, Some(_)) => &dest,
        _ => {
            return Err(Error::Message(
                "one of src or dest must be a remote file specification".into(),
            ))
        }
    };
    if dest.pod.is_some() && fs::symlink_metadata(&src.file).is_err() {
        return Err(Error::Message(format!(
            "{} doesn't exist in local filesystem",
            src.file
        )));
    }
    let mut flags = flags.clone();
    if let Some(namespace) = &remote.namespace {
        flags.namespace = Some(namespace.clone());
    }
    let api = ApiClient::connect(&flags).await?;
    let name = remote.pod.as_deref().unwrap_or_default();
    let pod = pods::get(&api, name).await?;
    pods::refuse_completed(&pod, "exec into a container in")?;
    if src.pod.is_some() {
        let container = pods::chosen_container(&pod, &flags.stream)?;
        copy_from_pod(&api, name, &container, &src.file, Path::new(&dest.file)).await
    } else {
        copy_to_pod(&api, &pod, &flags, Path::new(&src.file), &dest.file).await
    }
}

async fn copy_to_pod(
    api: &ApiClient,
    pod: &serde_json::Value,
    flags: &Flags,
    src: &Path,
    dest: &str,
) -> Result<()> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    // kubectl asks the default container, quietly, whether DEST is a directory.
    let default = pods::default_container(pod, true)?;
    let is_dir = exec::captured(
        api,
        name,
        &default,
        &["test".into(), "-d".into(), dest.into()],
        None,
        false,
    )
    .await
    .is_ok();
    let base = src
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dest = if is_dir {
        format!("{}/{base}", dest.trim_end_matches('/'))
    } else {
        dest.to_owned()
    };
    let (dest_dir, dest_file) = match dest.trim_end_matches('/').rsplit_once('/') {
        Some(("", file)) => ("/".to_owned(), file.to_owned()),
        Some((dir, file)) => (dir.to_owned(), file.to_owned()),
        None => (".".to_owned(), dest.clone()),
    };
    let archive = make_tar(src, &dest_file)?;
    let container = pods::chosen_container(pod, &flags.stream)?;
    let mut command: Vec<String> = vec!["tar".into()];
    if flags.stream.no_preserve {
        command.extend(["--no-same-permissions".into(), "--no-same-owner".into()]);
    }
    command.extend(["-xmf".into(), "-".into(), "-C".into(), dest_dir]);
    let out = exec::captured(api, name, &container, &command, Some(archive), false).await?;
    crate::channels::write_stdout(&out)
}

/// A tar archive of `src` (a file, a directory, a symlink) whose entries are named
/// `dest_file[/...]`, as kubectl's makeTar names them (an empty directory gets an entry of its
/// own; other directories only through their files).
fn make_tar(src: &Path, dest_file: &str) -> Result<Vec<u8>> {
    let failed =
        |err: std::io::Error| Error::Message(format!("cannot archive {}: {err}", src.display()));
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add(&mut builder, src, dest_file).map_err(failed)?;
    builder.into_inner().map_err(failed)
}

fn add(builder: &mut tar::Builder<Vec<u8>>, src: &Path, name: &str) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(src)?.collect::<std::io::Result<_>>()?;
        if entries.is_empty() {
            return builder.append_dir(name, src);
        }
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = format!("{name}/{}", entry.file_name().to_string_lossy());
            add(builder, &entry.path(), &child)?;
        }
        return Ok(());
    }
    builder.append_path_with_name(src, name)
}

async fn copy_from_pod(
    api: &ApiClient,
    name: &str,
    container: &str,
    src: &str,
    dest: &Path,
) -> Result<()> {
    let cleaned = match src.starts_with('/') {
        true => format!("/{}", clean_remote(src)),
        false => clean_remote(src),
    };
    let command = vec!["tar".into(), "cf".into(), "-".into(), cleaned];
    // As kubectl: tar's stderr on stdout, its exit code not ours (what it did archive is
    // unpacked).
    let archive = match exec::captured(api, name, container, &command, None, true).await {
        Ok(archive) => archive,
        Err(Error::Exited { .. }) => Vec::new(),
        Err(err) => return Err(err),
    };
    let prefix = clean_remote(src.trim_start_matches('/'));
    untar(&archive, &prefix, dest)
}

/// `path.Clean` of a remote path, without `..` climbing above its start (kubectl's
/// stripPathShortcuts).
fn clean_remote(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// Unpacks the entries under `prefix` of `archive` into `dest` (kubectl's untarAll).
fn untar(archive: &[u8], prefix: &str, dest: &Path) -> Result<()> {
    let failed = |err: std::io::Error| Error::Message(err.to_string());
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().map_err(failed)? {
        let mut entry = entry.map_err(failed)?;
        let path = entry.path().map_err(failed)?.to_string_lossy().into_owned();
        let Some(rest) = path.strip_prefix(prefix) else {
            return Err(Error::Message("tar contents corrupted".into()));
        };
        let target = join_inside(dest, rest);
        let Some(target) = target else {
            crate::report(&format!(
                "warning: file {:?} is outside target destination, skipping",
                dest.join(rest.trim_start_matches('/'))
                    .display()
                    .to_string()
            ));
            continue;
        };
        let kind = entry.header().entry_type();
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(failed)?;
        }
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(failed)?;
            continue;
        }
        if kind.is_symlink() {
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            crate::report(&format!(
                "warning: skipping symlink: {:?} -> {link:?}",
                target.display().to_string()
            ));
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let mut out = fs::File::create(&target).map_err(failed)?;
        std::io::copy(&mut entry, &mut out).map_err(failed)?;
    }
    Ok(())
}

/// `dest` joined with the remote relative path `rest`, or None when it would leave `dest`.
fn join_inside(dest: &Path, rest: &str) -> Option<PathBuf> {
    let mut joined = dest.to_path_buf();
    let mut depth = 0usize;
    for part in Path::new(rest.trim_start_matches('/')).components() {
        match part {
            Component::Normal(part) => {
                joined.push(part);
                depth += 1;
            }
            Component::ParentDir => {
                if depth == 0 {
                    return None;
                }
                joined.pop();
                depth -= 1;
            }
            _ => {}
        }
    }
    Some(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_kubectl_reads_them() {
        let spec = parse_spec("ns/pod:/tmp/x").expect("a remote spec");
        assert_eq!(spec.namespace.as_deref(), Some("ns"));
        assert_eq!(spec.pod.as_deref(), Some("pod"));
        assert_eq!(spec.file, "/tmp/x");
        assert_eq!(parse_spec("local/file").ok().and_then(|s| s.pod), None);
        assert!(parse_spec(":x").is_err());
        assert!(parse_spec("a/b/c:x").is_err());
    }

    #[test]
    fn archives_round_trip_under_their_new_name() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub/empty")).expect("dirs");
        fs::write(src.join("a.txt"), "a").expect("a file");
        fs::write(src.join("sub/b.txt"), "b").expect("a file");
        let archive = make_tar(&src, "renamed").expect("an archive");
        let dest = dir.path().join("out");
        untar(&archive, "renamed", &dest).expect("unpacked");
        assert_eq!(
            fs::read_to_string(dest.join("a.txt")).ok().as_deref(),
            Some("a")
        );
        assert_eq!(
            fs::read_to_string(dest.join("sub/b.txt")).ok().as_deref(),
            Some("b")
        );
        assert!(dest.join("sub/empty").is_dir());
        assert!(untar(&archive, "other", &dest).is_err());
        assert_eq!(join_inside(Path::new("/d"), "../x"), None);
        assert_eq!(clean_remote("a/../../b/./c"), "b/c");
    }
}
