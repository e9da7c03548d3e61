//! Durability across a crash: 1,000 pod creates in flight, `kill -9` of the server in the
//! middle, restart on the same data directory. Every create the server acknowledged (201) must
//! still be there, unchanged, and resourceVersions must keep growing after the restart.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skiff_e2e::{assert_success, stdout, Cluster};

const PODS: usize = 1_000;
/// Parallel curl processes, each with this many transfers at once.
const WORKERS: usize = 8;
const PARALLEL_PER_WORKER: usize = 8;
/// The server is killed (in the middle) once this many creates have been acknowledged.
const KILL_AFTER: usize = PODS / 2;
const TIMEOUT: Duration = Duration::from_secs(120);

fn pod_name(i: usize) -> String {
    format!("crash-{i:04}")
}

fn pod_body(name: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"test": "crash"}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    })
    .to_string()
}

/// A string as a double-quoted curl config value.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A curl config with one POST per pod; each prints `<http code> <pod name>` on stderr when
/// done and keeps the response body in `<out_dir>/<pod name>.json`.
fn curl_config(cluster: &Cluster, token: &str, names: &[String], out_dir: &Path) -> String {
    let url = format!("{}/api/v1/namespaces/default/pods", cluster.url());
    let ca = cluster.ca_file();
    let mut config = String::new();
    for (i, name) in names.iter().enumerate() {
        // Options are per transfer: `next` starts the next one (a trailing `next` would be an
        // empty transfer, which curl reports as an error).
        if i > 0 {
            config.push_str("next\n");
        }
        let output = out_dir.join(format!("{name}.json"));
        for (option, value) in [
            ("url", url.clone()),
            ("cacert", ca.to_string_lossy().into_owned()),
            ("header", format!("Authorization: Bearer {token}")),
            ("header", "Content-Type: application/json".to_owned()),
            ("data-binary", pod_body(name)),
            ("output", output.to_string_lossy().into_owned()),
            // To stderr, which curl does not buffer: the kill must follow the acknowledgements
            // closely, not a pipe buffer later.
            ("write-out", format!("%{{stderr}}%{{http_code}} {name}\\n")),
            ("connect-timeout", "10".to_owned()),
            ("max-time", "60".to_owned()),
        ] {
            config.push_str(&format!("{option} = {}\n", quoted(&value)));
        }
        config.push_str("silent\n");
    }
    config
}

/// One POST through curl, returning the status code and the body.
fn curl_create(cluster: &Cluster, name: &str) -> (String, Value) {
    let mut curl = cluster.curl_command(true);
    curl.args(["--header", "Content-Type: application/json"])
        .args(["--write-out", "\n%{http_code}", "--data-binary"])
        .arg(pod_body(name))
        .arg(format!("{}/api/v1/namespaces/default/pods", cluster.url()));
    let output = skiff_e2e::run(curl, None);
    assert_success(&output, "curl POST a pod");
    let text = stdout(&output);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (code.to_owned(), body)
}

fn resource_version(object: &Value) -> Option<u64> {
    object["metadata"]["resourceVersion"].as_str()?.parse().ok()
}

