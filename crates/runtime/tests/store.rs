//! The image store: blobs checked on write and read, corrupt and truncated blobs detected and
//! discarded, concurrent writers, two opens of one directory.

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
