//! The lab's names and addresses in one place, and the declarative
//! topology built from them:
//!
//! ```text
//! client ns --veth-- DUT ns (forwarder) --veth-- switch ns (bridge) --veth-- host A ns
//!                                                                  \--veth-- host B ns
//! ```
//!
//! Every namespace and link name starts with the run's prefix
//! (`fn<pid-hex>-`), so leftovers of a dead run can be found and removed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// Longest interface name the kernel takes (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

/// The start of every lab name.
pub const PREFIX_START: &str = "fn";

/// The name prefix of the run whose process id is `pid`.
pub fn run_prefix(pid: u32) -> String {
    format!("{PREFIX_START}{pid:x}-")
}

/// The owning process id of a lab name (`fn<pid-hex>-...`), if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX_START)?;
    let (hex, tail) = rest.split_once('-')?;
    if hex.is_empty() || tail.is_empty() || hex.len() > 8 {
        return None;
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Addresses of the standard topology.
pub mod addr {
    use super::*;

    /// Client-side subnet, IPv4 and IPv6.
    pub const CLIENT_NET4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);
    pub const CLIENT_NET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 0);
    /// Host-side subnet (the switch's segment).
    pub const HOST_NET4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 0);
    pub const HOST_NET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0);
    pub const PREFIX4: u8 = 24;
    pub const PREFIX6: u8 = 64;

    pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
    /// The DUT on the client side (the client's gateway).
    pub const DUT_CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
    pub const DUT_CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1);
    /// The DUT on the host side (the hosts' gateway).
    pub const DUT_HOST4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 1);
    pub const DUT_HOST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
    pub const HOST_A4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 10);
    pub const HOST_A6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x10);
    pub const HOST_B4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 11);
    pub const HOST_B6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x11);
    /// On the host subnet, owned by nobody: probes for it go unanswered.
    pub const NOBODY4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 99);
    pub const NOBODY6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x99);
    /// The service address the scenarios move from host A to host B.
    pub const SERVICE4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 50);
    pub const SERVICE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x50);
    /// gateway: the router host's address on the host segment ...
    pub const GW4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
    pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x20);
    /// ... and the service behind it.
    pub const REMOTE4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);
    /// At scale (`fibneigh scale`): a second, larger subnet on the host
    /// segment for thousands of nexthops, the DUT's address in it ...
    pub const SCALE_DUT4: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 1);
    pub const SCALE_DUT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 0, 1);
    pub const SCALE_PREFIX4: u8 = 16;
    pub const SCALE_PREFIX6: u8 = 64;
    /// ... and the most nexthops it holds (see [`scale_nexthop`]).
    pub const SCALE_MAX_NEXTHOPS: u32 = 65_000;

    /// Nexthop `i` (below [`SCALE_MAX_NEXTHOPS`]) of the scale subnet:
    /// 10.3.0.16 + i, or fd00:3::1:0 + i.
    pub fn scale_nexthop(v6: bool, i: u32) -> IpAddr {
        if v6 {
            let base = u128::from(Ipv6Addr::new(0xfd00, 3, 0, 0, 0, 0, 1, 0));
            IpAddr::V6(Ipv6Addr::from(base + u128::from(i)))
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 3, 0, 16)) + i))
        }
    }
}

/// Names of the standard topology's namespaces and links for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    pub client: String,
    pub dut: String,
    pub switch: String,
    pub host_a: String,
    pub host_b: String,
    /// Client's interface (peer of `dut_client_if`).
    pub client_if: String,
    /// DUT towards the client.
    pub dut_client_if: String,
    /// DUT towards the switch.
    pub dut_host_if: String,
    /// The bridge in the switch namespace.
    pub bridge: String,
    /// Switch port towards the DUT (peer of `dut_host_if`).
    pub switch_dut_port: String,
    /// Switch port towards host A.
    pub switch_a_port: String,
    /// Switch port towards host B.
    pub switch_b_port: String,
    /// Host A's interface.
    pub host_a_if: String,
    /// Host B's interface.
    pub host_b_if: String,
}

