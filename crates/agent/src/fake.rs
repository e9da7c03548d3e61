//! An in-memory [`PodRuntime`] for tests: containers "run" until a test makes them exit, and
//! every call is recorded so tests can check what the worker asked for.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::image::pull::Credentials;

use crate::runtime::{
    CreatedSandbox, ImageRef, PodRuntime, RuntimeFailure, RuntimeResult, RuntimeSandbox,
    RuntimeState,
};

/// What a fake container does when stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeContainer {
    pub pod_uid: String,
    pub sandbox: String,
    pub name: String,
    pub command: Vec<String>,
    pub state: RuntimeState,
}

#[derive(Default, Debug)]
pub struct FakeState {
    /// Images present on the node.
    pub images: BTreeSet<String>,
    /// Images a pull can fetch.
    pub pullable: BTreeSet<String>,
    /// Images a pull can fetch only with these credentials.
    pub private: BTreeMap<String, Credentials>,
    pub sandboxes: BTreeMap<String, Option<String>>,
    pub containers: BTreeMap<String, FakeContainer>,
    /// Every call, in order (`start <id>`, `stop <id> <signal> <grace>`, ...).
    pub calls: Vec<String>,
    /// When set, creating a sandbox fails with this message.
    pub sandbox_error: Option<String>,
    /// Sandboxes that fail verification (as after a reboot).
    pub broken_sandboxes: BTreeSet<String>,
    /// A container whose first command word is this fails to start with this message.
    pub missing_commands: BTreeMap<String, String>,
    next_sandbox: u32,
}

/// The fake runtime.
#[derive(Default, Debug)]
pub struct FakeRuntime {
    pub state: Mutex<FakeState>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    /// Runs `f` on the state (a poisoned lock is taken over: a test already failed).
    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        let mut guard = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    /// Makes the running container `id` exit with `code` now.
    pub fn exit(&self, id: &str, code: i32) {
        self.with(|s| {
            if let Some(c) = s.containers.get_mut(id) {
                let started_at = match c.state {
                    RuntimeState::Running { started_at } => Some(started_at),
                    _ => None,
                };
                c.state = RuntimeState::Exited {
                    exit_code: code,
                    reason: crate::status::terminated_reason(code, false).into(),
                    message: None,
                    started_at,
                    finished_at: Timestamp::now(),
                };
            }
        })
    }

    fn record(&self, call: String) {
        self.with(|s| s.calls.push(call));
    }
}

fn image_ref(image: &str) -> ImageRef {
    ImageRef {
        image: format!("docker.io/library/{image}"),
        image_id: format!("sha256:{:0>64}", image.len()),
        stop_signal: None,
    }
}

impl PodRuntime for FakeRuntime {
    fn find_image(&self, image: &str) -> RuntimeResult<Option<ImageRef>> {
        Ok(self.with(|s| s.images.contains(image).then(|| image_ref(image))))
    }

    fn pull_image(&self, image: &str, credentials: &[Credentials]) -> RuntimeResult<ImageRef> {
        let users: Vec<&str> = credentials.iter().map(|c| c.username.as_str()).collect();
        if users.is_empty() {
            self.record(format!("pull {image}"));
        } else {
            self.record(format!("pull {image} as {}", users.join(",")));
        }
        self.with(|s| {
            if let Some(needed) = s.private.get(image) {
                if credentials.contains(needed) {
                    s.images.insert(image.to_string());
                    return Ok(image_ref(image));
                }
                return Err(RuntimeFailure(format!(
                    "pulling {image}: the registry requires authentication"
                )));
            }
            if s.pullable.contains(image) {
                s.images.insert(image.to_string());
                Ok(image_ref(image))
            } else {
                Err(RuntimeFailure(format!(
                    "pull access denied for {image}, repository does not exist"
                )))
            }
        })
    }

