//! What the golden tests of Skiff's kubectl share: the same command through the real kubectl
//! and through `skiff kubectl` against one cluster, and their comparison (stdout, stderr, exit
//! code); and a command run on a pseudo-terminal.

use std::path::Path;
use std::process::{Command, Output};

use crate::{run, skiff_bin, stderr, stdout, Cluster};

/// How often a read-only comparison is run again when the outputs differ: an AGE cell can
/// tick over between the two commands.
pub const READ_ATTEMPTS: usize = 5;

/// A one-container busybox pod labelled `app`.
pub fn pod_yaml(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\n\
         spec:\n  containers:\n  - name: main\n    image: busybox:1.36\n"
    )
}

pub fn with_args(mut command: Command, args: &[&str], dir: &Path) -> Command {
    command.args(args).current_dir(dir);
    command
}

/// `args` through the real kubectl, in the cluster's scratch directory.
pub fn kubectl(cluster: &Cluster, args: &[&str], input: Option<&str>) -> Output {
    let command = with_args(cluster.kubectl_command(), args, cluster.scratch_dir());
    run(command, input)
}

/// `args` through `skiff kubectl`, in the cluster's scratch directory.
pub fn skiff(cluster: &Cluster, args: &[&str], input: Option<&str>) -> Output {
    let command = with_args(cluster.skiff_kubectl_command(), args, cluster.scratch_dir());
    run(command, input)
}

pub fn same(real: &Output, ours: &Output) -> bool {
    real.stdout == ours.stdout
        && real.stderr == ours.stderr
        && real.status.code() == ours.status.code()
}

/// Both outputs, for a failure message.
pub fn describe(args: &[&str], real: &Output, ours: &Output) -> String {
    format!(
        "`kubectl {}` differs\n--- kubectl (exit {:?}) stdout ---\n{}--- stderr ---\n{}\
         --- skiff (exit {:?}) stdout ---\n{}--- stderr ---\n{}",
        args.join(" "),
        real.status.code(),
        stdout(real),
        stderr(real),
        ours.status.code(),
        stdout(ours),
        stderr(ours),
    )
}

pub fn assert_same(args: &[&str], real: &Output, ours: &Output) {
    assert!(same(real, ours), "{}", describe(args, real, ours));
}

/// A command that changes nothing: both must print the same (again, if an age ticked over).
pub fn same_read(cluster: &Cluster, args: &[&str]) {
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

/// What `skiff kubectl ARGS` shows on a pseudo-terminal (util-linux `script`), stdout and
/// stderr together; `args` are single-quoted for the shell.
pub fn on_a_terminal(cluster: &Cluster, args: &[&str]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let mut command = Command::new("script");
    command
        .arg("-qec")
        .arg(format!(
            "'{}' kubectl {}",
            skiff_bin().display(),
            quoted.join(" ")
        ))
        .arg("/dev/null")
        .current_dir(cluster.scratch_dir())
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("TERM", "xterm");
    stdout(&run(command, None))
}
