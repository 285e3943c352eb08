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
    msg.header.family = super::rtnl::family_of(dst);
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

/// The neighbour table's garbage-collection thresholds for one family
/// (`net/ipv{4,6}/neigh/default/gc_thresh{1,2,3}`). They belong to the
/// kernel's one table per family, not to a namespace: whichever namespace
/// writes them changes them for the whole machine. [`GcThresholds::raise`]
/// puts the old values back when its guard drops (also on Ctrl-C, and on a
/// second Ctrl-C's immediate exit; not if the process is killed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GcThresholds {
    pub thresh1: u32,
    pub thresh2: u32,
    pub thresh3: u32,
}

impl GcThresholds {
    fn key(v6: bool, i: u8) -> String {
        let family = if v6 { "ipv6" } else { "ipv4" };
        format!("net/{family}/neigh/default/gc_thresh{i}")
    }

    /// The thresholds now in force.
    pub fn read(v6: bool) -> Result<Self> {
        let get = |i| -> Result<u32> {
            let key = Self::key(v6, i);
            let text = rtnl::read_sysctl(&key)?;
            text.parse().map_err(|_| super::Error::Io {
                what: format!("read {key}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a number: {text:?}"),
                ),
            })
        };
        Ok(GcThresholds {
            thresh1: get(1)?,
            thresh2: get(2)?,
            thresh3: get(3)?,
        })
    }

    /// Thresholds under which a table of `entries` (plus a quarter and
    /// 256 for the rest of the machine's) is neither forced into garbage
    /// collection (`gc_thresh2`) nor full (`gc_thresh3`, 256 above
    /// that); never lower than `self`. `gc_thresh1` stays: above it the
    /// periodic pass removes entries unused for the device's
    /// `gc_stale_time`, which a caller that keeps idle entries raises on
    /// its own device (a per-namespace setting, unlike these).
    pub fn for_entries(self, entries: u32) -> Self {
        let soft = entries.saturating_add(entries / 4).saturating_add(256);
        let thresh3 = self.thresh3.max(soft.saturating_add(256));
        GcThresholds {
            thresh1: self.thresh1,
            thresh2: self.thresh2.max(soft).min(thresh3),
            thresh3,
        }
    }

    /// `(i, gc_thresh<i>)`, the hard limit first.
    pub fn by_index(self) -> [(u8, u32); 3] {
        [(3, self.thresh3), (2, self.thresh2), (1, self.thresh1)]
    }

    fn write(self, v6: bool) -> Result<()> {
        // The kernel does not require them ordered; each is one write.
        for (i, v) in self.by_index() {
            rtnl::write_sysctl(&Self::key(v6, i), &v.to_string())?;
        }
        Ok(())
    }

    /// Raise the thresholds of one family to [`for_entries`](Self::for_entries)
    /// `entries`; the guard restores what was there. `None` if nothing
    /// needed raising.
    pub fn raise(v6: bool, entries: u32) -> Result<Option<GcGuard>> {
        let old = Self::read(v6)?;
        let new = old.for_entries(entries);
        if new == old {
            return Ok(None);
        }
        // The guard exists before the first write, so a write that fails
        // half-way still puts the old values back; so does a second
        // Ctrl-C, which exits without dropping it.
        let mut guard = GcGuard {
            v6,
            old,
            new,
            on_exit: Vec::new(),
        };
        for (i, v) in old.by_index() {
            let path = format!("/proc/sys/{}", Self::key(v6, i));
            let on_exit = crate::stop::restore_on_exit(std::path::Path::new(&path), v.into())
                .map_err(super::io_err(format!("open {path} for writing")))?;
            guard.on_exit.push(on_exit);
        }
        new.write(v6)?;
        Ok(Some(guard))
    }
}

/// Raised GC thresholds (see [`GcThresholds::raise`]); restored on drop
/// unless someone else changed them in the meantime.
#[derive(Debug)]
pub struct GcGuard {
    v6: bool,
    pub old: GcThresholds,
    pub new: GcThresholds,
    /// The old values, for a second Ctrl-C's immediate exit.
    on_exit: Vec<crate::stop::RestoreOnExit>,
}

