//! Pulls from a real registry (Debian's `docker-registry` on 127.0.0.1) fed with images built
//! here and pushed with `skopeo`: gzip, zstd and uncompressed layers, OCI and Docker schema 2
//! manifests, an image index, whiteouts, layers that try to escape, a corrupted blob, tags and
//! digests, blobs not fetched twice, shared concurrent pulls and basic authentication.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::oci::{self, dir, file, symlink, Compression, Entry};
use common::registry::{free_port, Auth, Registry};
use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::pull::{self, Credentials, Progress, PullOptions};
use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::store::{ImageRecord, ImageStore};
use skiff_runtime::image::ImageError;

/// A node's store in a temporary data dir.
struct Node {
    _dir: tempfile::TempDir,
    store: ImageStore,
}

fn node() -> Node {
    let dir = tempfile::Builder::new()
        .prefix("skiff-pull-test-")
        .tempdir()
        .unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    Node { _dir: dir, store }
}

fn digest(text: &str) -> Digest {
    Digest::parse(text).unwrap()
}

/// Pushes `image` as `<registry>/<name>` (`repo:tag`) from an OCI layout built in a temp dir.
fn push(registry: &Registry, image: &oci::Image, name: &str) {
    let layout = tempfile::tempdir().unwrap();
    oci::write_oci_image(layout.path(), "t", image);
    registry.push_oci(layout.path(), "t", name, None);
}

async fn pull_ref(store: &ImageStore, reference: &str) -> Result<ImageRecord, ImageError> {
    pull_with(store, reference, &PullOptions::default()).await
}

