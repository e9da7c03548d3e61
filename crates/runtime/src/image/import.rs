//! `skiff image import`: `docker save` archives, OCI image layout archives (tar or directory),
//! and images made from a root filesystem (like `docker import`).
//!
//! Archives are read in at most two streaming passes and never held in memory: the first pass
//! lists the entries and keeps only the small JSON documents (manifests, configs, indexes); the
//! second streams the layers straight into the store, which checks each against its digest.
//! Everything is checked before any image is recorded, so a bad archive records nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::digest::{Digest, DigestReader, DigestWriter};
use super::layer::Compression;
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore, LayerRecord};
use super::{ImageError, Result};

pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// OCI's annotation naming an image in `index.json`: a full reference or only a tag.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker 25+'s) annotation with the full image name.
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Archive files up to this size are kept in memory by the first pass: manifests, configs and
/// indexes are far smaller; anything bigger is a layer and is streamed.
const SMALL_FILE: u64 = 4 << 20;
/// A bound on what the first pass keeps in memory, so a hostile archive cannot exhaust it.
const SMALL_FILES_BUDGET: u64 = 256 << 20;
/// How many symbolic links are followed inside an archive (docker save links duplicate layers).
const MAX_LINK_HOPS: usize = 16;

/// Image settings for an image made from a root filesystem.
#[derive(Clone, Debug, Default)]
pub struct RootfsOptions {
    /// `NAME[:TAG]`, normalised like any reference.
    pub tag: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    pub workdir: Option<String>,
}

/// Imports every image of a `docker save` or OCI layout archive (`.tar`, `.tar.gz`, or an OCI
/// layout directory). `tag` (optional) names the image when the archive has exactly one.
pub fn import_archive(
    store: &ImageStore,
    path: &Path,
    tag: Option<&str>,
) -> Result<Vec<ImageRecord>> {
    let tag = tag.map(normalise_tag).transpose()?;
    let source = Source::open(path)?;
    // Holds off garbage collection until the images are recorded: their blobs are unreferenced
    // until then.
    let _lease = store.lease()?;
    let mut plan = if source.exists("index.json") {
        plan_oci(&source)?
    } else if source.exists("manifest.json") {
        plan_docker(&source)?
    } else {
        return Err(source
            .bad("it has neither manifest.json (docker save) nor index.json (OCI image layout)"));
    };
    if plan.is_empty() {
        return Err(source.bad("it contains no image"));
    }
    if let Some(tag) = tag {
        if plan.len() != 1 {
            return Err(ImageError::Other(format!(
                "{}: --tag names one image, but the archive has {}",
                path.display(),
                plan.len()
            )));
        }
        plan[0].tags = vec![tag];
    }
    write_plan(store, &source, plan)
}

/// Makes a one-layer image from a directory or a tar of a root filesystem.
pub fn import_rootfs(
    store: &ImageStore,
    source: &Path,
    options: &RootfsOptions,
) -> Result<ImageRecord> {
    let tags = if options.tag.is_empty() {
        Vec::new()
    } else {
        vec![normalise_tag(&options.tag)?]
    };
    let meta = std::fs::metadata(source)
        .map_err(|e| ImageError::io("opening root filesystem", source, e))?;
    let _lease = store.lease()?;
    let (diff_id, tar_size) = if meta.is_dir() {
        store_dir_layer(store, source)?
    } else {
        store_tar_layer(store, source)?
    };
    let layer = store.ensure_layer(&diff_id, MEDIA_OCI_LAYER, Some(&diff_id))?;

    let mut container_config = serde_json::Map::new();
    if !options.env.is_empty() {
        container_config.insert("Env".into(), serde_json::json!(options.env));
    }
    if !options.entrypoint.is_empty() {
        container_config.insert("Entrypoint".into(), serde_json::json!(options.entrypoint));
    }
    if !options.cmd.is_empty() {
        container_config.insert("Cmd".into(), serde_json::json!(options.cmd));
    }
    if let Some(workdir) = &options.workdir {
        container_config.insert("WorkingDir".into(), serde_json::json!(workdir));
    }
    // No `created`: the same root filesystem and options give the same image id.
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": container_config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [{ "created_by": format!("skiff image import --rootfs ({} bytes)", tar_size) }],
    });
    let config_bytes = to_json(&config)?;
    let id = Digest::of(&config_bytes);
    store.write_blob(
        &id,
        Some(len64(&config_bytes)),
        &mut config_bytes.as_slice(),
    )?;
    let layers = vec![layer];
    let manifest_digest = write_manifest(store, &id, len64(&config_bytes), &layers)?;
    let record = ImageRecord {
        id,
        manifest_digest: Some(manifest_digest),
        repo_tags: tags,
        repo_digests: Vec::new(),
        config,
        size: unpacked_size(store, &layers),
        layers,
        created: None,
    };
    record_image(store, record)
}

/// A tag as the store records it: the full normalised reference.
fn normalise_tag(tag: &str) -> Result<String> {
    let reference = Reference::parse(tag)?;
    if reference.digest.is_some() {
        return Err(ImageError::InvalidReference {
            reference: tag.to_string(),
            reason: "an image is named by a tag, not a digest".into(),
        });
    }
    Ok(reference.to_string())
}

