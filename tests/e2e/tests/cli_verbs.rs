//! Golden tests of the object verbs of Skiff's kubectl (`get`'s jsonpath, custom-columns,
//! `-L` and `--sort-by`; `apply`, `replace`, `label`, `annotate`, ...): the same command through
//! `skiff kubectl` and through the real kubectl v1.35, against one cluster, must print the
//! same stdout and stderr and exit with the same code.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use std::fs;
use std::time::Duration;

use skiff_e2e::golden::{
    assert_same, kubectl, on_a_terminal, pod_yaml, same_read, skiff, with_args,
};
use skiff_e2e::{
    assert_success, fixture, import_test_images, kubectl_bin, run, skiff_bin, stderr, stdout,
    wait_until, write_file, Cluster, LineStream,
};

fn create(cluster: &Cluster, manifest: &str) {
    let created = kubectl(cluster, &["create", "-f", "-"], Some(manifest));
    assert_success(&created, "kubectl create -f -");
}

#[test]
fn get_output_formats_and_sorting_print_what_kubectl_prints() {
    let cluster = Cluster::start();
    create(
        &cluster,
        &format!(
            "{}---\n{}---\n{}",
            pod_yaml("pod-10", "kubia"),
            pod_yaml("pod-2", "other").replace(
                "    app: other\n",
                "    app: other\n    app.kubernetes.io/name: two\n"
            ),
            pod_yaml("pod-1", "kubia")
        ),
    );
    let cases: &[&[&str]] = &[
        &["get", "po", "-o", "jsonpath={.items[*].metadata.name}"],
        &[
            "get",
            "po",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}{"\t"}{.spec.containers[0].image}{"\n"}{end}"#,
        ],
        &[
            "get",
            "po",
            "-o",
            r#"jsonpath={.items[?(@.metadata.labels.app=="kubia")].metadata.name}"#,
        ],
        &["get", "po", "pod-1", "-o", "jsonpath={.metadata.labels}{.spec.containers}"],
        &[
            "get",
            "po",
            "pod-1",
            "-o",
            "jsonpath=grace {.spec.terminationGracePeriodSeconds} links {.spec.enableServiceLinks}",
        ],
        &["get", "po", "-o", "jsonpath={..image}"],
        &["get", "ns", "-o", "jsonpath={.items[0:2].metadata.name}"],
        &["get", "po", "-o", "jsonpath={.items[-1].metadata.name}"],
        &["get", "po", "-o", "jsonpath={.nope}"],
        &["get", "po", "nope", "-o", "jsonpath={.x}"],
        &["get", "po", "-o", "jsonpath={.items[0"],
        &["get", "po", "-o", "jsonpath={.a"],
        &["get", "po", "-o", "jsonpath={.items[abc]}"],
        &["get", "po", "-o", r#"jsonpath={.items[?(@.x=="y"]}"#],
        &["get", "po", "-o", "jsonpath"],
        &[
            "get",
            "po",
            "-o",
            "custom-columns=NAME:.metadata.name,IMAGES:.spec.containers[*].image,X:.metadata.nope",
        ],
        &[
            "get",
            "po",
            "-o",
            "custom-columns=name:metadata.name,LABELS:.metadata.labels,GRACE:{.spec.terminationGracePeriodSeconds}",
            "--sort-by=.metadata.name",
        ],
        &["get", "po,ns", "-o", "custom-columns=N:.metadata.name", "--no-headers"],
        &["get", "po", "-o", "custom-columns"],
        &["get", "po", "-o", "custom-columns=NAME"],
        &["get", "po", "-o", "bogus"],
        &["get", "po", "-L", "app,foo"],
        &["get", "po", "-L", "app", "-L", "x,app.kubernetes.io/name", "-A"],
        &["get", "po", "--sort-by=.metadata.name", "-L", "app", "--show-labels"],
        &["get", "po", "--sort-by={.metadata.name}", "-o", "name"],
        &["get", "po", "--sort-by=metadata.name", "-o", "jsonpath={.items[*].metadata.name}"],
        &["get", "po", "--sort-by=.metadata.nope"],
        &["get", "po", "--sort-by=nope", "-o", "name"],
        &["get", "ns", "--sort-by=.metadata.name", "-L", "app"],
        &["get", "po", "pod-1", "--sort-by=.metadata.name"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }
}

fn delete_all_pods(cluster: &Cluster) {
    let deleted = kubectl(cluster, &["delete", "po", "--all", "-A", "--now"], None);
    assert_success(&deleted, "kubectl delete po --all -A");
}

/// Commands that change the cluster, one after the other: the same steps run through kubectl
/// from the state `setup` makes, then (after `cleanup` and `setup` again) through skiff; each
/// step must print the same. Steps through the real kubectl (`check` ones) read the state the
/// previous step left, so they compare effects too.
struct Step<'a> {
    args: &'a [&'a str],
    /// Always run with the real kubectl: a check of what the step before did.
    check: bool,
}

