//! Unpacking layer tars into a directory safely: gzip/zstd/plain, OCI whiteouts, ownership,
//! modes, xattrs, links and device nodes, and no path, symlink or hard link that escapes.
//!
//! The `tar` crate only parses; every file is created here, because its own unpacking follows
//! symlinks an earlier entry planted. The rule that keeps a layer inside `dest`: entry paths are
//! cleaned lexically (a `..` that climbs out, or an absolute path, is refused), and before an
//! entry is created every directory on its way is checked to be a real directory, never a
//! symlink. Symlinks themselves may point anywhere: they are only resolved later, inside the
//! container's root.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

use super::digest::{Digest, Hasher, ParallelDigestReader};
use super::pipe;
use super::{ImageError, Result};

/// Layer compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI or Docker layer media type; None when the type says nothing (sniff then).
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        let essence = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !essence.starts_with("application/") {
            return None;
        }
        // OCI: `application/vnd.oci.image.layer[.nondistributable].v1.tar[+gzip|+zstd]`;
        // Docker: `application/vnd.docker.image.rootfs[.foreign].diff.tar[.gzip|.zstd]`.
        if essence.ends_with(".tar+gzip")
            || essence.ends_with(".tar.gzip")
            || essence.ends_with(".tar.gz")
        {
            Some(Compression::Gzip)
        } else if essence.ends_with(".tar+zstd") || essence.ends_with(".tar.zstd") {
            Some(Compression::Zstd)
        } else if essence.ends_with(".tar") || essence == "application/x-tar" {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// From the first bytes of a blob.
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The result of unpacking: the uncompressed tar's digest and the bytes written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpacked {
    pub diff_id: Digest,
    pub size: u64,
}

/// Big reads and writes: layers are tens to hundreds of megabytes.
const BUF_SIZE: usize = 1 << 20;

/// Unpacks one layer stream into `dest` (an empty directory the caller owns), applying
/// whiteouts as the OCI image spec says, for use as an overlay lower directory: a `.wh.NAME`
/// becomes an overlay whiteout (character device 0/0) and `.wh..wh..opq` the opaque xattr
/// (`trusted.overlay.opaque=y`). `layer` names the layer in errors.
pub fn unpack(
    layer: &str,
    reader: &mut dyn Read,
    compression: Compression,
    dest: &Path,
) -> Result<Unpacked> {
    let bad = |reason: String| ImageError::BadLayer {
        layer: layer.to_string(),
        reason,
    };
    let input = BufReader::with_capacity(BUF_SIZE, reader);
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|e| bad(format!("zstd: {e}")))?,
        ),
    };
    // The diff id is the digest of the whole uncompressed stream, so it is hashed below the
    // tar parser and drained to the end after the last entry.
    let mut hashed = ParallelDigestReader::new(decoded);
    let mut unpacker = Unpacker::new(layer, dest);
    {
        let mut archive = tar::Archive::new(BufReader::with_capacity(BUF_SIZE, &mut hashed));
        let entries = archive
            .entries()
            .map_err(|e| bad(format!("reading the tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
            unpacker.entry(&mut entry)?;
        }
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())
            .map_err(|e| bad(format!("reading the end of the tar: {e}")))?;
    }
    let size = unpacker.finish()?;
    let (diff_id, _, _) = hashed
        .finish()
        .map_err(|e| bad(format!("hashing the tar: {e}")))?;
    Ok(Unpacked { diff_id, size })
}

