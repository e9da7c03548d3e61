//! The pod worker against a real API server and a fake runtime: pods start and report what
//! Kubernetes reports, crash and restart with back-off, end per restartPolicy, are stopped
//! gracefully and confirmed deleted; leftovers of gone pods are removed at start and live ones
//! re-adopted without a restart.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{wait_for, TestServer};
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;
use skiff_agent::fake::{FakeContainer, FakeRuntime};
use skiff_agent::runtime::{container_id, RuntimeState};
use skiff_agent::{Agent, AgentConfig};

struct Running {
    server: TestServer,
    fake: Arc<FakeRuntime>,
    node: String,
    pods: Api<Pod>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn fake_with_images() -> Arc<FakeRuntime> {
    let fake = Arc::new(FakeRuntime::new());
    fake.with(|s| {
        s.images.insert("busybox:1.36".into());
        s.pullable.insert("kubia:1".into());
        s.missing_commands.insert(
            "nosuch".into(),
            "exec: \"nosuch\": executable file not found in $PATH".into(),
        );
    });
    fake
}

async fn start(fake: Arc<FakeRuntime>, tag: &str) -> Running {
    let server = TestServer::start().await;
    start_on(server, fake, tag).await
}

async fn start_on(server: TestServer, fake: Arc<FakeRuntime>, tag: &str) -> Running {
    let node = format!("n-{tag}-{}", std::process::id());
    let mut config = AgentConfig::new(&node, server.dir.path());
    config.status_interval = Duration::from_secs(1);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = Agent::new(server.client.clone(), config).with_runtime(fake.clone());
    tokio::spawn(agent.run(async {
        let _ = stopped.await;
    }));
    let pods = Api::namespaced(server.client.clone(), "default");
    Running {
        server,
        fake,
        node,
        pods,
        stop: Some(stop),
    }
}

impl Running {
    async fn create(&self, pod: serde_json::Value) -> Pod {
        let mut pod: Pod = serde_json::from_value(pod).expect("pod");
        if let Some(spec) = pod.spec.as_mut() {
            spec.node_name = Some(self.node.clone());
        }
        self.pods
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod created")
    }

    async fn wait_pod(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        wait_for(what, || async {
            self.pods
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|p| check(p))
        })
        .await
    }

