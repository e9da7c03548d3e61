//! Finding the kubeconfig as kubectl does (`--kubeconfig`, then `$KUBECONFIG` merged, then
//! `~/.kube/config`), with one Skiff addition: when none exists, the local server's admin
//! kubeconfig, so `skiff get po` works right after `skiff server`.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::{Error, Flags, Result};

/// Where `skiff server` keeps its data by default (and `$SKIFF_DATA_DIR` overrides).
const DEFAULT_DATA_DIR: &str = "/var/lib/skiff";

/// The merged kubeconfig kubectl would use, or None when it would find none.
pub fn load(flags: &Flags) -> Result<Kubeconfig> {
    match candidates_here(flags) {
        Candidates::Explicit(path) => read(&path),
        Candidates::Merged(paths) => {
            let mut merged: Option<Kubeconfig> = None;
            // kubectl skips files of the list that do not exist, and reads the rest in order:
            // the first file to set a map key or current-context wins.
            for path in paths.iter().filter(|p| p.exists()) {
                let next = read(path)?;
                merged = Some(match merged {
                    None => next,
                    Some(config) => config.merge(next).map_err(|source| Error::Kubeconfig {
                        what: format!("cannot merge {}", path.display()),
                        source: Box::new(source),
                    })?,
                });
            }
            merged.ok_or_else(|| no_config(&paths))
        }
        Candidates::FirstExisting(paths) => match paths.iter().find(|p| p.exists()) {
            Some(path) => read(path),
            None => Err(no_config(&paths)),
        },
    }
}

/// The kubeconfig files kubectl would read, in merge order (for `config` to read and edit
/// them as files): the `--kubeconfig` file, the existing files of `$KUBECONFIG`, or the first
/// existing default. Empty when none exists.
pub fn files(flags: &Flags) -> Vec<PathBuf> {
    match candidates_here(flags) {
        Candidates::Explicit(path) => vec![path],
        Candidates::Merged(paths) => paths.into_iter().filter(|p| p.exists()).collect(),
        Candidates::FirstExisting(paths) => {
            paths.into_iter().find(|p| p.exists()).into_iter().collect()
        }
    }
}

/// Checks that `--context` names a context of the kubeconfig, with kubectl's message.
pub fn check_context(kubeconfig: &Kubeconfig, flags: &Flags) -> Result<()> {
    match &flags.context {
        Some(name) if !kubeconfig.contexts.iter().any(|c| &c.name == name) => {
            Err(Error::Configuration(format!(
                "context was not found for specified context: {name}"
            )))
        }
        _ => Ok(()),
    }
}

/// The options kubectl's `--context`, `--cluster` and `--user` select.
pub fn options(flags: &Flags) -> KubeConfigOptions {
    KubeConfigOptions {
        context: flags.context.clone(),
        cluster: flags.cluster.clone(),
        user: flags.user.clone(),
    }
}

#[derive(Debug, PartialEq)]
enum Candidates {
    /// `--kubeconfig`: this file and no other, which must exist.
    Explicit(PathBuf),
    /// `$KUBECONFIG`: these files, merged.
    Merged(Vec<PathBuf>),
    /// The first of these that exists (`~/.kube/config`, then the admin kubeconfig).
    FirstExisting(Vec<PathBuf>),
}

/// [`candidates`] for `flags` in this process's environment.
fn candidates_here(flags: &Flags) -> Candidates {
    candidates(
        flags.kubeconfig.as_deref(),
        std::env::var("KUBECONFIG").ok().as_deref(),
        std::env::var_os("HOME").map(PathBuf::from).as_deref(),
        std::env::var_os("SKIFF_DATA_DIR")
            .map(PathBuf::from)
            .as_deref(),
    )
}

fn candidates(
    explicit: Option<&str>,
    env: Option<&str>,
    home: Option<&Path>,
    data_dir: Option<&Path>,
) -> Candidates {
    if let Some(path) = explicit.filter(|p| !p.is_empty()) {
        return Candidates::Explicit(PathBuf::from(path));
    }
    if let Some(list) = env.filter(|l| !l.is_empty()) {
        let paths: Vec<PathBuf> = list
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if !paths.is_empty() {
            return Candidates::Merged(paths);
        }
    }
    let mut paths = Vec::new();
    if let Some(home) = home {
        paths.push(home.join(".kube/config"));
    }
    paths.push(
        data_dir
            .unwrap_or(Path::new(DEFAULT_DATA_DIR))
            .join("admin.kubeconfig"),
    );
    Candidates::FirstExisting(paths)
}

fn read(path: &Path) -> Result<Kubeconfig> {
    if !path.exists() {
        return Err(Error::Message(format!(
            "stat {}: no such file or directory",
            path.display()
        )));
    }
    Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
        what: format!("cannot read the kubeconfig {}", path.display()),
        source: Box::new(source),
    })
}

fn no_config(paths: &[PathBuf]) -> Error {
    let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Error::Message(format!(
        "no kubeconfig found (tried {}): pass --kubeconfig, set KUBECONFIG, or run `skiff server` \
         on this machine",
        tried.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_home_then_the_server() {
        assert_eq!(
            candidates(Some("/a"), Some("/b"), Some(Path::new("/h")), None),
            Candidates::Explicit("/a".into())
        );
        assert_eq!(
            candidates(None, Some("/b::/c"), Some(Path::new("/h")), None),
            Candidates::Merged(vec!["/b".into(), "/c".into()])
        );
        assert_eq!(
            candidates(None, Some(""), Some(Path::new("/h")), Some(Path::new("/d"))),
            Candidates::FirstExisting(vec!["/h/.kube/config".into(), "/d/admin.kubeconfig".into()])
        );
        assert_eq!(
            candidates(None, None, None, None),
            Candidates::FirstExisting(vec!["/var/lib/skiff/admin.kubeconfig".into()])
        );
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write a test kubeconfig");
        path
    }

    #[test]
    fn merged_files_keep_the_first_value_of_each_key() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let first = write(
            dir.path(),
            "a",
            "apiVersion: v1\nkind: Config\ncurrent-context: one\ncontexts:\n- name: one\n  \
             context: {cluster: c1, user: u1, namespace: first}\nclusters:\n- name: c1\n  \
             cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u1\n  user: {token: t1}\n",
        );
        let second = write(
            dir.path(),
            "b",
            "apiVersion: v1\nkind: Config\ncurrent-context: two\ncontexts:\n- name: one\n  \
             context: {cluster: c2, user: u1, namespace: second}\n- name: two\n  \
             context: {cluster: c2, user: u1}\nclusters:\n- name: c2\n  \
             cluster: {server: 'https://127.0.0.1:2'}\n",
        );
        let list = format!("{}:{}", first.display(), second.display());
        let Candidates::Merged(paths) = candidates(None, Some(&list), None, None) else {
            panic!("KUBECONFIG gives a merged list");
        };
        let mut merged: Option<Kubeconfig> = None;
        for path in &paths {
            let next = read(path).expect("the file parses");
            merged = Some(match merged {
                None => next,
                Some(config) => config.merge(next).expect("the files merge"),
            });
        }
        let merged = merged.expect("two files were read");
        assert_eq!(merged.current_context.as_deref(), Some("one"));
        let one = merged
            .contexts
            .iter()
            .find(|c| c.name == "one")
            .and_then(|c| c.context.as_ref())
            .expect("context one is there");
        assert_eq!(one.namespace.as_deref(), Some("first"));
        assert_eq!(merged.contexts.len(), 2);
        assert_eq!(merged.clusters.len(), 2);
    }
}