/// [`unpack`], with decompression and the diff id's hashing on a second thread while this one
/// parses the tar and writes the files, so a layer unpacks in about the time its files take to
/// write rather than the sum of all three.
///
/// What the decoder reads of `reader` is all it consumes; the caller may read on after it (to
/// hash bytes trailing the compressed stream, say).
pub fn unpack_parallel<R: Read + Send>(
    layer: &str,
    reader: &mut R,
    compression: Compression,
    dest: &Path,
) -> Result<Unpacked> {
    let bad = |reason: String| ImageError::BadLayer {
        layer: layer.to_string(),
        reason,
    };
    std::thread::scope(|scope| {
        let (chunks, mut decoded) = pipe::pipe();
        let decoder = std::thread::Builder::new()
            .name("layer-decode".into())
            .spawn_scoped(scope, move || decode(reader, compression, &chunks))
            .map_err(|e| bad(format!("starting the decoder thread: {e}")))?;
        let written = write_entries(layer, &mut decoded, dest);
        // Gone before the join: a decoder blocked on a full pipe then stops instead of waiting.
        drop(decoded);
        let diff_id = decoder
            .join()
            .map_err(|_| bad("the decoder thread panicked".to_string()))?;
        let size = written?;
        let diff_id = diff_id.map_err(bad)?;
        Ok(Unpacked { diff_id, size })
    })
}

/// The decoder side of [`unpack_parallel`]: decompresses `reader` into `chunks`, hashing the
/// uncompressed stream on the way; its errors reach the reader of `chunks`, and the digest is
/// only returned when the whole stream was sent.
fn decode(
    reader: &mut dyn Read,
    compression: Compression,
    chunks: &pipe::ChunkSender,
) -> std::result::Result<Digest, String> {
    let input = BufReader::with_capacity(BUF_SIZE, reader);
    let mut decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(input) {
            Ok(decoder) => Box::new(decoder),
            Err(e) => {
                let reason = format!("zstd: {e}");
                chunks.fail(std::io::Error::other(reason.clone()));
                return Err(reason);
            }
        },
    };
    let mut hasher = Hasher::new();
    loop {
        let mut chunk = chunks.buffer();
        match pipe::fill_chunk(&mut decoded, &mut chunk) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(_) => {
                hasher.update(&chunk);
                if !chunks.send(chunk) {
                    return Err("the unpacker stopped".to_string());
                }
            }
            Err(e) => {
                let reason = e.to_string();
                chunks.send(chunk);
                chunks.fail(e);
                return Err(reason);
            }
        }
    }
}

/// The tar side of [`unpack_parallel`]: writes the entries of the uncompressed stream `tar`
/// under `dest` and reads it to its end; returns the bytes of file content written.
fn write_entries(layer: &str, tar: &mut pipe::ChunkReader, dest: &Path) -> Result<u64> {
    let bad = |reason: String| ImageError::BadLayer {
        layer: layer.to_string(),
        reason,
    };
    let mut unpacker = Unpacker::new(layer, dest);
    // No BufReader: the pipe hands out its chunks as they are, one copy fewer.
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("reading the tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
        unpacker.entry(&mut entry)?;
    }
    let rest = archive.into_inner();
    std::io::copy(rest, &mut std::io::sink())
        .map_err(|e| bad(format!("reading the end of the tar: {e}")))?;
    unpacker.finish()
}

/// Metadata of one entry, taken from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    layer: &'a str,
    dest: &'a Path,
    /// Relative paths checked to be real directories (not symlinks) in `dest`.
    dirs: HashSet<PathBuf>,
    /// Directory times, set at the end since creating children changes them.
    dir_times: HashMap<PathBuf, Timestamps>,
    /// Ownership is only kept when we may change it (root); otherwise files are ours.
    chown: bool,
    buf: Vec<u8>,
    size: u64,
}

impl<'a> Unpacker<'a> {
    fn new(layer: &'a str, dest: &'a Path) -> Self {
        Unpacker {
            layer,
            dest,
            dirs: HashSet::new(),
            dir_times: HashMap::new(),
            chown: rustix::process::geteuid().is_root(),
            buf: vec![0u8; BUF_SIZE],
            size: 0,
        }
    }

    fn unsafe_entry(&self, entry: &str, reason: impl std::fmt::Display) -> ImageError {
        ImageError::UnsafeLayer {
            layer: self.layer.to_string(),
            reason: format!("entry {entry:?} {reason}; refused"),
        }
    }

