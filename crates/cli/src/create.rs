//! `kubectl create -f`: each object POSTed with strict field validation, `pod/x created` per
//! object, server errors named by their file as kubectl names them.

use http::Method;

use crate::apply::DryRun;
use crate::client::{self, ApiClient, ACCEPT_JSON};
use crate::get::{encode, finish};
use crate::manifest::{self, Object};
use crate::{Error, Flags, Result};

pub async fn run(flags: &Flags) -> Result<()> {
    if let Some((what, names)) = flags.args.split_first() {
        if what == "namespace" || what == "ns" {
            return create_namespace(flags, names).await;
        }
        if what == "secret" {
            return create_secret(flags, names).await;
        }
        return Err(Error::Message(format!(
            "Unexpected args: [{}]\nSee 'kubectl create -h' for help and examples",
            flags.args.join(" ")
        )));
    }
    if flags.filenames.is_empty() {
        return Err(Error::Message("must specify one of -f and -k".to_owned()));
    }
    let dry_run = DryRun::parse(flags)?;
    let objects = manifest::read(&flags.filenames, flags.recursive)?;
    let api = ApiClient::connect(flags).await?;
    let mut errors = Vec::new();
    for object in objects {
        match create(&api, flags, object, dry_run).await {
            Ok(line) => println!("{line}"),
            Err(err) => errors.push(err),
        }
    }
    finish(errors)
}

/// The namespace an object goes to: its own, unless `-n` names another (an error, as in kubectl).
pub(crate) fn target_namespace(api: &ApiClient, flags: &Flags, object: &Object) -> Result<String> {
    match (object.namespace(), flags.namespace.as_deref()) {
        (Some(own), Some(flag)) if own != flag => Err(Error::Message(format!(
            "the namespace from the provided object \"{own}\" does not match the namespace \
             \"{flag}\". You must pass '--namespace={own}' to perform this operation."
        ))),
        (Some(own), _) => Ok(own.to_owned()),
        (None, _) => Ok(api.namespace().to_owned()),
    }
}

/// kubectl's AddSourceToErr: the server's message prefixed with the operation and the file.
pub(crate) fn with_source(err: Error, operation: &str, source: &str) -> Error {
    match err {
        Error::Api(mut api) if api.reason != "Invalid" && api.reason != "Unauthorized" => {
            api.message = format!("error when {operation} \"{source}\": {}", api.message);
            Error::Api(api)
        }
        other => other,
    }
}

/// Sends `body` (the manifest's object, or what apply made of it) to `uri` with `method`
/// (POST, PUT); the server's refusal points at the field of the manifest it names.
pub(crate) async fn send_object(
    api: &ApiClient,
    method: Method,
    uri: &str,
    body: &serde_json::Value,
    object: &Object,
) -> Result<Vec<u8>> {
    let encoded = serde_json::to_vec(body)
        .map_err(|err| Error::Message(format!("cannot encode {}: {err}", object.source)))?;
    let verb = method.as_str().to_ascii_lowercase();
    api.send(
        method,
        uri,
        ACCEPT_JSON,
        Some(encoded),
        (&verb, object.resource.plural),
    )
    .await
    .map_err(|err| manifest::point_at_field(err, object))
}

async fn create(
    api: &ApiClient,
    flags: &Flags,
    mut object: Object,
    dry_run: DryRun,
) -> Result<String> {
    let resource = object.resource;
    let namespace = target_namespace(api, flags, &object)?;
    if resource.namespaced {
        if let Some(metadata) = object.value["metadata"].as_object_mut() {
            metadata.insert("namespace".to_owned(), namespace.clone().into());
        }
    }
    if dry_run == DryRun::Client {
        return Ok(dry_run.line(flags, resource.singular, object.name(), "created"));
    }
    let query = dry_run.query(flags, "kubectl-create");
    let uri = format!("{}{query}", resource.collection_path(Some(&namespace)));
    let created = send_object(api, Method::POST, &uri, &object.value, &object)
        .await
        .and_then(|bytes| client::parse(&bytes, &uri))
        .map_err(|err| with_source(err, "creating", &object.source))?;
    let name = created["metadata"]["name"]
        .as_str()
        .unwrap_or(object.name());
    Ok(dry_run.line(flags, resource.singular, name, "created"))
}

