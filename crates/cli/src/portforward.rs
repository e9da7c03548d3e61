//! `kubectl port-forward (POD | pod/NAME) [LOCAL_PORT:]REMOTE_PORT...`: local listeners (on
//! localhost, or `--address`), each accepted connection carried to the pod's port over a
//! WebSocket of its own in the channel protocol (`v4.channel.k8s.io`, `?ports=REMOTE`: channel
//! 0 the data, channel 1 the errors, each opened by the port in two little-endian bytes).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::pods;
use crate::{ApiClient, Error, Flags, Result};

const PROTOCOL: &str = "v4.channel.k8s.io";
const DATA: u8 = 0;
const ERROR: u8 = 1;
/// The bytes of the port that open each channel.
const PORT_PREFIX: usize = 2;
/// The pause after a failed accept.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// One `[LOCAL:]REMOTE` of the command line (local 0: any free port).
#[derive(Clone, Debug, PartialEq)]
struct Mapping {
    local: u16,
    remote: String,
}

pub async fn run(flags: &Flags) -> Result<()> {
    if flags.args.len() < 2 {
        return Err(Error::Message(
            "TYPE/NAME and list of ports are required for port-forward\nSee 'kubectl \
             port-forward -h' for help and examples"
                .into(),
        ));
    }
    let name = pods::pod_name(&flags.args[0])?.to_owned();
    let mappings = flags.args[1..]
        .iter()
        .map(|spec| parse_mapping(spec))
        .collect::<Result<Vec<_>>>()?;
    let addresses = addresses(&flags.stream.address)?;
    let api = Arc::new(ApiClient::connect(flags).await?);
    let pod = pods::get(&api, &name).await?;
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    if phase != "Running" {
        return Err(Error::Message(format!(
            "unable to forward port because pod is not running. Current status={phase}"
        )));
    }
    let mut listeners = Vec::new();
    for mapping in &mappings {
        let remote = remote_port(&pod, &mapping.remote)?;
        let mut local = mapping.local;
        let mut bound = false;
        for address in &addresses {
            // Only the first address picks a free port; the others take the same.
            let Ok(listener) = TcpListener::bind(SocketAddr::new(*address, local)).await else {
                continue;
            };
            let Ok(at) = listener.local_addr() else {
                continue;
            };
            local = at.port();
            bound = true;
            println!("Forwarding from {at} -> {remote}");
            listeners.push((listener, local, remote));
        }
        if !bound {
            crate::report(&format!(
                "Unable to listen on port {local}: Listeners failed to create with the \
                 following errors: [unable to create listener: Error listen tcp4 \
                 {}:{local}: bind: address already in use]",
                addresses
                    .first()
                    .copied()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            ));
        }
    }
    let _ = std::io::stdout().flush();
    if listeners.is_empty() {
        let ports: Vec<String> = mappings
            .iter()
            .map(|m| format!("{{{} {}}}", m.local, m.remote))
            .collect();
        return Err(Error::Message(format!(
            "unable to listen on any of the requested ports: [{}]",
            ports.join(" ")
        )));
    }
    let uri_of = |remote: u16| {
        format!(
            "{}?ports={remote}",
            pods::pod_path(&api, &name, "/portforward")
        )
    };
    let mut accepts = tokio::task::JoinSet::new();
    for (listener, local, remote) in listeners {
        let api = Arc::clone(&api);
        let uri = uri_of(remote);
        accepts.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    // Out of descriptors, say: give the connections in flight time to end
                    // rather than spin.
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                };
                println!("Handling connection for {local}");
                let _ = std::io::stdout().flush();
                let api = Arc::clone(&api);
                let uri = uri.clone();
                tokio::spawn(async move {
                    if let Err(err) = forward(&api, &uri, socket).await {
                        crate::report(&format!(
                            "an error occurred forwarding {local} -> {remote}: {}",
                            err.render().trim_start_matches("error: ")
                        ));
                    }
                });
            }
        });
    }
    // Until interrupted, or until the pod stops running (kubectl loses its connection then).
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        gone = until_not_running(&api, &name) => match gone {
            Ok(()) => Err(Error::Message("lost connection to pod".into())),
            Err(err) => Err(err),
        },
    };
    accepts.abort_all();
    result
}

/// Returns once pod `name` is gone or no longer running (a watch, taken up again when the
/// server ends it).
async fn until_not_running(api: &ApiClient, name: &str) -> Result<()> {
    loop {
        let pod = match pods::get(api, name).await {
            Ok(pod) => pod,
            Err(Error::Api(err)) if err.is_not_found() => return Ok(()),
            Err(err) => return Err(err),
        };
        if pod["status"]["phase"] != "Running" || !pod["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        let uri = format!(
            "{}?watch=true&fieldSelector={}&resourceVersion={}",
            pods::pod_path(api, "", "").trim_end_matches('/'),
            pods::encode(&format!("metadata.name={name}")),
            pods::encode(pod["metadata"]["resourceVersion"].as_str().unwrap_or("0"))
        );
        let ended = api
            .watch_until(&uri, |event| {
                let object = &event["object"];
                event["type"] == "DELETED"
                    || object["status"]["phase"] != "Running"
                    || !object["metadata"]["deletionTimestamp"].is_null()
            })
            .await?;
        if ended {
            return Ok(());
        }
    }
}