impl Names {
    pub fn new(prefix: &str) -> Self {
        let n = |s: &str| format!("{prefix}{s}");
        Names {
            prefix: prefix.to_string(),
            client: n("client"),
            dut: n("dut"),
            switch: n("switch"),
            host_a: n("host-a"),
            host_b: n("host-b"),
            client_if: n("c0"),
            dut_client_if: n("d0"),
            dut_host_if: n("d1"),
            bridge: n("br0"),
            switch_dut_port: n("sd"),
            switch_a_port: n("sa"),
            switch_b_port: n("sb"),
            host_a_if: n("a0"),
            host_b_if: n("b0"),
        }
    }

    /// Fresh names for a lab of this process: the run prefix plus a
    /// per-process sequence number, so labs built concurrently (tests run
    /// in parallel threads) do not collide.
    pub fn for_this_process() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, Ordering::Relaxed) % 0x100;
        Self::new(&format!("{}{seq:x}", run_prefix(std::process::id())))
    }
}

/// An interface in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ns: String,
    pub ifname: String,
}

impl Endpoint {
    pub fn new(ns: &str, ifname: &str) -> Self {
        Endpoint {
            ns: ns.into(),
            ifname: ifname.into(),
        }
    }
}

/// A veth pair; `a` is created in its namespace, `b` moved to its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    pub a: Endpoint,
    pub b: Endpoint,
}

/// A Linux bridge with its ports (interfaces of the same namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    pub ns: String,
    pub name: String,
    pub ports: Vec<String>,
    /// IGMP/MLD snooping (the kernel's default, on). Off, the bridge floods
    /// multicast, as a lab with thousands of IPv6 addresses behind it needs
    /// (thousands of solicited-node groups, past the bridge's table).
    pub mcast_snooping: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub at: Endpoint,
    pub addr: IpAddr,
    pub prefix_len: u8,
}

/// A route in a namespace: `dst` (None: default) via `gateway`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub ns: String,
    pub dst: Option<(IpAddr, u8)>,
    pub gateway: IpAddr,
}

/// The whole lab, declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Every name below starts with it.
    pub prefix: String,
    pub namespaces: Vec<String>,
    pub veths: Vec<Veth>,
    pub bridges: Vec<Bridge>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    /// Namespaces that route (IPv4 and IPv6 forwarding on).
    pub routers: Vec<String>,
    /// Where the announcement filter sits (egress of this port, dropping
    /// gratuitous ARP and unsolicited NA), if anywhere.
    pub announce_filter: Option<Endpoint>,
}

