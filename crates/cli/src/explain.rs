//! `kubectl explain KIND[.field...]`: the server's OpenAPI v3 schema of a kind or field, laid
//! out as kubectl's plaintext template lays it out (descriptions wrapped as go-wordwrap wraps
//! them at 76 columns, fields sorted, `-required-`).

use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::get::unknown_kind;
use crate::kinds;
use crate::{Error, Flags, Result};

/// go-wordwrap's WrapString: greedy, at spaces, a word longer than the limit on its own line;
/// existing newlines kept.
pub fn wrap(text: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut current = 0usize;
    let mut word = String::new();
    let mut spaces = String::new();
    let (mut word_len, mut space_len) = (0usize, 0usize);
    // The end of the text finishes the last line as a newline would: one more newline, taken
    // off again at the end.
    for c in text.chars().chain(std::iter::once('\n')) {
        if c == '\n' {
            if word.is_empty() {
                if current + space_len <= limit {
                    out.push_str(&spaces);
                }
            } else {
                out.push_str(&spaces);
                out.push_str(&word);
            }
            spaces.clear();
            word.clear();
            space_len = 0;
            word_len = 0;
            out.push('\n');
            current = 0;
        } else if c.is_whitespace() && c != '\u{a0}' {
            if spaces.is_empty() || !word.is_empty() {
                current += space_len + word_len;
                out.push_str(&spaces);
                out.push_str(&word);
                spaces.clear();
                word.clear();
                space_len = 0;
                word_len = 0;
            }
            spaces.push(c);
            space_len += 1;
        } else {
            word.push(c);
            word_len += 1;
            if current + space_len + word_len > limit && word_len < limit {
                out.push('\n');
                current = 0;
                spaces.clear();
                space_len = 0;
            }
        }
    }
    out.pop();
    out
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.split('\n')
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

struct Document {
    schemas: Value,
}

impl Document {
    /// A `$ref`'s schema and the last segment of its name (`PodSpec`).
    fn resolve<'a>(&'a self, reference: &'a str) -> Option<(&'a Value, &'a str)> {
        let name = reference.strip_prefix("#/components/schemas/")?;
        let short = name.rsplit('.').next().unwrap_or(name);
        self.schemas.get(name).map(|schema| (schema, short))
    }

    /// The schema behind `allOf: [$ref]` or `$ref`, with the referenced type's name.
    fn deref<'a>(&'a self, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
        let reference = schema["$ref"].as_str().or_else(|| {
            schema["allOf"]
                .as_array()
                .filter(|all| all.len() == 1 && schema.get("properties").is_none())
                .and_then(|all| all[0]["$ref"].as_str())
        });
        match reference.and_then(|r| self.resolve(r)) {
            Some((target, name)) => (target, Some(name)),
            None => (schema, None),
        }
    }

    /// kubectl's typeGuess: `string`, `[]Container`, `map[string]Quantity`, `PodSpec`, `Object`.
    fn type_name(&self, schema: &Value) -> String {
        if let Some(items) = schema.get("items") {
            return format!("[]{}", self.type_name(items));
        }
        if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
            return format!("map[string]{}", self.type_name(values));
        }
        let (target, name) = self.deref(schema);
        if let Some(name) = name {
            return match target["type"].as_str() {
                Some(kind) if kind != "object" => kind.to_owned(),
                _ => name.to_owned(),
            };
        }
        match schema["type"].as_str() {
            Some("object") | None => "Object".to_owned(),
            Some(kind) => kind.to_owned(),
        }
    }
}

fn description_lines(text: &str) -> String {
    indent(&wrap(text, 76), 4)
}

