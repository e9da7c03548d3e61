//! Shell completion: `completion bash|zsh|fish` prints Skiff's own small scripts
//! (`completion/skiff.*`), which ask the command itself at each Tab; `__complete` (and
//! `__completeNoDesc`) answers in the protocol kubectl's completion uses (one candidate per line,
//! `name<TAB>description`, then `:<directive>`), so scripts written for kubectl work too: the
//! verbs Skiff serves, resource types, and the names of objects from the cluster.

use serde_json::Value;

use crate::client::{ApiClient, ACCEPT_JSON};
use crate::get::list_query;
use crate::kinds;
use crate::{Error, Flags, Result};

const BASH: &str = include_str!("completion/skiff.bash");
const ZSH: &str = include_str!("completion/skiff.zsh");
const FISH: &str = include_str!("completion/skiff.fish");

/// The verbs offered at the first word, with what each does (in our words).
const COMMANDS: &[(&str, &str)] = &[
    ("annotate", "Add, change or remove annotations of objects"),
    ("api-resources", "List the kinds the server serves"),
    (
        "apply",
        "Create or update objects from files, keeping what was applied",
    ),
    ("attach", "Connect to the stdio of a running container"),
    ("cluster-info", "Show where the control plane answers"),
    (
        "completion",
        "Print the shell completion script (bash, zsh, fish)",
    ),
    ("config", "Read or change kubeconfig files"),
    ("cp", "Copy files between this machine and a container"),
    ("create", "Create objects from files or stdin"),
    (
        "delete",
        "Delete objects by name, file, label or all of a kind",
    ),
    ("describe", "Show an object in detail, with its events"),
    ("edit", "Change an object in your editor"),
    ("exec", "Run a command in a container"),
    ("explain", "Show the documentation of a kind or field"),
    ("get", "List or show objects"),
    ("label", "Add, change or remove labels of objects"),
    ("logs", "Print a container's logs"),
    ("patch", "Change fields of an object with a patch"),
    ("port-forward", "Forward local ports to a pod"),
    ("replace", "Replace objects with the content of files"),
    ("run", "Start a pod from an image"),
    ("version", "Print the client's and the server's versions"),
    ("wait", "Wait until objects meet a condition or are gone"),
];

/// cobra's ShellCompDirectiveNoFileComp and ShellCompDirectiveNoSpace.
const NO_FILE_COMP: u8 = 4;
const NO_SPACE: u8 = 2;

pub fn script(flags: &Flags) -> Result<()> {
    let text = match flags.args.first().map(String::as_str) {
        None => {
            return Err(Error::Message(
                "Shell not specified.\nSee 'kubectl completion -h' for help and examples"
                    .to_owned(),
            ))
        }
        Some("bash") => BASH,
        Some("zsh") => ZSH,
        Some("fish") => FISH,
        Some(other) => {
            return Err(Error::Message(format!(
                "Unsupported shell type \"{other}\".\nSee 'kubectl completion -h' for help and \
                 examples"
            )))
        }
    };
    print!("{text}");
    Ok(())
}

/// Verbs whose first argument is a resource type, then names of that type.
const TYPED_VERBS: &[&str] = &[
    "get", "describe", "delete", "label", "annotate", "edit", "wait", "patch", "explain",
];
/// Verbs whose first argument is a pod.
const POD_VERBS: &[&str] = &["exec", "attach", "port-forward", "logs"];
/// The workload kinds kubectl offers after a pod verb's pod names.
const POD_OWNERS: &[&str] = &[
    "daemonsets/",
    "deployments/",
    "pods/",
    "jobs/",
    "replicasets/",
    "replicationcontrollers/",
    "services/",
    "statefulsets/",
];

