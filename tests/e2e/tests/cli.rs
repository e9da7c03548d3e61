//! Golden tests of Skiff's own kubectl (`skiff kubectl`, or `skiff` through a `kubectl`
//! symlink): the same command through it and through the real kubectl v1.35, against one
//! cluster, must print the same stdout and stderr and exit with the same code.

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use skiff_e2e::golden::{assert_same, kubectl, pod_yaml, same_read, skiff};
use skiff_e2e::{
    assert_success, fixture, import_test_images, run, skiff_bin, stderr, stdout, wait_until,
    write_file, Cluster,
};

/// A command that changes the cluster: each side runs on the state `setup` makes, and
/// `cleanup` undoes whatever is left.
fn same_effect(
    cluster: &Cluster,
    setup: &dyn Fn(&Cluster),
    cleanup: &dyn Fn(&Cluster),
    args: &[&str],
    input: Option<&str>,
) {
    setup(cluster);
    let real = kubectl(cluster, args, input);
    cleanup(cluster);
    setup(cluster);
    let ours = skiff(cluster, args, input);
    cleanup(cluster);
    assert_same(args, &real, &ours);
}

fn create(cluster: &Cluster, manifest: &str) {
    let created = kubectl(cluster, &["create", "-f", "-"], Some(manifest));
    assert_success(&created, "kubectl create -f -");
}

fn delete_all_pods(cluster: &Cluster) {
    let deleted = kubectl(cluster, &["delete", "po", "--all", "-A"], None);
    assert_success(&deleted, "kubectl delete po --all -A");
}

fn two_pods(cluster: &Cluster) {
    create(
        cluster,
        &format!("{}---\n{}", pod_yaml("a", "kubia"), pod_yaml("b", "other")),
    );
}

fn nothing(_: &Cluster) {}

#[test]
fn get_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    create(
        &cluster,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: custom\n",
    );
    two_pods(&cluster);
    create(
        &cluster,
        &pod_yaml("c", "kubia").replace("name: c\n", "name: c\n  namespace: custom\n"),
    );
    let cases: &[&[&str]] = &[
        &["get", "po"],
        &["get", "pods"],
        &["get", "pod"],
        &["get", "all"],
        &["get", "po", "a"],
        &["get", "pod/a"],
        &["get", "po/a", "po/b"],
        &["get", "po", "a", "nope"],
        &["get", "po", "nope"],
        &["get", "po", "-l", "app=kubia"],
        &["get", "po", "-l", "app=nope"],
        &["get", "po", "--field-selector", "metadata.name=b"],
        &["get", "po", "-n", "custom"],
        &["-n", "custom", "get", "po"],
        &["get", "po", "-n", "kube-public"],
        &["get", "po", "-A"],
        &["get", "po", "-o", "wide"],
        &["get", "po", "-A", "-o", "wide", "--show-labels"],
        &["get", "po", "--show-labels"],
        &["get", "po", "--no-headers"],
        &["get", "po", "-o", "name"],
        &["get", "po,ns", "-o", "name"],
        &["get", "po", "-o", "json"],
        &["get", "po", "-o", "yaml"],
        &["get", "po", "a", "-o", "json"],
        &["get", "po", "a", "-o", "yaml"],
        &["get", "ns"],
        &["get", "namespaces", "-o", "name"],
        &["get", "no"],
        &["get", "nodes", "-o", "wide"],
        &["get", "ev"],
        &["get", "events", "-A"],
        &["get", "foo"],
        &["get", "pods", "x/y"],
        &["get", "po", "--bogus"],
        &["get", "po", "--context", "nope"],
        &["get", "po", "--kubeconfig", "nope.kubeconfig"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }

    // The verbs straight after `skiff`, flags before them too, with no `kubectl` word.
    let mut direct = Command::new(skiff_bin());
    direct
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig())
        .args(["-n", "custom", "get", "po", "-o", "name"])
        .env("HOME", cluster.scratch_dir().join("home"));
    let direct = run(direct, None);
    assert_success(&direct, "skiff --kubeconfig K -n custom get po -o name");
    assert_eq!(stdout(&direct), "pod/c\n");
}