/// `kubectl create namespace NAME`.
async fn create_namespace(flags: &Flags, names: &[String]) -> Result<()> {
    let [name] = names else {
        return Err(Error::Message(format!(
            "exactly one NAME is required, got {}\nSee 'kubectl create namespace -h' for help \
             and examples",
            names.len()
        )));
    };
    let api = ApiClient::connect(flags).await?;
    let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": name}, "spec": {}, "status": {}});
    let query = encode(&[("fieldManager".to_owned(), "kubectl-create".to_owned())]);
    let uri = format!("/api/v1/namespaces{query}");
    let body = serde_json::to_vec(&body)
        .map_err(|err| Error::Message(format!("cannot encode the namespace: {err}")))?;
    api.send(
        Method::POST,
        &uri,
        ACCEPT_JSON,
        Some(body),
        ("post", "namespaces"),
    )
    .await?;
    println!("namespace/{name} created");
    Ok(())
}

/// Docker Hub's key in docker configs, kubectl's default `--docker-server`.
const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// base64 of `bytes`, as JSON carries Secret data (k8s-openapi's ByteString encodes it).
fn base64_of(bytes: &[u8]) -> String {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec()))
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The `.dockerconfigjson` kubectl writes for one registry login, byte for byte: Go's field
/// order (username, password, email if given, auth).
pub(crate) fn docker_config_json(
    server: &str,
    username: &str,
    password: &str,
    email: Option<&str>,
) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned());
    let email = email
        .filter(|e| !e.is_empty())
        .map(|e| format!("\"email\":{},", quote(e)))
        .unwrap_or_default();
    let auth = base64_of(format!("{username}:{password}").as_bytes());
    format!(
        "{{\"auths\":{{{}:{{\"username\":{},\"password\":{},{email}\"auth\":{}}}}}}}",
        quote(server),
        quote(username),
        quote(password),
        quote(&auth)
    )
}

/// The Secret `kubectl create secret docker-registry|generic NAME ...` makes.
fn secret_from_flags(flags: &Flags, names: &[String]) -> Result<(String, serde_json::Value)> {
    let usage = |sub: &str| format!("See 'kubectl create secret {sub} -h' for help and examples");
    let (sub, rest) = match names.split_first() {
        Some((sub, rest)) if ["docker-registry", "generic", "tls"].contains(&sub.as_str()) => {
            (sub.as_str(), rest)
        }
        Some((other, _)) => {
            return Err(Error::Message(format!(
                "unknown secret type {other:?}: use docker-registry, generic or tls\nSee \
                 'kubectl create secret -h' for help and examples"
            )))
        }
        None => {
            return Err(Error::Message(
                "create secret needs a type: docker-registry, generic or tls\nSee 'kubectl \
                 create secret -h' for help and examples"
                    .to_owned(),
            ))
        }
    };
    let [name] = rest else {
        return Err(Error::Message(format!(
            "exactly one NAME is required, got {}\n{}",
            rest.len(),
            usage(sub)
        )));
    };
    let mut data = serde_json::Map::new();
    let secret_type = if sub == "docker-registry" {
        let s = &flags.secret;
        let server = s.docker_server.as_deref().unwrap_or(DOCKER_HUB_SERVER);
        let (Some(username), Some(password)) = (
            s.docker_username.as_deref().filter(|u| !u.is_empty()),
            s.docker_password.as_deref().filter(|p| !p.is_empty()),
        ) else {
            return Err(Error::Message(
                "either --from-file or the combination of --docker-username, --docker-password \
                 and --docker-server is required"
                    .to_owned(),
            ));
        };
        let config = docker_config_json(server, username, password, s.docker_email.as_deref());
        data.insert(
            ".dockerconfigjson".to_owned(),
            base64_of(config.as_bytes()).into(),
        );
        "kubernetes.io/dockerconfigjson".to_owned()
    } else if sub == "tls" {
        let s = &flags.secret;
        let (Some(cert), Some(key)) = (
            s.cert.as_deref().filter(|c| !c.is_empty()),
            s.key.as_deref().filter(|k| !k.is_empty()),
        ) else {
            return Err(Error::Message(format!(
                "both --cert and --key are required\n{}",
                usage(sub)
            )));
        };
        let (cert, key) = (read_source(cert)?, read_source(key)?);
        check_key_pair(&cert, &key)?;
        data.insert("tls.crt".to_owned(), base64_of(&cert).into());
        data.insert("tls.key".to_owned(), base64_of(&key).into());
        "kubernetes.io/tls".to_owned()
    } else {
        let mut add = |key: &str, value: &[u8]| -> Result<()> {
            if !valid_config_key(key) {
                return Err(Error::Message(format!(
                    "{key:?} is not a valid key name for a Secret: a valid config key must \
                     consist of alphanumeric characters, '-', '_' or '.'"
                )));
            }
            if data.contains_key(key) {
                return Err(Error::Message(format!(
                    "cannot add key {key}, another key by that name already exists in Data \
                     for Secret \"{name}\""
                )));
            }
            data.insert(key.to_owned(), base64_of(value).into());
            Ok(())
        };
        for source in &flags.secret.from_file {
            for (key, value) in file_sources(source)? {
                add(&key, &value)?;
            }
        }
        for path in &flags.secret.from_env_file {
            for (key, value) in env_file(path)? {
                add(&key, value.as_bytes())?;
            }
        }
        for literal in &flags.secret.from_literal {
            let Some((key, value)) = literal.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(Error::Message(format!(
                    "invalid literal source {literal}, expected key=value"
                )));
            };
            add(key, value.as_bytes())?;
        }
        flags
            .patch_type
            .clone()
            .unwrap_or_else(|| "Opaque".to_owned())
    };
    let secret = serde_json::json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": name},
        "data": data,
        "type": secret_type,
    });
    Ok((name.clone(), secret))
}

