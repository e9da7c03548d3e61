//! `kubectl logs (POD | pod/NAME | -l SELECTOR) [CONTAINER]`: the pods/log subresource with
//! every flag kubectl has for it (`-c`, `-f`, `-p`, `--tail`, `--since`, `--since-time`,
//! `--timestamps`, `--limit-bytes`, `--all-containers`, `-l`, `--prefix`), its container
//! defaulting, checks and messages.

use std::io::Write;

use serde_json::Value;

use crate::client::ACCEPT_JSON;
use crate::pods::{self, encode};
use crate::{ApiClient, Error, Flags, Result};

/// kubectl's usage error for a missing or extra argument.
const USAGE: &str = "expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'.\nPOD or \
                     TYPE/NAME is a required argument for the logs command\nSee 'kubectl logs \
                     -h' for help and examples";

/// `--tail` when a selector picks the pods and no `--tail` was given.
const SELECTOR_TAIL: i64 = 10;

/// How many streams `-f` follows at most unless `--max-log-requests` says otherwise.
const DEFAULT_MAX_LOG_REQUESTS: usize = 5;

/// One stream to read: a container of a pod.
struct Source {
    pod: String,
    container: String,
}

pub async fn run(flags: &Flags) -> Result<()> {
    let stream = &flags.stream;
    let (resource, inline_container) =
        match (flags.args.as_slice(), &flags.selector) {
            ([], Some(_)) => (None, None),
            ([], None) => return Err(Error::Message(USAGE.into())),
            ([_], Some(_)) => return Err(Error::Message(
                "only a selector (-l) or a POD name is allowed\nSee 'kubectl logs -h' for help \
                 and examples"
                    .into(),
            )),
            ([resource], None) => (Some(resource.as_str()), None),
            ([resource, container], _) => (Some(resource.as_str()), Some(container.clone())),
            _ => return Err(Error::Message(USAGE.into())),
        };
    let since = stream.since.as_deref().map(parse_since).transpose()?;
    let tail = match stream.tail.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            Error::Message(format!(
                "invalid argument \"{text}\" for \"--tail\" flag: strconv.ParseInt: parsing \
                 \"{text}\": invalid syntax\nSee 'kubectl logs --help' for usage."
            ))
        })?),
    };
    let limit_bytes = match stream.limit_bytes.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            Error::Message(format!(
                "invalid argument \"{text}\" for \"--limit-bytes\" flag: strconv.ParseInt: \
                 parsing \"{text}\": invalid syntax\nSee 'kubectl logs --help' for usage."
            ))
        })?),
    };
    if stream.since_time.is_some() && since.is_some_and(|s| s != 0) {
        return Err(Error::Message(
            "at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
        ));
    }
    let container = stream.container.clone().or(inline_container.clone());
    if stream.all_containers {
        if let Some(container) = &container {
            return Err(Error::Message(format!(
                "--all-containers=true should not be specified with container name {container}"
            )));
        }
    }
    if stream.container.is_some() && inline_container.is_some() {
        return Err(Error::Message(
            "only one of -c or an inline [CONTAINER] arg is allowed".into(),
        ));
    }
    if limit_bytes.is_some_and(|l| l < 0) {
        return Err(Error::Message(
            "--limit-bytes must be greater than 0".into(),
        ));
    }
    if since.is_some_and(|s| s < 0) {
        return Err(Error::Message("--since must be greater than 0".into()));
    }
    if tail.is_some_and(|t| t < -1) {
        return Err(Error::Message(
            "--tail must be greater than or equal to -1".into(),
        ));
    }
    let tail = match (tail, &flags.selector) {
        (None, Some(_)) => Some(SELECTOR_TAIL),
        (tail, _) => tail,
    };

    let api = ApiClient::connect(flags).await?;
    let pod_list = match resource {
        Some(resource) => {
            let name = pods::pod_name(resource)?;
            match pods::get(&api, name).await {
                Ok(pod) => vec![pod],
                // kubectl's wording for logs of a missing pod.
                Err(Error::Api(err)) if err.is_not_found() => {
                    return Err(Error::Message(format!(
                        "error from server (NotFound): pods \"{name}\" not found in namespace \
                         \"{}\"",
                        api.namespace()
                    )))
                }
                Err(err) => return Err(err),
            }
        }
        None => {
            let selector = flags.selector.as_deref().unwrap_or_default();
            let uri = format!(
                "{}?labelSelector={}",
                pods::pod_path(&api, "", "").trim_end_matches('/'),
                encode(selector)
            );
            let list = api.get_json(&uri, ACCEPT_JSON).await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                crate::report(&format!(
                    "No resources found in {} namespace.",
                    api.namespace()
                ));
                return Ok(());
            }
            items
        }
    };
    let mut sources = Vec::new();
    for pod in &pod_list {
        sources.extend(sources_of(
            pod,
            container.as_deref(),
            stream.all_containers,
        )?);
    }

    let mut query = Vec::new();
    if stream.follow {
        query.push("follow=true".to_owned());
    }
    if stream.previous {
        query.push("previous=true".to_owned());
    }
    if let Some(since) = since.filter(|s| *s > 0) {
        query.push(format!("sinceSeconds={since}"));
    }
    if let Some(time) = &stream.since_time {
        query.push(format!("sinceTime={}", encode(time)));
    }
    if stream.timestamps {
        query.push("timestamps=true".to_owned());
    }
    if let Some(tail) = tail.filter(|t| *t >= 0) {
        query.push(format!("tailLines={tail}"));
    }
    if let Some(limit) = limit_bytes.filter(|l| *l > 0) {
        query.push(format!("limitBytes={limit}"));
    }
    let prefix = stream.prefix;
    let api = &api;
    let read = |source: Source| {
        let mut query = query.clone();
        query.push(format!("container={}", encode(&source.container)));
        let uri = format!(
            "{}?{}",
            pods::pod_path(api, &source.pod, "/log"),
            query.join("&")
        );
        async move {
            let mut lines =
                Lines::new(prefix.then(|| format!("[pod/{}/{}] ", source.pod, source.container)));
            api.get_stream(&uri, ("get", "pods"), |chunk| lines.write(chunk))
                .await?;
            lines.finish()
        }
    };
    let max_requests = match stream.max_log_requests.as_deref() {
        None => DEFAULT_MAX_LOG_REQUESTS,
        Some(text) => text.parse().map_err(|_| {
            Error::Message(format!(
                "invalid argument \"{text}\" for \"--max-log-requests\" flag: \
                 strconv.ParseInt: parsing \"{text}\": invalid syntax\nSee 'kubectl logs \
                 --help' for usage."
            ))
        })?,
    };
    if stream.follow && sources.len() > max_requests {
        return Err(Error::Message(format!(
            "you are attempting to follow {} log streams, but maximum allowed concurrency is \
             {max_requests}, use --max-log-requests to increase the limit",
            sources.len()
        )));
    }
    if stream.follow && sources.len() > 1 {
        // Followed streams run side by side, as kubectl's do.
        let results = futures_util::future::join_all(sources.into_iter().map(read)).await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
    } else {
        for source in sources {
            read(source).await?;
        }
    }
    Ok(())
}

