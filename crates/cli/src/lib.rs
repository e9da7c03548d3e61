//! The kubectl-compatible command line of Skiff (`skiff get po`, `skiff kubectl ...`, or the
//! binary invoked as `kubectl`): kubectl's verbs, flags, output, messages and exit codes, for
//! the kinds Skiff serves, with no discovery round trip and no OpenAPI download.

mod apiresources;
mod apply;
mod args;
mod attach;
mod channels;
mod client;
mod completion;
mod config;
mod cp;
mod create;
mod delete;
mod describe;
mod describe_node;
mod edit;
mod exec;
mod explain;
mod get;
mod help;
mod jsonpath;
mod kinds;
mod kubeconfig;
mod label;
mod logs;
mod manifest;
mod patch;
mod pods;
mod portforward;
mod printer;
mod progress;
mod run_pod;
mod suggest;
mod wait;
mod watch;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

pub use args::Flags;
pub use client::{ApiClient, ApiError};

/// The verbs `skiff VERB` hands to the CLI without saying `kubectl` first.
pub const VERBS: &[&str] = &[
    "get",
    "create",
    "delete",
    "version",
    "cluster-info",
    // The streaming verbs.
    "exec",
    "logs",
    "port-forward",
    "attach",
    "run",
    "cp",
    "apply",
    "replace",
    "label",
    "annotate",
    "describe",
    "wait",
    "config",
    "api-resources",
    "explain",
    "completion",
    "edit",
    "patch",
];

/// What can go wrong in a command; each renders as kubectl renders it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad command line (cobra's wording).
    #[error("{0}")]
    Usage(String),
    /// A client-side failure kubectl prints as `error: ...`.
    #[error("{0}")]
    Message(String),
    /// A kubeconfig that does not hold what the flags select (`Error in configuration: ...`).
    #[error("{0}")]
    Configuration(String),
    /// An error `Status` (or another non-2xx answer) from the API server.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The kubeconfig could not be read or used.
    #[error("{what}: {source}")]
    Kubeconfig {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server did not answer at all.
    #[error("The connection to the server {server} was refused - did you specify the right host or port?")]
    Connect { server: String },
    /// A request failed on the way (TLS, reset connection, ...).
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A remote command ended with a non-zero exit code: kubectl exits with it.
    #[error("command terminated with exit code {code}")]
    Exited { code: u8 },
    /// A pod of `run -i` ended with a non-zero exit code: kubectl prints how, and exits with it.
    #[error("{message}")]
    PodExited { code: u8, message: String },
    /// A message kubectl prints as it is, without `error: ` in front.
    #[error("{0}")]
    Raw(String),
    /// Errors were already printed (several objects, some failed): exit 1 without more output.
    #[error("errors were printed")]
    AlreadyReported,
}

impl From<ApiError> for Error {
    fn from(err: ApiError) -> Error {
        Error::Api(Box::new(err))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The text kubectl prints on stderr for this error (without the final newline).
    pub fn render(&self) -> String {
        match self {
            Error::Api(api) => api.render(),
            Error::Connect { .. }
            | Error::Exited { .. }
            | Error::PodExited { .. }
            | Error::Raw(_) => self.to_string(),
            Error::Configuration(message) => format!("Error in configuration: {message}"),
            Error::Usage(message) | Error::Message(message) => format!("error: {message}"),
            other => format!("error: {other}"),
        }
    }
}

/// Whether `skiff ARGS` (without the program name) is a kubectl command: its first word that is
/// not a kubectl flag is one of [`VERBS`] (`skiff -n x get po` as well as `skiff get po`), or the
/// shell completion's `__complete` / `__completeNoDesc`.
pub fn is_kubectl_command(args: &[OsString]) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match Flags::parse(&args) {
        Ok(flags) => flags.verb.is_some_and(|verb| served(&verb)),
        Err((_, verb)) => verb.is_some_and(|verb| served(&verb)),
    }
}

fn served(verb: &str) -> bool {
    VERBS.contains(&verb) || verb == "__complete" || verb == "__completeNoDesc"
}

