//! Layer unpacking, for real (as root): compression, metadata, links, device nodes, whiteouts
//! seen through a real overlay mount, and malicious layers that try to leave their directory.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::layer::{unpack, Compression};
use skiff_runtime::image::ImageError;
use tar::{EntryType, Header};

/// Builds layer tars entry by entry, writing names raw so malicious paths get through.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        assert!(path.len() < name.len(), "test path too long");
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    fn append(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.builder.append(&h, data).expect("append to vec");
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let h = Self::header(path, EntryType::Directory, mode, 0);
        self.append(h, b"")
    }

    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(path, EntryType::Regular, 0o644, data.len() as u64);
        self.append(h, data)
    }

    fn file_owned(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = Self::header(path, EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.append(h, data)
    }

    fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(path, kind, 0o777, 0);
        let linkname = &mut h.as_old_mut().linkname;
        linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.append(h, b"")
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(EntryType::Symlink, path, target)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(EntryType::Link, path, target)
    }

    fn device(&mut self, path: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(path, kind, 0o620, 0);
        h.set_device_major(major)
            .expect("gnu header has device fields");
        h.set_device_minor(minor)
            .expect("gnu header has device fields");
        self.append(h, b"")
    }

    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .expect("append pax");
        self
    }

    fn tar(&mut self) -> Vec<u8> {
        self.builder.finish().expect("finish tar");
        self.builder.get_ref().clone()
    }
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(tar).expect("gzip");
    enc.finish().expect("gzip")
}

fn zstd(tar: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(tar, 3).expect("zstd")
}

fn unpack_bytes(
    blob: &[u8],
    compression: Compression,
    dest: &Path,
) -> skiff_runtime::image::Result<skiff_runtime::image::layer::Unpacked> {
    unpack("test-layer", &mut &blob[..], compression, dest)
}

/// A scratch area: `dest` for the layer, `outside` for what a layer must never touch.
struct Scratch {
    _dir: tempfile::TempDir,
    dest: PathBuf,
    outside: PathBuf,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("dest");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&dest).expect("dest");
    std::fs::create_dir(&outside).expect("outside");
    std::fs::write(outside.join("secret"), b"host file").expect("secret");
    Scratch {
        _dir: dir,
        dest,
        outside,
    }
}

fn sample_tar() -> Vec<u8> {
    Layer::new()
        .dir("./", 0o755)
        .dir("./etc/", 0o755)
        .file("./etc/hostname", b"skiff\n")
        .file("etc/motd", &vec![b'x'; 3 * 1024 * 1024])
        .symlink("bin", "usr/bin")
        .tar()
}

#[test]
fn plain_gzip_and_zstd_unpack_alike_with_the_tar_digest_as_diff_id() {
    let tar = sample_tar();
    let diff_id = Digest::of(&tar);
    for (compression, blob) in [
        (Compression::None, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd(&tar)),
    ] {
        let s = scratch();
        assert_eq!(Compression::sniff(&blob), compression);
        let unpacked = unpack_bytes(&blob, compression, &s.dest).expect("unpack");
        assert_eq!(unpacked.diff_id, diff_id, "{compression:?}");
        assert_eq!(unpacked.size, 6 + 3 * 1024 * 1024, "{compression:?}");
        assert_eq!(
            std::fs::read(s.dest.join("etc/hostname")).expect("hostname"),
            b"skiff\n"
        );
        assert_eq!(
            std::fs::metadata(s.dest.join("etc/motd"))
                .expect("motd")
                .len(),
            3 * 1024 * 1024
        );
        assert_eq!(
            std::fs::read_link(s.dest.join("bin")).expect("bin"),
            Path::new("usr/bin")
        );
    }
}

#[test]
fn trailing_bytes_after_the_tar_count_in_the_diff_id() {
    let mut tar = sample_tar();
    tar.extend_from_slice(&[0u8; 10 * 512]);
    let s = scratch();
    let unpacked = unpack_bytes(&tar, Compression::None, &s.dest).expect("unpack");
    assert_eq!(unpacked.diff_id, Digest::of(&tar));
}

