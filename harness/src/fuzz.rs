//! Seeded fuzzing of `bpf_fib_lookup()` and of the forwarder, through
//! `BPF_PROG_TEST_RUN`, in the DUT namespace of a standard lab.
//!
//! Every lookup gets random flags (all combinations of the defined bits,
//! plus undefined bits), families, addresses in and out of the lab's
//! routes, interfaces, table ids, marks, VLAN tags, `tot_len`s, input-only
//! fields and frames of random length; the DUT's entries sit in every NUD
//! state. Each result is checked against the helper's documentation
//! ([`check`]): a defined return code or errno, `-EINVAL` exactly for the
//! rejected flag words with nothing written, `nud_state` written only on
//! the returns that report it and then a state consistent with the return,
//! and the input-only fields left alone. The forwarder gets random and
//! truncated frames and must never redirect a frame too short to hold the
//! headers it parses. A kernel splat is caught by the VM's console scan.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fibneigh_bpf::forwarder::{Forwarder, Policy};
use fibneigh_bpf::params::{AF_INET, AF_INET6};
use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::Hook;
use fibneigh_bpf::{flags, nud, ret, FibParams};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::lab::{addr, neigh, rtnl, Lab, Names, NeighSpec, Topology};
use crate::nud::Nud;
use crate::stop;

/// The flag bits the series defines (bits 0-9).
pub const DEFINED_FLAGS: u32 = (1 << 10) - 1;
const ETH_HLEN: usize = 14;
const EINVAL: i64 = -(libc::EINVAL as i64);

use crate::error::Result;

/// What one fuzz run did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FuzzReport {
    pub seed: u64,
    /// The flag bits the running kernel accepts.
    pub known_flags: u32,
    pub lookups: u64,
    /// Of the 2^10 combinations of the defined bits, how many were run
    /// (without undefined bits).
    pub flag_combinations: u32,
    pub forwarder_runs: u64,
    /// "tc SUCCESS", "xdp EINVAL", "tc test-run rejected (frame < 14 B)", ...
    pub outcomes: BTreeMap<String, u64>,
    /// "xdp state-aware XDP_PASS", ...
    pub forwarder_verdicts: BTreeMap<String, u64>,
    /// Results that break the documented contract; empty when all is well.
    pub violations: Vec<String>,
}

impl FuzzReport {
    /// What ran (in `secs` seconds), the lookups' outcomes and the
    /// forwarder's verdicts.
    pub fn render(&self, secs: f64) -> String {
        let r = self;
        let mut out = format!(
            "fuzz: seed {}, {} lookups, {} forwarder runs in {secs:.1}s\n",
            r.seed, r.lookups, r.forwarder_runs
        );
        out.push_str(&format!(
            "flag words: {} of the 1024 combinations of the defined bits, and words with undefined bits; this kernel knows bits {:#05x}\n",
            r.flag_combinations, r.known_flags
        ));
        out.push_str("lookup outcomes:\n");
        for (k, v) in &r.outcomes {
            out.push_str(&format!("  {v:>8}  {k}\n"));
        }
        out.push_str("forwarder verdicts:\n");
        for (k, v) in &r.forwarder_verdicts {
            out.push_str(&format!("  {v:>8}  {k}\n"));
        }
        out
    }

    /// The contract's verdict: none broken, or each violation.
    pub fn render_violations(&self) -> String {
        if self.violations.is_empty() {
            return "no result outside the documented contract\n".into();
        }
        let mut out = format!("{} violation(s):\n", self.violations.len());
        for v in &self.violations {
            out.push_str(&format!("  {v}\n"));
        }
        out
    }
}

/// The lookup as generated, for reproducing a violation.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub hook: Hook,
    pub flags: u32,
    pub params: FibParams,
    pub frame_len: usize,
}

