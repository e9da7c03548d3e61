//! The project's test images (scripts/build-test-images.sh), built into a temporary directory,
//! and helpers to take image archives apart and put them together again.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestImages {
    pub dir: tempfile::TempDir,
    pub busybox: PathBuf,
    pub kubia: PathBuf,
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.sh")
}

/// Runs the script into `out`; panics with its output if it fails.
pub fn run_script(out: &Path) -> String {
    let output = Command::new("bash")
        .arg(script())
        .arg(out)
        .output()
        .expect("run scripts/build-test-images.sh");
    assert!(
        output.status.success(),
        "build-test-images.sh failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

pub fn build() -> TestImages {
    let dir = tempfile::tempdir().expect("tempdir");
    let printed = run_script(dir.path());
    let busybox = dir.path().join("busybox.tar");
    let kubia = dir.path().join("kubia.tar");
    assert_eq!(
        printed.lines().collect::<Vec<_>>(),
        vec![
            busybox.to_str().expect("utf-8"),
            kubia.to_str().expect("utf-8")
        ],
        "the script prints the paths it wrote"
    );
    TestImages {
        dir,
        busybox,
        kubia,
    }
}

/// Every regular file of a tar archive, by name (test archives are small).
pub fn read_tar(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let file = std::fs::File::open(path).expect("open archive");
    let mut archive = tar::Archive::new(file);
    let mut files = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path().expect("path").to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read entry");
        files.insert(name, bytes);
    }
    files
}

/// Writes `files` as a tar archive.
pub fn write_tar(path: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let file = std::fs::File::create(path).expect("create archive");
    let mut builder = tar::Builder::new(file);
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .expect("append");
    }
    builder.finish().expect("finish");
}

/// The docker save manifest.json of an archive's files.
pub fn docker_manifest(files: &BTreeMap<String, Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(&files["manifest.json"]).expect("manifest.json")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
