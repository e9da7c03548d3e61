//! The image store: blobs checked on write and read, corrupt and truncated blobs detected and
//! discarded, concurrent writers, two opens of one directory; layers unpacked once; records,
//! references, removal and garbage collection.

// `&[x.clone()]` reads better than `std::slice::from_ref(&x)` in test set-up.
#![allow(clippy::cloned_ref_to_slice_refs)]

use std::io::Read;
use std::sync::{Arc, Barrier};

use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::store::ImageStore;
use skiff_runtime::image::ImageError;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[0] ^ seed)
        .collect()
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

fn tmp_is_empty(store: &ImageStore) -> bool {
    std::fs::read_dir(store.root().join("tmp"))
        .expect("tmp dir")
        .filter_map(|e| e.ok())
        .all(|e| e.file_name().to_string_lossy().ends_with(".lock"))
}

#[test]
fn blob_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let bytes = data(3 * 1024 * 1024 + 17, 1);
    let digest = Digest::of(&bytes);
    assert!(!store.has_blob(&digest));
    let mut reader = Trickle {
        data: &bytes,
        chunk: 65_537,
    };
    let size = store
        .write_blob(&digest, Some(bytes.len() as u64), &mut reader)
        .expect("write");
    assert_eq!(size, bytes.len() as u64);
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest).expect("read"), bytes);
    assert_eq!(
        std::fs::read(store.blob_path(&digest)).expect("on disk"),
        bytes
    );
    // Writing it again (size unknown) is fine and changes nothing.
    let size = store
        .write_blob(&digest, None, &mut &bytes[..])
        .expect("write again");
    assert_eq!(size, bytes.len() as u64);
    assert!(tmp_is_empty(&store));
}

#[test]
fn wrong_digest_or_size_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let bytes = data(100_000, 2);
    let digest = Digest::of(&bytes);

    // A stream cut short: the digest does not match.
    let err = store
        .write_blob(&digest, None, &mut &bytes[..99_000])
        .expect_err("truncated stream");
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    // The same with the size known: refused for its size.
    let err = store
        .write_blob(&digest, Some(100_000), &mut &bytes[..99_000])
        .expect_err("short stream");
    assert!(
        matches!(
            err,
            ImageError::BlobSize {
                expected: 100_000,
                actual: 99_000,
                ..
            }
        ),
        "{err}"
    );
    // A longer stream than announced stops early.
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"more");
    let err = store
        .write_blob(&digest, Some(100_000), &mut &longer[..])
        .expect_err("long stream");
    assert!(matches!(err, ImageError::BlobSize { .. }), "{err}");
    // Right size, one flipped byte.
    let mut flipped = bytes.clone();
    flipped[5000] ^= 0xff;
    let err = store
        .write_blob(&digest, Some(100_000), &mut &flipped[..])
        .expect_err("corrupt stream");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(!store.blob_path(&digest).exists());
    assert!(!store.has_blob(&digest));
    assert!(tmp_is_empty(&store));
    let err = store.read_blob(&digest).expect_err("missing");
    assert!(matches!(err, ImageError::BlobNotFound(_)), "{err}");
}

#[test]
fn corrupted_and_truncated_blobs_on_disk_are_detected_and_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    for (seed, damage) in [(3u8, "corrupt"), (4u8, "truncate")] {
        let bytes = data(200_000, seed);
        let digest = Digest::of(&bytes);
        store
            .write_blob(&digest, Some(bytes.len() as u64), &mut &bytes[..])
            .expect("write");
        let path = store.blob_path(&digest);
        let mut on_disk = std::fs::read(&path).expect("read file");
        if damage == "corrupt" {
            on_disk[1234] ^= 1;
        } else {
            on_disk.truncate(150_000);
        }
        std::fs::write(&path, &on_disk).expect("damage blob");

        let err = store.read_blob(&digest).expect_err(damage);
        match err {
            ImageError::DigestMismatch { digest: d, actual } => {
                assert_eq!(d, digest.to_string());
                assert_eq!(actual, Digest::of(&on_disk).to_string());
            }
            other => panic!("{damage}: {other}"),
        }
        assert!(!path.exists(), "{damage}: corrupt blob kept");
        assert!(!store.has_blob(&digest));

        // Fetched again, it is good again.
        store
            .write_blob(&digest, None, &mut &bytes[..])
            .expect("write again");
        std::fs::write(&path, &on_disk).expect("damage blob again");
        assert!(!store.has_blob(&digest), "{damage}: has_blob trusted it");
        assert!(!path.exists(), "{damage}: has_blob kept it");
    }
}