/// What the helper documents for `case`'s result (`None` when it holds) on
/// a kernel that knows the flag bits in `known` ([`DEFINED_FLAGS`] with
/// the series, without bits 8 and 9 before it).
pub fn check(case: &Case, known: u32, rc: i64, out: &FibParams) -> Option<String> {
    let f = case.flags;
    let inp = &case.params;
    let tc = case.hook == Hook::Tc;
    let rejected = f & !known != 0
        || (f & (flags::NEIGH_STATE | flags::NEIGH_REFRESH) != 0 && f & flags::SKIP_NEIGH != 0)
        || (f & flags::VLAN_INPUT != 0 && f & (flags::TBID | flags::OUTPUT) != 0)
        || (tc && f & flags::VLAN != 0);
    if rejected {
        if rc != EINVAL {
            return Some(format!("rejected flag word returned {}", ret::name(rc)));
        }
        if out != inp {
            return Some("rejected flag word, but the parameters were written".into());
        }
        return None;
    }
    let defined = (ret::SUCCESS..=ret::VLAN_FAILURE).contains(&rc)
        || [EINVAL, -(libc::ENODEV as i64), -(libc::EAFNOSUPPORT as i64)].contains(&rc);
    if !defined {
        return Some(format!("undocumented return {rc}"));
    }
    if out.dport != inp.dport || out.l4_protocol != inp.l4_protocol {
        return Some("an input-only field (dport, l4_protocol) was written".into());
    }
    let reports = f & flags::NEIGH_STATE != 0
        && (rc == ret::SUCCESS
            || rc == ret::NO_NEIGH
            || (tc && inp.tot_len_mtu_result == 0 && rc == ret::FRAG_NEEDED));
    let state = out.nud_state();
    if !reports {
        if out.sport_nud_state != inp.sport_nud_state {
            return Some(format!(
                "{} wrote nud_state/sport ({:#x} -> {:#x})",
                ret::name(rc),
                inp.sport_nud_state,
                state
            ));
        }
        return None;
    }
    if out.nud_reserved() != 0 {
        return Some(format!(
            "{} wrote nud_state {} with the reserved byte {:#x}, not 0",
            ret::name(rc),
            nud::name(state),
            out.nud_reserved()
        ));
    }
    let consistent = match rc {
        ret::NO_NEIGH => [Nud::NONE, Nud::INCOMPLETE, Nud::FAILED].contains(&Nud(state)),
        _ => state.count_ones() == 1 && Nud(state).valid(),
    };
    (!consistent).then(|| format!("{} reported nud_state {}", ret::name(rc), nud::name(state)))
}

/// Addresses the generator draws from: the lab's own, the entries in every
/// state, and some that no route covers.
struct Pools {
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    ifindexes: Vec<u32>,
}

/// The DUT entries, one per state, on the host segment.
fn entry_addrs(i: u8) -> (Ipv4Addr, Ipv6Addr) {
    (
        Ipv4Addr::new(10, 2, 0, 50 + i),
        Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x50 + u16::from(i)),
    )
}

