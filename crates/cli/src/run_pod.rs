//! `kubectl run NAME --image=IMAGE [--restart=...] [--env=K=V]... [--port=P] [--labels=...]
//! [--command] [-i] [-t] [--rm] [--dry-run=client|server] [-o yaml|json] -- [ARGS...]`: the pod
//! kubectl would create, created; with `-i`, attached once it runs (its logs if it already
//! ended), its exit code awaited for `--restart=Never|OnFailure`, and with `--rm` deleted.

use std::time::Duration;

use http::Method;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::client::ACCEPT_JSON;
use crate::pods::{self, encode};
use crate::{printer, ApiClient, Error, Flags, Result};

/// kubectl's `--pod-running-timeout` default.
const POD_RUNNING_TIMEOUT: Duration = Duration::from_secs(60);

fn usage(message: &str) -> Error {
    Error::Message(format!(
        "{message}\nSee 'kubectl run -h' for help and examples"
    ))
}

pub async fn run(flags: &Flags) -> Result<()> {
    let stream = &flags.stream;
    let Some(image) = stream.image.as_deref().filter(|i| !i.is_empty()) else {
        return Err(Error::Message("required flag(s) \"image\" not set".into()));
    };
    let name = match (flags.args.first(), flags.args_before_dash) {
        (Some(name), at) if at != Some(0) => name.clone(),
        _ => return Err(usage("NAME is required for run")),
    };
    let words = &flags.args[1..];
    if stream.tty && !stream.stdin {
        return Err(usage(
            "-i/--stdin is required for containers with -t/--tty=true",
        ));
    }
    let dry_run = match stream.dry_run.as_deref() {
        None | Some("none") | Some("false") => None,
        Some("client") | Some("true") | Some("") => Some("client"),
        Some("server") => Some("server"),
        Some(other) => {
            return Err(Error::Message(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            )))
        }
    };
    let attach = stream.stdin;
    match stream.image_pull_policy.as_deref() {
        None | Some("" | "Always" | "IfNotPresent" | "Never") => {}
        Some(other) => {
            return Err(Error::Message(format!(
                "invalid image pull policy: {other}"
            )))
        }
    }
    if dry_run.is_some() && (attach || stream.tty) {
        return Err(usage(
            "--dry-run=[server|client] can't be used with attached containers options \
             (--attach, --stdin, or --tty)",
        ));
    }
    let restart = match stream.restart.as_deref() {
        None | Some("") if stream.stdin => "OnFailure",
        None | Some("") => "Always",
        Some(policy @ ("Always" | "OnFailure" | "Never")) => policy,
        Some(other) => return Err(usage(&format!("invalid restart policy: {other}"))),
    };
    if !attach && stream.rm {
        return Err(usage("--rm should only be used for attached containers"));
    }
    let pod = pod_object(&name, image, restart, words, flags)?;

    if dry_run == Some("client") {
        return print(&pod, flags, " (dry run)");
    }
    let pod = serde_json::to_value(&pod)
        .map_err(|err| Error::Message(format!("cannot encode the pod: {err}")))?;
    let api = ApiClient::connect(flags).await?;
    let mut uri = format!(
        "{}?fieldManager=kubectl-run",
        pods::pod_path(&api, "", "").trim_end_matches('/')
    );
    if dry_run == Some("server") {
        uri.push_str("&dryRun=All");
    }
    let body = serde_json::to_vec(&pod)
        .map_err(|err| Error::Message(format!("cannot encode the pod: {err}")))?;
    let created = api
        .send(
            Method::POST,
            &uri,
            ACCEPT_JSON,
            Some(body),
            ("create", "pods"),
        )
        .await?;
    let created = crate::client::parse(&created, &uri)?;
    if !attach {
        let suffix = if dry_run.is_some() {
            " (server dry run)"
        } else {
            ""
        };
        return print_value(&created, flags, suffix);
    }
    let result = attach_and_wait(&api, &name, restart, flags).await;
    if stream.rm {
        let mut delete = flags.clone();
        delete.verb = Some("delete".into());
        delete.args = vec!["pod".into(), name.clone()];
        delete.args_before_dash = None;
        delete.output = None;
        delete.stream = Default::default();
        crate::delete::run(&delete).await?;
    }
    result
}

/// The pod of kubectl's run generator, its fields in the Go structs' order (`-o json` prints
/// them in that order).
#[derive(Debug, Serialize)]
struct GeneratedPod {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Metadata,
    spec: Spec,
    status: Map<String, Value>,
}

