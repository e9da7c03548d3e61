//! Pulling images from registries with `oci-client`: tags and digests, image indexes resolved to
//! linux/amd64, token and basic authentication, insecure (plain HTTP) registries by name, shared
//! work for concurrent pulls of one image, and layers already present not fetched again.
//!
//! Every blob is streamed into the store ([`ImageStore::write_blob`]; layers into
//! [`ImageStore::write_layer_blob`], which unpacks them as they arrive), which checks it against
//! its digest before it becomes visible: a corrupt or truncated download fails the pull and leaves nothing
//! behind. The manifests are fetched raw and parsed here (not by `oci-client`) so that the exact
//! bytes the digests name are what the store keeps.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::{StreamExt, TryStreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use super::digest::Digest;
use super::keyring::Keyring;
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore, LayerRecord};
use super::{ImageError, Result};

/// Registry credentials.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The password stays out of logs and messages.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Credentials given explicitly (flags, a pod's imagePullSecrets); otherwise
    /// `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`) is read for the registry.
    pub credentials: Option<Credentials>,
    /// Registries reached over plain HTTP (`localhost`, `127.0.0.1` and `[::1]`, any port, always are).
    pub insecure_registries: Vec<String>,
    /// Progress output: a bar on a terminal (indicatif), plain lines otherwise, or nothing.
    pub progress: Progress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Auto,
    Lines,
    Quiet,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            credentials: None,
            insecure_registries: Vec::new(),
            progress: Progress::Quiet,
        }
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// What we ask the registry for: single images and indexes, OCI and Docker schema 2.
const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];
/// Layers downloaded (and unpacked) at once: enough to fill a link, few enough not to thrash
/// a small node's disk.
const CONCURRENT_LAYERS: usize = 3;
/// Manifests and configs are small; anything bigger is not an image (or is an attack).
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// A pull in progress, shared by everyone who asks for the same reference meanwhile. The error
/// is behind an `Arc` because `ImageError` (it carries `io::Error`s) cannot be cloned.
type SharedPull = Shared<BoxFuture<'static, std::result::Result<ImageRecord, Arc<ImageError>>>>;

/// Pulls in flight in this process, by full normalised reference, each with a number that tells
/// it from a later pull of the same reference.
static IN_FLIGHT: LazyLock<Mutex<HashMap<String, (u64, SharedPull)>>> =
    LazyLock::new(Default::default);

/// Forgets the pull of `key` numbered `generation`, if it is still the one in flight.
fn forget_pull(key: &str, generation: u64) {
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
    if in_flight.get(key).is_some_and(|(g, _)| *g == generation) {
        in_flight.remove(key);
    }
}

/// Which pulls may share one download: the same reference with the same credentials. A pull
/// with other (or no) credentials must not succeed on the strength of someone else's.
fn in_flight_key(reference: &Reference, credentials: Option<&Credentials>) -> String {
    use std::hash::{Hash, Hasher};
    match credentials {
        None => reference.to_string(),
        Some(c) => {
            let mut h = std::hash::DefaultHasher::new();
            c.hash(&mut h);
            format!("{reference} as {:?} {:016x}", c.username, h.finish())
        }
    }
}

/// Pulls `reference` into the store and returns the image record. Concurrent pulls of the same
/// reference with the same credentials in this process share one download.
pub async fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
) -> Result<ImageRecord> {
    static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = in_flight_key(reference, options.credentials.as_ref());
    let shared = {
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|p| p.into_inner());
        match in_flight.get(&key) {
            Some((_, shared)) => shared.clone(),
            None => {
                let generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (store, reference, options) =
                    (store.clone(), reference.clone(), options.clone());
                let (task_key, waiter_key) = (key.clone(), key.clone());
                // A task of its own, so the pull completes (and leaves the map) even when the
                // caller that started it is cancelled while others still wait for it.
                let task = tokio::spawn(async move {
                    let result = pull_now(&store, &reference, &options)
                        .await
                        .map_err(Arc::new);
                    forget_pull(&task_key, generation);
                    result
                });
                let shared = async move {
                    task.await.unwrap_or_else(|e| {
                        // Cancelled with its runtime, or panicked: it cannot forget itself.
                        forget_pull(&waiter_key, generation);
                        Err(Arc::new(ImageError::Other(format!(
                            "the pull task failed: {e}"
                        ))))
                    })
                }
                .boxed()
                .shared();
                in_flight.insert(key, (generation, shared.clone()));
                shared
            }
        }
    };
    shared.await.map_err(|e| duplicate_error(&e))
}

