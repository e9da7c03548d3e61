//! The seed's workflow driven by the real kubectl v1.35 against `skiff server`: every step of
//! the "Done when" list, each test on its own cluster, asserting on what kubectl prints
//! and how it exits.

use std::time::Duration;

use skiff_e2e::{
    assert_exit_code, assert_success, fixture, parse_table, stderr, stdout, write_file, Cluster,
};

const SEED: &str = "kubia-manual.yaml";
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The corrected seed descriptor's path, as a string for kubectl's argument list.
fn seed() -> String {
    fixture(SEED).to_string_lossy().into_owned()
}

/// Creates the corrected seed pod and checks kubectl's answer.
fn create_seed_pod(cluster: &Cluster) {
    let out = cluster.kubectl_ok(["create", "-f", &seed()]);
    assert_eq!(out, "pod/kubia-manual created\n");
}

/// A minimal pod manifest named `name` with `labels`.
fn pod_yaml(name: &str, labels: &[(&str, &str)]) -> String {
    let mut yaml = format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n");
    if !labels.is_empty() {
        yaml.push_str("  labels:\n");
        for (key, value) in labels {
            yaml.push_str(&format!("    {key}: \"{value}\"\n"));
        }
    }
    yaml.push_str("spec:\n  containers:\n    - name: main\n      image: busybox:1.36\n");
    yaml
}

/// Creates a pod from `pod_yaml` through `kubectl create -f -`.
fn create_pod(cluster: &Cluster, namespace: &str, name: &str, labels: &[(&str, &str)]) {
    let output = cluster.kubectl_stdin(
        ["create", "-n", namespace, "-f", "-"],
        &pod_yaml(name, labels),
    );
    assert_success(&output, &format!("kubectl create pod {namespace}/{name}"));
    assert_eq!(stdout(&output), format!("pod/{name} created\n"));
}

/// The sorted pod names `kubectl get po -o name` prints (without the `pod/` prefix).
fn pod_names(cluster: &Cluster, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["get", "po", "-o", "name"];
    args.extend_from_slice(extra);
    let mut names: Vec<String> = cluster
        .kubectl_ok(args)
        .lines()
        .map(|line| line.trim_start_matches("pod/").to_owned())
        .collect();
    names.sort();
    names
}

fn jsonpath(cluster: &Cluster, what: &str, path: &str) -> String {
    cluster.kubectl_ok(["get", what, "-o", &format!("jsonpath={path}")])
}

#[test]
fn version_shows_server_v1_35() {
    let cluster = Cluster::start();
    let output = cluster.kubectl(["version"]);
    assert_success(&output, "kubectl version");
    let out = stdout(&output);
    assert!(out.contains("Client Version: v1.35"), "{out}");
    assert!(out.contains("Server Version: v1.35"), "{out}");
    // A skew warning would mean the server reports another minor version.
    assert!(
        !stderr(&output).contains("version difference"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn api_resources_lists_pods_with_short_name_po() {
    let cluster = Cluster::start();
    let rows = parse_table(&cluster.kubectl_ok(["api-resources"]));
    assert_eq!(
        rows[0],
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    for expected in [
        ["pods", "po", "v1", "true", "Pod"],
        ["namespaces", "ns", "v1", "false", "Namespace"],
        ["nodes", "no", "v1", "false", "Node"],
        ["events", "ev", "v1", "true", "Event"],
    ] {
        assert!(
            rows.iter().any(|row| row == &expected),
            "no row {expected:?} in {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|row| row == &["leases", "coordination.k8s.io/v1", "true", "Lease"]),
        "no leases row in {rows:?}"
    );
}

#[test]
fn default_namespaces_exist() {
    let cluster = Cluster::start();
    let names = cluster.kubectl_ok(["get", "ns", "-o", "name"]);
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            names.lines().any(|l| l == format!("namespace/{namespace}")),
            "{namespace} missing from:\n{names}"
        );
    }
}

#[test]
fn get_po_pod_and_pods_show_the_pending_pod() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    for resource in ["po", "pod", "pods"] {
        let rows = parse_table(&cluster.kubectl_ok(["get", resource]));
        assert_eq!(rows.len(), 2, "get {resource}: {rows:?}");
        assert_eq!(rows[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
        assert_eq!(rows[1][..4], ["kubia-manual", "0/1", "Pending", "0"]);
    }
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "kubia-manual"]));
    assert_eq!(rows[1][..3], ["kubia-manual", "0/1", "Pending"]);
}

#[test]
fn get_po_wide_shows_the_extra_columns() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "-o", "wide"]));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert_eq!(rows[1].len(), 9, "{rows:?}");
    assert_eq!(rows[1][..3], ["kubia-manual", "0/1", "Pending"]);
    // No node yet: no IP, no node.
    assert_eq!(rows[1][5..], ["<none>", "<none>", "<none>", "<none>"]);
}