#[derive(Debug, Serialize)]
struct Metadata {
    name: String,
    labels: Map<String, Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    containers: Vec<Container>,
    restart_policy: String,
    dns_policy: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<Value>,
    resources: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdin: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stdin_once: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tty: bool,
}

/// The pod of kubectl's run generator.
fn pod_object(
    name: &str,
    image: &str,
    restart: &str,
    words: &[String],
    flags: &Flags,
) -> Result<GeneratedPod> {
    let stream = &flags.stream;
    let mut labels = Map::new();
    match stream.labels.as_deref() {
        None | Some("") => {
            labels.insert("run".into(), name.into());
        }
        Some(list) => {
            for pair in list.split(',') {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(Error::Message(format!("invalid label spec: {pair}")));
                };
                labels.insert(key.into(), value.into());
            }
        }
    }
    let (command, args) = match stream.command {
        true => (words.to_vec(), Vec::new()),
        false => (Vec::new(), words.to_vec()),
    };
    let mut env = Vec::new();
    for pair in &stream.env {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::Message(format!("invalid env: {pair}")));
        };
        env.push(json!({"name": key, "value": value}));
    }
    let mut ports = Vec::new();
    if let Some(port) = stream.port.as_deref().filter(|p| !p.is_empty()) {
        let port: i32 = port.parse().map_err(|_| {
            Error::Message(format!("strconv.Atoi: parsing \"{port}\": invalid syntax"))
        })?;
        ports.push(json!({"containerPort": port}));
    }
    Ok(GeneratedPod {
        kind: "Pod",
        api_version: "v1",
        metadata: Metadata {
            name: name.to_owned(),
            labels,
        },
        spec: Spec {
            containers: vec![Container {
                name: name.to_owned(),
                image: image.to_owned(),
                command,
                args,
                ports,
                env,
                resources: Map::new(),
                image_pull_policy: stream.image_pull_policy.clone().filter(|p| !p.is_empty()),
                stdin: stream.stdin,
                stdin_once: stream.stdin,
                tty: stream.tty,
            }],
            restart_policy: restart.to_owned(),
            dns_policy: "ClusterFirst",
        },
        status: Map::new(),
    })
}

/// The generated pod as [`print_value`] prints it, `-o json` in the Go structs' order.
fn print(pod: &GeneratedPod, flags: &Flags, suffix: &str) -> Result<()> {
    if flags.output.as_deref() == Some("json") {
        print!("{}", printer::json(pod));
        return Ok(());
    }
    let value = serde_json::to_value(pod)
        .map_err(|err| Error::Message(format!("cannot encode the pod: {err}")))?;
    print_value(&value, flags, suffix)
}

/// `pod/NAME created`, or the object in `-o yaml|json|name`.
fn print_value(pod: &Value, flags: &Flags, suffix: &str) -> Result<()> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    match flags.output.as_deref() {
        None | Some("") => println!("pod/{name} created{suffix}"),
        Some("name") => println!("pod/{name}"),
        Some("yaml") => print!("{}", printer::yaml(pod)),
        Some("json") => print!("{}", printer::json(pod)),
        Some(other) => {
            return Err(Error::Message(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed \
                 formats are: json,name,yaml"
            )))
        }
    }
    Ok(())
}

/// Waits for the pod to run, attaches (or prints its logs if it already ended), then for
/// Never/OnFailure waits for its end and returns its exit code.
async fn attach_and_wait(api: &ApiClient, name: &str, restart: &str, flags: &Flags) -> Result<()> {
    let pod = wait_for(api, name, |pod| {
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        matches!(phase, "Succeeded" | "Failed") || (phase == "Running" && ready)
    })
    .await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        print_logs(api, name).await?;
    } else {
        let mut attach = flags.clone();
        attach.stream.container = None;
        attach.stream.quiet = flags.stream.quiet;
        if let Err(err) = crate::attach::attach(api, &pod, &attach).await {
            if matches!(err, Error::Exited { .. } | Error::PodExited { .. }) {
                return Err(err);
            }
            crate::report(&format!(
                "warning: couldn't attach to pod/{name}, falling back to streaming logs: {}",
                err.render().trim_start_matches("error: ")
            ));
            print_logs(api, name).await?;
        }
    }
    if restart == "Always" {
        return Ok(());
    }
    let pod = wait_for(api, name, |pod| {
        let phase = pod["status"]["phase"].as_str().unwrap_or_default();
        phase == "Succeeded" || (restart == "Never" && phase == "Failed")
    })
    .await?;
    let namespace = api.namespace();
    match pod["status"]["phase"].as_str().unwrap_or_default() {
        "Succeeded" => Ok(()),
        "Failed" => {
            let terminated = &pod["status"]["containerStatuses"][0]["state"]["terminated"];
            let code = terminated["exitCode"].as_i64().unwrap_or(0);
            if code == 0 {
                return Err(Error::Message(format!(
                    "pod {namespace}/{name} failed with unknown exit code"
                )));
            }
            Err(Error::PodExited {
                code: u8::try_from(code).unwrap_or(1),
                message: format!(
                    "pod {namespace}/{name} terminated ({})\n{}",
                    terminated["reason"].as_str().unwrap_or_default(),
                    terminated["message"].as_str().unwrap_or_default()
                ),
            })
        }
        phase => Err(Error::Message(format!(
            "pod {namespace}/{name} left in phase {phase}"
        ))),
    }
}