#[test]
fn damaged_compressed_layers_fail() {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let s = scratch();
    let err =
        unpack_bytes(&gz[..gz.len() / 2], Compression::Gzip, &s.dest).expect_err("truncated gzip");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
    let s = scratch();
    let err = unpack_bytes(&tar, Compression::Zstd, &s.dest).expect_err("plain tar read as zstd");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
}

#[test]
fn ownership_modes_times_xattrs_links_and_devices_are_kept() {
    let tar = Layer::new()
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file_owned("usr/bin/su", b"#!su", 0o4755, 0, 0, 1_500_000_000)
        .file_owned("usr/bin/mine", b"mine", 0o2750, 1234, 5678, 1_234_567_890)
        .dir("tmp", 0o1777)
        .pax(&[
            ("SCHILY.xattr.user.skiff", b"yes"),
            ("SCHILY.xattr.trusted.skiff", b"\x00\x01binary"),
            ("mtime", b"1700000000.25"),
        ])
        .file("usr/bin/tagged", b"tagged")
        .pax(&[("SCHILY.xattr.trusted.overlay.redirect", b"/etc")])
        .file("usr/bin/sneaky", b"sneaky")
        .hardlink("usr/bin/also-su", "usr/bin/su")
        .symlink("usr/bin/sh", "/bin/busybox")
        .device("dev-null", EntryType::Char, 1, 3)
        .device("loop0", EntryType::Block, 7, 0)
        .device("fifo", EntryType::Fifo, 0, 0)
        .tar();
    let s = scratch();
    unpack_bytes(&gzip(&tar), Compression::Gzip, &s.dest).expect("unpack");
    let d = &s.dest;
    let meta = |p: &str| std::fs::symlink_metadata(d.join(p)).expect(p);

    let su = meta("usr/bin/su");
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!((su.uid(), su.gid()), (0, 0));
    assert_eq!(su.mtime(), 1_500_000_000);
    let mine = meta("usr/bin/mine");
    assert_eq!(mine.mode() & 0o7777, 0o2750);
    assert_eq!((mine.uid(), mine.gid()), (1234, 5678));
    assert_eq!(mine.mtime(), 1_234_567_890);
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert!(meta("tmp").is_dir());
    assert_eq!(
        meta("usr").mtime(),
        1_600_000_000,
        "directory time set last"
    );

    let tagged = meta("usr/bin/tagged");
    assert_eq!(
        (tagged.mtime(), tagged.mtime_nsec()),
        (1_700_000_000, 250_000_000)
    );
    let xattr = |p: &str, name: &str| {
        let mut buf = vec![0u8; 256];
        rustix::fs::lgetxattr(d.join(p), name, &mut buf)
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    assert_eq!(
        xattr("usr/bin/tagged", "user.skiff").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        xattr("usr/bin/tagged", "trusted.skiff").as_deref(),
        Some(&b"\x00\x01binary"[..])
    );
    assert_eq!(
        xattr("usr/bin/sneaky", "trusted.overlay.redirect"),
        None,
        "overlay xattrs from a layer are dropped"
    );

    assert_eq!(meta("usr/bin/also-su").ino(), su.ino());
    assert_eq!(meta("usr/bin/also-su").nlink(), 2);
    assert_eq!(
        std::fs::read_link(d.join("usr/bin/sh")).expect("sh"),
        Path::new("/bin/busybox")
    );

    let null = meta("dev-null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o620);
    let lo = meta("loop0");
    assert!(lo.file_type().is_block_device());
    assert_eq!(lo.rdev(), rustix::fs::makedev(7, 0));
    assert!(meta("fifo").file_type().is_fifo());
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_opaque_dirs() {
    let tar = Layer::new()
        .file(".wh.gone", b"")
        .dir("dir", 0o755)
        .file("dir/.wh..wh..opq", b"")
        .file("dir/new", b"new")
        .file("other/.wh.old", b"")
        .file(".wh..wh.plnk", b"")
        .tar();
    let s = scratch();
    unpack_bytes(&tar, Compression::None, &s.dest).expect("unpack");
    let gone = std::fs::symlink_metadata(s.dest.join("gone")).expect("whiteout");
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(std::fs::symlink_metadata(s.dest.join("other/old"))
        .expect("whiteout")
        .file_type()
        .is_char_device());
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(s.dest.join("dir"), "trusted.overlay.opaque", &mut buf)
        .expect("opaque xattr");
    assert_eq!(&buf[..n], b"y");
    assert!(!s.dest.join(".wh.gone").exists());
    assert!(!s.dest.join("dir/.wh..wh..opq").exists());
    assert!(std::fs::symlink_metadata(s.dest.join(".wh..wh.plnk")).is_err());
    assert!(std::fs::symlink_metadata(s.dest.join("plnk")).is_err());
}

/// Unmounts on drop, so a failing assertion does not leave the mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH) {
            eprintln!("unmount {}: {e}", self.0.display());
        }
    }
}