#[test]
fn get_po_json_has_the_defaults() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    let text = cluster.kubectl_ok(["get", "po", "kubia-manual", "-o", "json"]);
    let pod: serde_json::Value = serde_json::from_str(&text).expect("-o json prints JSON");
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["apiVersion"], "v1");
    let metadata = &pod["metadata"];
    assert_eq!(metadata["name"], "kubia-manual");
    assert_eq!(metadata["namespace"], "default");
    assert_eq!(metadata["labels"]["appName"], "kubia-app");
    assert_eq!(metadata["labels"]["version"], "1.0.0");
    assert!(
        metadata["uid"].as_str().is_some_and(|s| s.len() >= 32),
        "{pod}"
    );
    let rv = metadata["resourceVersion"].as_str().unwrap_or_default();
    assert!(
        rv.parse::<u64>().is_ok_and(|rv| rv > 0),
        "resourceVersion {rv:?}"
    );
    assert!(metadata["creationTimestamp"].is_string(), "{pod}");

    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["enableServiceLinks"], true);
    assert_eq!(spec["priority"], 0);
    let container = &spec["containers"][0];
    assert_eq!(container["name"], "kubia");
    assert_eq!(container["image"], "luksa/kubia");
    // Given explicitly in the descriptor, so not defaulted.
    assert_eq!(container["imagePullPolicy"], "Never");
    assert_eq!(container["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(container["terminationMessagePolicy"], "File");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert_eq!(container["ports"][0]["protocol"], "TCP");
    assert_eq!(pod["status"]["phase"], "Pending");

    // A list comes back as kubectl's List with the pod in it.
    let text = cluster.kubectl_ok(["get", "pods", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&text).expect("-o json prints JSON");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list["items"][0]["metadata"]["uid"], metadata["uid"]);
}

#[test]
fn get_po_yaml_has_the_defaults() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    let yaml = cluster.kubectl_ok(["get", "pod", "kubia-manual", "-o", "yaml"]);
    let has_line = |wanted: &str| yaml.lines().any(|line| line.trim() == wanted);
    for line in [
        "apiVersion: v1",
        "kind: Pod",
        "name: kubia-manual",
        "namespace: default",
        "appName: kubia-app",
        "version: 1.0.0",
        "restartPolicy: Always",
        "terminationGracePeriodSeconds: 30",
        "phase: Pending",
    ] {
        assert!(has_line(line), "no line {line:?} in:\n{yaml}");
    }
    for prefix in ["uid: ", "resourceVersion: ", "creationTimestamp: "] {
        assert!(
            yaml.lines().any(|l| l.trim().starts_with(prefix)),
            "no {prefix:?} in:\n{yaml}"
        );
    }
}

#[test]
fn get_po_name_prints_resource_slash_name() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    assert_eq!(
        cluster.kubectl_ok(["get", "po", "-o", "name"]),
        "pod/kubia-manual\n"
    );
}