/// The bytes of file `path`, or kubectl's words when it cannot be read.
fn read_source(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|err| Error::Message(format!("error reading {path}: {}", io_words(&err))))
}

/// An I/O error without Rust's `(os error N)`, as Go prints it.
fn io_words(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_lowercase(),
        None => text,
    }
}

/// A Secret's data key: letters, digits, `-`, `_`, `.`; not `.` or `..`; at most 253.
fn valid_config_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The keys and contents `--from-file=[key=]path` gives: the file under its base name (or the
/// key given), or every regular file of a directory under its name.
fn file_sources(source: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let (key, path) = match source.split_once('=') {
        Some((key, path)) if !key.is_empty() && !path.is_empty() => (Some(key), path),
        Some(_) => {
            return Err(Error::Message(format!(
                "key names or file paths cannot be empty: {source:?}"
            )))
        }
        None => (None, source),
    };
    let meta = std::fs::metadata(path)
        .map_err(|err| Error::Message(format!("error reading {path}: {}", io_words(&err))))?;
    if !meta.is_dir() {
        let key = match key {
            Some(key) => key.to_owned(),
            None => std::path::Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        return Ok(vec![(key, read_source(path)?)]);
    }
    if key.is_some() {
        return Err(Error::Message(format!(
            "cannot give a key name for a directory path: {source:?}"
        )));
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|err| Error::Message(format!("error listing {path}: {}", io_words(&err))))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut found = Vec::new();
    for entry in entries {
        let key = entry
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // A file whose name is not a valid key is refused by the caller, as kubectl does.
        found.push((key, read_source(&entry.to_string_lossy())?));
    }
    Ok(found)
}

/// The `KEY=VALUE` lines of an env file (blank lines and `#` comments skipped; a bare `KEY`
/// takes the value from the environment, as kubectl does).
fn env_file(path: &str) -> Result<Vec<(String, String)>> {
    let text = String::from_utf8(read_source(path)?)
        .map_err(|_| Error::Message(format!("{path}: the env file is not UTF-8")))?;
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (
                line.trim_end().to_owned(),
                std::env::var(line.trim_end()).unwrap_or_default(),
            ),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(Error::Message(format!(
                "{path}:{}: {key:?} is not a valid variable name",
                n + 1
            )));
        }
        found.push((key, value));
    }
    Ok(found)
}