/// The digest a tag points to now, without pulling (for `imagePullPolicy: Always`). For a
/// multi-platform image this is the index's digest, as [`ImageRecord::manifest_digest`] is.
pub async fn resolve_digest(
    reference: &Reference,
    options: &PullOptions,
) -> Result<super::digest::Digest> {
    let session = Session::new(reference, options)?;
    let digest = session
        .client
        .fetch_manifest_digest(&session.target, &session.auth)
        .await
        .map_err(|e| session.error("resolving the digest", e))?;
    Digest::parse(&digest)
        .map_err(|e| session.fail(format!("the registry answered a bad digest: {e}")))
}

/// One pull's connection to its registry.
struct Session {
    reference: Reference,
    client: Client,
    /// The manifest to fetch: by digest when the reference has one, else by tag.
    target: oci_client::Reference,
    auth: RegistryAuth,
    /// `http://host:port` or `https://host:port`, for messages.
    address: String,
    /// Whether credentials were given (explicitly or by the docker config), for messages.
    credentials_user: Option<String>,
}

impl Session {
    fn new(reference: &Reference, options: &PullOptions) -> Result<Session> {
        // oci-client is built without a bundled crypto provider so the process has one (ring);
        // "already installed" is the normal case after the first pull.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let target = match &reference.digest {
            Some(digest) => oci_client::Reference::with_digest(
                reference.registry.clone(),
                reference.repository.clone(),
                digest.to_string(),
            ),
            None => oci_client::Reference::with_tag(
                reference.registry.clone(),
                reference.repository.clone(),
                reference.tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let host = target.resolve_registry().to_string();
        let plain_http = is_insecure(&reference.registry, &options.insecure_registries);
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(if plain_http {
                vec![host.clone()]
            } else {
                Vec::new()
            }),
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| ImageError::Pull {
            reference: reference.to_string(),
            reason: format!("cannot set up the registry client: {}", error_chain(&e)),
        })?;
        let credentials = options
            .credentials
            .clone()
            .or_else(|| docker_config_credentials(reference));
        let credentials_user = credentials.as_ref().map(|c| c.username.clone());
        let auth = match credentials {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let scheme = if plain_http { "http" } else { "https" };
        Ok(Session {
            reference: reference.clone(),
            client,
            target,
            auth,
            address: format!("{scheme}://{host}"),
            credentials_user,
        })
    }

    fn fail(&self, reason: String) -> ImageError {
        ImageError::Pull {
            reference: self.reference.to_string(),
            reason,
        }
    }

    /// Turns a registry client error into a reason the user can act on.
    fn error(&self, doing: &str, e: OciDistributionError) -> ImageError {
        let registry = &self.reference.registry;
        let what = match (&self.reference.tag, &self.reference.digest) {
            (_, Some(d)) => format!("{}@{d}", self.reference.familiar_name()),
            (Some(t), None) => format!("{}:{t}", self.reference.familiar_name()),
            (None, None) => self.reference.familiar_name(),
        };
        let unauthorized = || match &self.credentials_user {
            Some(user) => format!(
                "{doing}: the registry {registry} refused the credentials of {user:?}: check the \
                 user name and password"
            ),
            None => format!(
                "{doing}: the registry {registry} requires authentication: give credentials \
                 (a pod's imagePullSecrets, `skiff image pull --username`) or log in with \
                 `docker login {registry}`"
            ),
        };
        let not_found = || {
            format!(
                "{doing}: {what} not found in {registry}: check the image name and tag (or digest)"
            )
        };
        let reason = match &e {
            OciDistributionError::UnauthorizedError { .. } => unauthorized(),
            OciDistributionError::AuthenticationFailure(why) => format!(
                "{doing}: authentication with {registry} failed ({}): check the credentials",
                why.trim()
            ),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found()
                } else {
                    let messages: Vec<String> = envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect();
                    format!(
                        "{doing}: the registry {registry} answered {}",
                        messages.join("; ")
                    )
                }
            }
            OciDistributionError::ServerError {
                code: 401 | 403, ..
            } => unauthorized(),
            OciDistributionError::ServerError { code: 404, .. } => not_found(),
            OciDistributionError::ServerError { code, message, .. } => format!(
                "{doing}: the registry {registry} answered HTTP {code}: {}",
                message.trim()
            ),
            OciDistributionError::RequestError(r) if r.is_connect() => {
                let mut reason = format!(
                    "{doing}: cannot connect to the registry at {}: {}",
                    self.address,
                    error_chain(&e)
                );
                // A registry that answers plain HTTP fails the TLS handshake; one that does not
                // resolve or answer at all needs no such hint.
                let unreachable = reason.contains("dns error") || reason.contains("refused");
                if self.address.starts_with("https:") && !unreachable {
                    reason.push_str(&format!(
                        " (if {registry} serves plain HTTP, name it with --insecure-registry)"
                    ));
                }
                reason
            }
            OciDistributionError::RequestError(r) if r.is_timeout() => format!(
                "{doing}: the registry at {} did not answer in time",
                self.address
            ),
            _ => format!("{doing}: {}", error_chain(&e)),
        };
        self.fail(reason)
    }
}