#[test]
fn get_po_with_label_selectors() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    for selector in [
        "appName=kubia-app",
        "appName==kubia-app",
        "appName in (kubia-app,other)",
        "version,appName!=other",
    ] {
        assert_eq!(
            pod_names(&cluster, &["-l", selector]),
            ["kubia-manual"],
            "-l {selector}"
        );
    }
    for selector in ["appName=other", "appName notin (kubia-app)", "!version"] {
        let output = cluster.kubectl(["get", "po", "-l", selector]);
        assert_success(&output, &format!("get po -l {selector}"));
        assert_eq!(stdout(&output), "", "-l {selector}");
        assert!(
            stderr(&output).contains("No resources found in default namespace."),
            "-l {selector}: {}",
            stderr(&output)
        );
    }
    // An invalid selector is refused by the server (400), which kubectl reports with exit 1.
    let output = cluster.kubectl(["get", "po", "-l", "a=b=c", "--request-timeout=20s"]);
    assert_exit_code(&output, 1, "get po -l a=b=c");
}

#[test]
fn get_po_all_namespaces_shows_the_namespace_column() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    cluster.kubectl_ok(["create", "namespace", "other"]);
    create_pod(&cluster, "other", "elsewhere", &[]);
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "-A"]));
    assert_eq!(
        rows[0],
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let mut pods: Vec<_> = rows[1..]
        .iter()
        .map(|row| (row[0].as_str(), row[1].as_str()))
        .collect();
    pods.sort();
    assert_eq!(pods, [("default", "kubia-manual"), ("other", "elsewhere")]);
}

#[test]
fn get_po_show_labels() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "--show-labels"]));
    assert_eq!(
        rows[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]
    );
    assert_eq!(rows[1][0], "kubia-manual");
    assert_eq!(rows[1][5], "appName=kubia-app,version=1.0.0");
}

#[test]
fn describe_po_shows_the_pod() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    let out = cluster.kubectl_ok(["describe", "po", "kubia-manual"]);
    let field = |name: &str| -> String {
        out.lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name}: line in:\n{out}"))
    };
    assert_eq!(field("Name"), "kubia-manual");
    assert_eq!(field("Namespace"), "default");
    assert_eq!(field("Status"), "Pending");
    assert_eq!(field("Labels"), "appName=kubia-app");
    assert!(out.contains("version=1.0.0"), "{out}");
    let image = out.lines().find_map(|l| l.trim().strip_prefix("Image:"));
    assert_eq!(image.map(str::trim), Some("luksa/kubia"), "{out}");
    let port = out.lines().find_map(|l| l.trim().strip_prefix("Port:"));
    assert_eq!(port.map(str::trim), Some("8080/TCP"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("Events:")), "{out}");
}

#[test]
fn label_then_read_back() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    assert_eq!(
        cluster.kubectl_ok(["label", "po", "kubia-manual", "env=prod"]),
        "pod/kubia-manual labeled\n"
    );
    assert_eq!(
        jsonpath(&cluster, "po/kubia-manual", "{.metadata.labels.env}"),
        "prod"
    );
    // Changing a label needs --overwrite.
    let output = cluster.kubectl(["label", "po", "kubia-manual", "env=dev"]);
    assert_exit_code(&output, 1, "label without --overwrite");
    assert!(
        stderr(&output).contains("--overwrite"),
        "{}",
        stderr(&output)
    );
    cluster.kubectl_ok(["label", "po", "kubia-manual", "env=dev", "--overwrite"]);
    assert_eq!(
        jsonpath(&cluster, "po/kubia-manual", "{.metadata.labels.env}"),
        "dev"
    );
    // And removing one.
    assert_eq!(
        cluster.kubectl_ok(["label", "po", "kubia-manual", "env-"]),
        "pod/kubia-manual unlabeled\n"
    );
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "--show-labels"]));
    assert_eq!(rows[1][5], "appName=kubia-app,version=1.0.0");
}

