//! `imagePullPolicy` as the node agent applies it: what to do for a container's image, and the
//! waiting reasons and back-off Kubernetes reports.

use std::time::Duration;

use super::reference::Reference;
use super::store::ImageRecord;

/// The kubelet's first image pull back-off (`backOffPeriod`).
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's longest image pull back-off (`MaxContainerBackOff`).
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What the agent must do before starting a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullDecision {
    /// The image is present and the policy does not ask to check: use it.
    UseLocal,
    /// Pull (IfNotPresent and missing; Always: resolve the digest, pull if it changed).
    Pull,
    /// `Never` and the image is missing: waiting reason `ErrImageNeverPull` with this message.
    NeverPull { message: String },
}

/// Decides for `policy` (`Always`, `IfNotPresent`, `Never`) given whether the image is present.
///
/// An empty policy is defaulted as the API server would (`Always` for `:latest` or no tag,
/// else `IfNotPresent`); any other unknown policy never pulls, as the kubelet's
/// `shouldPullImage` does.
pub fn decide(policy: &str, image: &str, present: bool) -> PullDecision {
    let policy = match policy {
        "" => default_policy(image),
        p => p,
    };
    match (policy, present) {
        ("Always", _) | ("IfNotPresent", false) => PullDecision::Pull,
        (_, true) => PullDecision::UseLocal,
        (_, false) => PullDecision::NeverPull {
            // The kubelet's message, word for word (Go's %q quoting).
            message: format!(
                "Container image {image:?} is not present with pull policy of {policy}"
            ),
        },
    }
}

/// Kubernetes' default `imagePullPolicy` for `image`: `Always` when it has no tag or `:latest`
/// (and no digest), else `IfNotPresent`.
fn default_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Kubernetes' image pull back-off: 10 s doubling to 300 s after `failures` failed pulls.
/// No failure yet means no wait.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    // 10 s * 2^5 already exceeds the cap, so larger shifts need not be computed.
    let doublings = (failures - 1).min(5);
    (BACKOFF_INITIAL * (1u32 << doublings)).min(BACKOFF_MAX)
}

/// A container status's `image` and `imageID` for a container that runs `image` and asked for
/// `requested`, as containerd's CRI reports them: `image` is the image's first tag
/// (`docker.io/library/busybox:latest`), or the requested reference in full when it has none;
/// `imageID` is its first repo digest (`docker.io/library/busybox@sha256:<manifest>`) or, for
/// an image that never came from a registry, its id (`sha256:<config>`).
pub fn reported_image(image: &ImageRecord, requested: &Reference) -> (String, String) {
    let name = image
        .repo_tags
        .first()
        .cloned()
        .unwrap_or_else(|| requested.to_string());
    let id = image
        .repo_digests
        .first()
        .cloned()
        .unwrap_or_else(|| image.id.to_string());
    (name, id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;

    fn record(tags: &[&str], digests: &[&str]) -> ImageRecord {
        ImageRecord {
            id: Digest::of(b"config"),
            manifest_digest: None,
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: digests.iter().map(|d| d.to_string()).collect(),
            config: serde_json::json!({}),
            layers: Vec::new(),
            size: 0,
            created: None,
        }
    }

    #[test]
    fn reported_image_and_id_as_containerd() {
        let busybox = Reference::parse("busybox").expect("reference");
        let pulled = format!("docker.io/library/busybox@{}", Digest::of(b"manifest"));
        let image = record(&["docker.io/library/busybox:latest"], &[&pulled]);
        assert_eq!(
            reported_image(&image, &busybox),
            (
                "docker.io/library/busybox:latest".to_string(),
                pulled.clone()
            )
        );
        // Imported, never pulled: the id stands in for a repo digest.
        let kubia = Reference::parse("luksa/kubia").expect("reference");
        let image = record(&["docker.io/luksa/kubia:latest"], &[]);
        assert_eq!(
            reported_image(&image, &kubia),
            (
                "docker.io/luksa/kubia:latest".to_string(),
                Digest::of(b"config").to_string()
            )
        );
        // Asked for by digest: the image is reported by its tag.
        let by_digest = Reference::parse(&pulled).expect("reference");
        let image = record(&["docker.io/library/busybox:latest"], &[&pulled]);
        assert_eq!(
            reported_image(&image, &by_digest).0,
            "docker.io/library/busybox:latest"
        );
        // Pulled by digest only, never tagged: the reference asked for.
        let image = record(&[], &[&pulled]);
        assert_eq!(reported_image(&image, &by_digest), (pulled.clone(), pulled));
    }

    #[test]
    fn never_with_a_missing_image_gives_the_kubelet_message() {
        assert_eq!(
            decide("Never", "busybox", false),
            PullDecision::NeverPull {
                message: "Container image \"busybox\" is not present with pull policy of Never"
                    .into()
            }
        );
        assert_eq!(decide("Never", "busybox", true), PullDecision::UseLocal);
    }

    #[test]
    fn if_not_present_and_always() {
        assert_eq!(decide("IfNotPresent", "kubia:1", false), PullDecision::Pull);
        assert_eq!(
            decide("IfNotPresent", "kubia:1", true),
            PullDecision::UseLocal
        );
        assert_eq!(decide("Always", "kubia:1", true), PullDecision::Pull);
        assert_eq!(decide("Always", "kubia:1", false), PullDecision::Pull);
    }

    #[test]
    fn empty_policy_is_defaulted_as_kubernetes_does() {
        assert_eq!(decide("", "busybox", true), PullDecision::Pull);
        assert_eq!(decide("", "busybox:latest", true), PullDecision::Pull);
        assert_eq!(
            decide("", "localhost:5000/busybox", true),
            PullDecision::Pull
        );
        assert_eq!(decide("", "busybox:1.36", true), PullDecision::UseLocal);
        assert_eq!(decide("", "localhost:5000/b:2", false), PullDecision::Pull);
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(decide("", &pinned, true), PullDecision::UseLocal);
    }

    #[test]
    fn unknown_policy_never_pulls() {
        assert!(matches!(
            decide("Sometimes", "busybox", false),
            PullDecision::NeverPull { message } if message.ends_with("pull policy of Sometimes")
        ));
    }

    #[test]
    fn backoff_doubles_from_10s_to_300s() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }
}
