//! Links, addresses, routes over rtnetlink, and sysctls, inside a
//! namespace. Each `with_netlink` call runs in a thread that entered the
//! namespace, with its own netlink socket (a socket stays bound to the
//! namespace it was opened in).

use std::future::Future;
use std::net::IpAddr;
use std::os::fd::RawFd;

use futures::TryStreamExt;
use netlink_packet_route::link::InfoBridge;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::plan::Route;
use super::{io_err, netns, Error, Result};

/// Run `f` with a netlink handle opened inside namespace `ns`.
pub fn with_netlink<T, F, Fut>(ns: &str, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    netns::run_in(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io_err("start a tokio runtime"))?;
        rt.block_on(async move {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(io_err("open a netlink socket"))?;
            tokio::spawn(conn);
            f(handle).await
        })
    })?
}

/// Wrap a netlink failure with what was being done.
pub(crate) fn nl_err(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

/// The index of interface `name`.
pub async fn ifindex(h: &Handle, name: &str) -> Result<u32> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err(Error::NoSuchInterface(name.to_string())),
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {
            Err(Error::NoSuchInterface(name.to_string()))
        }
        Err(e) => Err(nl_err(format!("look up interface {name}"))(e)),
    }
}

/// Bring interface `name` up.
pub async fn set_up(h: &Handle, name: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_name(name).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("bring {name} up")))
}

/// Create a veth pair `a`/`b` here.
pub async fn add_veth(h: &Handle, a: &str, b: &str) -> Result<()> {
    h.link()
        .add(LinkVeth::new(a, b).build())
        .execute()
        .await
        .map_err(nl_err(format!("create veth {a}/{b}")))
}

/// Move interface `name` into the namespace open at `ns_fd`.
pub async fn move_to_netns(h: &Handle, name: &str, ns_fd: RawFd) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_name(name).setns_by_fd(ns_fd).build())
        .execute()
        .await
        .map_err(nl_err(format!("move {name} to another namespace")))
}

/// Create bridge `name` (STP off, the default) and enslave `ports`.
pub async fn add_bridge(
    h: &Handle,
    name: &str,
    ports: &[String],
    mcast_snooping: bool,
) -> Result<()> {
    let mut bridge = LinkBridge::new(name);
    if !mcast_snooping {
        bridge = bridge.append_info_data(InfoBridge::MulticastSnooping(false));
    }
    h.link()
        .add(bridge.build())
        .execute()
        .await
        .map_err(nl_err(format!("create bridge {name}")))?;
    let index = ifindex(h, name).await?;
    for port in ports {
        h.link()
            .set(LinkUnspec::new_with_name(port).controller(index).build())
            .execute()
            .await
            .map_err(nl_err(format!("add {port} to bridge {name}")))?;
    }
    Ok(())
}

/// Add `addr/prefix_len` to interface `name`.
pub async fn add_address(h: &Handle, name: &str, addr: IpAddr, prefix_len: u8) -> Result<()> {
    let index = ifindex(h, name).await?;
    add_addresses_at(h, index, name, &[(addr, prefix_len)]).await
}

/// Every this many requests of a long batch, a stop request ends it.
const STOP_CHECK_EVERY: usize = 256;

/// For the `i`-th request of a long netlink batch: `Err(Interrupted)`
/// once a stop was requested, looked at every [`STOP_CHECK_EVERY`].
pub(crate) fn check_stop(i: usize) -> Result<()> {
    if i % STOP_CHECK_EVERY == STOP_CHECK_EVERY - 1 {
        crate::stop::check()?;
    }
    Ok(())
}

/// Add every `(address, prefix length)` of `addrs` to interface `index`,
/// one request each (thousands take a second or two); `name` is for
/// messages. A stop request ends it early.
pub async fn add_addresses_at(
    h: &Handle,
    index: u32,
    name: &str,
    addrs: &[(IpAddr, u8)],
) -> Result<()> {
    for (i, &(addr, prefix_len)) in addrs.iter().enumerate() {
        check_stop(i)?;
        h.address()
            .add(index, addr, prefix_len)
            .execute()
            .await
            .map_err(nl_err(format!("add {addr}/{prefix_len} to {name}")))?;
    }
    Ok(())
}

/// Remove every `(address, prefix length)` of `addrs`, as added, from
/// interface `index`: one request each, no listing, so thousands go in
/// seconds; `name` is for messages. It also runs in clean-up after a
/// stop request, so it does not stop early.
pub async fn del_addresses_at(
    h: &Handle,
    index: u32,
    name: &str,
    addrs: &[(IpAddr, u8)],
) -> Result<()> {
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    for &(addr, prefix_len) in addrs {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(addr);
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Address(addr));
        if addr.is_ipv4() {
            msg.attributes.push(AddressAttribute::Local(addr));
        }
        h.address()
            .del(msg)
            .execute()
            .await
            .map_err(nl_err(format!("remove {addr}/{prefix_len} from {name}")))?;
    }
    Ok(())
}

/// Add route `r` (in the handle's namespace).
pub async fn add_route(h: &Handle, r: &Route) -> Result<()> {
    let msg = match (r.gateway, r.dst) {
        (IpAddr::V4(gw), dst) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new().gateway(gw);
            if let Some((IpAddr::V4(d), len)) = dst {
                b = b.destination_prefix(d, len);
            }
            b.build()
        }
        (IpAddr::V6(gw), dst) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new().gateway(gw);
            if let Some((IpAddr::V6(d), len)) = dst {
                b = b.destination_prefix(d, len);
            }
            b.build()
        }
    };
    h.route()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err(format!("add route via {}", r.gateway)))
}

/// The netlink address family of `addr`.
pub fn family_of(addr: IpAddr) -> netlink_packet_route::AddressFamily {
    use netlink_packet_route::AddressFamily;
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// Write `value` to /proc/sys/`key` (e.g. `net/ipv4/ip_forward`) in the
/// calling thread's network namespace.
pub fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let p = format!("/proc/sys/{key}");
    std::fs::write(&p, value).map_err(io_err(format!("write {value} to {p}")))
}

/// Read /proc/sys/`key` in the calling thread's network namespace.
pub fn read_sysctl(key: &str) -> Result<String> {
    let p = format!("/proc/sys/{key}");
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(io_err(format!("read {p}")))
}
