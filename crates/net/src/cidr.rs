//! IPv4 networks in CIDR notation, and carving a cluster CIDR into per-node subnets (what
//! kube-controller-manager's node-ipam does with `--cluster-cidr` and `--node-cidr-mask-size`).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address whose host bits are zero, and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a text is not an IPv4 network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not in CIDR notation (ADDRESS/PREFIX, e.g. 10.42.0.0/16)")]
    Syntax(String),
    #[error("{0:?} is not an IPv4 address")]
    Address(String),
    #[error("{0:?} is not a prefix length from 0 to 32")]
    Prefix(String),
    #[error("{text} has host bits set: the network is {network}")]
    HostBits { text: String, network: Ipv4Cidr },
    #[error(
        "the cluster CIDR {cluster} is too small for a /{node_prefix} per node (--cluster-cidr \
         needs a prefix of at most /{node_prefix})"
    )]
    TooSmall { cluster: Ipv4Cidr, node_prefix: u8 },
    #[error("a node subnet must be a /16 to a /30, not /{0}")]
    NodePrefix(u8),
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Cidr {
    /// The network `address/prefix`; host bits are cleared.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Ipv4Cidr {
        let prefix = prefix.min(32);
        Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix)),
            prefix,
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the network spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `n`-th address of the network (0: the network address); None past its end.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        let n = u32::try_from(n).ok()?;
        Some(Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The gateway of a pod subnet: its first host address (`.1` of a /24).
    pub fn gateway(&self) -> Option<Ipv4Addr> {
        self.nth(1)
    }

    /// The addresses pods may take: all but the network address, the gateway and the
    /// broadcast address.
    pub fn pod_addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        (2..self.size().saturating_sub(1)).filter_map(|n| self.nth(n))
    }

    /// How many subnets of `/prefix` the network holds (0 when `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }

    /// The `index`-th subnet of `/prefix`.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if index >= self.subnet_count(prefix) {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let start = u64::from(u32::from(self.network)) + index * step;
        Some(Ipv4Cidr::new(
            Ipv4Addr::from(u32::try_from(start).ok()?),
            prefix,
        ))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// Strict, as Kubernetes validates a podCIDR: host bits must be zero.
    fn from_str(text: &str) -> Result<Ipv4Cidr, CidrError> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(text.to_string()))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| CidrError::Address(address.to_string()))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| CidrError::Prefix(prefix.to_string()))?;
        let network = Ipv4Cidr::new(address, prefix);
        if network.network != address {
            return Err(CidrError::HostBits {
                text: text.to_string(),
                network,
            });
        }
        Ok(network)
    }
}

impl serde::Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Cidr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A cluster CIDR and the size of each node's share of it, checked once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    pub cluster: Ipv4Cidr,
    pub node_prefix: u8,
}

impl ClusterCidr {
    /// Refuses a cluster CIDR that cannot hold even one node subnet, and node subnets too small
    /// for a gateway and a pod (or absurdly large).
    pub fn new(cluster: Ipv4Cidr, node_prefix: u8) -> Result<ClusterCidr, CidrError> {
        if !(16..=30).contains(&node_prefix) {
            return Err(CidrError::NodePrefix(node_prefix));
        }
        if cluster.prefix > node_prefix {
            return Err(CidrError::TooSmall {
                cluster,
                node_prefix,
            });
        }
        Ok(ClusterCidr {
            cluster,
            node_prefix,
        })
    }

    /// `--cluster-cidr` as given, with `/node_prefix` subnets.
    pub fn parse(text: &str, node_prefix: u8) -> Result<ClusterCidr, CidrError> {
        ClusterCidr::new(text.parse()?, node_prefix)
    }

    /// How many nodes can get a subnet.
    pub fn capacity(&self) -> u64 {
        self.cluster.subnet_count(self.node_prefix)
    }

