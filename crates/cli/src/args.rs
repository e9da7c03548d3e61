//! kubectl's command line, parsed as cobra parses it: flags anywhere after the verb (or before
//! it), `--flag=value`, `--flag value`, `-nvalue`, `-n value`, `--bool=false`, and `--` ending
//! the flags; unknown flags rejected with kubectl's messages.

use crate::Error;

/// Everything the verbs of this slice read from the command line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags {
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    pub selector: Option<String>,
    pub field_selector: Option<String>,
    pub output: Option<String>,
    pub show_labels: bool,
    pub no_headers: bool,
    pub filenames: Vec<String>,
    pub recursive: bool,
    pub all: bool,
    pub grace_period: Option<i64>,
    pub now: bool,
    pub force: bool,
    pub wait: bool,
    pub ignore_not_found: bool,
    pub help: bool,
    /// The flags of the streaming verbs (exec, logs, attach, port-forward, run, cp).
    pub stream: StreamFlags,
    /// How many of [`Flags::args`] came before `--` (cobra's ArgsLenAtDash), if `--` was given.
    pub args_before_dash: Option<usize>,
    /// `-L`: label keys shown as columns of `get`.
    pub label_columns: Vec<String>,
    pub sort_by: Option<String>,
    /// `get -w`.
    pub watch: bool,
    pub output_watch_events: bool,
    pub overwrite: bool,
    /// `--dry-run=none|client|server`.
    pub dry_run: Option<String>,
    /// `--dry-run` without a value (deprecated: kubectl warns, and takes it as client).
    pub bare_dry_run: bool,
    /// `wait --for=...`.
    pub wait_for: Option<String>,
    /// `--timeout` as given (`30s`, `1m`).
    pub timeout: Option<String>,
    pub server_side: bool,
    /// `--validate` as given (`strict`, `false`, ...).
    pub validate: Option<String>,
    /// `config set-context --current`.
    pub current: bool,
    /// `config view --minify`, `--raw`.
    pub minify: bool,
    pub raw: bool,
    /// `api-resources --namespaced=true|false` (unset: both).
    pub namespaced: Option<bool>,
    pub api_group: Option<String>,
    /// `patch -p PATCH` and `--type json|merge|strategic`.
    pub patch: Option<String>,
    pub patch_type: Option<String>,
    /// `create secret docker-registry|generic` flags.
    pub secret: SecretFlags,
    /// The verb (`get`, `delete`, ...), when one was given.
    pub verb: Option<String>,
    /// The arguments after the verb that are not flags.
    pub args: Vec<String>,
}

/// The flags of `create secret`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SecretFlags {
    pub docker_server: Option<String>,
    pub docker_username: Option<String>,
    pub docker_password: Option<String>,
    pub docker_email: Option<String>,
    /// `--from-literal=key=value`, repeatable.
    pub from_literal: Vec<String>,
    /// `--from-file=[key=]path` (a file, or a directory's files), repeatable.
    pub from_file: Vec<String>,
    /// `--from-env-file=path` (KEY=VALUE lines), repeatable.
    pub from_env_file: Vec<String>,
    /// `create secret tls`: `--cert` and `--key` files (PEM).
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// The flags of the streaming verbs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamFlags {
    /// `-c`/`--container`.
    pub container: Option<String>,
    /// `-i`/`--stdin`.
    pub stdin: bool,
    /// `-t`/`--tty`.
    pub tty: bool,
    /// `-q`/`--quiet`.
    pub quiet: bool,
    /// logs `-f`/`--follow`.
    pub follow: bool,
    /// logs `-p`/`--previous`.
    pub previous: bool,
    pub timestamps: bool,
    pub all_containers: bool,
    /// logs `--prefix`.
    pub prefix: bool,
    /// logs `--tail` (as given: kubectl's default is -1, everything).
    pub tail: Option<String>,
    pub since: Option<String>,
    pub since_time: Option<String>,
    pub limit_bytes: Option<String>,
    /// logs `--max-log-requests` (kubectl's default: 5).
    pub max_log_requests: Option<String>,
    /// port-forward `--address` (each may be a comma-separated list).
    pub address: Vec<String>,
    /// run `--image`, `--restart`, `--env` (repeatable), `--port`, `--labels`/`-l`,
    /// `--command`, `--rm`, `--dry-run`.
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub restart: Option<String>,
    pub env: Vec<String>,
    pub port: Option<String>,
    pub labels: Option<String>,
    pub command: bool,
    pub rm: bool,
    pub dry_run: Option<String>,
    /// cp `--no-preserve`.
    pub no_preserve: bool,
}