#[test]
fn create_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    let dir = cluster.scratch_dir();
    write_file(dir, "a.yaml", &pod_yaml("a", "kubia"));
    let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"main","image":"busybox:1.36"}]}}"#;
    write_file(dir, "j.json", json);
    fs::create_dir_all(dir.join("manifests")).expect("create a manifest directory");
    write_file(&dir.join("manifests"), "1.yaml", &pod_yaml("d1", "kubia"));
    write_file(&dir.join("manifests"), "2.yml", &pod_yaml("d2", "kubia"));
    write_file(&dir.join("manifests"), "notes.txt", "not a manifest");
    let seed = fixture("kubia-manual-original.yaml");
    fs::copy(&seed, dir.join("kubia-manual.yaml")).expect("copy the seed descriptor");
    let stream = format!("{}---\n{}", pod_yaml("s1", "one"), pod_yaml("s2", "two"));

    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "a.yaml"],
        None,
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "j.json"],
        None,
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "manifests"],
        None,
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "-"],
        Some(&stream),
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "a.yaml", "-f", "j.json"],
        None,
    );
    same_effect(
        &cluster,
        &two_pods,
        &delete_all_pods,
        &["create", "-f", "a.yaml"],
        None,
    );
    same_effect(
        &cluster,
        &two_pods,
        &delete_all_pods,
        &["create", "-f", "-"],
        Some(&stream.replace("s1", "a")),
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "kubia-manual.yaml"],
        None,
    );
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "-f", "nope.yaml"],
        None,
    );
    same_effect(&cluster, &nothing, &delete_all_pods, &["create"], None);
    same_effect(
        &cluster,
        &nothing,
        &delete_all_pods,
        &["create", "pod", "x"],
        None,
    );

    let drop_namespace = |cluster: &Cluster| {
        let gone = kubectl(
            cluster,
            &["delete", "ns", "made", "--ignore-not-found"],
            None,
        );
        assert_success(&gone, "kubectl delete ns made");
    };
    let made = |cluster: &Cluster| {
        let created = kubectl(cluster, &["create", "namespace", "made"], None);
        assert_success(&created, "kubectl create namespace made");
    };
    for args in [
        &["create", "namespace", "made"][..],
        &["create", "ns", "made"],
        &["create", "namespace"],
        &["create", "namespace", "a", "b"],
        &["create", "namespace", "Bad_Name"],
    ] {
        same_effect(&cluster, &nothing, &drop_namespace, args, None);
    }
    same_effect(
        &cluster,
        &made,
        &drop_namespace,
        &["create", "namespace", "made"],
        None,
    );
}

#[test]
fn delete_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    write_file(
        cluster.scratch_dir(),
        "ab.yaml",
        &format!("{}---\n{}", pod_yaml("a", "kubia"), pod_yaml("b", "other")),
    );
    let cases: &[&[&str]] = &[
        &["delete", "po", "a"],
        &["delete", "po", "a", "b"],
        &["delete", "pod/a", "po/b"],
        &["delete", "po", "--all"],
        &["delete", "po", "-l", "app=kubia"],
        &["delete", "po", "-l", "app=nope"],
        &["delete", "po", "--all", "-n", "kube-public"],
        &["delete", "po", "a", "--now"],
        &["delete", "po", "a", "--grace-period=0"],
        &["delete", "po", "a", "--grace-period", "5"],
        &["delete", "po", "a", "--force", "--grace-period=0"],
        &["delete", "po", "a", "--force"],
        &["delete", "po", "a", "--wait=false"],
        &["delete", "po", "a", "nope"],
        &["delete", "po", "nope"],
        &["delete", "-f", "ab.yaml"],
        &["delete", "po"],
        &["delete"],
        &["delete", "po", "a", "--all"],
        &["delete", "po", "-l", "app=kubia", "--all"],
        &["delete", "po", "a", "--now", "--grace-period=3"],
        &["delete", "ns", "nope"],
    ];
    for args in cases {
        same_effect(&cluster, &two_pods, &delete_all_pods, args, None);
    }
    let namespace = |cluster: &Cluster| {
        create(
            cluster,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: custom-namespace\n",
        );
        create(
            cluster,
            &pod_yaml("in-ns", "x").replace(
                "name: in-ns\n",
                "name: in-ns\n  namespace: custom-namespace\n",
            ),
        );
    };
    same_effect(
        &cluster,
        &namespace,
        &nothing,
        &["delete", "namespace", "custom-namespace"],
        None,
    );
    let gone = kubectl(&cluster, &["get", "ns", "custom-namespace"], None);
    assert_eq!(
        gone.status.code(),
        Some(1),
        "delete namespace waited until it was gone"
    );
}

