//! The pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, with the content kubelet
//! computes for them (and containerd writes, for resolv.conf). Pure functions: the sandbox writes
//! what they return.

use std::net::IpAddr;

use super::{DnsPolicy, DnsSpec, HostAlias};

/// Kubelet's header: tools (and people) recognise a hosts file kubelet manages by it.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";

/// Kubernetes' limits on the resolver configuration (validation.MaxDNSNameservers and the
/// expanded search limits, GA since 1.28).
pub const MAX_NAMESERVERS: usize = 3;
pub const MAX_SEARCH_PATHS: usize = 32;
pub const MAX_SEARCH_LINE_CHARS: usize = 2048;
/// glibc aborts on a search path longer than a DNS subdomain may be; kubelet drops them.
const MAX_SEARCH_PATH_CHARS: usize = 253;

/// `/etc/hosts` as kubelet writes it for a pod that is not on the host network: localhost lines,
/// one line per pod IP (`IP\tHOSTNAME`, or `IP\tHOSTNAME.DOMAIN\tHOSTNAME` with a subdomain), then
/// the pod's hostAliases.
pub fn hosts_file(
    hostname: &str,
    domain: Option<&str>,
    pod_ips: &[IpAddr],
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        match domain.filter(|d| !d.is_empty()) {
            Some(domain) => out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    push_aliases(&mut out, aliases);
    out
}

/// Kubelet's header of a hostNetwork pod's hosts file.
pub const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str =
    "# Kubernetes-managed hosts file (host network).\n";

/// `/etc/hosts` as kubelet writes it for a hostNetwork pod: its header, the node's own hosts
/// file as it is, then the pod's hostAliases.
pub fn host_network_hosts_file(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    push_aliases(&mut out, aliases);
    out
}

fn push_aliases(out: &mut String, aliases: &[HostAlias]) {
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
    }
}

/// The most a hostname may have in Kubernetes (a DNS label).
pub const MAX_HOSTNAME_CHARS: usize = 63;

/// The pod's hostname and domain as kubelet's GeneratePodHostNameAndDomain computes them:
/// spec.hostname, else the pod's name, cut to 63 characters (without a trailing `-` or `.`);
/// with spec.subdomain, the domain `<subdomain>.<namespace>.svc.<cluster domain>`. Both become
/// [`super::SandboxSpec`]'s `hostname` and `domain`.
pub fn pod_hostname(
    pod_name: &str,
    spec_hostname: Option<&str>,
    subdomain: Option<&str>,
    namespace: &str,
    cluster_domain: &str,
) -> (String, Option<String>) {
    let mut hostname = spec_hostname
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_name)
        .to_string();
    if hostname.len() > MAX_HOSTNAME_CHARS {
        // Names are ASCII (DNS subdomains), so cutting at a byte is cutting at a character.
        let mut end = MAX_HOSTNAME_CHARS;
        while !hostname.is_char_boundary(end) {
            end -= 1;
        }
        hostname.truncate(end);
        let trimmed = hostname.trim_end_matches(['-', '.']).len();
        hostname.truncate(trimmed);
    }
    let domain = subdomain
        .filter(|s| !s.is_empty())
        .map(|subdomain| format!("{subdomain}.{namespace}.svc.{cluster_domain}"));
    (hostname, domain)
}

/// `/etc/hostname`: the pod's hostname and a newline, as containerd writes it.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// A resolver configuration: what `/etc/resolv.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `name` or `name:value`, in order.
    pub options: Vec<String>,
}

