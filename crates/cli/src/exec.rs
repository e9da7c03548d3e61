//! `kubectl exec (POD | pod/NAME) [-c CONTAINER] [-i] [-t] -- COMMAND [args...]`: a command in
//! a running container over a WebSocket (`v5.channel.k8s.io`), with kubectl's checks, messages
//! and exit codes (`command terminated with exit code N`, exit N).

use crate::channels::{self, Streams};
use crate::pods::{self, encode};
use crate::{ApiClient, Error, Flags, Result};

pub async fn run(flags: &Flags) -> Result<()> {
    let (resource, command) = match flags.args_before_dash {
        Some(at) => (flags.args[..at].first(), &flags.args[at..]),
        None if flags.args.len() > 1 => {
            return Err(Error::Message(
                "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] \
                 instead\nSee 'kubectl exec -h' for help and examples"
                    .into(),
            ))
        }
        None => (flags.args.first(), &flags.args[flags.args.len()..]),
    };
    let Some(resource) = resource else {
        return Err(Error::Message(
            "pod, type/name or --filename must be specified".into(),
        ));
    };
    if command.is_empty() {
        return Err(Error::Message(
            "you must specify at least one command for the container".into(),
        ));
    }
    let name = pods::pod_name(resource)?;
    let stream = &flags.stream;
    let api = ApiClient::connect(flags).await?;
    let pod = pods::get(&api, name).await?;
    pods::refuse_completed(&pod, "exec into a container in")?;
    let container = pods::chosen_container(&pod, stream)?;
    let tty = channels::use_tty(stream.stdin, stream.tty, stream.quiet);
    let uri = exec_uri(&api, name, &container, command, stream.stdin, tty);
    let ws = api
        .websocket(&uri, channels::PROTOCOL, ("get", "pods"))
        .await?;
    channels::run(
        ws,
        Streams {
            stdin: stream.stdin,
            tty,
            redraw: false,
        },
    )
    .await
}

/// The pods/exec URI of `command` in `container` of pod `name`.
fn exec_uri(
    api: &ApiClient,
    name: &str,
    container: &str,
    command: &[String],
    stdin: bool,
    tty: bool,
) -> String {
    let mut query = format!("container={}", encode(container));
    for word in command {
        query.push_str(&format!("&command={}", encode(word)));
    }
    if stdin {
        query.push_str("&stdin=true");
    }
    // With a terminal, stdout and stderr are one stream.
    query.push_str(if tty {
        "&stdout=true&tty=true"
    } else {
        "&stdout=true&stderr=true"
    });
    format!("{}?{query}", pods::pod_path(api, name, "/exec"))
}

/// Runs `command` in `container` of pod `name` with `input` on its stdin (if any) and returns
/// what it printed on stdout; its stderr goes to ours (or our stdout), its exit code is the
/// error (cp).
pub(crate) async fn captured(
    api: &ApiClient,
    name: &str,
    container: &str,
    command: &[String],
    input: Option<Vec<u8>>,
    stderr_to_stdout: bool,
) -> Result<Vec<u8>> {
    let uri = exec_uri(api, name, container, command, input.is_some(), false);
    let ws = api
        .websocket(&uri, channels::PROTOCOL, ("get", "pods"))
        .await?;
    channels::run_captured(ws, input, stderr_to_stdout).await
}