/// The containers of `pod` to read, as kubectl picks them.
fn sources_of(pod: &Value, container: Option<&str>, all: bool) -> Result<Vec<Source>> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = |section: &str| -> Vec<String> {
        pod["spec"][section]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let source = |container: String| Source {
        pod: name.to_owned(),
        container,
    };
    if all {
        let mut all = names("initContainers");
        all.extend(names("containers"));
        all.extend(names("ephemeralContainers"));
        return Ok(all.into_iter().map(source).collect());
    }
    let containers = names("containers");
    let chosen = match container {
        Some(container) => container.to_owned(),
        None => {
            let annotated = pod["metadata"]["annotations"]
                ["kubectl.kubernetes.io/default-container"]
                .as_str()
                .filter(|a| !a.is_empty());
            let known = |c: &str| {
                ["containers", "initContainers", "ephemeralContainers"]
                    .iter()
                    .any(|section| names(section).iter().any(|n| n == c))
            };
            match annotated {
                Some(annotated) if known(annotated) => annotated.to_owned(),
                annotated => {
                    if let Some(annotated) = annotated {
                        crate::report(&format!(
                            "Default container name \"{annotated}\" not found in pod {name}"
                        ));
                    }
                    let Some(first) = containers.first() else {
                        return Err(Error::Message(format!(
                            "pod {name} does not have any containers"
                        )));
                    };
                    if containers.len() > 1
                        || !names("initContainers").is_empty()
                        || !names("ephemeralContainers").is_empty()
                    {
                        crate::report(&format!(
                            "Defaulted container \"{first}\" out of: {}",
                            pods::all_container_names(pod)
                        ));
                    }
                    first.clone()
                }
            }
        }
    };
    let exists = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .any(|section| names(section).contains(&chosen));
    if !exists {
        return Err(Error::Message(format!(
            "container {chosen} is not valid for pod {name}"
        )));
    }
    Ok(vec![source(chosen)])
}