fn to_json(value: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| ImageError::Other(format!("encoding JSON: {e}")))
}

fn len64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// An image found in an archive, checked but not yet written.
#[derive(Debug)]
struct PlannedImage {
    /// The archive file the config came from (for errors).
    config_file: String,
    config: Vec<u8>,
    config_json: serde_json::Value,
    id: Digest,
    /// The OCI manifest as found in the archive; docker save archives have none (one is made).
    manifest: Option<(Digest, Vec<u8>)>,
    layers: Vec<PlannedLayer>,
    tags: Vec<String>,
}

#[derive(Clone, Debug)]
struct PlannedLayer {
    /// The archive file holding the blob (links resolved).
    file: String,
    /// The blob digest; for a docker save layer outside `blobs/`, its diff id (uncompressed).
    blob: Digest,
    /// From the manifest; None for docker save layers (sniffed while streaming).
    media_type: Option<String>,
    size: Option<u64>,
    diff_id: Digest,
}

/// `manifest.json` of `docker save`.
#[derive(serde::Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(serde::Deserialize, Clone, Debug)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(serde::Deserialize, Clone, Debug)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(serde::Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(serde::Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The `diff_ids` of an image config.
fn diff_ids(source: &Source, file: &str, config: &serde_json::Value) -> Result<Vec<Digest>> {
    let ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(|v| v.as_array())
        .ok_or_else(|| source.bad(format!("config {file} has no rootfs.diff_ids")))?;
    ids.iter()
        .map(|v| {
            v.as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| source.bad(format!("config {file}: bad diff id {v}")))
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    source: &Source,
    file: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| source.bad(format!("{file} is not valid: {e}")))
}

