//! `skiff image import`: the project's test images (docker save archives built by
//! scripts/build-test-images.sh), OCI image layouts (a directory, a .tar.gz with a nested index,
//! skopeo's oci-archive), root filesystems from a directory and a tar, and bad archives, each a
//! clear error that records nothing.

mod test_images;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::import::{import_archive, import_rootfs, RootfsOptions};
use skiff_runtime::image::store::{ImageRecord, ImageStore};
use skiff_runtime::image::ImageError;
use test_images::{docker_manifest, read_tar, sha256_hex, write_tar};

fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open store");
    (dir, store)
}

fn only(mut records: Vec<ImageRecord>) -> ImageRecord {
    assert_eq!(records.len(), 1, "one image: {records:?}");
    records.remove(0)
}

/// The config's file and digest as the archive's manifest.json names it.
fn archive_config_id(archive: &Path) -> String {
    let files = read_tar(archive);
    let manifest = docker_manifest(&files);
    let config = manifest[0]["Config"].as_str().expect("Config");
    format!("sha256:{}", sha256_hex(&files[config]))
}

#[test]
fn the_script_is_reproducible() {
    let a = test_images::build();
    let b = test_images::build();
    for (x, y) in [(&a.busybox, &b.busybox), (&a.kubia, &b.kubia)] {
        assert_eq!(
            std::fs::read(x).expect("read"),
            std::fs::read(y).expect("read"),
            "{} differs between two builds",
            x.display()
        );
    }
}

#[test]
fn busybox_and_kubia_import_and_share_their_base_layer() {
    let images = test_images::build();
    let (_dir, store) = new_store();

    let busybox = only(import_archive(&store, &images.busybox, None).expect("import busybox"));
    assert_eq!(busybox.repo_tags, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(busybox.id.to_string(), archive_config_id(&images.busybox));
    assert_eq!(busybox.layers.len(), 1);
    assert_eq!(busybox.config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(busybox.config["os"], "linux");
    assert_eq!(busybox.config["architecture"], "amd64");
    let base = store.layer_dir(&busybox.layers[0].diff_id);
    let busybox_binary = base.join("bin/busybox");
    assert!(
        busybox_binary.is_file(),
        "{} unpacked",
        busybox_binary.display()
    );
    assert_eq!(
        std::fs::read_link(base.join("bin/sh")).expect("sh link"),
        Path::new("busybox")
    );
    let tmp = std::fs::metadata(base.join("tmp")).expect("tmp");
    assert_eq!(tmp.mode() & 0o7777, 0o1777, "/tmp keeps its sticky bit");
    let inode = std::fs::metadata(&busybox_binary).expect("stat").ino();
    // A manifest was made for it and stored, as for any image.
    let manifest_digest = busybox.manifest_digest.clone().expect("manifest digest");
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&manifest_digest).expect("manifest blob"))
            .expect("manifest JSON");
    assert_eq!(manifest["config"]["digest"], busybox.id.to_string());
    assert_eq!(
        manifest["layers"][0]["digest"],
        busybox.layers[0].digest.to_string()
    );

    let kubia = only(import_archive(&store, &images.kubia, None).expect("import kubia"));
    assert_eq!(kubia.repo_tags, vec!["docker.io/luksa/kubia:latest"]);
    assert_eq!(kubia.id.to_string(), archive_config_id(&images.kubia));
    assert_eq!(kubia.layers.len(), 2);
    assert_eq!(
        kubia.layers[0], busybox.layers[0],
        "the base layer is shared"
    );
    assert_eq!(
        std::fs::metadata(&busybox_binary).expect("stat").ino(),
        inode,
        "the base layer was not unpacked again"
    );
    let app = store.layer_dir(&kubia.layers[1].diff_id);
    let cgi = app.join("www/cgi-bin/index.cgi");
    assert_eq!(std::fs::metadata(&cgi).expect("cgi").mode() & 0o777, 0o755);
    assert!(std::fs::read_to_string(&cgi)
        .expect("cgi")
        .contains("You've hit"));
    let config = &kubia.config["config"];
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/httpd", "-f", "-v", "-p", "8080", "-h", "/www"])
    );
    assert!(
        kubia.size > busybox.size,
        "sizes: {} {}",
        kubia.size,
        busybox.size
    );

    // Found by the name the seed's pod uses, by id, and listed once each.
    let found = store
        .resolve("luksa/kubia")
        .expect("resolve")
        .expect("kubia");
    assert_eq!(found.id, kubia.id);
    assert_eq!(
        store
            .resolve(busybox.id.short())
            .expect("resolve")
            .expect("by id")
            .id,
        busybox.id
    );
    // Importing again gives the same image, nothing new.
    let again = only(import_archive(&store, &images.kubia, None).expect("import again"));
    assert_eq!(again.id, kubia.id);
    assert_eq!(store.list().expect("list").len(), 2);
}