    fn bad_entry(&self, entry: &str, reason: impl std::fmt::Display) -> ImageError {
        ImageError::BadLayer {
            layer: self.layer.to_string(),
            reason: format!("entry {entry:?}: {reason}"),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let rel = self.clean(&raw, &name, "path")?;

        if let Some(base) = rel.file_name().map(OsStr::as_bytes) {
            if let Some(whited) = base.strip_prefix(b".wh.") {
                let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
                return self.whiteout(&name, &parent, whited);
            }
        }

        let meta = self.meta(entry, &name)?;
        if rel.as_os_str().is_empty() {
            // `./` itself: the layer's root directory; only its metadata applies.
            if !kind.is_dir() {
                return Err(self.unsafe_entry(&name, "replaces the layer's root directory"));
            }
            self.dirs.insert(PathBuf::new());
            return self.dir_meta(&name, &rel, self.dest.to_path_buf(), &meta);
        }

        self.check_parents(&name, &rel, true)?;
        let path = self.dest.join(&rel);
        if kind.is_dir() {
            let existing = self.clear(&name, &rel, &path, true)?;
            match existing {
                Existing::Dir => {}
                Existing::None | Existing::Whiteout => {
                    fs::create_dir(&path).map_err(|e| io("creating directory", &path, e))?;
                }
            }
            self.dirs.insert(rel.clone());
            self.dir_meta(&name, &rel, path.clone(), &meta)?;
            if existing == Existing::Whiteout {
                // An earlier `.wh.NAME` in this layer then NAME as a directory: lower content
                // of NAME stays hidden.
                self.set_xattr(&name, &path, "trusted.overlay.opaque", b"y")?;
            }
            Ok(())
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            self.clear(&name, &rel, &path, false)?;
            self.regular(entry, &name, &path, &meta)
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| self.bad_entry(&name, "symlink without a target"))?
                .into_owned();
            self.clear(&name, &rel, &path, false)?;
            rustix::fs::symlinkat(target.as_slice(), CWD, &path)
                .map_err(|e| io("creating symlink", &path, e.into()))?;
            self.node_meta(&name, &path, &meta, false)
        } else if kind.is_hard_link() {
            let raw_target = entry
                .link_name_bytes()
                .ok_or_else(|| self.bad_entry(&name, "hard link without a target"))?
                .into_owned();
            self.hard_link(&name, &rel, &path, &raw_target)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let file_type = if kind.is_character_special() {
                FileType::CharacterDevice
            } else if kind.is_block_special() {
                FileType::BlockDevice
            } else {
                FileType::Fifo
            };
            let header = entry.header();
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            self.clear(&name, &rel, &path, false)?;
            rustix::fs::mknodat(
                CWD,
                &path,
                file_type,
                Mode::from_raw_mode(0o600),
                rustix::fs::makedev(major, minor),
            )
            .map_err(|e| io("creating device node", &path, e.into()))?;
            self.node_meta(&name, &path, &meta, true)
        } else {
            Err(self.bad_entry(
                &name,
                format_args!("unsupported tar entry type {:?}", kind.as_byte() as char),
            ))
        }
    }

