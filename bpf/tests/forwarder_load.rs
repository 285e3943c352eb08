//! Every policy's tc and XDP forwarder loads, passes the verifier and runs
//! once under `BPF_PROG_TEST_RUN` (needs root). Nothing is attached: the
//! runs use loopback's index in the test's own namespace, and the kernel
//! does not carry out a returned redirect.

use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::Hook;
use fibneigh_bpf::{ret, Forwarder, Policy};

mod common;
use common::*;

#[test]
#[ignore = "needs root"]
fn every_policy_loads_and_runs_once() {
    let mut probe = Probe::load().expect("load the probe");
    for &policy in Policy::ALL {
        let supported = probe
            .accepts_flag(policy.required_flags())
            .expect("probe the flag");
        let fwd = Forwarder::load(policy).unwrap_or_else(|e| panic!("load {policy}: {e}"));
        assert_eq!(fwd.policy(), policy);
        for hook in [Hook::Tc, Hook::Xdp] {
            for frame in [ipv4_udp(64), ipv6_udp()] {
                fwd.reset_counters().expect("reset");
                let verdict = fwd
                    .test_run(hook, &frame, LOOPBACK)
                    .unwrap_or_else(|e| panic!("run {policy} {hook:?}: {e}"));
                let c = fwd.counters().expect("counters");
                eprintln!("{policy} {hook:?} supported={supported} verdict={verdict} {c:?}");
                assert_eq!(c.lookups_total(), 1, "{policy} {hook:?}: one lookup");
                assert_eq!(
                    c.pass + c.redirect + c.redirect_neigh + c.drop,
                    1,
                    "{policy} {hook:?}: one action"
                );
                assert_eq!(c.skipped, 0);
                if !supported {
                    // Unknown flag: -EINVAL, counted as other, packet passed.
                    assert_eq!(c.lookups_returning(-(libc::EINVAL as i64)), 1);
                    assert_eq!(verdict, pass(hook));
                    assert_eq!(c.pass, 1);
                } else {
                    // A local destination on loopback: not forwarded (or
                    // forwarding disabled), so the stack gets it.
                    let rc = (0..=10).find(|&rc| c.lookups_returning(rc) == 1);
                    assert!(
                        matches!(rc, Some(ret::NOT_FWDED) | Some(ret::FWD_DISABLED)),
                        "{policy} {hook:?}: rc {rc:?}"
                    );
                    assert_eq!(verdict, pass(hook));
                }
                assert!(
                    verdict == pass(hook) || verdict == TC_ACT_REDIRECT || verdict == XDP_REDIRECT
                );
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn frames_not_ours_pass_without_a_lookup() {
    let fwd = Forwarder::load(Policy::Baseline).expect("load");
    // The header claims more bytes than the frame holds. (A frame shorter
    // than an IP header is refused by BPF_PROG_TEST_RUN for tc itself.)
    let mut truncated = ipv4_udp(64);
    truncated[16..18].copy_from_slice(&200u16.to_be_bytes());
    let mut options = ipv4_udp(64);
    options[14] = 0x46;
    let mut broadcast = ipv4_udp(64);
    broadcast[..6].copy_from_slice(&[0xff; 6]);
    let arp = {
        let mut f = ethernet(0x0806);
        f.extend_from_slice(&[0u8; 28]);
        f
    };
    let frames = [
        ("ttl 1", ipv4_udp(1)),
        ("truncated", truncated),
        ("ip options", options),
        ("broadcast", broadcast),
        ("arp", arp),
    ];
    for hook in [Hook::Tc, Hook::Xdp] {
        for (what, frame) in &frames {
            fwd.reset_counters().expect("reset");
            let verdict = fwd.test_run(hook, frame, LOOPBACK).expect("run");
            let c = fwd.counters().expect("counters");
            assert_eq!(verdict, pass(hook), "{what} {hook:?}");
            assert_eq!(c.lookups_total(), 0, "{what} {hook:?}");
            assert_eq!((c.skipped, c.pass), (1, 1), "{what} {hook:?}");
        }
    }
}
