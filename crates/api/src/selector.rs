//! Label selectors (every operator Kubernetes has) and field selectors, parsed from query strings
//! and matched against objects.
//! OWNER: helper "api-select". Signatures are the contract with the API server; keep them.

use std::collections::BTreeMap;

/// An invalid selector; the message says what is wrong, in Kubernetes' words where it has them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A parsed `labelSelector`: `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    // private representation, owned by the helper
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let _ = text;
        todo!("api-select helper")
    }

    pub fn is_empty(&self) -> bool {
        todo!("api-select helper")
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let _ = labels;
        todo!("api-select helper")
    }
}

/// A parsed `fieldSelector`: `metadata.name=x,status.phase!=Running` (`=`, `==`, `!=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    // private representation, owned by the helper
}

impl FieldSelector {
    /// Parses and checks every field against what the resource (`pods`, `namespaces`, `nodes`,
    /// `events`, `leases`) supports: `field label not supported: spec.foo`.
    pub fn parse(text: &str, plural: &str) -> Result<Self, SelectorError> {
        let _ = (text, plural);
        todo!("api-select helper")
    }

    pub fn is_empty(&self) -> bool {
        todo!("api-select helper")
    }

    /// The value required for `field` by an `=`/`==` term, if any (lets the server look up
    /// `metadata.name=x` directly).
    pub fn exact(&self, field: &str) -> Option<&str> {
        let _ = field;
        todo!("api-select helper")
    }

    /// Matches an object (JSON, as stored) of the resource `plural`.
    pub fn matches(&self, plural: &str, object: &serde_json::Value) -> bool {
        let _ = (plural, object);
        todo!("api-select helper")
    }
}