#[test]
fn concurrent_writers_of_one_blob_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = Arc::new(data(2 * 1024 * 1024, 5));
    let digest = Digest::of(&bytes);
    let writers = 6;
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|i| {
            // Half share one handle, half open their own, as two processes would.
            let store = ImageStore::open(dir.path()).expect("open");
            let (bytes, barrier, digest) = (bytes.clone(), barrier.clone(), digest.clone());
            std::thread::spawn(move || {
                let mut reader = Trickle {
                    data: &bytes,
                    chunk: 10_000 + i * 999,
                };
                barrier.wait();
                store.write_blob(&digest, Some(bytes.len() as u64), &mut reader)
            })
        })
        .collect();
    for h in handles {
        assert_eq!(
            h.join().expect("writer thread").expect("write"),
            bytes.len() as u64
        );
    }
    let store = ImageStore::open(dir.path()).expect("open");
    assert_eq!(store.read_blob(&digest).expect("read"), *bytes);
    assert!(tmp_is_empty(&store));
}

#[test]
fn a_second_open_of_one_directory_sees_the_same_blobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = ImageStore::open(dir.path()).expect("open a");
    let b = ImageStore::open(dir.path()).expect("open b");
    assert_eq!(a.root(), dir.path().join("images"));
    let bytes = b"{\"hello\":1}".to_vec();
    let digest = Digest::of(&bytes);
    a.write_blob(&digest, Some(bytes.len() as u64), &mut &bytes[..])
        .expect("write through a");
    assert!(b.has_blob(&digest));
    assert_eq!(b.read_blob(&digest).expect("read through b"), bytes);
}

// ---- layers, records, references, removal and garbage collection ----

use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::store::{Freed, ImageRecord, LayerRecord};
use std::io::Write;

const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A tar with `files` (path, content).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_mtime(1_600_000_000);
        builder
            .append_data(&mut header, path, *data)
            .expect("append");
    }
    builder.into_inner().expect("finish tar")
}

fn gzip(tar: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(tar).expect("gzip");
    enc.finish().expect("gzip")
}

fn put_blob(store: &ImageStore, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    store
        .write_blob(&digest, Some(bytes.len() as u64), &mut &bytes[..])
        .expect("write blob");
    digest
}

/// Stores a gzip layer blob and unpacks it.
fn add_layer(store: &ImageStore, files: &[(&str, &[u8])]) -> LayerRecord {
    let tar = tar_of(files);
    let blob = put_blob(store, &gzip(&tar));
    store
        .ensure_layer(&blob, GZIP_LAYER, Some(&Digest::of(&tar)))
        .expect("ensure layer")
}

/// Records an image of `layers` with `tags`; `salt` makes its config (and id) unique.
fn add_image(store: &ImageStore, tags: &[&str], layers: &[LayerRecord], salt: &str) -> ImageRecord {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": [format!("SALT={salt}")] },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        },
    });
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    let id = put_blob(store, &config_bytes);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": id.to_string(), "size": config_bytes.len() },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_digest = put_blob(store, &serde_json::to_vec(&manifest).expect("json"));
    let record = ImageRecord {
        id: id.clone(),
        manifest_digest: Some(manifest_digest),
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        repo_digests: Vec::new(),
        config,
        layers: layers.to_vec(),
        size: 0,
        created: None,
    };
    store.put_image(record).expect("put image");
    store
        .resolve(&id.to_string())
        .expect("resolve")
        .expect("just recorded")
}

fn blob_count(store: &ImageStore) -> usize {
    std::fs::read_dir(store.root().join("blobs/sha256"))
        .expect("blobs")
        .count()
}

fn layer_count(store: &ImageStore) -> usize {
    std::fs::read_dir(store.root().join("layers"))
        .expect("layers")
        .count()
}

