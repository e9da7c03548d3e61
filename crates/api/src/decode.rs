//! Parsing request bodies (JSON or YAML) into a JSON value that remembers where each field was
//! written (YAML line numbers) and which keys were written twice.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

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
    match format {
        Format::Json => parse_json(body),
        Format::Yaml => parse_yaml(body),
    }
}

/// Converts a value into a typed object, reporting the path of a field with the wrong type
/// (`spec.containers[0].ports[0].containerPort: invalid type: string "x", expected i32`).
pub fn into_typed<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> Result<T, TypeError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = String::new();
        for segment in err.path() {
            path = match segment {
                serde_path_to_error::Segment::Seq { index } => push_index(&path, *index),
                serde_path_to_error::Segment::Map { key } => push_key(&path, key),
                serde_path_to_error::Segment::Enum { variant } => push_key(&path, variant),
                serde_path_to_error::Segment::Unknown => push_key(&path, "?"),
            };
        }
        if path.is_empty() {
            // The whole body has the wrong shape (an array or a string instead of an object).
            path.push_str("(root)");
        }
        TypeError {
            path,
            message: err.into_inner().to_string(),
        }
    })
}

/// A field whose JSON type does not fit the object's schema.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TypeError {
    pub path: String,
    pub message: String,
}

/// The path of field `key` inside the object at `parent`, in Kubernetes' notation:
/// `metadata.labels` for ordinary names, `metadata.labels[example.com/app]` for keys holding
/// characters that would make a dotted path ambiguous.
pub fn push_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$');
    if !plain {
        format!("{parent}[{key}]")
    } else if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of item `index` of the list at `parent`: `spec.containers[0]`.
pub fn push_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

// ---------------------------------------------------------------------------------------------
// JSON

fn parse_json(body: &[u8]) -> Result<Document, SyntaxError> {
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = JsonSeed {
        path: String::new(),
        duplicates: &mut duplicates,
    };
    let value = seed
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(json_error)?;
    Ok(Document {
        value,
        lines: BTreeMap::new(),
        duplicates,
    })
}

fn json_error(err: serde_json::Error) -> SyntaxError {
    let (line, column) = (err.line(), err.column());
    let full = err.to_string();
    // serde_json appends " at line L column C"; we put the position first, as the YAML errors do.
    let suffix = format!(" at line {line} column {column}");
    let bare = full.strip_suffix(&suffix).unwrap_or(&full);
    if line == 0 {
        return SyntaxError {
            message: format!("json: {bare}"),
            line: None,
            column: None,
        };
    }
    SyntaxError {
        message: format!("json: line {line}, column {column}: {bare}"),
        line: u32::try_from(line).ok(),
        column: u32::try_from(column).ok(),
    }
}

/// Builds a `serde_json::Value` like `Value::deserialize` does, but notes keys written twice
/// in one object, which serde_json silently collapses.
struct JsonSeed<'a> {
    path: String,
    duplicates: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = JsonSeed {
                path: push_index(&self.path, items.len()),
                duplicates: &mut *self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let path = push_key(&self.path, &key);
            let value = access.next_value_seed(JsonSeed {
                path: path.clone(),
                duplicates: &mut *self.duplicates,
            })?;
            if map.insert(key, value).is_some() {
                self.duplicates.push(path);
            }
        }
        Ok(Value::Object(map))
    }
}

// ---------------------------------------------------------------------------------------------
// YAML

/// Deeper nesting than this is refused: no Kubernetes object comes close, and it keeps the
/// recursive builder's stack bounded (serde_json uses the same limit for JSON).
const MAX_DEPTH: usize = 128;

/// How many nodes aliases may add in total. Bounds "billion laughs" bodies, whose aliases of
/// aliases expand a few hundred bytes into gigabytes.
const MAX_ALIAS_NODES: usize = 100_000;