/// Whether `registry` is reached over plain HTTP: loopback always, others when named (with or
/// without their port) in `insecure`.
fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    if matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return true;
    }
    insecure.iter().any(|name| {
        let name = name
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches('/');
        name == registry || name == host
    })
}

/// The host part of `host[:port]` or `[v6][:port]`.
fn host_of(registry: &str) -> &str {
    if registry.starts_with('[') {
        match registry.find(']') {
            Some(end) => &registry[..=end],
            None => registry,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    }
}

/// Credentials for `reference` from `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
fn docker_config_credentials(reference: &Reference) -> Option<Credentials> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".docker"),
    };
    docker_config_keyring(&dir)?
        .lookup(reference)
        .into_iter()
        .next()
}

/// Credentials for `registry` (any repository) from the `auths` of the docker config in `dir`
/// (`auth` is base64 of `user:password`, or `username`/`password`), matched as
/// [`Keyring::lookup`] does. Credential helpers are not run.
pub fn credentials_from_docker_config(dir: &Path, registry: &str) -> Option<Credentials> {
    docker_config_keyring(dir)?
        .lookup_registry(registry, "")
        .into_iter()
        .next()
}

fn docker_config_keyring(dir: &Path) -> Option<Keyring> {
    let path = dir.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the docker config");
            }
            return None;
        }
    };
    let mut keyring = Keyring::new();
    match keyring.add_config_json(&text) {
        Ok(_) => Some(keyring),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the docker config cannot be used");
            None
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<IndexEntry>>,
}

#[derive(Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    platform: Option<Platform>,
}

#[derive(serde::Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    variant: Option<String>,
}

impl Manifest {
    fn is_index(&self) -> bool {
        match self.media_type.as_deref() {
            Some(t) => t == OCI_INDEX || t == DOCKER_MANIFEST_LIST,
            None => self.manifests.is_some(),
        }
    }
}

/// The platform this node runs images for.
const PLATFORM_OS: &str = "linux";
const PLATFORM_ARCH: &str = "amd64";