/// The pod once `done` holds for it (a watch from its current state), within
/// [`POD_RUNNING_TIMEOUT`].
async fn wait_for(api: &ApiClient, name: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let pod = pods::get(api, name).await?;
    if done(&pod) {
        return Ok(pod);
    }
    let version = pod["metadata"]["resourceVersion"].as_str().unwrap_or("0");
    let uri = format!(
        "{}?watch=true&fieldSelector={}&resourceVersion={}",
        pods::pod_path(api, "", "").trim_end_matches('/'),
        encode(&format!("metadata.name={name}")),
        encode(version)
    );
    let mut seen = None;
    let watched = tokio::time::timeout(
        POD_RUNNING_TIMEOUT,
        api.watch_until(&uri, |event| {
            if event["type"] == "DELETED" {
                return true;
            }
            let found = done(&event["object"]);
            if found {
                seen = Some(event["object"].clone());
            }
            found
        }),
    )
    .await;
    match (watched, seen) {
        (Ok(Ok(_)), Some(pod)) => Ok(pod),
        (Ok(Err(err)), _) => Err(err),
        (Ok(Ok(true)), None) => Err(Error::Message(format!("pods \"{name}\" not found"))),
        _ => Err(Error::Message("timed out waiting for the condition".into())),
    }
}

/// The logs of the pod's (only) container, as `run -i` shows a pod that ended before it could
/// attach.
async fn print_logs(api: &ApiClient, name: &str) -> Result<()> {
    let uri = pods::pod_path(api, name, "/log");
    api.get_stream(&uri, ("get", "pods"), |chunk| {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(chunk)
            .and_then(|()| out.flush())
            .map_err(|err| Error::Message(format!("cannot write the logs: {err}")))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Flags::parse(&args).expect("the arguments parse")
    }

    #[test]
    fn the_pod_is_kubectls_generated_pod() {
        let given = flags(&[
            "run",
            "x",
            "--image=busybox",
            "--env=A=1",
            "--port=80",
            "-it",
        ]);
        let pod =
            pod_object("x", "busybox", "OnFailure", &["sh".into()], &given).expect("a valid pod");
        let value = serde_json::to_value(&pod).expect("a pod encodes");
        assert_eq!(value["metadata"]["labels"], json!({"run": "x"}));
        let container = &value["spec"]["containers"][0];
        assert_eq!(container["args"], json!(["sh"]));
        assert_eq!(container["command"], Value::Null);
        assert_eq!(container["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(container["ports"], json!([{"containerPort": 80}]));
        assert_eq!(
            (
                &container["stdin"],
                &container["stdinOnce"],
                &container["tty"]
            ),
            (&json!(true), &json!(true), &json!(true))
        );
        assert!(printer::json(&pod).starts_with("{\n    \"kind\": \"Pod\",\n    \"apiVersion\""));

        let given = flags(&["run", "x", "--image=b", "--command", "--labels=a=b,c=d"]);
        let pod = pod_object("x", "b", "Always", &["sleep".into()], &given).expect("a pod");
        let value = serde_json::to_value(&pod).expect("a pod encodes");
        assert_eq!(value["metadata"]["labels"], json!({"a": "b", "c": "d"}));
        assert_eq!(value["spec"]["containers"][0]["command"], json!(["sleep"]));
        let bad = flags(&["run", "x", "--image=b", "--labels=oops"]);
        assert!(pod_object("x", "b", "Always", &[], &bad).is_err());
    }
}