/// `blobs/sha256/<hex>` -> its digest, when a file is named by one.
fn digest_of_blob_name(file: &str) -> Option<Digest> {
    let hex = file.strip_prefix("blobs/sha256/")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn plan_docker(source: &Source) -> Result<Vec<PlannedImage>> {
    let bytes = source.read_small("manifest.json")?;
    let entries: Vec<DockerManifestEntry> = parse_json(source, "manifest.json", &bytes)?;
    let mut images: Vec<PlannedImage> = Vec::new();
    for entry in entries {
        let config_file = source.resolve(&entry.config)?.ok_or_else(|| {
            source.bad(format!(
                "manifest.json names config {}, which is not in the archive",
                entry.config
            ))
        })?;
        let config = source.read_small(&config_file)?;
        let id = Digest::of(&config);
        // Docker names the config by its digest (`<hex>.json` or `blobs/sha256/<hex>`): a
        // different content means the file was changed.
        let named = digest_of_blob_name(&config_file).or_else(|| {
            let hex = config_file.strip_suffix(".json")?;
            Digest::parse(&format!("sha256:{hex}")).ok()
        });
        if let Some(named) = named {
            if named != id {
                return Err(source.bad(format!(
                    "config {config_file} does not match its digest (its sha256 is {})",
                    id.hex()
                )));
            }
        }
        let config_json: serde_json::Value = parse_json(source, &config_file, &config)?;
        let ids = diff_ids(source, &config_file, &config_json)?;
        if ids.len() != entry.layers.len() {
            return Err(source.bad(format!(
                "manifest.json lists {} layers for config {config_file}, whose rootfs.diff_ids has {}",
                entry.layers.len(),
                ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(ids) {
            let file = source.resolve(name)?.ok_or_else(|| {
                source.bad(format!(
                    "manifest.json names layer {name}, which is not in the archive"
                ))
            })?;
            // Classic docker save layers are uncompressed: their digest is their diff id.
            let blob = digest_of_blob_name(&file).unwrap_or_else(|| diff_id.clone());
            layers.push(PlannedLayer {
                file,
                blob,
                media_type: None,
                size: None,
                diff_id,
            });
        }
        let tags = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| {
                normalise_tag(t).map_err(|e| source.bad(format!("manifest.json: tag {t:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        merge_image(
            &mut images,
            PlannedImage {
                config_file,
                config,
                config_json,
                id,
                manifest: None,
                layers,
                tags,
            },
        );
    }
    Ok(images)
}

/// Adds an image, or only its tags when the same image (config) is already planned.
fn merge_image(images: &mut Vec<PlannedImage>, image: PlannedImage) {
    if let Some(existing) = images.iter_mut().find(|i| i.id == image.id) {
        for tag in image.tags {
            if !existing.tags.contains(&tag) {
                existing.tags.push(tag);
            }
        }
        if existing.manifest.is_none() {
            existing.manifest = image.manifest;
        }
    } else {
        images.push(image);
    }
}

fn plan_oci(source: &Source) -> Result<Vec<PlannedImage>> {
    let bytes = source.read_small("index.json")?;
    let index: Index = parse_json(source, "index.json", &bytes)?;
    let mut images = Vec::new();
    for descriptor in &index.manifests {
        let names = names_of(source, descriptor)?;
        if let Some(mut image) = plan_oci_descriptor(source, descriptor, 0)? {
            image.tags = names;
            merge_image(&mut images, image);
        }
    }
    // Docker 25+ writes both layouts; its manifest.json has the names when index.json lacks them.
    if source.exists("manifest.json") && images.iter().any(|i| i.tags.is_empty()) {
        let bytes = source.read_small("manifest.json")?;
        let entries: Vec<DockerManifestEntry> = parse_json(source, "manifest.json", &bytes)?;
        for entry in entries {
            let Some(file) = source.resolve(&entry.config)? else {
                continue;
            };
            let id = Digest::of(&source.read_small(&file)?);
            if let Some(image) = images.iter_mut().find(|i| i.id == id && i.tags.is_empty()) {
                for t in entry.repo_tags.unwrap_or_default() {
                    let tag = normalise_tag(&t)
                        .map_err(|e| source.bad(format!("manifest.json: tag {t:?}: {e}")))?;
                    image.tags.push(tag);
                }
            }
        }
    }
    Ok(images)
}

/// The image names a descriptor of `index.json` carries. A bare `ref.name` such as `latest` is
/// only a tag, with no repository to attach it to: it names nothing by itself.
fn names_of(source: &Source, descriptor: &Descriptor) -> Result<Vec<String>> {
    let Some(annotations) = &descriptor.annotations else {
        return Ok(Vec::new());
    };
    let name = annotations.get(ANNOTATION_CONTAINERD_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains('/') || n.contains(':'))
    });
    match name {
        Some(name) => Ok(vec![normalise_tag(name).map_err(|e| {
            source.bad(format!("index.json: image name {name:?}: {e}"))
        })?]),
        None => Ok(Vec::new()),
    }
}

/// Reads a JSON blob of the layout named by a descriptor, checked against its digest and size.
fn read_descriptor_blob(
    source: &Source,
    descriptor: &Descriptor,
) -> Result<(String, Digest, Vec<u8>)> {
    let digest = Digest::parse(&descriptor.digest)
        .map_err(|e| source.bad(format!("bad digest {:?}: {e}", descriptor.digest)))?;
    let file = format!("blobs/sha256/{}", digest.hex());
    let resolved = source
        .resolve(&file)?
        .ok_or_else(|| source.bad(format!("blob {file} is missing")))?;
    let bytes = source.read_small(&resolved)?;
    let actual = Digest::of(&bytes);
    if actual != digest {
        return Err(source.bad(format!(
            "blob {file} does not match its digest (its sha256 is {})",
            actual.hex()
        )));
    }
    if len64(&bytes) != descriptor.size {
        return Err(source.bad(format!(
            "blob {file} has {} bytes, its descriptor says {}",
            bytes.len(),
            descriptor.size
        )));
    }
    Ok((file, digest, bytes))
}

/// Resolves a descriptor of `index.json` to one image: a manifest directly, an index through its
/// linux/amd64 manifest. Other kinds (signatures, attestations, artifacts) are skipped.
fn plan_oci_descriptor(
    source: &Source,
    descriptor: &Descriptor,
    depth: usize,
) -> Result<Option<PlannedImage>> {
    if depth > 4 {
        return Err(source.bad("image indexes nested more than 4 deep"));
    }
    let (file, digest, bytes) = read_descriptor_blob(source, descriptor)?;
    let value: serde_json::Value = parse_json(source, &file, &bytes)?;
    let media_type = descriptor
        .media_type
        .clone()
        .or_else(|| {
            value
                .get("mediaType")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| {
            if value.get("manifests").is_some() {
                MEDIA_OCI_INDEX.to_string()
            } else {
                MEDIA_OCI_MANIFEST.to_string()
            }
        });
    match media_type.as_str() {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => {
            let index: Index = parse_json(source, &file, &bytes)?;
            let chosen = index
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .or_else(|| match index.manifests.as_slice() {
                    [only] if only.platform.is_none() => Some(only),
                    _ => None,
                })
                .ok_or_else(|| {
                    source.bad(format!("image index {file} has no linux/amd64 image"))
                })?;
            plan_oci_descriptor(source, chosen, depth + 1)
        }
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
            let manifest: Manifest = parse_json(source, &file, &bytes)?;
            let (config_file, id, config) = read_descriptor_blob(source, &manifest.config)?;
            let config_json: serde_json::Value = parse_json(source, &config_file, &config)?;
            let ids = diff_ids(source, &config_file, &config_json)?;
            if ids.len() != manifest.layers.len() {
                return Err(source.bad(format!(
                    "manifest {file} lists {} layers, its config's rootfs.diff_ids has {}",
                    manifest.layers.len(),
                    ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (layer, diff_id) in manifest.layers.iter().zip(ids) {
                let blob = Digest::parse(&layer.digest)
                    .map_err(|e| source.bad(format!("manifest {file}: bad layer digest: {e}")))?;
                let name = format!("blobs/sha256/{}", blob.hex());
                let resolved = source.resolve(&name)?.ok_or_else(|| {
                    source.bad(format!(
                        "manifest {file} names layer {name}, which is not in the archive"
                    ))
                })?;
                layers.push(PlannedLayer {
                    file: resolved,
                    blob,
                    media_type: layer.media_type.clone(),
                    size: Some(layer.size),
                    diff_id,
                });
            }
            Ok(Some(PlannedImage {
                config_file,
                config,
                config_json,
                id,
                manifest: Some((digest, bytes)),
                layers,
                tags: Vec::new(),
            }))
        }
        other => {
            tracing::debug!(%file, media_type = other, "skipping an index entry that is not an image");
            Ok(None)
        }
    }
}

/// The layer media type for what a blob's first bytes say.
fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => MEDIA_OCI_LAYER,
        Compression::Gzip => MEDIA_OCI_LAYER_GZIP,
        Compression::Zstd => MEDIA_OCI_LAYER_ZSTD,
    }
}

/// Writes every blob of the plan (each checked by the store), unpacking the layers as they are
/// read, and only then records the images.
fn write_plan(
    store: &ImageStore,
    source: &Source,
    plan: Vec<PlannedImage>,
) -> Result<Vec<ImageRecord>> {
    // The layer files, each streamed once even when several images share it.
    let mut wanted: BTreeMap<String, (PlannedLayer, &str)> = BTreeMap::new();
    for image in &plan {
        for layer in &image.layers {
            wanted
                .entry(layer.file.clone())
                .or_insert_with(|| (layer.clone(), image.config_file.as_str()));
        }
    }
    let mut media_types: HashMap<String, String> = HashMap::new();
    source.stream_files(&wanted.keys().cloned().collect::<Vec<_>>(), &mut |file, reader| {
        let Some((layer, config_file)) = wanted.get(file) else {
            return Ok(());
        };
        let mut reader = BufReader::with_capacity(64 << 10, reader);
        let head = reader
            .fill_buf()
            .map_err(|e| source.bad(format!("reading {file}: {e}")))?;
        let sniffed = Compression::sniff(head);
        let media_type = match &layer.media_type {
            Some(m) => m.clone(),
            None => {
                if sniffed != Compression::None && layer.blob == layer.diff_id {
                    return Err(source.bad(format!(
                        "layer {file} is compressed ({sniffed:?}); docker save layers are uncompressed tars"
                    )));
                }
                layer_media_type(sniffed).to_string()
            }
        };
        // Stored and unpacked in one pass; images that share the layer find it unpacked below.
        store
            .write_layer_blob(
                &layer.blob,
                layer.size,
                &media_type,
                Some(&layer.diff_id),
                &mut reader,
            )
            .map_err(|e| match e {
                ImageError::BlobSize {
                    expected, actual, ..
                } => source.bad(format!(
                    "layer {file} has {actual} bytes, its manifest says {expected}"
                )),
                ImageError::DigestMismatch { actual, .. } => {
                    let what = if layer.media_type.is_none() {
                        "the diff id its image config gives"
                    } else {
                        "the digest its manifest gives"
                    };
                    source.bad(format!(
                        "layer {file} does not match {what}: expected {}, got {actual}",
                        layer.blob
                    ))
                }
                e @ ImageError::BadLayer { .. } => {
                    source.bad(format!("layer {file} (config {config_file}): {e}"))
                }
                other => other,
            })?;
        media_types.insert(file.to_string(), media_type);
        Ok(())
    })?;

    for image in &plan {
        store.write_blob(
            &image.id,
            Some(len64(&image.config)),
            &mut image.config.as_slice(),
        )?;
        if let Some((digest, bytes)) = &image.manifest {
            store.write_blob(digest, Some(len64(bytes)), &mut bytes.as_slice())?;
        }
    }

    let mut unpacked: HashMap<(Digest, Digest), LayerRecord> = HashMap::new();
    let mut records = Vec::new();
    for image in plan {
        let mut layers = Vec::new();
        for layer in &image.layers {
            let key = (layer.blob.clone(), layer.diff_id.clone());
            if let Some(record) = unpacked.get(&key) {
                layers.push(record.clone());
                continue;
            }
            let media_type = media_types
                .get(&layer.file)
                .cloned()
                .unwrap_or_else(|| MEDIA_OCI_LAYER.to_string());
            let record = store
                .ensure_layer(&layer.blob, &media_type, Some(&layer.diff_id))
                .map_err(|e| match e {
                    ImageError::DigestMismatch { .. } | ImageError::BadLayer { .. } => source.bad(
                        format!("layer {} (config {}): {e}", layer.file, image.config_file),
                    ),
                    other => other,
                })?;
            unpacked.insert(key, record.clone());
            layers.push(record);
        }
        let manifest_digest = match &image.manifest {
            Some((digest, _)) => digest.clone(),
            None => write_manifest(store, &image.id, len64(&image.config), &layers)?,
        };
        let created = image
            .config_json
            .get("created")
            .and_then(|c| c.as_str())
            .map(String::from);
        records.push(ImageRecord {
            id: image.id,
            manifest_digest: Some(manifest_digest),
            repo_tags: image.tags,
            repo_digests: Vec::new(),
            size: unpacked_size(store, &layers),
            config: image.config_json,
            layers,
            created,
        });
    }
    records
        .into_iter()
        .map(|record| record_image(store, record))
        .collect()
}

/// Writes an OCI manifest for a config and its layers (docker save archives and root
/// filesystems have none) and returns its digest. Serialised with sorted keys: reproducible.
fn write_manifest(
    store: &ImageStore,
    config: &Digest,
    config_size: u64,
    layers: &[LayerRecord],
) -> Result<Digest> {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": {
            "mediaType": MEDIA_OCI_CONFIG,
            "digest": config.to_string(),
            "size": config_size,
        },
        "layers": layers.iter().map(|l| serde_json::json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let bytes = to_json(&manifest)?;
    let digest = Digest::of(&bytes);
    store.write_blob(&digest, Some(len64(&bytes)), &mut bytes.as_slice())?;
    Ok(digest)
}

/// The unpacked size of an image: the sum of its layers' (the store recomputes it on
/// `put_image` too), or the blobs' sizes where a layer's is not recorded.
fn unpacked_size(store: &ImageStore, layers: &[LayerRecord]) -> u64 {
    layers
        .iter()
        .map(|l| store.layer_size(&l.diff_id).unwrap_or(l.size))
        .sum()
}

/// Records an image and returns it as the store now has it (tags merged with those it had).
fn record_image(store: &ImageStore, record: ImageRecord) -> Result<ImageRecord> {
    store.put_image(record.clone())?;
    Ok(store.resolve(&record.id.to_string())?.unwrap_or(record))
}

/// Where the files of an archive come from.
enum Source {
    /// An unpacked archive: an OCI layout directory (or a docker save tree).
    Dir(PathBuf),
    /// A tar, plain or compressed, listed by a first pass.
    Tar {
        path: PathBuf,
        compression: Compression,
        catalog: Catalog,
    },
}

#[derive(Default)]
struct Catalog {
    entries: HashMap<String, CatalogEntry>,
    /// The contents of the small regular files, kept by the first pass.
    small: HashMap<String, Vec<u8>>,
}

#[derive(Debug)]
enum CatalogEntry {
    File,
    /// A symbolic link; its target, resolved against the link's directory.
    Symlink(String),
    /// A hard link to an earlier entry.
    HardLink(String),
    Other,
}

impl Source {
    fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ImageError::io("opening image archive", path, e))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let compression = {
            let mut head = [0u8; 4];
            let mut file =
                File::open(path).map_err(|e| ImageError::io("opening image archive", path, e))?;
            let n = read_up_to(&mut file, &mut head)
                .map_err(|e| ImageError::io("reading image archive", path, e))?;
            Compression::sniff(&head[..n])
        };
        let catalog = read_catalog(path, compression)?;
        Ok(Source::Tar {
            path: path.to_path_buf(),
            compression,
            catalog,
        })
    }

    fn path(&self) -> &Path {
        match self {
            Source::Dir(path) | Source::Tar { path, .. } => path,
        }
    }

    fn bad(&self, reason: impl Into<String>) -> ImageError {
        ImageError::BadArchive {
            path: self.path().display().to_string(),
            reason: reason.into(),
        }
    }

    fn exists(&self, name: &str) -> bool {
        matches!(self.resolve(name), Ok(Some(_)))
    }

    /// The regular file `name` stands for (links followed), or None when it is not there.
    fn resolve(&self, name: &str) -> Result<Option<String>> {
        let Some(mut name) = normalise_name(name.as_bytes()) else {
            return Ok(None);
        };
        match self {
            Source::Dir(dir) => {
                let path = dir.join(&name);
                // The directory is the user's own; its files are checked by digest anyway.
                Ok(path.is_file().then_some(name))
            }
            Source::Tar { catalog, .. } => {
                for _ in 0..MAX_LINK_HOPS {
                    match catalog.entries.get(&name) {
                        Some(CatalogEntry::File) => return Ok(Some(name)),
                        Some(CatalogEntry::Symlink(target) | CatalogEntry::HardLink(target)) => {
                            name = target.clone();
                        }
                        Some(CatalogEntry::Other) | None => return Ok(None),
                    }
                }
                Err(self.bad(format!("{name}: too many levels of links")))
            }
        }
    }

    /// A small file (JSON document) of the archive.
    fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let resolved = self
            .resolve(name)?
            .ok_or_else(|| self.bad(format!("{name} is missing")))?;
        match self {
            Source::Dir(dir) => {
                let path = dir.join(&resolved);
                let file = File::open(&path).map_err(|e| ImageError::io("opening", &path, e))?;
                let mut bytes = Vec::new();
                file.take(SMALL_FILE + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ImageError::io("reading", &path, e))?;
                if len64(&bytes) > SMALL_FILE {
                    return Err(self.bad(format!("{name} is too large for a JSON document")));
                }
                Ok(bytes)
            }
            Source::Tar { catalog, .. } => catalog
                .small
                .get(&resolved)
                .cloned()
                .ok_or_else(|| self.bad(format!("{name} is too large for a JSON document"))),
        }
    }

    /// Calls `each` with a reader of every file in `files` (resolved names), in archive order.
    fn stream_files(
        &self,
        files: &[String],
        each: &mut dyn FnMut(&str, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        match self {
            Source::Dir(dir) => {
                for name in files {
                    let path = dir.join(name);
                    let mut file =
                        File::open(&path).map_err(|e| ImageError::io("opening", &path, e))?;
                    each(name, &mut file)?;
                }
                Ok(())
            }
            Source::Tar {
                path,
                compression,
                catalog,
            } => {
                let mut remaining: HashSet<&str> = HashSet::new();
                for name in files {
                    match catalog.small.get(name) {
                        Some(bytes) => each(name, &mut bytes.as_slice())?,
                        None => {
                            remaining.insert(name);
                        }
                    }
                }
                if remaining.is_empty() {
                    return Ok(());
                }
                let mut archive = tar::Archive::new(ArchiveReader::open(path, *compression)?);
                let entries = archive
                    .entries_with_seek()
                    .map_err(|e| self.bad(tar_error(0, &e)))?;
                for entry in entries {
                    let mut entry = entry.map_err(|e| {
                        self.bad(format!(
                            "it changed while being read ({})",
                            tar_error(1, &e)
                        ))
                    })?;
                    let Some(name) = normalise_name(&entry.path_bytes()) else {
                        continue;
                    };
                    if entry.header().entry_type().is_file() && remaining.remove(name.as_str()) {
                        each(&name, &mut entry)?;
                        if remaining.is_empty() {
                            return Ok(());
                        }
                    }
                }
                let missing: Vec<&str> = remaining.into_iter().collect();
                Err(self.bad(format!("{} vanished while reading", missing.join(", "))))
            }
        }
    }
}

/// Lists a tar archive and keeps its small files: the first pass.
fn read_catalog(path: &Path, compression: Compression) -> Result<Catalog> {
    let bad = |reason: String| ImageError::BadArchive {
        path: path.display().to_string(),
        reason,
    };
    let mut catalog = Catalog::default();
    let mut budget = SMALL_FILES_BUDGET;
    let mut archive = tar::Archive::new(ArchiveReader::open(path, compression)?);
    let entries = archive
        .entries_with_seek()
        .map_err(|e| bad(tar_error(0, &e)))?;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| bad(tar_error(n, &e)))?;
        let Some(name) = normalise_name(&entry.path_bytes()) else {
            continue;
        };
        let header = entry.header();
        let kind = header.entry_type();
        let item = if kind.is_file() {
            let size = entry.size();
            if size <= SMALL_FILE && size <= budget {
                budget -= size;
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(format!("reading {name}: {e}")))?;
                catalog.small.insert(name.clone(), bytes);
            }
            CatalogEntry::File
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry.link_name_bytes().unwrap_or_default().into_owned();
            let resolved = if kind.is_symlink() {
                resolve_symlink(&name, &target)
            } else {
                normalise_name(&target)
            };
            match resolved {
                Some(target) if kind.is_symlink() => CatalogEntry::Symlink(target),
                Some(target) => CatalogEntry::HardLink(target),
                None => CatalogEntry::Other,
            }
        } else {
            CatalogEntry::Other
        };
        catalog.entries.insert(name, item);
    }
    Ok(catalog)
}

/// What a tar read error means for the user: not a tar at all when it fails on the first
/// header, a damaged tar after that. The tar crate's message can quote the bad header's bytes:
/// only its first line, shortened, is kept.
fn tar_error(entries_read: usize, error: &io::Error) -> String {
    if entries_read == 0 {
        return "not a tar archive (its first block is not a tar header)".to_string();
    }
    let text = error.to_string();
    let first_line = text.lines().next().unwrap_or_default();
    let short: String = first_line.chars().take(120).collect();
    format!("the tar archive is damaged after {entries_read} entries: {short}")
}

/// An archive member's name as a relative path without `./`, `..` or trailing `/`; None for
/// names that could not be a file of an image archive (absolute, escaping, not UTF-8).
fn normalise_name(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if text.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A symbolic link's target as an archive name: relative to the link's directory, `..` allowed
/// as long as it stays inside the archive.
fn resolve_symlink(link: &str, target: &[u8]) -> Option<String> {
    let target = std::str::from_utf8(target).ok()?;
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        let mut dir: Vec<&str> = link.split('/').collect();
        dir.pop();
        dir
    };
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A tar archive's bytes: a plain file, which seeks past the entries not wanted, or a
/// decompressed stream, which can only skip forward by reading.
enum ArchiveReader {
    Plain(BufReader<File>),
    Stream {
        reader: Box<dyn Read>,
        position: u64,
    },
}

impl ArchiveReader {
    fn open(path: &Path, compression: Compression) -> Result<ArchiveReader> {
        let file =
            File::open(path).map_err(|e| ImageError::io("opening image archive", path, e))?;
        let file = BufReader::with_capacity(256 << 10, file);
        Ok(match compression {
            Compression::None => ArchiveReader::Plain(file),
            Compression::Gzip => ArchiveReader::Stream {
                reader: Box::new(flate2::bufread::MultiGzDecoder::new(file)),
                position: 0,
            },
            Compression::Zstd => ArchiveReader::Stream {
                reader: Box::new(
                    zstd::stream::read::Decoder::with_buffer(file)
                        .map_err(|e| ImageError::io("decompressing image archive", path, e))?,
                ),
                position: 0,
            },
        })
    }
}

impl Read for ArchiveReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ArchiveReader::Plain(file) => file.read(buf),
            ArchiveReader::Stream { reader, position } => {
                let n = reader.read(buf)?;
                *position += n as u64;
                Ok(n)
            }
        }
    }
}

impl Seek for ArchiveReader {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match self {
            ArchiveReader::Plain(file) => match pos {
                // seek_relative keeps the buffer when the target is inside it.
                SeekFrom::Current(offset) => {
                    file.seek_relative(offset)?;
                    file.stream_position()
                }
                other => file.seek(other),
            },
            ArchiveReader::Stream { reader, position } => match pos {
                SeekFrom::Current(offset) if offset >= 0 => {
                    let wanted = offset.unsigned_abs();
                    let skipped = io::copy(&mut reader.take(wanted), &mut io::sink())?;
                    *position += skipped;
                    if skipped < wanted {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the archive ends inside an entry",
                        ));
                    }
                    Ok(*position)
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a compressed archive only skips forward",
                )),
            },
        }
    }
}