/// The pull itself, once per reference at a time.
async fn pull_now(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
) -> Result<ImageRecord> {
    let session = Session::new(reference, options)?;
    let progress = Reporter::new(options.progress);
    progress.line(&format!("Pulling {reference}"));

    let (top_bytes, top_digest) = fetch_manifest(&session, &session.target).await?;
    let top: Manifest = parse_manifest(&session, &top_bytes)?;
    let mut manifests = vec![(top_digest.clone(), top_bytes)];
    let (manifest, manifest_digest) = if top.is_index() {
        let entries = top.manifests.as_deref().unwrap_or_default();
        let chosen = choose_platform(entries).ok_or_else(|| {
            let offered: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            session.fail(format!(
                "the image index has no {PLATFORM_OS}/{PLATFORM_ARCH} image (it has: {})",
                if offered.is_empty() {
                    "no platforms".to_string()
                } else {
                    offered.join(", ")
                }
            ))
        })?;
        let target = session.target.clone_with_digest(chosen.to_string());
        let (bytes, digest) = fetch_manifest(&session, &target).await?;
        let manifest = parse_manifest(&session, &bytes)?;
        if manifest.is_index() {
            return Err(session.fail(format!(
                "the index's {PLATFORM_OS}/{PLATFORM_ARCH} entry {digest} is another index; nested indexes are not supported"
            )));
        }
        manifests.push((digest.clone(), bytes));
        (manifest, digest)
    } else {
        (top, top_digest.clone())
    };
    tracing::debug!(reference = %reference, manifest = %manifest_digest, "resolved");

    let config = manifest
        .config
        .as_ref()
        .ok_or_else(|| session.fail("the manifest has no config".into()))?;
    if config.media_type != OCI_CONFIG && config.media_type != DOCKER_CONFIG {
        return Err(session.fail(format!(
            "not a container image: its config has media type {:?} (an artifact, not an image)",
            config.media_type
        )));
    }
    let layers = manifest.layers.clone().unwrap_or_default();
    for layer in &layers {
        if !is_layer_media_type(&layer.media_type) {
            return Err(session.fail(format!(
                "not a container image: layer {} has media type {:?}",
                layer.digest, layer.media_type
            )));
        }
    }

    // Held until the image is recorded, so a concurrent prune (in any process) cannot remove the
    // blobs and layers this pull wrote but no record references yet.
    let _lease = blocking({
        let store = store.clone();
        move || store.lease()
    })
    .await?;
    for (digest, bytes) in manifests {
        store_bytes(store, digest, bytes).await?;
    }
    let config_digest = parse_digest(&session, &config.digest)?;
    if !blocking_has_blob(store, &config_digest).await? {
        fetch_blob(
            &session,
            store,
            &config_digest,
            config.size,
            &progress,
            |store, digest, size, reader| store.write_blob(digest, Some(size), reader),
        )
        .await?;
    }
    let config_bytes = blocking({
        let (store, digest) = (store.clone(), config_digest.clone());
        move || store.read_blob(&digest)
    })
    .await?;
    let config_json: serde_json::Value = serde_json::from_slice(&config_bytes)
        .map_err(|e| session.fail(format!("the image config {config_digest} is not JSON: {e}")))?;
    let diff_ids = diff_ids(&config_json)
        .map_err(|why| session.fail(format!("the image config {config_digest}: {why}")))?;
    if diff_ids.len() != layers.len() {
        return Err(session.fail(format!(
            "the manifest has {} layers but the config lists {} diff ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    check_platform(&config_json);

    // The futures are made before they are streamed: a `map` closure in the stream would make
    // this future not provably `Send` (rust-lang/rust#102211).
    let layer_pulls: Vec<_> = layers
        .iter()
        .zip(&diff_ids)
        .map(|(layer, diff_id)| pull_layer(&session, store, layer, diff_id, &progress))
        .collect();
    let layer_records: Vec<LayerRecord> = futures_util::stream::iter(layer_pulls)
        .buffered(CONCURRENT_LAYERS)
        .try_collect()
        .await?;

    let size = unpacked_size(store, &layer_records);
    let record = ImageRecord {
        id: config_digest,
        manifest_digest: Some(top_digest.clone()),
        // Docker does not tag what was pulled by digest, even when a tag was written too.
        repo_tags: match (&reference.digest, reference.tagged()) {
            (None, Some(tagged)) => vec![tagged],
            _ => Vec::new(),
        },
        repo_digests: vec![reference.with_digest(&top_digest)],
        created: config_json
            .get("created")
            .and_then(|c| c.as_str())
            .map(str::to_string),
        config: config_json,
        layers: layer_records,
        size,
    };
    blocking({
        let (store, record) = (store.clone(), record.clone());
        move || store.put_image(record)
    })
    .await?;
    progress.line(&format!("Pulled {reference} ({})", record.id));
    Ok(record)
}

/// Downloads a layer unless the store has it, then unpacks it (once) and checks its diff id.
async fn pull_layer(
    session: &Session,
    store: &ImageStore,
    layer: &Descriptor,
    diff_id: &Digest,
    progress: &Reporter,
) -> Result<LayerRecord> {
    let digest = parse_digest(session, &layer.digest)?;
    if !blocking_has_blob(store, &digest).await? {
        // Stored and unpacked as it arrives, in one pass over the bytes.
        let (media_type, diff_id) = (layer.media_type.clone(), diff_id.clone());
        return fetch_blob(
            session,
            store,
            &digest,
            layer.size,
            progress,
            move |store, digest, size, reader| {
                store.write_layer_blob(digest, Some(size), &media_type, Some(&diff_id), reader)
            },
        )
        .await;
    }
    progress.line(&format!("{}: already present", digest.short()));
    let record = blocking({
        let (store, digest, media_type, diff_id) = (
            store.clone(),
            digest.clone(),
            layer.media_type.clone(),
            diff_id.clone(),
        );
        move || store.ensure_layer(&digest, &media_type, Some(&diff_id))
    })
    .await?;
    Ok(record)
}

/// Fetches one manifest (by tag or digest); returns its bytes and their digest (checked against
/// the reference's digest by the client when it has one).
async fn fetch_manifest(
    session: &Session,
    target: &oci_client::Reference,
) -> Result<(Bytes, Digest)> {
    let (bytes, digest) = session
        .client
        .pull_manifest_raw(target, &session.auth, ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| session.error("fetching the manifest", e))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(session.fail(format!(
            "the manifest is {} bytes; manifests over {MAX_MANIFEST_BYTES} bytes are refused",
            bytes.len()
        )));
    }
    // The client computed or checked `digest`; recompute so what the store keeps is what it names.
    let actual = Digest::of(&bytes);
    let claimed = parse_digest(session, &digest)?;
    if claimed != actual {
        return Err(ImageError::DigestMismatch {
            digest: claimed.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok((bytes, actual))
}

fn parse_manifest(session: &Session, bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        session.fail(format!(
            "the registry sent a manifest that cannot be read: {e}"
        ))
    })?;
    if manifest.schema_version != 2 {
        return Err(session.fail(format!(
            "the manifest has schema version {}; only schema 2 (Docker v2 schema 2 and OCI) is supported",
            manifest.schema_version
        )));
    }
    if let Some(t) = &manifest.media_type {
        if !ACCEPTED_MANIFESTS.contains(&t.as_str()) {
            return Err(session.fail(format!("unsupported manifest media type {t:?}")));
        }
    }
    Ok(manifest)
}

/// The first linux/amd64 entry of an index (without a variant, or `v1`, preferred as the one
/// every amd64 machine runs).
fn choose_platform(entries: &[IndexEntry]) -> Option<&str> {
    let matching = |e: &&IndexEntry| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.os == PLATFORM_OS && p.architecture == PLATFORM_ARCH)
    };
    let baseline = entries.iter().filter(matching).find(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| matches!(p.variant.as_deref(), None | Some("v1") | Some("")))
    });
    baseline
        .or_else(|| entries.iter().find(matching))
        .map(|e| e.digest.as_str())
}