    async fn reasons(&self, pod: &Pod) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.server.client.clone(), "default");
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.involved_object.uid == pod.metadata.uid)
            .filter_map(|e| e.reason)
            .collect()
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn container<'a>(p: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn waiting_reason(p: &Pod, name: &str) -> Option<String> {
    container(p, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn is_running(p: &Pod, name: &str) -> bool {
    container(p, name)
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
}

#[tokio::test]
async fn pod_runs_restarts_and_goes_gracefully() {
    let r = start(fake_with_images(), "run").await;
    let created = r
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {"terminationGracePeriodSeconds": 7, "containers": [
                {"name": "a", "image": "busybox:1.36"},
                {"name": "b", "image": "busybox:1.36"},
            ]},
        }))
        .await;
    let uid = created.metadata.uid.clone().expect("uid");
    let pod = r
        .wait_pod("web", "web Running and Ready", |p| {
            phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True")
        })
        .await;
    let a = container(&pod, "a").expect("status of a");
    assert_eq!(
        a.container_id.as_deref(),
        Some(format!("skiff://{}", container_id(&uid, 0, "a")).as_str())
    );
    assert_eq!(a.image, "docker.io/library/busybox:1.36");
    assert!(a.image_id.starts_with("sha256:"));
    assert!(a.ready);
    assert_eq!(a.restart_count, 0);
    let status = pod.status.clone().expect("status");
    assert!(status.host_ip.is_some());
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    for kind in [
        "PodScheduled",
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
    ] {
        assert_eq!(condition(&pod, kind).as_deref(), Some("True"), "{kind}");
    }
    let reasons = r.reasons(&pod).await;
    for reason in ["Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|x| x == reason),
            "{reason} in {reasons:?}"
        );
    }

    // b crashes: restarted at once the first time.
    r.fake.exit(&container_id(&uid, 0, "b"), 2);
    let pod = r
        .wait_pod("web", "b restarted", |p| {
            container(p, "b").is_some_and(|c| c.restart_count == 1) && is_running(p, "b")
        })
        .await;
    let b = container(&pod, "b").expect("b");
    let last = b
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(last.exit_code, 2);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(
        b.container_id.as_deref(),
        Some(format!("skiff://{}", container_id(&uid, 1, "b")).as_str())
    );
    // Again: now it waits in CrashLoopBackOff, and the pod is not Ready.
    r.fake.exit(&container_id(&uid, 1, "b"), 3);
    let pod = r
        .wait_pod("web", "b in CrashLoopBackOff", |p| {
            waiting_reason(p, "b").as_deref() == Some("CrashLoopBackOff")
        })
        .await;
    let b = container(&pod, "b").expect("b");
    let message = b
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .expect("message");
    assert!(
        message.starts_with("back-off 10s restarting failed container=b pod=web_default("),
        "{message}"
    );
    assert_eq!(condition(&pod, "Ready").as_deref(), Some("False"));
    assert_eq!(phase(&pod), "Running");
    assert!(r.reasons(&pod).await.iter().any(|x| x == "BackOff"));

    // Delete: SIGTERM with the pod's grace period, everything removed, the object goes.
    r.pods
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("web to go", || async {
        r.pods
            .get_opt("web")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;
    let (calls, containers, sandboxes) = r
        .fake
        .with(|s| (s.calls.clone(), s.containers.len(), s.sandboxes.len()));
    let stop_a = format!("stop {} 15 7", container_id(&uid, 0, "a"));
    assert!(calls.contains(&stop_a), "{stop_a} in {calls:?}");
    assert_eq!(containers, 0, "{calls:?}");
    assert_eq!(sandboxes, 0, "{calls:?}");
}

#[tokio::test]
async fn waiting_reasons_and_restart_policies() {
    let r = start(fake_with_images(), "policy").await;
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "never-pull"},
        "spec": {"containers": [{"name": "a", "image": "absent:1", "imagePullPolicy": "Never"}]},
    }))
    .await;
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-image"},
        "spec": {"containers": [{"name": "a", "image": "nowhere:1"}]},
    }))
    .await;
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pulled"},
        "spec": {"containers": [{"name": "a", "image": "kubia:1"}]},
    }))
    .await;
    let ok = r
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-ok"},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "busybox:1.36"}]},
        }))
        .await;
    let bad = r
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "job-bad"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "busybox:1.36"}]},
        }))
        .await;
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad-command"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "a", "image": "busybox:1.36", "command": ["nosuch"]}]},
    }))
    .await;

    let pod = r
        .wait_pod("never-pull", "ErrImageNeverPull", |p| {
            waiting_reason(p, "a").as_deref() == Some("ErrImageNeverPull")
        })
        .await;
    let message = container(&pod, "a")
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
        .expect("message");
    assert_eq!(
        message,
        "Container image \"absent:1\" is not present with pull policy of Never"
    );
    assert_eq!(phase(&pod), "Pending");
    assert!(r
        .reasons(&pod)
        .await
        .iter()
        .any(|x| x == "ErrImageNeverPull"));

    let pod = r
        .wait_pod("no-image", "ErrImagePull", |p| {
            matches!(
                waiting_reason(p, "a").as_deref(),
                Some("ErrImagePull" | "ImagePullBackOff")
            )
        })
        .await;
    let reasons = r.reasons(&pod).await;
    assert!(reasons.iter().any(|x| x == "Pulling"), "{reasons:?}");
    assert!(reasons.iter().any(|x| x == "Failed"), "{reasons:?}");

    let pod = r
        .wait_pod("pulled", "pulled and running", |p| is_running(p, "a"))
        .await;
    assert!(r.reasons(&pod).await.iter().any(|x| x == "Pulled"));

    // OnFailure + exit 0: Succeeded; Never + exit 1: Failed.
    let ok_uid = ok.metadata.uid.expect("uid");
    let bad_uid = bad.metadata.uid.expect("uid");
    r.wait_pod("job-ok", "job-ok running", |p| is_running(p, "a"))
        .await;
    r.wait_pod("job-bad", "job-bad running", |p| is_running(p, "a"))
        .await;
    r.fake.exit(&container_id(&ok_uid, 0, "a"), 0);
    r.fake.exit(&container_id(&bad_uid, 0, "a"), 1);
    let pod = r
        .wait_pod("job-ok", "job-ok Succeeded", |p| phase(p) == "Succeeded")
        .await;
    let term = container(&pod, "a")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    assert_eq!(
        r.fake.with(|s| s
            .calls
            .iter()
            .filter(|c| c.contains(&ok_uid) && c.starts_with("start"))
            .count()),
        1,
        "not restarted"
    );
    r.wait_pod("job-bad", "job-bad Failed", |p| phase(p) == "Failed")
        .await;

    // A command that is not in the image: the runtime's message, and the pod fails (Never).
    let pod = r
        .wait_pod("bad-command", "bad-command Failed", |p| {
            phase(p) == "Failed"
        })
        .await;
    let term = container(&pod, "a")
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!(term.reason.as_deref(), Some("StartError"));
    assert!(
        term.message
            .as_deref()
            .unwrap_or_default()
            .contains("executable file not found"),
        "{term:?}"
    );
}