/// The `i`th case: every other one walks through all 2^10 combinations of
/// the defined flag bits in turn (so all of them are covered every 2048
/// cases); the rest draw sparse defined words (few contradictions, so the
/// lookups get far), words with undefined bits, and arbitrary words.
fn gen_case(i: u64, rng: &mut ChaCha8Rng, pools: &Pools) -> (Case, Vec<u8>) {
    let hook = if rng.gen_bool(0.5) {
        Hook::Tc
    } else {
        Hook::Xdp
    };
    let sparse = |rng: &mut ChaCha8Rng| {
        (0..10).fold(0u32, |f, b| if rng.gen_bool(0.2) { f | 1 << b } else { f })
    };
    let flags = if i.is_multiple_of(2) {
        ((i / 2) % 1024) as u32
    } else {
        match rng.gen_range(0..8) {
            0..=4 => sparse(rng),
            5 | 6 => sparse(rng) | (1 << rng.gen_range(10..32)),
            _ => rng.gen(),
        }
    };
    let mut p = FibParams::default();
    let family = match rng.gen_range(0..20) {
        0..=8 => AF_INET,
        9..=17 => AF_INET6,
        _ => rng.gen(),
    };
    p.family = family;
    let pick4 = |rng: &mut ChaCha8Rng| {
        if rng.gen_bool(0.8) {
            pools.v4[rng.gen_range(0..pools.v4.len())]
        } else {
            Ipv4Addr::from(rng.gen::<u32>())
        }
    };
    let pick6 = |rng: &mut ChaCha8Rng| {
        if rng.gen_bool(0.8) {
            pools.v6[rng.gen_range(0..pools.v6.len())]
        } else {
            Ipv6Addr::from(rng.gen::<u128>())
        }
    };
    if family == AF_INET6 || (family != AF_INET && rng.gen_bool(0.5)) {
        p.src = pick6(rng).octets();
        p.dst = pick6(rng).octets();
    } else {
        p.src[..4].copy_from_slice(&pick4(rng).octets());
        p.dst[..4].copy_from_slice(&pick4(rng).octets());
    }
    p.l4_protocol = [6, 17, 0, rng.gen()][rng.gen_range(0..4)];
    p.sport_nud_state = rng.gen();
    p.dport = rng.gen();
    p.tot_len_mtu_result = [0, 0, 64, 1500, 9000, u16::MAX, rng.gen()][rng.gen_range(0..7)];
    p.ifindex = if rng.gen_bool(0.9) {
        pools.ifindexes[rng.gen_range(0..pools.ifindexes.len())]
    } else {
        rng.gen()
    };
    p.tos_flowinfo_rt_metric = if rng.gen_bool(0.5) { 0 } else { rng.gen() };
    // tbid, or h_vlan_proto + h_vlan_TCI (network order).
    p.vlan_tbid = match rng.gen_range(0..5) {
        0 => [0; 4],
        1 => 254u32.to_ne_bytes(),
        2 => {
            let proto: u16 = [0x8100, 0x88a8, rng.gen()][rng.gen_range(0..3)];
            let tci: u16 = rng.gen_range(0..4096);
            let mut b = [0; 4];
            b[..2].copy_from_slice(&proto.to_be_bytes());
            b[2..].copy_from_slice(&tci.to_be_bytes());
            b
        }
        _ => rng.gen(),
    };
    if rng.gen_bool(0.5) {
        rng.fill_bytes(&mut p.mark_smac_dmac);
    }
    let frame_len = match rng.gen_range(0..10) {
        0 => rng.gen_range(0..ETH_HLEN),
        1..=6 => rng.gen_range(ETH_HLEN..=128),
        _ => rng.gen_range(129..=3000),
    };
    let mut frame = vec![0u8; frame_len];
    rng.fill_bytes(&mut frame);
    (
        Case {
            hook,
            flags,
            params: p,
            frame_len,
        },
        frame,
    )
}

/// A frame for the forwarder: random bytes of random length, often with a
/// plausible Ethernet + IP header start so the parser goes deeper.
fn gen_frame(rng: &mut ChaCha8Rng, dut_mac: [u8; 6], pools: &Pools) -> Vec<u8> {
    let len = match rng.gen_range(0..4) {
        0 => rng.gen_range(0..ETH_HLEN + 20),
        1 => rng.gen_range(ETH_HLEN + 20..ETH_HLEN + 48),
        _ => rng.gen_range(ETH_HLEN..600),
    };
    let mut f = vec![0u8; len];
    rng.fill_bytes(&mut f);
    if len >= ETH_HLEN && rng.gen_bool(0.8) {
        f[..6].copy_from_slice(&dut_mac);
        let ethertype: u16 = if rng.gen_bool(0.5) { 0x0800 } else { 0x86dd };
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        if len > ETH_HLEN && rng.gen_bool(0.8) {
            f[ETH_HLEN] = if ethertype == 0x0800 { 0x45 } else { 0x60 };
        }
        if ethertype == 0x0800 && len >= ETH_HLEN + 20 {
            f[ETH_HLEN + 8] = rng.gen_range(2..64); // ttl
            if rng.gen_bool(0.7) {
                let tot = u16::try_from(len - ETH_HLEN).unwrap_or(u16::MAX);
                f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&tot.to_be_bytes());
            }
            if rng.gen_bool(0.7) {
                let dst = pools.v4[rng.gen_range(0..pools.v4.len())];
                f[ETH_HLEN + 16..ETH_HLEN + 20].copy_from_slice(&dst.octets());
            }
        }
        if ethertype == 0x86dd && len >= ETH_HLEN + 40 {
            f[ETH_HLEN + 7] = rng.gen_range(2..64); // hop limit
            if rng.gen_bool(0.7) {
                let payload = u16::try_from(len - ETH_HLEN - 40).unwrap_or(u16::MAX);
                f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&payload.to_be_bytes());
                f[ETH_HLEN + 6] = 17; // UDP
            }
            if rng.gen_bool(0.7) {
                let dst = pools.v6[rng.gen_range(0..pools.v6.len())];
                f[ETH_HLEN + 24..ETH_HLEN + 40].copy_from_slice(&dst.octets());
            }
        }
    }
    f
}

