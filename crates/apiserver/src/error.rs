//! API errors and their rendering as Kubernetes `Status` objects.

use serde_json::{json, Value};

/// One cause inside a Status' details.
#[derive(Clone, Debug, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// An error answered to a client as a Kubernetes `Status` with the HTTP code and reason
/// Kubernetes uses for the same situation.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel through every `Result` and most carry no details.
    pub details: Box<Details>,
}

/// The `details` of a Status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    /// The resource, e.g. `pods`.
    pub kind: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    pub causes: Vec<Cause>,
    pub retry_after: Option<u32>,
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Box::default(),
        }
    }

    pub fn with_details(mut self, kind: &str, name: &str) -> Self {
        self.details.kind = Some(kind.to_string());
        self.details.name = Some(name.to_string());
        self
    }

    pub fn with_group(mut self, group: &str) -> Self {
        if !group.is_empty() {
            self.details.group = Some(group.to_string());
        }
        self
    }

    pub fn with_causes(mut self, causes: Vec<Cause>) -> Self {
        self.details.causes = causes;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `pods "x" not found`
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(resource, name)
    }

    /// The path matches nothing the server serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(resource, name)
    }

    /// The optimistic-concurrency failure, worded as Kubernetes words it.
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(resource, name)
    }

    pub fn conflict_message(resource: &str, name: &str, message: impl Into<String>) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": {}",
                message.into()
            ),
        )
        .with_details(resource, name)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }

    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(406, "NotAcceptable", format!("only the following media types are accepted: application/json, application/yaml; got {accept:?}"))
    }

    /// 422 with one cause per field: `Pod "x" is invalid: spec.containers[0].image: Required value`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let joined = if listed.len() == 1 {
            listed[0].clone()
        } else {
            format!("[{}]", listed.join(", "))
        };
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {joined}"),
        )
        .with_details(kind, name)
        .with_group(group)
        .with_causes(causes)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The Status object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        let d = &self.details;
        if let Some(name) = &d.name {
            details.insert("name".into(), json!(name));
        }
        if let Some(group) = &d.group {
            details.insert("group".into(), json!(group));
        }
        if let Some(kind) = &d.kind {
            details.insert("kind".into(), json!(kind));
        }
        if !d.causes.is_empty() {
            let causes: Vec<Value> = d
                .causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details.insert("causes".into(), Value::Array(causes));
        }
        if let Some(seconds) = d.retry_after {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl From<skiff_store::Error> for ApiError {
    fn from(err: skiff_store::Error) -> Self {
        use skiff_store::Error as E;
        match err {
            E::Compacted {
                requested,
                compacted,
            } => ApiError::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            E::FutureRevision { requested, current } => {
                let mut e = ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                );
                e.details.retry_after = Some(1);
                e
            }
            E::Closed => ApiError::unavailable("the storage is shutting down"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_cause() {
        let err = ApiError::invalid(
            "Pod",
            "",
            "x",
            vec![
                Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "spec.a".into(),
                },
                Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: 1".into(),
                    field: "spec.b".into(),
                },
            ],
        );
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Pod \"x\" is invalid: [spec.a: Required value, spec.b: Invalid value: 1]"
        );
        let status = err.to_status();
        assert_eq!(status["details"]["causes"][1]["field"], "spec.b");
        assert_eq!(status["details"]["kind"], "Pod");
    }

    #[test]
    fn not_found_status_has_details() {
        let status = ApiError::not_found("pods", "nope").to_status();
        assert_eq!(status["message"], "pods \"nope\" not found");
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["name"], "nope");
    }
}
