//! `kubectl edit TYPE NAME` (or `TYPE/NAME`): the object as YAML (or JSON with `-o json`) in
//! the user's editor (`$KUBE_EDITOR`, `$EDITOR`, else `vi`); what changed is sent as a JSON merge
//! patch. When the server refuses it, the file opens again with the server's reasons on top, as
//! kubectl does; saving it unchanged then gives up, keeping a copy of the edit.

use http::Method;
use serde_json::{Map, Value};
use skiff_api::decode::{self, Format};

use crate::client::{self, ApiClient, ACCEPT_JSON};
use crate::get::parse_named_objects;
use crate::kinds::Resource;
use crate::{printer, Error, Flags, Result};

/// The comment on top of the file (our words).
const HEADER: &str = "\
# Edit the object below, save and quit to send the change. Lines starting with '#' are
# ignored; an empty file cancels. If the server refuses the change, this file opens again
# with its reasons here.
#
";

pub async fn run(flags: &Flags) -> Result<()> {
    let targets = parse_named_objects(
        &flags.args,
        "you must specify the object to edit: kubectl edit TYPE NAME or TYPE/NAME",
    )?;
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let json = flags.output.as_deref() == Some("json");
    for (resource, name) in targets {
        edit_one(&api, resource, &namespace, &name, json).await?;
    }
    Ok(())
}

async fn edit_one(
    api: &ApiClient,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    json: bool,
) -> Result<()> {
    let uri = resource.object_path(namespace, name);
    let mut original = api.get_json(&uri, ACCEPT_JSON).await?;
    if let Some(metadata) = original["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    if let Some(map) = original.as_object_mut() {
        map.entry("apiVersion").or_insert(Value::from("v1"));
        map.entry("kind").or_insert(Value::from(resource.kind));
    }
    let body = if json {
        printer::json(&original)
    } else {
        printer::yaml(&original)
    };
    let file = EditFile::create(if json { "json" } else { "yaml" })?;
    let path = file.0.clone();
    let mut text = format!("{HEADER}{body}");
    let mut refused: Option<String> = None;
    loop {
        std::fs::write(&path, &text)
            .map_err(|e| Error::Message(format!("cannot write {}: {e}", path.display())))?;
        open_editor(&path)?;
        let saved = std::fs::read_to_string(&path)
            .map_err(|e| Error::Message(format!("cannot read {}: {e}", path.display())))?;
        let content = strip_comments(&saved);
        if content.trim().is_empty() {
            crate::report("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        if let Some(reason) = &refused {
            if strip_comments(&text) == content {
                // Saved again as it was refused: keep the user's work and stop.
                let kept = keep_copy(&saved)?;
                crate::report(&format!(
                    "A copy of your changes has been stored to \"{}\"",
                    kept.display()
                ));
                return Err(Error::Message(format!(
                    "Edit cancelled, no valid changes were saved.\n{reason}"
                )));
            }
        }
        let format = if content.trim_start().starts_with('{') {
            Format::Json
        } else {
            Format::Yaml
        };
        let edited = match decode::parse(content.as_bytes(), format) {
            Ok(parsed) => parsed.value,
            Err(e) => {
                let reason = format!("the edited file is not valid: {e}");
                text = with_reason(&reason, &saved);
                refused = Some(reason);
                continue;
            }
        };
        let patch = merge_patch(&original, &edited);
        if patch.as_object().is_some_and(Map::is_empty) {
            crate::report("Edit cancelled, no changes made.");
            return Ok(());
        }
        let sent = api
            .send_typed(
                Method::PATCH,
                &format!("{uri}?fieldManager=kubectl-edit"),
                "application/merge-patch+json",
                patch.to_string().into_bytes(),
                ("patch", resource.plural),
            )
            .await;
        match sent {
            Ok(bytes) => {
                client::parse(&bytes, &uri)?;
                println!("{}/{name} edited", resource.singular);
                return Ok(());
            }
            Err(Error::Api(e)) => {
                let reason = e.render();
                text = with_reason(&reason, &saved);
                refused = Some(reason);
            }
            Err(other) => return Err(other),
        }
    }
}

/// Runs the user's editor on `path` and waits for it.
fn open_editor(path: &std::path::Path) -> Result<()> {
    let editor = ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_owned());
    // Through the shell, as kubectl does for an editor with arguments (`code --wait`).
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| Error::Message(format!("cannot start the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Error::Message(format!(
            "there was a problem with the editor {editor:?}"
        )));
    }
    Ok(())
}

/// `text` without its lines that start with `#`.
fn strip_comments(text: &str) -> String {
    text.split_inclusive('\n')
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect()
}

/// The file to open again: the server's reasons as comments, then what the user saved
/// (without the comments of an earlier round).
fn with_reason(reason: &str, saved: &str) -> String {
    let mut text = String::from(HEADER);
    for line in reason.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str("#\n");
    text.push_str(&strip_comments(saved));
    text
}

/// Keeps the user's refused edit in a file of its own.
fn keep_copy(saved: &str) -> Result<std::path::PathBuf> {
    let kept = EditFile::create("yaml")?;
    std::fs::write(&kept.0, saved)
        .map_err(|e| Error::Message(format!("cannot write {}: {e}", kept.0.display())))?;
    let path = kept.0.clone();
    std::mem::forget(kept);
    Ok(path)
}

/// A new file of ours in the temporary directory (`skiff-edit-<pid>-<n>.<extension>`, made
/// with O_EXCL), removed on drop.
struct EditFile(std::path::PathBuf);

impl EditFile {
    fn create(extension: &str) -> Result<EditFile> {
        let dir = std::env::temp_dir();
        let mut last = None;
        for n in 0..100 {
            let path = dir.join(format!("skiff-edit-{}-{n}.{extension}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(EditFile(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(Error::Message(format!(
            "cannot make the file to edit in {}: {}",
            dir.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }
}

impl Drop for EditFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: changed and new members as
/// they are in `to`, removed ones as `null`, objects compared member by member.
pub fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut patch = Map::new();
            for key in a.keys() {
                if !b.contains_key(key) {
                    patch.insert(key.clone(), Value::Null);
                }
            }
            for (key, value) in b {
                match a.get(key) {
                    Some(old) if old == value => {}
                    Some(old @ Value::Object(_)) if value.is_object() => {
                        patch.insert(key.clone(), merge_patch(old, value));
                    }
                    _ => {
                        patch.insert(key.clone(), value.clone());
                    }
                }
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_patch_holds_changes_additions_and_removals_only() {
        let from = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}},
                          "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let to = json!({"metadata": {"name": "a", "labels": {"x": "3", "z": "4"}},
                        "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert_eq!(
            merge_patch(&from, &to),
            json!({"metadata": {"labels": {"x": "3", "y": null, "z": "4"}},
                   "spec": {"containers": [{"name": "c", "image": "j"}]}})
        );
        assert_eq!(merge_patch(&from, &from), json!({}));
    }

    #[test]
    fn comments_go_and_the_reason_comes_on_top() {
        let saved = "# old\nkind: Pod\n  # indented\nmetadata: {}\n";
        assert_eq!(strip_comments(saved), "kind: Pod\nmetadata: {}\n");
        let again = with_reason("line one\nline two", saved);
        assert!(again.starts_with(HEADER));
        assert!(again.contains("# line one\n# line two\n#\nkind: Pod\n"));
    }
}
