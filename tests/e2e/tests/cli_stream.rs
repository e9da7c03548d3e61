//! Golden tests of Skiff's own kubectl for the streaming verbs (exec, logs, attach,
//! port-forward, run, cp): the same command through it and through the real kubectl v1.35,
//! against one cluster with a node agent, must print the same stdout and stderr and exit with
//! the same code.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use skiff_e2e::golden::{describe, kubectl, same, skiff};
use skiff_e2e::{fixture, import_test_images, run, skiff_bin, stderr, stdout, wait_until, Cluster};

const WAIT: Duration = Duration::from_secs(60);

/// A container that sleeps until it is told to stop.
const SLEEP: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// Runs `args` (with `input` on stdin) through both and collects a difference, if any.
fn compare(cluster: &Cluster, args: &[&str], input: Option<&str>, failures: &mut Vec<String>) {
    let real = kubectl(cluster, args, input);
    let ours = skiff(cluster, args, input);
    if !same(&real, &ours) {
        failures.push(describe(args, &real, &ours));
    }
}

/// [`compare`] for output whose order kubectl leaves to chance (the streams of several
/// containers come from a Go map): the same lines in any order.
fn compare_unordered(cluster: &Cluster, args: &[&str], failures: &mut Vec<String>) {
    let sorted = |mut output: Output| {
        let mut lines: Vec<&str> = std::str::from_utf8(&output.stdout)
            .unwrap_or_default()
            .split_inclusive('\n')
            .collect();
        lines.sort_unstable();
        output.stdout = lines.concat().into_bytes();
        output
    };
    let real = sorted(kubectl(cluster, args, None));
    let ours = sorted(skiff(cluster, args, None));
    if !same(&real, &ours) {
        failures.push(describe(args, &real, &ours));
    }
}

fn assert_none(failures: Vec<String>) {
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A busybox pod running `containers` (name, shell script); `metadata` is more JSON for its
/// metadata (`"labels": {...}`), `init` an init container's script.
fn pod(name: &str, metadata: &str, containers: &[(&str, &str)], restart: &str) -> String {
    pod_with_init(name, metadata, None, containers, restart)
}

fn pod_with_init(
    name: &str,
    metadata: &str,
    init: Option<&str>,
    containers: &[(&str, &str)],
    restart: &str,
) -> String {
    let containers: Vec<String> = containers
        .iter()
        .map(|(name, script)| {
            format!(
                r#"{{"name": "{name}", "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "{script}"]}}"#
            )
        })
        .collect();
    let init = init
        .map(|script| {
            format!(
                r#""initContainers": [{{"name": "setup", "image": "busybox",
                    "imagePullPolicy": "Never", "command": ["sh", "-c", "{script}"]}}],"#
            )
        })
        .unwrap_or_default();
    let metadata = if metadata.is_empty() {
        String::new()
    } else {
        format!(", {metadata}")
    };
    format!(
        r#"{{"apiVersion": "v1", "kind": "Pod",
            "metadata": {{"name": "{name}"{metadata}}},
            "spec": {{"terminationGracePeriodSeconds": 1, "restartPolicy": "{restart}", {init}
            "containers": [{}]}}}}"#,
        containers.join(",")
    )
}

fn wait_phase(cluster: &Cluster, pod: &str, phase: &str) {
    wait_until(WAIT, &format!("pod {pod} {phase}"), || {
        cluster.jsonpath(&["pod", pod], "{.status.phase}") == phase
    });
}

