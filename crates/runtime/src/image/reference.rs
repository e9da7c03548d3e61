//! Image references, normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry.
//!
//! The grammar is the one of `github.com/distribution/reference` (what `docker pull` and the
//! kubelet's CRI runtimes accept), so a name that works there works here and the other way round.

use super::digest::Digest;
use super::{ImageError, Result};

/// Docker Hub, as references name it.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// Docker Hub's legacy name, normalised to [`DEFAULT_REGISTRY`].
const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";
/// The namespace of Docker Hub's official images (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library";
/// distribution/reference's `NameTotalLengthMax`: registry, `/` and repository together.
const NAME_MAX: usize = 255;
/// A tag is `[\w][\w.-]{0,127}`.
const TAG_MAX: usize = 128;

/// A normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `registry.example.com`.
    pub registry: String,
    /// `library/busybox`, `luksa/kubia`.
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference as Docker does; invalid ones get a clear error.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |reason: String| ImageError::InvalidReference {
            reference: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Docker refuses these too: they would be confused with image ids.
            return Err(invalid(
                "a 64-character hexadecimal string is an image id, not a repository name".into(),
            ));
        }

        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                let digest = Digest::parse(digest).map_err(|_| {
                    invalid(format!(
                        "{digest:?} is not a digest of the form sha256:<64 hexadecimal digits>"
                    ))
                })?;
                (rest, Some(digest))
            }
            None => (text, None),
        };

        // A tag follows the last `:` that comes after the last `/`; an earlier `:` is a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let (name, tag) = rest.split_at(last_slash + i);
                (name, Some(&tag[1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(invalid)?;
        }

        let (registry, repository) = split_registry(name);
        if let Some(registry) = &registry {
            check_registry(registry).map_err(invalid)?;
        }
        if repository.is_empty() {
            return Err(invalid("the repository name is empty".into()));
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "repository name {repository:?} must be lower-case"
            )));
        }
        for component in repository.split('/') {
            check_path_component(component).map_err(invalid)?;
        }

        let registry = match registry {
            None => DEFAULT_REGISTRY.to_string(),
            Some(r) if r == LEGACY_DEFAULT_REGISTRY => DEFAULT_REGISTRY.to_string(),
            Some(r) => r.to_string(),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{repository}")
        } else {
            repository.to_string()
        };
        let full_len = registry.len() + 1 + repository.len();
        if full_len > NAME_MAX {
            return Err(invalid(format!(
                "the name is {full_len} characters long; at most {NAME_MAX} are allowed"
            )));
        }

        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The short form users write and `crictl images` shows: `docker.io/library/busybox`
    /// becomes `busybox`, `docker.io/user/x` becomes `user/x`, other registries are kept; no tag
    /// or digest.
    pub fn familiar_name(&self) -> String {
        if self.registry == DEFAULT_REGISTRY {
            match self.repository.strip_prefix("library/") {
                Some(official) if !official.contains('/') => official.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        }
    }

    /// `registry/repository`, without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The full tag reference (`docker.io/library/busybox:latest`), if there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|tag| format!("{}:{tag}", self.name()))
    }

    /// The full digest reference of this repository at `digest`:
    /// `docker.io/library/busybox@sha256:...`.
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl std::fmt::Display for Reference {
    /// The full normalised form: `docker.io/library/busybox:latest`, `x/y@sha256:...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(text: &str) -> Result<Self> {
        Reference::parse(text)
    }
}

/// Splits `name` into its registry (if it names one) and repository, by Docker's rule: the
/// first component is a registry when it contains `.` or `:`, is `localhost`, or has upper-case
/// letters (repositories cannot).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// A registry: a host name (dot-separated labels of letters, digits and inner `-`), an IPv4
/// address or a bracketed IPv6 address, with an optional numeric port.
fn check_registry(registry: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("registry {registry:?} {why}"));
    let (host, port) = if let Some(after) = registry.strip_prefix('[') {
        let Some((v6, port)) = after.split_once(']') else {
            return bad("has an unclosed '['");
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad("is not a valid IPv6 address");
        }
        match port {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad("has text after the IPv6 address that is not a port"),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return bad("has an empty host name");
        }
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return bad("is not a valid host name");
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad("has a port that is not a number");
        }
    }
    Ok(())
}

