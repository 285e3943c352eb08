//! The header's two examples (`examples/*.bpf.c` on `include/fib_neigh.h`)
//! load on the running kernel and take the branch its BTF says (needs
//! root): on a kernel that accepts `NEIGH_STATE` the state path, on any
//! other the caller's fallback. Nothing is attached: each runs once under
//! `BPF_PROG_TEST_RUN` on loopback (as `forwarder_load` does); the local
//! destination is not forwarded, so every frame passes.

use fibneigh_bpf::example::{Example, Path};
use fibneigh_bpf::flags;
use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::Hook;

mod common;
use common::*;

#[test]
#[ignore = "needs root"]
fn examples_take_the_path_the_kernel_supports() {
    let mut probe = Probe::load().expect("load the probe");
    let patched = probe.accepts_flag(flags::NEIGH_STATE).expect("probe");
    let want = if patched { Path::State } else { Path::Fallback };
    for hook in [Hook::Tc, Hook::Xdp] {
        let ex = Example::load(hook).unwrap_or_else(|e| panic!("load the {hook:?} example: {e}"));
        assert_eq!(ex.hook(), hook);
        assert_eq!(
            ex.stats().expect("stats").path(),
            None,
            "nothing decided yet"
        );
        for frame in [ipv4_udp(64), ipv6_udp()] {
            let verdict = ex.test_run(&frame, LOOPBACK).expect("test run");
            assert_eq!(verdict, pass(hook), "{hook:?}: a local destination passes");
        }
        let stats = ex.stats().expect("stats");
        eprintln!("{hook:?}: patched={patched} {stats:?}");
        assert_eq!(stats.path(), Some(want), "{hook:?}");
        assert_eq!(stats.on(want), 2, "{hook:?}: both frames decided");
    }
}

#[test]
#[ignore = "needs root"]
fn frames_the_examples_do_not_route_are_not_decided() {
    let mut options = ipv4_udp(64);
    options[14] = 0x46;
    for hook in [Hook::Tc, Hook::Xdp] {
        let ex = Example::load(hook).expect("load");
        for (what, frame) in [("ttl 1", ipv4_udp(1)), ("ip options", options.clone())] {
            assert_eq!(
                ex.test_run(&frame, LOOPBACK).expect("run"),
                pass(hook),
                "{what}"
            );
        }
        let stats = ex.stats().expect("stats");
        assert_eq!(
            stats.on(Path::State) + stats.on(Path::Fallback),
            0,
            "{hook:?}"
        );
    }
}
