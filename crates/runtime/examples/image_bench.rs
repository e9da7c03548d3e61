//! Image benchmark: pull, import and unpack throughput of the node's image store, side by side
//! with `skopeo copy` of the same image in the same run.
//!
//! `cargo run --release -p skiff-runtime --example image_bench [RUNS]` (as root, with Debian's
//! docker-registry and skopeo installed; scripts/bench.sh runs it). It builds a synthetic image
//! of three gzip layers (large compressible files, thousands of small files, incompressible
//! data), serves it from a real registry on 127.0.0.1, and prints the median of RUNS runs (5 by
//! default) of each figure. skopeo only fetches and checks blobs into a directory; Skiff also
//! unpacks every layer, so equal times mean Skiff does more work in the same time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::oci::{self, Entry};
use common::registry::Registry;
use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::import;
use skiff_runtime::image::pull::{self, PullOptions};
use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::store::ImageStore;

/// xorshift64*: deterministic content, so every run and every machine benchmarks the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Bytes drawn from an alphabet of `symbols` letters: 16 compresses about 2:1 like
    /// binaries and libraries do; 256 does not compress.
    fn bytes(&mut self, len: usize, symbols: u8) -> Vec<u8> {
        (0..len)
            .map(|_| {
                let r = self.next();
                if symbols == 0 {
                    r as u8
                } else {
                    b'a' + (r % u64::from(symbols)) as u8
                }
            })
            .collect()
    }
}

