//! The OCI runtime spec (config.json) of one container: the image's config merged with the pod's
//! container as Kubernetes merges them, the pod sandbox's namespaces joined, and the mounts,
//! devices, capabilities and cgroup settings containerd gives a container. Pure: no I/O except
//! reading the rootfs's /etc/passwd and /etc/group to resolve user names.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use oci_spec::runtime::Spec;

use super::Result;

/// The sandbox's namespaces, as bind-mounted nsfs files the container joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacePaths {
    pub net: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    /// Only when the pod shares its PID namespace (shareProcessNamespace).
    pub pid: Option<PathBuf>,
}

/// Files and directories the pod's sandbox provides to each of its containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFiles {
    /// A tmpfs directory bound at /dev/shm (shared by the pod's containers).
    pub shm: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub hostname: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// One volume mount, resolved to a host path (an emptyDir's directory, a hostPath, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountSpec {
    pub destination: PathBuf,
    pub source: PathBuf,
    pub read_only: bool,
}

/// Values the pod object does not hold (yet) that env `fieldRef`s and `resourceFieldRef`s need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldValues {
    pub node_name: String,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    /// Node allocatable CPU in millicores: what `limits.cpu` means when the container has none.
    pub node_allocatable_millicpu: i64,
    /// Node allocatable memory in bytes: what `limits.memory` means when the container has none.
    pub node_allocatable_memory: i64,
}

/// Everything [`build_spec`] needs for one container.
#[derive(Clone, Debug)]
pub struct ContainerSpecInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    /// The OCI image configuration (the config blob: `{"config": {"Env": ..., ...}, ...}`).
    pub image_config: &'a serde_json::Value,
    /// The container's root filesystem (mounted overlay), absolute.
    pub rootfs: &'a Path,
    pub namespaces: NamespacePaths,
    pub pod_files: PodFiles,
    pub mounts: Vec<MountSpec>,
    /// The host file bound at the container's terminationMessagePath
    /// ([`super::ContainerManager::termination_log_path`]).
    pub termination_log: Option<PathBuf>,
    pub fields: FieldValues,
    /// The container's cgroup is `<cgroup_parent>/<container_id>` (cgroupfs driver), e.g.
    /// `/skiff/pod<uid>`.
    pub cgroup_parent: String,
    pub container_id: String,
}

/// The OCI runtime spec of a container.
pub fn build_spec(input: &ContainerSpecInput) -> Result<Spec> {
    let _ = input;
    todo!("build_spec")
}