fn is_layer_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// The config's `rootfs.diff_ids`.
fn diff_ids(config: &serde_json::Value) -> std::result::Result<Vec<Digest>, String> {
    let list = config
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .ok_or("it has no rootfs.diff_ids")?;
    list.iter()
        .map(|d| {
            d.as_str()
                .ok_or_else(|| "a diff id is not a string".to_string())
                .and_then(|d| Digest::parse(d).map_err(|e| e.to_string()))
        })
        .collect()
}

/// A single-platform image for another platform is pulled as Docker does, with a warning.
fn check_platform(config: &serde_json::Value) {
    let os = config.get("os").and_then(|v| v.as_str()).unwrap_or("");
    let arch = config
        .get("architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if (!os.is_empty() && os != PLATFORM_OS) || (!arch.is_empty() && arch != PLATFORM_ARCH) {
        tracing::warn!(
            os,
            arch,
            "the image is not for {PLATFORM_OS}/{PLATFORM_ARCH}; it may not run"
        );
    }
}

fn parse_digest(session: &Session, text: &str) -> Result<Digest> {
    Digest::parse(text).map_err(|e| session.fail(format!("the registry named a blob badly: {e}")))
}

/// The unpacked size of an image: the store's recorded size of each unpacked layer
/// (`layers/<diff id>/size`, see the module docs of `image`), or the blob's size when that is
/// not recorded.
fn unpacked_size(store: &ImageStore, layers: &[LayerRecord]) -> u64 {
    layers
        .iter()
        .map(|l| {
            let file = store
                .root()
                .join("layers")
                .join(l.diff_id.hex())
                .join("size");
            std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(l.size)
        })
        .sum()
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(ImageError::Other(format!(
            "an image store task failed: {e}"
        )))
    })
}