/// Carries one local connection to the pod's port until either side ends it.
async fn forward(api: &ApiClient, uri: &str, socket: TcpStream) -> Result<()> {
    let mut ws = api.websocket(uri, PROTOCOL, ("get", "pods")).await?;
    let (mut from_local, mut to_local) = socket.into_split();
    let mut skipped = [0usize; 2];
    let mut error = Vec::new();
    let mut local_open = true;
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            message = ws.next() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(err)) => {
                        return Err(Error::Message(format!("error reading from the pod: {err}")))
                    }
                };
                let Some((&channel, mut rest)) = data.split_first() else { continue };
                let Some(skip) = skipped.get_mut(usize::from(channel)) else { continue };
                let drop_now = (PORT_PREFIX - *skip).min(rest.len());
                *skip += drop_now;
                rest = &rest[drop_now..];
                if channel == ERROR {
                    error.extend_from_slice(rest);
                } else if to_local.write_all(rest).await.is_err() {
                    break;
                }
            }
            read = from_local.read(&mut buffer), if local_open => match read {
                // No half-close in this protocol: the pod's side ends the connection.
                Ok(0) | Err(_) => local_open = false,
                Ok(n) => {
                    let frame = [&[DATA][..], &buffer[..n]].concat();
                    if ws.send(Message::binary(frame)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = to_local.shutdown().await;
    let _ = ws.close(None).await;
    if !error.is_empty() {
        return Err(Error::Message(String::from_utf8_lossy(&error).into_owned()));
    }
    Ok(())
}

/// `8080`, `:8080`, `9000:8080`, `0:http`.
fn parse_mapping(spec: &str) -> Result<Mapping> {
    let (local, remote) = match spec.split_once(':') {
        Some((local, remote)) => (local, remote),
        None => (spec, spec),
    };
    let local: u16 = match local {
        "" => 0,
        text => text.parse().map_err(|_| {
            Error::Message(format!(
                "Error parsing local port '{text}': strconv.ParseUint: parsing \"{text}\": \
                 invalid syntax"
            ))
        })?,
    };
    if remote.is_empty() {
        return Err(Error::Message(format!(
            "Error parsing remote port '{remote}': strconv.ParseUint: parsing \"\": invalid \
             syntax"
        )));
    }
    Ok(Mapping {
        local,
        remote: remote.to_owned(),
    })
}

/// The remote port as a number: as given, or a container port of that name.
fn remote_port(pod: &Value, remote: &str) -> Result<u16> {
    if let Ok(port) = remote.parse::<u16>() {
        if port == 0 {
            return Err(Error::Message(format!(
                "Error parsing remote port '{remote}': port must be > 0"
            )));
        }
        return Ok(port);
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == remote)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            Error::Message(format!(
                "Pod '{}' does not have a named port '{remote}'",
                pod["metadata"]["name"].as_str().unwrap_or_default()
            ))
        })
}

/// `--address` (comma-separated lists, `localhost` for both loopbacks); by default localhost.
fn addresses(given: &[String]) -> Result<Vec<IpAddr>> {
    let mut addresses = Vec::new();
    let words: Vec<&str> = if given.is_empty() {
        vec!["localhost"]
    } else {
        given.iter().flat_map(|a| a.split(',')).collect()
    };
    for word in words {
        match word.trim() {
            "localhost" => {
                addresses.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
                addresses.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            }
            other => addresses.push(
                other
                    .parse()
                    .map_err(|_| Error::Message(format!("{other} is not a valid IP")))?,
            ),
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_read_as_kubectl_reads_them() {
        let mapping = |local, remote: &str| Mapping {
            local,
            remote: remote.to_owned(),
        };
        assert_eq!(parse_mapping("8080").ok(), Some(mapping(8080, "8080")));
        assert_eq!(parse_mapping(":8080").ok(), Some(mapping(0, "8080")));
        assert_eq!(parse_mapping("9000:http").ok(), Some(mapping(9000, "http")));
        assert!(parse_mapping("x:80").is_err());
        let pod = serde_json::json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"ports": [{"name": "http", "containerPort": 8080}]}]}});
        assert_eq!(remote_port(&pod, "http").ok(), Some(8080));
        assert_eq!(remote_port(&pod, "81").ok(), Some(81));
        assert!(remote_port(&pod, "grpc").is_err());
        assert_eq!(
            addresses(&[]).ok(),
            Some(vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            ])
        );
        assert!(addresses(&["nope".into()]).is_err());
    }
}
