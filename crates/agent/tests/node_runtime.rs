//! The real node runtime's sandbox and image parts, as root: a pod's sandbox is created,
//! listed with its pod's uid and removed with the pod's directory; an image that is not on the
//! node is reported absent.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use skiff_agent::node_runtime::{NodeFields, NodeRuntime};
use skiff_agent::runtime::PodRuntime;
use skiff_runtime::container::RuntimeKind;
use skiff_runtime::sandbox::Sandbox;

/// Removes whatever a test left under the data dir's sandboxes, mounts included.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let root = self.0.join("sandboxes");
        if let Ok(ids) = Sandbox::list(&root) {
            for id in ids {
                let _ = Sandbox::remove(&root, &id);
            }
        }
        let _ = Sandbox::unmount_root(&root);
    }
}

fn runtime(dir: &Path) -> NodeRuntime {
    NodeRuntime::open(
        dir,
        PathBuf::from("/nonexistent/skiff"),
        RuntimeKind::Runc,
        NodeFields::default(),
    )
    .expect("runtime opens")
}

#[test]
fn sandbox_lifecycle_through_the_node_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let rt = runtime(dir.path());
    let uid = format!("uid-{}", std::process::id());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {"containers": [{"name": "a", "image": "busybox"}]},
    }))
    .expect("pod");
    let created = rt.create_sandbox(&pod).expect("sandbox created");
    let listed = rt.list_sandboxes().expect("list");
    assert!(
        listed
            .iter()
            .any(|s| s.id == created.id && s.pod_uid.as_deref() == Some(uid.as_str())),
        "{listed:?}"
    );
    let hostname = std::fs::read_to_string(
        Sandbox::open(&dir.path().join("sandboxes"), &created.id)
            .expect("open")
            .expect("exists")
            .hostname_file,
    )
    .expect("hostname file");
    assert_eq!(hostname.trim(), "web");
    let pod_dir = dir.path().join("pods").join(&uid);
    std::fs::create_dir_all(pod_dir.join("volumes/cache")).expect("volume dir");
    rt.remove_sandbox(&created.id).expect("removed");
    assert!(rt.list_sandboxes().expect("list").is_empty());
    assert!(
        !pod_dir.exists(),
        "the pod's directory goes with its sandbox"
    );
    // Removing again is fine.
    rt.remove_sandbox(&created.id).expect("idempotent");
}

#[test]
fn absent_image_is_reported_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    assert_eq!(rt.find_image("busybox:1.36").expect("lookup"), None);
    assert!(rt.find_image("Not A Reference").is_err());
}

#[test]
fn leftovers_of_gone_pods_are_collected_and_live_ones_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(dir.path().to_path_buf());
    let rt = runtime(dir.path());
    let (gone, live) = (
        format!("gone-{}", std::process::id()),
        format!("live-{}", std::process::id()),
    );
    for uid in [&gone, &live] {
        std::fs::create_dir_all(dir.path().join(format!("pods/{uid}/volumes/cache")))
            .expect("pod dir");
        std::fs::create_dir_all(dir.path().join(format!("rootfs/{uid}_0_main/upper")))
            .expect("rootfs dir");
    }
    // A memory-backed emptyDir left mounted.
    let mounted = dir.path().join(format!("pods/{gone}/volumes/cache"));
    rustix::mount::mount(
        "tmpfs",
        &mounted,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .expect("tmpfs");
    let live_set = std::collections::HashSet::from([live.clone()]);
    let result = rt.collect_orphans(&live_set);
    let still_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .contains(&mounted.display().to_string());
    if still_mounted {
        let _ = rustix::mount::unmount(&mounted, rustix::mount::UnmountFlags::DETACH);
    }
    result.expect("collected");
    assert!(!still_mounted, "the volume is unmounted");
    assert!(!dir.path().join(format!("pods/{gone}")).exists());
    assert!(!dir.path().join(format!("rootfs/{gone}_0_main")).exists());
    assert!(dir
        .path()
        .join(format!("pods/{live}/volumes/cache"))
        .exists());
    assert!(dir.path().join(format!("rootfs/{live}_0_main")).exists());
}
