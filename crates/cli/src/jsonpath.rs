//! kubectl's JSONPath templates (k8s.io/client-go/util/jsonpath): text with `{...}` actions,
//! fields, `[*]`, indexes and slices, unions, filters `[?(@.x=="y")]`, `..` recursive descent,
//! `{range ...}{end}` and quoted text, printed as kubectl prints results. A small evaluator:
//! the jsonpath crates implement RFC 9535, whose syntax and printing differ from kubectl's.

use serde_json::Value;

use crate::{Error, Result};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `@` or `$`: where the path starts; `$` is the root, `@` the current value.
    Root,
    Current,
    Field(String),
    /// `..`: the value and everything below it, before the next step.
    Recursive,
    Wildcard,
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Union(Vec<Step>),
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Operand,
    /// None: `[?(@.x)]`, the value exists.
    compare: Option<(String, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Vec<Step>),
    Literal(Value),
}

fn parse_error(source: &str, why: &str) -> Error {
    Error::Message(format!("error parsing jsonpath {source}, {why}"))
}

impl Template {
    /// Parses a template as `-o jsonpath=` takes it.
    pub fn parse(source: &str) -> Result<Template> {
        let mut stack: Vec<(Vec<Step>, Vec<Node>)> = Vec::new();
        let mut nodes: Vec<Node> = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                nodes.push(Node::Text(rest.to_owned()));
                break;
            };
            if open > 0 {
                nodes.push(Node::Text(rest[..open].to_owned()));
            }
            let inside = &rest[open + 1..];
            let Some(close) = action_end(inside) else {
                // kubectl reports a broken path inside before the missing `}`.
                parse_path(inside.trim(), source)?;
                return Err(parse_error(source, "unclosed action"));
            };
            let action = inside[..close].trim();
            rest = &inside[close + 1..];
            if action == "end" {
                let (steps, outer) = stack
                    .pop()
                    .ok_or_else(|| parse_error(source, "not in range, nothing to end"))?;
                let body = std::mem::replace(&mut nodes, outer);
                nodes.push(Node::Range(steps, body));
            } else if let Some(expr) = action.strip_prefix("range ") {
                let steps = parse_path(expr.trim(), source)?;
                stack.push((steps, std::mem::take(&mut nodes)));
            } else if action.starts_with('"') || action.starts_with('\'') {
                nodes.push(Node::Text(parse_quoted(action, source)?));
            } else if action.is_empty() {
                continue;
            } else {
                nodes.push(Node::Path(parse_path(action, source)?));
            }
        }
        if !stack.is_empty() {
            return Err(parse_error(source, "unclosed range"));
        }
        Ok(Template {
            nodes,
            source: source.to_owned(),
        })
    }

    /// kubectl's relaxed form (custom-columns, --sort-by): `.a.b`, `a.b` and `{.a.b}` alike.
    pub fn parse_relaxed(expr: &str) -> Result<Template> {
        let trimmed = expr.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(trimmed);
        let inner = if inner.starts_with('.') || inner.is_empty() {
            inner.to_owned()
        } else {
            format!(".{inner}")
        };
        Template::parse(&format!("{{{inner}}}"))
    }

    /// The results of each path action of the template, in order (for custom-columns and
    /// --sort-by, which use one path).
    pub fn values(&self, data: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for node in &self.nodes {
            if let Node::Path(steps) = node {
                out.extend(eval(steps, data, data));
            }
        }
        out
    }

    /// The template's text for `data`, as kubectl prints it (missing keys print nothing).
    pub fn render(&self, data: &Value) -> Result<String> {
        let mut out = String::new();
        render_nodes(&self.nodes, data, data, &mut out)?;
        Ok(out)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) -> Result<()> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(steps) => {
                let results = eval(steps, root, current);
                let texts: Vec<String> = results.iter().map(result_text).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for value in eval(steps, root, current) {
                    // A range over one list walks its items, as Go's evalRange does.
                    match &value {
                        Value::Array(items) => {
                            for item in items {
                                render_nodes(body, root, item, out)?;
                            }
                        }
                        other => render_nodes(body, root, other, out)?,
                    }
                }
            }
        }
    }
    Ok(())
}

