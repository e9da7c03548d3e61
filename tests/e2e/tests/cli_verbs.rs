//! Golden tests of the object verbs of Skiff's kubectl (`get`'s jsonpath, custom-columns,
//! `-L` and `--sort-by`; `apply`, `replace`, `label`, `annotate`, ...): the same command through
//! `skiff kubectl` and through the real kubectl v1.35, against one cluster, must print the
//! same stdout and stderr and exit with the same code.

use std::path::Path;
use std::process::{Command, Output};

use skiff_e2e::{assert_success, run, stderr, stdout, Cluster};

/// How often a read-only comparison is run again when the outputs differ: an AGE cell can
/// tick over between the two commands.
const READ_ATTEMPTS: usize = 5;

fn pod_yaml(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\n\
         spec:\n  containers:\n  - name: main\n    image: busybox:1.36\n"
    )
}

fn with_args(mut command: Command, args: &[&str], dir: &Path) -> Command {
    command.args(args).current_dir(dir);
    command
}

fn kubectl(cluster: &Cluster, args: &[&str], input: Option<&str>) -> Output {
    let command = with_args(cluster.kubectl_command(), args, cluster.scratch_dir());
    run(command, input)
}

fn skiff(cluster: &Cluster, args: &[&str], input: Option<&str>) -> Output {
    let command = with_args(cluster.skiff_kubectl_command(), args, cluster.scratch_dir());
    run(command, input)
}

fn same(real: &Output, ours: &Output) -> bool {
    real.stdout == ours.stdout
        && real.stderr == ours.stderr
        && real.status.code() == ours.status.code()
}

fn assert_same(args: &[&str], real: &Output, ours: &Output) {
    assert!(
        same(real, ours),
        "`kubectl {}` differs\n--- kubectl (exit {:?}) stdout ---\n{}--- stderr ---\n{}\
         --- skiff (exit {:?}) stdout ---\n{}--- stderr ---\n{}",
        args.join(" "),
        real.status.code(),
        stdout(real),
        stderr(real),
        ours.status.code(),
        stdout(ours),
        stderr(ours),
    );
}

/// A command that changes nothing: both must print the same (again, if an age ticked over).
fn same_read(cluster: &Cluster, args: &[&str]) {
    let mut last = None;
    for _ in 0..READ_ATTEMPTS {
        let real = kubectl(cluster, args, None);
        let ours = skiff(cluster, args, None);
        if same(&real, &ours) {
            return;
        }
        last = Some((real, ours));
    }
    if let Some((real, ours)) = last {
        assert_same(args, &real, &ours);
    }
}

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
