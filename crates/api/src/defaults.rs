//! Defaulting as Kubernetes does it, applied before validation on create and update.
//! OWNER: helper "api-validation". Signatures are the contract with the API server; keep them.

use k8s_openapi::api::core::v1::Pod;

/// Pod defaults: restartPolicy Always, terminationGracePeriodSeconds 30, dnsPolicy ClusterFirst,
/// schedulerName default-scheduler, securityContext {}, enableServiceLinks true, priority 0,
/// imagePullPolicy (Always for `:latest` or no tag, IfNotPresent otherwise),
/// terminationMessagePath/Policy, port protocol TCP, status.phase Pending, ...
pub fn pod(pod: &mut Pod) {
    let _ = pod;
    todo!("api-validation helper")
}