/// Runs kubectl with `args` (without the program name) and returns its exit code.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let flags = match Flags::parse(&args) {
        Ok(flags) => flags,
        Err((err, verb)) => {
            let mut text = err.render();
            if let Some(verb) = verb {
                text.push_str(&format!("\nSee 'kubectl {verb} --help' for usage."));
            }
            // On a terminal, a mistyped flag gets the one probably meant (scripts see kubectl's
            // words alone).
            if let Some(typed) = text
                .strip_prefix("error: unknown flag: --")
                .and_then(|rest| rest.lines().next())
            {
                if let Some(meant) = args::closest_flag(typed) {
                    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                        text.push_str(&format!("\nDid you mean --{meant}?"));
                    }
                }
            }
            report(&text);
            return ExitCode::from(1);
        }
    };
    if flags.bare_dry_run {
        report("Warning: --dry-run is deprecated and can be replaced with --dry-run=client.");
    }
    // kubectl takes an unknown word for a plugin's name, and refuses flags before one.
    if let (Some(verb), Some(first)) = (flags.verb.as_deref(), args.first()) {
        if !VERBS.contains(&verb) && !suggest::is_kubectl_command(verb) && first.starts_with('-') {
            let flag = first.split_once('=').map_or(first.as_str(), |(f, _)| f);
            report(&format!(
                "Error: flags cannot be placed before plugin name: {flag}"
            ));
            return ExitCode::from(1);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("error: cannot start the I/O runtime: {err}"));
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::AlreadyReported) => ExitCode::from(1),
        Err(err @ (Error::Exited { .. } | Error::PodExited { .. })) => {
            report(&err.render());
            match err {
                Error::Exited { code } | Error::PodExited { code, .. } => ExitCode::from(code),
                _ => ExitCode::from(1),
            }
        }
        Err(err) => {
            report(&err.render());
            ExitCode::from(1)
        }
    }
}

/// Prints one message on stderr, as kubectl does (a failed write to stderr has nowhere to go).
pub(crate) fn report(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", text.trim_end_matches('\n'));
}

/// `--help`: what this kubectl knows, with examples.
const HELP: &str = "\
Skiff's built-in kubectl: kubectl's verbs, flags, output and messages for the kinds Skiff serves
(pods/po, namespaces/ns, nodes/no, events/ev; `all` = pods).

Verbs:
  get KIND [NAME...] | KIND/NAME...   -o wide|yaml|json|name, -l SELECTOR, --field-selector SEL,
                                      -n NS, -A, --show-labels, --no-headers
  create -f FILE|DIR|-                multi-document YAML or JSON; -R descends into directories
  create namespace NAME
  delete KIND NAME... | KIND/NAME... | -f FILE | KIND --all | KIND -l SELECTOR
                                      --grace-period N, --now, --force, --wait=false
  get ... -o jsonpath=TEMPLATE | -o custom-columns=NAME:PATH,... | -L KEY,... | --sort-by=PATH
          | -w [--output-watch-events]
  apply -f FILE|DIR|-                 client-side apply: created / configured / unchanged
  replace -f FILE                     --dry-run=client|server (also on create and apply)
  label|annotate KIND NAME... k=v k-  --overwrite, -l SELECTOR, --all, -o name
  describe po|no|ns [NAME...]         kubectl's layout, with events
  wait KIND/NAME --for=condition=Ready|delete|create|jsonpath={.path}=VALUE [--timeout=30s]
  api-resources                       -o wide|name, --namespaced=true|false, --sort-by=name|kind
  explain KIND[.FIELD...]             the server's OpenAPI schema, in kubectl's layout
  completion bash|zsh|fish            a script that completes verbs, kinds and names
  patch KIND NAME -p PATCH            --type strategic|merge|json, -o name|json|yaml
  edit KIND NAME | KIND/NAME          in $KUBE_EDITOR or $EDITOR (else vi), -o json; reopened
                                      with the server's reasons when it refuses the change
  config view|get-contexts|current-context|use-context NAME|set-context --current --namespace=X
  version                             the client's and the server's versions
  cluster-info                        where the control plane answers
  exec POD|pod/NAME [-c C] [-i] [-t] -- COMMAND [ARG...]
                                      a command in a running container; its exit code
  logs POD|pod/NAME [CONTAINER] | -l SELECTOR
                                      -c C, -f, -p, --tail N, --since 5m, --since-time T,
                                      --timestamps, --limit-bytes N, --all-containers, --prefix
  port-forward POD|pod/NAME [LOCAL:]REMOTE...
                                      --address ADDR (default localhost); until Ctrl-C
  attach POD|pod/NAME [-c C] [-i] [-t]
                                      the stdio of a running container's own process
  run NAME --image=IMAGE [--restart=Always|OnFailure|Never] [--env=K=V]... [--port=P]
      [--labels=K=V,...] [--command] [-i] [-t] [--rm] [--dry-run=client|server] -- [ARG...]
                                      a pod as kubectl makes it; -it --rm attaches, then deletes
  cp SRC DEST                         one of them [NAMESPACE/]POD:PATH; -c C, --no-preserve

Everywhere: --kubeconfig FILE (else $KUBECONFIG, ~/.kube/config, then the local server's
admin kubeconfig), --context NAME, -n/--namespace NS.