fn ours<'a>(args: &'a [&'a str]) -> Step<'a> {
    Step { args, check: false }
}

fn check<'a>(args: &'a [&'a str]) -> Step<'a> {
    Step { args, check: true }
}

fn same_steps(
    cluster: &Cluster,
    setup: &dyn Fn(&Cluster),
    cleanup: &dyn Fn(&Cluster),
    steps: &[Step],
) {
    let mut outputs: Vec<Vec<Output>> = Vec::new();
    for with_skiff in [false, true] {
        setup(cluster);
        let mut side = Vec::new();
        for step in steps {
            side.push(if with_skiff && !step.check {
                skiff(cluster, step.args, None)
            } else {
                kubectl(cluster, step.args, None)
            });
        }
        cleanup(cluster);
        outputs.push(side);
    }
    for (n, step) in steps.iter().enumerate() {
        assert_same(step.args, &outputs[0][n], &outputs[1][n]);
    }
}

#[test]
fn apply_replace_and_dry_runs_print_what_kubectl_prints() {
    let cluster = Cluster::start();
    let dir = cluster.scratch_dir();
    let v1 = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ap\n  labels:\n    app: x\n    \
              extra: \"1\"\nspec:\n  containers:\n  - name: main\n    image: busybox:1.36\n    \
              env:\n    - name: A\n      value: \"1\"\n";
    let v2 = v1
        .replace("app: x", "app: z")
        .replace("    extra: \"1\"\n", "");
    write_file(dir, "v1.yaml", v1);
    write_file(dir, "v2.yaml", &v2);
    write_file(dir, "v3.yaml", &v2.replace("value: \"1\"", "value: \"2\""));
    write_file(dir, "v4.yaml", &v2.replace("busybox:1.36", "busybox:1.37"));
    write_file(dir, "a.yaml", &pod_yaml("a", "new"));
    write_file(
        dir,
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: applied\n  labels:\n    a: b\n",
    );
    const ANNOTATION: &str = "jsonpath={.metadata.annotations}";
    let steps = [
        ours(&["apply", "-f", "v1.yaml"]),
        check(&["get", "po", "ap", "-o", ANNOTATION]),
        ours(&["apply", "-f", "v1.yaml"]),
        ours(&["apply", "-f", "v2.yaml", "--dry-run=client"]),
        ours(&["apply", "-f", "v2.yaml", "--dry-run=server"]),
        check(&["get", "po", "ap", "-o", "jsonpath={.metadata.labels}"]),
        ours(&["apply", "-f", "v2.yaml"]),
        check(&[
            "get",
            "po",
            "ap",
            "-o",
            "jsonpath={.metadata.labels} {.metadata.annotations}",
        ]),
        ours(&["apply", "-f", "v3.yaml"]),
        ours(&["apply", "-f", "v4.yaml"]),
        check(&[
            "get",
            "po",
            "ap",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ]),
        ours(&["apply", "-f", "v3.yaml", "-f", "a.yaml", "-f", "v3.yaml"]),
        check(&["get", "po", "a", "-o", "jsonpath={.metadata.labels}"]),
        ours(&["apply", "-f", "nope.yaml"]),
        ours(&["apply"]),
        ours(&["apply", "-f", "v1.yaml", "--dry-run=bogus"]),
        ours(&["apply", "-f", "v1.yaml", "-n", "other"]),
        ours(&["apply", "-f", "a.yaml", "--server-side"]),
        ours(&["apply", "-f", "ns.yaml"]),
        ours(&["apply", "-f", "ns.yaml"]),
        check(&["get", "ns", "applied", "-o", ANNOTATION]),
        ours(&["replace", "-f", "v1.yaml"]),
        ours(&["replace", "-f", "v4.yaml", "--dry-run=client"]),
        ours(&["replace", "-f", "v4.yaml", "--dry-run=server"]),
        check(&[
            "get",
            "po",
            "ap",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ]),
        ours(&["replace", "-f", "v4.yaml"]),
        check(&[
            "get",
            "po",
            "ap",
            "-o",
            "jsonpath={.spec.containers[0].image}",
        ]),
        ours(&["replace"]),
        ours(&["create", "-f", "v1.yaml", "--dry-run=client"]),
        ours(&["create", "-f", "v1.yaml", "--dry-run=server", "-o", "name"]),
        ours(&["create", "-f", "ns.yaml", "--dry-run=server"]),
    ];
    let plain_pod_a = |cluster: &Cluster| create(cluster, &pod_yaml("a", "old"));
    let cleanup = |cluster: &Cluster| {
        delete_all_pods(cluster);
        let gone = kubectl(
            cluster,
            &["delete", "ns", "applied", "--ignore-not-found"],
            None,
        );
        assert_success(&gone, "kubectl delete ns applied");
    };
    same_steps(&cluster, &plain_pod_a, &cleanup, &steps);
}

#[test]
fn label_and_annotate_print_what_kubectl_prints() {
    let cluster = Cluster::start();
    let steps = [
        ours(&["label", "po", "a", "env=dev"]),
        ours(&["label", "po", "a", "env=prod"]),
        ours(&["label", "po", "a", "env=prod", "--overwrite"]),
        ours(&["label", "po", "a", "env=prod"]),
        ours(&["label", "po", "a", "env-"]),
        ours(&["label", "po", "a", "env-"]),
        ours(&["label", "po", "a", "foo-", "app-"]),
        check(&["get", "po", "-o", "jsonpath={.items[*].metadata.labels}"]),
        ours(&["label", "po", "a", "bad key=1"]),
        ours(&["label", "po", "a", "x=_bad"]),
        ours(&["label", "po", "a", "k=v,q=1"]),
        ours(&["label", "po", "a", "k=v,q"]),
        ours(&["label", "po", "a"]),
        ours(&["label", "po"]),
        ours(&["label", "po", "k=v"]),
        ours(&["label", "po", "a", "b=c", "nope"]),
        ours(&["label", "po", "--all", "z=1"]),
        ours(&["label", "po", "-l", "z=1", "y=2"]),
        ours(&["label", "po", "--all", "-n", "kube-public", "k=v"]),
        ours(&["label", "po", "-l", "nope=1", "k=v"]),
        ours(&["label", "po", "nope", "k=v"]),
        ours(&["label", "pod/a", "k=v"]),
        ours(&["label", "po", "a", "k=v", "-o", "name"]),
        ours(&[
            "label",
            "po",
            "a",
            "k=v2",
            "--overwrite",
            "--dry-run=client",
        ]),
        ours(&[
            "label",
            "po",
            "a",
            "k=v2",
            "--overwrite",
            "--dry-run=server",
        ]),
        check(&["get", "po", "a", "-o", "jsonpath={.metadata.labels}"]),
        ours(&["label", "po", "a", "k=v3", "--overwrite"]),
        ours(&["label", "po", "a", "k=v", "k=w"]),
        ours(&["label", "po", "nope", "a", "k=w", "--overwrite"]),
        ours(&["label", "po", "a", "nope", "b", "k=w2", "--overwrite"]),
        ours(&["label", "po", "a", "b", "k=x"]),
        check(&["get", "po", "-o", "jsonpath={.items[*].metadata.labels}"]),
        ours(&["label", "ns", "kube-public", "team=a"]),
        ours(&["label", "ns", "kube-public", "team-"]),
        ours(&["label", "foo", "a", "k=v"]),
        ours(&["annotate", "po", "a", "note=hi"]),
        ours(&["annotate", "po", "a", "note=ho"]),
        ours(&["annotate", "po", "a", "note=ho", "other=x"]),
        ours(&["annotate", "po", "a", "note=ho", "--overwrite"]),
        ours(&["annotate", "po", "a", "url=http://x/?a=b"]),
        check(&["get", "po", "a", "-o", "jsonpath={.metadata.annotations}"]),
        ours(&["annotate", "po", "a", "note-"]),
        ours(&["annotate", "po", "a", "note-"]),
        ours(&["annotate", "po", "--all", "all=yes", "-o", "name"]),
        ours(&["annotate", "po", "a"]),
        check(&[
            "get",
            "po",
            "-o",
            "jsonpath={.items[*].metadata.annotations}",
        ]),
    ];
    let cleanup = |cluster: &Cluster| {
        delete_all_pods(cluster);
        let unlabeled = kubectl(cluster, &["label", "ns", "kube-public", "team-"], None);
        assert_success(&unlabeled, "kubectl label ns kube-public team-");
    };
    same_steps(&cluster, &two_pods, &cleanup, &steps);
}

fn two_pods(cluster: &Cluster) {
    create(
        cluster,
        &format!("{}---\n{}", pod_yaml("a", "kubia"), pod_yaml("b", "other")),
    );
}

#[test]
fn describe_prints_what_kubectl_prints() {
    let cluster = Cluster::start_with_agent(import_test_images);
    create(
        &cluster,
        &fs::read_to_string(fixture("describe-rich-pod.yaml")).expect("read the rich pod"),
    );
    create(
        &cluster,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: running\n  labels:\n    app: kubia\n\
         spec:\n  containers:\n  - name: main\n    image: busybox\n    imagePullPolicy: Never\n    \
         command: [\"sleep\", \"3600\"]\n    resources:\n      requests: {cpu: 100m, memory: 64Mi}\n      \
         limits: {cpu: 250m, memory: 128Mi}\n    env:\n    - name: IP\n      valueFrom:\n        \
         fieldRef:\n          fieldPath: status.podIP\n",
    );
    wait_until(Duration::from_secs(60), "pod running is Running", || {
        cluster.jsonpath(&["pod", "running"], "{.status.phase}") == "Running"
    });
    let cases: &[&[&str]] = &[
        &["describe", "po", "rich"],
        &["describe", "pod", "running"],
        &["describe", "pod/running"],
        &["describe", "po"],
        &["describe", "po", "-l", "app=kubia"],
        &["describe", "po", "nope"],
        &["describe", "po", "running", "nope"],
        &["describe"],
        &["describe", "ns", "default"],
        &["describe", "ns"],
        &["describe", "node"],
        &["describe", "no"],
        &["describe", "nodes", "nope"],
        &["describe", "po", "running", "-n", "kube-public"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }
}

#[test]
fn wait_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    two_pods(&cluster);
    let cases: &[&[&str]] = &[
        &["wait", "--for=condition=PodScheduled=False", "po/a"],
        &["wait", "--for=condition=Ready", "po/a", "--timeout=1s"],
        &[
            "wait",
            "--for=condition=Ready",
            "po",
            "a",
            "b",
            "--timeout=0",
        ],
        &["wait", "--for=condition=Ready", "po", "a", "--timeout=0"],
        &["wait", "--for=delete", "po/nope", "--timeout=1s"],
        &["wait", "--for=delete", "po", "-l", "app=none"],
        &["wait", "--for=condition=Ready", "po/nope", "--timeout=1s"],
        &["wait", "po/a"],
        &["wait", "--for=bogus", "po/a"],
        &["wait", "--for=jsonpath={.status.phase}=Pending", "po/a"],
        &["wait", "--for=jsonpath=.status.phase=Pending", "po/a"],
        &[
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "po/a",
            "--timeout=1s",
        ],
        &["wait", "--for=jsonpath={.metadata.name}", "po/a"],
        &["wait", "--for=create", "po/a"],
        &["wait", "--for=condition=PodScheduled=false", "pod", "--all"],
        &[
            "wait",
            "--for=condition=PodScheduled=false",
            "pod",
            "-l",
            "app=kubia",
        ],
        &["wait", "--for=condition=Ready"],
        &[
            "wait",
            "--for=condition=Ready",
            "po",
            "-l",
            "app=none",
            "--timeout=1s",
        ],
        &["wait", "--for=condition=Ready", "--timeout=bogus", "po/a"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }

    // --for=delete returns once the object is gone: each waits while another command deletes.
    let args = ["wait", "--for=delete", "po/a", "--timeout=60s"];
    let mut outputs = Vec::new();
    for with_skiff in [false, true] {
        let mut command = if with_skiff {
            cluster.skiff_kubectl_command()
        } else {
            cluster.kubectl_command()
        };
        let waiting = command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wait --for=delete");
        let waiter = ChildGuard(Some(waiting));
        // Delete only once the waiter has connected (its first look comes right after): a pod
        // gone before that look is reported by nobody, by kubectl as by us.
        let pid = waiter.pid();
        wait_until(Duration::from_secs(30), "the waiter connects", || {
            has_socket(pid)
        });
        let deleted = kubectl(&cluster, &["delete", "po", "a", "--wait=false"], None);
        assert_success(&deleted, "kubectl delete po a --wait=false");
        outputs.push(waiter.finish());
        create(&cluster, &pod_yaml("a", "kubia"));
    }
    assert_eq!(stdout(&outputs[0]), "pod/a condition met\n");
    assert_same(&args, &outputs[0], &outputs[1]);
}

/// A child killed on drop (a failing test leaves no `wait` behind).
struct ChildGuard(Option<std::process::Child>);

/// Whether process `pid` holds a socket (a connection to the server, here).
fn has_socket(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries.filter_map(|e| e.ok()).any(|entry| {
                fs::read_link(entry.path())
                    .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"))
            })
        })
        .unwrap_or(false)
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, std::process::Child::id)
    }

    fn finish(mut self) -> Output {
        self.0
            .take()
            .expect("the child is there until finished")
            .wait_with_output()
            .expect("wait for the child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `config` reads and edits kubeconfig files: each side works on its own copies, and the
/// files must end up the same, as well as the output.
#[test]
fn config_prints_and_writes_what_kubectl_does() {
    let cluster = Cluster::start();
    let second = "apiVersion: v1\nkind: Config\ncontexts:\n- name: zeta\n  context:\n    \
                  cluster: skiff\n    user: admin\n    namespace: z\n- name: alpha\n  context:\n    \
                  cluster: other\n    user: admin\ncurrent-context: zeta\n";
    let with_flag: &[&[&str]] = &[
        &["config", "view"],
        &["config", "view", "--raw"],
        &["config", "view", "--minify"],
        &["config", "view", "-o", "json"],
        &["config", "view", "-o", "jsonpath={.contexts[*].name}"],
        &["config", "get-contexts"],
        &["config", "get-contexts", "skiff"],
        &["config", "get-contexts", "nope"],
        &["config", "get-contexts", "-o", "name"],
        &["config", "current-context"],
        &[
            "config",
            "set-context",
            "--current",
            "--namespace=kube-public",
        ],
        &["config", "get-contexts"],
        &["config", "use-context", "nope"],
        &["config", "set-context", "newctx", "--namespace=x"],
        &["config", "use-context", "newctx"],
        &["config", "current-context"],
        &["config", "set-context"],
        &["config", "view", "--raw"],
    ];
    let merged: &[&[&str]] = &[
        &["config", "view"],
        &["config", "get-contexts"],
        &["config", "use-context", "alpha"],
        &["config", "set-context", "--current", "--namespace=q"],
        &["config", "current-context"],
    ];
    let mut sides = Vec::new();
    for with_skiff in [false, true] {
        let dir = cluster
            .scratch_dir()
            .join(if with_skiff { "skiff" } else { "kubectl" });
        fs::create_dir_all(&dir).expect("create a side's directory");
        fs::copy(cluster.kubeconfig(), dir.join("kc")).expect("copy the kubeconfig");
        write_file(&dir, "second", second);
        let command = || {
            let mut command = if with_skiff {
                let mut c = Command::new(skiff_bin());
                c.arg("kubectl");
                c
            } else {
                Command::new(kubectl_bin())
            };
            command
                .current_dir(&dir)
                .env("HOME", dir.join("home"))
                .env_remove("KUBECONFIG");
            command
        };
        let mut outputs = Vec::new();
        for args in with_flag {
            let mut c = command();
            c.args(["--kubeconfig", "kc"]).args(*args);
            outputs.push(run(c, None));
        }
        for args in merged {
            let mut c = command();
            c.env("KUBECONFIG", "kc:second").args(*args);
            outputs.push(run(c, None));
        }
        let files = ["kc", "second"]
            .map(|f| fs::read_to_string(dir.join(f)).expect("read a kubeconfig copy"));
        sides.push((outputs, files));
    }
    let all: Vec<&[&str]> = with_flag.iter().chain(merged).copied().collect();
    for (n, args) in all.iter().enumerate() {
        assert_same(args, &sides[0].0[n], &sides[1].0[n]);
    }
    assert_eq!(sides[0].1, sides[1].1, "the kubeconfig files differ");
}

#[test]
fn api_resources_explain_and_typos_print_what_kubectl_prints() {
    let cluster = Cluster::start();
    let cases: &[&[&str]] = &[
        &["api-resources"],
        &["api-resources", "-o", "wide"],
        &["api-resources", "-o", "name"],
        &["api-resources", "--namespaced=false"],
        &["api-resources", "--namespaced=true", "-o", "name"],
        &["api-resources", "--no-headers"],
        &["api-resources", "--sort-by=name"],
        &["api-resources", "--sort-by=kind"],
        &["api-resources", "--api-group=coordination.k8s.io"],
        &["api-resources", "--api-group="],
        &["gett", "po"],
        &["explain", "pods"],
        &["explain", "pods.spec.containers"],
        &["explain", "pod.metadata.labels"],
        &["explain", "po.spec.containers.ports.containerPort"],
        &["explain", "pods.spec.containers.resources.limits"],
        &["explain", "pods.spec.containers.livenessProbe.httpGet.port"],
        &["explain", "pods.status.startTime"],
        &["explain", "pods.spec"],
        &["explain", "po.metadata"],
        &["explain", "pods.nope"],
        &["explain", "ns"],
        &["explain", "nodes.status"],
        &["explain", "foo"],
        &["explain"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }
    // Without flags before it, a mistyped verb gets cobra's suggestions.
    for args in [
        &["gett", "po"][..],
        &["descrbe", "po"],
        &["lable", "po", "a", "x=y"],
        &["ap"],
        &["e"],
        &["xyz"],
    ] {
        let home = cluster.scratch_dir().join("home");
        let mut real = Command::new(kubectl_bin());
        real.args(args).env("HOME", &home).env_remove("KUBECONFIG");
        let mut ours = Command::new(skiff_bin());
        ours.arg("kubectl")
            .args(args)
            .env("HOME", &home)
            .env_remove("KUBECONFIG");
        assert_same(args, &run(real, None), &run(ours, None));
    }
}

/// A line of a watched table without its last cell (an AGE that ticks).
fn without_age(line: &str) -> String {
    match line.trim_end().rsplit_once(' ') {
        Some((rest, _)) => rest.to_owned(),
        None => line.to_owned(),
    }
}

#[test]
fn completion_completes_what_kubectl_completes() {
    let cluster = Cluster::start();
    two_pods(&cluster);
    let cases: &[&[&str]] = &[
        &["completion"],
        &["completion", "nope"],
        &["__complete", "get", ""],
        &["__complete", "get", "po", ""],
        &["__complete", "get", "po", "a", ""],
        &["__complete", "get", "pods/"],
        &["__complete", "get", "nope", ""],
        &["__complete", "describe", ""],
        &["__complete", "-n", "kube-system", "get", "po", ""],
        &["__complete", "exec", ""],
        &["__complete", "logs", "p"],
        &["__complete", "label", "po", "b"],
        &["__complete", "exec", "a", "-c", ""],
        &["__complete", "exec", "a", "--container", "m"],
        &["__complete", "exec", "a", "-c", "main", ""],
    ];
    // As the shell runs them: no flag before the verb (kubectl would take a flag there for a
    // plugin's), the kubeconfig from the environment.
    for args in cases {
        let home = cluster.scratch_dir().join("home");
        let mut real = Command::new(kubectl_bin());
        real.args(*args)
            .env("HOME", &home)
            .env("KUBECONFIG", cluster.kubeconfig());
        let mut ours = Command::new(skiff_bin());
        ours.arg("kubectl")
            .args(*args)
            .env("HOME", &home)
            .env("KUBECONFIG", cluster.kubeconfig());
        assert_same(args, &run(real, None), &run(ours, None));
    }
}

#[test]
fn get_watch_prints_the_rows_kubectl_prints() {
    let cluster = Cluster::start();
    two_pods(&cluster);
    // The scheduler marks both unschedulable first: no event may come between the watchers'
    // lists.
    for pod in ["a", "b"] {
        wait_until(Duration::from_secs(30), "the scheduler saw the pod", || {
            !cluster
                .jsonpath(&["pod", pod], "{.status.conditions[*].type}")
                .is_empty()
        });
    }
    let stream = |with_skiff: bool, args: &[&str]| {
        let mut command = if with_skiff {
            cluster.skiff_kubectl_command()
        } else {
            cluster.kubectl_command()
        };
        command.args(args);
        LineStream::spawn(command)
    };
    let with_events = ["get", "po", "-w", "--output-watch-events"];
    let plain = ["get", "po", "-w"];
    let mut streams: Vec<LineStream> = Vec::new();
    for with_skiff in [false, true] {
        streams.push(stream(with_skiff, &with_events));
        streams.push(stream(with_skiff, &plain));
    }
    let timeout = Duration::from_secs(30);
    for stream in &mut streams {
        stream.expect_line(timeout, "the initial row of b", |l| {
            l.starts_with("b ") || l.contains(" b ")
        });
    }
    create(&cluster, &pod_yaml("a-much-longer-pod-name", "long"));
    let labeled = kubectl(&cluster, &["label", "po", "a", "x=1"], None);
    assert_success(&labeled, "kubectl label po a x=1");
    let deleted = kubectl(
        &cluster,
        &["delete", "po", "a-much-longer-pod-name", "--wait=false"],
        None,
    );
    assert_success(&deleted, "kubectl delete po a-much-longer-pod-name");
    let mut counts = Vec::new();
    for stream in streams.iter_mut().step_by(2) {
        stream.expect_line(timeout, "the DELETED event", |l| l.starts_with("DELETED"));
        counts.push(stream.seen().len());
    }
    for (n, stream) in streams.iter_mut().enumerate().skip(1).step_by(2) {
        while stream.seen().len() < counts[n / 2] {
            assert!(
                stream.next_line(timeout).is_some(),
                "the plain watch ended early: {:?}",
                stream.seen()
            );
        }
    }
    let lines = |stream: &LineStream| -> Vec<String> {
        stream.seen().iter().map(|l| without_age(l)).collect()
    };
    assert_eq!(
        lines(&streams[0]),
        lines(&streams[2]),
        "get -w --output-watch-events"
    );
    assert_eq!(lines(&streams[1]), lines(&streams[3]), "get -w");
}

#[test]
fn get_watch_prints_objects_as_kubectl_prints_them() {
    let cluster = Cluster::start();
    two_pods(&cluster);
    let args = [
        "get",
        "po",
        "a",
        "-w",
        "-o",
        r#"jsonpath={.metadata.name} {.metadata.labels}{"\n"}"#,
    ];
    let mut streams = Vec::new();
    for with_skiff in [false, true] {
        let mut command = if with_skiff {
            cluster.skiff_kubectl_command()
        } else {
            cluster.kubectl_command()
        };
        command.args(args);
        streams.push(LineStream::spawn(command));
    }
    let timeout = Duration::from_secs(30);
    for stream in &mut streams {
        stream.expect_line(timeout, "pod a as it is", |l| l.starts_with("a "));
    }
    let labeled = kubectl(&cluster, &["label", "po", "a", "seen=yes"], None);
    assert_success(&labeled, "kubectl label po a seen=yes");
    for stream in &mut streams {
        stream.expect_line(timeout, "pod a labeled", |l| l.contains("\"seen\":\"yes\""));
    }
    // A status-only change (the scheduler's condition) may land between the list and the
    // label for one watcher and not the other: it repeats the same line, so compare the
    // lines each watcher printed with such repeats folded.
    let folded = |stream: &LineStream| {
        let mut lines = stream.seen().to_vec();
        lines.dedup();
        lines
    };
    assert_eq!(folded(&streams[0]), folded(&streams[1]));
}

/// The verbs offered at the first word are kubectl's names for what Skiff serves; the bash
/// script, sourced in a real bash, completes verbs, kinds and pod names from the cluster through
/// `skiff`; the zsh and fish scripts are valid where those shells are installed.
#[test]
fn completion_scripts_complete_verbs_kinds_and_pods_in_a_real_shell() {
    let cluster = Cluster::start();
    two_pods(&cluster);
    let home = cluster.scratch_dir().join("home");
    let complete = |program: &Path, args: &[&str]| -> Vec<String> {
        let mut command = Command::new(program);
        if program == skiff_bin() {
            command.arg("kubectl");
        }
        command
            .args(args)
            .env("HOME", &home)
            .env("KUBECONFIG", cluster.kubeconfig());
        let out = run(command, None);
        stdout(&out)
            .lines()
            .filter(|l| !l.starts_with(':'))
            .map(|l| l.split('\t').next().unwrap_or(l).to_owned())
            .collect()
    };
    let ours = complete(&skiff_bin(), &["__completeNoDesc", ""]);
    let theirs = complete(&kubectl_bin(), &["__completeNoDesc", ""]);
    assert!(ours.contains(&"exec".to_owned()), "{ours:?}");
    for verb in &ours {
        assert!(
            theirs.contains(verb),
            "{verb} is not one of kubectl's verbs: {theirs:?}"
        );
    }

    // A real bash, the script sourced, COMP_WORDS as bash sets them at a Tab.
    let script = stdout(&run(
        {
            let mut c = Command::new(skiff_bin());
            c.args(["completion", "bash"]);
            c
        },
        None,
    ));
    let script_file = cluster.scratch_dir().join("completion.bash");
    std::fs::write(&script_file, script).expect("write the script");
    let bash = |words: &[&str]| -> String {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let program = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; __skiff_kubectl_complete; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script_file.display(),
            quoted.join(" "),
            words.len() - 1
        );
        let mut command = Command::new("bash");
        command
            .args(["-c", &program])
            .env("HOME", &home)
            .env("KUBECONFIG", cluster.kubeconfig());
        let out = run(command, None);
        assert!(out.status.success(), "bash: {}", stderr(&out));
        stdout(&out)
    };
    let skiff = skiff_bin().display().to_string();
    assert_eq!(bash(&[&skiff, "ex"]).trim(), "exec\nexplain");
    assert!(bash(&[&skiff, "get", "po"]).lines().any(|l| l == "pods"));
    assert_eq!(bash(&[&skiff, "get", "po", ""]).trim(), "a\nb");
    assert_eq!(bash(&[&skiff, "logs", "a"]).trim(), "a");

    for (shell, flag, name) in [("zsh", "-n", "zsh"), ("fish", "--no-execute", "fish")] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {shell}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            continue;
        }
        let text = stdout(&run(
            {
                let mut c = Command::new(skiff_bin());
                c.args(["completion", name]);
                c
            },
            None,
        ));
        let file = cluster.scratch_dir().join(format!("completion.{name}"));
        std::fs::write(&file, text).expect("write the script");
        let out = run(
            {
                let mut c = Command::new(shell);
                c.arg(flag).arg(&file);
                c
            },
            None,
        );
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
    }
}

/// `edit` with an editor that is a script: a change is sent (`pod/x edited`), saving it
/// unchanged or empty cancels, and a change the server refuses opens the file again with the
/// reasons on top; saving that unchanged gives up with a copy kept — as kubectl does.
#[test]
fn edit_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    create(
        &cluster,
        &format!("{}---\n{}", pod_yaml("a", "kubia"), pod_yaml("b", "kubia")),
    );
    let dir = cluster.scratch_dir();
    let editor = |name: &str, script: &str| -> String {
        let path = write_file(dir, name, &format!("#!/bin/sh\n{script}\n"));
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make the editor executable");
        path.display().to_string()
    };
    let relabel = editor("relabel.sh", "sed -i 's/app: kubia/app: edited/' \"$1\"");
    let nothing = editor("nothing.sh", "true");
    let empty = editor("empty.sh", ": > \"$1\"");
    let immutable = editor(
        "immutable.sh",
        "sed -i 's/restartPolicy: Always/restartPolicy: Never/' \"$1\"; \
         grep -c '^#' \"$1\" > \"$1.comments\"",
    );
    let with_editor = |mut command: Command, editor: &str| {
        command.env("KUBE_EDITOR", editor);
        run(command, None)
    };
    let both = |editor: &str, ours_args: &[&str], real_args: &[&str]| {
        let ours = with_editor(
            with_args(cluster.skiff_kubectl_command(), ours_args, dir),
            editor,
        );
        let real = with_editor(with_args(cluster.kubectl_command(), real_args, dir), editor);
        (ours, real)
    };

    let (ours, real) = both(&relabel, &["edit", "pod", "a"], &["edit", "pod/b"]);
    assert_eq!(stdout(&ours), stdout(&real).replace("pod/b", "pod/a"));
    assert_eq!(stdout(&ours), "pod/a edited\n");
    assert_eq!(
        (ours.status.code(), stderr(&ours)),
        (Some(0), String::new())
    );
    for pod in ["a", "b"] {
        assert_eq!(
            cluster.jsonpath(&["pod", pod], "{.metadata.labels.app}"),
            "edited"
        );
    }

    let (ours, real) = both(&nothing, &["edit", "po", "a"], &["edit", "po", "a"]);
    assert_same(&["edit", "po", "a"], &real, &ours);
    // An empty file cancels (kubectl 1.35 says so in its header, then reports the empty object
    // as invalid; ours keeps the header's word).
    let emptied = with_editor(
        with_args(cluster.skiff_kubectl_command(), &["edit", "po", "a"], dir),
        &empty,
    );
    assert_eq!(emptied.status.code(), Some(0));
    assert_eq!(stderr(&emptied), "Edit cancelled, saved file was empty.\n");

    let (ours, real) = both(&immutable, &["edit", "pod/a"], &["edit", "pod/b"]);
    assert_eq!(ours.status.code(), real.status.code(), "{}", stderr(&ours));
    assert_eq!(ours.status.code(), Some(1));
    for out in [&ours, &real] {
        assert!(
            stderr(out).contains("A copy of your changes has been stored to")
                && stderr(out).contains("Edit cancelled, no valid changes were saved."),
            "{}",
            stderr(out)
        );
    }
    assert_eq!(
        cluster.jsonpath(&["pod", "a"], "{.spec.restartPolicy}"),
        "Always"
    );
}

