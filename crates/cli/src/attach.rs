//! `kubectl attach (POD | pod/NAME) [-c CONTAINER] [-i] [-t]`: the stdio of a running
//! container's own process over a WebSocket (`v5.channel.k8s.io`), with kubectl's checks,
//! terminal choice and messages. `run -i` attaches through [`attach`] too.

use serde_json::Value;

use crate::channels::{self, Streams};
use crate::pods::{self, encode};
use crate::{ApiClient, Error, Flags, Result};

pub async fn run(flags: &Flags) -> Result<()> {
    let name = match flags.args.as_slice() {
        [resource] => pods::pod_name(resource)?,
        [] => {
            return Err(Error::Message(
                "at least 1 argument is required for attach".into(),
            ))
        }
        // TYPE NAME.
        [kind, name] if matches!(kind.as_str(), "pod" | "pods" | "po") => name.as_str(),
        [kind, _] => {
            return Err(Error::Message(format!(
                "the server doesn't have a resource type \"{kind}\""
            )))
        }
        args => {
            return Err(Error::Message(format!(
                "expected POD, TYPE/NAME, or TYPE NAME, (at most 2 arguments) saw {}: {:?}\nSee \
                 'kubectl attach -h' for help and examples",
                args.len(),
                args
            )))
        }
    };
    let api = ApiClient::connect(flags).await?;
    let pod = pods::get(&api, name).await?;
    attach(&api, &pod, flags).await
}

/// Attaches to `pod` (already fetched) as `kubectl attach` does.
pub(crate) async fn attach(api: &ApiClient, pod: &Value, flags: &Flags) -> Result<()> {
    let stream = &flags.stream;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    pods::refuse_completed(pod, "attach a container in")?;
    let container_name = pods::chosen_container(pod, stream)?;
    let Some(container) = find_container(pod, &container_name) else {
        return Err(Error::Message(format!(
            "cannot attach to the container: container {container_name} not found in pod {name}"
        )));
    };
    let container_tty = container["tty"].as_bool().unwrap_or(false);
    let mut tty = stream.tty;
    if tty && !container_tty {
        tty = false;
        if !stream.quiet {
            crate::report(&format!(
                "error: Unable to use a TTY - container {container_name} did not allocate one"
            ));
        }
    } else if !tty && container_tty {
        // A terminal's output is raw: without one locally it would look wrong.
        tty = true;
    }
    let raw = channels::use_tty(stream.stdin, tty, stream.quiet);
    if !stream.quiet && stream.stdin {
        crate::report(
            "All commands and output from this session will be recorded in container logs, \
             including credentials and sensitive information passed through the command prompt.",
        );
    }
    if !stream.quiet {
        crate::report("If you don't see a command prompt, try pressing enter.");
    }
    let mut query = format!("container={}", encode(&container_name));
    if stream.stdin {
        query.push_str("&stdin=true");
    }
    query.push_str(if tty {
        "&stdout=true&tty=true"
    } else {
        "&stdout=true&stderr=true"
    });
    let uri = format!("{}?{query}", pods::pod_path(api, name, "/attach"));
    let ws = api
        .websocket(&uri, channels::PROTOCOL, ("get", "pods"))
        .await?;
    channels::run(
        ws,
        Streams {
            stdin: stream.stdin,
            tty: raw,
            redraw: true,
        },
    )
    .await?;
    let restart = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    if !stream.quiet && stream.stdin && raw && restart == "Always" {
        println!(
            "Session ended, resume using 'kubectl attach {name} -c {container_name} -i -t' \
             command when the pod is running"
        );
    }
    Ok(())
}

/// The container named `name` among the pod's containers, init and ephemeral containers.
fn find_container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|section| pod["spec"][*section].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
}
