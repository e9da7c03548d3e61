//! cobra's "Did you mean this?" for a mistyped verb: kubectl's commands within two edits of
//! the word, or starting with it, in the order kubectl lists them.

/// kubectl's commands in the order kubectl adds them (cobra suggests in this order): its help
/// groups, then the other commands.
const KUBECTL_COMMANDS: &[&str] = &[
    "create",
    "expose",
    "run",
    "set",
    "explain",
    "get",
    "edit",
    "delete",
    "rollout",
    "scale",
    "autoscale",
    "certificate",
    "cluster-info",
    "top",
    "cordon",
    "uncordon",
    "drain",
    "taint",
    "describe",
    "logs",
    "attach",
    "exec",
    "port-forward",
    "proxy",
    "cp",
    "auth",
    "debug",
    "events",
    "diff",
    "apply",
    "patch",
    "replace",
    "wait",
    "kustomize",
    "label",
    "annotate",
    "completion",
    "alpha",
    "config",
    "plugin",
    "version",
    "api-versions",
    "api-resources",
    "options",
];

/// Whether kubectl has this command (implemented here or not).
pub fn is_kubectl_command(word: &str) -> bool {
    KUBECTL_COMMANDS.contains(&word)
}

/// cobra's SuggestionsFor with kubectl's minimum distance of 2.
pub fn suggestions(typed: &str) -> Vec<&'static str> {
    let typed = typed.to_lowercase();
    KUBECTL_COMMANDS
        .iter()
        .copied()
        .filter(|command| {
            strsim::levenshtein(&typed, command) <= 2 || command.starts_with(typed.as_str())
        })
        .collect()
}

/// kubectl's message for an unknown command, with its suggestions.
pub fn unknown_command(typed: &str) -> String {
    let mut text = format!("error: unknown command \"{typed}\" for \"kubectl\"");
    let found = suggestions(typed);
    if !found.is_empty() {
        text.push_str("\n\nDid you mean this?\n");
        for suggestion in found {
            text.push_str(&format!("\t{suggestion}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_follow_cobra() {
        assert_eq!(suggestions("gett"), ["set", "get"]);
        assert_eq!(suggestions("descrbe"), ["describe"]);
        assert_eq!(suggestions("api"), ["cp", "api-versions", "api-resources"]);
        assert!(suggestions("xyz").is_empty());
        assert_eq!(
            unknown_command("xyz"),
            "error: unknown command \"xyz\" for \"kubectl\""
        );
    }
}