#[test]
fn acknowledged_creates_survive_kill_9() {
    let mut cluster = Cluster::start();
    let token = cluster.token();
    let out_dir = cluster.scratch_dir().join("responses");
    fs::create_dir_all(&out_dir).expect("create the responses dir");

    // Start every worker; one thread per worker forwards `<code> <name>` lines to us.
    let (sender, lines) = mpsc::channel::<String>();
    let mut workers: Vec<Child> = Vec::new();
    for worker in 0..WORKERS {
        let names: Vec<String> = (worker..PODS).step_by(WORKERS).map(pod_name).collect();
        let config = cluster
            .scratch_dir()
            .join(format!("curl-worker-{worker}.conf"));
        fs::write(&config, curl_config(&cluster, &token, &names, &out_dir))
            .expect("write a curl config");
        let mut child = Command::new("curl")
            // --silent alone leaves the --parallel progress meter on.
            .args(["--no-progress-meter", "--silent", "--parallel"])
            .arg("--parallel-max")
            .arg(PARALLEL_PER_WORKER.to_string())
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl (scripts/test.sh installs it)");
        let report = child.stderr.take().expect("stderr was piped above");
        let sender = sender.clone();
        thread::spawn(move || {
            for line in BufReader::new(report).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        workers.push(child);
    }
    drop(sender);

    // Collect results; kill -9 the server once KILL_AFTER creates are acknowledged.
    let deadline = Instant::now() + TIMEOUT;
    let mut codes: BTreeMap<String, String> = BTreeMap::new();
    let mut finished_at_kill = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                // Only our write-out lines: `<3-digit code> crash-NNNN`.
                if let Some((code, name)) = line.split_once(' ') {
                    if code.len() == 3 && name.starts_with("crash-") {
                        codes.insert(name.to_owned(), code.to_owned());
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                for worker in &mut workers {
                    let _ = worker.kill();
                }
                panic!(
                    "the curl workers did not finish within {TIMEOUT:?} ({} of {PODS} done)",
                    codes.len()
                );
            }
        }
        let acknowledged = codes.values().filter(|code| *code == "201").count();
        if finished_at_kill.is_none() && acknowledged >= KILL_AFTER {
            cluster.crash();
            finished_at_kill = Some(codes.len());
        }
    }
    for worker in &mut workers {
        let _ = worker.wait();
    }

    let finished_at_kill = finished_at_kill
        .unwrap_or_else(|| panic!("fewer than {KILL_AFTER} creates were acknowledged: {codes:?}"));
    assert!(
        finished_at_kill < PODS,
        "all {PODS} creates had finished before the kill, so nothing was in flight"
    );
    assert_eq!(codes.len(), PODS, "every transfer reports a code");
    assert!(
        codes.values().any(|code| code == "000"),
        "every create was answered, so the kill came after the last one: {codes:?}"
    );
    // 000: no response (the server was gone). Anything else is a server error under load.
    let unexpected: Vec<_> = codes
        .iter()
        .filter(|(_, code)| *code != "201" && *code != "000")
        .collect();
    assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");

    // What each acknowledged create returned, when its body arrived whole.
    let acknowledged: BTreeSet<&String> = codes
        .iter()
        .filter(|(_, code)| *code == "201")
        .map(|(name, _)| name)
        .collect();
    let mut returned: BTreeMap<&String, Value> = BTreeMap::new();
    for name in &acknowledged {
        let body = fs::read_to_string(out_dir.join(format!("{name}.json"))).unwrap_or_default();
        if let Ok(pod) = serde_json::from_str::<Value>(&body) {
            assert_eq!(pod["metadata"]["name"], name.as_str(), "{pod}");
            returned.insert(name, pod);
        }
    }

    eprintln!(
        "{} of {PODS} creates acknowledged ({} finished when the server was killed, {} bodies read)",
        acknowledged.len(),
        finished_at_kill,
        returned.len()
    );
    cluster.restart();

    // Every acknowledged create is there, as it was returned.
    let mut list = cluster.curl_command(true);
    list.arg(format!("{}/api/v1/namespaces/default/pods", cluster.url()));
    let output = skiff_e2e::run(list, None);
    assert_success(&output, "curl GET the pod list");
    let list: Value = serde_json::from_str(&stdout(&output)).expect("the pod list is JSON");
    let items = list["items"].as_array().expect("the pod list has items");
    let listed: BTreeMap<&str, &Value> = items
        .iter()
        .filter_map(|pod| Some((pod["metadata"]["name"].as_str()?, pod)))
        .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|name| !listed.contains_key(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged creates are missing after the restart: {missing:?}",
        missing.len()
    );
    for (name, pod) in &returned {
        let stored = listed[name.as_str()];
        assert_eq!(stored["metadata"]["uid"], pod["metadata"]["uid"], "{name}");
        assert_eq!(stored["spec"], pod["spec"], "{name}");
        // The version acknowledged, or a later one: the scheduler may have written the pod's
        // status since (no node can take it, so it is marked Unschedulable).
        let (stored_rv, returned_rv) = (resource_version(stored), resource_version(pod));
        assert!(
            stored_rv.is_some() && stored_rv >= returned_rv,
            "{name}: stored at {stored_rv:?}, acknowledged at {returned_rv:?}"
        );
    }
    assert!(
        listed.len() <= PODS,
        "more pods than were created: {}",
        listed.len()
    );

    // resourceVersions only grow: past every version seen before or after the crash.
    let seen_max = returned
        .values()
        .chain(listed.values().copied())
        .filter_map(resource_version)
        .max()
        .expect("at least one pod has a resourceVersion");
    let list_rv = resource_version(&list).expect("the list has a resourceVersion");
    assert!(
        list_rv >= seen_max,
        "list at {list_rv}, a pod at {seen_max}"
    );
    let (code, after) = curl_create(&cluster, "after-restart-1");
    assert_eq!(code, "201", "{after}");
    let first = resource_version(&after).expect("the created pod has a resourceVersion");
    assert!(
        first > seen_max,
        "a create after the restart got resourceVersion {first}, not above {seen_max}"
    );
    let (code, again) = curl_create(&cluster, "after-restart-2");
    assert_eq!(code, "201", "{again}");
    let second = resource_version(&again).expect("the created pod has a resourceVersion");
    assert!(second > first, "{second} after {first}");

    eprintln!(
        "after the restart: {} pods listed, resourceVersions up to {seen_max}, then {first} and {second}",
        listed.len()
    );

    // kubectl, with the kubeconfig of the first start, sees the same pods.
    let names = cluster.kubectl_ok(["get", "po", "-o", "name"]);
    assert_eq!(names.lines().count(), listed.len() + 2, "{names}");
}