/// One result as PrintResults prints it: maps and lists as compact JSON, the rest as text.
pub fn result_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(_) | Value::Array(_) => go_json(value),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Go's json.Marshal: compact, sorted keys, `<`, `>` and `&` escaped.
pub fn go_json(value: &Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// Go's `%v` of a decoded JSON value (custom-columns cells): `map[k:v]`, `[a b]`.
pub fn go_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "<nil>".to_owned(),
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
        Value::Array(items) => {
            let entries: Vec<String> = items.iter().map(go_value).collect();
            format!("[{}]", entries.join(" "))
        }
        other => other.to_string(),
    }
}

/// Where the action that starts just after a `{` ends (its `}`), skipping quoted text.
fn action_end(text: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '}' => return Some(i),
            None => {}
        }
    }
    None
}

fn parse_quoted(text: &str, source: &str) -> Result<String> {
    let quote = text.chars().next().unwrap_or('"');
    let body = text
        .strip_prefix(quote)
        .and_then(|t| t.strip_suffix(quote))
        .ok_or_else(|| parse_error(source, "unclosed quote"))?;
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// Parses one path: `.a.b[0]`, `$.a`, `@.a`, `a.b`, `..a`, `['a']`.
fn parse_path(text: &str, source: &str) -> Result<Vec<Step>> {
    let chars: Vec<char> = text.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '$' => {
                steps.push(Step::Root);
                i += 1;
            }
            '@' => {
                steps.push(Step::Current);
                i += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') {
                    steps.push(Step::Recursive);
                    i += 2;
                } else {
                    i += 1;
                }
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                match name.as_str() {
                    "" => {}
                    "*" => steps.push(Step::Wildcard),
                    _ => steps.push(Step::Field(name)),
                }
            }
            '[' => {
                let end = bracket_end(&chars, i)
                    .ok_or_else(|| parse_error(source, "unterminated array"))?;
                let inner: String = chars[i + 1..end].iter().collect();
                steps.push(parse_bracket(inner.trim(), source)?);
                i = end + 1;
            }
            ' ' => i += 1,
            _ => {
                // A bare name at the start (`a.b` after relaxing, or `{kind}`).
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                steps.push(Step::Field(name.trim().to_owned()));
            }
        }
    }
    Ok(steps)
}

fn bracket_end(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn parse_bracket(inner: &str, source: &str) -> Result<Step> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix('?') {
        let filter = filter.trim();
        let body = filter
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or_else(|| parse_error(source, "unterminated filter"))?;
        return Ok(Step::Filter(Box::new(parse_filter(body.trim(), source)?)));
    }
    let parts = split_top(inner, ',');
    if parts.len() > 1 {
        let steps = parts
            .iter()
            .map(|p| parse_bracket(p.trim(), source))
            .collect::<Result<Vec<_>>>()?;
        return Ok(Step::Union(steps));
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        return Ok(Step::Field(parse_quoted(inner, source)?));
    }
    if inner.contains(':') {
        let bounds: Vec<&str> = inner.split(':').collect();
        if bounds.len() > 3 {
            return Err(parse_error(source, "invalid array index"));
        }
        let number = |text: &str| -> Result<Option<i64>> {
            let text = text.trim();
            if text.is_empty() {
                return Ok(None);
            }
            text.parse()
                .map(Some)
                .map_err(|_| parse_error(source, &format!("invalid array index {text}")))
        };
        return Ok(Step::Slice(
            number(bounds[0])?,
            number(bounds.get(1).copied().unwrap_or(""))?,
            number(bounds.get(2).copied().unwrap_or(""))?,
        ));
    }
    inner
        .parse()
        .map(Step::Index)
        .map_err(|_| parse_error(source, &format!("invalid array index {inner}")))
}

