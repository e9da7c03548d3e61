//! Content digests (`sha256:<hex>`): parsing, computing while streaming, checking.
//! OWNER: helper "image-store". Signatures are the contract; keep them.

use super::Result;

/// A sha256 content digest.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lower-case hex>`; any other algorithm or form is an error.
    pub fn parse(text: &str) -> Result<Self> {
        let _ = text;
        todo!("image-store helper")
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let _ = bytes;
        todo!("image-store helper")
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `crictl images` shows IMAGE ID.
    pub fn short(&self) -> &str {
        &self.hex[..12.min(self.hex.len())]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl TryFrom<String> for Digest {
    type Error = super::ImageError;
    fn try_from(text: String) -> Result<Self> {
        Digest::parse(&text)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}
