//! Overlay root filesystems: layers merged top first, writes to the container's upper
//! directory only, one layer and many layers (past the one-page limit of mount options), and
//! nothing left behind (no mount in /proc/self/mountinfo, no directory) after `remove` or drop.
//! The kubia test image imported and run for real in its own namespaces.

mod test_images;

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_runtime::image::digest::Digest;
use skiff_runtime::image::import::import_archive;
use skiff_runtime::image::rootfs::RootFs;
use skiff_runtime::image::store::{ImageRecord, ImageStore, LayerRecord};

/// Whether anything is mounted at `path`, by /proc/self/mountinfo (field 5, octal escapes).
fn is_mount_point(path: &Path) -> bool {
    let wanted = path.to_str().expect("utf-8 path").replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// An image record over layers made by hand in the store: `layers[i]` lists (path, contents)
/// of layer i, bottom first.
fn handmade_image(store: &ImageStore, layers: &[Vec<(&str, String)>]) -> ImageRecord {
    let mut records = Vec::new();
    for (i, files) in layers.iter().enumerate() {
        let diff_id = Digest::of(format!("handmade layer {i}").as_bytes());
        let dir = store.layer_dir(&diff_id);
        std::fs::create_dir_all(&dir).expect("layer dir");
        for (path, contents) in files {
            let file = dir.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(&file, contents).expect("write");
        }
        records.push(LayerRecord {
            digest: diff_id.clone(),
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            size: 0,
            diff_id,
        });
    }
    ImageRecord {
        id: Digest::of(b"handmade config"),
        manifest_digest: None,
        repo_tags: vec![],
        repo_digests: vec![],
        config: serde_json::json!({}),
        layers: records,
        size: 0,
        created: None,
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn layers_merge_top_first_and_writes_go_to_the_upper_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let image = handmade_image(
        &store,
        &[
            vec![("a", "bottom a".into()), ("b", "bottom b".into())],
            vec![("a", "top a".into()), ("sub/c", "top c".into())],
        ],
    );
    let bottom = store.layer_dir(&image.layers[0].diff_id);
    let top = store.layer_dir(&image.layers[1].diff_id);
    let container = dir.path().join("containers/one");
    let rootfs = RootFs::create(&store, &image, &container).expect("create");
    assert_eq!(rootfs.merged, container.join("merged"));
    assert_eq!(rootfs.dir(), container);
    assert!(is_mount_point(&rootfs.merged));

    assert_eq!(read(rootfs.merged.join("a")), "top a");
    assert_eq!(read(rootfs.merged.join("b")), "bottom b");
    assert_eq!(read(rootfs.merged.join("sub/c")), "top c");

    std::fs::write(rootfs.merged.join("new"), "written").expect("write new");
    std::fs::write(rootfs.merged.join("b"), "changed b").expect("change b");
    std::fs::remove_file(rootfs.merged.join("a")).expect("delete a");
    assert_eq!(read(container.join("upper/new")), "written");
    assert_eq!(read(container.join("upper/b")), "changed b");
    assert_eq!(read(bottom.join("b")), "bottom b", "the layer is untouched");
    assert_eq!(read(top.join("a")), "top a", "the layer is untouched");
    assert_eq!(read(bottom.join("a")), "bottom a");
    assert!(!bottom.join("new").exists() && !top.join("new").exists());
    assert!(!rootfs.merged.join("a").exists());

    let merged = rootfs.merged.clone();
    rootfs.remove().expect("remove");
    assert!(!is_mount_point(&merged), "unmounted");
    assert!(!container.exists(), "deleted");
    assert!(
        bottom.join("b").exists() && top.join("a").exists(),
        "layers stay"
    );
}

#[test]
fn one_layer_and_drop_clean_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let image = handmade_image(&store, &[vec![("only", "one".into())]]);
    let container = dir.path().join("c");
    let merged = {
        let rootfs = RootFs::create(&store, &image, &container).expect("create");
        assert_eq!(read(rootfs.merged.join("only")), "one");
        rootfs.merged.clone()
    };
    assert!(!is_mount_point(&merged), "drop unmounted");
    assert!(!container.exists(), "drop deleted");
}

#[test]
fn many_layers_under_a_long_path_still_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    // ~230 bytes of data dir: 120 lowerdirs of ~330 bytes each are far over one page.
    let data_dir = dir
        .path()
        .join("a-rather-long-directory-name-for-a-data-dir".repeat(2))
        .join("and-another-level-below-it-to-make-the-layer-paths-long".repeat(2));
    let store = ImageStore::open(&data_dir).expect("store");
    let layers: Vec<Vec<(&str, String)>> = (0..120)
        .map(|i| vec![("shared", format!("layer {i}")), ("mark", format!("{i}"))])
        .collect();
    let mut image = handmade_image(&store, &layers);
    for (i, layer) in image.layers.iter().enumerate() {
        std::fs::write(store.layer_dir(&layer.diff_id).join(format!("f{i}")), "x").expect("write");
    }
    let rootfs = RootFs::create(&store, &image, &data_dir.join("containers/many")).expect("create");
    assert_eq!(
        read(rootfs.merged.join("shared")),
        "layer 119",
        "the top layer wins"
    );
    for i in 0..120 {
        assert!(
            rootfs.merged.join(format!("f{i}")).exists(),
            "file of layer {i}"
        );
    }
    let merged = rootfs.merged.clone();
    rootfs.remove().expect("remove");
    assert!(!is_mount_point(&merged));

    // Past what even short paths allow, a clear error and nothing left behind.
    let too_many: Vec<Vec<(&str, String)>> = (0..300).map(|_| Vec::new()).collect();
    image = handmade_image(&store, &too_many);
    let container = data_dir.join("containers/too-many");
    let error = RootFs::create(&store, &image, &container).expect_err("too many layers");
    assert!(error.to_string().contains("300 layers"), "{error}");
    assert!(!container.exists());
}