#[test]
fn exec_prints_what_kubectl_prints() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod("one", "", &[("main", SLEEP)], "Always"));
    cluster.create_from(&pod(
        "pair",
        "",
        &[("web", SLEEP), ("side", SLEEP)],
        "Always",
    ));
    cluster.create_from(&pod(
        "annotated",
        r#""annotations": {"kubectl.kubernetes.io/default-container": "side"}"#,
        &[("web", SLEEP), ("side", SLEEP)],
        "Always",
    ));
    cluster.create_from(&pod("done", "", &[("main", "true")], "Never"));
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
            "spec": {"containers": [{"name": "main", "image": "not-imported:1",
            "imagePullPolicy": "Never"}]}}"#,
    );
    for name in ["one", "pair", "annotated"] {
        wait_phase(&cluster, name, "Running");
    }
    wait_phase(&cluster, "done", "Succeeded");

    let mut failures = Vec::new();
    let cases: &[(&[&str], Option<&str>)] = &[
        (&["exec", "one", "--", "hostname"], None),
        (&["exec", "pod/one", "--", "hostname"], None),
        (&["exec", "po/one", "-c", "main", "--", "hostname"], None),
        (
            &[
                "exec",
                "one",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        ),
        (&["exec", "-i", "one", "--", "cat"], Some("hello\nworld\n")),
        (&["exec", "one", "-i", "--", "wc", "-c"], Some("12345")),
        (&["exec", "one", "--", "cat"], Some("not read")),
        (&["exec", "one", "-c", "nope", "--", "true"], None),
        (&["exec", "nope", "--", "true"], None),
        (&["exec", "-n", "kube-public", "one", "--", "true"], None),
        (&["exec", "pair", "--", "hostname"], None),
        (&["exec", "pair", "-c", "side", "--", "hostname"], None),
        (
            &["exec", "annotated", "--", "sh", "-c", "echo $HOSTNAME"],
            None,
        ),
        (&["exec", "done", "--", "true"], None),
        (&["exec", "one", "--", "no-such-command"], None),
        (&["exec", "one"], None),
        (&["exec"], None),
        (&["exec", "one", "hostname"], None),
        (&["exec", "-t", "one", "--", "tty"], None),
        (&["exec", "-it", "one", "--", "echo", "hi"], Some("")),
        (&["exec", "-q", "-it", "one", "--", "echo", "hi"], Some("")),
        (&["exec", "one", "-c"], None),
        (&["exec", "one", "--bogus", "--", "true"], None),
    ];
    for (args, input) in cases {
        compare(&cluster, args, *input, &mut failures);
    }
    assert_none(failures);

    // A pod whose container never started: kubectl falls back to SPDY when the WebSocket is
    // refused and prints the server's refusal of SPDY; ours prints why the WebSocket was.
    let ours = skiff(&cluster, &["exec", "stuck", "--", "true"], None);
    assert_eq!(ours.status.code(), Some(1));
    assert_eq!(
        stderr(&ours),
        "Error from server (BadRequest): container \"main\" in pod \"stuck\" is not running\n"
    );
}

/// `exec -it POD -- sh` through skiff in a real pty (the fixture kubectl's own test drives):
/// prompt, output, window size following ours, Ctrl-C, job control, the exit code.
#[test]
fn exec_it_through_skiff_is_a_real_terminal() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod("term", "", &[("main", SLEEP)], "Always"));
    wait_phase(&cluster, "term", "Running");
    let mut python = Command::new("python3");
    python
        .arg(fixture("tty_exec.py"))
        .arg(skiff_bin())
        .arg(cluster.kubeconfig())
        .arg("term");
    let out = run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "the terminal session failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// Prints `lines` numbered lines, then sleeps.
fn talker(word: &str, lines: u32) -> String {
    format!("for i in $(seq 1 {lines}); do echo {word} $i; done; {SLEEP}")
}