#[test]
fn version_names_the_server_kubectl_names() {
    let cluster = Cluster::start();
    let server_line = |output: &Output| {
        stdout(output)
            .lines()
            .find(|l| l.starts_with("Server Version: "))
            .map(str::to_owned)
    };
    let real = kubectl(&cluster, &["version"], None);
    let ours = skiff(&cluster, &["version"], None);
    assert_success(&ours, "skiff kubectl version");
    assert!(
        server_line(&real).is_some(),
        "kubectl printed a server version"
    );
    assert_eq!(server_line(&real), server_line(&ours));
}

/// The seed's commands typed verbatim through a `kubectl` symlink to the skiff binary, the
/// broken descriptor fixed as the server's error says.
#[test]
fn the_seed_workflow_runs_through_a_kubectl_symlink() {
    let cluster = Cluster::start();
    let dir = cluster.scratch_dir();
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create a bin directory");
    std::os::unix::fs::symlink(skiff_bin(), bin.join("kubectl")).expect("link kubectl to skiff");
    fs::copy(
        fixture("kubia-manual-original.yaml"),
        dir.join("kubia-manual.yaml"),
    )
    .expect("copy the seed descriptor");
    let typed = |line: &str, input: Option<&str>| {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("kubectl"));
        let mut command = Command::new(bin.join("kubectl"));
        command
            .args(words)
            .current_dir(dir)
            .env("HOME", dir.join("home"))
            .env("KUBECONFIG", cluster.kubeconfig());
        run(command, input)
    };

    let refused = typed("kubectl create -f kubia-manual.yaml", None);
    let real = kubectl(&cluster, &["create", "-f", "kubia-manual.yaml"], None);
    assert_same(&["create", "-f", "kubia-manual.yaml"], &real, &refused);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("unknown field \"metadata.label\""),
        "{}",
        stderr(&refused)
    );

    let text = fs::read_to_string(dir.join("kubia-manual.yaml")).expect("read the descriptor");
    let fixed = text
        .replace("  label:\n", "  labels:\n")
        .replace("1.0.0]", "1.0.0");
    fs::write(dir.join("kubia-manual.yaml"), fixed).expect("fix the descriptor");
    let created = typed("kubectl create -f kubia-manual.yaml", None);
    assert_success(&created, "kubectl create -f kubia-manual.yaml");
    assert_eq!(stdout(&created), "pod/kubia-manual created\n");

    let listed = typed("kubectl get po", None);
    assert_success(&listed, "kubectl get po");
    assert!(stdout(&listed).starts_with(
        "NAME           READY   STATUS    RESTARTS   AGE\nkubia-manual   0/1     Pending   0   "
    ));

    let deleted = typed("kubectl delete po kubia-manual", None);
    assert_success(&deleted, "kubectl delete po kubia-manual");
    assert_eq!(
        stdout(&deleted),
        "pod \"kubia-manual\" deleted from default namespace\n"
    );

    assert_success(
        &typed("kubectl create -f kubia-manual.yaml", None),
        "create again",
    );
    let all = typed("kubectl delete po --all", None);
    assert_success(&all, "kubectl delete po --all");
    assert_eq!(
        stdout(&all),
        "pod \"kubia-manual\" deleted from default namespace\n"
    );

    let namespace = fixture("custom-namespace.yaml");
    let made = typed(&format!("kubectl create -f {}", namespace.display()), None);
    assert_success(&made, "kubectl create -f custom-namespace.yaml");
    let gone = typed("kubectl delete namespace custom-namespace", None);
    assert_success(&gone, "kubectl delete namespace custom-namespace");
    assert_eq!(stdout(&gone), "namespace \"custom-namespace\" deleted\n");
}