async fn pull_with(
    store: &ImageStore,
    reference: &str,
    options: &PullOptions,
) -> Result<ImageRecord, ImageError> {
    pull::pull(store, &Reference::parse(reference).unwrap(), options).await
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The files of a small two-layer image.
fn app_layers(compression: Compression) -> Vec<oci::Layer> {
    vec![
        oci::layer(
            &[
                dir("bin"),
                file("bin/tool", b"#!/bin/sh\necho tool\n"),
                symlink("bin/alias", "tool"),
            ],
            compression,
        ),
        oci::layer(
            &[dir("etc"), file("etc/motd", b"hello from the top layer\n")],
            compression,
        ),
    ]
}

/// Checks a pulled two-layer app image: its record and its unpacked files.
fn check_app(store: &ImageStore, record: &ImageRecord, image: &oci::Image) {
    assert_eq!(record.id, digest(&image.config_digest));
    assert_eq!(record.layers.len(), 2);
    for (got, built) in record.layers.iter().zip(&image.layers) {
        assert_eq!(got.digest, digest(&built.digest));
        assert_eq!(got.diff_id, digest(&built.diff_id));
        assert_eq!(got.size, built.blob.len() as u64);
    }
    let dirs = store.layer_dirs(record);
    assert_eq!(read(&dirs[0].join("bin/tool")), "#!/bin/sh\necho tool\n");
    assert_eq!(
        std::fs::read_link(dirs[0].join("bin/alias")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        read(&dirs[1].join("etc/motd")),
        "hello from the top layer\n"
    );
    assert_eq!(record.config["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(record.created.as_deref(), Some("2024-01-02T03:04:05Z"));
    assert!(record.size > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gzip_image_by_tag() {
    let registry = Registry::start();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    push(&registry, &image, "team/app:1.0");

    let reference = registry.reference("team/app:1.0");
    let options = PullOptions {
        progress: Progress::Lines,
        ..PullOptions::default()
    };
    let record = pull_with(&node.store, &reference, &options).await.unwrap();
    check_app(&node.store, &record, &image);
    assert_eq!(record.repo_tags, vec![reference.clone()]);
    let by_digest = format!(
        "{}@{}",
        registry.reference("team/app"),
        image.manifest_digest
    );
    assert_eq!(record.repo_digests, vec![by_digest.clone()]);
    assert_eq!(record.manifest_digest, Some(digest(&image.manifest_digest)));

    // The store finds it by tag and by digest, and keeps the manifest's exact bytes.
    let found = node.store.resolve(&reference).unwrap().unwrap();
    assert_eq!(found.id, record.id);
    assert_eq!(
        node.store.resolve(&by_digest).unwrap().unwrap().id,
        record.id
    );
    assert_eq!(
        node.store
            .read_blob(&digest(&image.manifest_digest))
            .unwrap(),
        image.manifest
    );

    // The digest the tag resolves to, without pulling, is the manifest's.
    let resolved = pull::resolve_digest(&Reference::parse(&reference).unwrap(), &options)
        .await
        .unwrap();
    assert_eq!(resolved, digest(&image.manifest_digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn zstd_and_uncompressed_layers() {
    let registry = Registry::start();
    let node = node();
    let mut layers = app_layers(Compression::Zstd);
    layers[1] = oci::layer(
        &[dir("etc"), file("etc/motd", b"hello from the top layer\n")],
        Compression::None,
    );
    let image = oci::image("amd64", layers);
    push(&registry, &image, "zstd:latest");

    // `localhost` is plain HTTP as 127.0.0.1 is.
    let reference = format!(
        "localhost:{}/zstd",
        registry.addr.rsplit(':').next().unwrap()
    );
    let record = pull_ref(&node.store, &reference).await.unwrap();
    check_app(&node.store, &record, &image);
    assert_eq!(record.layers[0].media_type, image.layers[0].media_type);
    assert!(record.layers[0].media_type.ends_with("+zstd"));
    assert_eq!(record.repo_tags, vec![format!("{reference}:latest")]);
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_image() {
    let registry = Registry::start();
    let node = node();
    let image = oci::docker_image(app_layers(Compression::Gzip));
    let layout = tempfile::tempdir().unwrap();
    oci::write_dir_image(layout.path(), &image);
    registry.push_dir(layout.path(), "docker:v2");

    let record = pull_ref(&node.store, &registry.reference("docker:v2"))
        .await
        .unwrap();
    check_app(&node.store, &record, &image);
    assert_eq!(record.manifest_digest, Some(digest(&image.manifest_digest)));
    assert_eq!(record.layers[0].media_type, oci::DOCKER_LAYER_GZIP);
}

#[tokio::test(flavor = "multi_thread")]
async fn index_resolves_to_linux_amd64() {
    let registry = Registry::start();
    let node = node();
    let arm = oci::image(
        "arm64",
        vec![oci::layer(&[file("arch", b"arm64\n")], Compression::Gzip)],
    );
    let amd = oci::image(
        "amd64",
        vec![oci::layer(&[file("arch", b"amd64\n")], Compression::Zstd)],
    );
    let index = oci::index(vec![arm.clone(), amd.clone()]);
    let layout = tempfile::tempdir().unwrap();
    oci::write_oci_index(layout.path(), "multi", &index);
    registry.push_oci(layout.path(), "multi", "multi:1", None);

    let reference = registry.reference("multi:1");
    let record = pull_ref(&node.store, &reference).await.unwrap();
    assert_eq!(record.id, digest(&amd.config_digest));
    assert_eq!(
        read(&node.store.layer_dirs(&record)[0].join("arch")),
        "amd64\n"
    );
    // What `multi@sha256:` pins, and what imagePullPolicy Always compares, is the index.
    assert_eq!(record.manifest_digest, Some(digest(&index.digest)));
    assert_eq!(
        record.repo_digests,
        vec![format!("{}@{}", registry.reference("multi"), index.digest)]
    );
    let resolved = pull::resolve_digest(
        &Reference::parse(&reference).unwrap(),
        &PullOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(resolved, digest(&index.digest));
    // The arm64 image was not fetched.
    assert!(!node.store.has_blob(&digest(&arm.config_digest)));
    assert!(!node.store.has_blob(&digest(&arm.layers[0].digest)));

    // An index without linux/amd64 says so, and what it has.
    let arm_only = oci::index(vec![arm]);
    let layout = tempfile::tempdir().unwrap();
    oci::write_oci_index(layout.path(), "arm", &arm_only);
    registry.push_oci(layout.path(), "arm", "armonly:1", None);
    let err = pull_ref(&node.store, &registry.reference("armonly:1"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ImageError::Pull { .. }) && text.contains("no linux/amd64 image"),
        "{text}"
    );
    assert!(text.contains("linux/arm64"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn whiteouts_over_a_lower_layer() {
    let registry = Registry::start();
    let node = node();
    let lower = oci::layer(
        &[
            dir("a"),
            file("a/gone", b"deleted above\n"),
            file("a/kept", b"kept\n"),
            dir("b"),
            file("b/old", b"hidden by the opaque dir above\n"),
        ],
        Compression::Gzip,
    );
    let upper = oci::layer(
        &[
            dir("a"),
            file("a/.wh.gone", b""),
            dir("b"),
            file("b/.wh..wh..opq", b""),
            file("b/new", b"new\n"),
        ],
        Compression::Gzip,
    );
    let image = oci::image("amd64", vec![lower, upper]);
    push(&registry, &image, "wh:1");

    let record = pull_ref(&node.store, &registry.reference("wh:1"))
        .await
        .unwrap();
    let dirs = node.store.layer_dirs(&record);
    assert_eq!(read(&dirs[0].join("a/gone")), "deleted above\n");
    assert_eq!(
        read(&dirs[0].join("b/old")),
        "hidden by the opaque dir above\n"
    );
    // The upper layer holds overlay whiteouts: a 0/0 character device and an opaque directory.
    let whiteout = std::fs::symlink_metadata(dirs[1].join("a/gone")).unwrap();
    assert!(whiteout.file_type().is_char_device(), "{whiteout:?}");
    assert_eq!(whiteout.rdev(), 0);
    assert!(!dirs[1].join("a/.wh.gone").exists());
    assert!(!dirs[1].join("b/.wh..wh..opq").exists());
    let mut opaque = [0u8; 8];
    let n = rustix::fs::getxattr(dirs[1].join("b"), "trusted.overlay.opaque", &mut opaque).unwrap();
    assert_eq!(&opaque[..n], b"y");
    assert_eq!(read(&dirs[1].join("b/new")), "new\n");
    assert!(!dirs[1].join("a/kept").exists());
}

/// Every file name under `root`, recursively.
fn tree(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            names.push(entry.path().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_that_escape_are_refused() {
    let registry = Registry::start();
    let node = node();
    let outside = tempfile::Builder::new()
        .prefix("skiff-outside-")
        .tempdir()
        .unwrap();
    let marker = format!("skiff-escaped-{}-{}", std::process::id(), free_port());
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        (
            "dotdot",
            vec![Entry::RawFile(
                format!("../../../../../../../../../../../../tmp/{marker}").into_bytes(),
                b"escaped\n".to_vec(),
            )],
        ),
        (
            "absolute",
            vec![Entry::RawFile(
                format!("{}/{marker}", outside.path().display()).into_bytes(),
                b"escaped\n".to_vec(),
            )],
        ),
        (
            "symlink",
            vec![
                symlink("link", &outside.path().display().to_string()),
                file(&format!("link/{marker}"), b"escaped\n"),
            ],
        ),
    ];
    for (name, entries) in cases {
        let evil = oci::layer(&entries, Compression::Gzip);
        let image = oci::image("amd64", vec![evil]);
        push(&registry, &image, &format!("{name}:1"));
        let reference = registry.reference(&format!("{name}:1"));
        let err = pull_ref(&node.store, &reference).await.unwrap_err();
        assert!(
            matches!(err, ImageError::UnsafeLayer { .. }),
            "{name}: {err:?}"
        );
        assert!(node.store.resolve(&reference).unwrap().is_none(), "{name}");
    }
    // Nothing was written outside: not where the paths pointed, not anywhere near the store.
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!Path::new("/").join(&marker).exists());
    assert_eq!(tree(outside.path()), Vec::<String>::new());
    let data_dir = node.store.root().parent().unwrap();
    assert!(!data_dir.parent().unwrap().join(&marker).exists());
    assert!(
        !tree(data_dir).iter().any(|p| p.contains(&marker)),
        "{:?}",
        tree(data_dir)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_blob_fails_clearly_then_pulls_once_fixed() {
    let registry = Registry::start();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    push(&registry, &image, "corrupt:1");

    // Flip a byte of the top layer in the registry's storage: same size, wrong digest.
    let bad_layer = &image.layers[1];
    let data = registry.blob_data(&bad_layer.digest);
    let good = std::fs::read(&data).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&data, &bad).unwrap();

    let reference = registry.reference("corrupt:1");
    let err = pull_ref(&node.store, &reference).await.unwrap_err();
    match &err {
        ImageError::DigestMismatch { digest: d, actual } => {
            assert_eq!(d, &bad_layer.digest);
            assert_eq!(actual, &oci::sha256(&bad));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&bad_layer.digest), "{err}");
    // Nothing half-written: no such blob, no temporary file, no image.
    assert!(!node.store.has_blob(&digest(&bad_layer.digest)));
    // (The store's per-layer unpack lock files may stay; they hold no data.)
    let leftovers: Vec<String> = tree(&node.store.root().join("tmp"))
        .into_iter()
        .filter(|p| !p.ends_with(".lock"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
    assert!(node.store.resolve(&reference).unwrap().is_none());

    std::fs::write(&data, &good).unwrap();
    let record = pull_ref(&node.store, &reference).await.unwrap();
    check_app(&node.store, &record, &image);
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_by_digest() {
    let registry = Registry::start();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    push(&registry, &image, "pinned:1");

    let reference = format!("{}@{}", registry.reference("pinned"), image.manifest_digest);
    let record = pull_ref(&node.store, &reference).await.unwrap();
    check_app(&node.store, &record, &image);
    assert_eq!(record.repo_digests, vec![reference.clone()]);
    assert!(record.repo_tags.is_empty(), "{:?}", record.repo_tags);
    assert_eq!(
        node.store.resolve(&reference).unwrap().unwrap().id,
        record.id
    );

    // A digest the repository does not have is "not found", naming it.
    let missing = format!("{}@sha256:{}", registry.reference("pinned"), "0".repeat(64));
    let err = pull_ref(&node.store, &missing).await.unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn second_pull_fetches_no_blobs() {
    let registry = Registry::start();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    push(&registry, &image, "again:1");
    let reference = registry.reference("again:1");
    let first = pull_ref(&node.store, &reference).await.unwrap();

    // Remove the config and layer blobs from the registry: a pull that fetched any would fail.
    let mut removed = vec![image.config_digest.clone()];
    removed.extend(image.layers.iter().map(|l| l.digest.clone()));
    for d in &removed {
        std::fs::remove_file(registry.blob_data(d)).unwrap();
    }
    let second = pull_ref(&node.store, &reference).await.unwrap();
    assert_eq!(second.id, first.id);
    assert_eq!(second.layers, first.layers);
    // The manifest was asked for twice (the tag may have moved), each blob once.
    registry.settle_log();
    let name = "/v2/again";
    assert_eq!(registry.gets(&format!("{name}/manifests/1")), 2);
    for d in &removed {
        assert_eq!(registry.gets(&format!("{name}/blobs/{d}")), 1, "{d}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_present_blob_whose_layer_is_not_unpacked_is_unpacked_not_fetched() {
    let registry = Registry::start();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    push(&registry, &image, "halfway:1");
    // The bottom layer's blob is in the store (an interrupted pull, say), its layer is not.
    let bottom = &image.layers[0];
    node.store
        .write_blob(
            &digest(&bottom.digest),
            Some(bottom.blob.len() as u64),
            &mut bottom.blob.as_slice(),
        )
        .unwrap();
    assert!(!node.store.layer_dir(&digest(&bottom.diff_id)).exists());

    let record = pull_ref(&node.store, &registry.reference("halfway:1"))
        .await
        .unwrap();
    check_app(&node.store, &record, &image);
    registry.settle_log();
    assert_eq!(
        registry.gets(&format!("/v2/halfway/blobs/{}", bottom.digest)),
        0
    );
    assert_eq!(
        registry.gets(&format!("/v2/halfway/blobs/{}", image.layers[1].digest)),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_share_one_download() {
    let registry = Registry::start();
    let node = node();
    let big: Vec<u8> = (0..4u32 << 20)
        .map(|i| i.wrapping_mul(2_654_435_761) as u8)
        .collect();
    let mut layers = app_layers(Compression::Gzip);
    layers.push(oci::layer(&[file("big", &big)], Compression::Gzip));
    let image = oci::image("amd64", layers);
    push(&registry, &image, "shared:1");

    let reference = registry.reference("shared:1");
    let pulls = (0..4).map(|_| {
        let store = node.store.clone();
        let reference = reference.clone();
        tokio::spawn(async move { pull_ref(&store, &reference).await })
    });
    let records: Vec<ImageRecord> = futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    for record in &records {
        assert_eq!(record.id, digest(&image.config_digest));
    }
    // One manifest request and one request per blob: the four pulls were one.
    registry.settle_log();
    assert_eq!(
        registry.gets("/v2/shared/manifests/1"),
        1,
        "{}",
        registry.log()
    );
    for layer in &image.layers {
        assert_eq!(
            registry.gets(&format!("/v2/shared/blobs/{}", layer.digest)),
            1
        );
    }
    assert_eq!(
        std::fs::read(node.store.layer_dirs(&records[0])[2].join("big")).unwrap(),
        big
    );
}

/// bcrypt (cost 4) of `skiff-test-password`, made once with Debian's python3 (`crypt.crypt`
/// with a `$2b$` salt) so the tests need no htpasswd tool. The registry accepts `$2b$`.
const TEST_PASSWORD: &str = "skiff-test-password";
const TEST_BCRYPT: &str = "$2b$04$cGBjeRgpPeHrnnuw5f3Mb.09N3ofMwqHXudQqEX1Hmk151XGWpZfe";

pub fn auth_registry() -> Registry {
    Registry::start_with(Auth::Htpasswd {
        user: "tester".into(),
        bcrypt: TEST_BCRYPT.into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth() {
    let registry = auth_registry();
    let node = node();
    let image = oci::image("amd64", app_layers(Compression::Gzip));
    let layout = tempfile::tempdir().unwrap();
    oci::write_oci_image(layout.path(), "t", &image);
    registry.push_oci(
        layout.path(),
        "t",
        "private:1",
        Some(&format!("tester:{TEST_PASSWORD}")),
    );
    let reference = registry.reference("private:1");

    let err = pull_ref(&node.store, &reference).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("requires authentication"), "{text}");
    assert!(text.contains("--username"), "{text}");

    let wrong = PullOptions {
        credentials: Some(Credentials {
            username: "tester".into(),
            password: "wrong".into(),
        }),
        ..PullOptions::default()
    };
    let err = pull_with(&node.store, &reference, &wrong)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("refused the credentials of \"tester\""),
        "{err}"
    );
    assert!(node.store.resolve(&reference).unwrap().is_none());

    let right = PullOptions {
        credentials: Some(Credentials {
            username: "tester".into(),
            password: TEST_PASSWORD.into(),
        }),
        ..PullOptions::default()
    };
    let record = pull_with(&node.store, &reference, &right).await.unwrap();
    check_app(&node.store, &record, &image);
    let resolved = pull::resolve_digest(&Reference::parse(&reference).unwrap(), &right)
        .await
        .unwrap();
    assert_eq!(resolved, digest(&image.manifest_digest));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_what_to_fix() {
    let registry = Registry::start();
    let node = node();

    let err = pull_ref(&node.store, &registry.reference("nothing/here:7"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ImageError::Pull { .. }), "{err:?}");
    assert!(
        text.contains("not found") && text.contains("nothing/here:7"),
        "{text}"
    );

    // Nothing listens on this port: the message names the address.
    let port = free_port();
    let err = pull_ref(&node.store, &format!("127.0.0.1:{port}/x:1"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot connect") && text.contains(&format!("http://127.0.0.1:{port}")),
        "{text}"
    );
    // The node's store is untouched by failed pulls.
    assert!(node.store.list().unwrap().is_empty());
}
