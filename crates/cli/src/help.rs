//! `kubectl VERB --help`: what the verb does, its usage and flags, and examples, in our words.

/// (verb, what it does, usage, flags, examples).
const VERBS: &[(&str, &str, &str, &str, &str)] = &[
    ("get", "List objects, or show some by name.",
     "kubectl get KIND[,KIND] [NAME...] | KIND/NAME... [flags]",
     "-o wide|yaml|json|name|jsonpath=T|custom-columns=C, -l SELECTOR, --field-selector SEL,\n  -n NS, -A, --show-labels, -L KEY,..., --sort-by PATH, -w, --no-headers",
     "kubectl get po\n  kubectl get po kubia-manual -o yaml\n  kubectl get po -l app=kubia -o wide\n  kubectl get po -w"),
    ("create", "Create objects from files or stdin (or a namespace or a secret by name).",
     "kubectl create -f FILE|DIR|- [-R] | kubectl create namespace NAME\n  | kubectl create secret docker-registry|generic|tls NAME [flags]",
     "-f FILE (repeatable), -R, --dry-run=client|server, -o name|yaml|json,\n  --docker-server, --docker-username, --docker-password, --docker-email,\n  --from-literal K=V, --from-file [K=]PATH, --from-env-file PATH, --type, --cert FILE, --key FILE",
     "kubectl create -f kubia-manual.yaml\n  cat pod.yaml | kubectl create -f -\n  kubectl create namespace custom-namespace\n  kubectl create secret docker-registry reg --docker-server=HOST:PORT --docker-username=U --docker-password=P\n  kubectl create secret generic creds --from-file=./username.txt --from-literal=pw=secret\n  kubectl create secret tls web --cert=tls.crt --key=tls.key"),
    ("apply", "Create objects, or update them to match files, remembering what was applied.",
     "kubectl apply -f FILE|DIR|- [-R]",
     "-f, -R, --dry-run=client|server, --server-side, -o name",
     "kubectl apply -f kubia-manual.yaml\n  kubectl apply -R -f manifests/"),
    ("replace", "Replace objects with the content of files.",
     "kubectl replace -f FILE",
     "-f, --dry-run=client|server",
     "kubectl replace -f kubia-manual.yaml"),
    ("delete", "Delete objects by name, file, label selector, or all of a kind.",
     "kubectl delete KIND NAME... | KIND/NAME... | -f FILE | KIND --all | KIND -l SELECTOR",
     "--grace-period N, --now, --force, --wait=false, --ignore-not-found, -n NS",
     "kubectl delete po kubia-manual\n  kubectl delete po --all\n  kubectl delete po -l app=kubia\n  kubectl delete namespace custom-namespace"),
    ("describe", "Show an object in detail, with its events.",
     "kubectl describe po|no|ns|secret [NAME...]",
     "-l SELECTOR, -n NS, -A",
     "kubectl describe po kubia-manual\n  kubectl describe node"),
    ("edit", "Change an object in your editor ($KUBE_EDITOR, $EDITOR, else vi).",
     "kubectl edit KIND NAME | KIND/NAME",
     "-o yaml|json (the format to edit in)",
     "kubectl edit po kubia-manual\n  KUBE_EDITOR=nano kubectl edit pod/kubia-manual"),
    ("patch", "Change fields of an object with a patch.",
     "kubectl patch KIND NAME -p PATCH",
     "-p PATCH (JSON or YAML), --type strategic|merge|json, -o name|yaml|json",
     "kubectl patch po kubia-manual -p '{\"metadata\":{\"labels\":{\"tier\":\"web\"}}}'"),
    ("label", "Add, change or remove labels.",
     "kubectl label KIND NAME... KEY=VALUE... KEY-...",
     "--overwrite, -l SELECTOR, --all, -o name, --dry-run=client|server",
     "kubectl label po kubia-manual env=prod\n  kubectl label po kubia-manual env-"),
    ("annotate", "Add, change or remove annotations.",
     "kubectl annotate KIND NAME... KEY=VALUE... KEY-...",
     "--overwrite, -l SELECTOR, --all, -o name",
     "kubectl annotate po kubia-manual owner=me"),
    ("exec", "Run a command in a running container; its exit code is the command's.",
     "kubectl exec POD|pod/NAME [-c CONTAINER] [-i] [-t] -- COMMAND [ARG...]",
     "-c CONTAINER, -i (stdin), -t (a terminal), -q",
     "kubectl exec kubia-manual -- hostname\n  kubectl exec -it kubia-manual -c kubia -- sh"),
    ("logs", "Print a container's logs.",
     "kubectl logs POD|pod/NAME [CONTAINER] | -l SELECTOR",
     "-c C, -f, -p, --tail N, --since 5m, --since-time T, --timestamps, --limit-bytes N,\n  --all-containers, --prefix, --max-log-requests N",
     "kubectl logs kubia-manual\n  kubectl logs -f kubia-manual --tail 10\n  kubectl logs kubia-manual --previous"),
    ("attach", "Connect to the stdio of a running container's own process.",
     "kubectl attach POD|pod/NAME [-c CONTAINER] [-i] [-t]",
     "-c CONTAINER, -i, -t, -q",
     "kubectl attach -it shell"),
    ("port-forward", "Forward local ports to ports of a pod, until Ctrl-C.",
     "kubectl port-forward POD|pod/NAME [LOCAL:]REMOTE...",
     "--address ADDR (default localhost)",
     "kubectl port-forward pod/kubia-manual 8080:8080"),
    ("run", "Start a pod from an image.",
     "kubectl run NAME --image=IMAGE [flags] [-- ARG...]",
     "--restart=Always|OnFailure|Never, --env K=V, --port P, --labels K=V,..., --command,\n  -i, -t, --rm, --image-pull-policy P, --dry-run=client|server",
     "kubectl run web --image=luksa/kubia --port=8080\n  kubectl run -it --rm shell --image=busybox --restart=Never -- sh"),
    ("cp", "Copy files between this machine and a container (tar over exec).",
     "kubectl cp SRC DEST (one of them [NAMESPACE/]POD:PATH)",
     "-c CONTAINER, --no-preserve",
     "kubectl cp kubia-manual:/etc/hostname ./hostname\n  kubectl cp ./app.js kubia-manual:/app.js"),
    ("wait", "Wait until objects meet a condition, or are gone.",
     "kubectl wait KIND/NAME... --for=condition=C[=V]|delete|create|jsonpath=EXPR[=V]",
     "--for, --timeout=30s, -l SELECTOR, --all",
     "kubectl wait --for=condition=Ready pod/kubia-manual --timeout=60s"),
    ("config", "Read or change kubeconfig files.",
     "kubectl config view|get-contexts|current-context|use-context NAME|set-context --current --namespace=NS",
     "--minify, --raw, -o yaml|json",
     "kubectl config get-contexts\n  kubectl config set-context --current --namespace=custom-namespace"),
    ("api-resources", "List the kinds the server serves.",
     "kubectl api-resources",
     "-o wide|name, --namespaced=true|false, --api-group G, --sort-by name|kind",
     "kubectl api-resources -o wide"),
    ("explain", "Show the documentation of a kind or one of its fields.",
     "kubectl explain KIND[.FIELD...]",
     "--api-version V",
     "kubectl explain pod.spec.containers"),
    ("completion", "Print a shell completion script.",
     "kubectl completion bash|zsh|fish",
     "",
     "source <(kubectl completion bash)\n  kubectl completion fish | source"),
    ("version", "Print the client's and the server's versions.",
     "kubectl version",
     "",
     "kubectl version"),
    ("cluster-info", "Show where the control plane answers.",
     "kubectl cluster-info",
     "",
     "kubectl cluster-info"),
];

/// The help of `verb`, if it is one Skiff serves.
pub fn verb_help(verb: &str) -> Option<String> {
    let (_, what, usage, flags, examples) = VERBS.iter().find(|(v, ..)| *v == verb)?;
    let mut text = format!("{what}\n\nUsage:\n  {usage}\n");
    if !flags.is_empty() {
        text.push_str(&format!("\nFlags:\n  {flags}\n"));
    }
    text.push_str(&format!("\nExamples:\n  {examples}\n"));
    text.push_str(
        "\nEverywhere: --kubeconfig FILE, --context NAME, -n/--namespace NS. \
         'kubectl --help' lists every verb.\n",
    );
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_served_has_help_with_examples() {
        for verb in crate::VERBS {
            let text = verb_help(verb).unwrap_or_else(|| panic!("no help for {verb}"));
            assert!(text.contains("\nExamples:\n  "), "{verb}: {text}");
            assert!(
                text.contains(&format!("kubectl {verb}")) || *verb == "completion",
                "{verb}"
            );
        }
    }
}
