//! Images built in test code: layers from a list of entries (including malicious ones the `tar`
//! crate would refuse to write), configs, manifests and indexes, written as OCI image layouts
//! (`oci-layout`, `index.json`, `blobs/sha256/...`) or as skopeo `dir:` layouts.

use std::io::Write;
use std::path::Path;

use skiff_runtime::image::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One entry of a layer tar.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
    /// A regular file whose header name is written byte for byte (`../x`, `/etc/x`), as an
    /// attacker would.
    RawFile(Vec<u8>, Vec<u8>),
}

pub fn dir(path: &str) -> Entry {
    Entry::Dir(path.to_string())
}

pub fn file(path: &str, content: &[u8]) -> Entry {
    Entry::File(path.to_string(), content.to_vec())
}

pub fn symlink(path: &str, target: &str) -> Entry {
    Entry::Symlink(path.to_string(), target.to_string())
}

/// A built layer: its blob and what describes it.
#[derive(Clone, Debug)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
}

pub fn sha256(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}

/// A layer of `entries`, compressed as asked, with OCI media types.
pub fn layer(entries: &[Entry], compression: Compression) -> Layer {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir(path) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, path, std::io::empty())
                    .expect("append a directory");
            }
            Entry::File(path, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                builder
                    .append_data(&mut header, path, content.as_slice())
                    .expect("append a file");
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, path, target)
                    .expect("append a symlink");
            }
            Entry::RawFile(name, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                let slot = &mut header.as_old_mut().name;
                assert!(name.len() < slot.len(), "raw names must fit the header");
                slot[..name.len()].copy_from_slice(name);
                header.set_cksum();
                builder
                    .append(&header, content.as_slice())
                    .expect("append a raw entry");
            }
        }
    }
    let tar = builder.into_inner().expect("finish the tar");
    let diff_id = sha256(&tar);
    let (blob, media_type) = match compression {
        Compression::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar).expect("gzip");
            (
                gz.finish().expect("gzip"),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Compression::Zstd => (
            zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    Layer {
        digest: sha256(&blob),
        blob,
        diff_id,
        media_type: media_type.to_string(),
    }
}

/// A single-platform image: config and manifest over its layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub manifest_media_type: String,
    pub architecture: String,
}

/// A linux image for `architecture` with OCI media types.
pub fn image(architecture: &str, layers: Vec<Layer>) -> Image {
    build_image(architecture, layers, OCI_MANIFEST, OCI_CONFIG)
}

/// A linux/amd64 image with Docker v2 schema 2 media types (its layers should be gzip and get
/// the Docker layer media type).
pub fn docker_image(mut layers: Vec<Layer>) -> Image {
    for layer in &mut layers {
        layer.media_type = DOCKER_LAYER_GZIP.to_string();
    }
    build_image("amd64", layers, DOCKER_MANIFEST, DOCKER_CONFIG)
}

fn build_image(
    architecture: &str,
    layers: Vec<Layer>,
    manifest_type: &str,
    config_type: &str,
) -> Image {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("config JSON");
    let config_digest = sha256(&config);
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": l.media_type, "digest": l.digest, "size": l.blob.len()
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": layer_descriptors,
    }))
    .expect("manifest JSON");
    Image {
        manifest_digest: sha256(&manifest),
        manifest,
        config,
        config_digest,
        layers,
        manifest_media_type: manifest_type.to_string(),
        architecture: architecture.to_string(),
    }
}

/// An image index over `images` (each with its linux platform).
pub struct Index {
    pub images: Vec<Image>,
    pub bytes: Vec<u8>,
    pub digest: String,
}

pub fn index(images: Vec<Image>) -> Index {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            serde_json::json!({
                "mediaType": i.manifest_media_type,
                "digest": i.manifest_digest,
                "size": i.manifest.len(),
                "platform": {"architecture": i.architecture, "os": "linux"},
            })
        })
        .collect();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
    }))
    .expect("index JSON");
    Index {
        digest: sha256(&bytes),
        bytes,
        images,
    }
}

fn put_blob(layout: &Path, bytes: &[u8]) {
    let digest = sha256(bytes);
    let hex = digest.strip_prefix("sha256:").expect("sha256");
    std::fs::write(layout.join("blobs/sha256").join(hex), bytes).expect("write a blob");
}

fn put_image_blobs(layout: &Path, image: &Image) {
    for layer in &image.layers {
        put_blob(layout, &layer.blob);
    }
    put_blob(layout, &image.config);
    put_blob(layout, &image.manifest);
}

fn write_oci_index_json(layout: &Path, tag: &str, media_type: &str, digest: &str, size: usize) {
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout directories");
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type, "digest": digest, "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index.json"),
    )
    .expect("index.json");
}

/// Writes `image` as an OCI layout in `layout` under `tag`.
pub fn write_oci_image(layout: &Path, tag: &str, image: &Image) {
    write_oci_index_json(
        layout,
        tag,
        &image.manifest_media_type,
        &image.manifest_digest,
        image.manifest.len(),
    );
    put_image_blobs(layout, image);
}

/// Writes `index` (and all its images) as an OCI layout in `layout` under `tag`.
pub fn write_oci_index(layout: &Path, tag: &str, index: &Index) {
    write_oci_index_json(layout, tag, OCI_INDEX, &index.digest, index.bytes.len());
    for image in &index.images {
        put_image_blobs(layout, image);
    }
    put_blob(layout, &index.bytes);
}

/// Writes `image` in skopeo's `dir:` format: `manifest.json`, blobs named by hex, `version`.
pub fn write_dir_image(dir: &Path, image: &Image) {
    std::fs::create_dir_all(dir).expect("dir layout");
    std::fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").expect("version");
    std::fs::write(dir.join("manifest.json"), &image.manifest).expect("manifest.json");
    let mut blobs: Vec<&[u8]> = image.layers.iter().map(|l| l.blob.as_slice()).collect();
    blobs.push(&image.config);
    for blob in blobs {
        let digest = sha256(blob);
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        std::fs::write(dir.join(hex), blob).expect("dir blob");
    }
}