fn parse_yaml(body: &[u8]) -> Result<Document, SyntaxError> {
    let text = std::str::from_utf8(body).map_err(|err| SyntaxError {
        message: format!(
            "yaml: invalid UTF-8 at byte {}; send the body as UTF-8",
            err.valid_up_to()
        ),
        line: None,
        column: None,
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = YamlBuilder {
        parser: Parser::new_from_str(text),
        lines: BTreeMap::new(),
        duplicates: Vec::new(),
        anchors: HashMap::new(),
        alias_budget: MAX_ALIAS_NODES,
    };
    let value = builder.stream()?;
    Ok(Document {
        value,
        lines: builder.lines,
        duplicates: builder.duplicates,
    })
}

struct YamlBuilder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    lines: BTreeMap<String, u32>,
    duplicates: Vec<String>,
    anchors: HashMap<usize, Value>,
    alias_budget: usize,
}

fn yaml_error(mark: Marker, what: &str) -> SyntaxError {
    // yaml-rust2 counts lines from 1 and columns from 0; users count both from 1.
    let line = u32::try_from(mark.line()).ok();
    let column = u32::try_from(mark.col() + 1).ok();
    SyntaxError {
        message: format!(
            "yaml: line {}, column {}: {what}",
            mark.line(),
            mark.col() + 1
        ),
        line,
        column,
    }
}

fn scan_error(err: &ScanError) -> SyntaxError {
    yaml_error(*err.marker(), err.info())
}

fn line_of(mark: Marker) -> u32 {
    u32::try_from(mark.line()).unwrap_or(u32::MAX)
}

impl YamlBuilder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), SyntaxError> {
        self.parser.next_token().map_err(|err| scan_error(&err))
    }

    /// The whole stream: exactly one document (or none, which gives `null`).
    fn stream(&mut self) -> Result<Value, SyntaxError> {
        let mut value = None;
        loop {
            let (event, mark) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(value.unwrap_or(Value::Null)),
                Event::DocumentStart => {
                    let (event, node_mark) = self.next()?;
                    let node = self.node(event, node_mark, String::new(), 0)?;
                    // A trailing `---` with nothing after it is not a second object.
                    if value.is_some() && !node.is_null() {
                        return Err(yaml_error(
                            mark,
                            "the body holds more than one YAML document (a second one starts \
                             here); send one object per request",
                        ));
                    }
                    if value.is_none() {
                        value = Some(node);
                    }
                    self.anchors.clear();
                }
                other => {
                    return Err(yaml_error(mark, &format!("unexpected {other:?}")));
                }
            }
        }
    }

    fn node(
        &mut self,
        event: Event,
        mark: Marker,
        path: String,
        depth: usize,
    ) -> Result<Value, SyntaxError> {
        if depth > MAX_DEPTH {
            return Err(yaml_error(
                mark,
                &format!("the document nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve_scalar(text, style, tag.as_ref())
                    .map_err(|what| yaml_error(mark, &what))?;
                (value, anchor)
            }
            Event::SequenceStart(anchor, _) => (self.sequence(path, depth)?, anchor),
            Event::MappingStart(anchor, _) => (self.mapping(path, depth)?, anchor),
            Event::Alias(id) => (self.alias(id, mark)?, 0),
            other => return Err(yaml_error(mark, &format!("unexpected {other:?}"))),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        Ok(value)
    }

    fn sequence(&mut self, path: String, depth: usize) -> Result<Value, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            if event == Event::SequenceEnd {
                return Ok(Value::Array(items));
            }
            let item = self.node(event, mark, push_index(&path, items.len()), depth + 1)?;
            items.push(item);
        }
    }

    fn mapping(&mut self, path: String, depth: usize) -> Result<Value, SyntaxError> {
        let mut map = Map::new();
        // `<<: *base` merges come last so that keys written out explicitly win, wherever they are.
        let mut merges = Vec::new();
        loop {
            let (event, mark) = self.next()?;
            let (key, is_merge) = match event {
                Event::MappingEnd => break,
                Event::Scalar(text, style, _, _) => {
                    let merge = style == TScalarStyle::Plain && text == "<<";
                    (text, merge)
                }
                Event::Alias(id) => match self.anchors.get(&id) {
                    Some(Value::String(s)) => (s.clone(), false),
                    Some(Value::Number(n)) => (n.to_string(), false),
                    Some(Value::Bool(b)) => (b.to_string(), false),
                    Some(Value::Null) => ("null".to_owned(), false),
                    _ => {
                        return Err(yaml_error(
                            mark,
                            "a mapping key must be a string, a number or a boolean",
                        ))
                    }
                },
                _ => {
                    return Err(yaml_error(
                        mark,
                        "a mapping key must be a string, a number or a boolean, not a list or \
                         a mapping",
                    ))
                }
            };
            let child = push_key(&path, &key);
            let (event, value_mark) = self.next()?;
            let value = self.node(event, value_mark, child.clone(), depth + 1)?;
            if is_merge {
                merges.push((value, mark));
                continue;
            }
            self.lines.insert(child.clone(), line_of(mark));
            if map.insert(key, value).is_some() {
                self.duplicates.push(child);
            }
        }
        for (value, mark) in merges {
            let sources = match value {
                Value::Object(source) => vec![source],
                Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        Value::Object(source) => Ok(source),
                        _ => Err(yaml_error(mark, "a `<<` merge takes mappings only")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => {
                    return Err(yaml_error(
                        mark,
                        "a `<<` merge takes a mapping or a list of mappings",
                    ))
                }
            };
            for source in sources {
                for (key, value) in source {
                    map.entry(key).or_insert(value);
                }
            }
        }
        Ok(Value::Object(map))
    }

    fn alias(&mut self, id: usize, mark: Marker) -> Result<Value, SyntaxError> {
        let Some(value) = self.anchors.get(&id) else {
            return Err(yaml_error(mark, "alias to an unknown anchor"));
        };
        let size = count_nodes(value, self.alias_budget.saturating_add(1));
        if size > self.alias_budget {
            return Err(yaml_error(
                mark,
                &format!(
                    "aliases expand the document to more than {MAX_ALIAS_NODES} nodes; \
                     refusing it"
                ),
            ));
        }
        self.alias_budget -= size;
        Ok(value.clone())
    }
}

/// The number of nodes in `value`, counting no further than `limit`.
fn count_nodes(value: &Value, limit: usize) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count += 1;
        if count >= limit {
            return count;
        }
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// The YAML 1.2 core schema's reading of a scalar, as JSON. Quoted and block scalars are strings.
fn resolve_scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let core_tag = tag.and_then(|tag| {
        (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:").then_some(tag.suffix.as_str())
    });
    match core_tag {
        Some("str" | "binary" | "timestamp") => return Ok(Value::String(text)),
        Some("null") => return Ok(Value::Null),
        Some("bool") => {
            return match plain_scalar(&text) {
                Some(v @ Value::Bool(_)) => Ok(v),
                _ => Err(format!("{text:?} is not a boolean (tagged !!bool)")),
            }
        }
        Some("int") => {
            return match plain_scalar(text.trim()) {
                Some(Value::Number(n)) if !n.is_f64() => Ok(Value::Number(n)),
                _ => Err(format!("{text:?} is not an integer (tagged !!int)")),
            }
        }
        Some("float") => {
            return match plain_scalar(text.trim()) {
                Some(Value::Number(n)) => Ok(n
                    .as_f64()
                    .and_then(Number::from_f64)
                    .map_or(Value::Null, Value::Number)),
                _ => Err(format!("{text:?} is not a number (tagged !!float)")),
            }
        }
        _ => {}
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::String(text));
    }
    Ok(plain_scalar(&text).unwrap_or(Value::String(text)))
}