pub async fn run(flags: &Flags) -> Result<()> {
    let Some(target) = flags.args.first() else {
        return Err(Error::Message(
            "You must specify the type of resource to explain. Use \"kubectl api-resources\" \
             for a complete list of supported resources."
                .to_owned(),
        ));
    };
    let mut path = target.split('.');
    let kind_word = path.next().unwrap_or_default();
    // kubectl explain prints this one without `error: `.
    let resource = kinds::by_name(kind_word).ok_or_else(|| {
        Error::Raw(format!(
            "the server doesn't have a resource type \"{kind_word}\""
        ))
    })?;
    let fields: Vec<&str> = path.filter(|f| !f.is_empty()).collect();
    let api = ApiClient::connect(flags).await?;
    let index = api.get_json("/openapi/v3", ACCEPT_JSON).await?;
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap_or("/openapi/v3/api/v1")
        .to_owned();
    let document = api.get_json(&url, ACCEPT_JSON).await?;
    let document = Document {
        schemas: document["components"]["schemas"].clone(),
    };
    let kind_schema = document
        .schemas
        .as_object()
        .into_iter()
        .flatten()
        .find(|(_, schema)| {
            schema["x-kubernetes-group-version-kind"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|gvk| gvk["kind"] == resource.kind && gvk["group"] == "")
        })
        .map(|(_, schema)| schema)
        .ok_or_else(|| unknown_kind(kind_word))?;

    let mut out = format!("KIND:       {}\nVERSION:    v1\n\n", resource.kind);
    // The schema shown, the text of its DESCRIPTION, and its fields' object schema.
    let mut schema = kind_schema;
    let mut description = kind_schema["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (n, field) in fields.iter().enumerate() {
        let (object, _) = document.deref(schema);
        let object = element_schema(&document, object);
        let Some(next) = object["properties"].get(*field) else {
            print!("{out}");
            return Err(Error::Message(format!("field \"{field}\" does not exist")));
        };
        schema = next;
        if n + 1 == fields.len() {
            out.push_str(&format!(
                "FIELD: {field} <{}>\n\n\n",
                document.type_name(schema)
            ));
            description = wrap(schema["description"].as_str().unwrap_or_default(), 76);
            // The field's type explains itself on the next line.
            let (target, name) = document.deref(element_schema_ref(schema));
            if name.is_some() {
                if let Some(text) = target["description"].as_str() {
                    description = format!("{description}\n{}", wrap(text, 76));
                }
            }
        }
    }
    let shown = if fields.is_empty() {
        wrap(&description, 76)
    } else {
        description
    };
    out.push_str("DESCRIPTION:\n");
    out.push_str(&indent(&shown, 4));
    out.push_str("\n    \n");
    let (object, _) = document.deref(schema);
    let object = element_schema(&document, object);
    let properties = object["properties"].as_object().filter(|p| !p.is_empty());
    match properties {
        Some(properties) => {
            out.push_str("FIELDS:\n");
            let required: Vec<&str> = object["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            for (name, field) in properties {
                out.push_str(&format!("  {name}\t<{}>", document.type_name(field)));
                if required.contains(&name.as_str()) {
                    out.push_str(" -required-");
                }
                out.push('\n');
                out.push_str(&description_lines(
                    field["description"].as_str().unwrap_or_default(),
                ));
                out.push_str("\n\n");
            }
            out.push('\n');
        }
        None => out.push('\n'),
    }
    print!("{out}");
    Ok(())
}

/// An array's or a map's element schema (explain walks into them), else the schema.
fn element_schema_ref(schema: &Value) -> &Value {
    if let Some(items) = schema.get("items") {
        return element_schema_ref(items);
    }
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        return element_schema_ref(values);
    }
    schema
}

fn element_schema<'a>(document: &'a Document, schema: &'a Value) -> &'a Value {
    let inner = element_schema_ref(schema);
    document.deref(inner).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_follows_go_wordwrap() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(wrap("a  b", 10), "a  b");
        assert_eq!(wrap("short\nlines", 10), "short\nlines");
        assert_eq!(
            wrap("x https://a-very-long-url", 10),
            "x\nhttps://a-very-long-url"
        );
    }
}
