//! Pod address allocation kept on disk, as CNI's host-local plugin does: one file per address
//! in use (`<dir>/<ip>`, holding the sandbox id), created with O_EXCL so an address is never
//! handed out twice, and surviving agent restarts.

use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cidr::Ipv4Cidr;
use crate::{io_error, Error, Result};

/// Addresses of a pod subnet handed to sandboxes.
pub struct AddressBook {
    dir: PathBuf,
    /// Where the last search stopped: the next starts after it, so a freed address is not
    /// reused at once (a peer may still hold it in its ARP cache or conntrack). Not on disk
    /// (rewriting a file costs ~1 ms on ext4); after a restart, the highest address in use.
    /// Its lock serialises allocations of this process (files guard against double use anyway).
    last: Mutex<Option<Ipv4Addr>>,
}

impl AddressBook {
    /// The book kept in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<AddressBook> {
        std::fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
        let mut book = AddressBook {
            dir: dir.to_path_buf(),
            last: Mutex::new(None),
        };
        let highest = book.list()?.into_iter().map(|(a, _)| a).max();
        book.last = Mutex::new(highest);
        Ok(book)
    }

    /// Takes a free address of `subnet` for `sandbox`. (Whether the sandbox already holds one
    /// is its record's business: looking here would read every file, per pod.)
    pub fn allocate(&self, subnet: &Ipv4Cidr, sandbox: &str) -> Result<Ipv4Addr> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let candidates: Vec<Ipv4Addr> = subnet.pod_addresses().collect();
        // Round-robin: start after the last address handed out.
        let start = last
            .and_then(|l| candidates.iter().position(|a| *a == l))
            .map_or(0, |i| i + 1);
        for i in 0..candidates.len() {
            let address = candidates[(start + i) % candidates.len()];
            let path = self.dir.join(address.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    if let Err(e) = file.write_all(sandbox.as_bytes()) {
                        let _ = std::fs::remove_file(&path);
                        return Err(io_error("writing", &path, e));
                    }
                    *last = Some(address);
                    return Ok(address);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("creating", &path, e)),
            }
        }
        Err(Error::Exhausted {
            subnet: *subnet,
            in_use: candidates.len(),
        })
    }

    /// Every address and the sandbox holding it.
    pub fn list(&self) -> Result<Vec<(Ipv4Addr, String)>> {
        let entries =
            std::fs::read_dir(&self.dir).map_err(|e| io_error("listing", &self.dir, e))?;
        let mut held = Vec::new();
        for entry in entries.flatten() {
            let Some(address) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            // A file being written right now reads empty: it is someone's, keep it.
            let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
            held.push((address, owner.trim().to_string()));
        }
        held.sort();
        Ok(held)
    }

    /// The addresses `sandbox` holds.
    pub fn held_by(&self, sandbox: &str) -> Result<Vec<Ipv4Addr>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|(_, owner)| owner == sandbox)
            .map(|(a, _)| a)
            .collect())
    }

    /// Gives `address` back if `sandbox` holds it; idempotent.
    pub fn release(&self, address: Ipv4Addr, sandbox: &str) -> Result<()> {
        let path = self.dir.join(address.to_string());
        match std::fs::read_to_string(&path) {
            Ok(owner) if owner.trim() == sandbox => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("reading", &path, e)),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("removing", &path, e)),
        }
    }

    /// Releases every address held by a sandbox not in `live` (a crash between allocation and
    /// record, or a sandbox removed while the agent was down). Returns what was released.
    pub fn release_all_but(&self, live: &HashSet<String>) -> Result<Vec<Ipv4Addr>> {
        let mut released = Vec::new();
        for (address, owner) in self.list()? {
            if !owner.is_empty() && !live.contains(&owner) {
                self.release(address, &owner)?;
                released.push(address);
            }
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(text: &str) -> Ipv4Cidr {
        text.parse().expect("valid CIDR")
    }

    #[test]
    fn hands_out_each_address_once_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let net = subnet("10.1.2.0/29"); // .2 to .6: five pod addresses
        let book = AddressBook::open(dir.path()).expect("open");
        let a = book.allocate(&net, "a").expect("a");
        let b = book.allocate(&net, "b").expect("b");
        assert_eq!(a, Ipv4Addr::new(10, 1, 2, 2));
        assert_eq!(b, Ipv4Addr::new(10, 1, 2, 3));
        // A restarted agent sees what is in use and never hands it out again, and goes on
        // after the highest address in use.
        let book = AddressBook::open(dir.path()).expect("reopen");
        let mut seen = HashSet::from([a, b]);
        for name in ["c", "d", "e"] {
            let address = book.allocate(&net, name).expect("free address");
            assert!(seen.insert(address), "{address} handed out twice");
        }
        match book.allocate(&net, "f") {
            Err(Error::Exhausted { in_use, .. }) => assert_eq!(in_use, 5),
            other => panic!("expected exhaustion, got {other:?}"),
        }
        // Released addresses come back, round-robin after the last one handed out.
        book.release(b, "b").expect("release");
        book.release(a, "not-the-owner").expect("no-op");
        assert_eq!(book.held_by("a").expect("list"), vec![a]);
        assert_eq!(book.allocate(&net, "f").expect("f"), b);
    }

    #[test]
    fn garbage_collection_releases_what_no_live_sandbox_holds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let net = subnet("10.1.2.0/24");
        let book = AddressBook::open(dir.path()).expect("open");
        let keep = book.allocate(&net, "keep").expect("keep");
        let gone = book.allocate(&net, "gone").expect("gone");
        let released = book
            .release_all_but(&HashSet::from(["keep".to_string()]))
            .expect("gc");
        assert_eq!(released, vec![gone]);
        assert_eq!(book.list().expect("list"), vec![(keep, "keep".to_string())]);
    }
}