/// The shorthand letters that mean something else, or only exist, for one verb (`logs -f` is
/// `--follow`, `run -l` is `--labels`): (verb, letter, long name).
const VERB_SHORTHANDS: &[(&str, char, &str)] = &[
    ("exec", 'c', "container"),
    ("exec", 'i', "stdin"),
    ("exec", 't', "tty"),
    ("exec", 'q', "quiet"),
    ("attach", 'c', "container"),
    ("attach", 'i', "stdin"),
    ("attach", 't', "tty"),
    ("attach", 'q', "quiet"),
    ("logs", 'c', "container"),
    ("logs", 'f', "follow"),
    ("logs", 'p', "previous"),
    ("run", 'i', "stdin"),
    ("run", 't', "tty"),
    ("run", 'q', "quiet"),
    ("run", 'l', "labels"),
    ("cp", 'c', "container"),
    ("patch", 'p', "patch"),
];

/// Flags that take a value: (long name, short letter).
const VALUE_FLAGS: &[(&str, Option<char>)] = &[
    ("kubeconfig", None),
    ("context", None),
    ("cluster", None),
    ("user", None),
    ("namespace", Some('n')),
    ("selector", Some('l')),
    ("field-selector", None),
    ("output", Some('o')),
    ("filename", Some('f')),
    ("grace-period", None),
    ("cache-dir", None),
    ("request-timeout", None),
    ("timeout", None),
    ("v", Some('v')),
    ("validate", None),
    ("field-manager", None),
    // The streaming verbs'.
    ("container", None),
    ("tail", None),
    ("since", None),
    ("since-time", None),
    ("limit-bytes", None),
    ("max-log-requests", None),
    ("pod-running-timeout", None),
    ("address", None),
    ("image", None),
    ("image-pull-policy", None),
    ("restart", None),
    ("env", None),
    ("port", None),
    ("labels", None),
    ("dry-run", None),
    ("label-columns", Some('L')),
    ("sort-by", None),
    ("for", None),
    ("resource-version", None),
    ("api-group", None),
    ("patch", None),
    ("type", None),
    // create secret's.
    ("docker-server", None),
    ("docker-username", None),
    ("docker-password", None),
    ("docker-email", None),
    ("from-literal", None),
    ("from-file", None),
    ("from-env-file", None),
    ("cert", None),
    ("key", None),
];

/// The known long flag closest to a mistyped one (`--show-lables` → `show-labels`), if one is
/// close enough to be meant.
pub fn closest_flag(typed: &str) -> Option<&'static str> {
    VALUE_FLAGS
        .iter()
        .chain(BOOL_FLAGS)
        .map(|(long, _)| *long)
        .filter(|long| long.len() > 1)
        .map(|long| (strsim::damerau_levenshtein(typed, long), long))
        .filter(|(distance, long)| *distance <= 2 && *distance < long.len() / 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, long)| long)
}

/// Flags that are booleans: (long name, short letter).
const BOOL_FLAGS: &[(&str, Option<char>)] = &[
    ("all-namespaces", Some('A')),
    ("show-labels", None),
    ("no-headers", None),
    ("recursive", Some('R')),
    ("all", None),
    ("now", None),
    ("force", None),
    ("wait", None),
    ("ignore-not-found", None),
    ("insecure-skip-tls-verify", None),
    ("help", Some('h')),
    // The streaming verbs'.
    ("stdin", None),
    ("tty", None),
    ("quiet", None),
    ("follow", None),
    ("previous", None),
    ("timestamps", None),
    ("all-containers", None),
    ("prefix", None),
    ("ignore-errors", None),
    ("command", None),
    ("rm", None),
    ("no-preserve", None),
    ("watch", Some('w')),
    ("output-watch-events", None),
    ("overwrite", None),
    ("server-side", None),
    ("current", None),
    ("minify", None),
    ("raw", None),
    ("flatten", None),
    ("namespaced", None),
];