#[test]
fn an_overlay_of_two_layers_hides_whited_out_and_opaque_content() {
    let lower = Layer::new()
        .file("keep", b"keep")
        .file("gone", b"gone")
        .dir("gone-dir", 0o755)
        .file("gone-dir/inner", b"x")
        .dir("dir", 0o755)
        .file("dir/old-a", b"a")
        .file("dir/old-b", b"b")
        .dir("merged", 0o755)
        .file("merged/lower", b"l")
        .tar();
    let upper = Layer::new()
        .file(".wh.gone", b"")
        .file(".wh.gone-dir", b"")
        .dir("dir", 0o755)
        .file("dir/.wh..wh..opq", b"")
        .file("dir/new", b"new")
        .file("merged/upper", b"u")
        .tar();
    let s = scratch();
    let (l1, l2, target) = (s.dest.join("l1"), s.dest.join("l2"), s.dest.join("merged"));
    for d in [&l1, &l2, &target] {
        std::fs::create_dir(d).expect("mkdir");
    }
    unpack_bytes(&lower, Compression::None, &l1).expect("lower");
    unpack_bytes(&upper, Compression::None, &l2).expect("upper");
    let options = CString::new(format!("lowerdir={}:{}", l2.display(), l1.display()))
        .expect("no NUL in paths");
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        options.as_c_str(),
    )
    .expect("mount overlay");
    let _mounted = Mounted(target.clone());

    let mut names: Vec<String> = std::fs::read_dir(&target)
        .expect("read merged")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["dir", "keep", "merged"]);
    let mut dir: Vec<String> = std::fs::read_dir(target.join("dir"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dir.sort();
    assert_eq!(dir, ["new"], "opaque dir shows only its own layer");
    let mut merged: Vec<String> = std::fs::read_dir(target.join("merged"))
        .expect("read merged dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    merged.sort();
    assert_eq!(merged, ["lower", "upper"], "a plain dir merges");
    assert_eq!(std::fs::read(target.join("keep")).expect("keep"), b"keep");
}

/// Asserts an unpack was refused as unsafe, naming `entry`, and touched nothing outside.
fn assert_refused(tar: &[u8], entry: &str) {
    let s = scratch();
    let parent = s.dest.parent().expect("dest has a parent").to_path_buf();
    let before: Vec<_> = std::fs::read_dir(&parent)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let err = unpack_bytes(tar, Compression::None, &s.dest).expect_err(entry);
    let message = err.to_string();
    assert!(
        matches!(err, ImageError::UnsafeLayer { .. }),
        "{entry}: not refused as unsafe: {message}"
    );
    assert!(
        message.contains(&format!("{entry:?}")),
        "{entry}: error does not name the entry: {message}"
    );
    let after: Vec<_> = std::fs::read_dir(&parent)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(before, after, "{entry}: something was written next to dest");
    let outside: Vec<_> = std::fs::read_dir(&s.outside)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, ["secret"], "{entry}: outside was changed");
    assert_eq!(
        std::fs::read(s.outside.join("secret")).expect("secret"),
        b"host file",
        "{entry}: outside file changed"
    );
}

#[test]
fn malicious_layers_are_refused_and_write_nothing_outside() {
    // The scratch layout is <tmp>/{dest,outside}: from dest, `../outside` is the host.
    assert_refused(&Layer::new().file("../escaped", b"x").tar(), "../escaped");
    assert_refused(
        &Layer::new().file("a/../../outside/secret", b"x").tar(),
        "a/../../outside/secret",
    );
    assert_refused(&Layer::new().file("/etc/abs", b"x").tar(), "/etc/abs");
    assert_refused(&Layer::new().dir("/", 0o755).tar(), "/");
}

#[test]
fn writing_through_a_symlink_is_refused() {
    // The symlink alone is fine: it is resolved inside the container later.
    let s = scratch();
    let target = s.outside.to_string_lossy().into_owned();
    let ok = Layer::new().symlink("x", &target).tar();
    unpack_bytes(&ok, Compression::None, &s.dest).expect("a symlink pointing out is allowed");

    let through_file = Layer::new()
        .symlink("x", &target)
        .file("x/secret", b"pwned")
        .tar();
    assert_refused_with_outside(through_file, "x/secret");
    let through_dir = Layer::new().symlink("x", &target).dir("x/sub", 0o755).tar();
    assert_refused_with_outside(through_dir, "x/sub");
    let outside: Vec<_> = std::fs::read_dir(&s.outside)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, ["secret"], "outside was changed");
    assert_eq!(
        std::fs::read(s.outside.join("secret")).expect("secret"),
        b"host file"
    );
    let relative = Layer::new()
        .symlink("y", "../outside")
        .file("y/new", b"pwned")
        .tar();
    assert_refused(&relative, "y/new");
    // A directory replaced by a symlink later in the same layer is not trusted any more.
    let replaced = Layer::new()
        .dir("d", 0o755)
        .file("d/f", b"ok")
        .symlink("d", "../outside")
        .file("d/secret", b"pwned")
        .tar();
    assert_refused(&replaced, "d/secret");
    let whiteout_through = Layer::new()
        .symlink("w", "../outside")
        .file("w/.wh.secret", b"")
        .tar();
    assert_refused(&whiteout_through, "w/.wh.secret");
}

