//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log from the files its
//! monitor writes, with kubelet's query parameters and its messages for containers that have no
//! log to show.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::Response;
use k8s_openapi::api::core::v1::ContainerStatus;
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::container::log_read::{LogQuery, LogReader};

use super::{status, Body, StreamingContext};
use crate::runtime::{parse_container_id, RuntimeState};

/// How often a followed log is checked for new lines (kubelet watches the file; a poll this
/// short is as prompt for people and costs a stat and a read).
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// The query parameters of a log request (kubelet's PodLogOptions).
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    follow: bool,
    previous: bool,
    query: LogQuery,
}

fn flag(value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("{other:?} is not a boolean")),
    }
}

fn number(name: &str, value: &str) -> Result<u64, String> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("{name}: {value:?} is not a non-negative integer"))
}

fn parse_options(query: Option<&str>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut since_seconds = None;
    let mut since_time = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "follow" => options.follow = flag(&value)?,
            "previous" => options.previous = flag(&value)?,
            "timestamps" => options.query.timestamps = flag(&value)?,
            "tailLines" => {
                options.query.tail_lines =
                    Some(usize::try_from(number("tailLines", &value)?).unwrap_or(usize::MAX))
            }
            "limitBytes" => {
                let n = number("limitBytes", &value)?;
                if n == 0 {
                    return Err("limitBytes: must be greater than 0".into());
                }
                options.query.limit_bytes = Some(n);
            }
            "sinceSeconds" => {
                let n = number("sinceSeconds", &value)?;
                if n == 0 {
                    return Err("sinceSeconds: must be greater than 0".into());
                }
                since_seconds = Some(n);
            }
            "sinceTime" => {
                let t: Timestamp = value
                    .parse()
                    .map_err(|e| format!("sinceTime: {value:?} is not an RFC 3339 time: {e}"))?;
                since_time = Some(SystemTime::from(t));
            }
            _ => {}
        }
    }
    options.query.since = match (since_seconds, since_time) {
        (Some(_), Some(_)) => {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into())
        }
        (Some(s), None) => SystemTime::now().checked_sub(Duration::from_secs(s)),
        (None, t) => t,
    };
    Ok(options)
}

/// The container id whose log to show, or kubelet's message saying why there is none.
fn pick_container(
    statuses: &[ContainerStatus],
    pod: &str,
    container: &str,
    previous: bool,
) -> Result<String, String> {
    let Some(status) = statuses.iter().find(|s| s.name == container) else {
        return Err(format!(
            "container {container:?} in pod {pod:?} is not available"
        ));
    };
    let state = status.state.clone().unwrap_or_default();
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.container_id.clone())
        .filter(|id| !id.is_empty());
    let terminated = |id: Option<String>| {
        id.or_else(|| last.clone())
            .ok_or_else(|| format!("container {container:?} in pod {pod:?} is terminated"))
    };
    if previous {
        return last.ok_or_else(|| {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        });
    }
    if state.running.is_some() {
        return status
            .container_id
            .clone()
            .ok_or_else(|| format!("container {container:?} in pod {pod:?} is not available"));
    }
    if let Some(t) = state.terminated {
        return terminated(t.container_id.filter(|id| !id.is_empty()));
    }
    if last.is_some() {
        return terminated(None);
    }
    let reason = state
        .waiting
        .and_then(|w| w.reason)
        .unwrap_or_else(|| "ContainerCreating".into());
    let why = match reason.as_str() {
        "ErrImagePull" => "image can't be pulled".to_string(),
        "ImagePullBackOff" => "trying and failing to pull image".to_string(),
        _ => reason,
    };
    Err(format!(
        "container {container:?} in pod {pod:?} is waiting to start: {why}"
    ))
}

