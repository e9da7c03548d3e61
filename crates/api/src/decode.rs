//! Parsing request bodies (JSON or YAML) into a JSON value that remembers where each field was
//! written (YAML line numbers) and which keys were written twice.
//! OWNER: helper "api-decode". Signatures are the contract with the API server; keep them.

use std::collections::BTreeMap;

/// The syntax a body was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// A parsed body: the value, plus the 1-based line of each field path (YAML only) and the
/// paths of keys that appeared more than once in one mapping (the last one wins, as in Kubernetes).
/// Paths are written as Kubernetes writes them: `metadata.labels.app`, `spec.containers[0].name`.
#[derive(Clone, Debug, Default)]
pub struct Document {
    pub value: serde_json::Value,
    pub lines: BTreeMap<String, u32>,
    pub duplicates: Vec<String>,
}

impl Document {
    /// The line a field path was written on, when the body was YAML.
    pub fn line_of(&self, path: &str) -> Option<u32> {
        self.lines.get(path).copied()
    }
}

/// A body that is not well-formed JSON or YAML.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// A message a user can act on, naming the line and column when known.
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

/// Parses one JSON or YAML document. A YAML stream with several documents is an error.
pub fn parse(body: &[u8], format: Format) -> Result<Document, SyntaxError> {
    let _ = (body, format);
    todo!("api-decode helper")
}

/// Converts a value into a typed object, reporting the path of a field with the wrong type
/// (`spec.containers[0].ports[0].containerPort: invalid type: string "x", expected i32`).
pub fn into_typed<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, TypeError> {
    let _ = value;
    todo!("api-decode helper")
}

/// A field whose JSON type does not fit the object's schema.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TypeError {
    pub path: String,
    pub message: String,
}
