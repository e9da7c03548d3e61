//! `ImageStore::write_layer_blob`, which stores a layer blob and unpacks it in one pass: it
//! leaves what `write_blob` then `ensure_layer` leave, nothing at all on a wrong digest, diff id
//! or size, and unpacks a blob once when several writers race.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::oci::{self, file, Compression, Entry};
use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::store::{ImageStore, LayerRecord};
use skiff_runtime::image::ImageError;

fn digest(text: &str) -> Digest {
    Digest::parse(text).expect("digest")
}

/// A layer big enough to span many pipe chunks, with files in directories.
fn big_layer(compression: Compression) -> oci::Layer {
    let mut entries = vec![oci::dir("usr/"), oci::dir("usr/lib/")];
    for i in 0..12u32 {
        let content: Vec<u8> = (0..(300_000 + i * 1000))
            .map(|j| (j.wrapping_mul(2_654_435_761) >> (i % 7)) as u8)
            .collect();
        entries.push(Entry::File(format!("usr/lib/f{i}"), content));
    }
    entries.push(file("etc/hostname", b"skiff\n"));
    oci::layer(&entries, compression)
}

/// A reader that hands out at most `chunk` bytes per call, as a network stream does.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Every path under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .display()
                    .to_string(),
            );
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// What a failed write must not leave: the blob, a layer, a mapping, or temporary files (the
/// per-blob unpack lock files may stay; they hold no data).
fn assert_nothing_left(store: &ImageStore, layer: &oci::Layer) {
    let root = store.root();
    assert!(!store.blob_path(&digest(&layer.digest)).exists());
    assert_eq!(tree(&root.join("layers")), Vec::<String>::new());
    assert_eq!(tree(&root.join("diffids")), Vec::<String>::new());
    let leftovers: Vec<String> = tree(&root.join("tmp"))
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

fn write(
    store: &ImageStore,
    layer: &oci::Layer,
    blob: &[u8],
    size: Option<u64>,
    diff_id: &str,
) -> Result<LayerRecord, ImageError> {
    let mut reader = Trickle {
        data: blob,
        chunk: 100_003,
    };
    store.write_layer_blob(
        &digest(&layer.digest),
        size,
        &layer.media_type,
        Some(&digest(diff_id)),
        &mut reader,
    )
}

#[test]
fn leaves_what_write_blob_then_ensure_layer_leave() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let layer = big_layer(compression);
        let streamed_dir = tempfile::tempdir().expect("tempdir");
        let streamed = ImageStore::open(streamed_dir.path()).expect("open");
        let record = write(
            &streamed,
            &layer,
            &layer.blob,
            Some(layer.blob.len() as u64),
            &layer.diff_id,
        )
        .expect("write_layer_blob");

        let classic_dir = tempfile::tempdir().expect("tempdir");
        let classic = ImageStore::open(classic_dir.path()).expect("open");
        classic
            .write_blob(
                &digest(&layer.digest),
                Some(layer.blob.len() as u64),
                &mut layer.blob.as_slice(),
            )
            .expect("write_blob");
        let expected = classic
            .ensure_layer(
                &digest(&layer.digest),
                &layer.media_type,
                Some(&digest(&layer.diff_id)),
            )
            .expect("ensure_layer");

        assert_eq!(record, expected, "{compression:?}");
        assert_eq!(record.size, layer.blob.len() as u64);
        for dir in ["blobs", "layers", "diffids"] {
            assert_eq!(
                tree(&streamed.root().join(dir)),
                tree(&classic.root().join(dir)),
                "{compression:?} {dir}"
            );
        }
        assert_eq!(
            streamed.read_blob(&record.digest).expect("blob"),
            layer.blob
        );
        let rootfs = streamed.layer_dir(&record.diff_id);
        assert_eq!(
            std::fs::read(rootfs.join("etc/hostname")).expect("file"),
            b"skiff\n"
        );
        assert_eq!(
            std::fs::read(rootfs.join("usr/lib/f3")).expect("file"),
            std::fs::read(classic.layer_dir(&record.diff_id).join("usr/lib/f3")).expect("file")
        );
        assert_eq!(
            streamed.layer_size(&record.diff_id).expect("size"),
            classic.layer_size(&record.diff_id).expect("size")
        );
        let leftovers: Vec<String> = tree(&streamed.root().join("tmp"))
            .into_iter()
            .filter(|p| !p.ends_with(".lock"))
            .collect();
        assert_eq!(leftovers, Vec::<String>::new());
    }
}

