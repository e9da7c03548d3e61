//! The kinds the server stores and what each one needs from this crate: defaults, validation,
//! and how a write to the main resource or to `/status` treats spec and status.
//! OWNER: helper "api-validation". Signatures are the contract with the API server; keep them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::validation::FieldError;

/// A stored API kind.
pub trait ApiKind:
    k8s_openapi::Resource
    + k8s_openapi::Metadata<Ty = ObjectMeta>
    + serde::Serialize
    + serde::de::DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Whether the name must be a DNS-1123 label (namespaces) rather than a subdomain.
    const NAME_IS_LABEL: bool = false;

    /// Fills in defaults (create and update).
    fn set_defaults(&mut self) {}

    /// Validation of a new object, metadata included.
    fn validate_create(&self) -> Vec<FieldError>;

    /// Validation of an update, metadata included; `old` is the stored object.
    fn validate_update(&self, old: &Self) -> Vec<FieldError>;

    /// A write to the main resource keeps the stored status (for kinds with a status).
    fn keep_status_of(&mut self, old: &Self) {
        let _ = old;
    }

    /// A write to `/status` keeps the stored spec and metadata other than labels/annotations.
    fn keep_spec_of(&mut self, old: &Self) {
        let _ = old;
    }

    /// The spec as JSON, to tell whether `metadata.generation` must go up; None for kinds
    /// without a spec.
    fn spec_json(&self) -> Option<serde_json::Value> {
        None
    }
}