#[test]
fn a_tag_renames_the_only_image() {
    let images = test_images::build();
    let (_dir, store) = new_store();
    let record = only(import_archive(&store, &images.busybox, Some("mybox:1")).expect("import"));
    assert_eq!(record.repo_tags, vec!["docker.io/library/mybox:1"]);
    assert!(store.resolve("mybox:1").expect("resolve").is_some());
    assert!(store.resolve("busybox").expect("resolve").is_none());
}

/// An OCI image layout of the kubia image: gzip layers, a nested index with an arm64 entry
/// (never read: its blobs are absent) and the amd64 one, the outer entry named by annotation.
fn write_oci_layout(kubia: &Path, out: &Path, name: &str) -> (String, String) {
    let files = read_tar(kubia);
    let manifest = docker_manifest(&files);
    let config = files[manifest[0]["Config"].as_str().expect("Config")].clone();
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut layers = Vec::new();
    for layer in manifest[0]["Layers"].as_array().expect("Layers") {
        let tar = &files[layer.as_str().expect("layer")];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).expect("gzip");
        let (digest, size) = put(&gz.finish().expect("gzip"));
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": size,
        }));
    }
    let (config_digest, config_size) = put(&config);
    let image_manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": layers,
    }))
    .expect("json");
    let (manifest_digest, manifest_size) = put(&image_manifest);
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": format!("sha256:{}", "ab".repeat(32)), "size": 1234,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": manifest_digest, "size": manifest_size,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .expect("json");
    let (index_digest, index_size) = put(&nested);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }],
    });
    std::fs::write(
        out.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    (config_digest, manifest_digest)
}