Examples:
  skiff get po -o wide
  skiff kubectl create -f kubia-manual.yaml
  kubectl delete po -l app=kubia        # through a `kubectl` symlink to skiff
  skiff get po -o jsonpath='{range .items[*]}{.metadata.name}{\"\\t\"}{.status.phase}{\"\\n\"}{end}'
  skiff apply -f kubia-manual.yaml
  skiff label po kubia-manual env=prod --overwrite
  skiff wait --for=condition=Ready pod/kubia-manual --timeout=60s
";

async fn dispatch(flags: Flags) -> Result<()> {
    if flags.help {
        match flags.verb.as_deref().and_then(help::verb_help) {
            Some(text) => print!("{text}"),
            None => print!("{HELP}"),
        }
        return Ok(());
    }
    match flags.verb.as_deref() {
        Some("get") => get::run(&flags).await,
        Some("create") => create::run(&flags).await,
        Some("delete") => delete::run(&flags).await,
        Some("version") => version(&flags).await,
        Some("cluster-info") => cluster_info(&flags).await,
        Some("exec") => exec::run(&flags).await,
        Some("logs") => logs::run(&flags).await,
        Some("port-forward") => portforward::run(&flags).await,
        Some("attach") => attach::run(&flags).await,
        Some("run") => run_pod::run(&flags).await,
        Some("cp") => cp::run(&flags).await,
        Some("apply") => apply::run_apply(&flags).await,
        Some("replace") => apply::run_replace(&flags).await,
        Some("label") => label::run(&flags, label::Field::Labels).await,
        Some("completion") => completion::script(&flags),
        Some("__complete") => completion::complete(&flags, true).await,
        Some("__completeNoDesc") => completion::complete(&flags, false).await,
        Some("explain") => explain::run(&flags).await,
        Some("api-resources") => apiresources::run(&flags).await,
        Some("config") => config::run(&flags).await,
        Some("wait") => wait::run(&flags).await,
        Some("describe") => describe::run(&flags).await,
        Some("annotate") => label::run(&flags, label::Field::Annotations).await,
        Some("edit") => edit::run(&flags).await,
        Some("patch") => patch::run(&flags).await,
        Some(other) if suggest::is_kubectl_command(other) => Err(Error::Message(format!(
            "\"kubectl {other}\" is not in Skiff's kubectl yet (it knows: {})",
            VERBS.join(", ")
        ))),
        Some(other) => Err(Error::Raw(suggest::unknown_command(other))),
        None => Err(Error::Usage(format!(
            "a verb is needed: kubectl {} ...",
            VERBS.join("|")
        ))),
    }
}

/// `kubectl version`: the client's version, then the server's.
async fn version(flags: &Flags) -> Result<()> {
    println!(
        "Client Version: v1.35.0+skiff-{}",
        env!("CARGO_PKG_VERSION")
    );
    let api = ApiClient::connect(flags).await?;
    let info = api.get_json("/version", client::ACCEPT_JSON).await?;
    let server = info["gitVersion"].as_str().unwrap_or_default();
    println!("Server Version: {server}");
    Ok(())
}

/// `kubectl cluster-info`: where the control plane answers.
async fn cluster_info(flags: &Flags) -> Result<()> {
    let api = ApiClient::connect(flags).await?;
    api.get_json("/version", client::ACCEPT_JSON).await?;
    println!(
        "Kubernetes control plane is running at {}",
        api.server_url()
    );
    println!();
    println!("To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn only_kubectl_verbs_go_to_the_cli() {
        assert!(is_kubectl_command(&words("get po")));
        assert!(is_kubectl_command(&words(
            "--kubeconfig k -n x get po -o wide"
        )));
        assert!(is_kubectl_command(&words("get po --bogus")));
        assert!(is_kubectl_command(&words("delete po --all")));
        assert!(is_kubectl_command(&words(
            "exec -it one -c main -- sh -c x"
        )));
        assert!(is_kubectl_command(&words("-n x logs -f one")));
        assert!(is_kubectl_command(&words("run x --image=busybox -it --rm")));
        for verb in [
            "attach one",
            "port-forward pod/one 8080",
            "cp a one:/tmp",
            "apply -f x.yaml",
            "replace -f x.yaml",
            "label po a k=v",
            "annotate po a k=v",
            "describe po",
            "wait --for=delete po/a",
            "config view",
            "api-resources",
        ] {
            assert!(is_kubectl_command(&words(verb)), "{verb}");
        }
        assert!(!is_kubectl_command(&words("server --data-dir /tmp/x")));
        assert!(!is_kubectl_command(&words(
            "image import --data-dir d a.tar"
        )));
        assert!(!is_kubectl_command(&words("internal monitor /x")));
        assert!(!is_kubectl_command(&words("--help")));
        assert!(!is_kubectl_command(&words("--version")));
        assert!(!is_kubectl_command(&[]));
    }
}