#[test]
fn a_layer_is_unpacked_once_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let tar = tar_of(&[("etc/hostname", b"skiff\n"), ("bin/sh", b"#!")]);
    let diff_id = Digest::of(&tar);
    let gz = gzip(&tar);
    let blob = put_blob(&store, &gz);

    let layer = store
        .ensure_layer(&blob, GZIP_LAYER, Some(&diff_id))
        .expect("ensure");
    assert_eq!(
        layer,
        LayerRecord {
            digest: blob.clone(),
            media_type: GZIP_LAYER.to_string(),
            size: gz.len() as u64,
            diff_id: diff_id.clone(),
        }
    );
    let rootfs = store.layer_dir(&diff_id);
    assert_eq!(
        rootfs,
        store
            .root()
            .join("layers")
            .join(diff_id.hex())
            .join("rootfs")
    );
    assert_eq!(
        std::fs::read(rootfs.join("etc/hostname")).expect("file"),
        b"skiff\n"
    );
    assert_eq!(store.layer_size(&diff_id).expect("size"), 8);

    // A second call is a no-op: a marker left in the layer survives, with or without the
    // expected diff id, and the media type does not matter any more.
    std::fs::write(rootfs.join("marker"), b"").expect("marker");
    let again = store
        .ensure_layer(&blob, "application/octet-stream", None)
        .expect("again");
    assert_eq!(again.diff_id, diff_id);
    assert!(rootfs.join("marker").exists());

    // The same tar compressed differently shares the unpacked layer.
    let zst = zstd::stream::encode_all(&tar[..], 3).expect("zstd");
    let zblob = put_blob(&store, &zst);
    let z = store
        .ensure_layer(&zblob, ZSTD_LAYER, Some(&diff_id))
        .expect("zstd layer");
    assert_eq!(z.diff_id, diff_id);
    assert!(
        rootfs.join("marker").exists(),
        "the shared layer was unpacked again"
    );
    assert_eq!(layer_count(&store), 1);

    // A wrong expected diff id is refused; a missing blob is reported as missing.
    let other = tar_of(&[("x", b"y")]);
    let oblob = put_blob(&store, &other);
    let err = store
        .ensure_layer(
            &oblob,
            "application/vnd.oci.image.layer.v1.tar",
            Some(&diff_id),
        )
        .expect_err("wrong diff id");
    assert!(matches!(err, ImageError::BadLayer { .. }), "{err}");
    assert!(err.to_string().contains(&diff_id.to_string()), "{err}");
    let err = store
        .ensure_layer(&Digest::of(b"absent"), GZIP_LAYER, None)
        .expect_err("missing blob");
    assert!(matches!(err, ImageError::BlobNotFound(_)), "{err}");
    assert!(tmp_is_empty(&store));
}

#[test]
fn a_corrupt_or_truncated_layer_blob_is_discarded_not_unpacked() {
    for damage in ["corrupt", "truncate"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("open");
        let big: Vec<u8> = data(500_000, 9);
        let tar = tar_of(&[("big", &big), ("small", b"x")]);
        let blob = put_blob(&store, &gzip(&tar));
        let path = store.blob_path(&blob);
        let mut bytes = std::fs::read(&path).expect("blob");
        if damage == "corrupt" {
            let at = bytes.len() / 2;
            bytes[at] ^= 0x55;
        } else {
            bytes.truncate(bytes.len() - 100);
        }
        std::fs::write(&path, &bytes).expect("damage");
        let err = store
            .ensure_layer(&blob, GZIP_LAYER, None)
            .expect_err(damage);
        assert!(
            matches!(err, ImageError::DigestMismatch { .. }),
            "{damage}: {err}"
        );
        assert!(!path.exists(), "{damage}: the bad blob was kept");
        assert_eq!(layer_count(&store), 0, "{damage}: a layer was recorded");
        assert!(tmp_is_empty(&store), "{damage}: leftovers in tmp");
        // Fetched again, it unpacks.
        put_blob(&store, &gzip(&tar));
        let layer = store
            .ensure_layer(&blob, GZIP_LAYER, Some(&Digest::of(&tar)))
            .expect("after refetch");
        assert_eq!(layer.diff_id, Digest::of(&tar));
    }
}