/// Null, boolean or number for a plain scalar that reads as one; None for a string.
fn plain_scalar(text: &str) -> Option<Value> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return parse_radix(hex, 16);
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return parse_radix(octal, 8);
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // `0644` means octal to Kubernetes (its YAML library reads YAML 1.1 here), and file
        // modes such as `defaultMode: 0644` rely on it; the 1.2 core schema would say 644.
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|b| b < b'8') {
            let value = i64::from_str_radix(digits, 8).ok()?;
            return Some(Value::Number(
                if text.starts_with('-') { -value } else { value }.into(),
            ));
        }
        if let Ok(v) = text.parse::<i64>() {
            return Some(Value::Number(v.into()));
        }
        if let Ok(v) = digits.parse::<u64>() {
            if !text.starts_with('-') {
                return Some(Value::Number(v.into()));
            }
        }
        return text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number);
    }
    if is_core_float(digits) {
        return text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number);
    }
    // `.inf` and `.nan` are floats to YAML but have no JSON form; they stay strings.
    None
}

fn parse_radix(digits: &str, radix: u32) -> Option<Value> {
    if digits.is_empty() {
        return None;
    }
    if let Ok(v) = i64::from_str_radix(digits, radix) {
        return Some(Value::Number(v.into()));
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .map(|v| Value::Number(v.into()))
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without the sign, and not a plain integer.
fn is_core_float(text: &str) -> bool {
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            all_digits(int) && all_digits(frac) && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && all_digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok && (mantissa.contains('.') || exponent.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's descriptor, bad on purpose (`label` instead of `labels`, on line 8).
    pub(crate) const BAD_POD_YAML: &str = "apiVersion: v1
kind: Pod
metadata:
  # name of the pod
  name: kubia-manual
  # key-value pair for organization
  # otherwise your cluster will look like a mess
  label:
    appName: kubia-app
    version: 1.0.0]
spec:
  containers:
    - image: luksa/kubia
      name: kubia
      imagePullPolicy: Never
      ports:
        - containerPort: 8080
          protocol: TCP
";

    fn yaml(text: &str) -> Document {
        parse(text.as_bytes(), Format::Yaml).expect("valid YAML")
    }

    #[test]
    fn yaml_builds_json_with_lines_per_key() {
        let doc = yaml(BAD_POD_YAML);
        assert_eq!(doc.value["metadata"]["label"]["version"], "1.0.0]");
        assert_eq!(
            doc.value["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
        assert_eq!(doc.line_of("apiVersion"), Some(1));
        assert_eq!(doc.line_of("metadata.label"), Some(8));
        assert_eq!(doc.line_of("metadata.label.version"), Some(10));
        assert_eq!(doc.line_of("spec.containers[0].image"), Some(13));
        assert_eq!(
            doc.line_of("spec.containers[0].ports[0].containerPort"),
            Some(17)
        );
        assert_eq!(
            doc.line_of("spec.containers[0].ports[0].protocol"),
            Some(18)
        );
        assert!(doc.duplicates.is_empty());
    }

    #[test]
    fn odd_keys_are_bracketed() {
        let doc = yaml("metadata:\n  labels:\n    example.com/x: a\n    app: b\n");
        assert_eq!(doc.line_of("metadata.labels[example.com/x]"), Some(3));
        assert_eq!(doc.line_of("metadata.labels.app"), Some(4));
    }

    #[test]
    fn yaml_scalars_follow_the_core_schema() {
        let doc = yaml(
            "a: ~\nb: null\nc: true\nd: False\ne: 42\nf: -7\ng: 1.5\nh: 1e3\ni: \"42\"\nj: 'true'\n\
             k: 0x1F\nl: 0o17\nm: 0644\nn: yes\no: 1.0.0\np: .inf\nq: !!str 12\nr: |\n  text\ns:\n",
        );
        let v = &doc.value;
        assert!(v["a"].is_null() && v["b"].is_null() && v["s"].is_null());
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], false);
        assert_eq!(v["e"], 42);
        assert_eq!(v["f"], -7);
        assert_eq!(v["g"], 1.5);
        assert_eq!(v["h"], 1000.0);
        assert_eq!(v["i"], "42");
        assert_eq!(v["j"], "true");
        assert_eq!(v["k"], 31);
        assert_eq!(v["l"], 15);
        assert_eq!(v["m"], 420, "file modes are octal, as in Kubernetes");
        assert_eq!(v["n"], "yes");
        assert_eq!(v["o"], "1.0.0");
        assert_eq!(v["p"], ".inf");
        assert_eq!(v["q"], "12");
        assert_eq!(v["r"], "text\n");
    }

    #[test]
    fn yaml_duplicates_are_found_and_the_last_wins() {
        let doc = yaml("metadata:\n  name: a\n  name: b\nspec:\n  containers:\n  - name: x\n    image: i\n    image: j\n");
        assert_eq!(
            doc.duplicates,
            vec!["metadata.name", "spec.containers[0].image"]
        );
        assert_eq!(doc.value["metadata"]["name"], "b");
        assert_eq!(doc.line_of("metadata.name"), Some(3));
    }

    #[test]
    fn json_duplicates_are_found_with_their_path() {
        let body = br#"{"kind":"Pod","metadata":{"name":"a","labels":{"x":"1","x":"2"}},"spec":{"containers":[{"name":"c","name":"d"}]},"kind":"Pod"}"#;
        let doc = parse(body, Format::Json).expect("valid JSON");
        assert_eq!(
            doc.duplicates,
            vec!["metadata.labels.x", "spec.containers[0].name", "kind"]
        );
        assert_eq!(doc.value["metadata"]["labels"]["x"], "2");
        assert!(doc.lines.is_empty());
    }

    #[test]
    fn yaml_syntax_error_names_line_and_column() {
        let err = parse(b"metadata:\n  name: a\n  labels: b: c\n", Format::Yaml)
            .expect_err("invalid YAML");
        assert_eq!(err.line, Some(3));
        assert!(
            err.message.starts_with("yaml: line 3, column "),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("mapping values are not allowed"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_syntax_error_names_line_and_column() {
        let err = parse(b"{\n  \"a\": 1,\n  \"b\" 2\n}", Format::Json).expect_err("invalid JSON");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.column, Some(7));
        assert_eq!(err.message, "json: line 3, column 7: expected `:`");
        let err = parse(b"{} {}", Format::Json).expect_err("trailing data");
        assert!(
            err.message.contains("trailing characters"),
            "{}",
            err.message
        );
    }

    #[test]
    fn several_yaml_documents_are_refused() {
        let err = parse(b"a: 1\n---\nb: 2\n", Format::Yaml).expect_err("two documents");
        assert!(
            err.message.contains("more than one YAML document"),
            "{}",
            err.message
        );
        assert_eq!(err.line, Some(2));
        // A leading `---` and a trailing empty document are fine.
        assert_eq!(yaml("---\na: 1\n---\n").value["a"], 1);
    }

    #[test]
    fn aliases_and_merges_work_within_bounds() {
        let doc = yaml("base: &b\n  x: 1\n  y: 2\nthing:\n  <<: *b\n  y: 3\ncopy: *b\n");
        assert_eq!(doc.value["thing"]["x"], 1);
        assert_eq!(doc.value["thing"]["y"], 3);
        assert_eq!(doc.value["copy"]["y"], 2);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut body = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            body.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(body.as_bytes(), Format::Yaml).expect_err("too many nodes");
        assert!(err.message.contains("aliases expand"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let body: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        let err = parse(body.as_bytes(), Format::Yaml).expect_err("too deep");
        assert!(err.message.contains("nests deeper"), "{}", err.message);
        // The scanner has its own limit for flow collections.
        let body = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        let err = parse(body.as_bytes(), Format::Yaml).expect_err("too deep");
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn type_errors_name_the_full_path() {
        let mut doc = yaml(BAD_POD_YAML);
        doc.value["spec"]["containers"][0]["ports"][0]["containerPort"] = "x".into();
        let err = into_typed::<k8s_openapi::api::core::v1::Pod>(doc.value).expect_err("bad type");
        assert_eq!(err.path, "spec.containers[0].ports[0].containerPort");
        assert!(
            err.message.contains("invalid type: string \"x\""),
            "{}",
            err.message
        );
        let pod: k8s_openapi::api::core::v1::Pod =
            into_typed(yaml(BAD_POD_YAML).value).expect("a valid pod apart from the label");
        assert_eq!(pod.metadata.name.as_deref(), Some("kubia-manual"));
    }
}
