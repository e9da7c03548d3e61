//! kubectl's printers: the aligned table (Go's tabwriter with kubectl's settings), `-o json`
//! (Go's encoding/json, 4-space indent, sorted keys) and `-o yaml` (sigs.k8s.io/yaml).

use serde_json::Value;

/// kubectl's tabwriter: minimum cell width 6, padding 3; the last cell of a line is not padded.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![6usize; columns];
    for row in rows {
        // The last cell is not tab-terminated, so it takes no part in the alignment.
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 3);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// `-o json`: Go's json.MarshalIndent with 4 spaces (serde_json's maps are sorted, as Go's are;
/// a struct keeps its fields' order, as Go's does), with Go's escaping of `<`, `>` and `&`.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serializing a Value into memory cannot fail.
    let _ = serde::Serialize::serialize(value, &mut serializer);
    let text = String::from_utf8_lossy(&out)
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    text + "\n"
}

/// `-o yaml`: go-yaml v2 as sigs.k8s.io/yaml drives it (sorted keys, lists not indented under
/// their key, strings quoted only when they would read back as something else).
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => yaml_map(map, 0, &mut out),
        Value::Array(items) if !items.is_empty() => yaml_list(items, 0, &mut out),
        scalar => {
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
    out
}

fn yaml_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let mut first = true;
    for (key, value) in map {
        if !first || !out.ends_with("- ") {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        first = false;
        out.push_str(&yaml_string(key));
        out.push(':');
        yaml_value_after_key(value, indent, out);
    }
}

fn yaml_value_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            yaml_map(map, indent + 2, out);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            yaml_list(items, indent, out);
        }
        Value::String(s) if s.contains('\n') && yaml_plain_type_is_string(s) => {
            out.push(' ');
            yaml_literal(s, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_list(items: &[Value], indent: usize, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        // A list in a list starts on its parent's dash line: `- - a`.
        if i > 0 || !out.ends_with("- ") {
            out.extend(std::iter::repeat_n(' ', indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if !map.is_empty() => yaml_map(map, indent + 2, out),
            Value::Array(inner) if !inner.is_empty() => yaml_list(inner, indent + 2, out),
            Value::String(s) if s.contains('\n') && yaml_plain_type_is_string(s) => {
                yaml_literal(s, indent + 2, out)
            }
            scalar => {
                out.push_str(&yaml_scalar(scalar));
                out.push('\n');
            }
        }
    }
}

fn yaml_literal(s: &str, indent: usize, out: &mut String) {
    let chomp = if s.ends_with("\n\n") {
        "+"
    } else if s.ends_with('\n') {
        ""
    } else {
        "-"
    };
    out.push('|');
    out.push_str(chomp);
    out.push('\n');
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        if !line.is_empty() {
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn yaml_scalar(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

fn yaml_string(s: &str) -> String {
    if !yaml_plain_type_is_string(s) || s.chars().any(|c| c.is_control() && c != '\n') {
        return double_quoted(s);
    }
    if yaml_plain_allowed(s) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a plain scalar `s` reads back as a string (YAML 1.1 as go-yaml v2 resolves it).
fn yaml_plain_type_is_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if SPECIAL.contains(&s) {
        return false;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = unsigned.replace('_', "");
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if let Some(hex) = digits.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
    }
    if let Some(bin) = digits.strip_prefix("0b") {
        if !bin.is_empty() && bin.bytes().all(|b| b == b'0' || b == b'1') {
            return false;
        }
    }
    if looks_like_float(&digits) {
        return false;
    }
    // Timestamps: 2006-01-02 and the forms that start with it.
    let b = s.as_bytes();
    if b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    true
}

/// go-yaml v2's float: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (sign stripped).
fn looks_like_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => !frac.is_empty() && digits(frac),
        Some((int, frac)) => digits(int) && digits(frac),
        None => !mantissa.is_empty() && digits(mantissa),
    };
    if !mantissa_ok {
        return false;
    }
    match exponent {
        None => mantissa.contains('.'),
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    }
}

/// go-yaml's analysis: can `s` be written plain in block context?
fn yaml_plain_allowed(s: &str) -> bool {
    if s.starts_with(' ') || s.ends_with(' ') || s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_blank = chars.get(i + 1).is_none_or(|n| *n == ' ' || *n == '\t');
        let preceded_by_blank = i > 0 && (chars[i - 1] == ' ' || chars[i - 1] == '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if followed_by_blank => return false,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_blank => return false,
                '#' if preceded_by_blank => return false,
                _ => {}
            }
        }
        if c == '\t' {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_aligns_as_kubectls_tabwriter() {
        let rows = vec![vec![
            "kubia-manual".into(),
            "0/1".into(),
            "Pending".into(),
            "0".into(),
            "8s".into(),
        ]];
        assert_eq!(table(&rows), "kubia-manual   0/1   Pending   0     8s\n");
        let rows = vec![
            vec!["NAME".into(), "STATUS".into(), "AGE".into()],
            vec!["default".into(), "Active".into(), "10s".into()],
        ];
        assert_eq!(
            table(&rows),
            "NAME      STATUS   AGE\ndefault   Active   10s\n"
        );
    }

    #[test]
    fn json_is_indented_by_four_and_escapes_as_go() {
        let value = json!({"b": "<x>", "a": [1]});
        assert_eq!(
            json(&value),
            "{\n    \"a\": [\n        1\n    ],\n    \"b\": \"\\u003cx\\u003e\"\n}\n"
        );
    }

    /// What kubectl 1.35 printed for `create --dry-run=client -o yaml` of the same object.
    #[test]
    fn yaml_matches_kubectls_scalar_styles() {
        let value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"annotations": {"a": "multi\nline\n", "b": "no: yes", "c": "-x",
                "d": "#x", "e": " lead", "f": "1e3", "g": "it's", "h": "@x"},
                "name": "nn", "namespace": "default"},
            "x": [["a", "b"], []],
        });
        let expected = "\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    a: |
      multi
      line
    b: 'no: yes'
    c: -x
    d: '#x'
    e: ' lead'
    f: \"1e3\"
    g: it's
    h: '@x'
  name: nn
  namespace: default
x:
- - a
  - b
- []
";
        assert_eq!(yaml(&value), expected);
    }

    #[test]
    fn yaml_quotes_only_what_would_read_back_otherwise() {
        let value = json!({
            "apiVersion": "v1",
            "items": [{"metadata": {"creationTimestamp": "2026-11-30T05:39:12Z", "resourceVersion": "7",
                        "labels": {"version": "1.0.0]", "on": "yes"}},
                       "spec": {"containers": [{"args": ["-c", "echo hi; sleep 1"], "ports": []}],
                                "nested": [["a", "b"], []],
                                "resources": {}}}],
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        });
        let expected = "\
apiVersion: v1
items:
- metadata:
    creationTimestamp: \"2026-11-30T05:39:12Z\"
    labels:
      \"on\": \"yes\"
      version: 1.0.0]
    resourceVersion: \"7\"
  spec:
    containers:
    - args:
      - -c
      - echo hi; sleep 1
      ports: []
    nested:
    - - a
      - b
    - []
    resources: {}
kind: List
metadata:
  resourceVersion: \"\"
";
        assert_eq!(yaml(&value), expected);
    }
}