#[test]
fn annotate_then_read_back() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    assert_eq!(
        cluster.kubectl_ok(["annotate", "po", "kubia-manual", "description=the seed pod"]),
        "pod/kubia-manual annotated\n"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            "po/kubia-manual",
            "{.metadata.annotations.description}"
        ),
        "the seed pod"
    );
    let out = cluster.kubectl_ok(["describe", "po", "kubia-manual"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("Annotations:") && l.contains("description: the seed pod")),
        "{out}"
    );
}

#[test]
fn apply_creates_then_changes() {
    let cluster = Cluster::start();
    assert_eq!(
        cluster.kubectl_ok(["apply", "-f", &seed()]),
        "pod/kubia-manual created\n"
    );
    let v2 = fixture("kubia-manual-v2.yaml");
    let v2 = v2.to_string_lossy();
    assert_eq!(
        cluster.kubectl_ok(["apply", "-f", &v2]),
        "pod/kubia-manual configured\n"
    );
    assert_eq!(
        jsonpath(&cluster, "po/kubia-manual", "{.metadata.labels.version}"),
        "2.0.0"
    );
    let rows = parse_table(&cluster.kubectl_ok(["get", "po", "--show-labels"]));
    assert_eq!(rows[1][5], "appName=kubia-app,version=2.0.0");
    // The same file again changes nothing.
    assert_eq!(
        cluster.kubectl_ok(["apply", "-f", &v2]),
        "pod/kubia-manual unchanged\n"
    );
}

#[test]
fn get_po_watch_sees_add_change_and_delete() {
    let cluster = Cluster::start();
    let mut watch =
        cluster.kubectl_stream(["get", "po", "-w", "--output-watch-events", "--show-labels"]);
    create_seed_pod(&cluster);
    let added = watch.expect_line(WATCH_TIMEOUT, "ADDED kubia-manual", |line| {
        line.starts_with("ADDED") && line.contains("kubia-manual")
    });
    assert!(added.contains("Pending"), "{added}");

    cluster.kubectl_ok(["label", "po", "kubia-manual", "env=prod"]);
    watch.expect_line(
        WATCH_TIMEOUT,
        "MODIFIED kubia-manual with env=prod",
        |line| {
            line.starts_with("MODIFIED")
                && line.contains("kubia-manual")
                && line.contains("env=prod")
        },
    );

    cluster.kubectl_ok(["delete", "po", "kubia-manual"]);
    watch.expect_line(WATCH_TIMEOUT, "DELETED kubia-manual", |line| {
        line.starts_with("DELETED") && line.contains("kubia-manual")
    });
    // The header comes first, and nothing was added twice.
    assert!(watch.seen()[0].starts_with("EVENT"), "{:?}", watch.seen());
    let adds = watch
        .seen()
        .iter()
        .filter(|l| l.starts_with("ADDED"))
        .count();
    assert_eq!(adds, 1, "{:?}", watch.seen());
}

#[test]
fn delete_po_by_name() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    assert_eq!(
        cluster.kubectl_ok(["delete", "po", "kubia-manual"]),
        "pod \"kubia-manual\" deleted from default namespace\n"
    );
    let output = cluster.kubectl(["get", "po", "kubia-manual"]);
    assert_exit_code(&output, 1, "get po after delete");
    assert_eq!(
        stderr(&output).trim(),
        "Error from server (NotFound): pods \"kubia-manual\" not found"
    );

    // A pod bound to no node goes at once, without waiting for a grace period.
    create_seed_pod(&cluster);
    cluster.kubectl_ok(["delete", "po", "kubia-manual", "--wait=false"]);
    let output = cluster.kubectl(["get", "po", "kubia-manual", "-o", "name"]);
    assert_exit_code(&output, 1, "get po right after delete --wait=false");

    // Deleting what is not there fails.
    let output = cluster.kubectl(["delete", "po", "kubia-manual"]);
    assert_exit_code(&output, 1, "delete po of a missing pod");
    assert!(stderr(&output).contains("NotFound"), "{}", stderr(&output));
}