/// kubectl refuses a certificate and key that are not PEM of the expected kinds.
fn check_key_pair(cert: &[u8], key: &[u8]) -> Result<()> {
    let cert = String::from_utf8_lossy(cert);
    let key = String::from_utf8_lossy(key);
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Message(
            "failed to load key pair tls: failed to find any PEM data in certificate input"
                .to_owned(),
        ));
    }
    if !(key.contains("-----BEGIN") && key.contains("PRIVATE KEY-----")) {
        return Err(Error::Message(
            "failed to load key pair tls: failed to find any PEM data in key input".to_owned(),
        ));
    }
    Ok(())
}

/// `kubectl create secret docker-registry NAME --docker-server=S --docker-username=U
/// --docker-password=P [--docker-email=E]`, `kubectl create secret generic NAME
/// [--from-literal=key=value]... [--from-file=[key=]path]... [--from-env-file=path]...
/// [--type=T]` and `kubectl create secret tls NAME --cert=FILE --key=FILE`.
async fn create_secret(flags: &Flags, names: &[String]) -> Result<()> {
    let (name, secret) = secret_from_flags(flags, names)?;
    let dry_run = DryRun::parse(flags)?;
    if dry_run == DryRun::Client {
        println!("{}", dry_run.line(flags, "secret", &name, "created"));
        return Ok(());
    }
    let api = ApiClient::connect(flags).await?;
    let namespace = api.namespace().to_owned();
    let query = dry_run.query(flags, "kubectl-create");
    let uri = format!("/api/v1/namespaces/{namespace}/secrets{query}");
    let body = serde_json::to_vec(&secret)
        .map_err(|err| Error::Message(format!("cannot encode the secret: {err}")))?;
    api.send(
        Method::POST,
        &uri,
        ACCEPT_JSON,
        Some(body),
        ("post", "secrets"),
    )
    .await?;
    println!("{}", dry_run.line(flags, "secret", &name, "created"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Flags::parse(&args).unwrap_or_else(|(e, _)| panic!("{e}"))
    }

    #[test]
    fn docker_registry_secrets_hold_what_kubectl_writes() {
        let f = flags(&[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=127.0.0.1:5000",
            "--docker-username=u",
            "--docker-password",
            "p\"w",
        ]);
        let (name, secret) = secret_from_flags(&f, &f.args[1..]).expect("a secret");
        assert_eq!(name, "reg");
        assert_eq!(secret["type"], "kubernetes.io/dockerconfigjson");
        assert_eq!(
            docker_config_json("127.0.0.1:5000", "u", "p\"w", None),
            r#"{"auths":{"127.0.0.1:5000":{"username":"u","password":"p\"w","auth":"dTpwInc="}}}"#
        );
        assert_eq!(
            secret["data"][".dockerconfigjson"],
            base64_of(docker_config_json("127.0.0.1:5000", "u", "p\"w", None).as_bytes())
        );
        let no_password = flags(&[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-username=u",
        ]);
        assert!(secret_from_flags(&no_password, &no_password.args[1..]).is_err());
    }

    #[test]
    fn generic_secrets_from_literals() {
        let f = flags(&[
            "create",
            "secret",
            "generic",
            "app",
            "--from-literal=user=alice",
            "--from-literal=pw=a=b",
        ]);
        let (_, secret) = secret_from_flags(&f, &f.args[1..]).expect("a secret");
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(secret["data"]["user"], "YWxpY2U=");
        assert_eq!(secret["data"]["pw"], "YT1i");
        let twice = flags(&[
            "create",
            "secret",
            "generic",
            "app",
            "--from-literal=a=1",
            "--from-literal=a=2",
        ]);
        assert!(secret_from_flags(&twice, &twice.args[1..]).is_err());
        let nameless = flags(&["create", "secret", "generic"]);
        assert!(secret_from_flags(&nameless, &nameless.args[1..]).is_err());
    }
}
