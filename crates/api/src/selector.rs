//! Label selectors (every operator Kubernetes has) and field selectors, parsed from query strings
//! and matched against objects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An invalid selector; the message says what is wrong, in Kubernetes' words where it has them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// How one label requirement compares the label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One comma-separated term of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// A set, so `in (a,a)` and `in (a)` are the same requirement.
    values: BTreeSet<String>,
}

impl Requirement {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let value = labels.and_then(|labels| labels.get(&self.key));
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // Kubernetes counts an object without the label as "not equal".
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), Some(bound)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values
                        .iter()
                        .next()
                        .and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = || {
            self.values
                .iter()
                .next()
                .map(String::as_str)
                .unwrap_or_default()
        };
        let list = || {
            self.values
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, first()),
            Operator::NotEquals => write!(f, "{}!={}", self.key, first()),
            Operator::In => write!(f, "{} in ({})", self.key, list()),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, first()),
            Operator::LessThan => write!(f, "{}<{}", self.key, first()),
        }
    }
}

/// A parsed `labelSelector`: `a=b,c!=d,e in (f,g),h notin (i),j,!k`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// All must match (the commas of a selector are ANDs).
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses Kubernetes' label selector grammar; the empty string selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let tokens = lex(text);
        Parser { tokens, pos: 0 }.parse().map_err(SelectorError)
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// The canonical text form (`app=x,tier in (a,b)`), usable as a `labelSelector` again.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// Any run of characters that are neither whitespace nor one of `=!(),<>`; `in` and `notin`
    /// are identifiers too and only become operators where an operator is expected, so a label
    /// may be called `in`.
    Identifier(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

impl Token {
    /// The token as the user wrote it, for error messages.
    fn literal(&self) -> &str {
        match self {
            Token::Identifier(s) => s,
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::OpenParen => "(",
            Token::CloseParen => ")",
            Token::Comma => ",",
            Token::End => "end of string",
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>')
}

fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (token, width) = match (c, next) {
                ('!', Some('=')) => (Token::NotEquals, 2),
                ('=', Some('=')) => (Token::DoubleEquals, 2),
                ('!', _) => (Token::Bang, 1),
                ('=', _) => (Token::Equals, 1),
                ('(', _) => (Token::OpenParen, 1),
                (')', _) => (Token::CloseParen, 1),
                (',', _) => (Token::Comma, 1),
                ('<', _) => (Token::LessThan, 1),
                _ => (Token::GreaterThan, 1),
            };
            tokens.push(token);
            i += width;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
            i += 1;
        }
        tokens.push(Token::Identifier(chars[start..i].iter().collect()));
    }
    tokens.push(Token::End);
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn parse(mut self) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        loop {
            match self.peek() {
                Token::End => break,
                Token::Identifier(_) | Token::Bang => {
                    let requirement = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    match self.next() {
                        Token::End => break,
                        Token::Comma => match self.peek() {
                            Token::Identifier(_) | Token::Bang => {}
                            other => {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    other.literal()
                                ))
                            }
                        },
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            ))
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let negated = *self.peek() == Token::Bang;
        if negated {
            self.next();
        }
        let key = match self.next() {
            Token::Identifier(key) => key,
            other => return Err(format!("found '{}', expected: identifier", other.literal())),
        };
        validate_key(&key)?;
        if negated || matches!(self.peek(), Token::End | Token::Comma) {
            if negated && !matches!(self.peek(), Token::End | Token::Comma) {
                return Err(format!(
                    "found '{}', expected: ',' or 'end of string' ('!{key}' selects objects without the label '{key}' and takes no value)",
                    self.peek().literal()
                ));
            }
            let operator = if negated {
                Operator::DoesNotExist
            } else {
                Operator::Exists
            };
            return Ok(Requirement {
                key,
                operator,
                values: BTreeSet::new(),
            });
        }
        let operator = match self.next() {
            Token::Equals | Token::DoubleEquals => Operator::Equals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::Identifier(word) if word == "in" => Operator::In,
            Token::Identifier(word) if word == "notin" => Operator::NotIn,
            other => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt (>), lt (<)",
                    other.literal()
                ))
            }
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_list(operator)?,
            _ => self.single_value()?,
        };
        for value in &values {
            validate_value(&key, value)?;
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            let value = values.iter().next().map(String::as_str).unwrap_or_default();
            if value.parse::<i64>().is_err() {
                return Err(format!(
                    "for 'gt', 'lt' operators, the value must be an integer, found \"{value}\" for key \"{key}\""
                ));
            }
        }
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`; nothing before a comma or the end means "".
    fn single_value(&mut self) -> Result<BTreeSet<String>, String> {
        match self.peek().clone() {
            Token::End | Token::Comma => Ok(BTreeSet::from([String::new()])),
            Token::Identifier(value) => {
                self.next();
                Ok(BTreeSet::from([value]))
            }
            other => Err(format!("found '{}', expected: identifier", other.literal())),
        }
    }

    /// `(a, b, c)` after `in` / `notin`. Empty members (`(a,)`, `()`) stand for the empty value,
    /// as in Kubernetes.
    fn value_list(&mut self, operator: Operator) -> Result<BTreeSet<String>, String> {
        let word = if operator == Operator::In {
            "in"
        } else {
            "notin"
        };
        let open = self.next();
        if open != Token::OpenParen {
            return Err(format!(
                "found '{}', expected: '(' (values have to be a parenthesised list for '{word}', e.g. 'key {word} (a,b)')",
                open.literal()
            ));
        }
        let mut values = BTreeSet::new();
        let mut expect_value = true;
        loop {
            match self.next() {
                Token::Identifier(value) if expect_value => {
                    values.insert(value);
                    expect_value = false;
                }
                Token::Comma => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    expect_value = true;
                }
                Token::CloseParen => {
                    if expect_value {
                        values.insert(String::new());
                    }
                    break;
                }
                other if expect_value => {
                    return Err(format!(
                        "found '{}', expected: ',', ')' or identifier",
                        other.literal()
                    ))
                }
                other => return Err(format!("found '{}', expected: ',' or ')'", other.literal())),
            }
        }
        if values.is_empty() {
            return Err(format!("for '{word}' the values set can't be empty"));
        }
        Ok(values)
    }
}

/// The label name rule: 1-63 alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A DNS-1123 subdomain: lower-case labels separated by dots, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_dns_subdomain(prefix) {
            return Err(format!(
                "invalid label key \"{key}\": the prefix before '/' must be a DNS subdomain (lower-case alphanumerics, '-' and '.', at most 253 characters, e.g. 'example.com')"
            ));
        }
    }
    if !is_label_name(name) {
        return Err(format!(
            "invalid label key \"{key}\": the name must be 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric (e.g. 'app' or 'example.com/tier')"
        ));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        return Ok(());
    }
    Err(format!(
        "invalid label value \"{value}\" for key \"{key}\": a label value must be empty or 1-63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
    ))
}

/// One comma-separated term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FieldRequirement {
    field: String,
    value: String,
    /// `!=` rather than `=`/`==`.
    negated: bool,
}

/// A parsed `fieldSelector`: `metadata.name=x,status.phase!=Running` (`=`, `==`, `!=`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

/// Kinds without a namespace; `metadata.namespace` is not a field of theirs.
const CLUSTER_SCOPED: &[&str] = &[
    "namespaces",
    "nodes",
    "persistentvolumes",
    "clusterroles",
    "clusterrolebindings",
    "customresourcedefinitions",
    "storageclasses",
    "priorityclasses",
    "apiservices",
    "certificatesigningrequests",
    "runtimeclasses",
    "ingressclasses",
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "csidrivers",
    "csinodes",
    "volumeattachments",
];

/// The fields Kubernetes lets a resource be selected by, beyond `metadata.name`/`namespace`.
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "namespaces" => &["status.phase"],
        "secrets" => &["type"],
        "nodes" => &["spec.unschedulable"],
        _ => &[],
    }
}

fn is_supported(plural: &str, field: &str) -> bool {
    field == "metadata.name"
        || (field == "metadata.namespace" && !CLUSTER_SCOPED.contains(&plural))
        || kind_fields(plural).contains(&field)
}

/// The value at a dotted path as a field selector sees it: strings as is, booleans and numbers
/// printed, anything missing as "".
fn text_at(object: &serde_json::Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        match current.get(part) {
            Some(next) => current = next,
            None => return String::new(),
        }
    }
    match current {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The value of a supported field of an object (JSON, as stored).
fn field_value(plural: &str, field: &str, object: &serde_json::Value) -> String {
    match (plural, field) {
        // Booleans that Kubernetes prints as "false" when unset.
        ("pods", "spec.hostNetwork") | ("nodes", "spec.unschedulable") => {
            let set = object
                .pointer(&format!("/{}", field.replace('.', "/")))
                .and_then(|v| v.as_bool());
            set.unwrap_or(false).to_string()
        }
        ("pods", "status.podIP") => {
            let ip = text_at(object, "status.podIP");
            if ip.is_empty() {
                ips(object).into_iter().next().unwrap_or_default()
            } else {
                ip
            }
        }
        ("pods", "status.podIPs") => ips(object).join(","),
        // The old `source.component` when set, else the newer reporting controller.
        ("events", "source") => {
            let component = text_at(object, "source.component");
            if component.is_empty() {
                text_at(object, "reportingComponent")
            } else {
                component
            }
        }
        _ => text_at(object, field),
    }
}

fn ips(object: &serde_json::Value) -> Vec<String> {
    let list = object.pointer("/status/podIPs").and_then(|v| v.as_array());
    list.map(|list| {
        list.iter()
            .filter_map(|entry| {
                entry
                    .get("ip")
                    .and_then(|ip| ip.as_str())
                    .map(str::to_owned)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// Splits on commas that are not escaped with a backslash.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&text[start..i]);
            start = i + 1;
        }
    }
    terms.push(&text[start..]);
    terms
}

/// Undoes the escaping of a field selector value: `\\`, `\,` and `\=` are the only escapes, and
/// bare `,` or `=` are not allowed in a value.
fn unescape(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\\' | ',' | '=')) => out.push(e),
                Some(e) => {
                    return Err(SelectorError(format!(
                        "invalid field selector: invalid escape sequence: \\{e} (only \\\\, \\, and \\= are escapes)"
                    )))
                }
                None => {
                    return Err(SelectorError(
                        "invalid field selector: invalid escape sequence: \\ at the end of a value".to_owned(),
                    ))
                }
            },
            ',' | '=' => {
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {c} (write \\{c})"
                )))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses and checks every field against what the resource (`pods`, `namespaces`, `nodes`,
    /// `events`, `leases`) supports: `field label not supported: spec.foo`.
    pub fn parse(text: &str, plural: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            // The first operator wins, so `a=b!=c` is field `a` with the (invalid) value `b!=c`.
            let Some((at, op)) = term.char_indices().find_map(|(i, _)| {
                ["!=", "==", "="]
                    .into_iter()
                    .find(|op| term[i..].starts_with(op))
                    .map(|op| (i, op))
            }) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{text}'; can't understand '{term}' (expected field=value, field==value or field!=value)"
                )));
            };
            let field = term[..at].trim();
            // Names and phases never start or end with spaces, so `a = b` means `a=b`.
            let value = unescape(term[at + op.len()..].trim())?;
            if !is_supported(plural, field) {
                return Err(SelectorError(format!("field label not supported: {field}")));
            }
            requirements.push(FieldRequirement {
                field: field.to_owned(),
                value,
                negated: op == "!=",
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value required for `field` by an `=`/`==` term, if any (lets the server look up
    /// `metadata.name=x` directly).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| !r.negated && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Matches an object (JSON, as stored) of the resource `plural`.
    pub fn matches(&self, plural: &str, object: &serde_json::Value) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_value(plural, &r.field, object) == r.value) != r.negated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error(text: &str) -> String {
        LabelSelector::parse(text).expect_err(text).0
    }

    #[test]
    fn empty_label_selector_selects_everything() {
        let s = LabelSelector::parse("").expect("a valid selector");
        assert!(s.is_empty());
        assert!(s.matches(None));
        assert!(LabelSelector::parse("   ")
            .expect("a valid selector")
            .is_empty());
    }

    #[test]
    fn equality_operators() {
        let app_x = labels(&[("app", "x")]);
        let app_y = labels(&[("app", "y")]);
        for text in ["app=x", "app==x", " app = x "] {
            let s = LabelSelector::parse(text).expect("a valid selector");
            assert!(s.matches(Some(&app_x)), "{text}");
            assert!(!s.matches(Some(&app_y)), "{text}");
            assert!(!s.matches(None), "{text}");
        }
        let s = LabelSelector::parse("app!=x").expect("a valid selector");
        assert!(!s.matches(Some(&app_x)));
        assert!(s.matches(Some(&app_y)));
        // Kubernetes: an object without the label is "not equal".
        assert!(s.matches(None));
        assert!(s.matches(Some(&labels(&[("other", "x")]))));
    }

    #[test]
    fn empty_value_matches_empty_label() {
        let s = LabelSelector::parse("app=").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[("app", "")]))));
        assert!(!s.matches(Some(&labels(&[("app", "x")]))));
        assert!(!s.matches(None));
    }

    #[test]
    fn set_operators() {
        let s = LabelSelector::parse("env in (prod, staging)").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[("env", "prod")]))));
        assert!(s.matches(Some(&labels(&[("env", "staging")]))));
        assert!(!s.matches(Some(&labels(&[("env", "dev")]))));
        assert!(!s.matches(None));
        let s = LabelSelector::parse("env notin (prod,staging)").expect("a valid selector");
        assert!(!s.matches(Some(&labels(&[("env", "prod")]))));
        assert!(s.matches(Some(&labels(&[("env", "dev")]))));
        assert!(s.matches(None));
    }

    #[test]
    fn existence_operators() {
        let s = LabelSelector::parse("app").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[("app", "")]))));
        assert!(!s.matches(Some(&labels(&[("tier", "x")]))));
        let s = LabelSelector::parse("!app").expect("a valid selector");
        assert!(!s.matches(Some(&labels(&[("app", "x")]))));
        assert!(s.matches(None));
        let s = LabelSelector::parse("! app").expect("a valid selector");
        assert!(s.matches(None));
    }

    #[test]
    fn numeric_operators() {
        let s = LabelSelector::parse("replicas>2").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[("replicas", "3")]))));
        assert!(!s.matches(Some(&labels(&[("replicas", "2")]))));
        assert!(!s.matches(Some(&labels(&[("replicas", "many")]))));
        let s = LabelSelector::parse("replicas<2").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[("replicas", "1")]))));
        assert!(error("replicas>two").contains("must be an integer"));
    }

    #[test]
    fn terms_are_anded() {
        let s =
            LabelSelector::parse("app=x, env in (prod), !legacy,tier").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[
            ("app", "x"),
            ("env", "prod"),
            ("tier", "web")
        ]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "x"),
            ("env", "prod"),
            ("tier", "web"),
            ("legacy", "1")
        ]))));
        assert!(!s.matches(Some(&labels(&[("app", "x"), ("env", "prod")]))));
        assert_eq!(s.to_string(), "app=x,env in (prod),!legacy,tier");
    }

    #[test]
    fn prefixed_keys_and_keyword_named_labels() {
        let s = LabelSelector::parse("example.com/tier=web,in=notin").expect("a valid selector");
        assert!(s.matches(Some(&labels(&[
            ("example.com/tier", "web"),
            ("in", "notin")
        ]))));
    }

    #[test]
    fn label_selector_errors() {
        assert_eq!(
            error("app ("),
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt (>), lt (<)"
        );
        assert!(error("env in prod")
            .starts_with("unable to parse requirement: found 'prod', expected: '('"));
        assert!(error("env in prod").contains("values have to be a parenthesised list for 'in'"));
        assert!(error("env in (a b)").contains("found 'b', expected: ',' or ')'"));
        assert!(error("env in (a").contains("found 'end of string', expected: ',' or ')'"));
        assert!(error("app=x,").contains("found 'end of string', expected: identifier after ','"));
        assert!(error("app=x y").contains("found 'y', expected: ',' or 'end of string'"));
        assert!(error(",app").contains("found ',', expected: !, identifier, or 'end of string'"));
        assert!(error("app==(").contains("found '(', expected: identifier"));
        assert!(
            error("-app=x").starts_with("unable to parse requirement: invalid label key \"-app\"")
        );
        assert!(error("Example.com/app=x").contains("invalid label key \"Example.com/app\""));
        assert!(error("app=a/b").contains("invalid label value \"a/b\" for key \"app\""));
        assert!(error(&format!("app={}", "v".repeat(64))).contains("invalid label value"));
        assert!(error("!app=x").contains("takes no value"));
    }

    #[test]
    fn field_selector_operators() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("metadata.name=web", "pods").expect("a valid selector");
        assert!(s.matches("pods", &pod));
        assert_eq!(s.exact("metadata.name"), Some("web"));
        let s = FieldSelector::parse("metadata.name==other", "pods").expect("a valid selector");
        assert!(!s.matches("pods", &pod));
        let s = FieldSelector::parse("status.phase!=Running", "pods").expect("a valid selector");
        assert!(!s.matches("pods", &pod));
        assert_eq!(s.exact("status.phase"), None);
        let s = FieldSelector::parse(
            "status.phase != Pending, metadata.namespace=default",
            "pods",
        )
        .expect("a valid selector");
        assert!(s.matches("pods", &pod));
        assert!(FieldSelector::parse("", "pods")
            .expect("a valid selector")
            .is_empty());
    }

    #[test]
    fn field_selector_missing_values() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {}});
        assert!(FieldSelector::parse("spec.nodeName=", "pods")
            .expect("a valid selector")
            .matches("pods", &pod));
        assert!(FieldSelector::parse("spec.hostNetwork=false", "pods")
            .expect("a valid selector")
            .matches("pods", &pod));
        let host = json!({"spec": {"hostNetwork": true}});
        assert!(FieldSelector::parse("spec.hostNetwork=true", "pods")
            .expect("a valid selector")
            .matches("pods", &host));
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(FieldSelector::parse("spec.unschedulable=true", "nodes")
            .expect("a valid selector")
            .matches("nodes", &node));
        assert!(FieldSelector::parse("spec.unschedulable=false", "nodes")
            .expect("a valid selector")
            .matches("nodes", &json!({})));
    }

    #[test]
    fn field_selector_pod_ips() {
        let pod = json!({"status": {"podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}});
        assert!(FieldSelector::parse("status.podIP=10.0.0.5", "pods")
            .expect("a valid selector")
            .matches("pods", &pod));
        let s = FieldSelector::parse(r"status.podIPs=10.0.0.5\,fd00::5", "pods")
            .expect("a valid selector");
        assert!(s.matches("pods", &pod));
    }

    #[test]
    fn field_selector_events() {
        let event = json!({
            "metadata": {"name": "e1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "kubia", "namespace": "default", "uid": "u-1"},
            "reason": "Scheduled", "type": "Normal", "source": {"component": "default-scheduler"}
        });
        let s = FieldSelector::parse(
            "involvedObject.name=kubia,involvedObject.namespace=default,involvedObject.uid=u-1",
            "events",
        )
        .expect("a valid selector");
        assert!(s.matches("events", &event));
        assert!(FieldSelector::parse("source=default-scheduler", "events")
            .expect("a valid selector")
            .matches("events", &event));
        assert!(!FieldSelector::parse("type=Warning", "events")
            .expect("a valid selector")
            .matches("events", &event));
    }

    #[test]
    fn field_selector_escapes() {
        let pod = json!({"metadata": {"name": "a,b=c\\d"}});
        let s =
            FieldSelector::parse(r"metadata.name=a\,b\=c\\d", "pods").expect("a valid selector");
        assert_eq!(s.exact("metadata.name"), Some("a,b=c\\d"));
        assert!(s.matches("pods", &pod));
        let e =
            FieldSelector::parse(r"metadata.name=a\b", "pods").expect_err("an invalid selector");
        assert!(
            e.0.starts_with(r"invalid field selector: invalid escape sequence: \b"),
            "{e}"
        );
        let e = FieldSelector::parse(r"metadata.name=a\", "pods").expect_err("an invalid selector");
        assert!(e.0.contains("invalid escape sequence"), "{e}");
        let e = FieldSelector::parse("metadata.name=a=b", "pods").expect_err("an invalid selector");
        assert!(
            e.0.starts_with("invalid field selector: unescaped character in value: ="),
            "{e}"
        );
    }

    #[test]
    fn field_selector_errors() {
        let e = FieldSelector::parse("spec.foo=x", "pods").expect_err("an invalid selector");
        assert_eq!(e.0, "field label not supported: spec.foo");
        let e =
            FieldSelector::parse("metadata.namespace=x", "nodes").expect_err("an invalid selector");
        assert_eq!(e.0, "field label not supported: metadata.namespace");
        let e = FieldSelector::parse("status.phase=Running", "leases")
            .expect_err("an invalid selector");
        assert_eq!(e.0, "field label not supported: status.phase");
        let e = FieldSelector::parse("metadata.name", "pods").expect_err("an invalid selector");
        assert!(
            e.0.starts_with("invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
            "{e}"
        );
        assert!(FieldSelector::parse("status.phase=Active", "namespaces").is_ok());
        assert!(FieldSelector::parse("metadata.namespace=default", "leases").is_ok());
    }
}