impl Drop for GcGuard {
    /// Each threshold still at the value this guard set goes back to the
    /// old one; one that someone else changed during the run stays theirs
    /// (and one never written, after a failed write, needs nothing).
    fn drop(&mut self) {
        let family = if self.v6 { 6 } else { 4 };
        let now = match GcThresholds::read(self.v6) {
            Ok(now) => now,
            Err(e) => {
                eprintln!(
                    "warning: could not read the IPv{family} neighbour GC thresholds to restore {:?}: {e}",
                    self.old
                );
                return;
            }
        };
        let fields = now
            .by_index()
            .into_iter()
            .zip(self.new.by_index())
            .zip(self.old.by_index());
        for (((i, now), (_, set)), (_, old)) in fields {
            if now == old {
                continue;
            }
            let key = GcThresholds::key(self.v6, i);
            if now != set {
                eprintln!("warning: {key} changed during the run (to {now}); left as it is, not restored to {old}");
                continue;
            }
            if let Err(e) = rtnl::write_sysctl(&key, &old.to_string()) {
                eprintln!("warning: could not restore {key} to {old}: {e}");
            }
        }
    }
}

/// The counters of a neighbour table (`/proc/net/stat/arp_cache` or
/// `ndisc_cache`, summed over CPUs; `entries` is the table's size), by
/// the file's column names.
pub fn table_stats(v6: bool) -> Result<std::collections::BTreeMap<String, u64>> {
    let path = if v6 {
        "/proc/net/stat/ndisc_cache"
    } else {
        "/proc/net/stat/arp_cache"
    };
    let text = std::fs::read_to_string(path).map_err(super::io_err(format!("read {path}")))?;
    parse_table_stats(&text).ok_or_else(|| super::Error::Io {
        what: format!("read {path}"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "unexpected layout"),
    })
}

/// The parser of [`table_stats`]: a header of names, then a line of hex
/// numbers per CPU.
pub fn parse_table_stats(text: &str) -> Option<std::collections::BTreeMap<String, u64>> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut out: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut rows = 0;
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() != names.len() {
            return None;
        }
        for (name, v) in names.iter().zip(values) {
            let v = u64::from_str_radix(v, 16).ok()?;
            let slot = out.entry((*name).to_string()).or_default();
            // The table's size is the same on every line, not per CPU.
            if *name == "entries" {
                *slot = v;
            } else {
                *slot += v;
            }
        }
        rows += 1;
    }
    (rows > 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_stats_sum_over_cpus() {
        let text = "entries  allocs  lookups  hits  forced_gc_runs  table_fulls\n\
                    00000010  00000003  0000000a  00000002  00000000  00000001\n\
                    00000010  00000001  00000005  00000001  00000002  00000000\n";
        let s = parse_table_stats(text).expect("parses");
        assert_eq!(s["entries"], 16);
        assert_eq!(s["allocs"], 4);
        assert_eq!(s["lookups"], 15);
        assert_eq!(s["forced_gc_runs"], 2);
        assert_eq!(s["table_fulls"], 1);
        assert_eq!(parse_table_stats("entries lookups\n1\n"), None);
        assert_eq!(parse_table_stats("entries\n"), None);
    }

    #[test]
    fn gc_thresholds_only_rise() {
        let cur = GcThresholds {
            thresh1: 128,
            thresh2: 512,
            thresh3: 1024,
        };
        let t = cur.for_entries(16384);
        assert_eq!((t.thresh1, t.thresh2, t.thresh3), (128, 20736, 20992));
        // 64 entries fit the kernel's defaults.
        assert_eq!(cur.for_entries(64), cur);
        let big = GcThresholds {
            thresh1: 100_000,
            thresh2: 100_000,
            thresh3: 100_000,
        };
        assert_eq!(big.for_entries(16384), big);
    }

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
