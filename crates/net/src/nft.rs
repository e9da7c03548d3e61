//! The node's nftables table (one of our own, so nothing else on the host is touched):
//! masquerade of pod traffic leaving the cluster CIDR, and hostPort DNAT through a map whose
//! elements are added and removed with each pod. Applied with `nft -f -` (one atomic
//! transaction each); only pods with hostPorts pay for a run of `nft` when they start and go.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::cidr::Ipv4Cidr;
use crate::{Error, HostPort, Result};

/// The map of hostPorts: `protocol . host port : pod address . container port`.
const HOST_PORTS: &str = "hostports";

/// Our table in the `ip` family.
#[derive(Clone, Debug)]
pub struct NftTable {
    pub name: String,
    /// The pods' bridge: connections to a hostPort on 127.0.0.1 leave through it.
    pub bridge: String,
    pub cluster_cidr: Ipv4Cidr,
}

/// Runs `nft -f -` with `script`.
pub fn run(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Nft(format!(
                "cannot run nft (is the nftables package installed?): {e}"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Nft(format!("cannot write to nft: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::Nft(format!("cannot wait for nft: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

/// `nft` with arguments, its standard output.
fn query(args: &[&str]) -> Result<String> {
    let output = Command::new("nft")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Nft(format!("cannot run nft: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Nft(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

fn element_key(port: &HostPort) -> String {
    format!("{} . {}", port.protocol.nft_name(), port.host_port)
}

fn element(address: Ipv4Addr, port: &HostPort) -> String {
    format!(
        "{} : {} . {}",
        element_key(port),
        address,
        port.container_port
    )
}

impl NftTable {
    /// The table's chains and rules, rewritten in place: the map and its elements (the
    /// hostPorts of pods that survive an agent restart) stay.
    pub fn script(&self) -> String {
        let (t, cidr, bridge) = (&self.name, self.cluster_cidr, &self.bridge);
        format!(
            "add table ip {t}\n\
             add map ip {t} {HOST_PORTS} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add chain ip {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}\n\
             add chain ip {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             add chain ip {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}\n\
             flush chain ip {t} prerouting\n\
             flush chain ip {t} output\n\
             flush chain ip {t} postrouting\n\
             add rule ip {t} prerouting fib daddr type local dnat ip to meta l4proto . th dport map @{HOST_PORTS}\n\
             add rule ip {t} output fib daddr type local dnat ip to meta l4proto . th dport map @{HOST_PORTS}\n\
             add rule ip {t} postrouting ip saddr {cidr} ip daddr != {cidr} masquerade\n\
             add rule ip {t} postrouting ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n"
        )
    }

    /// Creates the table or brings its rules up to date.
    pub fn ensure(&self) -> Result<()> {
        run(&self.script())
    }

    /// Publishes `ports` of the pod at `address`.
    pub fn add_host_ports(&self, address: Ipv4Addr, ports: &[HostPort]) -> Result<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let elements: Vec<String> = ports.iter().map(|p| element(address, p)).collect();
        run(&format!(
            "add element ip {} {HOST_PORTS} {{ {} }}\n",
            self.name,
            elements.join(", ")
        ))
    }

    /// Withdraws `ports` of the pod at `address`; idempotent, and never removes a port that
    /// maps to another pod (the add of our element fails then, and with it the transaction).
    pub fn remove_host_ports(&self, address: Ipv4Addr, ports: &[HostPort]) -> Result<()> {
        let mut errors = Vec::new();
        for port in ports {
            let script = format!(
                "add element ip {t} {HOST_PORTS} {{ {} }}\ndelete element ip {t} {HOST_PORTS} {{ {} }}\n",
                element(address, port),
                element_key(port),
                t = self.name,
            );
            if let Err(e) = run(&script) {
                errors.push(format!("hostPort {}: {e}", element_key(port)));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Several(errors))
        }
    }

    /// The map's elements as `nft` prints them (for tests and leak checks).
    pub fn host_port_elements(&self) -> Result<String> {
        let text = query(&["list", "map", "ip", &self.name, HOST_PORTS])?;
        Ok(text
            .lines()
            .filter(|l| l.trim_start().starts_with("elements"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Removes the whole table (tests, and clusters torn down for good); idempotent.
    pub fn delete(&self) -> Result<()> {
        run(&format!(
            "add table ip {t}\ndelete table ip {t}\n",
            t = self.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    #[test]
    fn script_masquerades_the_cluster_cidr_and_maps_host_ports() {
        let table = NftTable {
            name: "skiff".to_string(),
            bridge: "skiff0".to_string(),
            cluster_cidr: "10.42.0.0/16".parse().expect("valid"),
        };
        let script = table.script();
        assert!(script.contains(
            "add rule ip skiff postrouting ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 masquerade"
        ));
        assert!(script.contains("oifname \"skiff0\" masquerade"));
        assert!(script.contains("dnat ip to meta l4proto . th dport map @hostports"));
        let port = HostPort {
            protocol: Protocol::Udp,
            host_port: 5353,
            container_port: 53,
        };
        assert_eq!(
            element(Ipv4Addr::new(10, 42, 0, 7), &port),
            "udp . 5353 : 10.42.0.7 . 53"
        );
    }
}