impl Flags {
    /// Parses kubectl's arguments (without the program name). A failure comes with the verb
    /// seen so far, for cobra's `See 'kubectl VERB --help'` line.
    pub fn parse(args: &[String]) -> Result<Flags, (Error, Option<String>)> {
        let mut flags = Flags {
            wait: true,
            ..Flags::default()
        };
        match flags.parse_into(args) {
            Ok(()) => Ok(flags),
            Err(err) => Err((err, flags.verb)),
        }
    }

    fn parse_into(&mut self, args: &[String]) -> Result<(), Error> {
        let flags = self;
        let mut iter = args.iter();
        let mut only_args = false;
        while let Some(arg) = iter.next() {
            if only_args || arg == "-" || !arg.starts_with('-') {
                if flags.verb.is_none() && !only_args {
                    flags.verb = Some(arg.clone());
                } else {
                    flags.args.push(arg.clone());
                }
                continue;
            }
            if arg == "--" {
                only_args = true;
                flags.args_before_dash = Some(flags.args.len());
                continue;
            }
            if let Some(long) = arg.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (long.to_owned(), None),
                };
                let is_value = VALUE_FLAGS.iter().any(|(long, _)| *long == name);
                if name == "dry-run" && inline.is_none() {
                    // kubectl's deprecated bare --dry-run: client, with a warning (printed by
                    // `run`); the next word is no value of it.
                    flags.set_value("dry-run", "client".to_owned())?;
                    flags.bare_dry_run = true;
                } else if is_value {
                    let value = match inline {
                        Some(value) => value,
                        None => iter.next().cloned().ok_or_else(|| {
                            Error::Usage(format!("flag needs an argument: --{name}"))
                        })?,
                    };
                    flags.set_value(&name, value)?;
                } else if BOOL_FLAGS.iter().any(|(long, _)| *long == name) {
                    flags.set_bool(&name, parse_bool(&name, inline.as_deref())?);
                } else {
                    return Err(Error::Usage(format!("unknown flag: --{name}")));
                }
                continue;
            }
            // A cluster of shorthands: booleans may be combined (`-it`), the first one that
            // takes a value takes the rest of the word (`-nvalue`, `-n=value`) or the next.
            let mut rest: String = arg[1..].to_owned();
            while !rest.is_empty() {
                let mut chars = rest.chars();
                let letter = chars.next().unwrap_or('-');
                let after: String = chars.collect();
                let name = flags.shorthand(letter).ok_or_else(|| {
                    Error::Usage(format!("unknown shorthand flag: '{letter}' in {arg}"))
                })?;
                if VALUE_FLAGS.iter().any(|(long, _)| *long == name) {
                    let value = match after.strip_prefix('=') {
                        Some(value) => value.to_owned(),
                        None if !after.is_empty() => after,
                        None => iter.next().cloned().ok_or_else(|| {
                            Error::Usage(format!("flag needs an argument: '{letter}' in -{letter}"))
                        })?,
                    };
                    flags.set_value(&name, value)?;
                    break;
                }
                if let Some(value) = after.strip_prefix('=') {
                    flags.set_bool(&name, parse_bool(&name, Some(value))?);
                    break;
                }
                flags.set_bool(&name, true);
                rest = after;
            }
        }
        Ok(())
    }

    /// The long name of shorthand `letter` for the verb seen so far (for the shell
    /// completion's `__complete VERB ...`, the verb completed).
    fn shorthand(&self, letter: char) -> Option<String> {
        let verb = match self.verb.as_deref() {
            Some("__complete" | "__completeNoDesc") => {
                self.args.first().map(String::as_str).unwrap_or_default()
            }
            verb => verb.unwrap_or_default(),
        };
        VERB_SHORTHANDS
            .iter()
            .find(|(v, l, _)| *v == verb && *l == letter)
            .map(|(_, _, long)| *long)
            .or_else(|| {
                VALUE_FLAGS
                    .iter()
                    .chain(BOOL_FLAGS)
                    .find(|(_, s)| *s == Some(letter))
                    .map(|(long, _)| *long)
            })
            .map(str::to_owned)
    }

    fn set_value(&mut self, name: &str, value: String) -> Result<(), Error> {
        match name {
            "kubeconfig" => self.kubeconfig = Some(value),
            "context" => self.context = Some(value),
            "cluster" => self.cluster = Some(value),
            "user" => self.user = Some(value),
            "namespace" => self.namespace = Some(value),
            "selector" => self.selector = Some(value),
            "field-selector" => self.field_selector = Some(value),
            "output" => self.output = Some(value),
            "filename" => self.filenames.push(value),
            "grace-period" => {
                self.grace_period = Some(value.parse().map_err(|_| {
                    Error::Usage(format!(
                        "invalid argument \"{value}\" for \"--grace-period\" flag: \
                         strconv.ParseInt: parsing \"{value}\": invalid syntax"
                    ))
                })?)
            }
            "container" => self.stream.container = Some(value),
            "tail" => self.stream.tail = Some(value),
            "since" => self.stream.since = Some(value),
            "since-time" => self.stream.since_time = Some(value),
            "limit-bytes" => self.stream.limit_bytes = Some(value),
            "max-log-requests" => self.stream.max_log_requests = Some(value),
            "address" => self.stream.address.push(value),
            "image" => self.stream.image = Some(value),
            "image-pull-policy" => self.stream.image_pull_policy = Some(value),
            "restart" => self.stream.restart = Some(value),
            "env" => self.stream.env.push(value),
            "port" => self.stream.port = Some(value),
            "labels" => self.stream.labels = Some(value),
            "dry-run" => {
                self.stream.dry_run = Some(value.clone());
                self.dry_run = Some(value);
            }
            "label-columns" => self.label_columns.extend(
                value
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned),
            ),
            "sort-by" => self.sort_by = Some(value),
            "for" => self.wait_for = Some(value),
            "timeout" => self.timeout = Some(value),
            "validate" => self.validate = Some(value),
            "api-group" => self.api_group = Some(value),
            "patch" => self.patch = Some(value),
            "type" => self.patch_type = Some(value),
            "docker-server" => self.secret.docker_server = Some(value),
            "docker-username" => self.secret.docker_username = Some(value),
            "docker-password" => self.secret.docker_password = Some(value),
            "docker-email" => self.secret.docker_email = Some(value),
            "from-literal" => self.secret.from_literal.push(value),
            "from-file" => self.secret.from_file.push(value),
            "from-env-file" => self.secret.from_env_file.push(value),
            "cert" => self.secret.cert = Some(value),
            "key" => self.secret.key = Some(value),
            // Accepted for kubectl's sake; this slice has no use for them.
            _ => {}
        }
        Ok(())
    }

    fn set_bool(&mut self, name: &str, value: bool) {
        match name {
            "all-namespaces" => self.all_namespaces = value,
            "show-labels" => self.show_labels = value,
            "no-headers" => self.no_headers = value,
            "recursive" => self.recursive = value,
            "all" => self.all = value,
            "now" => self.now = value,
            "force" => self.force = value,
            "wait" => self.wait = value,
            "ignore-not-found" => self.ignore_not_found = value,
            "help" => self.help = value,
            "stdin" => self.stream.stdin = value,
            "tty" => self.stream.tty = value,
            "quiet" => self.stream.quiet = value,
            "follow" => self.stream.follow = value,
            "previous" => self.stream.previous = value,
            "timestamps" => self.stream.timestamps = value,
            "all-containers" => self.stream.all_containers = value,
            "prefix" => self.stream.prefix = value,
            "command" => self.stream.command = value,
            "rm" => self.stream.rm = value,
            "no-preserve" => self.stream.no_preserve = value,
            "watch" => self.watch = value,
            "output-watch-events" => self.output_watch_events = value,
            "overwrite" => self.overwrite = value,
            "server-side" => self.server_side = value,
            "current" => self.current = value,
            "minify" => self.minify = value,
            "raw" => self.raw = value,
            "namespaced" => self.namespaced = Some(value),
            _ => {}
        }
    }
}

