//! Just enough of the Kubernetes protobuf encoding to read the bodies kubectl sends only that
//! way, with no fallback to JSON: a Namespace (`kubectl create namespace NAME`) and a Secret
//! (`kubectl create secret generic|docker-registry|tls NAME`).

use serde_json::{json, Map, Value};

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.data.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.pos >= self.data.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.pos += 8;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.data.len())
                    .ok_or("truncated field")?;
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Field::Bytes(bytes)
            }
            5 => {
                self.pos += 4;
                Field::Fixed
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        if self.pos > self.data.len() {
            return Err("truncated field".into());
        }
        Ok(Some((number, field)))
    }
}

fn string(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

fn map_entry(bytes: &[u8]) -> Result<(String, String), String> {
    let (k, v) = map_entry_bytes(bytes)?;
    Ok((k, string(&v)?))
}

/// A `map<string, bytes>` entry: the key and the raw value.
fn map_entry_bytes(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let mut r = Reader::new(bytes);
    let (mut k, mut v) = (String::new(), Vec::new());
    while let Some((n, f)) = r.next()? {
        if let Field::Bytes(b) = f {
            match n {
                1 => k = string(b)?,
                2 => v = b.to_vec(),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut r = Reader::new(bytes);
    let mut meta = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    while let Some((n, f)) = r.next()? {
        let Field::Bytes(b) = f else { continue };
        match n {
            1 => {
                meta.insert("name".into(), json!(string(b)?));
            }
            2 => {
                meta.insert("generateName".into(), json!(string(b)?));
            }
            3 => {
                meta.insert("namespace".into(), json!(string(b)?));
            }
            11 => {
                let (k, v) = map_entry(b)?;
                labels.insert(k, json!(v));
            }
            12 => {
                let (k, v) = map_entry(b)?;
                annotations.insert(k, json!(v));
            }
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Ok(Value::Object(meta))
}

/// Decodes a protobuf body of kind `expected` (`Namespace` or `Secret`) into its JSON form.
/// A Namespace keeps its metadata (name, generateName, labels, annotations; spec and status are
/// left to defaulting); a Secret also its data (base64 in JSON), stringData, type and immutable.
pub fn decode(body: &[u8], expected: &str) -> Result<Value, String> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the Kubernetes magic bytes")?;
    let mut unknown = Reader::new(rest);
    let mut raw = None;
    let mut kind = String::new();
    while let Some((n, f)) = unknown.next()? {
        match (n, f) {
            (1, Field::Bytes(type_meta)) => {
                let mut r = Reader::new(type_meta);
                while let Some((n, f)) = r.next()? {
                    if let (2, Field::Bytes(b)) = (n, f) {
                        kind = string(b)?;
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    if !matches!(kind.as_str(), "Namespace" | "Secret") {
        return Err(format!(
            "protobuf bodies are accepted only for Namespace and Secret, not {kind:?}; send JSON or YAML"
        ));
    }
    if kind != expected {
        return Err(format!(
            "the protobuf body holds a {kind}, not a {expected}"
        ));
    }
    let raw = raw.ok_or("the protobuf body holds no object")?;
    let mut object = json!({"apiVersion": "v1", "kind": kind, "metadata": {}});
    let (mut data, mut string_data) = (Map::new(), Map::new());
    let mut r = Reader::new(raw);
    while let Some((n, f)) = r.next()? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(b)) => object["metadata"] = object_meta(b)?,
            ("Secret", 2, Field::Bytes(b)) => {
                use base64::Engine as _;
                let (k, v) = map_entry_bytes(b)?;
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                );
            }
            ("Secret", 3, Field::Bytes(b)) => object["type"] = json!(string(b)?),
            ("Secret", 4, Field::Bytes(b)) => {
                let (k, v) = map_entry(b)?;
                string_data.insert(k, json!(v));
            }
            ("Secret", 5, Field::Varint(v)) => object["immutable"] = json!(v != 0),
            _ => {}
        }
    }
    if !data.is_empty() {
        object["data"] = Value::Object(data);
    }
    if !string_data.is_empty() {
        object["stringData"] = Value::Object(string_data);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3) | 2, u8::try_from(bytes.len()).expect("short")];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_what_kubectl_create_namespace_sends() {
        let type_meta = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let label = [field(1, b"team"), field(2, b"a")].concat();
        let meta = [field(1, b"custom2"), field(11, &label)].concat();
        let ns = [field(1, &meta), field(2, b""), field(3, b"")].concat();
        let body = [
            MAGIC.to_vec(),
            field(1, &type_meta),
            field(2, &ns),
            field(3, b""),
            field(4, b""),
        ]
        .concat();
        let v = decode(&body, "Namespace").expect("decodes");
        assert_eq!(v["metadata"]["name"], "custom2");
        assert_eq!(v["metadata"]["labels"]["team"], "a");
        assert!(decode(&body, "Secret").is_err());
    }

    #[test]
    fn decodes_what_kubectl_create_secret_sends() {
        let type_meta = [field(1, b"v1"), field(2, b"Secret")].concat();
        let meta = [field(1, b"reg"), field(3, b"default")].concat();
        let entry = [field(1, b".dockerconfigjson"), field(2, b"{\"auths\":{}}")].concat();
        let string_entry = [field(1, b"note"), field(2, b"hi")].concat();
        let secret = [
            field(1, &meta),
            field(2, &entry),
            field(3, b"kubernetes.io/dockerconfigjson"),
            field(4, &string_entry),
            vec![5 << 3, 1],
        ]
        .concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &secret)].concat();
        let v = decode(&body, "Secret").expect("decodes");
        assert_eq!(v["metadata"]["name"], "reg");
        assert_eq!(v["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(v["data"][".dockerconfigjson"], "eyJhdXRocyI6e319");
        assert_eq!(v["stringData"]["note"], "hi");
        assert_eq!(v["immutable"], true);
    }

    #[test]
    fn refuses_garbage() {
        assert!(decode(b"nope", "Namespace").is_err());
        assert!(decode(b"k8s\0\x0a\xff", "Namespace").is_err());
    }
}