/// Splits at `sep` outside quotes.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == sep => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            None => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

const OPERATORS: &[&str] = &["==", "!=", "<=", ">=", "<", ">"];

fn parse_filter(body: &str, source: &str) -> Result<Filter> {
    let mut quote: Option<char> = None;
    let bytes: Vec<(usize, char)> = body.char_indices().collect();
    for (n, &(i, c)) in bytes.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {
                let _ = n;
                if let Some(op) = OPERATORS.iter().find(|op| body[i..].starts_with(**op)) {
                    let left = parse_operand(body[..i].trim(), source)?;
                    let right = parse_operand(body[i + op.len()..].trim(), source)?;
                    return Ok(Filter {
                        left,
                        compare: Some((op.to_string(), right)),
                    });
                }
            }
        }
    }
    Ok(Filter {
        left: parse_operand(body, source)?,
        compare: None,
    })
}

fn parse_operand(text: &str, source: &str) -> Result<Operand> {
    if text.starts_with('@') || text.starts_with('$') || text.starts_with('.') {
        return Ok(Operand::Path(parse_path(text, source)?));
    }
    if text.starts_with('"') || text.starts_with('\'') {
        return Ok(Operand::Literal(Value::String(parse_quoted(text, source)?)));
    }
    if let Ok(int) = text.parse::<i64>() {
        return Ok(Operand::Literal(int.into()));
    }
    if let Ok(float) = text.parse::<f64>() {
        return Ok(Operand::Literal(float.into()));
    }
    match text {
        "true" => Ok(Operand::Literal(Value::Bool(true))),
        "false" => Ok(Operand::Literal(Value::Bool(false))),
        _ => Err(parse_error(
            source,
            &format!("unrecognized filter operand {text}"),
        )),
    }
}

fn eval(steps: &[Step], root: &Value, current: &Value) -> Vec<Value> {
    let mut values = vec![current.clone()];
    for step in steps {
        let mut next = Vec::new();
        for value in &values {
            apply_step(step, root, value, &mut next);
        }
        values = next;
    }
    values
}

fn apply_step(step: &Step, root: &Value, value: &Value, out: &mut Vec<Value>) {
    match step {
        Step::Root => out.push(root.clone()),
        Step::Current => out.push(value.clone()),
        Step::Field(name) => {
            if let Some(found) = value.get(name.as_str()) {
                out.push(found.clone());
            }
        }
        Step::Recursive => descend(value, out),
        Step::Wildcard => match value {
            Value::Array(items) => out.extend(items.iter().cloned()),
            Value::Object(map) => out.extend(map.values().cloned()),
            _ => {}
        },
        Step::Index(index) => {
            if let Value::Array(items) = value {
                let len = items.len() as i64;
                let at = if *index < 0 { len + index } else { *index };
                if (0..len).contains(&at) {
                    out.push(items[at as usize].clone());
                }
            }
        }
        Step::Slice(start, end, step) => {
            if let Value::Array(items) = value {
                let len = items.len() as i64;
                let clamp = |i: i64| if i < 0 { (len + i).max(0) } else { i.min(len) };
                let from = clamp(start.unwrap_or(0));
                let to = clamp(end.unwrap_or(len));
                let by = step.unwrap_or(1).max(1);
                let mut i = from;
                while i < to {
                    out.push(items[i as usize].clone());
                    i += by;
                }
            }
        }
        Step::Union(steps) => {
            for step in steps {
                apply_step(step, root, value, out);
            }
        }
        Step::Filter(filter) => {
            let items: Vec<&Value> = match value {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => Vec::new(),
            };
            for item in items {
                if filter_holds(filter, root, item) {
                    out.push(item.clone());
                }
            }
        }
    }
}

fn descend(value: &Value, out: &mut Vec<Value>) {
    out.push(value.clone());
    match value {
        Value::Array(items) => items.iter().for_each(|v| descend(v, out)),
        Value::Object(map) => map.values().for_each(|v| descend(v, out)),
        _ => {}
    }
}