/// A .tar.gz of a directory, its entries in reverse order (an importer may not rely on order).
fn tar_gz_dir(dir: &Path, out: &Path) {
    let mut names: Vec<String> = Vec::new();
    for entry in walk(dir) {
        names.push(entry);
    }
    names.reverse();
    let file = std::fs::File::create(out).expect("create");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for name in names {
        builder
            .append_path_with_name(dir.join(&name), &name)
            .expect("append");
    }
    builder.into_inner().expect("tar").finish().expect("gzip");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn oci_layouts_import_as_a_directory_and_as_a_tar_gz() {
    let images = test_images::build();
    let layout = images.dir.path().join("layout");
    let (config_digest, manifest_digest) =
        write_oci_layout(&images.kubia, &layout, "localhost:5000/demo/kubia:oci");

    let (_dir, store) = new_store();
    let record = only(import_archive(&store, &layout, None).expect("import the directory"));
    assert_eq!(record.id.to_string(), config_digest);
    assert_eq!(record.repo_tags, vec!["localhost:5000/demo/kubia:oci"]);
    assert_eq!(
        record.manifest_digest.as_ref().map(|d| d.to_string()),
        Some(manifest_digest.clone())
    );
    assert_eq!(record.layers.len(), 2);
    assert!(record.layers[0].media_type.ends_with("+gzip"));
    assert_ne!(record.layers[0].digest, record.layers[0].diff_id);
    assert!(store
        .layer_dir(&record.layers[0].diff_id)
        .join("bin/busybox")
        .is_file());

    // The same layout as a .tar.gz in another store, plus the docker save of kubia: the
    // diff ids (uncompressed layers) agree.
    let archive = images.dir.path().join("layout.tar.gz");
    tar_gz_dir(&layout, &archive);
    let (_dir2, store2) = new_store();
    let from_tar = only(import_archive(&store2, &archive, None).expect("import the tar.gz"));
    assert_eq!(from_tar.id, record.id);
    assert_eq!(from_tar.layers, record.layers);
    let docker = only(import_archive(&store2, &images.kubia, None).expect("docker save"));
    assert_eq!(docker.id, record.id, "the same config, the same image id");
    let diff = |r: &ImageRecord| {
        r.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(diff(&docker), diff(&record));
}

#[test]
fn an_oci_ref_name_that_is_only_a_tag_takes_the_given_tag() {
    let images = test_images::build();
    let layout = images.dir.path().join("layout");
    write_oci_layout(&images.kubia, &layout, "v1");
    let (_dir, store) = new_store();
    let record = only(import_archive(&store, &layout, None).expect("import"));
    assert!(
        record.repo_tags.is_empty(),
        "a bare tag names no repository"
    );
    let (_dir2, store2) = new_store();
    let tagged = only(import_archive(&store2, &layout, Some("kubia:v1")).expect("import"));
    assert_eq!(tagged.repo_tags, vec!["docker.io/library/kubia:v1"]);
}

#[test]
fn skopeos_oci_archive_imports() {
    let images = test_images::build();
    let out = images.dir.path().join("kubia-oci.tar");
    let status = std::process::Command::new("skopeo")
        .arg("copy")
        .arg(format!("docker-archive:{}", images.kubia.display()))
        .arg(format!("oci-archive:{}:luksa/kubia:skopeo", out.display()))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run skopeo (Debian package skopeo; scripts/test.sh installs it)");
    assert!(status.success(), "skopeo copy failed");
    let (_dir, store) = new_store();
    let record = only(import_archive(&store, &out, None).expect("import"));
    assert_eq!(record.repo_tags, vec!["docker.io/luksa/kubia:skopeo"]);
    assert_eq!(record.layers.len(), 2);
    assert!(store
        .layer_dir(&record.layers[1].diff_id)
        .join("www/cgi-bin/index.cgi")
        .is_file());
}

/// Docker 25+ writes an OCI layout and a manifest.json pointing into it; when index.json names
/// the image only by a bare tag, manifest.json's RepoTags name it. Classic docker save links a
/// repeated layer's `layer.tar` to the first copy: links are followed.
#[test]
fn docker_25_layouts_and_linked_layers_import() {
    let images = test_images::build();
    let layout = images.dir.path().join("layout");
    write_oci_layout(&images.kubia, &layout, "latest");
    let files = read_tar(&images.kubia);
    let manifest = docker_manifest(&files);
    let config_name = manifest[0]["Config"].as_str().expect("Config");
    let config_hex = sha256_hex(&files[config_name]);
    let docker_manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{config_hex}"),
        "RepoTags": ["luksa/kubia:docker25"],
        "Layers": [],
    }]);
    std::fs::write(
        layout.join("manifest.json"),
        serde_json::to_vec(&docker_manifest).expect("json"),
    )
    .expect("manifest.json");
    let (_dir, store) = new_store();
    let record = only(import_archive(&store, &layout, None).expect("import"));
    assert_eq!(record.repo_tags, vec!["docker.io/luksa/kubia:docker25"]);
    assert_eq!(record.id.to_string(), format!("sha256:{config_hex}"));

    // A classic archive whose second image repeats the base layer through a symlink.
    let base = manifest[0]["Layers"][0]
        .as_str()
        .expect("layer")
        .to_string();
    let path = images.dir.path().join("linked.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&path).expect("create"));
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    builder
        .append_link(&mut link, "dup/layer.tar", format!("../{base}"))
        .expect("symlink");
    let mut two = manifest.clone();
    two[0]["Layers"][0] = serde_json::json!("dup/layer.tar");
    two[0]["RepoTags"] = serde_json::json!(["linked:1"]);
    let mut with_manifest = files.clone();
    with_manifest.insert(
        "manifest.json".into(),
        serde_json::to_vec(&two).expect("json"),
    );
    for (name, bytes) in &with_manifest {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .expect("append");
    }
    builder.finish().expect("finish");
    drop(builder);
    let (_dir2, store2) = new_store();
    let linked = only(import_archive(&store2, &path, None).expect("import linked"));
    assert_eq!(linked.repo_tags, vec!["docker.io/library/linked:1"]);
    assert_eq!(linked.id, record.id);
}