#[tokio::test]
async fn restart_readopts_live_pods_and_removes_leftovers() {
    let server = TestServer::start().await;
    let fake = fake_with_images();
    let node = format!("n-adopt-{}", std::process::id());
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    let mut pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kept"},
        "spec": {"nodeName": node, "containers": [{"name": "a", "image": "busybox:1.36"}]},
    }))
    .expect("pod");
    pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let uid = pod.metadata.uid.clone().expect("uid");
    // What an agent that was killed left: this pod's sandbox and running container (its
    // second instance), and those of a pod deleted meanwhile.
    let kept = container_id(&uid, 1, "a");
    let gone = container_id("4d6c1f4e-0000-4000-8000-000000000000", 0, "a");
    fake.with(|s| {
        s.sandboxes.insert("sb-kept".into(), Some(uid.clone()));
        s.sandboxes.insert(
            "sb-gone".into(),
            Some("4d6c1f4e-0000-4000-8000-000000000000".into()),
        );
        s.sandboxes.insert("sb-half".into(), None);
        for (id, sandbox) in [(&kept, "sb-kept"), (&gone, "sb-gone")] {
            s.containers.insert(
                id.clone(),
                FakeContainer {
                    pod_uid: String::new(),
                    sandbox: sandbox.into(),
                    name: "a".into(),
                    command: vec![],
                    state: RuntimeState::Running {
                        started_at: k8s_openapi::jiff::Timestamp::now(),
                    },
                },
            );
        }
    });
    let r = start_on(server, fake, "adopt").await;
    assert_eq!(r.node, node);
    let pod = r
        .wait_pod("kept", "kept Running", |p| is_running(p, "a"))
        .await;
    let a = container(&pod, "a").expect("a");
    assert_eq!(
        a.container_id.as_deref(),
        Some(format!("skiff://{kept}").as_str())
    );
    assert_eq!(a.restart_count, 1);
    wait_for("leftovers removed", || async {
        r.fake
            .with(|s| {
                !s.containers.contains_key(&gone)
                    && !s.sandboxes.contains_key("sb-gone")
                    && !s.sandboxes.contains_key("sb-half")
            })
            .then_some(())
    })
    .await;
    let calls = r.fake.with(|s| s.calls.clone());
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("start") || c.starts_with("create-sandbox")),
        "nothing restarted: {calls:?}"
    );
    assert!(r.fake.with(|s| s.sandboxes.contains_key("sb-kept")));
}

#[tokio::test]
async fn force_delete_kills_at_once_and_cleans_up() {
    let r = start(fake_with_images(), "force").await;
    let created = r
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "forced"},
            "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]},
        }))
        .await;
    let uid = created.metadata.uid.expect("uid");
    r.wait_pod("forced", "forced running", |p| is_running(p, "a"))
        .await;
    // `kubectl delete --grace-period=0 --force`: the object goes at once; the agent kills.
    r.pods
        .delete(
            "forced",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await
        .expect("delete");
    wait_for("the fake to be empty", || async {
        r.fake
            .with(|s| (s.containers.is_empty() && s.sandboxes.is_empty()).then_some(()))
    })
    .await;
    let calls = r.fake.with(|s| s.calls.clone());
    let kill = format!("stop {} 9 0", container_id(&uid, 0, "a"));
    assert!(calls.contains(&kill), "{kill} in {calls:?}");
    assert!(r.pods.get_opt("forced").await.expect("get").is_none());
}