#[test]
fn a_corrupted_stream_is_a_digest_mismatch_and_leaves_nothing() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let mut bad = layer.blob.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    let err =
        write(&store, &layer, &bad, Some(bad.len() as u64), &layer.diff_id).expect_err("corrupt");
    match &err {
        ImageError::DigestMismatch { digest: d, actual } => {
            assert_eq!(d, &layer.digest);
            assert_eq!(actual, &oci::sha256(&bad));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&layer.digest), "{err}");
    assert_nothing_left(&store, &layer);

    // The good bytes then go in.
    write(
        &store,
        &layer,
        &layer.blob,
        Some(layer.blob.len() as u64),
        &layer.diff_id,
    )
    .expect("good blob");
}

#[test]
fn a_wrong_diff_id_is_refused_and_leaves_nothing() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let wrong = oci::sha256(b"another tar");
    let err = write(
        &store,
        &layer,
        &layer.blob,
        Some(layer.blob.len() as u64),
        &wrong,
    )
    .expect_err("wrong diff id");
    match &err {
        ImageError::BadLayer { layer: l, reason } => {
            assert_eq!(l, &layer.digest);
            assert!(
                reason.contains(&layer.diff_id) && reason.contains(&wrong),
                "{reason}"
            );
        }
        other => panic!("expected a bad layer, got {other:?}"),
    }
    assert_nothing_left(&store, &layer);
}

#[test]
fn a_truncated_stream_is_refused_and_leaves_nothing() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let cut = &layer.blob[..layer.blob.len() * 2 / 3];
    // With the size known: the size is wrong.
    let err = write(
        &store,
        &layer,
        cut,
        Some(layer.blob.len() as u64),
        &layer.diff_id,
    )
    .expect_err("truncated");
    match &err {
        ImageError::BlobSize {
            digest: d,
            expected,
            actual,
        } => {
            assert_eq!(d, &layer.digest);
            assert_eq!(*expected, layer.blob.len() as u64);
            assert_eq!(*actual, cut.len() as u64);
        }
        other => panic!("expected a size error, got {other:?}"),
    }
    assert_nothing_left(&store, &layer);
    // Without it: the digest is.
    let err = write(&store, &layer, cut, None, &layer.diff_id).expect_err("truncated");
    assert!(
        matches!(&err, ImageError::DigestMismatch { digest: d, .. } if d == &layer.digest),
        "{err:?}"
    );
    assert_nothing_left(&store, &layer);
    // A stream longer than announced stops as soon as it is.
    let mut long = layer.blob.clone();
    long.extend_from_slice(&[0u8; 1000]);
    let err = write(
        &store,
        &layer,
        &long,
        Some(layer.blob.len() as u64),
        &layer.diff_id,
    )
    .expect_err("too long");
    assert!(matches!(err, ImageError::BlobSize { .. }), "{err:?}");
    assert_nothing_left(&store, &layer);
}

#[test]
fn a_reader_error_is_reported_and_leaves_nothing() {
    struct Broken<'a>(&'a [u8]);
    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Err(std::io::Error::other("connection reset"));
            }
            let n = buf.len().min(self.0.len()).min(50_000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let err = store
        .write_layer_blob(
            &digest(&layer.digest),
            Some(layer.blob.len() as u64),
            &layer.media_type,
            Some(&digest(&layer.diff_id)),
            &mut Broken(&layer.blob[..layer.blob.len() / 2]),
        )
        .expect_err("broken stream");
    assert!(err.to_string().contains("connection reset"), "{err}");
    assert_nothing_left(&store, &layer);
}

#[test]
fn an_unsafe_layer_is_refused_after_its_blob_is_checked() {
    let layer = oci::layer(
        &[Entry::RawFile(b"../escape".to_vec(), b"x".to_vec())],
        Compression::Gzip,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let err = write(
        &store,
        &layer,
        &layer.blob,
        Some(layer.blob.len() as u64),
        &layer.diff_id,
    )
    .expect_err("unsafe");
    assert!(matches!(err, ImageError::UnsafeLayer { .. }), "{err:?}");
    assert_nothing_left(&store, &layer);
    assert!(!dir.path().join("escape").exists());
}

#[test]
fn a_present_layer_only_gets_its_blob() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let size = Some(layer.blob.len() as u64);
    let first = write(&store, &layer, &layer.blob, size, &layer.diff_id).expect("first");
    let rootfs = store.layer_dir(&first.diff_id);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rootfs).expect("layer"));
    std::fs::remove_file(store.blob_path(&first.digest)).expect("remove the blob");

    // A corrupt copy is still refused on this path.
    let mut bad = layer.blob.clone();
    bad[10] ^= 1;
    let err = write(&store, &layer, &bad, size, &layer.diff_id).expect_err("corrupt");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    assert!(!store.blob_path(&first.digest).exists());

    let second = write(&store, &layer, &layer.blob, size, &layer.diff_id).expect("second");
    assert_eq!(second, first);
    assert!(store.has_blob(&first.digest));
    // Not unpacked again: the same directory.
    let now = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rootfs).expect("layer"));
    assert_eq!(now, inode);
    // And the diff id is still checked.
    let err = write(
        &store,
        &layer,
        &layer.blob,
        size,
        &oci::sha256(b"something else"),
    )
    .expect_err("wrong diff id");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err:?}");
}