/// The smallest frame the forwarder may redirect: Ethernet plus the IP
/// header of its ethertype.
fn min_forwardable(frame: &[u8]) -> usize {
    match frame.get(12..14) {
        Some([0x86, 0xdd]) => ETH_HLEN + 40,
        _ => ETH_HLEN + 20,
    }
}

/// Whether a tc test run refuses `frame` before the program runs: shorter
/// than Ethernet, or naming IPv4/IPv6 without room for that header (the
/// kernel pulls it).
fn tc_test_run_refuses(frame: &[u8]) -> bool {
    match frame.get(12..14) {
        None => true,
        Some([0x08, 0x00]) => frame.len() < ETH_HLEN + 20,
        Some([0x86, 0xdd]) => frame.len() < ETH_HLEN + 40,
        Some(_) => false,
    }
}

const TC_ACT_REDIRECT: u32 = 7;
const XDP_REDIRECT: u32 = 4;

/// What `fibneigh fuzz` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct FuzzRequest {
    /// Seed of the generator: the same seed makes the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// bpf_fib_lookup() calls (tc and XDP, chosen at random).
    #[arg(long, default_value_t = 100_000)]
    pub lookups: u64,
    /// Frames run through the forwarder, spread over its policies.
    #[arg(long, default_value_t = 20_000)]
    pub forwarder_runs: u64,
}

/// A request with nothing to run.
#[derive(Debug, thiserror::Error)]
#[error("nothing to do: --lookups and --forwarder-runs are both 0")]
pub struct NothingToDo;

impl FuzzRequest {
    /// The request, if it has something to run.
    pub fn validate(&self) -> std::result::Result<(), NothingToDo> {
        if self.lookups == 0 && self.forwarder_runs == 0 {
            return Err(NothingToDo);
        }
        Ok(())
    }

    /// [`run`] as asked.
    pub fn run(&self) -> Result<FuzzReport> {
        run(self.seed, self.lookups, self.forwarder_runs)
    }
}

/// Run `lookups` fuzzed lookups and `forwarder_runs` fuzzed frames from
/// `seed`.
pub fn run(seed: u64, lookups: u64, forwarder_runs: u64) -> Result<FuzzReport> {
    let n = Names::for_this_process();
    stop::check()?;
    let lab = Lab::create(&Topology::standard(&n))?;
    let in_index = lab.ifindex(&n.dut, &n.dut_client_if)?;
    let dut_mac = lab.mac(&n.dut, &n.dut_client_if)?;
    let pools = prepare(&lab, &n, in_index)?;
    Lab::in_ns(&n.dut, move || -> Result<FuzzReport> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut report = FuzzReport {
            seed,
            ..Default::default()
        };
        let mut probe = Probe::load()?;
        report.known_flags = known_flags(&mut probe)?;
        fuzz_lookups(&mut probe, &mut rng, &pools, lookups, &mut report)?;
        fuzz_forwarder(
            &mut rng,
            &pools,
            dut_mac,
            in_index,
            forwarder_runs,
            &mut report,
        )?;
        Ok(report)
    })?
}