/// Like `assert_refused`, for layers whose symlinks name an absolute path outside: the caller
/// checks that path afterwards.
fn assert_refused_with_outside(tar: Vec<u8>, entry: &str) {
    let s = scratch();
    let err = unpack_bytes(&tar, Compression::None, &s.dest).expect_err(entry);
    assert!(
        matches!(err, ImageError::UnsafeLayer { .. }),
        "{entry}: {err}"
    );
    assert!(err.to_string().contains(&format!("{entry:?}")), "{err}");
}

#[test]
fn hard_links_out_of_the_layer_are_refused() {
    assert_refused(&Layer::new().hardlink("h", "../outside/secret").tar(), "h");
    assert_refused(&Layer::new().hardlink("h", "/etc/passwd").tar(), "h");
    assert_refused(
        &Layer::new()
            .symlink("x", "../outside")
            .hardlink("h", "x/secret")
            .tar(),
        "h",
    );
    // A link to a symlink links the symlink, never what it points at.
    let s = scratch();
    let tar = Layer::new()
        .symlink("x", "../outside/secret")
        .hardlink("h", "x")
        .tar();
    unpack_bytes(&tar, Compression::None, &s.dest).expect("link to a symlink");
    let h = std::fs::symlink_metadata(s.dest.join("h")).expect("h");
    assert!(h.file_type().is_symlink());
    assert_eq!(h.nlink(), 2);
    assert_eq!(
        std::fs::metadata(s.outside.join("secret"))
            .expect("secret")
            .nlink(),
        1
    );
    // A missing target is a bad layer, not a crash.
    let s = scratch();
    let err = unpack_bytes(
        &Layer::new().hardlink("h", "nowhere").tar(),
        Compression::None,
        &s.dest,
    )
    .expect_err("missing target");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
}

#[test]
fn later_entries_replace_earlier_ones_and_modes_apply() {
    let tar = Layer::new()
        .file("f", b"one")
        .file("f", b"two")
        .symlink("s", "f")
        .file("s", b"file now")
        .dir("ro", 0o500)
        .file("ro/inside", b"x")
        .tar();
    let s = scratch();
    unpack_bytes(&tar, Compression::None, &s.dest).expect("unpack");
    assert_eq!(std::fs::read(s.dest.join("f")).expect("f"), b"two");
    let st = std::fs::symlink_metadata(s.dest.join("s")).expect("s");
    assert!(st.is_file());
    assert_eq!(std::fs::read(s.dest.join("f")).expect("f"), b"two");
    assert_eq!(
        std::fs::metadata(s.dest.join("ro"))
            .expect("ro")
            .permissions()
            .mode()
            & 0o777,
        0o500
    );
}