/// A root filesystem tar as one layer: its decompressed bytes as they are (like
/// `docker import`). A first pass checks it is a tar and computes its digest; the second
/// streams it into the store.
fn store_tar_layer(store: &ImageStore, source: &Path) -> Result<(Digest, u64)> {
    let bad = |reason: String| ImageError::BadArchive {
        path: source.display().to_string(),
        reason,
    };
    let open = || -> Result<ArchiveReader> {
        let mut head = [0u8; 4];
        let mut file =
            File::open(source).map_err(|e| ImageError::io("opening root filesystem", source, e))?;
        let n = read_up_to(&mut file, &mut head)
            .map_err(|e| ImageError::io("reading root filesystem", source, e))?;
        ArchiveReader::open(source, Compression::sniff(&head[..n]))
    };
    let mut hashing = DigestReader::new(open()?);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut count = 0usize;
        for entry in archive.entries().map_err(|e| bad(tar_error(0, &e)))? {
            entry.map_err(|e| bad(tar_error(count, &e)))?;
            count += 1;
        }
        if count == 0 {
            return Err(bad("the tar archive is empty".into()));
        }
    }
    // The padding after the end-of-archive blocks belongs to the layer too.
    io::copy(&mut hashing, &mut io::sink())
        .map_err(|e| ImageError::io("reading root filesystem", source, e))?;
    let (digest, size, _) = hashing.finish();
    store
        .write_blob(&digest, Some(size), &mut open()?)
        .map_err(|e| match e {
            ImageError::DigestMismatch { .. } => bad("it changed while being imported".into()),
            other => other,
        })?;
    Ok((digest, size))
}