/// Copies a log stream to stdout, each line prefixed when `--prefix` asks for it.
struct Lines {
    prefix: Option<String>,
    pending: Vec<u8>,
}

impl Lines {
    fn new(prefix: Option<String>) -> Lines {
        Lines {
            prefix,
            pending: Vec::new(),
        }
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let Some(prefix) = &self.prefix else {
            return out(chunk);
        };
        self.pending.extend_from_slice(chunk);
        let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.pending.drain(..=end).collect();
        let mut text = Vec::with_capacity(complete.len() + prefix.len() * 4);
        for line in complete.split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(prefix.as_bytes());
            text.extend_from_slice(line);
        }
        out(&text)
    }

    fn finish(mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.pending);
        match &self.prefix {
            Some(prefix) => out(&[prefix.as_bytes(), &rest].concat()),
            None => out(&rest),
        }
    }
}

fn out(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|err| Error::Message(format!("cannot write the logs: {err}")))
}

/// `--since` as Go's time.ParseDuration reads it, rounded to whole seconds as kubectl rounds.
fn parse_since(text: &str) -> Result<i64> {
    let failed = |why: String| {
        Error::Message(format!(
            "invalid argument \"{text}\" for \"--since\" flag: time: {why}\nSee 'kubectl logs \
             --help' for usage."
        ))
    };
    let invalid = || failed(format!("invalid duration \"{text}\""));
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().map_err(|_| invalid())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "" => return Err(failed(format!("missing unit in duration \"{text}\""))),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            unit => {
                return Err(failed(format!(
                    "unknown unit \"{unit}\" in duration \"{text}\""
                )))
            }
        };
        nanos += number * scale;
        rest = &rest[unit_end..];
    }
    let seconds = (nanos / 1e9).round() as i64;
    Ok(if negative { -seconds } else { seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_go_durations() {
        assert_eq!(parse_since("5s").ok(), Some(5));
        assert_eq!(parse_since("1h2m3s").ok(), Some(3723));
        assert_eq!(parse_since("1.5m").ok(), Some(90));
        assert_eq!(parse_since("400ms").ok(), Some(0));
        assert_eq!(parse_since("-3s").ok(), Some(-3));
        assert_eq!(parse_since("0").ok(), Some(0));
        let missing = parse_since("5").err().map(|e| e.render());
        assert!(missing.is_some_and(|m| m.contains("time: missing unit in duration \"5\"")));
        let unknown = parse_since("5x").err().map(|e| e.render());
        assert!(unknown.is_some_and(|m| m.contains("unknown unit \"x\" in duration \"5x\"")));
        assert!(parse_since("x").is_err());
        assert!(parse_since("").is_err());
    }

    #[test]
    fn prefixes_go_on_whole_lines() {
        let mut lines = Lines::new(Some("[p] ".into()));
        lines.pending.extend_from_slice(b"a\nb");
        assert_eq!(lines.pending.iter().rposition(|&b| b == b'\n'), Some(1));
    }
}