fn operand_values(operand: &Operand, root: &Value, item: &Value) -> Vec<Value> {
    match operand {
        Operand::Literal(value) => vec![value.clone()],
        Operand::Path(steps) => eval(steps, root, item),
    }
}

fn filter_holds(filter: &Filter, root: &Value, item: &Value) -> bool {
    let left = operand_values(&filter.left, root, item);
    let Some((op, right)) = &filter.compare else {
        return !left.is_empty();
    };
    let right = operand_values(right, root, item);
    let (Some(l), Some(r)) = (left.first(), right.first()) else {
        return false;
    };
    let ordering = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .zip(b.as_f64())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) => (a == b).then_some(std::cmp::Ordering::Equal),
    };
    use std::cmp::Ordering::*;
    match op.as_str() {
        "==" => ordering == Some(Equal),
        "!=" => ordering != Some(Equal),
        "<" => ordering == Some(Less),
        ">" => ordering == Some(Greater),
        "<=" => matches!(ordering, Some(Less | Equal)),
        ">=" => matches!(ordering, Some(Greater | Equal)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> Value {
        json!({"kind": "List", "items": [
            {"metadata": {"name": "a", "labels": {"app": "x"}}, "spec": {"n": 2,
              "containers": [{"name": "main", "image": "busybox"}, {"name": "side", "image": "nginx"}]}},
            {"metadata": {"name": "b", "labels": {"app": "y"}}, "spec": {"n": 1,
              "containers": [{"name": "main", "image": "alpine"}]}}
        ]})
    }

    fn render(template: &str) -> String {
        Template::parse(template)
            .expect("the template parses")
            .render(&list())
            .expect("the template renders")
    }

    #[test]
    fn paths_wildcards_and_indexes() {
        assert_eq!(render("{.items[*].metadata.name}"), "a b");
        assert_eq!(render("{.kind}"), "List");
        assert_eq!(render("{$.items[0].metadata.name}"), "a");
        assert_eq!(render("{.items[-1].metadata.name}"), "b");
        assert_eq!(render("{.items[0:1].metadata.name}"), "a");
        assert_eq!(render("{.items[0].metadata.labels}"), r#"{"app":"x"}"#);
        assert_eq!(
            render("{.items[0].metadata['name','labels']}"),
            r#"a {"app":"x"}"#
        );
        assert_eq!(render("{.nope}{.items[5].x}"), "");
        assert_eq!(render("names: {..name}"), "names: a main side b main");
    }

    #[test]
    fn filters_ranges_and_text() {
        assert_eq!(
            render(r#"{.items[?(@.metadata.name=="b")].spec.containers[*].image}"#),
            "alpine"
        );
        assert_eq!(render("{.items[?(@.spec.n>1)].metadata.name}"), "a");
        assert_eq!(render("{.items[?(@.spec.nope)].metadata.name}"), "");
        assert_eq!(
            render(r#"{range .items[*]}{.metadata.name}{"\t"}{.spec.n}{"\n"}{end}"#),
            "a\t2\nb\t1\n"
        );
        assert_eq!(
            render("{range .items[*]}[{range .spec.containers[*]}{.name},{end}]{end}"),
            "[main,side,][main,]"
        );
    }

    #[test]
    fn errors_and_relaxed_paths() {
        let err = Template::parse("{.items[0").expect_err("unterminated");
        assert_eq!(
            err.render(),
            "error: error parsing jsonpath {.items[0, unterminated array"
        );
        let err = Template::parse("{range .items[*]}x").expect_err("no end");
        assert!(err.render().contains("unclosed range"));
        let relaxed = Template::parse_relaxed("metadata.name").expect("relaxed");
        assert_eq!(relaxed.values(&list()["items"][1]), [json!("b")]);
        assert_eq!(
            go_value(&json!({"b": [1, "x"], "a": true})),
            "map[a:true b:[1 x]]"
        );
    }
}