/// A root filesystem directory as one layer: a reproducible tar (sorted names, numeric owners,
/// no access or change times) made twice, once to compute its digest and once streamed into the
/// store through a pipe, so it is never written to disk twice.
fn store_dir_layer(store: &ImageStore, dir: &Path) -> Result<(Digest, u64)> {
    let mut hashing = DigestWriter::new(io::sink());
    write_dir_tar(dir, &mut hashing)?;
    let (digest, size, _) = hashing.finish();

    let (mut reader, writer) =
        io::pipe().map_err(|e| ImageError::io("creating a pipe for", dir, e))?;
    let (written, produced) = std::thread::scope(|scope| {
        let producer = scope.spawn(move || -> Result<()> {
            let mut out = io::BufWriter::with_capacity(256 << 10, writer);
            write_dir_tar(dir, &mut out)?;
            out.flush()
                .map_err(|e| ImageError::io("writing the layer of", dir, e))
        });
        let written = store.write_blob(&digest, Some(size), &mut reader);
        // Dropping the reader ends the producer (broken pipe) if the store stopped early.
        drop(reader);
        (written, producer.join())
    });
    match (written, produced) {
        (Ok(_), Ok(Ok(()))) => Ok((digest, size)),
        (Err(ImageError::DigestMismatch { .. }), _) => Err(ImageError::BadArchive {
            path: dir.display().to_string(),
            reason: "it changed while being imported".into(),
        }),
        (Err(e), _) => Err(e),
        (Ok(_), Ok(Err(e))) => Err(e),
        (Ok(_), Err(_)) => Err(ImageError::Other(format!(
            "making the layer of {} failed (a thread panicked)",
            dir.display()
        ))),
    }
}