/// `patch` with each patch type, no change, and the usual mistakes, as kubectl prints them.
#[test]
fn patch_prints_what_kubectl_prints() {
    let cluster = Cluster::start();
    create(
        &cluster,
        &format!("{}---\n{}", pod_yaml("a", "kubia"), pod_yaml("b", "kubia")),
    );
    // Each change is made on `a` by skiff and on `b` by kubectl; the outputs name the pod.
    let changes: &[&[&str]] = &[
        &["-p", r#"{"metadata":{"labels":{"tier":"web"}}}"#],
        &["-p", r#"{"metadata":{"labels":{"tier":"web"}}}"#],
        &[
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"annotations":{"note":"x"}}}"#,
        ],
        &[
            "--type",
            "json",
            "-p",
            r#"[{"op":"replace","path":"/metadata/labels/app","value":"kept"}]"#,
        ],
        &["-p", "metadata:\n  labels:\n    yaml: \"yes\"\n"],
        &[
            "-p",
            r#"{"metadata":{"labels":{"tier":"db"}}}"#,
            "-o",
            "name",
        ],
    ];
    for change in changes {
        let mut ours_args = vec!["patch", "pod", "a"];
        ours_args.extend_from_slice(change);
        let mut real_args = vec!["patch", "pod", "b"];
        real_args.extend_from_slice(change);
        let ours = skiff(&cluster, &ours_args, None);
        let real = kubectl(&cluster, &real_args, None);
        assert_eq!(
            (stdout(&ours), stderr(&ours), ours.status.code()),
            (
                stdout(&real).replace("pod/b", "pod/a"),
                stderr(&real),
                real.status.code()
            ),
            "{change:?}"
        );
    }
    assert_eq!(
        cluster.jsonpath(&["pod", "a"], "{.metadata.labels}"),
        cluster.jsonpath(&["pod", "b"], "{.metadata.labels}")
    );
    for args in [
        &["patch", "pod", "a"][..],
        &["patch", "pod", "nope", "-p", "{}"],
        &["patch", "pod", "a", "--type", "nope", "-p", "{}"],
    ] {
        let ours = skiff(&cluster, args, None);
        let real = kubectl(&cluster, args, None);
        assert_same(args, &real, &ours);
        assert_eq!(ours.status.code(), Some(1), "{args:?}");
    }
}