/// A reader that sends its first few bytes, then waits for `go` before the rest.
struct Gated<'a> {
    data: &'a [u8],
    sent: bool,
    go: Option<mpsc::Receiver<()>>,
}

impl Read for Gated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent {
            if let Some(go) = self.go.take() {
                // Waits until the test says so (or goes on, failing the test, if it never does).
                let _ = go.recv_timeout(Duration::from_secs(30));
            }
        }
        let n = buf.len().min(self.data.len()).min(4096);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.sent = true;
        Ok(n)
    }
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tmp_entries(store: &ImageStore, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(store.root().join("tmp"))
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect()
}

#[test]
fn racing_writers_unpack_a_blob_once() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let size = Some(layer.blob.len() as u64);
    let (go, gate) = mpsc::channel();
    std::thread::scope(|scope| {
        // The first writer takes the unpack lock and stalls mid-stream.
        let first = scope.spawn(|| {
            store.write_layer_blob(
                &digest(&layer.digest),
                size,
                &layer.media_type,
                Some(&digest(&layer.diff_id)),
                &mut Gated {
                    data: &layer.blob,
                    sent: false,
                    go: Some(gate),
                },
            )
        });
        wait_for("the first writer's unpack", || {
            tmp_entries(&store, "layer-").len() == 1
        });
        // The second stores its blob, then waits for the first one's unpack instead of
        // unpacking too.
        let second = scope.spawn(|| write(&store, &layer, &layer.blob, size, &layer.diff_id));
        wait_for("the second writer's blob", || {
            store.blob_path(&digest(&layer.digest)).exists()
        });
        assert!(!second.is_finished(), "the second writer did not wait");
        assert_eq!(
            tmp_entries(&store, "layer-").len(),
            1,
            "two unpacks at once"
        );
        let unpacking = tmp_entries(&store, "layer-").remove(0);
        let inode = std::os::unix::fs::MetadataExt::ino(
            &std::fs::metadata(unpacking.join("rootfs")).expect("the first writer's layer"),
        );
        go.send(()).expect("release the first writer");
        let first = first.join().expect("first thread").expect("first writer");
        let second = second
            .join()
            .expect("second thread")
            .expect("second writer");
        assert_eq!(first, second);
        // The layer in place is the one the first writer unpacked.
        let rootfs = store.layer_dir(&first.diff_id);
        assert_eq!(
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&rootfs).expect("layer")),
            inode
        );
    });
    assert_eq!(tmp_entries(&store, "layer-"), Vec::<PathBuf>::new());
    assert_eq!(tmp_entries(&store, "blob-"), Vec::<PathBuf>::new());
}

#[test]
fn concurrent_writers_of_one_blob_all_succeed() {
    let layer = big_layer(Compression::Gzip);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let size = Some(layer.blob.len() as u64);
    let barrier = std::sync::Barrier::new(4);
    let records: Vec<LayerRecord> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    write(&store, &layer, &layer.blob, size, &layer.diff_id)
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|w| w.join().expect("thread").expect("writer"))
            .collect()
    });
    assert!(records.windows(2).all(|w| w[0] == w[1]), "{records:?}");
    assert_eq!(
        store.read_blob(&records[0].digest).expect("blob"),
        layer.blob
    );
    // One layer directory, one mapping.
    let layers: Vec<_> = std::fs::read_dir(store.root().join("layers"))
        .expect("layers")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        layers,
        vec![std::ffi::OsString::from(digest(&layer.diff_id).hex())]
    );
    assert_eq!(tree(&store.root().join("diffids")).len(), 1);
    let leftovers: Vec<String> = tree(&store.root().join("tmp"))
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}
