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
    /// The verb (`get`, `delete`, ...), when one was given.
    pub verb: Option<String>,
    /// The arguments after the verb that are not flags.
    pub args: Vec<String>,
}

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
];

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
                continue;
            }
            let (name, inline) = if let Some(long) = arg.strip_prefix("--") {
                match long.split_once('=') {
                    Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                    None => (long.to_owned(), None),
                }
            } else {
                let short = &arg[1..];
                let mut chars = short.chars();
                let letter = chars.next().unwrap_or('-');
                let rest: String = chars.collect();
                let long = VALUE_FLAGS
                    .iter()
                    .chain(BOOL_FLAGS)
                    .find(|(_, s)| *s == Some(letter))
                    .map(|(long, _)| long.to_string())
                    .ok_or_else(|| {
                        Error::Usage(format!("unknown shorthand flag: '{letter}' in {arg}"))
                    })?;
                let inline = match rest.strip_prefix('=') {
                    Some(value) => Some(value.to_owned()),
                    None if rest.is_empty() => None,
                    None => Some(rest),
                };
                (long, inline)
            };
            if VALUE_FLAGS.iter().any(|(long, _)| *long == name) {
                let value = match inline {
                    Some(value) => value,
                    None => iter
                        .next()
                        .cloned()
                        .ok_or_else(|| Error::Usage(format!("flag needs an argument: {arg}")))?,
                };
                flags.set_value(&name, value)?;
            } else if BOOL_FLAGS.iter().any(|(long, _)| *long == name) {
                let value = match inline.as_deref() {
                    None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => true,
                    Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => false,
                    Some(other) => {
                        return Err(Error::Usage(format!(
                            "invalid argument \"{other}\" for \"--{name}\" flag: \
                             strconv.ParseBool: parsing \"{other}\": invalid syntax"
                        )))
                    }
                };
                flags.set_bool(&name, value);
            } else {
                return Err(Error::Usage(format!("unknown flag: --{name}")));
            }
        }
        Ok(())
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
            _ => {}
        }
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
        assert_eq!(verb.as_deref(), Some("get"));
        let args = vec!["get".to_owned(), "-z".to_owned()];
        let (err, _) = Flags::parse(&args).expect_err("-z is unknown");
        assert_eq!(err.to_string(), "unknown shorthand flag: 'z' in -z");
    }
}