#[test]
fn concurrent_ensure_layer_calls_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let big = data(2_000_000, 7);
    let tar = tar_of(&[("a", &big), ("b", b"b")]);
    let blob = put_blob(&store, &gzip(&tar));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let store = ImageStore::open(dir.path()).expect("open");
            let (blob, barrier) = (blob.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.ensure_layer(&blob, GZIP_LAYER, None)
            })
        })
        .collect();
    for h in handles {
        let layer = h.join().expect("thread").expect("ensure");
        assert_eq!(layer.diff_id, Digest::of(&tar));
    }
    assert_eq!(layer_count(&store), 1);
    assert!(tmp_is_empty(&store));
    assert_eq!(
        std::fs::read(store.layer_dir(&Digest::of(&tar)).join("a")).expect("a"),
        big
    );
}

#[test]
fn images_are_found_by_reference_id_and_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let base = add_layer(&store, &[("bin/sh", b"shell")]);
    let app = add_layer(&store, &[("app", b"application")]);
    let image = add_image(
        &store,
        &["busybox", "localhost:5000/x/y:1.0"],
        &[base.clone(), app.clone()],
        "a",
    );
    assert_eq!(
        image.repo_tags,
        ["docker.io/library/busybox:latest", "localhost:5000/x/y:1.0"]
    );
    assert_eq!(image.size, 5 + 11, "size is the unpacked layers'");
    assert_eq!(store.layer_dirs(&image).len(), 2);

    let id = image.id.to_string();
    let manifest = image.manifest_digest.clone().expect("manifest");
    for reference in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        "localhost:5000/x/y:1.0",
        id.as_str(),
        &id[..15],
        image.id.hex(),
        &image.id.hex()[..12],
        &format!("busybox@{manifest}"),
    ] {
        let found = store.resolve(reference).expect(reference);
        assert_eq!(found.map(|r| r.id), Some(image.id.clone()), "{reference}");
    }
    for missing in [
        "busybox:1.36",
        "alpine",
        "localhost:5000/x/y",
        "sha256:ffffffffff",
        &format!("alpine@{manifest}"),
    ] {
        assert_eq!(store.resolve(missing).expect(missing), None, "{missing}");
    }
    assert!(store.resolve("Not A Reference").is_err());
    let parsed = Reference::parse("busybox").expect("parse");
    assert_eq!(
        store.get(&parsed).expect("get").map(|r| r.id),
        Some(image.id.clone())
    );

    // Digest references given when recording are found exactly.
    let pinned = add_image(&store, &[], std::slice::from_ref(&base), "pinned");
    let mut with_digest = pinned.clone();
    with_digest.repo_digests = vec![format!(
        "quay.io/a/b@{}",
        pinned.manifest_digest.clone().expect("m")
    )];
    store.put_image(with_digest).expect("put with digest");
    let found = store
        .resolve(&format!(
            "quay.io/a/b@{}",
            pinned.manifest_digest.clone().expect("m")
        ))
        .expect("resolve digest")
        .expect("found");
    assert_eq!(found.id, pinned.id);
    assert_eq!(
        found.repo_digests,
        [format!(
            "quay.io/a/b@{}",
            pinned.manifest_digest.expect("m")
        )]
    );

    // A second open (another process) sees the same.
    let other = ImageStore::open(dir.path()).expect("open again");
    assert_eq!(other.list().expect("list").len(), 2);
    assert_eq!(
        other.resolve("busybox").expect("resolve").map(|r| r.id),
        Some(image.id)
    );
}

#[test]
fn an_id_prefix_shared_by_two_images_is_ambiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let layer = add_layer(&store, &[("f", b"f")]);
    // 17 ids over 16 first digits: two share one.
    let images: Vec<ImageRecord> = (0..17)
        .map(|i| add_image(&store, &[], std::slice::from_ref(&layer), &i.to_string()))
        .collect();
    let mut seen = std::collections::HashMap::new();
    let shared = images
        .iter()
        .find_map(|r| {
            seen.insert(r.id.hex()[..1].to_string(), r.id.clone())
                .map(|_| r.id.hex()[..1].to_string())
        })
        .expect("pigeonhole");
    let err = store
        .resolve(&format!("sha256:{shared}"))
        .expect_err("ambiguous");
    assert!(matches!(err, ImageError::AmbiguousId { .. }), "{err}");
    assert!(store
        .resolve(&images[0].id.hex()[..20])
        .expect("unique")
        .is_some());
}