/// `apply -f` of many objects shows a progress bar on a terminal, and only there: with stderr
/// captured (a script's, these tests') it prints exactly what kubectl prints.
#[test]
fn apply_of_many_objects_shows_progress_on_a_terminal_only() {
    let cluster = Cluster::start();
    let many: Vec<String> = (0..12)
        .map(|i| pod_yaml(&format!("p{i}"), "many"))
        .collect();
    let file = write_file(cluster.scratch_dir(), "many.yaml", &many.join("---\n"));
    let file = file.display().to_string();
    // On a pseudo-terminal: the bar, then kubectl's lines.
    let screen = on_a_terminal(&cluster, &["apply", "-f", &file]);
    assert!(screen.contains("applying"), "{screen}");
    assert!(screen.contains("pod/p11 created"), "{screen}");

    // Captured: no bar, the same lines as kubectl.
    let again = &["apply", "-f", file.as_str()];
    let ours = skiff(&cluster, again, None);
    assert_eq!(stderr(&ours), "");
    assert_eq!(stdout(&ours).lines().count(), 12);
    assert!(
        stdout(&ours).lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        stdout(&ours)
    );
}

/// On a terminal, a field error from the server points at the file and line where the field
/// is written; with stderr captured the output is kubectl's alone.
#[test]
fn a_field_error_points_at_the_file_and_line_on_a_terminal() {
    let cluster = Cluster::start();
    let bad = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: main\n    \
               image: busybox\n    ports:\n    - containerPort: 99999\n";
    let file = write_file(cluster.scratch_dir(), "bad.yaml", bad);
    let file = file.display().to_string();
    let screen = on_a_terminal(&cluster, &["create", "-f", &file]);
    assert!(
        screen.contains(&format!(
            "  --> {file}:10 (spec.containers[0].ports[0].containerPort)"
        )),
        "{screen}"
    );
    let args = &["create", "-f", file.as_str()];
    assert_same(
        args,
        &kubectl(&cluster, args, None),
        &skiff(&cluster, args, None),
    );
}

