//! Neighbour entries over rtnetlink (any NUD state, `extern_learn`,
//! `managed`) and the per-device neighbour sysctls.

use std::net::IpAddr;

use fibneigh_bpf::nud;
use futures::TryStreamExt;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourExtFlags, NeighbourFlags, NeighbourMessage,
    NeighbourState,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;

use super::rtnl::nl_err;
use super::{rtnl, Result};

/// An entry to install: `dst` on the device, in `state` (a `nud::*`
/// value), with `lladdr` (none for INCOMPLETE/FAILED).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighSpec {
    pub dst: IpAddr,
    pub lladdr: Option<[u8; 6]>,
    pub state: u16,
    /// `NTF_EXT_LEARNED`: owned by a control plane, never garbage-collected.
    pub extern_learn: bool,
    /// `NTF_EXT_MANAGED`: the kernel keeps it resolved (option 1).
    pub managed: bool,
}

impl NeighSpec {
    /// `dst` at `lladdr` in `state`, no extra flags.
    pub fn new(dst: IpAddr, lladdr: Option<[u8; 6]>, state: u16) -> Self {
        NeighSpec {
            dst,
            lladdr,
            state,
            extern_learn: false,
            managed: false,
        }
    }
}

/// An entry as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighEntry {
    pub ifindex: u32,
    pub dst: IpAddr,
    pub lladdr: Option<[u8; 6]>,
    /// `nud::*` bits.
    pub state: u16,
    pub extern_learn: bool,
    pub managed: bool,
    pub router: bool,
}

impl NeighEntry {
    fn from_message(m: &NeighbourMessage) -> Option<Self> {
        let mut dst = None;
        let mut lladdr = None;
        let mut managed = false;
        for a in &m.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    dst = Some(IpAddr::V4(*v4))
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    dst = Some(IpAddr::V6(*v6))
                }
                NeighbourAttribute::LinkLayerAddress(l) => {
                    lladdr = <[u8; 6]>::try_from(&l[..]).ok()
                }
                NeighbourAttribute::ExtFlags(f) => managed = f.contains(NeighbourExtFlags::Managed),
                _ => {}
            }
        }
        Some(NeighEntry {
            ifindex: m.header.ifindex,
            dst: dst?,
            lladdr,
            state: u16::from(m.header.state),
            extern_learn: m.header.flags.contains(NeighbourFlags::ExtLearned),
            managed,
            router: m.header.flags.contains(NeighbourFlags::Router),
        })
    }
}

/// Add or replace the entry for `spec.dst` on `ifindex`.
pub async fn replace(h: &Handle, ifindex: u32, spec: &NeighSpec) -> Result<()> {
    let mut req = h
        .neighbours()
        .add(ifindex, spec.dst)
        .state(NeighbourState::from(spec.state))
        .replace();
    if let Some(mac) = spec.lladdr {
        req = req.link_layer_address(&mac);
    }
    let mut flags = NeighbourFlags::empty();
    if spec.extern_learn {
        flags |= NeighbourFlags::ExtLearned;
    }
    req = req.flags(flags);
    if spec.managed {
        req.message_mut()
            .attributes
            .push(NeighbourAttribute::ExtFlags(NeighbourExtFlags::Managed));
    }
    req.execute().await.map_err(nl_err(format!(
        "set neighbour {} to {}",
        spec.dst,
        nud::name(spec.state)
    )))
}

/// All entries of the handle's namespace (both families), proxies aside.
pub async fn list(h: &Handle) -> Result<Vec<NeighEntry>> {
    let msgs: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Unspec)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("list neighbours"))?;
    Ok(msgs.iter().filter_map(NeighEntry::from_message).collect())
}

/// The entry for `dst` on `ifindex`, if any.
pub async fn get(h: &Handle, ifindex: u32, dst: IpAddr) -> Result<Option<NeighEntry>> {
    Ok(list(h)
        .await?
        .into_iter()
        .find(|e| e.ifindex == ifindex && e.dst == dst))
}