#[test]
fn a_tag_moves_to_the_newer_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let layer = add_layer(&store, &[("f", b"f")]);
    let old = add_image(
        &store,
        &["app:1", "app:latest"],
        std::slice::from_ref(&layer),
        "old",
    );
    let new = add_image(&store, &["app:latest"], std::slice::from_ref(&layer), "new");
    let old_now = store
        .resolve(&old.id.to_string())
        .expect("resolve")
        .expect("old");
    assert_eq!(old_now.repo_tags, ["docker.io/library/app:1"]);
    assert_eq!(
        store.resolve("app").expect("resolve").map(|r| r.id),
        Some(new.id.clone())
    );
    // Recording an image again keeps its other tags.
    add_image(&store, &["app:2"], std::slice::from_ref(&layer), "old");
    let old_now = store.resolve("app:1").expect("resolve").expect("old");
    assert_eq!(
        old_now.repo_tags,
        ["docker.io/library/app:1", "docker.io/library/app:2"]
    );
    let listed: Vec<Vec<String>> = store
        .list()
        .expect("list")
        .into_iter()
        .map(|r| r.repo_tags)
        .collect();
    assert_eq!(
        listed,
        [
            vec![
                "docker.io/library/app:1".to_string(),
                "docker.io/library/app:2".to_string()
            ],
            vec!["docker.io/library/app:latest".to_string()],
        ]
    );
}

#[test]
fn put_image_needs_its_blobs_and_layers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let layer = add_layer(&store, &[("f", b"f")]);
    let record = add_image(&store, &["x"], std::slice::from_ref(&layer), "x");
    let mut missing_layer = record.clone();
    missing_layer.layers[0].diff_id = Digest::of(b"nothing");
    assert!(store.put_image(missing_layer).is_err());
    let mut missing_blob = record.clone();
    missing_blob.manifest_digest = Some(Digest::of(b"nothing"));
    let err = store.put_image(missing_blob).expect_err("missing blob");
    assert!(matches!(err, ImageError::BlobNotFound(_)), "{err}");
    let mut bad_tag = record;
    bad_tag.repo_tags = vec!["UPPER".into()];
    assert!(store.put_image(bad_tag).is_err());
}

#[test]
fn remove_untags_then_frees_exactly_what_nothing_else_uses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let shared = add_layer(&store, &[("shared", b"12345")]);
    let own = add_layer(&store, &[("own", b"1234567")]);
    let keep = add_image(&store, &["keep"], &[shared.clone()], "keep");
    let gone = add_image(
        &store,
        &["gone:1", "gone:2"],
        &[shared.clone(), own.clone()],
        "gone",
    );
    let (blobs, layers) = (blob_count(&store), layer_count(&store));
    assert_eq!((blobs, layers), (6, 2));

    // One of two tags: untagged only.
    let freed = store.remove("gone:1", &[]).expect("untag");
    assert_eq!(freed, Freed::default());
    assert!(store.resolve("gone:1").expect("resolve").is_none());
    assert!(store.resolve("gone:2").expect("resolve").is_some());

    // In use: refused, nothing changes.
    let err = store
        .remove("gone:2", &[gone.id.clone()])
        .expect_err("in use");
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(store.resolve("gone:2").expect("resolve").is_some());

    // The last tag: the image, its own layer and its config, manifest and own layer blob go.
    let own_blob_len = std::fs::metadata(store.blob_path(&own.digest))
        .expect("blob")
        .len();
    let config_len = std::fs::metadata(store.blob_path(&gone.id))
        .expect("config")
        .len();
    let manifest = gone.manifest_digest.clone().expect("manifest");
    let manifest_len = std::fs::metadata(store.blob_path(&manifest))
        .expect("manifest")
        .len();
    let freed = store.remove("gone:2", &[]).expect("remove");
    assert_eq!(freed.images, [gone.id.clone()]);
    assert_eq!(freed.layers, 1);
    assert_eq!(freed.blobs, 3);
    assert_eq!(freed.bytes, own_blob_len + config_len + manifest_len + 7);
    assert!(!store.layer_dir(&own.diff_id).exists());
    assert!(store.layer_dir(&shared.diff_id).exists());
    assert!(store.has_blob(&shared.digest));
    assert!(!store.blob_path(&gone.id).exists());
    assert_eq!(store.list().expect("list").len(), 1);
    assert!(tmp_is_empty(&store));

    // By id, with tags: the whole image.
    let freed = store
        .remove(&keep.id.hex()[..12], &[])
        .expect("remove by id");
    assert_eq!(freed.images, [keep.id.clone()]);
    assert_eq!((freed.layers, freed.blobs), (1, 3));
    assert_eq!((blob_count(&store), layer_count(&store)), (0, 0));
    assert!(store.list().expect("list").is_empty());

    let err = store.remove("nothing", &[]).expect_err("unknown");
    assert!(matches!(err, ImageError::NotFound(_)), "{err}");
}