impl Topology {
    /// client -> DUT -> switch -> hosts A and B, IPv4 and IPv6, the
    /// announcement filter on the switch's port towards the DUT.
    pub fn standard(n: &Names) -> Self {
        use addr::*;
        let ep = Endpoint::new;
        let v4 = |ns: &str, ifname: &str, a: Ipv4Addr| Address {
            at: ep(ns, ifname),
            addr: a.into(),
            prefix_len: PREFIX4,
        };
        let v6 = |ns: &str, ifname: &str, a: Ipv6Addr| Address {
            at: ep(ns, ifname),
            addr: a.into(),
            prefix_len: PREFIX6,
        };
        let default_via = |ns: &str, gw: IpAddr| Route {
            ns: ns.into(),
            dst: None,
            gateway: gw,
        };
        Topology {
            prefix: n.prefix.clone(),
            namespaces: vec![
                n.client.clone(),
                n.dut.clone(),
                n.switch.clone(),
                n.host_a.clone(),
                n.host_b.clone(),
            ],
            veths: vec![
                Veth {
                    a: ep(&n.client, &n.client_if),
                    b: ep(&n.dut, &n.dut_client_if),
                },
                Veth {
                    a: ep(&n.dut, &n.dut_host_if),
                    b: ep(&n.switch, &n.switch_dut_port),
                },
                Veth {
                    a: ep(&n.host_a, &n.host_a_if),
                    b: ep(&n.switch, &n.switch_a_port),
                },
                Veth {
                    a: ep(&n.host_b, &n.host_b_if),
                    b: ep(&n.switch, &n.switch_b_port),
                },
            ],
            bridges: vec![Bridge {
                ns: n.switch.clone(),
                name: n.bridge.clone(),
                ports: vec![
                    n.switch_dut_port.clone(),
                    n.switch_a_port.clone(),
                    n.switch_b_port.clone(),
                ],
                mcast_snooping: true,
            }],
            addresses: vec![
                v4(&n.client, &n.client_if, CLIENT4),
                v6(&n.client, &n.client_if, CLIENT6),
                v4(&n.dut, &n.dut_client_if, DUT_CLIENT4),
                v6(&n.dut, &n.dut_client_if, DUT_CLIENT6),
                v4(&n.dut, &n.dut_host_if, DUT_HOST4),
                v6(&n.dut, &n.dut_host_if, DUT_HOST6),
                v4(&n.host_a, &n.host_a_if, HOST_A4),
                v6(&n.host_a, &n.host_a_if, HOST_A6),
                v4(&n.host_b, &n.host_b_if, HOST_B4),
                v6(&n.host_b, &n.host_b_if, HOST_B6),
            ],
            routes: vec![
                default_via(&n.client, DUT_CLIENT4.into()),
                default_via(&n.client, DUT_CLIENT6.into()),
                default_via(&n.host_a, DUT_HOST4.into()),
                default_via(&n.host_a, DUT_HOST6.into()),
                default_via(&n.host_b, DUT_HOST4.into()),
                default_via(&n.host_b, DUT_HOST6.into()),
            ],
            routers: vec![n.dut.clone()],
            announce_filter: Some(ep(&n.switch, &n.switch_dut_port)),
        }
    }

    /// The forwarding bench's lab, cut from [`Topology::standard`]: client
    /// -> DUT -> host A on one veth, IPv4 only, no switch, no host B, no
    /// announcement filter, a route in the client only.
    pub fn direct(n: &Names) -> Self {
        let mut t = Topology::standard(n);
        t.namespaces
            .retain(|ns| [&n.client, &n.dut, &n.host_a].contains(&ns));
        t.veths.truncate(1);
        t.veths.push(Veth {
            a: Endpoint::new(&n.dut, &n.dut_host_if),
            b: Endpoint::new(&n.host_a, &n.host_a_if),
        });
        t.bridges.clear();
        let kept = t.namespaces.clone();
        t.addresses
            .retain(|a| a.addr.is_ipv4() && kept.contains(&a.at.ns));
        t.routes.retain(|r| r.ns == n.client && r.gateway.is_ipv4());
        t.announce_filter = None;
        t
    }

    /// Interfaces per namespace (veth ends and bridges).
    pub fn interfaces(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut m: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for ns in &self.namespaces {
            m.entry(ns).or_default();
        }
        for v in &self.veths {
            for e in [&v.a, &v.b] {
                m.entry(&e.ns).or_default().push(&e.ifname);
            }
        }
        for b in &self.bridges {
            m.entry(&b.ns).or_default().push(&b.name);
        }
        m
    }

