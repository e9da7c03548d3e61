//! The pod a streaming verb works on: `NAME`, `pod/NAME` (or `po/`, `pods/`), fetched once,
//! and its container as kubectl picks it (`-c`, the default-container annotation, the first).

use serde_json::Value;

use crate::args::StreamFlags;
use crate::client::ACCEPT_JSON;
use crate::{ApiClient, Error, Result};

/// The annotation naming the container kubectl picks when `-c` is not given.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// The pod name of `NAME` or `pod/NAME`.
pub(crate) fn pod_name(arg: &str) -> Result<&str> {
    match arg.split_once('/') {
        None => Ok(arg),
        Some(("pod" | "pods" | "po", name)) if !name.is_empty() => Ok(name),
        Some((kind, _)) => Err(Error::Message(format!(
            "this Skiff CLI streams from pods only (pod/NAME), not {kind:?}"
        ))),
    }
}

/// The path of pod `name` in the client's namespace, with `suffix` (`/exec`, `/log`, ...).
pub(crate) fn pod_path(api: &ApiClient, name: &str, suffix: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/pods/{}{suffix}",
        encode(api.namespace()),
        encode(name)
    )
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// GETs the pod (a missing one is the server's NotFound, as kubectl prints it).
pub(crate) async fn get(api: &ApiClient, name: &str) -> Result<Value> {
    api.get_json(&pod_path(api, name, ""), ACCEPT_JSON).await
}

/// The names of the pod's containers in `section` (`containers`, `initContainers`, ...).
fn names<'a>(pod: &'a Value, section: &str) -> Vec<&'a str> {
    pod["spec"][section]
        .as_array()
        .map(|list| list.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

/// kubectl's FindOrDefaultContainerByName without a name: the annotation's container if the
/// pod has it, else the first, saying so on stderr when there was a choice (unless `quiet`).
pub(crate) fn default_container(pod: &Value, quiet: bool) -> Result<String> {
    let containers = names(pod, "containers");
    let Some(first) = containers.first() else {
        return Err(Error::Message(format!(
            "pod {}/{} does not have any containers",
            pod["metadata"]["namespace"].as_str().unwrap_or_default(),
            pod["metadata"]["name"].as_str().unwrap_or_default()
        )));
    };
    if let Some(named) = pod["metadata"]["annotations"][DEFAULT_CONTAINER].as_str() {
        let known = ["containers", "initContainers", "ephemeralContainers"]
            .iter()
            .any(|section| names(pod, section).contains(&named));
        if known {
            return Ok(named.to_owned());
        }
    }
    if containers.len() > 1 && !quiet {
        crate::report(&format!(
            "Defaulted container \"{first}\" out of: {}",
            all_container_names(pod)
        ));
    }
    Ok((*first).to_owned())
}

/// The container `-c` names, else the one [`default_container`] picks.
pub(crate) fn chosen_container(pod: &Value, stream: &StreamFlags) -> Result<String> {
    match &stream.container {
        Some(container) => Ok(container.clone()),
        None => default_container(pod, stream.quiet),
    }
}

/// kubectl's refusal to stream to a pod whose containers have all ended: `cannot {action} a
/// completed pod; current phase is PHASE`.
pub(crate) fn refuse_completed(pod: &Value, action: &str) -> Result<()> {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(Error::Message(format!(
            "cannot {action} a completed pod; current phase is {phase}"
        )));
    }
    Ok(())
}

/// kubectl's AllContainerNames: `a, b, init (init), debug (ephem)`.
pub(crate) fn all_container_names(pod: &Value) -> String {
    let mut all: Vec<String> = names(pod, "containers")
        .into_iter()
        .map(str::to_owned)
        .collect();
    all.extend(
        names(pod, "initContainers")
            .into_iter()
            .map(|n| format!("{n} (init)")),
    );
    all.extend(
        names(pod, "ephemeralContainers")
            .into_iter()
            .map(|n| format!("{n} (ephem)")),
    );
    all.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_named_as_kubectl_names_them() {
        assert_eq!(pod_name("a").ok(), Some("a"));
        assert_eq!(pod_name("pod/a").ok(), Some("a"));
        assert_eq!(pod_name("po/a").ok(), Some("a"));
        assert!(pod_name("deploy/a").is_err());
        assert!(pod_name("pod/").is_err());
    }

    #[test]
    fn the_default_container_follows_the_annotation_then_the_first() {
        let pod = serde_json::json!({
            "metadata": {"name": "p", "annotations": {DEFAULT_CONTAINER: "side"}},
            "spec": {"containers": [{"name": "web"}, {"name": "side"}],
                     "initContainers": [{"name": "setup"}]}
        });
        assert_eq!(default_container(&pod, false).ok().as_deref(), Some("side"));
        assert_eq!(all_container_names(&pod), "web, side, setup (init)");
        let mut other = pod.clone();
        other["metadata"]["annotations"][DEFAULT_CONTAINER] = "gone".into();
        assert_eq!(default_container(&other, true).ok().as_deref(), Some("web"));
    }
}