#[test]
fn an_existing_dir_or_a_missing_layer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let image = handmade_image(&store, &[vec![("x", "x".into())]]);
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    let error = RootFs::create(&store, &image, &existing).expect_err("exists");
    assert!(error.to_string().contains("existing"), "{error}");
    assert!(
        existing.exists(),
        "a directory it did not create is left alone"
    );

    let mut missing = image.clone();
    missing.layers[0].diff_id = Digest::of(b"never unpacked");
    let container = dir.path().join("c");
    let error = RootFs::create(&store, &missing, &container).expect_err("missing layer");
    assert!(error.to_string().contains("not unpacked"), "{error}");
    assert!(!container.exists());
}

#[test]
fn kubia_runs_from_its_root_filesystem() {
    let images = test_images::build();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    import_archive(&store, &images.kubia, None).expect("import kubia");
    let kubia = store
        .resolve("luksa/kubia")
        .expect("resolve")
        .expect("kubia");
    let container = dir.path().join("containers/kubia");
    let rootfs = RootFs::create(&store, &kubia, &container).expect("create");
    assert!(rootfs.merged.join("bin/busybox").is_file());
    assert!(rootfs.merged.join("www/cgi-bin/index.cgi").is_file());

    std::fs::write(rootfs.merged.join("tmp/scratch"), "x").expect("write");
    assert!(container.join("upper/tmp/scratch").is_file());
    for layer in store.layer_dirs(&kubia) {
        assert!(
            !layer.join("tmp/scratch").exists(),
            "the layers are untouched"
        );
    }

    // Run the image's entrypoint in new pid, network, UTS and mount namespaces, chrooted into
    // the root filesystem, and ask it from inside the same network namespace. When the shell
    // (pid 1 there) exits, the kernel ends httpd; `timeout` bounds the whole run.
    let entrypoint: Vec<String> = kubia.config["config"]["Entrypoint"]
        .as_array()
        .expect("Entrypoint")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect();
    let script = format!(
        "hostname kubia-test && ip link set lo up && {{ {} 2>/dev/null & }} && \
         i=0; while [ $i -lt 100 ]; do wget -q -O- http://127.0.0.1:8080/ && exit 0; \
         i=$((i+1)); sleep 0.1; done; exit 1",
        entrypoint.join(" ")
    );
    let output = Command::new("timeout")
        .args([
            "-s",
            "KILL",
            "60",
            "unshare",
            "--kill-child",
            "--pid",
            "--fork",
        ])
        .args(["--net", "--uts", "--mount", "sh", "-c"])
        .arg(r#"mount --rbind /dev "$1/dev" && exec chroot "$1" /bin/sh -c "$2""#)
        .args(["sh"])
        .arg(&rootfs.merged)
        .arg(&script)
        .output()
        .expect("run unshare");
    assert!(
        output.status.success(),
        "kubia did not answer: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "You've hit kubia-test\n"
    );

    let merged = rootfs.merged.clone();
    rootfs.remove().expect("remove");
    assert!(!is_mount_point(&merged));
    assert!(!container.exists());
}