#[test]
fn prune_removes_untagged_or_all_unused_images_and_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let l1 = add_layer(&store, &[("one", b"1")]);
    let l2 = add_layer(&store, &[("two", b"22")]);
    let l3 = add_layer(&store, &[("three", b"333")]);
    let tagged = add_image(&store, &["tagged"], &[l1.clone()], "t");
    let dangling = add_image(&store, &[], &[l1.clone(), l2.clone()], "d");
    let used = add_image(&store, &["used"], &[l3.clone()], "u");
    // Leftovers: an unreferenced blob, an orphan layer, an interrupted write.
    let orphan_blob = put_blob(&store, b"orphan");
    let orphan_layer = add_layer(&store, &[("orphan", b"4444")]);
    std::fs::write(store.root().join("tmp/blob-interrupted.1.1"), b"half").expect("tmp");

    let freed = store.prune(&[used.id.clone()], false).expect("prune");
    assert_eq!(freed.images, [dangling.id.clone()]);
    // dangling's config and manifest, l2's blob, the orphan blob, the orphan layer's blob.
    assert_eq!(freed.blobs, 5);
    assert_eq!(freed.layers, 2, "l2 and the orphan layer");
    assert!(!store.blob_path(&orphan_blob).exists());
    assert!(!store.layer_dir(&orphan_layer.diff_id).exists());
    assert!(!store.layer_dir(&l2.diff_id).exists());
    assert!(store.layer_dir(&l1.diff_id).exists());
    assert!(std::fs::read_dir(store.root().join("tmp"))
        .expect("tmp")
        .next()
        .is_none());
    assert!(store.resolve("tagged").expect("resolve").is_some());

    // All: everything but what is in use.
    let freed = store.prune(&[used.id.clone()], true).expect("prune all");
    assert_eq!(freed.images, [tagged.id.clone()]);
    assert_eq!((freed.layers, freed.blobs), (1, 3));
    let left = store.list().expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, used.id);
    assert_eq!((blob_count(&store), layer_count(&store)), (3, 1));
    assert!(store.has_blob(&l3.digest));
    let again = store.prune(&[used.id.clone()], true).expect("prune again");
    assert_eq!(again, Freed::default());
}

#[test]
fn a_lease_keeps_prune_from_deleting_what_is_being_imported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let lease = store.lease().expect("lease");
    // The import's layer and blobs exist before any record references them.
    let layer = add_layer(&store, &[("f", b"f")]);
    let pruner = {
        let store = ImageStore::open(dir.path()).expect("open");
        std::thread::spawn(move || store.prune(&[], false))
    };
    let image = add_image(&store, &["imported"], std::slice::from_ref(&layer), "i");
    drop(lease);
    let freed = pruner.join().expect("pruner").expect("prune");
    assert!(freed.images.is_empty(), "{freed:?}");
    assert!(store.layer_dir(&layer.diff_id).exists());
    assert!(store.has_blob(&layer.digest));
    assert!(store.has_blob(&image.id));
}