/// Writes `dir` as a tar: sorted names, ownership and modes as on disk, modification times,
/// symlinks, hard links (by inode), device nodes, fifos and extended attributes (PAX
/// `SCHILY.xattr.*`). Stays on `dir`'s file system, as `tar --one-file-system`.
fn write_dir_tar(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let root_dev = std::fs::symlink_metadata(dir)
        .map_err(|e| ImageError::io("reading", dir, e))?
        .dev();
    let mut builder = tar::Builder::new(out);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    append_dir_entries(&mut builder, dir, Path::new(""), root_dev, &mut links)?;
    builder
        .into_inner()
        .map_err(|e| ImageError::io("writing the layer of", dir, e))?;
    Ok(())
}

fn append_dir_entries(
    builder: &mut tar::Builder<&mut dyn Write>,
    dir: &Path,
    relative: &Path,
    root_dev: u64,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let here = dir.join(relative);
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&here)
        .map_err(|e| ImageError::io("listing", &here, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| ImageError::io("listing", &here, e))?;
    names.sort();
    for name in names {
        let rel = relative.join(&name);
        let path = dir.join(&rel);
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| ImageError::io("reading", &path, e))?;
        let werr = |e: io::Error| ImageError::io("adding to the layer", &path, e);
        let file_type = meta.file_type();
        if file_type.is_socket() {
            tracing::debug!(path = %path.display(), "sockets cannot be archived; skipped");
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        append_xattrs(builder, &path).map_err(werr)?;
        if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            builder
                .append_data(&mut header, &rel, io::empty())
                .map_err(werr)?;
            if meta.dev() == root_dev {
                append_dir_entries(builder, dir, &rel, root_dev, links)?;
            }
        } else if file_type.is_symlink() {
            let target =
                std::fs::read_link(&path).map_err(|e| ImageError::io("reading", &path, e))?;
            header.set_entry_type(tar::EntryType::Symlink);
            builder
                .append_link(&mut header, &rel, &target)
                .map_err(werr)?;
        } else if meta.nlink() > 1 && links.contains_key(&(meta.dev(), meta.ino())) {
            let first = &links[&(meta.dev(), meta.ino())];
            header.set_entry_type(tar::EntryType::Link);
            builder
                .append_link(&mut header, &rel, first)
                .map_err(werr)?;
        } else {
            if meta.nlink() > 1 {
                links.insert((meta.dev(), meta.ino()), rel.clone());
            }
            if file_type.is_file() {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                let file = File::open(&path).map_err(|e| ImageError::io("opening", &path, e))?;
                // The size in the header is final: a file that grows is cut, one that shrinks
                // fails the append (tar pads nothing).
                builder
                    .append_data(&mut header, &rel, file.take(meta.len()))
                    .map_err(werr)?;
            } else {
                let kind = if file_type.is_char_device() {
                    tar::EntryType::Char
                } else if file_type.is_block_device() {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Fifo
                };
                header.set_entry_type(kind);
                if kind != tar::EntryType::Fifo {
                    let rdev = meta.rdev();
                    header
                        .set_device_major(rustix::fs::major(rdev))
                        .map_err(werr)?;
                    header
                        .set_device_minor(rustix::fs::minor(rdev))
                        .map_err(werr)?;
                }
                builder
                    .append_data(&mut header, &rel, io::empty())
                    .map_err(werr)?;
            }
        }
    }
    Ok(())
}