/// Delete the entry for `dst` on `ifindex`; false if there was none.
pub async fn delete(h: &Handle, ifindex: u32, dst: IpAddr) -> Result<bool> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = if dst.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    msg.header.ifindex = ifindex;
    msg.attributes
        .push(NeighbourAttribute::Destination(match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    match h.neighbours().del(msg).execute().await {
        Ok(()) => Ok(true),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENOENT => Ok(false),
        Err(e) => Err(nl_err(format!("delete neighbour {dst}"))(e)),
    }
}

/// Per-device neighbour parameters (/proc/sys/net/ipv{4,6}/neigh/<dev>/).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighSysctl {
    /// How long an entry stays REACHABLE after confirmation (randomised
    /// between 0.5x and 1.5x).
    BaseReachableTimeMs,
    /// Seconds in DELAY before the first unicast probe.
    DelayFirstProbeTime,
    /// Time between probes.
    RetransTimeMs,
    /// Unicast probes before falling back to multicast/failing.
    UcastSolicit,
    /// Multicast (broadcast) probes while resolving.
    McastSolicit,
}

impl NeighSysctl {
    pub fn file(self) -> &'static str {
        match self {
            NeighSysctl::BaseReachableTimeMs => "base_reachable_time_ms",
            NeighSysctl::DelayFirstProbeTime => "delay_first_probe_time",
            NeighSysctl::RetransTimeMs => "retrans_time_ms",
            NeighSysctl::UcastSolicit => "ucast_solicit",
            NeighSysctl::McastSolicit => "mcast_solicit",
        }
    }

    /// The key under /proc/sys for `dev` and the family of `v6`.
    pub fn key(self, dev: &str, v6: bool) -> String {
        let family = if v6 { "ipv6" } else { "ipv4" };
        format!("net/{family}/neigh/{dev}/{}", self.file())
    }
}

/// Timers under which no entry changes state for ten minutes: what a test
/// that sets states and looks them up needs.
pub const FROZEN: [(NeighSysctl, u32); 3] = [
    (NeighSysctl::BaseReachableTimeMs, 600_000),
    (NeighSysctl::DelayFirstProbeTime, 600),
    (NeighSysctl::RetransTimeMs, 600_000),
];

/// REACHABLE for an hour: no entry ages during a benchmark.
pub const REACHABLE_HOUR: [(NeighSysctl, u32); 1] = [(NeighSysctl::BaseReachableTimeMs, 3_600_000)];

/// Short timers: whatever state churn leaves resolves within seconds
/// (REACHABLE ages in ~2 s, DELAY probes after 1 s, 100 ms between probes).
pub const QUICK: [(NeighSysctl, u32); 3] = [
    (NeighSysctl::BaseReachableTimeMs, 2_000),
    (NeighSysctl::DelayFirstProbeTime, 1),
    (NeighSysctl::RetransTimeMs, 100),
];

/// Set `param` of `dev` for one family, in the calling thread's namespace.
pub fn set_sysctl(dev: &str, v6: bool, param: NeighSysctl, value: u32) -> Result<()> {
    rtnl::write_sysctl(&param.key(dev, v6), &value.to_string())
}

/// Read `param` of `dev` for one family, in the calling thread's namespace.
pub fn sysctl(dev: &str, v6: bool, param: NeighSysctl) -> Result<String> {
    rtnl::read_sysctl(&param.key(dev, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys() {
        assert_eq!(
            NeighSysctl::RetransTimeMs.key("fn1-d1", true),
            "net/ipv6/neigh/fn1-d1/retrans_time_ms"
        );
        assert_eq!(
            NeighSysctl::DelayFirstProbeTime.key("eth0", false),
            "net/ipv4/neigh/eth0/delay_first_probe_time"
        );
    }

    #[test]
    fn states_convert_both_ways() {
        for s in [
            nud::INCOMPLETE,
            nud::REACHABLE,
            nud::STALE,
            nud::DELAY,
            nud::PROBE,
            nud::FAILED,
            nud::NOARP,
            nud::PERMANENT,
            nud::NONE,
        ] {
            assert_eq!(u16::from(NeighbourState::from(s)), s);
        }
    }
}
