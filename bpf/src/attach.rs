//! Attaching tc and XDP programs to a device in the calling thread's
//! network namespace, with a guard that detaches on drop.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::{Link, ProgramMut, TcAttachPoint, TcHook, TcHookBuilder};

use crate::{BpfContext, Hook, Result};

/// A loaded program (the forwarder, an example) that attaches to a device
/// in a given network namespace.
pub trait AttachIn {
    /// Attach at `hook` to `ifindex` in `netns` (the calling thread enters
    /// it for the attach and returns); detached when the guard drops.
    fn attach_in(&self, netns: BorrowedFd<'_>, hook: Hook, ifindex: u32) -> Result<Attachment>;
}

/// A program attached to a device; detaches on drop.
pub struct Attachment {
    kind: Kind,
}

enum Kind {
    /// A tc filter; detaching goes through a netlink socket opened in the
    /// calling thread's namespace, so the attach namespace is kept (which
    /// keeps it alive until the guard drops).
    Tc { hook: TcHook, netns: OwnedFd },
    /// An XDP BPF link; closing it detaches, from any namespace.
    Xdp { _link: Link },
}

impl Attachment {
    /// Which kind of hook the program is attached to.
    pub fn hook(&self) -> Hook {
        match self.kind {
            Kind::Tc { .. } => Hook::Tc,
            Kind::Xdp { .. } => Hook::Xdp,
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Kind::Tc { hook, netns } = &mut self.kind {
            // The devices may be gone already (and the filter with them).
            if let Ok(_inside) = EnteredNetns::enter(netns.as_fd()) {
                let _ = hook.detach();
            }
        }
    }
}

/// Attach the tc program `prog` at `point` (ingress or egress) of
/// `ifindex`, creating the clsact qdisc if missing (it is left in place on
/// detach: other filters may use it).
pub(crate) fn tc(prog: BorrowedFd<'_>, ifindex: u32, point: TcAttachPoint) -> Result<Attachment> {
    let mut hook = TcHookBuilder::new(prog)
        .ifindex(to_i32(ifindex)?)
        .replace(true)
        .handle(1)
        .priority(1)
        .hook(point);
    hook.create().ctx("create the clsact qdisc")?;
    tc_hook(hook)
}

/// Attach a tc filter described by `hook` (its qdisc already there), in
/// the calling thread's network namespace.
pub(crate) fn tc_hook(mut hook: TcHook) -> Result<Attachment> {
    let netns = current_netns()?;
    hook.attach().ctx("attach the tc program")?;
    Ok(Attachment {
        kind: Kind::Tc { hook, netns },
    })
}

/// Attach the XDP program `prog` to `ifindex` with a BPF link.
pub(crate) fn xdp(prog: &ProgramMut<'_>, ifindex: u32) -> Result<Attachment> {
    let link = prog
        .attach_xdp(to_i32(ifindex)?)
        .ctx("attach the XDP program")?;
    Ok(Attachment {
        kind: Kind::Xdp { _link: link },
    })
}

/// An interface index as libbpf's calls take it.
pub(crate) fn to_i32(ifindex: u32) -> Result<i32> {
    i32::try_from(ifindex)
        .map_err(|_| crate::os_error(libc::ENODEV))
        .ctx("use the interface index")
}

fn current_netns() -> Result<OwnedFd> {
    File::open("/proc/thread-self/ns/net")
        .map(OwnedFd::from)
        .map_err(libbpf_rs::Error::from)
        .ctx("open the current network namespace")
}

/// The calling thread inside another network namespace until drop, which
/// returns it to the namespace it was in.
pub struct EnteredNetns {
    previous: OwnedFd,
}

impl EnteredNetns {
    pub fn enter(netns: BorrowedFd<'_>) -> Result<Self> {
        let previous = current_netns()?;
        setns(netns).ctx("enter the network namespace")?;
        Ok(Self { previous })
    }
}

impl Drop for EnteredNetns {
    fn drop(&mut self) {
        // Staying in the wrong namespace would silently misdirect every
        // later network call of this thread.
        setns(self.previous.as_fd()).expect("return to the previous network namespace");
    }
}

fn setns(fd: BorrowedFd<'_>) -> libbpf_rs::Result<()> {
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().into())
    }
}
