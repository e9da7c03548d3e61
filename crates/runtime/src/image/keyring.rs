//! Registry credentials from docker configs (a node's `config.json`, a pod's
//! `kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg` pull secrets) and which of them
//! an image gets, matched as kubelet's credential keyring matches.
//!
//! A config key is a registry address as people write it: `host`, `host:port`, with or without
//! `https://` or `http://`, with a path (`/v1/`, `/v2/` are API prefixes and dropped; any other
//! path only covers the repositories under it), and `*` globs a host label
//! (`*.example.com`). An image matches a key when the hosts match label by label, the ports are
//! the same (none matches none), and the key's path is a prefix of the repository. Docker Hub's
//! names (`docker.io`, `index.docker.io`, `registry-1.docker.io`) are one registry.

use base64::Engine as _;

use super::pull::Credentials;
use super::reference::{Reference, DEFAULT_REGISTRY};

/// Hosts that all name Docker Hub.
const DOCKER_HUB_HOSTS: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// One config entry: where it applies and what it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// Lower-cased host labels, `*` allowed in each.
    host: Vec<String>,
    port: Option<String>,
    /// The repository prefix, without leading or trailing `/`; empty for all.
    path: String,
    credentials: Credentials,
}

/// Credentials by registry, from one or more docker configs.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: Vec<Entry>,
}

/// Why a docker config could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyringError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
}

impl Keyring {
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Whether no entry was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the `auths` of a `config.json` (`{"auths": {KEY: ENTRY}}`, a
    /// `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson`). Entries without usable
    /// credentials are skipped; the number added is returned.
    pub fn add_config_json(&mut self, json: &[u8]) -> Result<usize, KeyringError> {
        let config: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| KeyringError::Json(e.to_string()))?;
        let auths = config
            .get("auths")
            .ok_or_else(|| KeyringError::Shape("it has no \"auths\"".into()))?;
        self.add_auths(auths)
    }

    /// Adds a legacy `.dockercfg` (`{KEY: ENTRY}`, a `kubernetes.io/dockercfg` secret).
    pub fn add_dockercfg(&mut self, json: &[u8]) -> Result<usize, KeyringError> {
        let auths: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| KeyringError::Json(e.to_string()))?;
        self.add_auths(&auths)
    }

    fn add_auths(&mut self, auths: &serde_json::Value) -> Result<usize, KeyringError> {
        let auths = auths.as_object().ok_or_else(|| {
            KeyringError::Shape("the auths are not an object of registry entries".into())
        })?;
        let mut added = 0;
        for (key, entry) in auths {
            let (Some(credentials), Some((host, port, path))) =
                (entry_credentials(entry), parse_key(key))
            else {
                tracing::warn!(
                    registry = key,
                    "a docker config entry without usable credentials or address is skipped"
                );
                continue;
            };
            self.entries.push(Entry {
                host,
                port,
                path,
                credentials,
            });
            added += 1;
        }
        Ok(added)
    }

    /// The credentials for `reference`, most specific key first (longest address), as kubelet
    /// orders them; each is to be tried in turn. Empty when no key matches.
    pub fn lookup(&self, reference: &Reference) -> Vec<Credentials> {
        self.lookup_registry(&reference.registry, &reference.repository)
    }

    /// As [`Keyring::lookup`], for a registry (`host[:port]`) and repository path.
    pub fn lookup_registry(&self, registry: &str, repository: &str) -> Vec<Credentials> {
        let (host, port) = split_port(registry);
        let host = host.to_ascii_lowercase();
        let mut found: Vec<(usize, &Entry)> = self
            .entries
            .iter()
            .filter(|e| {
                e.port.as_deref() == port
                    && host_matches(&e.host, &host)
                    && path_covers(&e.path, repository)
            })
            .map(|e| (e.host.join(".").len() + e.path.len(), e))
            .collect();
        // Stable: among equally specific keys the earlier (first secret) comes first.
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut out: Vec<Credentials> = Vec::new();
        for (_, e) in found {
            if !out.contains(&e.credentials) {
                out.push(e.credentials.clone());
            }
        }
        out
    }
}