impl ResolverConfig {
    /// Parses a resolv.conf as kubelet does: nameservers accumulate, the last `search` and the
    /// last `options` line win, a trailing dot of a search domain is dropped.
    pub fn parse(text: &str) -> ResolverConfig {
        let mut config = ResolverConfig::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    if let Some(server) = fields.next() {
                        config.nameservers.push(server.to_string());
                    }
                }
                Some("search") => {
                    config.searches = fields
                        .filter(|s| *s != ".")
                        .map(|s| s.trim_end_matches('.').to_string())
                        .collect();
                }
                Some("options") => config.options = fields.map(str::to_string).collect(),
                _ => {}
            }
        }
        config
    }

    /// The file's text, as containerd writes a pod's resolv.conf from kubelet's DNS config.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for server in &self.nameservers {
            out.push_str(&format!("nameserver {server}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// The pod's resolver configuration, as kubelet's `GetPodDNS` computes it from the pod's
/// dnsPolicy and dnsConfig, the cluster DNS and the node's resolv.conf (`host`: its text, `None`
/// if it could not be read). Also returns warnings for the pod's events, in kubelet's words.
pub fn pod_dns(
    dns: &DnsSpec,
    namespace: &str,
    host: Option<&str>,
) -> (ResolverConfig, Vec<String>) {
    let mut warnings = Vec::new();
    let host = host.map(ResolverConfig::parse).unwrap_or_default();
    let mut config = match dns.policy {
        DnsPolicy::None => ResolverConfig::default(),
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet
            if !dns.cluster_dns.is_empty() =>
        {
            let mut searches = Vec::new();
            if !dns.cluster_domain.is_empty() {
                let domain = &dns.cluster_domain;
                searches.push(format!("{namespace}.svc.{domain}"));
                searches.push(format!("svc.{domain}"));
                searches.push(domain.clone());
            }
            searches.extend(host.searches);
            ResolverConfig {
                nameservers: dns.cluster_dns.clone(),
                searches: dedup(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        DnsPolicy::ClusterFirst | DnsPolicy::ClusterFirstWithHostNet => {
            // No cluster DNS yet: kubelet falls back to the node's configuration and says so.
            warnings.push(
                "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy."
                    .to_string(),
            );
            host
        }
        DnsPolicy::Default => host,
    };
    // dnsConfig is appended to whatever the policy gave: duplicates dropped, options by name.
    config.nameservers.extend(dns.nameservers.iter().cloned());
    config.nameservers = dedup(std::mem::take(&mut config.nameservers));
    config.searches.extend(dns.searches.iter().cloned());
    config.searches = dedup(std::mem::take(&mut config.searches));
    for option in &dns.options {
        let text = match &option.value {
            Some(value) if !value.is_empty() => format!("{}:{value}", option.name),
            _ => option.name.clone(),
        };
        let same_name = |existing: &String| {
            existing
                .split_once(':')
                .map_or(existing.as_str(), |(n, _)| n)
                == option.name
        };
        match config.options.iter().position(same_name) {
            Some(i) => config.options[i] = text,
            None => config.options.push(text),
        }
    }
    fit_limits(&mut config, &mut warnings);
    (config, warnings)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// Kubelet's formDNSConfigFitsLimits: cut what the resolver (or glibc) would choke on.
fn fit_limits(config: &mut ResolverConfig, warnings: &mut Vec<String>) {
    if config.nameservers.len() > MAX_NAMESERVERS {
        config.nameservers.truncate(MAX_NAMESERVERS);
        warnings.push(format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            config.nameservers.join(" ")
        ));
    }
    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config.searches.retain(|s| s.len() <= MAX_SEARCH_PATH_CHARS);
    exceeded |= config.searches.len() != before;
    while config.searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        config.searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push(format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            config.searches.join(" ")
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a test fails loudly on a missing value
mod tests {
    use super::*;
    use crate::sandbox::DnsOption;

    #[test]
    fn hosts_file_is_kubelets() {
        let ip: IpAddr = "10.200.0.4".parse().unwrap();
        assert_eq!(
            hosts_file("nginx", None, &[ip], &[]),
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.200.0.4\tnginx\n"
        );
        let aliases = vec![
            HostAlias {
                ip: "127.0.0.1".into(),
                hostnames: vec!["foo.local".into(), "bar.local".into()],
            },
            HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: vec!["foo.remote".into()],
            },
        ];
        let text = hosts_file(
            "web-0",
            Some("web.default.svc.cluster.local"),
            &[ip],
            &aliases,
        );
        assert!(text.contains("10.200.0.4\tweb-0.web.default.svc.cluster.local\tweb-0\n"));
        assert!(text.ends_with(
            "fe00::2\tip6-allrouters\n10.200.0.4\tweb-0.web.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\n"
        ));
        // Before networking gave an IP: no pod line.
        let text = hosts_file("nginx", None, &[], &[]);
        assert!(text.ends_with("fe00::2\tip6-allrouters\n"));
        assert_eq!(hostname_file("nginx"), "nginx\n");
    }

    #[test]
    fn host_network_hosts_file_is_the_nodes_with_the_aliases() {
        let node = "127.0.0.1\tlocalhost\n10.0.0.5\tnode-a\n";
        assert_eq!(
            host_network_hosts_file(node, &[]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n10.0.0.5\tnode-a\n"
        );
        let aliases = [HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: vec!["foo".into(), "bar".into()],
        }];
        assert_eq!(
            host_network_hosts_file(node, &aliases),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n10.0.0.5\tnode-a\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo\tbar\n"
        );
    }

    #[test]
    fn pod_hostname_as_kubelet() {
        assert_eq!(
            pod_hostname("kubia-manual", None, None, "default", "cluster.local"),
            ("kubia-manual".to_string(), None)
        );
        assert_eq!(
            pod_hostname("web-0", Some("db"), Some("svc1"), "team", "cluster.local"),
            (
                "db".to_string(),
                Some("svc1.team.svc.cluster.local".to_string())
            )
        );
        // 62 characters, then a dash: cut to 63 and the trailing dash dropped.
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let (hostname, _) = pod_hostname(&long, None, None, "default", "cluster.local");
        assert_eq!(hostname, "a".repeat(62));
    }

    const HOST: &str = "# generated\nnameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch old.example\nsearch example.com. lan\noptions timeout:2 rotate\n";

    #[test]
    fn parses_resolv_conf_as_kubelet() {
        let config = ResolverConfig::parse(HOST);
        assert_eq!(config.nameservers, ["192.168.1.1", "192.168.1.2"]);
        assert_eq!(config.searches, ["example.com", "lan"]);
        assert_eq!(config.options, ["timeout:2", "rotate"]);
        assert_eq!(
            config.render(),
            "search example.com lan\nnameserver 192.168.1.1\nnameserver 192.168.1.2\noptions timeout:2 rotate\n"
        );
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_the_host() {
        let (config, warnings) = pod_dns(&DnsSpec::default(), "default", Some(HOST));
        assert_eq!(config, ResolverConfig::parse(HOST));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("Falling back to \"Default\" policy"));
    }

    #[test]
    fn cluster_first_with_cluster_dns() {
        let dns = DnsSpec {
            cluster_dns: vec!["10.43.0.10".into()],
            ..DnsSpec::default()
        };
        let (config, warnings) = pod_dns(&dns, "team", Some(HOST));
        assert!(warnings.is_empty());
        assert_eq!(
            config.render(),
            "search team.svc.cluster.local svc.cluster.local cluster.local example.com lan\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn dns_config_is_merged() {
        let dns = DnsSpec {
            policy: DnsPolicy::Default,
            nameservers: vec!["192.168.1.2".into(), "1.1.1.1".into(), "8.8.8.8".into()],
            searches: vec!["lan".into(), "corp".into()],
            options: vec![
                DnsOption {
                    name: "timeout".into(),
                    value: Some("5".into()),
                },
                DnsOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
            ..DnsSpec::default()
        };
        let (config, warnings) = pod_dns(&dns, "default", Some(HOST));
        // Four distinct servers: the fourth is cut, with kubelet's warning.
        assert_eq!(
            config.nameservers,
            ["192.168.1.1", "192.168.1.2", "1.1.1.1"]
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("Nameserver limits were exceeded"));
        assert_eq!(config.searches, ["example.com", "lan", "corp"]);
        assert_eq!(config.options, ["timeout:5", "rotate", "edns0"]);
    }

    #[test]
    fn policy_none_uses_dns_config_only() {
        let dns = DnsSpec {
            policy: DnsPolicy::None,
            nameservers: vec!["1.2.3.4".into()],
            searches: vec!["ns1.svc.cluster-domain.example".into()],
            options: vec![DnsOption {
                name: "ndots".into(),
                value: Some("2".into()),
            }],
            ..DnsSpec::default()
        };
        let (config, warnings) = pod_dns(&dns, "default", Some(HOST));
        assert!(warnings.is_empty());
        assert_eq!(
            config.render(),
            "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2\n"
        );
    }

    #[test]
    fn search_limits() {
        let dns = DnsSpec {
            policy: DnsPolicy::None,
            searches: (0..40).map(|i| format!("d{i}.example")).collect(),
            ..DnsSpec::default()
        };
        let (config, warnings) = pod_dns(&dns, "default", None);
        assert_eq!(config.searches.len(), MAX_SEARCH_PATHS);
        assert!(warnings[0].starts_with("Search Line limits were exceeded"));
    }
}