#[test]
fn logs_prints_what_kubectl_prints() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let talk = talker("line", 15);
    cluster.create_from(&pod(
        "talk",
        r#""labels": {"app": "talk"}"#,
        &[("main", &talk)],
        "Always",
    ));
    let (a, b) = (talker("a", 3), talker("b", 4));
    cluster.create_from(&pod_with_init(
        "duo",
        r#""labels": {"app": "duo"}"#,
        Some("echo init done"),
        &[("a", &a), ("b", &b)],
        "Always",
    ));
    cluster.create_from(&pod(
        "duo2",
        r#""labels": {"app": "duo"}"#,
        &[("a", &a), ("b", &b)],
        "Always",
    ));
    cluster.create_from(&pod(
        "finite",
        "",
        &[("main", "echo one; echo two; echo -n three")],
        "Never",
    ));
    cluster.create_from(&pod(
        "crashy",
        "",
        &[("main", "echo before the crash; exit 1")],
        "Always",
    ));
    for name in ["talk", "duo", "duo2"] {
        wait_phase(&cluster, name, "Running");
    }
    wait_phase(&cluster, "finite", "Succeeded");
    wait_until(WAIT, "crashy restarted", || {
        let restarts = cluster.jsonpath(
            &["pod", "crashy"],
            "{.status.containerStatuses[0].restartCount}",
        );
        restarts.parse::<u32>().is_ok_and(|n| n >= 1)
    });
    // Everything the sleeping containers print is printed before they sleep.
    wait_until(WAIT, "the talkers said everything", || {
        stdout(&kubectl(&cluster, &["logs", "talk"], None)).ends_with("line 15\n")
            && stdout(&kubectl(&cluster, &["logs", "duo2", "-c", "b"], None)).ends_with("b 4\n")
            && stdout(&kubectl(&cluster, &["logs", "duo", "-c", "b"], None)).ends_with("b 4\n")
    });

    let mut failures = Vec::new();
    let cases: &[&[&str]] = &[
        &["logs", "talk"],
        &["logs", "pod/talk"],
        &["logs", "talk", "-c", "main"],
        &["logs", "talk", "main"],
        &["logs", "talk", "--tail=3"],
        &["logs", "talk", "--tail", "0"],
        &["logs", "talk", "--tail=-1"],
        &["logs", "talk", "--limit-bytes=12"],
        &["logs", "talk", "--since=1h"],
        &["logs", "talk", "--since-time=2020-01-01T00:00:00Z"],
        &["logs", "talk", "--timestamps", "--tail=2"],
        &["logs", "talk", "--prefix", "--tail=2"],
        &["logs", "talk", "--all-containers"],
        &["logs", "duo"],
        &["logs", "duo", "b"],
        &["logs", "duo", "-c", "setup"],
        &["logs", "-l", "app=talk"],
        &["logs", "-l", "app=talk", "--tail=-1"],
        &["logs", "-l", "app=nope"],
        &["logs", "finite"],
        &["logs", "-f", "finite"],
        &["logs", "finite", "--prefix"],
        &["logs", "crashy", "--previous"],
        &["logs", "crashy", "-p"],
        &["logs", "talk", "--previous"],
        &["logs"],
        &["logs", "nope"],
        &["logs", "-n", "kube-public", "talk"],
        &["logs", "talk", "-c", "nope"],
        &["logs", "talk", "nope"],
        &["logs", "talk", "main", "-c", "main"],
        &["logs", "talk", "a", "b"],
        &["logs", "talk", "-l", "app=talk"],
        &["logs", "duo", "-c", "a", "--all-containers"],
        &["logs", "talk", "--since=5"],
        &["logs", "talk", "--since=-5s"],
        &[
            "logs",
            "talk",
            "--since=1h",
            "--since-time=2020-01-01T00:00:00Z",
        ],
        &["logs", "talk", "--tail=-2"],
        &["logs", "talk", "--tail=x"],
        &["logs", "talk", "--limit-bytes=-1"],
        &[
            "logs",
            "-f",
            "-l",
            "app=duo",
            "--all-containers",
            "--max-log-requests=2",
        ],
    ];
    for args in cases {
        compare(&cluster, args, None, &mut failures);
    }
    let several: &[&[&str]] = &[
        &["logs", "duo", "--all-containers"],
        &["logs", "duo", "--all-containers", "--prefix"],
        &["logs", "-l", "app=duo", "--all-containers", "--prefix"],
        &["logs", "-l", "app=duo", "-c", "a", "--prefix"],
    ];
    for args in several {
        compare_unordered(&cluster, args, &mut failures);
    }
    assert_none(failures);
}

/// `logs -f` prints lines as the container writes them, through skiff as through kubectl.
#[test]
fn logs_follow_sees_new_lines() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod(
        "ticker",
        "",
        &[(
            "main",
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
        )],
        "Always",
    ));
    wait_phase(&cluster, "ticker", "Running");
    let mut command = cluster.skiff_kubectl_command();
    command.args(["logs", "-f", "ticker", "--tail=1"]);
    let mut stream = skiff_e2e::LineStream::spawn(command);
    let first = stream.expect_line(WAIT, "a first tick", |l| l.starts_with("tick "));
    let first: u32 = first["tick ".len()..].parse().expect("a tick number");
    let later = format!("tick {}", first + 5);
    stream.expect_line(WAIT, &later, |l| l == later);
    stream.stop();
}

/// A kubia pod (answers `You've hit NAME` on 8080, a port named `http`).
fn kubia(cluster: &Cluster, name: &str) {
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "web",
            "image": "luksa/kubia", "imagePullPolicy": "Never",
            "ports": [{{"name": "http", "containerPort": 8080}}]}}]}}}}"#
    ));
    wait_phase(cluster, name, "Running");
}