/// A mistyped flag gets the flag probably meant on a terminal; captured, kubectl's words alone.
#[test]
fn a_mistyped_flag_gets_a_suggestion_on_a_terminal() {
    let cluster = Cluster::start();
    let screen = on_a_terminal(&cluster, &["get", "po", "--show-lables"]);
    assert!(screen.contains("Did you mean --show-labels?"), "{screen}");
    let args = &["get", "po", "--show-lables"];
    assert_same(
        args,
        &kubectl(&cluster, args, None),
        &skiff(&cluster, args, None),
    );
}

const SECRET_YAML: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\n  labels:\n    \
                           team: a\nstringData:\n  user: alice\n  password: s3cret-value\n";

fn secrets(cluster: &Cluster) {
    create(cluster, SECRET_YAML);
    let made = kubectl(
        cluster,
        &[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=registry.example.com:5000",
            "--docker-username=u",
            "--docker-password=p",
        ],
        None,
    );
    assert_success(&made, "kubectl create secret docker-registry");
}

#[test]
fn secrets_print_what_kubectl_prints() {
    let cluster = Cluster::start();
    secrets(&cluster);
    let cases: &[&[&str]] = &[
        &["get", "secrets"],
        &["get", "secret", "reg"],
        &["get", "secret/app", "-o", "name"],
        &["get", "secrets", "--show-labels"],
        &["get", "secret", "app", "-o", "jsonpath={.data.user}"],
        &["get", "secret", "nope"],
        &["describe", "secret", "app"],
        &["describe", "secrets"],
        &["describe", "secret", "nope"],
        &["explain", "secret.type"],
        &["get", "secrets", "--field-selector", "type=Opaque"],
    ];
    for args in cases {
        same_read(&cluster, args);
    }
    let described = stdout(&skiff(&cluster, &["describe", "secret", "app"], None));
    assert!(!described.contains("alice") && !described.contains("s3cret"));

    let steps = [
        ours(&["delete", "secret", "app"]),
        ours(&["delete", "secret", "reg", "nope"]),
        check(&["get", "secrets", "-o", "name"]),
    ];
    let cleanup = |cluster: &Cluster| {
        let deleted = kubectl(cluster, &["delete", "secrets", "--all"], None);
        assert_success(&deleted, "kubectl delete secrets --all");
    };
    cleanup(&cluster);
    same_steps(&cluster, &secrets, &cleanup, &steps);

    // create secret docker-registry|generic|tls: the same answers and the same objects.
    let sources = cluster.scratch_dir().join("secret-sources");
    let dir = sources.join("dir");
    fs::create_dir_all(&dir).expect("a scratch directory");
    fs::write(sources.join("username.txt"), "alice\n").expect("write");
    fs::write(dir.join("one"), "1").expect("write");
    fs::write(dir.join("two.conf"), "a = b\n").expect("write");
    fs::create_dir_all(sources.join("bad")).expect("a scratch directory");
    fs::write(sources.join("bad").join("not a key"), "refused").expect("write");
    fs::write(
        sources.join("app.env"),
        "# settings\nMODE=fast\n\nLEVEL=3\n",
    )
    .expect("write");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["web.example.com".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("a certificate");
    fs::write(sources.join("tls.crt"), cert.pem()).expect("write");
    fs::write(sources.join("tls.key"), key.serialize_pem()).expect("write");
    let at = |name: &str| sources.join(name).to_string_lossy().into_owned();
    let (file, keyed, dir, env, bad) = (
        format!("--from-file={}", at("username.txt")),
        format!("--from-file=user={}", at("username.txt")),
        format!("--from-file={}", at("dir")),
        format!("--from-env-file={}", at("app.env")),
        format!("--from-file={}", at("bad")),
    );
    let (cert, key, missing) = (
        format!("--cert={}", at("tls.crt")),
        format!("--key={}", at("tls.key")),
        format!("--key={}", at("nothing-here")),
    );
    let made = [
        vec!["create", "secret", "generic", "made", &file, &keyed, &dir],
        vec!["create", "secret", "generic", "made", &env],
        vec!["create", "secret", "generic", "made", &file, &file],
        vec!["create", "secret", "generic", "made", &bad],
        vec!["create", "secret", "tls", "made", &cert, &key],
        vec!["create", "secret", "tls", "made", &cert],
        vec!["create", "secret", "tls", "made", &cert, &missing],
        vec![
            "create",
            "secret",
            "docker-registry",
            "made",
            "--docker-server=127.0.0.1:5000",
            "--docker-username=u",
            "--docker-password=p",
            "--docker-email=u@example.com",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "made",
            "--from-literal=a=1",
            "--from-literal=b=two=2",
        ],
        vec!["create", "secret", "docker-registry", "made"],
        vec!["create", "secret", "generic"],
    ];
    for args in &made {
        let real = kubectl(&cluster, args, None);
        let by_kubectl = cluster.jsonpath(&["secret", "made"], "{.type} {.data}");
        cleanup(&cluster);
        let ours = skiff(&cluster, args, None);
        let by_us = cluster.jsonpath(&["secret", "made"], "{.type} {.data}");
        cleanup(&cluster);
        if real.status.success() {
            assert_same(args, &real, &ours);
        } else {
            assert!(!ours.status.success(), "{args:?} should fail");
        }
        assert_eq!(by_us, by_kubectl, "{args:?}");
    }

    // create -f of a Secret: the same answer, and the object kubectl's would be.
    let real = kubectl(&cluster, &["create", "-f", "-"], Some(SECRET_YAML));
    let by_kubectl = cluster.jsonpath(&["secret", "app"], "{.type} {.data}");
    cleanup(&cluster);
    let ours = skiff(&cluster, &["create", "-f", "-"], Some(SECRET_YAML));
    assert_same(&["create", "-f", "-"], &real, &ours);
    assert_eq!(
        cluster.jsonpath(&["secret", "app"], "{.type} {.data}"),
        by_kubectl
    );
}