/// A running pod takes its grace period to go: `delete` waits until it is gone (a watch), as
/// kubectl does, and prints the same.
/// The seed's last section through the `kubectl` symlink, on a node: `kubectl exec POD -- CMD`
/// and `kubectl exec POD -c CONTAINER -- CMD` on the seed's pod (`exec -it` through a terminal
/// is tested in cli_stream.rs).
#[test]
fn the_seeds_exec_runs_through_a_kubectl_symlink() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let dir = cluster.scratch_dir();
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).expect("create a bin directory");
    std::os::unix::fs::symlink(skiff_bin(), bin.join("kubectl")).expect("link kubectl to skiff");
    let typed = |line: &str| {
        let mut words = line.split_whitespace();
        assert_eq!(words.next(), Some("kubectl"));
        let mut command = Command::new(bin.join("kubectl"));
        command
            .args(words)
            .env("HOME", dir.join("home"))
            .env("KUBECONFIG", cluster.kubeconfig());
        run(command, None)
    };
    let manifest = fixture("kubia-manual.yaml");
    let created = typed(&format!("kubectl create -f {}", manifest.display()));
    assert_success(&created, "kubectl create -f kubia-manual.yaml");
    wait_until(Duration::from_secs(60), "kubia-manual Running", || {
        cluster.jsonpath(&["pod", "kubia-manual"], "{.status.phase}") == "Running"
    });
    for line in [
        "kubectl exec kubia-manual -- hostname",
        "kubectl exec kubia-manual -c kubia -- hostname",
    ] {
        let out = typed(line);
        assert_success(&out, line);
        assert_eq!(stdout(&out), "kubia-manual\n", "{line}");
    }
    let failed = typed("kubectl exec kubia-manual -- false");
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert_eq!(
        stderr(&failed),
        "command terminated with exit code 1\n",
        "as kubectl says it"
    );
}

#[test]
fn delete_waits_for_a_running_pod_as_kubectl_does() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: slow\nspec:\n  \
               terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    \
               image: busybox\n    imagePullPolicy: Never\n    \
               command: [\"sh\", \"-c\", \"trap '' TERM; sleep 3600\"]\n";
    let running = |cluster: &Cluster| {
        create(cluster, pod);
        wait_until(Duration::from_secs(60), "pod slow Running", || {
            cluster.jsonpath(&["pod", "slow"], "{.status.phase}") == "Running"
        });
    };
    let args = ["delete", "po", "slow"];
    let mut outputs = Vec::new();
    for ours in [false, true] {
        running(&cluster);
        let started = Instant::now();
        let output = if ours {
            skiff(&cluster, &args, None)
        } else {
            kubectl(&cluster, &args, None)
        };
        let took = started.elapsed();
        let after = kubectl(&cluster, &["get", "po", "slow"], None);
        assert_eq!(
            stderr(&after),
            "Error from server (NotFound): pods \"slow\" not found\n",
            "the pod is gone once delete returns (ours: {ours})"
        );
        assert!(
            took >= Duration::from_secs(1),
            "delete returned after {took:?}, before the grace period could end (ours: {ours})"
        );
        outputs.push(output);
    }
    assert_same(&args, &outputs[0], &outputs[1]);
}
