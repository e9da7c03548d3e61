//! Image references, normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`, `localhost:5000/x` keeps its registry.
//! OWNER: helper "image-pull". Signatures are the contract; keep them.

use super::digest::Digest;
use super::Result;

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
        let _ = text;
        todo!("image-pull helper")
    }

    /// The short form users write and `crictl images` shows: `docker.io/library/busybox`
    /// becomes `busybox`... see `familiar_name`.
    pub fn familiar_name(&self) -> String {
        todo!("image-pull helper")
    }
}

impl std::fmt::Display for Reference {
    /// The full normalised form: `docker.io/library/busybox:latest`, `x/y@sha256:...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = f;
        todo!("image-pull helper")
    }
}