/// `has_blob` hashes the whole blob, so it runs off the async threads too.
async fn blocking_has_blob(store: &ImageStore, digest: &Digest) -> Result<bool> {
    let (store, digest) = (store.clone(), digest.clone());
    blocking(move || Ok(store.has_blob(&digest))).await
}

async fn store_bytes(store: &ImageStore, digest: Digest, bytes: Bytes) -> Result<()> {
    let store = store.clone();
    blocking(move || {
        if !store.has_blob(&digest) {
            store.write_blob(&digest, Some(bytes.len() as u64), &mut bytes.as_ref())?;
        }
        Ok(())
    })
    .await
}

/// Streams one blob from the registry into the store with `write` (`write_blob`, or
/// `write_layer_blob` for a layer), which checks its size and digest before it becomes visible.
async fn fetch_blob<T: Send + 'static>(
    session: &Session,
    store: &ImageStore,
    digest: &Digest,
    size: u64,
    progress: &Reporter,
    write: impl FnOnce(&ImageStore, &Digest, u64, &mut dyn std::io::Read) -> Result<T> + Send + 'static,
) -> Result<T> {
    let digest_text = digest.to_string();
    // The store hashes every byte it receives, and its check is the one that counts. Asked as
    // the range from byte 0, oci-client hands the bytes over without hashing them a second
    // time on the async threads (a third of a core at 100 MB/s); a registry that ignores
    // ranges sends the whole blob (200), which oci-client then also checks. (A range of an
    // empty blob cannot be satisfied, so that one is asked plainly.)
    let response = if size > 0 {
        session
            .client
            .pull_blob_stream_partial(&session.target, digest_text.as_str(), 0, None)
            .await
            .map(|r| match r {
                oci_client::client::BlobResponse::Full(s)
                | oci_client::client::BlobResponse::Partial(s) => s,
            })
    } else {
        session
            .client
            .pull_blob_stream(&session.target, digest_text.as_str())
            .await
    }
    .map_err(|e| session.error(&format!("fetching blob {digest}"), e))?;
    let bar = progress.blob(digest, size);

    // The store reads synchronously; the download feeds it through a small bounded channel, so
    // a slow disk slows the download instead of filling memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let writer = tokio::task::spawn_blocking({
        let (store, digest) = (store.clone(), digest.clone());
        move || {
            let mut reader = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            write(&store, &digest, size, &mut reader)
        }
    });
    let mut stream = response.stream;
    let mut network_error = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                bar.advance(chunk.len());
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // the store stopped reading: it has the reason
                }
            }
            // oci-client checks the digest too; the store's check is the one that counts (it
            // also discards what it received), so its error is the one reported.
            Err(e) if is_digest_error(&e) => break,
            Err(e) => {
                network_error = Some(error_chain(&e));
                let _ = tx.send(Err(e)).await;
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.unwrap_or_else(|e| {
        Err(ImageError::Other(format!(
            "an image store task failed: {e}"
        )))
    });
    match (written, network_error) {
        (Ok(value), _) => {
            bar.finish("downloaded");
            Ok(value)
        }
        (Err(_), Some(network)) => {
            bar.finish("failed");
            Err(session.fail(format!(
                "downloading blob {digest} from {}: {network}",
                session.address
            )))
        }
        (Err(e), None) => {
            bar.finish("failed");
            Err(e)
        }
    }
}