    /// The entry's path relative to `dest`, cleaned: `.` and empty components dropped, `..`
    /// applied lexically. Absolute paths and a `..` above the root are refused.
    fn clean(&self, raw: &[u8], name: &str, what: &str) -> Result<PathBuf> {
        if raw.starts_with(b"/") {
            return Err(self.unsafe_entry(name, format_args!("has an absolute {what}")));
        }
        let mut parts: Vec<&[u8]> = Vec::new();
        for part in raw.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    if parts.pop().is_none() {
                        return Err(self.unsafe_entry(
                            name,
                            format_args!("has a {what} whose `..` leads out of the layer"),
                        ));
                    }
                }
                _ => parts.push(part),
            }
        }
        Ok(parts.iter().map(|p| OsStr::from_bytes(p)).collect())
    }

    /// Checks that every directory above `rel` is a real directory inside `dest`, creating
    /// missing ones (`create`) as tar does; a symlink on the way is refused, since writing
    /// through it could land anywhere on the host.
    fn check_parents(&mut self, name: &str, rel: &Path, create: bool) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        let mut current = PathBuf::new();
        for part in parent.components() {
            current.push(part);
            if self.dirs.contains(&current) {
                continue;
            }
            let path = self.dest.join(&current);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(self.unsafe_entry(
                        name,
                        format_args!(
                            "goes through the symlink {:?}, which could lead out of the layer",
                            current.display().to_string()
                        ),
                    ));
                }
                Ok(_) => {
                    return Err(self.bad_entry(
                        name,
                        format_args!("{:?} is not a directory", current.display().to_string()),
                    ));
                }
                Err(e) if e.kind() == ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(|e| io("creating directory", &path, e))?;
                    rustix::fs::chmodat(CWD, &path, Mode::from_raw_mode(0o755), AtFlags::empty())
                        .map_err(|e| io("setting mode", &path, e.into()))?;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(self.bad_entry(
                        name,
                        format_args!("{:?} does not exist", current.display().to_string()),
                    ));
                }
                Err(e) => return Err(io("inspecting", &path, e)),
            }
            self.dirs.insert(current.clone());
        }
        Ok(())
    }

    /// Makes room for an entry at `rel`: an existing directory stays when a directory comes
    /// (`keep_dir`); anything else is removed, as a later tar entry replaces an earlier one.
    fn clear(&mut self, name: &str, rel: &Path, path: &Path, keep_dir: bool) -> Result<Existing> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Existing::None),
            Err(e) => return Err(io("inspecting", path, e)),
        };
        if keep_dir && meta.is_dir() {
            return Ok(Existing::Dir);
        }
        let was_whiteout = is_whiteout(&meta);
        let removed = if meta.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        removed.map_err(|e| self.bad_entry(name, format_args!("replacing what was there: {e}")))?;
        // What was checked under it is gone, and a symlink may now take its place.
        self.dirs.retain(|d| !d.starts_with(rel));
        self.dir_times.retain(|d, _| !d.starts_with(rel));
        Ok(if was_whiteout {
            Existing::Whiteout
        } else {
            Existing::None
        })
    }

    fn whiteout(&mut self, name: &str, parent: &Path, whited: &[u8]) -> Result<()> {
        self.check_parents(name, &parent.join("x"), true)?;
        let dir = self.dest.join(parent);
        if whited == b".wh..opq" {
            // The directory hides everything below it in lower layers.
            return self.set_xattr(name, &dir, "trusted.overlay.opaque", b"y");
        }
        if whited.starts_with(b".wh.") || whited.is_empty() {
            // AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): meaningless here.
            return Ok(());
        }
        if whited == b"." || whited == b".." || whited.contains(&b'/') {
            return Err(self.unsafe_entry(name, "whites out an invalid name"));
        }
        let path = dir.join(OsStr::from_bytes(whited));
        match fs::symlink_metadata(&path) {
            // A whiteout only hides lower layers; what this layer put there stays. A directory
            // must still hide the lower directory's content: make it opaque.
            Ok(m) if m.is_dir() => self.set_xattr(name, &path, "trusted.overlay.opaque", b"y"),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => rustix::fs::mknodat(
                CWD,
                &path,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| io("creating whiteout", &path, e.into())),
            Err(e) => Err(io("inspecting", &path, e)),
        }
    }

    fn hard_link(&mut self, name: &str, rel: &Path, path: &Path, raw_target: &[u8]) -> Result<()> {
        let target_rel = self.clean(raw_target, name, "hard link target")?;
        if target_rel.as_os_str().is_empty() {
            return Err(self.unsafe_entry(name, "is a hard link to the layer's root"));
        }
        if target_rel == rel {
            return Ok(());
        }
        // The target's directories must be real ones too, or the link could take a host file.
        self.check_parents(name, &target_rel, false)
            .map_err(|e| match e {
                ImageError::UnsafeLayer { layer, reason } => ImageError::UnsafeLayer {
                    layer,
                    reason: format!("hard link target: {reason}"),
                },
                other => other,
            })?;
        let target = self.dest.join(&target_rel);
        match fs::symlink_metadata(&target) {
            Ok(m) if m.is_dir() => {
                return Err(self.bad_entry(name, "is a hard link to a directory"));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(self.bad_entry(
                    name,
                    format_args!(
                        "hard link target {:?} is not in the layer",
                        String::from_utf8_lossy(raw_target)
                    ),
                ));
            }
            Err(e) => return Err(io("inspecting", &target, e)),
        }
        self.clear(name, rel, path, false)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never its target.
        rustix::fs::linkat(CWD, &target, CWD, path, AtFlags::empty())
            .map_err(|e| io("creating hard link", path, e.into()))
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
        meta: &Meta,
    ) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io("creating file", path, e))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.bad_entry(name, format_args!("reading: {e}"))),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| io("writing", path, e))?;
            self.size += n as u64;
        }
        // Owner first: chown clears setuid bits and file capabilities set before it.
        if self.chown {
            rustix::fs::fchown(&file, Some(uid(meta.uid)), Some(gid(meta.gid)))
                .map_err(|e| io("setting owner", path, e.into()))?;
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(meta.mode))
            .map_err(|e| io("setting mode", path, e.into()))?;
        for (key, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(&file, key.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) => self.xattr_failed(name, path, key, e)?,
            }
        }
        rustix::fs::futimens(&file, &meta.times).map_err(|e| io("setting times", path, e.into()))
    }

    /// Owner, mode, xattrs and times of a directory (times deferred to the end).
    fn dir_meta(&mut self, name: &str, rel: &Path, path: PathBuf, meta: &Meta) -> Result<()> {
        if self.chown {
            rustix::fs::chownat(
                CWD,
                &path,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io("setting owner", &path, e.into()))?;
        }
        rustix::fs::chmodat(CWD, &path, Mode::from_raw_mode(meta.mode), AtFlags::empty())
            .map_err(|e| io("setting mode", &path, e.into()))?;
        for (key, value) in &meta.xattrs {
            self.set_xattr(name, &path, key, value)?;
        }
        self.dir_times
            .insert(rel.to_path_buf(), clone_times(&meta.times));
        Ok(())
    }

    /// Owner, mode (`chmod`: not for symlinks), xattrs and times of a symlink or special file.
    fn node_meta(&mut self, name: &str, path: &Path, meta: &Meta, chmod: bool) -> Result<()> {
        if self.chown {
            rustix::fs::chownat(
                CWD,
                path,
                Some(uid(meta.uid)),
                Some(gid(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io("setting owner", path, e.into()))?;
        }
        if chmod {
            rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| io("setting mode", path, e.into()))?;
        }
        for (key, value) in &meta.xattrs {
            self.set_xattr(name, path, key, value)?;
        }
        rustix::fs::utimensat(CWD, path, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io("setting times", path, e.into()))
    }

    fn set_xattr(&self, name: &str, path: &Path, key: &str, value: &[u8]) -> Result<()> {
        match rustix::fs::lsetxattr(path, key, value, XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(e) => self.xattr_failed(name, path, key, e),
        }
    }

    /// A file system without support for an xattr namespace loses it with a warning, as
    /// containerd does; any other failure stops the unpack.
    fn xattr_failed(&self, name: &str, path: &Path, key: &str, e: rustix::io::Errno) -> Result<()> {
        if e == rustix::io::Errno::OPNOTSUPP {
            tracing::warn!(
                layer = self.layer,
                entry = name,
                xattr = key,
                "xattr not supported here; dropped"
            );
            return Ok(());
        }
        Err(io("setting xattr", path, e.into()))
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
        let header = entry.header();
        let bad = |what: &str, e: std::io::Error| self.bad_entry(name, format_args!("{what}: {e}"));
        // An empty numeric field is zero, as Go's archive/tar (which wrote most layers) reads it.
        let old = header.as_old();
        let number = |field: &[u8], value: std::io::Result<u64>, what: &str| {
            if field.iter().all(|&b| b == 0 || b == b' ') {
                Ok(0)
            } else {
                value.map_err(|e| bad(what, e))
            }
        };
        let mode = number(&old.mode, header.mode().map(u64::from), "mode")? as u32 & 0o7777;
        // PAX uid and gid records were already applied to the header by the tar crate.
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|&v| v != u32::MAX)
                .ok_or_else(|| self.bad_entry(name, format_args!("{what} {v} is out of range")))
        };
        let uid = id(number(&old.uid, header.uid(), "uid")?, "uid")?;
        let gid = id(number(&old.gid, header.gid(), "gid")?, "gid")?;
        let mut mtime = timespec(number(&old.mtime, header.mtime(), "mtime")?, 0);
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX records", e))? {
            for record in pax {
                let record = record.map_err(|e| bad("PAX record", e))?;
                let Ok(key) = record.key() else { continue };
                if let Some(xattr) = key.strip_prefix("SCHILY.xattr.") {
                    // Overlay's own attributes (redirects, metacopy, opaque) are the store's to
                    // set: from a layer they could make overlayfs look elsewhere.
                    if !xattr.starts_with("trusted.overlay.") {
                        xattrs.push((xattr.to_string(), record.value_bytes().to_vec()));
                    }
                } else if key == "mtime" {
                    if let Some(t) = record.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if key == "atime" {
                    atime = record.value().ok().and_then(parse_pax_time);
                }
            }
        }
        let times = Timestamps {
            last_access: atime.unwrap_or(mtime),
            last_modification: mtime,
        };
        Ok(Meta {
            mode,
            uid,
            gid,
            times,
            xattrs,
        })
    }

    /// Sets directory times (last, since creating entries changed them); returns the bytes of
    /// file content written.
    fn finish(self) -> Result<u64> {
        for (rel, times) in &self.dir_times {
            let path = self.dest.join(rel);
            rustix::fs::utimensat(CWD, &path, times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io("setting times", &path, e.into()))?;
        }
        Ok(self.size)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    None,
    Dir,
    /// An overlay whiteout this layer made earlier.
    Whiteout,
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn io(operation: &'static str, path: &Path, e: std::io::Error) -> ImageError {
    ImageError::io(operation, path, e)
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

fn timespec(secs: u64, nanos: u32) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(i64::MAX),
        tv_nsec: nanos.into(),
    }
}