/// A path component: lower-case letters and digits, separated by one `.`, one or two `_`, or
/// any number of `-`.
fn check_path_component(component: &str) -> std::result::Result<(), String> {
    let bad = || {
        Err(format!(
            "repository path component {component:?} is invalid: use lower-case letters and \
             digits, separated by '.', '_', '__' or dashes"
        ))
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) if alnum(first) && alnum(last) => {}
        _ => return bad(),
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return bad();
        }
    }
    Ok(())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= TAG_MAX
        && tag.as_bytes().first().is_some_and(|&b| word(b))
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is invalid: at most {TAG_MAX} letters, digits, '_', '.' or '-', \
             not starting with '.' or '-'"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn full(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    fn reason(text: &str) -> String {
        match Reference::parse(text) {
            Err(ImageError::InvalidReference { reference, reason }) => {
                assert_eq!(reference, text);
                reason
            }
            other => panic!("{text:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(full("luksa/kubia"), "docker.io/luksa/kubia:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/library/busybox:x"),
            "docker.io/library/busybox:x"
        );
        assert_eq!(full("index.docker.io/u/x"), "docker.io/u/x:latest");
        assert_eq!(full("a/b/c"), "docker.io/a/b/c:latest");
        // Without a slash a `:` is a tag, not a port.
        assert_eq!(full("foo:5000"), "docker.io/library/foo:5000");
    }

    #[test]
    fn registries_are_recognised() {
        let r = Reference::parse("localhost:5000/x/y:1").unwrap();
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "x/y");
        assert_eq!(r.tag.as_deref(), Some("1"));
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(
            full("registry.example.com/team/app"),
            "registry.example.com/team/app:latest"
        );
        assert_eq!(full("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(full("[::1]:5000/app:v2"), "[::1]:5000/app:v2");
        assert_eq!(full("Registry/app"), "Registry/app:latest");
        // A one-component name on another registry gets no `library/`.
        assert_eq!(Reference::parse("quay.io/app").unwrap().repository, "app");
    }

    #[test]
    fn tags_and_digests() {
        let digest = format!("sha256:{HEX}");
        let r = Reference::parse(&format!("busybox@{digest}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), digest);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{digest}"));

        let r = Reference::parse(&format!("localhost:5000/x:1.0@{digest}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert_eq!(r.to_string(), format!("localhost:5000/x:1.0@{digest}"));
        assert_eq!(
            r.with_digest(r.digest.as_ref().unwrap()),
            format!("localhost:5000/x@{digest}")
        );
        assert_eq!(r.tagged().as_deref(), Some("localhost:5000/x:1.0"));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "docker.io/library/busybox:latest",
            "localhost:5000/x/y:1",
            "[::1]/a_b__c.d---e:T_1.x-y",
        ] {
            let r = Reference::parse(text).unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn familiar_names() {
        let f = |t: &str| Reference::parse(t).unwrap().familiar_name();
        assert_eq!(f("docker.io/library/busybox:1"), "busybox");
        assert_eq!(f("busybox"), "busybox");
        assert_eq!(f("docker.io/u/x"), "u/x");
        assert_eq!(f("docker.io/library/a/b"), "library/a/b");
        assert_eq!(f("localhost:5000/library/x:2"), "localhost:5000/library/x");
        assert_eq!(f(&format!("quay.io/a/b@sha256:{HEX}")), "quay.io/a/b");
    }

    #[test]
    fn invalid_references_say_why() {
        assert!(reason("").contains("empty"));
        assert!(reason("Busybox").contains("lower-case"));
        assert!(reason("docker.io/Library/busybox").contains("lower-case"));
        assert!(reason("busybox:").contains("tag"));
        assert!(reason("busybox:.x").contains("tag"));
        assert!(reason(&format!("busybox:{}", "t".repeat(129))).contains("tag"));
        assert!(reason("busybox@sha256:abc").contains("digest"));
        assert!(reason(&format!("busybox@sha512:{HEX}")).contains("digest"));
        assert!(reason("a//b").contains("component"));
        assert!(reason("a/-b").contains("component"));
        assert!(reason("a/b_").contains("component"));
        assert!(reason("a/b___c").contains("component"));
        assert!(reason("a/b..c").contains("component"));
        assert!(reason("host:port/x").contains("port"));
        assert!(reason("-bad.host/x").contains("host"));
        assert!(reason("[::1/x").contains("'['"));
        assert!(reason("example.com/").contains("empty"));
        assert!(reason(HEX).contains("image id"));
        let long = format!("example.com/{}", "a".repeat(250));
        assert!(reason(&long).contains("at most 255"));
        // 255 exactly is allowed.
        let ok = format!("example.com/{}", "a".repeat(255 - 12));
        assert!(Reference::parse(&ok).is_ok());
    }
}