pub async fn serve(
    ctx: &StreamingContext,
    namespace: &str,
    pod_name: &str,
    container: &str,
    query: Option<&str>,
) -> Response<Body> {
    let options = match parse_options(query) {
        Ok(options) => options,
        Err(message) => return status(400, "BadRequest", &message),
    };
    let pod = match super::pod_on_this_node(ctx, namespace, pod_name).await {
        Ok(pod) => pod,
        Err(resp) => return resp,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let statuses = pod
        .status
        .as_ref()
        .map(|s| {
            let mut all = s.container_statuses.clone().unwrap_or_default();
            all.extend(s.init_container_statuses.clone().unwrap_or_default());
            all
        })
        .unwrap_or_default();
    let id = match pick_container(&statuses, pod_name, container, options.previous) {
        Ok(id) => id,
        Err(message) => return status(400, "BadRequest", &message),
    };
    let id = id.strip_prefix("skiff://").unwrap_or(&id).to_string();
    let Some((attempt, _)) = parse_container_id(&uid, &id) else {
        return status(
            400,
            "BadRequest",
            &format!("container {container:?} in pod {pod_name:?} has no log on this node"),
        );
    };
    let path = ctx.container_log_path(&uid, container, attempt);
    let (reader, first) = match LogReader::open(&path, &options.query) {
        Ok(opened) => opened,
        Err(e) => {
            return status(
                500,
                "InternalError",
                &format!("cannot read the log {}: {e}", path.display()),
            )
        }
    };
    let follow = options.follow && !options.previous;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    if !first.is_empty() {
        // The channel is empty and has room: this cannot fail.
        let _ = tx.try_send(Bytes::from(first));
    }
    if follow && !reader.exhausted() {
        let runtime = ctx.runtime.clone();
        tokio::task::spawn_blocking(move || follow_log(reader, &id, runtime, tx));
    } else {
        drop(tx);
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(Frame::data(chunk)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Sends what the monitor appends until the container has exited and its log is read to the
/// end, the byte limit is reached, or the client is gone.
pub(super) fn follow_log(
    mut reader: LogReader,
    id: &str,
    runtime: Arc<dyn crate::runtime::PodRuntime>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) {
    loop {
        let chunk = match reader.follow() {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(container = id, error = %e, "following a log failed");
                return;
            }
        };
        if !chunk.is_empty() {
            if tx.blocking_send(Bytes::from(chunk)).is_err() {
                return;
            }
            continue;
        }
        if reader.exhausted() || tx.is_closed() {
            return;
        }
        let ended = !matches!(
            runtime.container_state(id),
            Ok(Some(RuntimeState::Running { .. } | RuntimeState::Created))
        );
        if ended {
            // Whatever the monitor wrote before the container's end was recorded.
            if let Ok(rest) = reader.follow() {
                if !rest.is_empty() {
                    let _ = tx.blocking_send(Bytes::from(rest));
                }
            }
            return;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statuses(value: serde_json::Value) -> Vec<ContainerStatus> {
        serde_json::from_value(value).expect("statuses")
    }

    #[test]
    fn options_from_kubectls_query() {
        let o = parse_options(Some(
            "container=c&follow=true&tailLines=5&timestamps=true&limitBytes=10",
        ))
        .expect("options");
        assert!(o.follow && o.query.timestamps && !o.previous);
        assert_eq!(o.query.tail_lines, Some(5));
        assert_eq!(o.query.limit_bytes, Some(10));
        let since = parse_options(Some("sinceTime=2026-01-01T00:00:00Z")).expect("since");
        assert_eq!(
            since.query.since,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        );
        assert!(parse_options(Some("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z")).is_err());
        assert!(parse_options(Some("tailLines=-1")).is_err());
        assert!(parse_options(Some("follow=maybe")).is_err());
    }

    #[test]
    fn which_container_kubelet_shows() {
        let running = statuses(
            json!([{"name": "c", "image": "i", "imageID": "", "ready": true,
            "restartCount": 1, "containerID": "skiff://u_1_c",
            "state": {"running": {}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "skiff://u_0_c"}}}]),
        );
        assert_eq!(
            pick_container(&running, "p", "c", false),
            Ok("skiff://u_1_c".into())
        );
        assert_eq!(
            pick_container(&running, "p", "c", true),
            Ok("skiff://u_0_c".into())
        );
        assert_eq!(
            pick_container(&running, "p", "x", false),
            Err("container \"x\" in pod \"p\" is not available".into())
        );
        let creating = statuses(
            json!([{"name": "c", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]),
        );
        assert_eq!(
            pick_container(&creating, "p", "c", false),
            Err("container \"c\" in pod \"p\" is waiting to start: ContainerCreating".into())
        );
        assert_eq!(
            pick_container(&creating, "p", "c", true),
            Err("previous terminated container \"c\" in pod \"p\" not found".into())
        );
        let backoff = statuses(
            json!([{"name": "c", "image": "i", "imageID": "", "ready": false,
            "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "skiff://u_1_c"}}}]),
        );
        assert_eq!(
            pick_container(&backoff, "p", "c", false),
            Ok("skiff://u_1_c".into())
        );
    }
}