/// Asserts an import failed with a `BadArchive` whose message contains `needle`, and that the
/// store recorded nothing.
fn assert_bad(store: &ImageStore, result: Result<Vec<ImageRecord>, ImageError>, needle: &str) {
    match result {
        Err(e @ ImageError::BadArchive { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            );
        }
        other => panic!("expected BadArchive mentioning {needle:?}, got {other:?}"),
    }
    assert!(store.list().expect("list").is_empty(), "nothing recorded");
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let (dir, store) = new_store();
    let missing = dir.path().join("no-such.tar");
    let error = import_archive(&store, &missing, None).expect_err("missing file");
    match &error {
        ImageError::Io { source, path, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            assert!(path.contains("no-such.tar"));
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(error.to_string().contains("no-such.tar"), "{error}");
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn bad_archives_are_refused_and_record_nothing() {
    let images = test_images::build();
    let (dir, store) = new_store();

    let text = dir.path().join("notes.tar");
    std::fs::write(
        &text,
        "these are not the droids you are looking for\n".repeat(40),
    )
    .expect("write");
    assert_bad(&store, import_archive(&store, &text, None), "not a tar");

    let no_manifest = dir.path().join("no-manifest.tar");
    write_tar(
        &no_manifest,
        &BTreeMap::from([("hello.txt".to_string(), b"hi".to_vec())]),
    );
    assert_bad(
        &store,
        import_archive(&store, &no_manifest, None),
        "manifest.json",
    );

    let files = read_tar(&images.kubia);
    let manifest = docker_manifest(&files);
    let app_layer = manifest[0]["Layers"][1]
        .as_str()
        .expect("layer")
        .to_string();

    let mut missing_layer = files.clone();
    missing_layer.remove(&app_layer);
    let path = dir.path().join("missing-layer.tar");
    write_tar(&path, &missing_layer);
    assert_bad(&store, import_archive(&store, &path, None), &app_layer);

    let mut corrupt = files.clone();
    let layer = corrupt.get_mut(&app_layer).expect("layer");
    // A byte of the CGI script's text changed: still a valid tar, but not the diff id.
    let at = layer
        .windows(10)
        .position(|w| w == b"You've hit")
        .expect("script text");
    layer[at] = b'Y' ^ 0x20;
    let path = dir.path().join("corrupt-layer.tar");
    write_tar(&path, &corrupt);
    let result = import_archive(&store, &path, None);
    assert_bad(&store, result, &app_layer);
    let message = import_archive(&store, &path, None)
        .expect_err("corrupt")
        .to_string();
    assert!(message.contains("does not match"), "{message}");

    // A config edited after the fact no longer matches the digest it is named by.
    let mut edited = files.clone();
    let config_name = manifest[0]["Config"].as_str().expect("Config").to_string();
    let config = edited.get_mut(&config_name).expect("config");
    let text = String::from_utf8(config.clone()).expect("utf-8");
    *config = text.replace("8080", "8081").into_bytes();
    let path = dir.path().join("edited-config.tar");
    write_tar(&path, &edited);
    assert_bad(&store, import_archive(&store, &path, None), &config_name);

    // The diff ids of the config must match the layers listed.
    let mut short = files.clone();
    let mut m = manifest.clone();
    m[0]["Layers"].as_array_mut().expect("layers").pop();
    short.insert(
        "manifest.json".into(),
        serde_json::to_vec(&m).expect("json"),
    );
    let path = dir.path().join("layer-count.tar");
    write_tar(&path, &short);
    assert_bad(&store, import_archive(&store, &path, None), "diff_ids");

    // A gzip of a non-tar.
    let path = dir.path().join("garbage.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(&[7u8; 3000]).expect("write");
    gz.finish().expect("finish");
    assert_bad(&store, import_archive(&store, &path, None), "not a tar");
}

/// A small root filesystem with every kind of entry a layer keeps.
fn make_rootfs(dir: &Path) {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    std::fs::create_dir_all(dir.join("bin")).expect("bin");
    std::fs::create_dir_all(dir.join("etc")).expect("etc");
    std::fs::create_dir_all(dir.join("dev")).expect("dev");
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("busybox");
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).expect("symlink");
    std::fs::hard_link(dir.join("bin/busybox"), dir.join("bin/busybox-hard")).expect("hard link");
    std::fs::write(dir.join("etc/motd"), "hello\n").expect("motd");
    std::fs::set_permissions(
        dir.join("etc/motd"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .expect("chmod");
    std::os::unix::fs::chown(dir.join("etc/motd"), Some(1234), Some(5678)).expect("chown");
    mknodat(
        CWD,
        dir.join("dev/null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod");
    mknodat(
        CWD,
        dir.join("dev/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    // trusted.* works on tmpfs and on disk file systems, as root.
    rustix::fs::lsetxattr(
        dir.join("etc/motd"),
        "trusted.skiff-test",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("setxattr");
}

/// What a test checks of one entry of a layer blob.
struct LayerEntry {
    kind: tar::EntryType,
    uid: u64,
    mode: u32,
    link: String,
    device: (u32, u32),
    xattr: Option<Vec<u8>>,
}

/// The entries of a layer blob by name, in archive order.
fn layer_entries(blob: &[u8]) -> Vec<(String, LayerEntry)> {
    let mut archive = tar::Archive::new(blob);
    let mut out = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let mut xattr = None;
        if let Some(pax) = entry.pax_extensions().expect("pax") {
            for ext in pax {
                let ext = ext.expect("pax ext");
                if ext.key().expect("key") == "SCHILY.xattr.trusted.skiff-test" {
                    xattr = Some(ext.value_bytes().to_vec());
                }
            }
        }
        let header = entry.header();
        let link = entry
            .link_name()
            .expect("link")
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let device = (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        );
        out.push((
            entry
                .path()
                .expect("path")
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
            LayerEntry {
                kind: header.entry_type(),
                uid: header.uid().expect("uid"),
                mode: header.mode().expect("mode"),
                link,
                device,
                xattr,
            },
        ));
    }
    out
}

#[test]
fn a_root_filesystem_directory_becomes_a_reproducible_one_layer_image() {
    let (dir, store) = new_store();
    let rootfs = dir.path().join("rootfs");
    make_rootfs(&rootfs);
    let options = RootfsOptions {
        tag: "myapp:1.0".into(),
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo hi".into()],
        env: vec!["PATH=/bin".into(), "GREETING=hello".into()],
        workdir: Some("/etc".into()),
    };
    let record = import_rootfs(&store, &rootfs, &options).expect("import rootfs");
    assert_eq!(record.repo_tags, vec!["docker.io/library/myapp:1.0"]);
    assert_eq!(record.layers.len(), 1);
    let layer = &record.layers[0];
    assert_eq!(layer.digest, layer.diff_id, "one uncompressed layer");
    let config = &record.config;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["echo hi"]));
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/bin", "GREETING=hello"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/etc");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([layer.diff_id.to_string()])
    );
    // The image id is the config's digest; the manifest is an OCI manifest blob.
    let config_blob = store.read_blob(&record.id).expect("config blob");
    assert_eq!(Digest::of(&config_blob), record.id);
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .read_blob(record.manifest_digest.as_ref().expect("manifest"))
            .expect("manifest blob"),
    )
    .expect("json");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["layers"][0]["digest"], layer.digest.to_string());
    assert!(store.resolve("myapp:1.0").expect("resolve").is_some());

    // The layer keeps ownership, modes, links, devices and xattrs.
    let list = layer_entries(&store.read_blob(&layer.digest).expect("layer blob"));
    let names: Vec<&String> = list.iter().map(|(name, _)| name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted names");
    let entries: BTreeMap<String, LayerEntry> = list.into_iter().collect();
    let motd = &entries["etc/motd"];
    assert_eq!((motd.uid, motd.mode & 0o7777), (1234, 0o640));
    assert_eq!(motd.xattr.as_deref(), Some(&b"kept"[..]));
    assert_eq!(entries["bin/sh"].kind, tar::EntryType::Symlink);
    assert_eq!(entries["bin/sh"].link, "busybox");
    let (first, second) = ("bin/busybox", "bin/busybox-hard");
    assert_eq!(entries[first].kind, tar::EntryType::Regular);
    assert_eq!(entries[second].kind, tar::EntryType::Link);
    assert_eq!(entries[second].link, first);
    assert_eq!(entries["dev/null"].kind, tar::EntryType::Char);
    assert_eq!(entries["dev/null"].device, (1, 3));
    assert_eq!(entries["dev/fifo"].kind, tar::EntryType::Fifo);

    // Unpacked in the store.
    let unpacked = store.layer_dir(&layer.diff_id);
    assert!(unpacked.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::metadata(unpacked.join("bin/busybox"))
            .expect("stat")
            .ino(),
        std::fs::metadata(unpacked.join("bin/busybox-hard"))
            .expect("stat")
            .ino()
    );

    let motd = unpacked.join("etc/motd");
    let mut value = [0u8; 16];
    let len = rustix::fs::lgetxattr(&motd, "trusted.skiff-test", &mut value[..]).expect("xattr");
    assert_eq!(&value[..len], b"kept");
    assert_eq!(std::fs::metadata(&motd).expect("stat").uid(), 1234);

    // The same directory and options give the same image in another store.
    let (_dir2, store2) = new_store();
    let again = import_rootfs(&store2, &rootfs, &options).expect("import again");
    assert_eq!(again.id, record.id);
}

#[test]
fn a_root_filesystem_tar_becomes_an_image() {
    let (dir, store) = new_store();
    let rootfs = dir.path().join("rootfs");
    make_rootfs(&rootfs);
    let tar_path = dir.path().join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .args([
            "--create",
            "--xattrs",
            "--xattrs-include=trusted.*",
            "--file",
        ])
        .arg(&tar_path)
        .arg("-C")
        .arg(&rootfs)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    let plain = std::fs::read(&tar_path).expect("read tar");
    let gz_path = dir.path().join("rootfs.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz_path).expect("create"),
        flate2::Compression::fast(),
    );
    gz.write_all(&plain).expect("gzip");
    gz.finish().expect("gzip");

    let options = RootfsOptions {
        tag: "registry.example.com/team/app".into(),
        entrypoint: vec!["/bin/busybox".into(), "sh".into()],
        env: vec!["A=1".into()],
        ..RootfsOptions::default()
    };
    let record = import_rootfs(&store, &gz_path, &options).expect("import tar.gz");
    assert_eq!(
        record.repo_tags,
        vec!["registry.example.com/team/app:latest"]
    );
    // The layer is the decompressed tar, byte for byte.
    assert_eq!(record.layers[0].diff_id.hex(), sha256_hex(&plain));
    assert_eq!(
        record.config["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox", "sh"])
    );
    assert_eq!(record.config["config"]["Env"], serde_json::json!(["A=1"]));
    assert!(record.config["config"].get("Cmd").is_none());
    let unpacked = store.layer_dir(&record.layers[0].diff_id);
    assert!(unpacked.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(unpacked.join("bin/sh")).expect("link"),
        Path::new("busybox")
    );

    // The plain tar gives the same image.
    let (_dir2, store2) = new_store();
    let plain_record = import_rootfs(&store2, &tar_path, &options).expect("import tar");
    assert_eq!(plain_record.id, record.id);

    // Not a tar, and a missing path: clear errors, nothing recorded.
    let (dir3, store3) = new_store();
    let junk = dir3.path().join("junk.tar");
    std::fs::write(&junk, vec![b'x'; 2048]).expect("write");
    let error = import_rootfs(&store3, &junk, &options).expect_err("junk");
    assert!(matches!(error, ImageError::BadArchive { .. }), "{error:?}");
    let error = import_rootfs(&store3, &dir3.path().join("nope"), &options).expect_err("missing");
    assert!(error.to_string().contains("nope"), "{error}");
    assert!(store3.list().expect("list").is_empty());
    let mut bytes = Vec::new();
    std::fs::File::open(&tar_path)
        .expect("open")
        .read_to_end(&mut bytes)
        .expect("read");
    assert_eq!(bytes, plain, "the source is left alone");
}