fn is_digest_error(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

/// A blocking `Read` over chunks arriving from the async download.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Where progress goes: bars on a terminal, lines otherwise, or nowhere.
enum Reporter {
    Quiet,
    Lines,
    Bars(MultiProgress),
}

impl Reporter {
    fn new(progress: Progress) -> Reporter {
        match progress {
            Progress::Quiet => Reporter::Quiet,
            Progress::Lines => Reporter::Lines,
            Progress::Auto if std::io::stderr().is_terminal() => {
                Reporter::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            }
            Progress::Auto => Reporter::Lines,
        }
    }

    fn line(&self, text: &str) {
        match self {
            Reporter::Quiet => {}
            Reporter::Lines => eprintln!("{text}"),
            Reporter::Bars(multi) => {
                let _ = multi.println(text);
            }
        }
    }

    fn blob(&self, digest: &Digest, size: u64) -> BlobProgress {
        let name = digest.short().to_string();
        match self {
            Reporter::Quiet => BlobProgress::Quiet,
            Reporter::Lines => {
                eprintln!("{name}: downloading {}", indicatif::HumanBytes(size));
                BlobProgress::Line(name)
            }
            Reporter::Bars(multi) => {
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = multi.add(ProgressBar::new(size).with_style(style).with_prefix(name));
                BlobProgress::Bar(bar)
            }
        }
    }
}

enum BlobProgress {
    Quiet,
    Line(String),
    Bar(ProgressBar),
}

impl BlobProgress {
    fn advance(&self, bytes: usize) {
        if let BlobProgress::Bar(bar) = self {
            bar.inc(bytes as u64);
        }
    }

    fn finish(&self, status: &'static str) {
        match self {
            BlobProgress::Quiet => {}
            BlobProgress::Line(name) => eprintln!("{name}: {status}"),
            BlobProgress::Bar(bar) => bar.finish_with_message(status),
        }
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A copy of a shared pull's error for each of its waiters, keeping its kind (tests and callers
/// match on `UnsafeLayer`, `DigestMismatch`...).
fn duplicate_error(e: &ImageError) -> ImageError {
    match e {
        ImageError::InvalidReference { reference, reason } => ImageError::InvalidReference {
            reference: reference.clone(),
            reason: reason.clone(),
        },
        ImageError::InvalidDigest { digest, reason } => ImageError::InvalidDigest {
            digest: digest.clone(),
            reason: reason.clone(),
        },
        ImageError::NotFound(name) => ImageError::NotFound(name.clone()),
        ImageError::DigestMismatch { digest, actual } => ImageError::DigestMismatch {
            digest: digest.clone(),
            actual: actual.clone(),
        },
        ImageError::UnsafeLayer { layer, reason } => ImageError::UnsafeLayer {
            layer: layer.clone(),
            reason: reason.clone(),
        },
        ImageError::BadLayer { layer, reason } => ImageError::BadLayer {
            layer: layer.clone(),
            reason: reason.clone(),
        },
        ImageError::Pull { reference, reason } => ImageError::Pull {
            reference: reference.clone(),
            reason: reason.clone(),
        },
        ImageError::Io {
            operation,
            path,
            source,
        } => ImageError::Io {
            operation,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => ImageError::Other(other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;

    #[test]
    fn loopback_and_named_registries_are_plain_http() {
        assert!(is_insecure("localhost:5000", &[]));
        assert!(is_insecure("localhost", &[]));
        assert!(is_insecure("127.0.0.1:39999", &[]));
        assert!(is_insecure("[::1]:5000", &[]));
        assert!(!is_insecure("docker.io", &[]));
        assert!(!is_insecure("registry.example.com:5000", &[]));
        let named = vec![
            "registry.example.com".to_string(),
            "http://other:81/".to_string(),
        ];
        assert!(is_insecure("registry.example.com:5000", &named));
        assert!(is_insecure("registry.example.com", &named));
        assert!(is_insecure("other:81", &named));
        assert!(!is_insecure("other:82", &named));
        assert!(!is_insecure("example.com", &named));
    }

    fn config_dir(json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        dir
    }

    #[test]
    fn pulls_share_a_download_only_with_the_same_credentials() {
        let reference = Reference::parse("127.0.0.1:5000/app:1").unwrap();
        let alice = Credentials {
            username: "alice".into(),
            password: "a".into(),
        };
        let wrong = Credentials {
            password: "b".into(),
            ..alice.clone()
        };
        assert_eq!(in_flight_key(&reference, None), reference.to_string());
        assert_eq!(
            in_flight_key(&reference, Some(&alice)),
            in_flight_key(&reference, Some(&alice.clone()))
        );
        assert_ne!(
            in_flight_key(&reference, Some(&alice)),
            in_flight_key(&reference, Some(&wrong))
        );
        assert_ne!(
            in_flight_key(&reference, Some(&alice)),
            in_flight_key(&reference, None)
        );
        assert!(!format!("{alice:?}").contains("\"a\""));
    }

    #[test]
    fn docker_config_auths() {
        // "alice:s3:cret" and "bob:pw" in base64.
        let dir = config_dir(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "Ym9iOnB3"},
                "reg.example.com:5000": {"auth": "YWxpY2U6czM6Y3JldA=="},
                "http://plain.example.com/v2/": {"username": "u", "password": "p"},
                "bad.example.com": {"auth": "!!!"}
            }}"#,
        );
        let creds = |r: &str| credentials_from_docker_config(dir.path(), r);
        assert_eq!(
            creds("reg.example.com:5000"),
            Some(Credentials {
                username: "alice".into(),
                password: "s3:cret".into()
            })
        );
        assert_eq!(creds("docker.io").unwrap().username, "bob");
        assert_eq!(creds("plain.example.com").unwrap().password, "p");
        assert_eq!(creds("reg.example.com"), None);
        assert_eq!(creds("bad.example.com"), None);
        assert_eq!(creds("unknown.example.com"), None);
        assert_eq!(
            credentials_from_docker_config(Path::new("/nonexistent"), "x"),
            None
        );
        let broken = config_dir("{not json");
        assert_eq!(credentials_from_docker_config(broken.path(), "x"), None);
    }

    fn entry(digest: &str, os: &str, arch: &str, variant: Option<&str>) -> IndexEntry {
        IndexEntry {
            digest: digest.into(),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn index_resolves_to_linux_amd64() {
        let entries = vec![
            entry("arm", "linux", "arm64", Some("v8")),
            entry("v3", "linux", "amd64", Some("v3")),
            entry("amd", "linux", "amd64", None),
            entry("win", "windows", "amd64", None),
        ];
        assert_eq!(choose_platform(&entries), Some("amd"));
        assert_eq!(choose_platform(&entries[..2]), Some("v3"));
        assert_eq!(choose_platform(&entries[..1]), None);
        assert_eq!(choose_platform(&[]), None);
    }

    #[test]
    fn manifests_are_told_apart() {
        let index: Manifest =
            serde_json::from_str(r#"{"schemaVersion":2,"manifests":[]}"#).unwrap();
        assert!(index.is_index());
        let list: Manifest = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST_LIST}","manifests":[]}}"#
        ))
        .unwrap();
        assert!(list.is_index());
        let image: Manifest = serde_json::from_str(&format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","digest":"sha256:00","size":2}},"layers":[]}}"#
        ))
        .unwrap();
        assert!(!image.is_index());
        assert!(is_layer_media_type(
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ));
        assert!(is_layer_media_type(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_layer_media_type(
            "application/vnd.wasm.content.layer.v1+wasm"
        ));
    }

    #[test]
    fn diff_ids_are_read_from_the_config() {
        let d = format!("sha256:{}", "a".repeat(64));
        let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [d]}});
        assert_eq!(diff_ids(&config).unwrap(), vec![Digest::parse(&d).unwrap()]);
        assert!(diff_ids(&serde_json::json!({})).is_err());
        assert!(diff_ids(&serde_json::json!({"rootfs": {"diff_ids": ["md5:x"]}})).is_err());
    }

    #[test]
    fn duplicated_errors_keep_their_kind() {
        let e = duplicate_error(&ImageError::UnsafeLayer {
            layer: "l".into(),
            reason: "r".into(),
        });
        assert!(matches!(e, ImageError::UnsafeLayer { .. }));
        let io = ImageError::io(
            "reading",
            Path::new("/x"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        match duplicate_error(&io) {
            ImageError::Io { source, path, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
                assert_eq!(path, "/x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn channel_reader_reassembles_chunks() {
        use std::io::Read;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let feeder = std::thread::spawn(move || {
            for chunk in [&b"hello "[..], b"", b"world"] {
                tx.blocking_send(Ok(Bytes::from_static(chunk))).unwrap();
            }
        });
        let mut reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        feeder.join().unwrap();
        assert_eq!(out, "hello world");
    }
}