/// `__complete ARGS... PARTIAL` (and `__completeNoDesc`).
pub async fn complete(flags: &Flags, descriptions: bool) -> Result<()> {
    let words = &flags.args;
    let (partial, before) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut candidates: Vec<String> = Vec::new();
    // `VERB POD -c PARTIAL`: the word being typed is the container flag's value (the shell
    // passes it last, so the flag took it), and the words are the verb and the pod.
    let container_of = match (words.as_slice(), flags.stream.container.as_deref()) {
        ([verb, pod], Some(typed)) if POD_VERBS.contains(&verb.as_str()) => Some((pod, typed)),
        _ => None,
    };
    if let Some((pod, typed)) = container_of {
        let pod = pod.strip_prefix("pod/").unwrap_or(pod);
        for name in containers(flags, pod).await {
            if name.starts_with(typed) {
                candidates.push(name);
            }
        }
    }
    match before.split_first() {
        _ if container_of.is_some() => {}
        None => {
            for (verb, what) in COMMANDS.iter().filter(|(v, _)| v.starts_with(partial)) {
                candidates.push(if descriptions {
                    format!("{verb}\t{what}")
                } else {
                    (*verb).to_owned()
                });
            }
        }
        Some((verb, args)) if TYPED_VERBS.contains(&verb.as_str()) => match args.first() {
            None => match partial.split_once('/') {
                Some((kind, _)) => {
                    if let Some(resource) = kinds::by_name(kind) {
                        for name in names(flags, resource).await {
                            let full = format!("{kind}/{name}");
                            if full.starts_with(partial) {
                                candidates.push(full);
                            }
                        }
                    }
                }
                None => {
                    for name in resource_types(flags).await {
                        if name.starts_with(partial) {
                            candidates.push(name);
                        }
                    }
                }
            },
            Some(kind) if !kind.contains('/') && verb != "explain" => {
                if let Some(resource) = kinds::by_name(kind) {
                    let taken: Vec<&String> = args[1..].iter().collect();
                    for name in names(flags, resource).await {
                        if name.starts_with(partial) && !taken.contains(&&name) {
                            candidates.push(name);
                        }
                    }
                }
            }
            Some(_) => {}
        },
        Some((verb, args)) if POD_VERBS.contains(&verb.as_str()) && args.is_empty() => {
            if let Some(pods) = kinds::by_name("pods") {
                for name in names(flags, pods).await {
                    if name.starts_with(partial) {
                        candidates.push(name);
                    }
                }
            }
            candidates.extend(
                POD_OWNERS
                    .iter()
                    .filter(|kind| kind.starts_with(partial))
                    .map(|kind| kind.to_string()),
            );
        }
        Some(_) => {}
    }
    // Only `kind/` prefixes: the shell must not add a space after one.
    let no_space = !candidates.is_empty() && candidates.iter().all(|c| c.ends_with('/'));
    for candidate in candidates {
        println!("{candidate}");
    }
    if no_space {
        println!(":{}", NO_FILE_COMP | NO_SPACE);
        crate::report(
            "Completion ended with directive: ShellCompDirectiveNoSpace, \
             ShellCompDirectiveNoFileComp",
        );
    } else {
        println!(":{NO_FILE_COMP}");
        crate::report("Completion ended with directive: ShellCompDirectiveNoFileComp");
    }
    Ok(())
}

/// The resource types of the server's discovery, as `api-resources -o name` prints them.
async fn resource_types(flags: &Flags) -> Vec<String> {
    let Ok(api) = ApiClient::connect(flags).await else {
        return Vec::new();
    };
    let mut found: Vec<(String, String)> = Vec::new();
    let mut add = |list: &Value, group: &str| {
        for resource in list["resources"].as_array().into_iter().flatten() {
            let name = resource["name"].as_str().unwrap_or("/");
            if !name.contains('/') {
                found.push((group.to_owned(), name.to_owned()));
            }
        }
    };
    if let Ok(core) = api.get_json("/api/v1", ACCEPT_JSON).await {
        add(&core, "");
    }
    if let Ok(groups) = api.get_json("/apis", ACCEPT_JSON).await {
        for group in groups["groups"].as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default();
            if let Some(version) = group["preferredVersion"]["groupVersion"].as_str() {
                if let Ok(list) = api.get_json(&format!("/apis/{version}"), ACCEPT_JSON).await {
                    add(&list, name);
                }
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|(group, name)| {
            if group.is_empty() {
                name
            } else {
                format!("{name}.{group}")
            }
        })
        .collect()
}

/// The names of pod `pod`'s containers (init containers after them), as kubectl offers them.
async fn containers(flags: &Flags, pod: &str) -> Vec<String> {
    let Ok(api) = ApiClient::connect(flags).await else {
        return Vec::new();
    };
    let Some(pods) = kinds::by_name("pods") else {
        return Vec::new();
    };
    let uri = pods.object_path(api.namespace(), pod);
    let Ok(object) = api.get_json(&uri, ACCEPT_JSON).await else {
        return Vec::new();
    };
    ["containers", "initContainers"]
        .iter()
        .flat_map(|list| {
            object["spec"][*list]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// The names of the objects of `resource` in the namespace of the flags.
async fn names(flags: &Flags, resource: &kinds::Resource) -> Vec<String> {
    let Ok(api) = ApiClient::connect(flags).await else {
        return Vec::new();
    };
    let namespace = api.namespace().to_owned();
    let ns = (!flags.all_namespaces).then_some(namespace.as_str());
    let uri = format!(
        "{}{}",
        resource.collection_path(ns),
        list_query(flags, false)
    );
    match api.get_json(&uri, ACCEPT_JSON).await {
        Ok(list) => list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offered_verbs_are_the_verbs_served() {
        let mut offered: Vec<&str> = COMMANDS.iter().map(|(verb, _)| *verb).collect();
        let mut served: Vec<&str> = crate::VERBS.to_vec();
        offered.sort_unstable();
        served.sort_unstable();
        assert_eq!(offered, served);
    }
}