/// `wget` of http://127.0.0.1:PORT/ (no proxy, one try).
fn wget(port: u16) -> Output {
    let mut command = Command::new("wget");
    command
        .args(["--no-proxy", "-q", "-O-", "-T", "20", "-t", "1"])
        .arg(format!("http://127.0.0.1:{port}/"));
    run(command, None)
}

/// The first two lines of a port-forward (`Forwarding from 127.0.0.1:L -> R`, then `[::1]`),
/// with the local port L, which is random.
fn forwarding(stream: &mut skiff_e2e::LineStream) -> (Vec<String>, u16) {
    let first = stream.expect_line(WAIT, "Forwarding from 127.0.0.1", |l| {
        l.starts_with("Forwarding from 127.0.0.1:")
    });
    let port: u16 = first["Forwarding from 127.0.0.1:".len()..]
        .split(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a local port");
    let second = stream.expect_line(WAIT, "Forwarding from [::1]", |l| {
        l.starts_with("Forwarding from [::1]:")
    });
    let lines = [first, second]
        .iter()
        .map(|l| l.replace(&format!(":{port} "), ":LOCAL "))
        .collect();
    (lines, port)
}

#[test]
fn port_forward_carries_connections_as_kubectls_does() {
    let cluster = Cluster::start_with_agent(import_test_images);
    kubia(&cluster, "web");
    cluster.create_from(&pod("done", "", &[("main", "true")], "Never"));
    wait_phase(&cluster, "done", "Succeeded");

    let mut failures = Vec::new();
    let cases: &[&[&str]] = &[
        &["port-forward"],
        &["port-forward", "pod/web"],
        &["port-forward", "nope", "8080"],
        &["port-forward", "pod/done", "8080"],
        &["port-forward", "web", "8080", "--address", "nope"],
    ];
    for args in cases {
        compare(&cluster, args, None, &mut failures);
    }
    assert_none(failures);

    let start = |ours: bool, remote: &str| {
        let mut command = if ours {
            cluster.skiff_kubectl_command()
        } else {
            cluster.kubectl_command()
        };
        command.args(["port-forward", "pod/web", &format!(":{remote}")]);
        skiff_e2e::LineStream::spawn(command)
    };
    let mut real = start(false, "8080");
    let (real_lines, _) = forwarding(&mut real);
    real.stop();
    for remote in ["8080", "http"] {
        let mut ours = start(true, remote);
        let (lines, port) = forwarding(&mut ours);
        assert_eq!(lines, real_lines, "skiff port-forward :{remote}");
        // Two connections in a row, each announced.
        for _ in 0..2 {
            let got = wget(port);
            assert!(
                got.status.success() && stdout(&got) == "You've hit web\n",
                "wget through skiff port-forward: {got:?}"
            );
            let handling = format!("Handling connection for {port}");
            ours.expect_line(WAIT, &handling, |l| l == handling);
        }
        ours.stop();
    }

    // Nothing listens on 9999 in the pod: that connection ends with nothing read, and the
    // forward of the other port goes on.
    let mut command = cluster.skiff_kubectl_command();
    command.args(["port-forward", "web", ":9999", ":8080"]);
    let mut ours = skiff_e2e::LineStream::spawn(command);
    let (_, dead) = forwarding(&mut ours);
    let (_, alive) = forwarding(&mut ours);
    let got = wget(dead);
    assert!(!got.status.success(), "wget through a dead port: {got:?}");
    let got = wget(alive);
    assert_eq!(stdout(&got), "You've hit web\n", "{got:?}");

    // The pod goes: so does the forward (its stdout ends long before the wait is over).
    let deleted = kubectl(&cluster, &["delete", "pod", "web", "--wait=false"], None);
    assert_eq!(deleted.status.code(), Some(0), "{}", stderr(&deleted));
    let started = std::time::Instant::now();
    while ours
        .next_line(WAIT.saturating_sub(started.elapsed()))
        .is_some()
    {}
    assert!(
        started.elapsed() < WAIT,
        "port-forward still runs after its pod was deleted: {:?}",
        ours.seen()
    );
    ours.stop();
}

/// A pod whose container reads a line from its stdin (`stdin: true`, once), answers on stdout
/// and stderr, and ends.
fn reader(cluster: &Cluster, name: &str) {
    cluster.create_from(&format!(
        r#"{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "{name}"}},
            "spec": {{"terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
            "containers": [{{"name": "main", "image": "busybox", "imagePullPolicy": "Never",
            "stdin": true, "stdinOnce": true,
            "command": ["sh", "-c", "read line; echo got $line; echo bye >&2"]}}]}}}}"#
    ));
    wait_phase(cluster, name, "Running");
}