fn synthetic_image() -> oci::Image {
    let mut rng = Rng(0x5eed_5eed_5eed_5eed);
    let mut big = vec![oci::dir("usr/"), oci::dir("usr/lib/")];
    for i in 0..40 {
        big.push(Entry::File(
            format!("usr/lib/lib{i}.so"),
            rng.bytes(1 << 20, 16),
        ));
    }
    let mut small = vec![oci::dir("usr/share/")];
    for d in 0..30 {
        small.push(Entry::Dir(format!("usr/share/pkg{d}/")));
        for f in 0..100 {
            let len = 512 + (rng.next() % (16 * 1024)) as usize;
            small.push(Entry::File(
                format!("usr/share/pkg{d}/file{f}.txt"),
                rng.bytes(len, 26),
            ));
        }
    }
    let mut random = vec![oci::dir("data/")];
    for i in 0..10 {
        random.push(Entry::File(
            format!("data/blob{i}.bin"),
            rng.bytes(2 << 20, 0),
        ));
    }
    let layers = [big, small, random]
        .iter()
        .map(|entries| oci::layer(entries, oci::Compression::Gzip))
        .collect();
    oci::image("amd64", layers)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = f();
    (start.elapsed(), value)
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo (Debian package skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new directory for one run. Nothing is deleted until the end: on ext4, creating files
/// right after deleting thousands makes inode allocation scan the recently deleted ones, which
/// would measure the benchmark's own clean-up rather than the work.
fn fresh_dir(parent: &Path, name: &str) -> std::path::PathBuf {
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    parent.join(format!("{name}-{n}"))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(5);
    let scratch = tempfile::Builder::new()
        .prefix("skiff-image-bench-")
        .tempdir()
        .expect("scratch directory");
    let work = scratch.path();

    let image = synthetic_image();
    let compressed: u64 = image.layers.iter().map(|l| l.blob.len() as u64).sum();
    let files: usize = 40 + 3000 + 10;
    let layout = work.join("layout");
    oci::write_oci_image(&layout, "bench", &image);
    let archive = work.join("bench.oci.tar");
    {
        let file = std::fs::File::create(&archive).expect("create the archive");
        let mut tar = tar::Builder::new(file);
        tar.append_dir_all(".", &layout).expect("tar the layout");
        tar.finish().expect("finish the archive");
    }

    let registry = Registry::start();
    registry.push_oci(&layout, "bench", "bench:1", None);
    let reference_text = registry.reference("bench:1");
    let reference = Reference::parse(&reference_text).expect("reference");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut skopeo_pull = Vec::new();
    let mut skiff_pull = Vec::new();
    let mut skopeo_import = Vec::new();
    let mut skiff_import = Vec::new();
    let mut unpack = Vec::new();
    let mut unpacked_bytes = 0;
    for _ in 0..runs {
        let dest = fresh_dir(work, "skopeo-dir");
        let src = format!("docker://{reference_text}");
        let dst = format!("dir:{}", dest.display());
        skopeo_pull
            .push(time(|| skopeo(&["copy", "--quiet", "--src-tls-verify=false", &src, &dst])).0);

        let data = fresh_dir(work, "pull-data");
        let store = ImageStore::open(&data).expect("store");
        let (elapsed, record) = time(|| {
            runtime
                .block_on(pull::pull(&store, &reference, &PullOptions::default()))
                .expect("pull")
        });
        skiff_pull.push(elapsed);
        unpacked_bytes = record.size;

        // Unpack alone: the blobs are already in a second store; only the layers are made.
        let data2 = fresh_dir(work, "unpack-data");
        let store2 = ImageStore::open(&data2).expect("store");
        for layer in &record.layers {
            let bytes = store.read_blob(&layer.digest).expect("blob");
            store2
                .write_blob(&layer.digest, Some(layer.size), &mut bytes.as_slice())
                .expect("copy the blob");
        }
        unpack.push(
            time(|| {
                for layer in &record.layers {
                    store2
                        .ensure_layer(&layer.digest, &layer.media_type, Some(&layer.diff_id))
                        .expect("unpack");
                }
            })
            .0,
        );

        let dest = fresh_dir(work, "skopeo-import");
        let src = format!("oci-archive:{}:bench", archive.display());
        let dst = format!("dir:{}", dest.display());
        skopeo_import.push(time(|| skopeo(&["copy", "--quiet", &src, &dst])).0);

        let data3 = fresh_dir(work, "import-data");
        let store3 = ImageStore::open(&data3).expect("store");
        skiff_import.push(
            time(|| import::import_archive(&store3, &archive, Some("bench:1")).expect("import")).0,
        );
    }
    let manifest = Digest::parse(&image.manifest_digest).expect("manifest digest");

    let (skopeo_pull, skiff_pull) = (median(skopeo_pull), median(skiff_pull));
    let (skopeo_import, skiff_import) = (median(skopeo_import), median(skiff_import));
    let unpack = median(unpack);
    println!(
        "image {} ({}): 3 gzip layers, {files} files, {:.1} MB compressed, {:.1} MB unpacked; median of {runs} runs",
        reference_text,
        manifest.short(),
        mb(compressed),
        mb(unpacked_bytes)
    );
    println!("| figure | skopeo copy (fetch + verify) | skiff (fetch + verify + unpack) |");
    println!("| --- | --- | --- |");
    println!(
        "| pull from a registry on 127.0.0.1 | {:.0} ms ({:.0} MB/s) | {:.0} ms ({:.0} MB/s) |",
        ms(skopeo_pull),
        mb(compressed) / skopeo_pull.as_secs_f64(),
        ms(skiff_pull),
        mb(compressed) / skiff_pull.as_secs_f64()
    );
    println!(
        "| import of an OCI archive | {:.0} ms ({:.0} MB/s) | {:.0} ms ({:.0} MB/s) |",
        ms(skopeo_import),
        mb(compressed) / skopeo_import.as_secs_f64(),
        ms(skiff_import),
        mb(compressed) / skiff_import.as_secs_f64()
    );
    println!(
        "| unpack of the 3 layers (blobs present) | — | {:.0} ms ({:.0} MB/s unpacked, {:.0} files/s) |",
        ms(unpack),
        mb(unpacked_bytes) / unpack.as_secs_f64(),
        files as f64 / unpack.as_secs_f64()
    );
}
