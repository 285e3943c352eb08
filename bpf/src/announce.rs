//! The lab switch's announcement filter (src/bpf/announce.bpf.c): on a
//! port's egress, drops gratuitous ARP and unsolicited neighbour
//! advertisements while enabled, so the far side learns of an IP moving to
//! a new MAC only by asking.

use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::TC_EGRESS;

use crate::attach::{self, Attachment, EnteredNetns};
use crate::skel::announce as skel;
use crate::Result;

/// What the filter dropped so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub gratuitous_arp: u64,
    pub unsolicited_na: u64,
}

skel_owner!(
    /// The loaded filter (disabled until [`set_enabled`](Self::set_enabled)).
    pub struct AnnounceFilter(skel::AnnounceSkel<'static>) from skel::AnnounceSkelBuilder,
    "load the announcement filter BPF object"
);

impl AnnounceFilter {
    /// Attach to the egress of `ifindex` in the network namespace `netns`
    /// (the calling thread enters it for the attach and returns).
    pub fn attach_in(&self, netns: BorrowedFd<'_>, ifindex: u32) -> Result<Attachment> {
        let _inside = EnteredNetns::enter(netns)?;
        attach::tc(
            self.skel.progs.drop_announcements.as_fd(),
            ifindex,
            TC_EGRESS,
        )
    }

    /// Start or stop dropping announcements (takes effect at once).
    pub fn set_enabled(&mut self, on: bool) -> Result<()> {
        let bss = crate::global_mut(&mut self.skel.maps.bss_data)?;
        bss.enabled = u32::from(on);
        Ok(())
    }

    /// Whether announcements are being dropped.
    pub fn enabled(&self) -> Result<bool> {
        let bss = crate::global(&self.skel.maps.bss_data)?;
        Ok(bss.enabled != 0)
    }

    /// What was dropped since load.
    pub fn dropped(&self) -> Result<Dropped> {
        let bss = crate::global(&self.skel.maps.bss_data)?;
        // SAFETY: the counters are only ever incremented atomically by
        // the program; a torn read is impossible for aligned u64s.
        Ok(Dropped {
            gratuitous_arp: unsafe { std::ptr::read_volatile(&bss.dropped_arp) },
            unsolicited_na: unsafe { std::ptr::read_volatile(&bss.dropped_na) },
        })
    }
}