#[test]
fn delete_po_all_deletes_every_pod_of_the_namespace() {
    let cluster = Cluster::start();
    create_seed_pod(&cluster);
    create_pod(&cluster, "default", "second", &[]);
    create_pod(&cluster, "default", "third", &[("app", "x")]);
    cluster.kubectl_ok(["create", "namespace", "other"]);
    create_pod(&cluster, "other", "elsewhere", &[]);

    let out = cluster.kubectl_ok(["delete", "po", "--all"]);
    let mut lines: Vec<_> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "pod \"kubia-manual\" deleted from default namespace",
            "pod \"second\" deleted from default namespace",
            "pod \"third\" deleted from default namespace",
        ]
    );
    assert!(pod_names(&cluster, &[]).is_empty());
    // Other namespaces are not touched.
    assert_eq!(pod_names(&cluster, &["-n", "other"]), ["elsewhere"]);
}

#[test]
fn delete_po_by_label_selector_deletes_only_matching_pods() {
    let cluster = Cluster::start();
    create_pod(&cluster, "default", "a", &[("app", "x")]);
    create_pod(&cluster, "default", "b", &[("app", "x"), ("tier", "web")]);
    create_pod(&cluster, "default", "c", &[("app", "y")]);
    create_pod(&cluster, "default", "d", &[]);

    let out = cluster.kubectl_ok(["delete", "po", "-l", "app=x"]);
    let mut lines: Vec<_> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "pod \"a\" deleted from default namespace",
            "pod \"b\" deleted from default namespace",
        ]
    );
    assert_eq!(pod_names(&cluster, &[]), ["c", "d"]);

    let output = cluster.kubectl(["delete", "po", "-l", "app=nothing"]);
    assert_success(&output, "delete po -l app=nothing");
    // kubectl delete says this on stdout (kubectl get says it on stderr).
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(said.contains("No resources found"), "{said}");
    assert_eq!(pod_names(&cluster, &[]), ["c", "d"]);
}

/// Pods in `custom-namespace`, then `delete namespace`: kubectl returns once the namespace is
/// gone, and its pods are gone with it.
fn delete_namespace_takes_its_pods(cluster: &Cluster) {
    let out = cluster.kubectl_ok(["create", "-n", "custom-namespace", "-f", &seed()]);
    assert_eq!(out, "pod/kubia-manual created\n");
    create_pod(cluster, "custom-namespace", "second", &[]);
    create_seed_pod(cluster);
    assert_eq!(
        pod_names(cluster, &["-n", "custom-namespace"]),
        ["kubia-manual", "second"]
    );

    assert_eq!(
        cluster.kubectl_ok(["delete", "namespace", "custom-namespace"]),
        "namespace \"custom-namespace\" deleted\n"
    );
    let output = cluster.kubectl(["get", "po", "-n", "custom-namespace"]);
    assert_success(&output, "get po -n custom-namespace");
    assert_eq!(stdout(&output), "");
    assert!(
        stderr(&output).contains("No resources found in custom-namespace namespace."),
        "{}",
        stderr(&output)
    );
    let output = cluster.kubectl(["get", "namespace", "custom-namespace"]);
    assert_exit_code(&output, 1, "get namespace after delete");
    assert_eq!(
        stderr(&output).trim(),
        "Error from server (NotFound): namespaces \"custom-namespace\" not found"
    );
    // The pod of the same name in default is not touched.
    assert_eq!(pod_names(cluster, &[]), ["kubia-manual"]);
}

#[test]
fn delete_namespace_created_by_command() {
    let cluster = Cluster::start();
    assert_eq!(
        cluster.kubectl_ok(["create", "namespace", "custom-namespace"]),
        "namespace/custom-namespace created\n"
    );
    let rows = parse_table(&cluster.kubectl_ok(["get", "ns", "custom-namespace"]));
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"]);
    assert_eq!(rows[1][..2], ["custom-namespace", "Active"]);
    delete_namespace_takes_its_pods(&cluster);
}