/// Appends a PAX extended header with a file's extended attributes, if it has any.
fn append_xattrs(builder: &mut tar::Builder<&mut dyn Write>, path: &Path) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let len = match rustix::fs::llistxattr(path, &mut names[..]) {
        Ok(len) => len,
        Err(rustix::io::Errno::RANGE) => {
            let needed = rustix::fs::llistxattr_query(path)?;
            names.resize(needed, 0);
            rustix::fs::llistxattr(path, &mut names[..])?
        }
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let mut names: Vec<&[u8]> = names[..len]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    names.sort();
    let mut records = Vec::new();
    for name in names {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            // Removed since it was listed.
            Err(rustix::io::Errno::NODATA) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; size];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(got);
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        records.extend_from_slice(&pax_record(&key, &value));
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_path("PaxHeader")?;
    header.set_mode(0o644);
    header.set_size(len64(&records));
    header.set_cksum();
    builder.append(&header, records.as_slice())
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = len.to_string().into_bytes();
    record.push(b' ');
    record.extend_from_slice(key);
    record.push(b'=');
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_and_escapes_refused() {
        assert_eq!(
            normalise_name(b"./manifest.json").as_deref(),
            Some("manifest.json")
        );
        assert_eq!(
            normalise_name(b"blobs/sha256/").as_deref(),
            Some("blobs/sha256")
        );
        assert_eq!(normalise_name(b"a//b/./c").as_deref(), Some("a/b/c"));
        assert_eq!(normalise_name(b"../x"), None);
        assert_eq!(normalise_name(b"/etc/passwd"), None);
        assert_eq!(normalise_name(b"./"), None);
    }

    #[test]
    fn symlinks_resolve_against_their_directory() {
        assert_eq!(
            resolve_symlink("abc/layer.tar", b"../def/layer.tar").as_deref(),
            Some("def/layer.tar")
        );
        assert_eq!(resolve_symlink("abc/layer.tar", b"../../x"), None);
        assert_eq!(resolve_symlink("a", b"b").as_deref(), Some("b"));
    }

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record(b"SCHILY.xattr.user.a", b"1");
        let text = String::from_utf8(r.clone()).expect("ascii");
        let (len, _) = text.split_once(' ').expect("space");
        assert_eq!(len.parse::<usize>().expect("number"), r.len());
        // Crossing a power of ten: 9 bytes of rest makes 10 or 11?
        for n in 0..200 {
            let value = vec![b'x'; n];
            let r = pax_record(b"k", &value);
            let text = String::from_utf8(r.clone()).expect("ascii");
            let (len, _) = text.split_once(' ').expect("space");
            assert_eq!(
                len.parse::<usize>().expect("number"),
                r.len(),
                "value of {n}"
            );
        }
    }
}
