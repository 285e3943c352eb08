//! The network-namespace lab: a declared [`Topology`] built with
//! rtnetlink, torn down on drop, plus neighbour control (entries in any NUD
//! state, per-device neighbour sysctls).
//!
//! Nothing outside the namespaces the lab creates is touched: links are
//! created from threads inside those namespaces, and deleting a namespace
//! removes its links, tc filters and XDP programs with it.

pub mod neigh;
pub mod netns;
pub mod plan;
pub mod rtnl;

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

use fibneigh_bpf::announce::Dropped;
use fibneigh_bpf::Hook;
use fibneigh_bpf::{AnnounceFilter, AttachIn, Attachment, XdpPass};

pub use neigh::{NeighEntry, NeighSpec, NeighSysctl};
pub use plan::{addr, Names, Topology, TopologyError};

/// Errors from building or using the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid topology: {0}")]
    Topology(#[from] TopologyError),
    #[error("network namespace {0} already exists")]
    Exists(String),
    #[error("{0} is not a namespace of this lab")]
    NotOurs(String),
    #[error("no interface {0}")]
    NoSuchInterface(String),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bpf(#[from] fibneigh_bpf::Error),
    #[error("interrupted")]
    Interrupted(#[from] crate::stop::Interrupted),
    #[error("this lab has no announcement filter")]
    NoAnnounceFilter,
    #[error("failed to {what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wrap an I/O failure with what was being done.
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A built lab; dropping it deletes every namespace it created.
pub struct Lab {
    topology: Topology,
    /// Namespaces created so far, in order (deleted in reverse).
    created: Vec<String>,
    /// The switch's announcement filter, attached (disabled at first).
    announce: Option<(AnnounceFilter, Attachment)>,
}

impl Lab {
    /// Build `topology`: namespaces, sysctls, veths, bridges, addresses,
    /// routes, all links up. On failure, whatever was built is removed.
    pub fn create(topology: &Topology) -> Result<Lab> {
        topology.validate()?;
        let mut lab = Lab {
            topology: topology.clone(),
            created: Vec::new(),
            announce: None,
        };
        let t = &lab.topology;
        for ns in &t.namespaces {
            // Held before it exists, so that no look for leftovers of
            // this process takes it for one. Already held, it is a live
            // lab's, which a failure here must not release.
            let inserted = live_namespaces().insert(ns.clone());
            if let Err(e) = netns::create(ns) {
                if inserted {
                    live_namespaces().remove(ns);
                }
                return Err(e);
            }
            lab.created.push(ns.clone());
        }
        for ns in &t.namespaces {
            let router = t.routers.contains(ns);
            Lab::in_ns(ns, || base_sysctls(router))??;
        }
        for v in &t.veths {
            let peer_ns = File::open(netns::path(&v.b.ns))
                .map_err(io_err(format!("open network namespace {}", v.b.ns)))?;
            let fd = peer_ns.as_raw_fd();
            let (a, b) = (v.a.ifname.clone(), v.b.ifname.clone());
            rtnl::with_netlink(&v.a.ns, |h| async move {
                rtnl::add_veth(&h, &a, &b).await?;
                rtnl::move_to_netns(&h, &b, fd).await
            })?;
        }
        for b in &t.bridges {
            let (name, ports, snooping) = (b.name.clone(), b.ports.clone(), b.mcast_snooping);
            rtnl::with_netlink(&b.ns, |h| async move {
                rtnl::add_bridge(&h, &name, &ports, snooping).await
            })?;
        }
        for (ns, ifaces) in t.interfaces() {
            let addrs: Vec<_> = t
                .addresses
                .iter()
                .filter(|a| a.at.ns == ns)
                .cloned()
                .collect();
            let routes: Vec<_> = t.routes.iter().filter(|r| r.ns == ns).cloned().collect();
            let ifaces: Vec<String> = ifaces.iter().map(|s| s.to_string()).collect();
            rtnl::with_netlink(ns, |h| async move {
                rtnl::set_up(&h, "lo").await?;
                for i in &ifaces {
                    rtnl::set_up(&h, i).await?;
                }
                for a in &addrs {
                    rtnl::add_address(&h, &a.at.ifname, a.addr, a.prefix_len).await?;
                }
                for r in &routes {
                    rtnl::add_route(&h, r).await?;
                }
                Ok(())
            })?;
        }
        if let Some(at) = lab.topology.announce_filter.clone() {
            let filter = AnnounceFilter::load()?;
            let index = lab.ifindex(&at.ns, &at.ifname)?;
            let ns = lab.open_ns(&at.ns)?;
            let attachment = filter.attach_in(ns.as_fd(), index)?;
            lab.announce = Some((filter, attachment));
        }
        Ok(lab)
    }

    /// Drop (true) or let through (false) gratuitous ARP and unsolicited
    /// NA at the topology's announcement filter; off after `create`.
    pub fn suppress_announcements(&mut self, on: bool) -> Result<()> {
        let (filter, _) = self.announce.as_mut().ok_or(Error::NoAnnounceFilter)?;
        Ok(filter.set_enabled(on)?)
    }

    /// What the announcement filter dropped so far.
    pub fn announcements_dropped(&self) -> Result<Dropped> {
        let (filter, _) = self.announce.as_ref().ok_or(Error::NoAnnounceFilter)?;
        Ok(filter.dropped()?)
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Run `f` in a thread that entered network namespace `ns` (any named
    /// namespace, not only the lab's); a panic in `f` is resumed here.
    pub fn in_ns<T, F>(ns: &str, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        netns::run_in(ns, f)
    }

    /// Run `f` with a netlink handle opened in the lab namespace `ns`.
    pub fn netlink<T, F, Fut>(&self, ns: &str, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce(rtnetlink::Handle) -> Fut + Send,
        Fut: Future<Output = Result<T>>,
    {
        self.check(ns)?;
        rtnl::with_netlink(ns, f)
    }

    /// An open handle on the lab namespace `ns` (for `setns`, e.g.
    /// `Forwarder::attach_in`). Holding it keeps the namespace alive.
    pub fn open_ns(&self, ns: &str) -> Result<File> {
        self.check(ns)?;
        File::open(netns::path(ns)).map_err(io_err(format!("open network namespace {ns}")))
    }

    /// Attach an XDP_PASS program to the far end of every veth of `ns`, so
    /// frames an XDP program in `ns` redirects into those veths are
    /// accepted. Detached when the returned guard drops.
    pub fn xdp_pass_on_peers_of(&self, ns: &str) -> Result<XdpPeers> {
        self.check(ns)?;
        let prog = XdpPass::load()?;
        let mut attachments = Vec::new();
        for v in &self.topology.veths {
            let far = match (&v.a, &v.b) {
                (a, b) if a.ns == ns => b,
                (a, b) if b.ns == ns => a,
                _ => continue,
            };
            let index = self.ifindex(&far.ns, &far.ifname)?;
            let fd = self.open_ns(&far.ns)?;
            attachments.push(prog.attach_in(fd.as_fd(), index)?);
        }
        Ok(XdpPeers {
            _attachments: attachments,
            _prog: prog,
        })
    }

    /// `fwd` on `dev` in `ns` at `hook`; for XDP also XDP_PASS on the far
    /// ends of `ns`'s veths (a redirect into a veth needs an XDP program on
    /// its peer). Detached when the result is dropped.
    pub fn attach_forwarder(
        &self,
        fwd: &impl AttachIn,
        hook: Hook,
        ns: &str,
        dev: &str,
    ) -> Result<ForwarderAttached> {
        let index = self.ifindex(ns, dev)?;
        let ns_fd = self.open_ns(ns)?;
        let peers = match hook {
            Hook::Xdp => Some(self.xdp_pass_on_peers_of(ns)?),
            Hook::Tc => None,
        };
        let attachment = fwd.attach_in(ns_fd.as_fd(), hook, index)?;
        Ok(ForwarderAttached {
            _attachment: attachment,
            _peers: peers,
        })
    }

    /// Add `addrs` (address, prefix length) to `dev` in `ns`.
    pub fn add_addresses(&self, ns: &str, dev: &str, addrs: &[(IpAddr, u8)]) -> Result<()> {
        let (dev, addrs) = (dev.to_string(), addrs.to_vec());
        self.netlink(ns, |h| async move {
            let index = rtnl::ifindex(&h, &dev).await?;
            rtnl::add_addresses_at(&h, index, &dev, &addrs).await
        })
    }

    /// Remove `addrs` (address, prefix length, as added) from `dev` in
    /// `ns`.
    pub fn del_addresses(&self, ns: &str, dev: &str, addrs: &[(IpAddr, u8)]) -> Result<()> {
        let (dev, addrs) = (dev.to_string(), addrs.to_vec());
        self.netlink(ns, |h| async move {
            let index = rtnl::ifindex(&h, &dev).await?;
            rtnl::del_addresses_at(&h, index, &dev, &addrs).await
        })
    }

    /// The index of `ifname` in `ns`.
    pub fn ifindex(&self, ns: &str, ifname: &str) -> Result<u32> {
        let name = ifname.to_string();
        self.netlink(ns, |h| async move { rtnl::ifindex(&h, &name).await })
    }

    /// The MAC address of `ifname` in `ns`.
    pub fn mac(&self, ns: &str, ifname: &str) -> Result<[u8; 6]> {
        let name = ifname.to_string();
        self.netlink(ns, |h| async move {
            use futures::TryStreamExt;
            use netlink_packet_route::link::LinkAttribute;
            let mut links = h.link().get().match_name(name.clone()).execute();
            let link = links
                .try_next()
                .await
                .map_err(rtnl::nl_err(format!("read the MAC of {name}")))?
                .ok_or_else(|| Error::NoSuchInterface(name.clone()))?;
            link.attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(m) => <[u8; 6]>::try_from(&m[..]).ok(),
                    _ => None,
                })
                .ok_or_else(|| Error::NoSuchInterface(format!("{name} (no MAC)")))
        })
    }

    /// Give `ifname` in `ns` the MAC address `mac` (no announcement is
    /// sent unless the namespace's `arp_notify` / `ndisc_notify` ask for
    /// one; the lab's are off).
    pub fn set_mac(&self, ns: &str, ifname: &str, mac: [u8; 6]) -> Result<()> {
        let name = ifname.to_string();
        self.netlink(ns, |h| async move {
            h.link()
                .set(
                    rtnetlink::LinkUnspec::new_with_name(&name)
                        .address(mac.to_vec())
                        .build(),
                )
                .execute()
                .await
                .map_err(rtnl::nl_err(format!("set the MAC of {name}")))
        })
    }

    /// Add or replace a neighbour entry on `ifname` in `ns`.
    pub fn neigh_replace(&self, ns: &str, ifname: &str, spec: &NeighSpec) -> Result<()> {
        let (name, spec) = (ifname.to_string(), spec.clone());
        self.netlink(ns, |h| async move {
            let index = rtnl::ifindex(&h, &name).await?;
            neigh::replace(&h, index, &spec).await
        })
    }

    /// The neighbour entry for `dst` on `ifname` in `ns`.
    pub fn neigh_get(&self, ns: &str, ifname: &str, dst: IpAddr) -> Result<Option<NeighEntry>> {
        let name = ifname.to_string();
        self.netlink(ns, |h| async move {
            let index = rtnl::ifindex(&h, &name).await?;
            neigh::get(&h, index, dst).await
        })
    }

    /// Delete the neighbour entry for `dst` on `ifname` in `ns`; false if
    /// there was none.
    pub fn neigh_delete(&self, ns: &str, ifname: &str, dst: IpAddr) -> Result<bool> {
        let name = ifname.to_string();
        self.netlink(ns, |h| async move {
            let index = rtnl::ifindex(&h, &name).await?;
            neigh::delete(&h, index, dst).await
        })
    }

    /// Set a neighbour parameter of `dev` in `ns` for IPv4 or IPv6.
    pub fn set_neigh_sysctl(
        &self,
        ns: &str,
        dev: &str,
        v6: bool,
        param: NeighSysctl,
        value: u32,
    ) -> Result<()> {
        self.check(ns)?;
        Lab::in_ns(ns, || neigh::set_sysctl(dev, v6, param, value))?
    }

    /// Set several neighbour parameters of `dev` in `ns` (see
    /// [`neigh::FROZEN`] and friends); returns them by sysctl file name,
    /// as results record them.
    pub fn set_neigh_timers(
        &self,
        ns: &str,
        dev: &str,
        v6: bool,
        timers: &[(NeighSysctl, u32)],
    ) -> Result<std::collections::BTreeMap<String, String>> {
        let mut set = std::collections::BTreeMap::new();
        for &(param, value) in timers {
            self.set_neigh_sysctl(ns, dev, v6, param, value)?;
            set.insert(param.file().to_string(), value.to_string());
        }
        Ok(set)
    }

    /// `problems` plus lines naming the lab namespaces a run left behind
    /// (those of runs that are gone, and this process's own that no live
    /// lab holds), removed, and those that could not be removed.
    pub fn with_leftovers(mut problems: Vec<String>) -> Result<Vec<String>> {
        let leftovers = remove_leftovers(true)?;
        if !leftovers.removed.is_empty() {
            problems.push(format!("left behind: {}", leftovers.removed.join(", ")));
        }
        if !leftovers.stuck.is_empty() {
            problems.push(format!(
                "left behind and not removable: {}",
                leftovers.stuck.join(", ")
            ));
        }
        Ok(problems)
    }

    /// Delete namespaces left by lab runs whose process is gone, and print
    /// what was removed. Namespaces of live processes, this one included,
    /// are left alone. One that cannot be removed is named with why, and
    /// the others are still removed: a stuck leftover does not stop a lab
    /// command (see [`Leftovers::stuck`]).
    pub fn cleanup_leftovers() -> Result<Leftovers> {
        remove_leftovers(false)
    }

    fn check(&self, ns: &str) -> Result<()> {
        if self.created.iter().any(|n| n == ns) {
            Ok(())
        } else {
            Err(Error::NotOurs(ns.to_string()))
        }
    }
}

/// Delete the lab namespaces of runs whose process is gone and, with
/// `own`, this process's that no live [`Lab`] holds (those a dropped lab
/// failed to delete), printing each with why it is a leftover.
fn remove_leftovers(own: bool) -> Result<Leftovers> {
    let me = std::process::id();
    let mut found = Leftovers::default();
    netns::drop_stale_marks();
    for name in netns::list()? {
        // Named like a lab's and marked as made by one: another tool's
        // namespace that happens to look like ours is never touched.
        let Some(pid) = plan::owner_pid(&name).filter(|_| netns::made_here(&name)) else {
            continue;
        };
        let why = if pid == me {
            if !own || live_namespaces().contains(&name) {
                continue;
            }
            "this run left it behind".to_string()
        } else if netns::pid_alive(pid) {
            continue;
        } else {
            format!("process {pid} is gone")
        };
        match netns::delete(&name) {
            Ok(()) => {
                eprintln!("removed leftover network namespace {name} ({why})");
                found.removed.push(name);
            }
            Err(e) => {
                let busy = matches!(&e, Error::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::ResourceBusy);
                let hint = if busy {
                    format!(
                        "; its mount is hidden under a later mount of {} (made by `ip netns add` \
                         before this program made the directory a shared mount point): \
                         `umount {}` uncovers it",
                        netns::NETNS_DIR,
                        netns::NETNS_DIR
                    )
                } else {
                    String::new()
                };
                eprintln!("warning: leftover network namespace {name} ({why}): {e}{hint}");
                found.stuck.push(name);
            }
        }
    }
    Ok(found)
}

/// The namespaces of this process's live labs: made by [`Lab::create`],
/// forgotten when the lab drops.
fn live_namespaces() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<String>> {
    static LIVE: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    // A thread that panicked while holding it left the set itself whole.
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What [`Lab::cleanup_leftovers`] found.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Namespaces of processes that are gone, removed.
    pub removed: Vec<String>,
    /// Namespaces of processes that are gone, which could not be removed
    /// (each named on stderr with why).
    pub stuck: Vec<String>,
}

/// A forwarder attached by [`Lab::attach_forwarder`]; detached on drop.
pub struct ForwarderAttached {
    _attachment: Attachment,
    _peers: Option<XdpPeers>,
}

/// XDP_PASS programs on the far ends of a namespace's veths (see
/// [`Lab::xdp_pass_on_peers_of`]); detached on drop.
pub struct XdpPeers {
    _attachments: Vec<Attachment>,
    _prog: XdpPass,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Detach first, while the device still exists.
        self.announce = None;
        for ns in self.created.iter().rev() {
            if let Err(e) = netns::delete(ns) {
                eprintln!("warning: {e}");
            }
            // Gone or not, no live lab holds it: one still there is a
            // leftover of this process (see [`Lab::with_leftovers`]).
            live_namespaces().remove(ns);
        }
    }
}

/// Sysctls every lab namespace gets before its links exist: no IPv6 DAD
/// (addresses usable at once), forwarding on routers only.
fn base_sysctls(router: bool) -> Result<()> {
    for conf in ["all", "default"] {
        rtnl::write_sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
        rtnl::write_sysctl(&format!("net/ipv6/conf/{conf}/accept_ra"), "0")?;
    }
    let on = if router { "1" } else { "0" };
    rtnl::write_sysctl("net/ipv4/ip_forward", on)?;
    rtnl::write_sysctl("net/ipv6/conf/all/forwarding", on)?;
    Ok(())
}