#[tokio::test]
async fn a_broken_sandbox_is_replaced_and_its_containers_restarted() {
    let server = TestServer::start().await;
    let fake = fake_with_images();
    let node = format!("n-broken-{}", std::process::id());
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rebooted"},
        "spec": {"nodeName": node, "containers": [{"name": "a", "image": "busybox:1.36"}]},
    }))
    .expect("pod");
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let uid = pod.metadata.uid.clone().expect("uid");
    // After a reboot: the sandbox's record is there but its mounts are not, and the container
    // died with the machine.
    let old = container_id(&uid, 0, "a");
    fake.with(|s| {
        s.sandboxes.insert("sb-old".into(), Some(uid.clone()));
        s.broken_sandboxes.insert("sb-old".into());
        s.containers.insert(
            old.clone(),
            FakeContainer {
                pod_uid: uid.clone(),
                sandbox: "sb-old".into(),
                name: "a".into(),
                command: vec![],
                state: RuntimeState::Exited {
                    exit_code: 255,
                    reason: "Error".into(),
                    message: None,
                    started_at: None,
                    finished_at: k8s_openapi::jiff::Timestamp::now(),
                },
            },
        );
    });
    let r = start_on(server, fake, "broken").await;
    let pod = r
        .wait_pod("rebooted", "rebooted running again", |p| is_running(p, "a"))
        .await;
    let a = container(&pod, "a").expect("a");
    assert_eq!(a.restart_count, 1);
    assert_eq!(
        a.container_id.as_deref(),
        Some(format!("skiff://{}", container_id(&uid, 1, "a")).as_str())
    );
    r.fake.with(|s| {
        assert!(!s.sandboxes.contains_key("sb-old"), "{:?}", s.calls);
        assert_eq!(s.sandboxes.len(), 1);
        assert!(!s.containers.contains_key(&old));
    });
}

#[tokio::test]
async fn init_containers_run_to_completion_first() {
    let r = start(fake_with_images(), "init").await;
    let created = r
        .create(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "with-init"},
            "spec": {
                "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
                "containers": [{"name": "app", "image": "busybox:1.36"}],
            },
        }))
        .await;
    let uid = created.metadata.uid.expect("uid");
    let setup = container_id(&uid, 0, "setup");
    let pod = r
        .wait_pod("with-init", "setup running", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .is_some_and(|s| s[0].state.as_ref().is_some_and(|st| st.running.is_some()))
        })
        .await;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("False"));
    assert_eq!(
        waiting_reason(&pod, "app").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(phase(&pod), "Pending");
    assert!(
        !r.fake
            .with(|s| s.containers.contains_key(&container_id(&uid, 0, "app"))),
        "app must wait for setup"
    );
    // A failure is retried (restartPolicy Always means OnFailure for init containers).
    r.fake.exit(&setup, 1);
    let retry = container_id(&uid, 1, "setup");
    wait_for("setup retried", || async {
        r.fake
            .with(|s| s.containers.contains_key(&retry).then_some(()))
    })
    .await;
    r.fake.exit(&retry, 0);
    let pod = r
        .wait_pod("with-init", "app running", |p| is_running(p, "app"))
        .await;
    assert_eq!(condition(&pod, "Initialized").as_deref(), Some("True"));
    assert_eq!(phase(&pod), "Running");
}