    fn create_sandbox(&self, pod: &Pod) -> RuntimeResult<CreatedSandbox> {
        let uid = pod.metadata.uid.clone();
        self.with(|s| {
            if let Some(message) = s.sandbox_error.clone() {
                s.calls.push("create-sandbox failed".into());
                return Err(RuntimeFailure(message));
            }
            s.next_sandbox += 1;
            let id = format!("sandbox{}", s.next_sandbox);
            s.sandboxes.insert(id.clone(), uid);
            s.calls.push(format!("create-sandbox {id}"));
            Ok(CreatedSandbox {
                id,
                pod_ips: vec![],
            })
        })
    }

    fn remove_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.with(|s| {
            s.calls.push(format!("remove-sandbox {id}"));
            s.sandboxes.remove(id);
        });
        Ok(())
    }

    fn stop_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.with(|s| {
            s.calls.push(format!("stop-sandbox {id}"));
            s.sandboxes.remove(id);
        });
        Ok(())
    }

    fn remove_pod_files(&self, uid: &str) -> RuntimeResult<()> {
        self.with(|s| s.calls.push(format!("remove-pod-files {uid}")));
        Ok(())
    }

    fn list_sandboxes(&self) -> RuntimeResult<Vec<RuntimeSandbox>> {
        Ok(self.with(|s| {
            s.sandboxes
                .iter()
                .map(|(id, uid)| RuntimeSandbox {
                    id: id.clone(),
                    pod_uid: uid.clone(),
                    pod_ips: Vec::new(),
                })
                .collect()
        }))
    }

    fn verify_sandbox(&self, id: &str) -> RuntimeResult<()> {
        self.with(|s| {
            if s.broken_sandboxes.contains(id) {
                Err(RuntimeFailure(format!(
                    "sandbox {id}: net namespace is not mounted"
                )))
            } else {
                Ok(())
            }
        })
    }

    fn start_container(
        &self,
        id: &str,
        pod: &Pod,
        sandbox_id: &str,
        container: &Container,
        _image: &ImageRef,
    ) -> RuntimeResult<()> {
        let command = container.command.clone().unwrap_or_default();
        self.with(|s| {
            s.calls.push(format!("start {id}"));
            if !s.sandboxes.contains_key(sandbox_id) {
                return Err(RuntimeFailure(format!("no sandbox {sandbox_id}")));
            }
            if s.containers.contains_key(id) {
                return Err(RuntimeFailure(format!("container {id} already exists")));
            }
            let failure = command
                .first()
                .and_then(|c| s.missing_commands.get(c).cloned());
            let now = Timestamp::now();
            let state = match &failure {
                Some(message) => RuntimeState::Exited {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message.clone()),
                    started_at: None,
                    finished_at: now,
                },
                None => RuntimeState::Running { started_at: now },
            };
            s.containers.insert(
                id.to_string(),
                FakeContainer {
                    pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                    sandbox: sandbox_id.to_string(),
                    name: container.name.clone(),
                    command,
                    state,
                },
            );
            match failure {
                Some(message) => Err(RuntimeFailure(message)),
                None => Ok(()),
            }
        })
    }

    fn container_state(&self, id: &str) -> RuntimeResult<Option<RuntimeState>> {
        Ok(self.with(|s| s.containers.get(id).map(|c| c.state.clone())))
    }

    fn stop_container(&self, id: &str, signal: i32, grace: Duration) -> RuntimeResult<()> {
        self.record(format!("stop {id} {signal} {}", grace.as_secs()));
        let running = self.with(|s| {
            s.containers
                .get(id)
                .is_some_and(|c| matches!(c.state, RuntimeState::Running { .. }))
        });
        if running {
            self.exit(id, 128 + signal);
        }
        Ok(())
    }

    fn remove_container(&self, id: &str) -> RuntimeResult<()> {
        self.with(|s| {
            s.calls.push(format!("remove {id}"));
            s.containers.remove(id);
        });
        Ok(())
    }

    fn list_containers(&self) -> RuntimeResult<Vec<String>> {
        Ok(self.with(|s| s.containers.keys().cloned().collect()))
    }
}