    /// Check names, references and addresses before anything is created.
    pub fn validate(&self) -> Result<(), TopologyError> {
        use TopologyError as E;
        if owner_pid(&format!("{}x", self.prefix)).is_none() {
            return Err(E::BadPrefix(self.prefix.clone()));
        }
        let prefixed = |name: &str| {
            if name.starts_with(&self.prefix) && name.len() > self.prefix.len() {
                Ok(())
            } else {
                Err(E::MissingPrefix(name.to_string()))
            }
        };
        let mut seen_ns = BTreeSet::new();
        for ns in &self.namespaces {
            prefixed(ns)?;
            if ns.contains('/') || ns.starts_with('.') {
                return Err(E::BadName(ns.clone()));
            }
            if !seen_ns.insert(ns.as_str()) {
                return Err(E::Duplicate(ns.clone()));
            }
        }
        let known_ns = |ns: &str| {
            if seen_ns.contains(ns) {
                Ok(())
            } else {
                Err(E::UnknownNamespace(ns.to_string()))
            }
        };
        let ifaces = self.interfaces();
        for (ns, names) in &ifaces {
            known_ns(ns)?;
            let mut seen = BTreeSet::new();
            for name in names {
                prefixed(name)?;
                if name.len() > IFNAME_MAX || name.contains('/') || name.contains(' ') {
                    return Err(E::BadName(name.to_string()));
                }
                if !seen.insert(*name) {
                    return Err(E::Duplicate(format!("{ns}/{name}")));
                }
            }
        }
        let known_if = |e: &Endpoint| {
            known_ns(&e.ns)?;
            if ifaces
                .get(e.ns.as_str())
                .is_some_and(|v| v.contains(&e.ifname.as_str()))
            {
                Ok(())
            } else {
                Err(E::UnknownInterface(format!("{}/{}", e.ns, e.ifname)))
            }
        };
        let mut bridged = BTreeSet::new();
        for b in &self.bridges {
            for p in &b.ports {
                known_if(&Endpoint::new(&b.ns, p))?;
                if p == &b.name || !bridged.insert((b.ns.as_str(), p.as_str())) {
                    return Err(E::Duplicate(format!("{}/{} as a bridge port", b.ns, p)));
                }
            }
        }
        let mut seen_addr = BTreeSet::new();
        for a in &self.addresses {
            known_if(&a.at)?;
            let max = if a.addr.is_ipv4() { 32 } else { 128 };
            if a.prefix_len > max {
                return Err(E::BadAddress(format!("{}/{}", a.addr, a.prefix_len)));
            }
            if !seen_addr.insert((a.at.ns.as_str(), a.addr)) {
                return Err(E::Duplicate(a.addr.to_string()));
            }
        }
        for r in &self.routes {
            known_ns(&r.ns)?;
            let on_link = self
                .addresses
                .iter()
                .any(|a| a.at.ns == r.ns && same_subnet(a.addr, r.gateway, a.prefix_len));
            if !on_link {
                return Err(E::GatewayNotOnLink(format!("{} in {}", r.gateway, r.ns)));
            }
            if let Some((dst, len)) = r.dst {
                if dst.is_ipv4() != r.gateway.is_ipv4()
                    || len > if dst.is_ipv4() { 32 } else { 128 }
                {
                    return Err(E::BadAddress(format!("{dst}/{len} via {}", r.gateway)));
                }
            }
        }
        for ns in &self.routers {
            known_ns(ns)?;
        }
        if let Some(e) = &self.announce_filter {
            known_if(e)?;
        }
        Ok(())
    }
}