#[test]
fn attach_prints_what_kubectl_prints() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod("one", "", &[("main", SLEEP)], "Always"));
    cluster.create_from(&pod("done", "", &[("main", "true")], "Never"));
    wait_phase(&cluster, "one", "Running");
    wait_phase(&cluster, "done", "Succeeded");
    let mut failures = Vec::new();
    let cases: &[&[&str]] = &[
        &["attach"],
        &["attach", "nope"],
        &["attach", "done"],
        &["attach", "one", "-c", "nope"],
        &["attach", "one", "-i"],
        &["attach", "one", "two"],
    ];
    for args in cases {
        compare(&cluster, args, None, &mut failures);
    }
    // Each side attaches to a reader of its own: the line goes in, the answer comes out, and
    // the session ends with the container.
    reader(&cluster, "reader-kubectl");
    reader(&cluster, "reader-skiff");
    let real = kubectl(&cluster, &["attach", "-i", "reader-kubectl"], Some("hi\n"));
    let ours = skiff(&cluster, &["attach", "-i", "reader-skiff"], Some("hi\n"));
    if !same(&real, &ours) {
        failures.push(describe(&["attach", "-i", "reader-..."], &real, &ours));
    }
    assert_eq!(stdout(&ours), "got hi\n");
    assert_none(failures);
}

/// `attach -it` to a shell through skiff in a real pty, twice (the fixture kubectl's test uses).
#[test]
fn attach_it_through_skiff_is_a_real_terminal() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "term"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "Never", "command": ["sh"],
            "stdin": true, "tty": true}]}}"#,
    );
    wait_phase(&cluster, "term", "Running");
    for mode in ["attach", "again"] {
        tty_attach(&cluster, mode, "term");
    }
}