/// The DUT's entries in every settable NUD state (one IPv4 and one IPv6
/// address each, timers frozen), and the pools the cases draw from.
fn prepare(lab: &Lab, n: &Names, in_index: u32) -> Result<Pools> {
    for v6 in [false, true] {
        lab.set_neigh_timers(&n.dut, &n.dut_host_if, v6, &neigh::FROZEN)?;
    }
    let dev_index = lab.ifindex(&n.dut, &n.dut_host_if)?;
    for (i, state) in Nud::SETTABLE.into_iter().enumerate() {
        let (a4, a6) = entry_addrs(i as u8);
        for a in [IpAddr::V4(a4), IpAddr::V6(a6)] {
            let lladdr = state.has_lladdr().then_some([0x02, 0xf0, 0, 0, 0, i as u8]);
            rtnl::with_netlink(&n.dut, move |h| async move {
                neigh::replace(&h, dev_index, &NeighSpec::new(a, lladdr, state.0)).await
            })?;
        }
    }
    let mut v4 = vec![
        addr::CLIENT4,
        addr::DUT_CLIENT4,
        addr::DUT_HOST4,
        addr::HOST_A4,
        addr::HOST_B4,
        addr::NOBODY4,
        Ipv4Addr::new(10, 2, 0, 200),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(192, 0, 2, 1),
    ];
    let mut v6 = vec![
        addr::CLIENT6,
        addr::DUT_CLIENT6,
        addr::DUT_HOST6,
        addr::HOST_A6,
        addr::HOST_B6,
        addr::NOBODY6,
        Ipv6Addr::UNSPECIFIED,
        Ipv6Addr::LOCALHOST,
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    ];
    for i in 0..Nud::SETTABLE.len() {
        let (a4, a6) = entry_addrs(i as u8);
        v4.push(a4);
        v6.push(a6);
    }
    Ok(Pools {
        v4,
        v6,
        ifindexes: vec![0, 1, in_index, dev_index, 9999],
    })
}

/// Which flag bits this kernel knows: one XDP lookup per bit (XDP takes
/// every flag; a VLAN tag is set so VLAN_INPUT alone is valid).
fn known_flags(probe: &mut Probe) -> Result<u32> {
    let mut known = 0;
    for bit in 0..10 {
        let mut p = FibParams::forward(1, [127, 0, 0, 1].into(), [127, 0, 0, 1].into(), 64);
        p.vlan_tbid = [0x81, 0x00, 0x00, 0x01];
        if probe.lookup(Hook::Xdp, &p, 1 << bit)?.rc != EINVAL {
            known |= 1 << bit;
        }
    }
    Ok(known)
}

/// `lookups` fuzzed lookups, each result checked against the contract.
fn fuzz_lookups(
    probe: &mut Probe,
    rng: &mut ChaCha8Rng,
    pools: &Pools,
    lookups: u64,
    report: &mut FuzzReport,
) -> Result<()> {
    let known = report.known_flags;
    let mut combos = vec![false; 1 << 10];
    for i in 0..lookups {
        if i % 1024 == 0 {
            stop::check()?;
        }
        let (case, frame) = gen_case(i, rng, pools);
        combos[(case.flags & DEFINED_FLAGS) as usize] |= case.flags & !DEFINED_FLAGS == 0;
        report.lookups += 1;
        let key = match probe.lookup_frame(case.hook, &case.params, case.flags, &frame) {
            Ok(res) => {
                if let Some(why) = check(&case, known, res.rc, &res.params) {
                    if report.violations.len() < 50 {
                        report
                            .violations
                            .push(format!("lookup {i}: {why}: {case:?}"));
                    }
                }
                format!("{} {}", case.hook.name(), ret::name(res.rc))
            }
            Err(e) if case.frame_len < ETH_HLEN => {
                let _ = e;
                format!(
                    "{} test-run rejected (frame < {ETH_HLEN} B)",
                    case.hook.name()
                )
            }
            Err(e) if case.hook == Hook::Tc && tc_test_run_refuses(&frame) => {
                let _ = e;
                format!(
                    "{} test-run rejected (truncated IP header)",
                    case.hook.name()
                )
            }
            Err(e) => {
                report
                    .violations
                    .push(format!("lookup {i}: test run failed: {e}: {case:?}"));
                format!("{} test-run failed", case.hook.name())
            }
        };
        *report.outcomes.entry(key).or_default() += 1;
    }
    report.flag_combinations = combos.iter().filter(|c| **c).count() as u32;
    Ok(())
}