/// Whether `a` and `b` share the first `len` bits (false across families).
pub fn same_subnet(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// What is wrong with a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("prefix {0:?} is not of the form fn<pid-hex>-")]
    BadPrefix(String),
    #[error("{0:?} does not start with the run's prefix")]
    MissingPrefix(String),
    #[error("{0:?} is not a usable name (at most 15 characters for links, no '/')")]
    BadName(String),
    #[error("{0} is declared twice")]
    Duplicate(String),
    #[error("namespace {0} is not declared")]
    UnknownNamespace(String),
    #[error("interface {0} is not declared")]
    UnknownInterface(String),
    #[error("bad address or prefix {0}")]
    BadAddress(String),
    #[error("gateway {0} is on no subnet of that namespace")]
    GatewayNotOnLink(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_direct_lab_is_client_dut_host_a_in_ipv4() {
        let n = Names::for_this_process();
        let t = Topology::direct(&n);
        t.validate().expect("valid");
        let ifs = t.interfaces();
        assert_eq!(ifs.len(), 3);
        assert_eq!(ifs[n.dut.as_str()], [&n.dut_client_if, &n.dut_host_if]);
        assert_eq!(ifs[n.host_a.as_str()], [&n.host_a_if]);
        let addrs: Vec<_> = t
            .addresses
            .iter()
            .map(|a| (a.at.ns.as_str(), a.addr))
            .collect();
        use addr::*;
        assert_eq!(
            addrs,
            [
                (n.client.as_str(), IpAddr::from(CLIENT4)),
                (n.dut.as_str(), DUT_CLIENT4.into()),
                (n.dut.as_str(), DUT_HOST4.into()),
                (n.host_a.as_str(), HOST_A4.into()),
            ]
        );
        assert!(t.addresses.iter().all(|a| a.prefix_len == PREFIX4));
        assert_eq!(t.routes.len(), 1);
        assert_eq!(
            (t.routes[0].ns.as_str(), t.routes[0].gateway),
            (n.client.as_str(), DUT_CLIENT4.into())
        );
        assert!(t.bridges.is_empty() && t.announce_filter.is_none());
        assert_eq!(t.routers, std::slice::from_ref(&n.dut));
    }

    #[test]
    fn prefixes_round_trip() {
        assert_eq!(run_prefix(0x1a2b), "fn1a2b-");
        assert_eq!(owner_pid("fn1a2b-dut"), Some(0x1a2b));
        assert_eq!(
            owner_pid(&format!("{}x", run_prefix(4_194_304))),
            Some(4_194_304)
        );
        for other in [
            "fn-dut",
            "fnxyz-dut",
            "fn1a2b-",
            "fn1A2B-dut",
            "ns1",
            "fn123456789-x",
        ] {
            assert_eq!(owner_pid(other), None, "{other}");
        }
    }

    #[test]
    fn standard_topology_is_valid_for_any_pid() {
        // pid_max is at most 2^22, so six hex digits, plus two of sequence.
        for pid in [1, 0x3fffff, 0x400000] {
            let t = Topology::standard(&Names::new(&format!("{}ff", run_prefix(pid))));
            t.validate().unwrap_or_else(|e| panic!("pid {pid:#x}: {e}"));
            assert_eq!(t.namespaces.len(), 5);
            for names in t.interfaces().values() {
                assert!(names.iter().all(|n| n.len() <= IFNAME_MAX));
            }
        }
    }

    #[test]
    fn validation_catches_mistakes() {
        let n = Names::new("fn1-0");
        assert_ne!(Names::for_this_process(), Names::for_this_process());
        let good = Topology::standard(&n);

        let mut t = good.clone();
        t.namespaces.push("other".into());
        assert_eq!(
            t.validate(),
            Err(TopologyError::MissingPrefix("other".into()))
        );

        let mut t = good.clone();
        t.veths[0].a.ifname = "fn1-0a-very-long-name".into();
        assert!(matches!(t.validate(), Err(TopologyError::BadName(_))));

        let mut t = good.clone();
        t.veths[1].b.ns = "fn1-0nowhere".into();
        assert!(matches!(
            t.validate(),
            Err(TopologyError::UnknownNamespace(_))
        ));

        let mut t = good.clone();
        t.bridges[0].ports.push("fn1-0zz".into());
        assert!(matches!(
            t.validate(),
            Err(TopologyError::UnknownInterface(_))
        ));

        let mut t = good.clone();
        t.routes[0].gateway = Ipv4Addr::new(10, 9, 9, 9).into();
        assert!(matches!(
            t.validate(),
            Err(TopologyError::GatewayNotOnLink(_))
        ));

        let mut t = good.clone();
        t.addresses.push(t.addresses[0].clone());
        assert!(matches!(t.validate(), Err(TopologyError::Duplicate(_))));

        let mut t = good;
        t.prefix = "lab-".into();
        assert!(matches!(t.validate(), Err(TopologyError::BadPrefix(_))));
    }

    #[test]
    fn subnets() {
        assert!(same_subnet(
            addr::HOST_A4.into(),
            addr::DUT_HOST4.into(),
            24
        ));
        assert!(!same_subnet(
            addr::CLIENT4.into(),
            addr::DUT_HOST4.into(),
            24
        ));
        assert!(same_subnet(
            addr::HOST_B6.into(),
            addr::DUT_HOST6.into(),
            64
        ));
        assert!(!same_subnet(addr::HOST_B6.into(), addr::HOST_B4.into(), 0));
        assert!(same_subnet(addr::HOST_B4.into(), addr::CLIENT4.into(), 0));
    }
}
