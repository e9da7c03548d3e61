//! Server-side printing: the `meta.k8s.io/v1` Table columns and cells kubectl shows for
//! `kubectl get`, with Kubernetes' column names and cell formats.
//! OWNER: helper "api-select". Signatures are the contract with the API server; keep them.

/// The `columnDefinitions` of a resource's table (`pods`, `namespaces`, `nodes`, `events`, any
/// other: Name, Age). Priority 1 columns are the `-o wide` ones.
pub fn column_definitions(plural: &str) -> serde_json::Value {
    let _ = plural;
    todo!("api-select helper")
}

/// The `cells` of one row for an object (JSON, as stored) at time `now`.
pub fn row_cells(plural: &str, object: &serde_json::Value, now: k8s_openapi::jiff::Timestamp) -> Vec<serde_json::Value> {
    let _ = (plural, object, now);
    todo!("api-select helper")
}

/// Kubernetes' short human duration (`5s`, `3m20s`, `60m`, `2d3h`, `4y`), as in the AGE column.
pub fn human_duration(seconds: i64) -> String {
    let _ = seconds;
    todo!("api-select helper")
}
