//! An XDP program that passes every frame (src/bpf/xdp_pass.bpf.c): a veth
//! takes frames redirected into it by XDP only while its peer runs an XDP
//! program, so the far ends of an XDP forwarder's veths get this one.

use std::os::fd::BorrowedFd;

use crate::attach::{self, Attachment, EnteredNetns};
use crate::probe::FRAME;
use crate::skel::xdp_pass as skel;
use crate::{Hook, Result};

skel_owner!(
    /// The loaded pass-through program; attach it as often as needed.
    pub struct XdpPass(skel::XdpPassSkel<'static>) from skel::XdpPassSkelBuilder,
    "load the xdp_pass BPF object"
);

impl XdpPass {
    /// Attach to `ifindex` in the network namespace `netns` (the calling
    /// thread enters it for the attach and returns).
    pub fn attach_in(&self, netns: BorrowedFd<'_>, ifindex: u32) -> Result<Attachment> {
        let _inside = EnteredNetns::enter(netns)?;
        attach::xdp(&self.skel.progs.xdp_pass, ifindex)
    }

    /// One `BPF_PROG_TEST_RUN` of two repeats: with more than one, the
    /// kernel adds the program to the XDP dispatcher for the run and
    /// removes it after, rewriting the `jmp` in `bpf_dispatcher_xdp_func`
    /// twice. Returns the verdict (`XDP_PASS`).
    pub fn test_run_through_dispatcher(&self) -> Result<u32> {
        crate::test_run_repeat(
            &self.skel.progs.xdp_pass,
            Hook::Xdp,
            &FRAME,
            0,
            2,
            "test-run xdp_pass through the XDP dispatcher",
        )
    }
}
