//! `imagePullPolicy` as the node agent applies it: what to do for a container's image, and the
//! waiting reasons and back-off Kubernetes reports.
//! OWNER: helper "image-pull". Signatures are the contract; keep them.

use std::time::Duration;

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
pub fn decide(policy: &str, image: &str, present: bool) -> PullDecision {
    let _ = (policy, image, present);
    todo!("image-pull helper")
}

/// Kubernetes' image pull back-off: 10 s doubling to 300 s after `failures` failed pulls.
pub fn backoff(failures: u32) -> Duration {
    let _ = failures;
    todo!("image-pull helper")
}