/// pflag's reading of a boolean flag's value (`--x`, `--x=false`, ...).
fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, Error> {
    match value {
        None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") | Some("True") => {
            Ok(true)
        }
        Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") | Some("False") => {
            Ok(false)
        }
        Some(other) => Err(Error::Usage(format!(
            "invalid argument \"{other}\" for \"--{name}\" flag: \
             strconv.ParseBool: parsing \"{other}\": invalid syntax"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Flags::parse(&args).expect("the arguments parse")
    }

    #[test]
    fn flags_go_anywhere_in_every_form() {
        let flags = parse(&[
            "-n",
            "x",
            "get",
            "po",
            "-lapp=a",
            "--output=wide",
            "kubia",
            "-A",
        ]);
        assert_eq!(flags.verb.as_deref(), Some("get"));
        assert_eq!(flags.args, ["po", "kubia"]);
        assert_eq!(flags.namespace.as_deref(), Some("x"));
        assert_eq!(flags.selector.as_deref(), Some("app=a"));
        assert_eq!(flags.output.as_deref(), Some("wide"));
        assert!(flags.all_namespaces);
        assert!(flags.wait);
    }

    #[test]
    fn booleans_take_explicit_values_and_dash_is_an_argument() {
        let flags = parse(&["delete", "--wait=false", "-f", "-", "--grace-period", "0"]);
        assert!(!flags.wait);
        assert_eq!(flags.filenames, ["-"]);
        assert_eq!(flags.grace_period, Some(0));
    }

    #[test]
    fn unknown_flags_are_refused_as_kubectl_refuses_them() {
        let args = vec!["get".to_owned(), "--bogus".to_owned()];
        let (err, verb) = Flags::parse(&args).expect_err("--bogus is unknown");
        assert_eq!(err.to_string(), "unknown flag: --bogus");
        assert_eq!(closest_flag("show-lables"), Some("show-labels"));
        assert_eq!(closest_flag("namespce"), Some("namespace"));
        assert_eq!(closest_flag("bogus"), None);
        assert_eq!(verb.as_deref(), Some("get"));
        let args = vec!["get".to_owned(), "-z".to_owned()];
        let (err, _) = Flags::parse(&args).expect_err("-z is unknown");
        assert_eq!(err.to_string(), "unknown shorthand flag: 'z' in -z");
        let args = vec!["exec".to_owned(), "one".to_owned(), "-c".to_owned()];
        let (err, _) = Flags::parse(&args).expect_err("-c needs a value");
        assert_eq!(err.to_string(), "flag needs an argument: 'c' in -c");
    }

    #[test]
    fn shorthands_combine_and_depend_on_the_verb() {
        let flags = parse(&["exec", "-it", "one", "-cmain", "--", "sh", "-c", "x"]);
        assert!(flags.stream.stdin && flags.stream.tty);
        assert_eq!(flags.stream.container.as_deref(), Some("main"));
        assert_eq!(flags.args, ["one", "sh", "-c", "x"]);
        assert_eq!(flags.args_before_dash, Some(1));
        let flags = parse(&["logs", "-f", "one", "-p"]);
        assert!(flags.stream.follow && flags.stream.previous);
        assert!(flags.filenames.is_empty());
        let flags = parse(&["run", "x", "-l", "a=b", "-it"]);
        assert_eq!(flags.stream.labels.as_deref(), Some("a=b"));
        assert_eq!(flags.selector, None);
        let flags = parse(&["get", "po", "-Anx"]);
        assert!(flags.all_namespaces);
        assert_eq!(flags.namespace.as_deref(), Some("x"));
    }
}
