//! `skiff image` as a user runs it: the project's two test images built by
//! `scripts/build-test-images.sh`, imported, listed, inspected, removed and pruned on a data
//! dir of the test's own; and clear errors for a missing file, a bad archive, an unknown image.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use skiff_e2e::{assert_exit_code, assert_success, run, skiff_bin, stderr, stdout, workspace_root};

/// A data dir and the test images, removed when dropped.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("skiff-image-cli-")
            .tempdir()
            .expect("temporary directory");
        let mut build = Command::new(workspace_root().join("scripts/build-test-images.sh"));
        build.arg(dir.path().join("images-out"));
        assert_success(&run(build, None), "scripts/build-test-images.sh");
        Node { dir }
    }

    fn archive(&self, name: &str) -> PathBuf {
        self.dir.path().join("images-out").join(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn image(&self, args: &[&str]) -> Output {
        let mut command = Command::new(skiff_bin());
        command
            .arg("image")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args);
        run(command, None)
    }

    fn image_ok(&self, args: &[&str]) -> String {
        let output = self.image(args);
        assert_success(&output, &format!("skiff image {}", args.join(" ")));
        stdout(&output)
    }

    fn import_both(&self) {
        let busybox = self.archive("busybox.tar");
        let kubia = self.archive("kubia.tar");
        let out = self.image_ok(&[
            "import",
            busybox.to_str().expect("utf-8 path"),
            kubia.to_str().expect("utf-8 path"),
        ]);
        assert_eq!(
            out,
            "Loaded image: docker.io/library/busybox:latest\n\
             Loaded image: docker.io/luksa/kubia:latest\n"
        );
    }

    /// The rows of `skiff image ls`, split into columns, header first.
    fn ls(&self) -> Vec<Vec<String>> {
        self.image_ok(&["ls"])
            .lines()
            .map(|line| {
                // Columns are separated by at least three spaces; "IMAGE ID" holds one.
                line.split("   ")
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    fn inspect(&self, name: &str) -> Value {
        let out = self.image_ok(&["inspect", name]);
        let records: Value = serde_json::from_str(&out).expect("inspect prints JSON");
        records[0].clone()
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn import_list_inspect_remove_and_prune_the_test_images() {
    let node = Node::new();
    node.import_both();

    let rows = node.ls();
    assert_eq!(rows[0], ["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
    assert_eq!(rows.len(), 3, "two images: {rows:?}");
    assert_eq!(rows[1][0..2], ["docker.io/library/busybox", "latest"]);
    assert_eq!(rows[2][0..2], ["docker.io/luksa/kubia", "latest"]);
    for row in &rows[1..] {
        assert_eq!(row[2].len(), 13, "crictl's short id: {row:?}");
        assert!(row[3].ends_with("MB"), "busybox is about 2 MB: {row:?}");
    }

    let busybox = node.inspect("busybox");
    let kubia = node.inspect("luksa/kubia:latest");
    assert_eq!(busybox["repo_tags"][0], "docker.io/library/busybox:latest");
    assert!(busybox["id"]
        .as_str()
        .is_some_and(|id| id.starts_with(&format!("sha256:{}", rows[1][2]))));
    assert_eq!(busybox["config"]["config"]["Cmd"][0], "sh");
    assert_eq!(
        kubia["config"]["config"]["ExposedPorts"]["8080/tcp"],
        serde_json::json!({})
    );
    // kubia is busybox's layer plus its own: the base layer is shared, unpacked once.
    assert_eq!(kubia["layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(kubia["layers"][0], busybox["layers"][0]);
    let layers = node.data_dir().join("images/layers");
    assert_eq!(entries(&layers), 2, "two distinct layers unpacked");
    // An image is also found by a unique prefix of its id.
    let by_id = node.inspect(&rows[2][2]);
    assert_eq!(by_id["id"], kubia["id"]);

    let ids = node.image_ok(&["ls", "-q"]);
    assert_eq!(ids.lines().count(), 2);

    // Removing kubia keeps the layer busybox still uses.
    let out = node.image_ok(&["rm", "luksa/kubia"]);
    assert!(out.contains("Deleted: sha256:"), "{out}");
    let rows = node.ls();
    assert_eq!(rows.len(), 2, "only busybox left: {rows:?}");
    assert_eq!(
        entries(&layers),
        1,
        "kubia's own layer freed, the shared one kept"
    );

    // Nothing is untagged, so a plain prune keeps busybox; --all removes it and its layer.
    node.image_ok(&["prune"]);
    assert_eq!(node.ls().len(), 2);
    let out = node.image_ok(&["prune", "--all"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert_eq!(node.ls().len(), 1, "no images left");
    assert_eq!(entries(&layers), 0);
    assert_eq!(entries(&node.data_dir().join("images/blobs/sha256")), 0);
}

#[test]
fn importing_twice_is_harmless() {
    let node = Node::new();
    node.import_both();
    node.import_both();
    assert_eq!(node.ls().len(), 3);
}

#[test]
fn bad_input_gets_clear_errors_and_records_nothing() {
    let node = Node::new();

    let missing = node.dir.path().join("no-such.tar");
    let output = node.image(&["import", missing.to_str().expect("utf-8 path")]);
    assert_exit_code(&output, 1, "import of a missing file");
    let err = stderr(&output);
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains("no-such.tar") && err.contains("No such file"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    let not_an_archive = node.dir.path().join("notes.txt");
    std::fs::write(
        &not_an_archive,
        "these are not the layers you are looking for\n",
    )
    .expect("write a text file");
    let output = node.image(&["import", not_an_archive.to_str().expect("utf-8 path")]);
    assert_exit_code(&output, 1, "import of a text file");
    let err = stderr(&output);
    assert!(
        err.contains("notes.txt") && err.contains("not an image archive"),
        "{err}"
    );

    for verb in ["inspect", "rm"] {
        let output = node.image(&[verb, "nosuch:1.0"]);
        assert_exit_code(&output, 1, &format!("{verb} of an unknown image"));
        let err = stderr(&output);
        assert!(
            err.contains("\"nosuch:1.0\" not found") && err.contains("skiff image pull"),
            "{verb}: {err}"
        );
    }

    let output = node.image(&["import", "--rootfs", "/", "--cmd", "sh"]);
    assert_exit_code(&output, 2, "--rootfs without --tag is a usage error");

    assert_eq!(node.ls().len(), 1, "nothing was recorded");
}

#[test]
fn import_a_root_filesystem_with_its_settings() {
    let node = Node::new();
    let rootfs = node.dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("rootfs/bin");
    std::fs::write(rootfs.join("bin/app"), "#!/bin/sh\necho hi\n").expect("rootfs/bin/app");
    let out = node.image_ok(&[
        "import",
        "--rootfs",
        rootfs.to_str().expect("utf-8 path"),
        "--tag",
        "example.com/team/app:1.2",
        "--entrypoint",
        "/bin/app",
        "--cmd",
        "--verbose",
        "--env",
        "MODE=test",
        "--workdir",
        "/srv",
    ]);
    assert_eq!(out, "Loaded image: example.com/team/app:1.2\n");
    let app = node.inspect("example.com/team/app:1.2");
    let config = &app["config"]["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/app"]));
    assert_eq!(config["Cmd"], serde_json::json!(["--verbose"]));
    assert!(
        config["Env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|e| e == "MODE=test")),
        "{config}"
    );
    assert_eq!(config["WorkingDir"], "/srv");
    let rows = node.ls();
    assert_eq!(rows[1][0..2], ["example.com/team/app", "1.2"]);
}

/// The registry harness of the runtime's tests: Debian's docker-registry on 127.0.0.1.
#[allow(dead_code)] // this test uses part of it
#[path = "../../../crates/runtime/tests/common/registry.rs"]
mod registry;

#[test]
fn pull_from_a_real_registry() {
    let node = Node::new();
    let registry = registry::Registry::start();
    registry.push_docker_archive(&node.archive("kubia.tar"), "luksa/kubia:1.0");
    let reference = registry.reference("luksa/kubia:1.0");

    let out = node.image_ok(&["pull", &reference]);
    assert!(
        out.starts_with(&format!("Downloaded newer image for {reference} (sha256:")),
        "{out}"
    );
    let out = node.image_ok(&["pull", &reference]);
    assert!(
        out.starts_with(&format!("Image is up to date for {reference} (sha256:")),
        "{out}"
    );
    let rows = node.ls();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[1][0..2],
        [registry.reference("luksa/kubia"), "1.0".to_string()]
    );
    let record = node.inspect(&reference);
    let digest = record["repo_digests"][0].as_str().unwrap_or_default();
    assert!(
        digest.starts_with(&format!("{}@sha256:", registry.reference("luksa/kubia"))),
        "{record}"
    );
    // The image pulled is the image imported: the same config, so the same id.
    node.image_ok(&[
        "import",
        node.archive("kubia.tar").to_str().expect("utf-8 path"),
    ]);
    assert_eq!(node.inspect("luksa/kubia")["id"], record["id"]);

    let missing = registry.reference("luksa/kubia:2.0");
    let output = node.image(&["pull", "--quiet", &missing]);
    assert_exit_code(&output, 1, "pull of a tag the registry does not have");
    let err = stderr(&output);
    assert!(err.contains("kubia") && err.contains("2.0"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