/// The credentials of one `auths` entry: `auth` (base64 of `user:password`) or
/// `username`/`password`.
fn entry_credentials(entry: &serde_json::Value) -> Option<Credentials> {
    if let Some(auth) = entry
        .get("auth")
        .and_then(|a| a.as_str())
        .filter(|a| !a.trim().is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())?;
        let (username, password) = decoded.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    let username = entry.get("username")?.as_str()?;
    let password = entry.get("password").and_then(|p| p.as_str()).unwrap_or("");
    (!username.is_empty()).then(|| Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// `host:port` → (`host`, `port`); IPv6 in brackets keeps them.
fn split_port(address: &str) -> (&str, Option<&str>) {
    if address.starts_with('[') {
        return match address.find("]:") {
            Some(end) => (&address[..=end], Some(&address[end + 2..])),
            None => (address, None),
        };
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => {
            (host, Some(port))
        }
        _ => (address, None),
    }
}

/// A config key as (host labels, port, repository prefix); None when it has no host.
fn parse_key(key: &str) -> Option<(Vec<String>, Option<String>, String)> {
    let rest = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (address, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if address.is_empty() {
        return None;
    }
    let path = path
        .strip_prefix("/v1/")
        .or_else(|| path.strip_prefix("/v2/"))
        .unwrap_or(path);
    let path = if path == "/v1" || path == "/v2" {
        ""
    } else {
        path
    };
    let (host, port) = split_port(address);
    let host = host.to_ascii_lowercase();
    let labels = host.split('.').map(str::to_string).collect();
    Some((
        labels,
        port.map(str::to_string),
        path.trim_matches('/').to_string(),
    ))
}

/// Whether the key's host labels match the image's host, `*` globbing within a label.
fn host_matches(pattern: &[String], host: &str) -> bool {
    let joined = pattern.join(".");
    if DOCKER_HUB_HOSTS.contains(&joined.as_str()) {
        return DOCKER_HUB_HOSTS.contains(&host) || host == DEFAULT_REGISTRY;
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() == pattern.len() && pattern.iter().zip(&labels).all(|(p, l)| glob_matches(p, l))
}

/// `*` matches any run of characters (none included); everything else itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob_matches(rest, &tail[i..]))
        }
    }
}

/// Whether `prefix` (path segments) covers `repository`: equal, or a parent of it.
fn path_covers(prefix: &str, repository: &str) -> bool {
    prefix.is_empty()
        || repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;

    fn creds(user: &str) -> Credentials {
        Credentials {
            username: user.into(),
            password: "pw".into(),
        }
    }

    fn auth(user: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
    }

    fn users(keyring: &Keyring, image: &str) -> Vec<String> {
        keyring
            .lookup(&Reference::parse(image).unwrap())
            .into_iter()
            .map(|c| c.username)
            .collect()
    }

    #[test]
    fn keys_match_as_kubelet_matches_them() {
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": auth("hub")},
            "reg.example.com:5000": {"username": "port", "password": "pw"},
            "http://reg.example.com": {"auth": auth("noport")},
            "reg.example.com/team": {"auth": auth("team")},
            "*.corp.example": {"auth": auth("glob")},
            "127.0.0.1:5999/v2/": {"auth": auth("local")},
            "broken.example.com": {"auth": "!!!"},
        }});
        let mut keyring = Keyring::new();
        let added = keyring
            .add_config_json(config.to_string().as_bytes())
            .unwrap();
        assert_eq!(added, 6);
        assert_eq!(users(&keyring, "busybox"), ["hub"]);
        assert_eq!(users(&keyring, "docker.io/luksa/kubia:v1"), ["hub"]);
        assert_eq!(users(&keyring, "reg.example.com:5000/x"), ["port"]);
        assert_eq!(users(&keyring, "reg.example.com/x"), ["noport"]);
        // The most specific key first, the host-wide one after it.
        assert_eq!(
            users(&keyring, "reg.example.com/team/app"),
            ["team", "noport"]
        );
        assert_eq!(users(&keyring, "reg.example.com/teamx/app"), ["noport"]);
        assert_eq!(users(&keyring, "a.corp.example/x"), ["glob"]);
        assert!(users(&keyring, "a.b.corp.example/x").is_empty());
        assert_eq!(users(&keyring, "127.0.0.1:5999/busybox:1"), ["local"]);
        assert!(users(&keyring, "127.0.0.1:6000/busybox").is_empty());
        assert!(users(&keyring, "broken.example.com/x").is_empty());
        assert_eq!(
            keyring.lookup(&Reference::parse("reg.example.com:5000/x").unwrap()),
            [creds("port")]
        );
    }

    #[test]
    fn legacy_dockercfg_and_bad_configs() {
        let mut keyring = Keyring::new();
        let cfg = serde_json::json!({"quay.io": {"auth": auth("q"), "email": "x@y"}});
        assert_eq!(keyring.add_dockercfg(cfg.to_string().as_bytes()), Ok(1));
        assert_eq!(users(&keyring, "quay.io/org/app"), ["q"]);
        assert!(matches!(
            keyring.add_config_json(b"{nope"),
            Err(KeyringError::Json(_))
        ));
        assert!(matches!(
            keyring.add_config_json(b"{\"other\": 1}"),
            Err(KeyringError::Shape(_))
        ));
        assert!(matches!(
            keyring.add_dockercfg(b"[1]"),
            Err(KeyringError::Shape(_))
        ));
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*c", "abbc"));
        assert!(glob_matches("a*", "a"));
        assert!(!glob_matches("a*c", "abd"));
    }
}