/// Runs tests/fixtures/tty_attach.py in `mode` with skiff as kubectl; asserts it printed OK.
fn tty_attach(cluster: &Cluster, mode: &str, name: &str) {
    let mut python = Command::new("python3");
    python
        .arg(fixture("tty_attach.py"))
        .arg(skiff_bin())
        .arg(cluster.kubeconfig())
        .arg(mode)
        .arg(name);
    let out = run(python, None);
    assert!(
        out.status.success() && stdout(&out).trim() == "OK",
        "tty_attach.py {mode} {name} through skiff failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

/// What `run` made: the labels and spec of pod `name` (the server's defaults included, the
/// node and the service account token volume aside, which differ between two pods only by
/// name).
fn made(cluster: &Cluster, name: &str) -> String {
    cluster.jsonpath(
        &["pod", name],
        "{.metadata.labels} {.metadata.annotations} {.spec.containers} {.spec.restartPolicy} \
         {.spec.dnsPolicy}",
    )
}

#[test]
fn run_makes_the_pod_kubectl_makes() {
    let cluster = Cluster::start_with_agent(import_test_images);
    let mut failures = Vec::new();
    let errors: &[&[&str]] = &[
        &["run"],
        &["run", "x"],
        &["run", "--image=busybox"],
        &["run", "x", "--image=busybox", "--restart=Bogus"],
        &["run", "x", "--image=busybox", "--rm"],
        &["run", "x", "--image=busybox", "-t"],
        &["run", "x", "--image=busybox", "-i", "--dry-run=client"],
        &["run", "x", "--image=busybox", "--dry-run=client"],
        &[
            "run",
            "x",
            "--image=busybox",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
        &[
            "run",
            "x",
            "--image=busybox",
            "--dry-run=client",
            "-o",
            "json",
            "--restart=Never",
            "--env=A=1",
            "--env=B=two words",
            "--port=8080",
            "--labels=app=x,tier=web",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
        &[
            "run",
            "x",
            "--image=busybox",
            "--dry-run=client",
            "-o",
            "yaml",
            "--command",
            "--",
            "sleep",
            "10",
        ],
    ];
    for args in errors {
        compare(&cluster, args, None, &mut failures);
    }

    // The same pods, created for real, compared field by field.
    let creations: &[&[&str]] = &[
        &[
            "run",
            "made",
            "--image=busybox",
            "--image-pull-policy=Never",
        ],
        &[
            "run",
            "made",
            "--image=busybox",
            "--restart=Never",
            "--env=A=1",
            "--port=8080",
            "--labels=app=x,tier=web",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
        &[
            "run",
            "made",
            "--image=busybox",
            "--command",
            "--",
            "sleep",
            "10",
        ],
        &["run", "made", "--image=busybox", "--dry-run=server"],
    ];
    for args in creations {
        let real = kubectl(&cluster, args, None);
        let real_pod = made(&cluster, "made");
        let _ = kubectl(
            &cluster,
            &["delete", "pod", "made", "--now", "--ignore-not-found"],
            None,
        );
        let ours = skiff(&cluster, args, None);
        let our_pod = made(&cluster, "made");
        let _ = kubectl(
            &cluster,
            &["delete", "pod", "made", "--now", "--ignore-not-found"],
            None,
        );
        if !same(&real, &ours) {
            failures.push(describe(args, &real, &ours));
        }
        if real_pod != our_pod {
            failures.push(format!(
                "`kubectl {}` made another pod:\n{real_pod}\nskiff's:\n{our_pod}",
                args.join(" ")
            ));
        }
    }

    // -i --rm: stdin goes in, the output comes out, the pod is deleted; then an exit code.
    let piped: &[&str] = &[
        "run",
        "piped",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=busybox",
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "read line; echo got $line",
    ];
    compare(&cluster, piped, Some("hello\n"), &mut failures);
    let failing: &[&str] = &[
        "run",
        "failing",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=busybox",
        "--image-pull-policy=Never",
        "--",
        "sh",
        "-c",
        "read line; echo got $line; exit 3",
    ];
    compare(&cluster, failing, Some("x\n"), &mut failures);
    assert_none(failures);
}

/// `run -it --rm NAME --image=busybox --restart=Never -- sh` through skiff in a real pty.
#[test]
fn run_it_rm_through_skiff_attaches_then_deletes() {
    let cluster = Cluster::start_with_agent(import_test_images);
    tty_attach(&cluster, "run", "shell");
    let gone = kubectl(&cluster, &["get", "pod", "shell"], None);
    assert_eq!(
        stderr(&gone),
        "Error from server (NotFound): pods \"shell\" not found\n"
    );
}

/// Every file under `dir` with its contents, sorted: what a copy made.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next)
            .expect("read a copied directory")
            .flatten()
        {
            let path = entry.path();
            let name = path
                .strip_prefix(dir)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if path.is_dir() {
                found.push((format!("{name}/"), String::new()));
                pending.push(path);
            } else {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                found.push((name, text));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn cp_copies_as_kubectl_copies() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod("one", "", &[("main", SLEEP)], "Always"));
    cluster.create_from(&pod(
        "pair",
        "",
        &[("web", SLEEP), ("side", SLEEP)],
        "Always",
    ));
    wait_phase(&cluster, "one", "Running");
    wait_phase(&cluster, "pair", "Running");
    let dir = cluster.scratch_dir();
    skiff_e2e::write_file(dir, "hello.txt", "hello, pod\n");
    std::fs::create_dir_all(dir.join("src/sub/empty")).expect("create a source tree");
    skiff_e2e::write_file(&dir.join("src"), "a.txt", "a\n");
    skiff_e2e::write_file(&dir.join("src/sub"), "b.txt", "b\n");

    let mut failures = Vec::new();
    let errors: &[&[&str]] = &[
        &["cp"],
        &["cp", "hello.txt"],
        &["cp", "hello.txt", "copy.txt"],
        &["cp", "one:/a", "pair:/b"],
        &["cp", "missing.txt", "one:/tmp/x"],
        &["cp", "nope:/etc/hostname", "x"],
        &["cp", ":x", "y"],
        &["cp", "a/b/c:x", "y"],
        &["cp", "one:", "y"],
    ];
    for args in errors {
        compare(&cluster, args, None, &mut failures);
    }

    let in_pod = |pod: &str, script: &str| {
        stdout(&kubectl(
            &cluster,
            &[
                "exec",
                pod,
                "-c",
                if pod == "pair" { "web" } else { "main" },
                "--",
                "sh",
                "-c",
                script,
            ],
            None,
        ))
    };
    // Into the pod: a file to a new name, into a directory, a tree to a new name and into a
    // directory, a multi-container pod's default container.
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["cp", "hello.txt", "one:/tmp/copy.txt"],
            "one",
            "cat /tmp/copy.txt",
        ),
        (
            &["cp", "hello.txt", "one:/tmp"],
            "one",
            "cat /tmp/hello.txt",
        ),
        (
            &["cp", "src", "one:/tmp/dest"],
            "one",
            "cd /tmp/dest && find . | sort && cat a.txt sub/b.txt",
        ),
        (
            &["cp", "src", "one:/tmp"],
            "one",
            "cd /tmp/src && find . | sort",
        ),
        (&["cp", "hello.txt", "pair:/tmp/h"], "pair", "cat /tmp/h"),
        (
            &["cp", "--no-preserve", "hello.txt", "one:/tmp/np"],
            "one",
            "cat /tmp/np",
        ),
    ];
    for (args, pod, check) in cases {
        let clean = "rm -rf /tmp/copy.txt /tmp/hello.txt /tmp/dest /tmp/src /tmp/h /tmp/np";
        in_pod(pod, clean);
        let real = kubectl(&cluster, args, None);
        let real_made = in_pod(pod, check);
        in_pod(pod, clean);
        let ours = skiff(&cluster, args, None);
        let our_made = in_pod(pod, check);
        if !same(&real, &ours) {
            failures.push(describe(args, &real, &ours));
        }
        if real_made.is_empty() || real_made != our_made {
            failures.push(format!(
                "`kubectl {}` made {real_made:?} in the pod, skiff {our_made:?}",
                args.join(" ")
            ));
        }
    }

    // Out of the pod: a file, a tree, something missing.
    in_pod(
        "one",
        "mkdir -p /tmp/out/sub/empty && echo x > /tmp/out/x && echo y > /tmp/out/sub/y",
    );
    for (remote, local) in [
        ("one:/etc/hostname", "hostname"),
        ("one:/tmp/out", "out"),
        ("one:/tmp/out/", "out2"),
    ] {
        let (real_dest, our_dest) = (format!("real-{local}"), format!("ours-{local}"));
        let mut real = kubectl(&cluster, &["cp", remote, &real_dest], None);
        let mut ours = skiff(&cluster, &["cp", remote, &our_dest], None);
        // kubectl may exit before it printed tar's stderr (on its stdout), once the archive
        // is read: that line comes and goes.
        for output in [&mut real, &mut ours] {
            output.stdout = stdout(output)
                .replace("tar: removing leading '/' from member names\n", "")
                .into_bytes();
        }
        if !same(&real, &ours) {
            failures.push(describe(&["cp", remote, local], &real, &ours));
        }
        let (real_path, our_path) = (dir.join(&real_dest), dir.join(&our_dest));
        let made = |path: &Path| {
            if path.is_dir() {
                format!("{:?}", tree(path))
            } else {
                std::fs::read_to_string(path).unwrap_or_default()
            }
        };
        if made(&real_path).is_empty() || made(&real_path) != made(&our_path) {
            failures.push(format!(
                "`cp {remote}`: kubectl made {:?}, skiff {:?}",
                made(&real_path),
                made(&our_path)
            ));
        }
    }
    // Something missing: kubectl exits 0 and prints tar's complaint on stdout when it reads it
    // before it exits (racy); ours always does.
    let ours = skiff(&cluster, &["cp", "one:/nope", "nope"], None);
    assert_eq!(ours.status.code(), Some(0));
    assert!(
        stdout(&ours).contains("tar: /nope: No such file or directory\n"),
        "{ours:?}"
    );
    assert_none(failures);
}

/// Much stdin through `exec -i -- cat`, echoed back while more goes in: nothing stalls, every
/// byte comes back.
#[test]
fn exec_i_echoes_much_stdin() {
    let cluster = Cluster::start_with_agent(import_test_images);
    cluster.create_from(&pod("one", "", &[("main", SLEEP)], "Always"));
    wait_phase(&cluster, "one", "Running");
    let line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
    let input = line.repeat(32 * 1024 * 1024 / line.len());
    let ours = skiff(&cluster, &["exec", "-i", "one", "--", "cat"], Some(&input));
    assert_eq!(ours.status.code(), Some(0), "{}", stderr(&ours));
    assert_eq!(ours.stdout.len(), input.len());
    assert!(ours.stdout == input.as_bytes(), "the echo differs");
}