fn clone_times(t: &Timestamps) -> Timestamps {
    Timestamps {
        last_access: t.last_access,
        last_modification: t.last_modification,
    }
}

/// A PAX time: decimal seconds with an optional fraction (`1700000000.123456789`).
fn parse_pax_time(text: &str) -> Option<Timespec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    let nanos: i64 = digits.parse().ok()?;
    // A negative time's fraction counts backwards from its seconds.
    let (secs, nanos) = if secs < 0 && nanos > 0 {
        (secs - 1, 1_000_000_000 - nanos)
    } else {
        (secs, nanos)
    };
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        use Compression::*;
        for (media_type, expected) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Some(Gzip),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.zstd",
                Some(Zstd),
            ),
            ("application/vnd.docker.image.rootfs.diff.tar", Some(None)),
            (
                "Application/VND.OCI.Image.Layer.v1.tar+gzip; x=y",
                Some(Gzip),
            ),
            ("application/x-tar", Some(None)),
            ("application/octet-stream", Option::None),
            ("", Option::None),
            ("application/vnd.oci.image.config.v1+json", Option::None),
        ] {
            assert_eq!(
                Compression::from_media_type(media_type),
                expected,
                "{media_type}"
            );
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/\0\0\0"), Compression::None);
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.5").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time("-1.25").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time("x").is_none());
        assert!(parse_pax_time("1.2x").is_none());
    }
}
