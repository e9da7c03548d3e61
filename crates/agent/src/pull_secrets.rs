//! A pod's `imagePullSecrets`: fetched from its namespace when an image is to be pulled, read
//! into a keyring (`.dockerconfigjson`, or a legacy `.dockercfg`), as kubelet does. Secrets that
//! cannot be fetched are named so the worker can warn (`FailedToRetrieveImagePullSecret`); the
//! pull then goes on with the others, or anonymously.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use skiff_api::kinds::{DOCKERCFG_KEY, DOCKER_CONFIG_JSON_KEY};
use skiff_runtime::image::keyring::Keyring;

/// The keyring of a pod's pull secrets, and the secrets that could not be retrieved.
#[derive(Debug, Default)]
pub struct PullSecrets {
    pub keyring: Keyring,
    pub missing: Vec<String>,
}

impl PullSecrets {
    /// Kubelet's warning for secrets it could not retrieve.
    pub fn missing_message(&self) -> Option<String> {
        (!self.missing.is_empty()).then(|| {
            format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                self.missing.join(", ")
            )
        })
    }
}

/// The names of the pod's pull secrets, in order, without empty or repeated names.
pub fn secret_names(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref());
    for r in refs.into_iter().flatten() {
        if !r.name.is_empty() && !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    names
}

/// Fetches the pod's pull secrets (one GET each: a node may read only the secrets its pods use,
/// one by one) and reads them into a keyring.
pub async fn fetch(client: &kube::Client, pod: &Pod) -> PullSecrets {
    let mut out = PullSecrets::default();
    let names = secret_names(pod);
    if names.is_empty() {
        return out;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in names {
        match api.get(&name).await {
            Ok(secret) => add_secret(&mut out.keyring, &secret),
            Err(e) => {
                tracing::warn!(namespace, secret = %name, error = %e, "cannot retrieve an image pull secret");
                out.missing.push(name);
            }
        }
    }
    out
}

/// Adds what a secret holds for registries: its `.dockerconfigjson` or `.dockercfg` entry,
/// whatever its type says (kubelet reads either key). One that cannot be read is logged and
/// left out, as the API server already refuses such content in the typed secrets.
pub fn add_secret(keyring: &mut Keyring, secret: &Secret) {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let Some(data) = &secret.data else {
        return;
    };
    let read = if let Some(json) = data.get(DOCKER_CONFIG_JSON_KEY) {
        keyring.add_config_json(&json.0)
    } else if let Some(cfg) = data.get(DOCKERCFG_KEY) {
        keyring.add_dockercfg(&cfg.0)
    } else {
        tracing::debug!(
            secret = name,
            "an image pull secret without registry credentials"
        );
        return;
    };
    if let Err(e) = read {
        tracing::warn!(secret = name, error = %e, "an image pull secret's docker config cannot be read");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_runtime::image::reference::Reference;

    #[test]
    fn names_keep_order_without_repeats() {
        let pod: Pod = serde_json::from_value(json!({
            "spec": {"containers": [], "imagePullSecrets": [{"name": "a"}, {"name": ""}, {"name": "b"}, {"name": "a"}]}
        }))
        .unwrap();
        assert_eq!(secret_names(&pod), ["a", "b"]);
        assert!(secret_names(&Pod::default()).is_empty());
    }

    #[test]
    fn both_secret_formats_give_credentials() {
        let json_secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "new"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64(&json!({"auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}}).to_string())}
        }))
        .unwrap();
        let cfg_secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "old"},
            "type": "kubernetes.io/dockercfg",
            "data": {".dockercfg": base64(&json!({"https://quay.io": {"auth": base64("q:w")}}).to_string())}
        }))
        .unwrap();
        let opaque: Secret = serde_json::from_value(json!({
            "metadata": {"name": "opaque"}, "data": {"x": "eA=="}
        }))
        .unwrap();
        let mut keyring = Keyring::new();
        for s in [&json_secret, &cfg_secret, &opaque] {
            add_secret(&mut keyring, s);
        }
        let found = keyring.lookup(&Reference::parse("127.0.0.1:5000/app:1").unwrap());
        assert_eq!(found[0].username, "u");
        let found = keyring.lookup(&Reference::parse("quay.io/org/app").unwrap());
        assert_eq!(found[0].password, "w");
        let missing = PullSecrets {
            missing: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert_eq!(
            missing.missing_message().unwrap(),
            "Unable to retrieve some image pull secrets (a, b); attempting to pull the image may not succeed."
        );
    }

    fn base64(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}