/// `runs` fuzzed frames through the forwarder, spread over its policies:
/// a frame too short for its IP header must never be redirected.
fn fuzz_forwarder(
    rng: &mut ChaCha8Rng,
    pools: &Pools,
    dut_mac: [u8; 6],
    in_index: u32,
    runs: u64,
    report: &mut FuzzReport,
) -> Result<()> {
    for &policy in Policy::ALL {
        let fwd = Forwarder::load(policy)?;
        for i in 0..runs / Policy::ALL.len() as u64 {
            if i % 256 == 0 {
                stop::check()?;
            }
            let hook = if rng.gen_bool(0.5) {
                Hook::Tc
            } else {
                Hook::Xdp
            };
            let frame = gen_frame(rng, dut_mac, pools);
            report.forwarder_runs += 1;
            // "tc baseline": the key's prefix; violations name policy first.
            let key_of = |what: &str| format!("{} {} {what}", hook.name(), policy.name());
            let violation =
                |what: String| format!("forwarder {} {}: {what}", policy.name(), hook.name());
            let key = match fwd.test_run(hook, &frame, in_index) {
                Ok(verdict) => {
                    let redirect = match hook {
                        Hook::Tc => verdict == TC_ACT_REDIRECT,
                        Hook::Xdp => verdict == XDP_REDIRECT,
                    };
                    if redirect && frame.len() < min_forwardable(&frame) {
                        let what = format!("redirected a {}-byte frame", frame.len());
                        report.violations.push(violation(what));
                    }
                    key_of(&format!("verdict {verdict}"))
                }
                Err(_) if frame.len() < ETH_HLEN => {
                    key_of(&format!("test-run rejected (frame < {ETH_HLEN} B)"))
                }
                // A tc test run pulls the IP header its ethertype
                // names: shorter frames never reach the program.
                Err(_) if hook == Hook::Tc && tc_test_run_refuses(&frame) => {
                    key_of("test-run rejected (truncated IP header)")
                }
                Err(_) if report.violations.len() >= 50 => key_of("test-run failed"),
                Err(e) => {
                    let what = format!("test run failed on {} bytes: {e}", frame.len());
                    report.violations.push(violation(what));
                    key_of("test-run failed")
                }
            };
            *report.forwarder_verdicts.entry(key).or_default() += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(hook: Hook, flags: u32) -> Case {
        let mut params = FibParams::forward(2, [10, 1, 0, 2].into(), [10, 2, 0, 50].into(), 0);
        params.sport_nud_state = 0xbeef;
        params.dport = 0x1234;
        Case {
            hook,
            flags,
            params,
            frame_len: 64,
        }
    }

    #[test]
    fn the_oracle_follows_the_contract() {
        let c = case(Hook::Xdp, flags::NEIGH_STATE);
        let mut out = c.params;
        // Undefined bits: -EINVAL with nothing written.
        let bad = case(Hook::Tc, 1 << 12);
        assert_eq!(check(&bad, DEFINED_FLAGS, EINVAL, &bad.params), None);
        assert!(check(&bad, DEFINED_FLAGS, ret::SUCCESS, &bad.params).is_some());
        let mut written = bad.params;
        written.dport = 1;
        assert!(check(&bad, DEFINED_FLAGS, EINVAL, &written).is_some());
        // SKIP_NEIGH with either new flag, VLAN from tc: rejected.
        for (hook, f) in [
            (Hook::Xdp, flags::NEIGH_STATE | flags::SKIP_NEIGH),
            (Hook::Tc, flags::NEIGH_REFRESH | flags::SKIP_NEIGH),
            (Hook::Tc, flags::VLAN),
            (Hook::Xdp, flags::VLAN_INPUT | flags::TBID),
        ] {
            let c = case(hook, f);
            assert!(
                check(&c, DEFINED_FLAGS, ret::SUCCESS, &c.params).is_some(),
                "{f:#x}"
            );
        }
        // SUCCESS reports a valid state; NO_NEIGH an invalid one.
        out.sport_nud_state = nud::STALE;
        assert_eq!(check(&c, DEFINED_FLAGS, ret::SUCCESS, &out), None);
        assert!(check(&c, DEFINED_FLAGS, ret::NO_NEIGH, &out).is_some());
        // The union's reserved byte must be written 0 with the state.
        out.sport_nud_state = u16::from_ne_bytes([nud::STALE as u8, 1]);
        assert!(check(&c, DEFINED_FLAGS, ret::SUCCESS, &out).is_some());
        out.sport_nud_state = nud::FAILED;
        assert_eq!(check(&c, DEFINED_FLAGS, ret::NO_NEIGH, &out), None);
        assert!(check(&c, DEFINED_FLAGS, ret::SUCCESS, &out).is_some());
        // VLAN_FAILURE, and XDP's FRAG_NEEDED, leave it alone.
        assert!(check(&c, DEFINED_FLAGS, ret::VLAN_FAILURE, &out).is_some());
        assert_eq!(check(&c, DEFINED_FLAGS, ret::VLAN_FAILURE, &c.params), None);
        assert!(check(&c, DEFINED_FLAGS, ret::FRAG_NEEDED, &out).is_some());
        // tc's FRAG_NEEDED with tot_len 0 reports it.
        let t = case(Hook::Tc, flags::NEIGH_STATE);
        let mut tout = t.params;
        tout.sport_nud_state = nud::REACHABLE;
        assert_eq!(check(&t, DEFINED_FLAGS, ret::FRAG_NEEDED, &tout), None);
        // Without the flag nothing is reported.
        let plain = case(Hook::Tc, 0);
        assert!(check(&plain, DEFINED_FLAGS, ret::SUCCESS, &tout).is_some());
        // Input-only fields stay.
        let mut d = c.params;
        d.dport = 0;
        assert!(check(&c, DEFINED_FLAGS, ret::NOT_FWDED, &d).is_some());
        // Before the series, its bits are unknown flags: -EINVAL.
        let old = DEFINED_FLAGS & !(flags::NEIGH_STATE | flags::NEIGH_REFRESH);
        assert_eq!(check(&c, old, EINVAL, &c.params), None);
        assert!(check(&c, old, ret::SUCCESS, &out).is_some());
        // Undocumented errnos are caught.
        assert!(check(&c, DEFINED_FLAGS, -1, &c.params).is_some());
    }

    #[test]
    fn tc_refuses_only_frames_without_their_ip_header() {
        let mut f = vec![0u8; 27];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(tc_test_run_refuses(&f));
        f[12..14].copy_from_slice(&[0x12, 0x34]);
        assert!(!tc_test_run_refuses(&f));
        assert!(tc_test_run_refuses(&[0u8; 13]));
    }

    #[test]
    fn the_same_seed_makes_the_same_cases() {
        let pools = Pools {
            v4: vec![addr::CLIENT4],
            v6: vec![addr::CLIENT6],
            ifindexes: vec![1, 2],
        };
        let draw = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..100)
                .map(|i| {
                    let (c, f) = gen_case(i, &mut rng, &pools);
                    (c.flags, c.params, f)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // Every combination of the defined bits comes up in 2048 cases.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..2048 {
            let f = gen_case(i, &mut rng, &pools).0.flags;
            if f & !DEFINED_FLAGS == 0 {
                seen.insert(f);
            }
        }
        assert_eq!(seen.len(), 1024);
    }
}