#[tokio::test]
async fn a_sandbox_that_cannot_be_created_is_reported_once_and_retried() {
    let fake = fake_with_images();
    fake.with(|s| s.sandbox_error = Some("mount /dev/shm: no space left on device".into()));
    let r = start(fake, "nosandbox").await;
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
        "spec": {"containers": [{"name": "a", "image": "busybox:1.36"}]},
    }))
    .await;
    let pod = r
        .wait_pod("stuck", "stuck reported", |p| {
            condition(p, "PodReadyToStartContainers").as_deref() == Some("False")
        })
        .await;
    assert_eq!(
        waiting_reason(&pod, "a").as_deref(),
        Some("ContainerCreating")
    );
    assert_eq!(phase(&pod), "Pending");
    wait_for("the FailedCreatePodSandBox event", || async {
        r.reasons(&pod)
            .await
            .iter()
            .any(|x| x == "FailedCreatePodSandBox")
            .then_some(())
    })
    .await;
    wait_for("a second attempt", || async {
        let failed = r.fake.with(|s| {
            s.calls
                .iter()
                .filter(|c| *c == "create-sandbox failed")
                .count()
        });
        (failed >= 2).then_some(())
    })
    .await;
    // The node recovers: the next attempt (within 5 s) creates it and the pod runs.
    r.fake.with(|s| s.sandbox_error = None);
    let pod = r
        .wait_pod("stuck", "stuck running", |p| is_running(p, "a"))
        .await;
    let failures = r
        .reasons(&pod)
        .await
        .into_iter()
        .filter(|x| x == "FailedCreatePodSandBox")
        .count();
    assert_eq!(failures, 1, "announced once");
}

#[tokio::test]
async fn pull_secrets_give_their_registry_credentials_and_missing_ones_are_warned_about() {
    use k8s_openapi::api::core::v1::Secret;
    use skiff_agent::runtime::Credentials;

    let fake = fake_with_images();
    let wanted = Credentials {
        username: "u".into(),
        password: "p".into(),
    };
    fake.with(|s| {
        s.private
            .insert("127.0.0.1:5999/private:1".into(), wanted.clone())
    });
    let r = start(fake, "secrets").await;
    let config = json!({"auths": {
        "other.example.com": {"username": "x", "password": "y"},
        "http://127.0.0.1:5999/v2/": {"username": "u", "password": "p"},
    }});
    let secrets: Api<Secret> = Api::namespaced(r.server.client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "reg"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret created");
    let pod = |name: &str, pull_secrets: serde_json::Value| {
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"imagePullSecrets": pull_secrets,
                     "containers": [{"name": "a", "image": "127.0.0.1:5999/private:1"}]},
        })
    };
    r.create(pod("anonymous", json!([]))).await;
    r.wait_pod("anonymous", "ErrImagePull", |p| {
        matches!(
            waiting_reason(p, "a").as_deref(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    })
    .await;

    r.create(pod(
        "with-secret",
        json!([{"name": "gone"}, {"name": "reg"}]),
    ))
    .await;
    let running = r
        .wait_pod("with-secret", "running with the secret", |p| {
            is_running(p, "a")
        })
        .await;
    let calls = r.fake.with(|s| s.calls.clone());
    assert!(
        calls
            .iter()
            .any(|c| c == "pull 127.0.0.1:5999/private:1 as u"),
        "{calls:?}"
    );
    let events: Api<Event> = Api::namespaced(r.server.client.clone(), "default");
    let warned = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid == running.metadata.uid)
        .find(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
        .expect("a FailedToRetrieveImagePullSecret event");
    assert_eq!(warned.type_.as_deref(), Some("Warning"));
    assert_eq!(
        warned.message.as_deref(),
        Some("Unable to retrieve some image pull secrets (gone); attempting to pull the image may not succeed.")
    );

    // While a failed pull backs off, the secrets are not fetched (nor warned about) again on
    // every look at the pod: once ImagePullBackOff shows, there was still one warning.
    r.create(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "backing-off"},
        "spec": {"imagePullSecrets": [{"name": "gone"}],
                 "containers": [{"name": "a", "image": "nowhere:2"}]},
    }))
    .await;
    let backing_off = r
        .wait_pod("backing-off", "ImagePullBackOff", |p| {
            waiting_reason(p, "a").as_deref() == Some("ImagePullBackOff")
        })
        .await;
    let warnings: Vec<i32> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.uid == backing_off.metadata.uid)
        .filter(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
        .map(|e| e.count.unwrap_or(1))
        .collect();
    assert_eq!(warnings, [1]);
}