#[test]
fn delete_namespace_created_from_file() {
    let cluster = Cluster::start();
    let file = fixture("custom-namespace.yaml");
    assert_eq!(
        cluster.kubectl_ok(["create", "-f", &file.to_string_lossy()]),
        "namespace/custom-namespace created\n"
    );
    delete_namespace_takes_its_pods(&cluster);
}

#[test]
fn create_in_a_missing_namespace_is_not_found() {
    let cluster = Cluster::start();
    let output = cluster.kubectl(["create", "-n", "nowhere", "-f", &seed()]);
    assert_exit_code(&output, 1, "create -n nowhere");
    assert!(
        stderr(&output).contains("Error from server (NotFound)")
            && stderr(&output).contains("namespaces \"nowhere\" not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn create_original_seed_descriptor_names_both_mistakes() {
    let cluster = Cluster::start();
    let file = fixture("kubia-manual-original.yaml");
    let output = cluster.kubectl(["create", "-f", &file.to_string_lossy()]);
    assert_exit_code(&output, 1, "create -f the original seed descriptor");
    assert_eq!(stdout(&output), "");
    let message = stderr(&output);
    // The misspelt field, by its path, with the name it should have been.
    assert!(message.contains("metadata.label"), "{message}");
    assert!(
        message.replace("metadata.label", "").contains("labels"),
        "no suggestion of `labels` in: {message}"
    );
    // The label value that is not valid.
    assert!(message.contains("1.0.0]"), "{message}");
    // Nothing was written.
    let output = cluster.kubectl(["get", "po", "kubia-manual"]);
    assert_exit_code(&output, 1, "get po after the refused create");

    // The corrected descriptor goes through.
    create_seed_pod(&cluster);
}

#[test]
fn unauthenticated_requests_get_401() {
    let cluster = Cluster::start();
    // kubectl with a copy of the admin kubeconfig whose token is wrong. (With no credentials at
    // all, kubectl answers a 401 by prompting for a user name, as it does with Kubernetes.)
    let mut config = cluster.kubeconfig_json();
    let users = config["users"]
        .as_array_mut()
        .expect("the kubeconfig has users");
    for user in users.iter_mut() {
        if let Some(user) = user["user"].as_object_mut() {
            user.insert("token".into(), "not-the-admin-token".into());
        }
    }
    let anonymous = write_file(
        cluster.scratch_dir(),
        "anonymous.kubeconfig",
        &config.to_string(),
    );
    let mut command = cluster.kubectl_command_with(&anonymous);
    command.args(["get", "po"]);
    let output = skiff_e2e::run(command, None);
    assert_exit_code(&output, 1, "kubectl get po without a token");
    assert!(
        // During discovery client-go words the 401 itself ("the server has asked for the client
        // to provide credentials"); on other requests it shows the Status ("Unauthorized").
        stderr(&output).contains("error: You must be logged in to the server ("),
        "{}",
        stderr(&output)
    );

    // curl: no token, and a wrong token.
    let url = format!("{}/api/v1/pods", cluster.url());
    for token in [None, Some("not-the-token")] {
        let mut curl = cluster.curl_command(false);
        curl.args(["--output", "/dev/null", "--write-out", "%{http_code}"]);
        if let Some(token) = token {
            curl.arg("--header")
                .arg(format!("Authorization: Bearer {token}"));
        }
        curl.arg(&url);
        let output = skiff_e2e::run(curl, None);
        assert_success(&output, "curl");
        assert_eq!(stdout(&output), "401", "token {token:?}");
    }

    // And with the token, 200.
    let mut curl = cluster.curl_command(true);
    curl.args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .arg(&url);
    let output = skiff_e2e::run(curl, None);
    assert_eq!(stdout(&output), "200");
}

#[test]
fn explain_pod_containers() {
    let cluster = Cluster::start();
    let out = cluster.kubectl_ok(["explain", "pod.spec.containers"]);
    assert!(out.contains("KIND:") && out.contains("Pod"), "{out}");
    assert!(out.contains("FIELD: containers"), "{out}");
}