    /// The lowest node subnet not in `used`; None when every one is taken.
    pub fn first_free(&self, used: &HashSet<Ipv4Cidr>) -> Option<Ipv4Cidr> {
        (0..self.capacity())
            .filter_map(|i| self.cluster.subnet(self.node_prefix, i))
            .find(|s| !used.contains(s))
    }

    /// Whether `subnet` is one this cluster CIDR hands out.
    pub fn is_node_subnet(&self, subnet: &Ipv4Cidr) -> bool {
        subnet.prefix == self.node_prefix && self.cluster.contains(subnet.network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().expect("valid CIDR")
    }

    #[test]
    fn parses_and_prints_networks() {
        assert_eq!(cidr("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert!(matches!(
            "10.42.0.1/16".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits { network, .. }) if network == cidr("10.42.0.0/16")
        ));
        assert!(matches!(
            "10.42.0.0".parse::<Ipv4Cidr>(),
            Err(CidrError::Syntax(_))
        ));
        assert!(matches!(
            "10.42.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::Prefix(_))
        ));
        assert!(matches!(
            "10.420.0.0/16".parse::<Ipv4Cidr>(),
            Err(CidrError::Address(_))
        ));
        assert!(matches!(
            "fd00::/64".parse::<Ipv4Cidr>(),
            Err(CidrError::Address(_))
        ));
    }

    #[test]
    fn pod_addresses_skip_network_gateway_and_broadcast() {
        let subnet = cidr("10.42.3.0/24");
        assert_eq!(subnet.gateway(), Some(Ipv4Addr::new(10, 42, 3, 1)));
        let all: Vec<_> = subnet.pod_addresses().collect();
        assert_eq!(all.len(), 253);
        assert_eq!(all.first(), Some(&Ipv4Addr::new(10, 42, 3, 2)));
        assert_eq!(all.last(), Some(&Ipv4Addr::new(10, 42, 3, 254)));
        assert!(subnet.contains(Ipv4Addr::new(10, 42, 3, 255)));
        assert!(!subnet.contains(Ipv4Addr::new(10, 42, 4, 0)));
    }

    #[test]
    fn cluster_cidr_is_refused_when_too_small_or_odd() {
        assert!(matches!(
            ClusterCidr::parse("10.42.0.0/25", 24),
            Err(CidrError::TooSmall { .. })
        ));
        let message = ClusterCidr::parse("10.42.0.0/25", 24)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("too small for a /24 per node"),
            "{message}"
        );
        assert!(matches!(
            ClusterCidr::parse("10.42.0.0/16", 31),
            Err(CidrError::NodePrefix(31))
        ));
        assert_eq!(
            ClusterCidr::parse("10.42.0.0/24", 24).map(|c| c.capacity()),
            Ok(1)
        );
    }

    #[test]
    fn node_subnets_are_handed_out_lowest_free_first_and_reused_once_freed() {
        let cluster = ClusterCidr::parse("10.42.0.0/22", 24).expect("valid");
        assert_eq!(cluster.capacity(), 4);
        let mut used = HashSet::new();
        for expected in [
            "10.42.0.0/24",
            "10.42.1.0/24",
            "10.42.2.0/24",
            "10.42.3.0/24",
        ] {
            let next = cluster.first_free(&used).expect("a free subnet");
            assert_eq!(next, cidr(expected));
            used.insert(next);
        }
        assert_eq!(cluster.first_free(&used), None);
        used.remove(&cidr("10.42.1.0/24"));
        assert_eq!(cluster.first_free(&used), Some(cidr("10.42.1.0/24")));
        assert!(cluster.is_node_subnet(&cidr("10.42.2.0/24")));
        assert!(!cluster.is_node_subnet(&cidr("10.43.2.0/24")));
        assert!(!cluster.is_node_subnet(&cidr("10.42.2.0/25")));
        assert!(cidr("10.42.0.0/16").overlaps(&cidr("10.42.7.0/24")));
        assert!(!cidr("10.42.0.0/16").overlaps(&cidr("10.43.0.0/24")));
    }
}
