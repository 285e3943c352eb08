//! One scale case in the lab: N addresses on host A and N entries on the
//! DUT, the spread flow, the move of a fraction to host B, the window.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fibneigh_bpf::bench::{run_stats, RunTimeStats};
use fibneigh_bpf::nud;

use super::observe::{moved_indices, observe, Spread};
use super::{ScaleCase, ScaleOptions, ScaleResult, StaleBy};
use crate::error::{Error, Result};
use crate::lab::addr::{self, scale_nexthop};
use crate::lab::neigh::{self, GcThresholds};
use crate::lab::{rtnl, Lab, Names, NeighSpec, NeighSysctl, Topology};
use crate::scenario::pick;
use crate::scenario::program::Program;
use crate::scenario::run::{
    DELAY_FIRST_PROBE_S, MCAST_SOLICIT, RETRANS_MS, SHORT_REACHABLE_MS, UCAST_SOLICIT,
};
use crate::stop;
use crate::traffic::{self, Capture};

/// The capture's socket buffer: seconds of frames at the rates used here.
const CAPTURE_RCVBUF: usize = 64 << 20;
/// The DUT's neighbour timers are the scenarios' (DELAY 1 s, probes
/// 100 ms apart, 3 unicast then 3 broadcast/multicast). `forced`: nothing
/// ages by itself during a case; `aged`: REACHABLE lasts 50..150 ms
/// unconfirmed, and an entry the program never marks as used goes STALE
/// at its first expiry (no DELAY).
const FORCED_REACHABLE_MS: u32 = 60_000;
/// `aged`: how long the flow runs after the warm-up so every entry aged.
const AGEING: Duration = Duration::from_millis(800);

/// Run one case.
pub fn run(case: &ScaleCase, opts: &ScaleOptions) -> Result<ScaleResult> {
    if case.nexthops == 0 || case.nexthops > addr::SCALE_MAX_NEXTHOPS {
        return Err(Error::Setup(format!(
            "{} nexthops: the scale lab holds 1 to {}",
            case.nexthops,
            addr::SCALE_MAX_NEXTHOPS
        )));
    }
    let v6 = case.v6();
    let n = Names::for_this_process();
    stop::check()?;
    let mut topology = Topology::standard(&n);
    for b in &mut topology.bridges {
        b.mcast_snooping = false;
    }
    let mut lab = Lab::create(&topology)?;
    let setup = Instant::now();
    let dut_mac = lab.mac(&n.dut, &n.dut_host_if)?;
    let mac1 = lab.mac(&n.host_a, &n.host_a_if)?;
    let mac2 = lab.mac(&n.host_b, &n.host_b_if)?;
    let sysctls = set_timers(&lab, &n, case.stale, v6)?;

    // The scale subnet: the DUT's address in it; the nexthops that stay
    // on host A, those that will move on host B (host routes, so removing
    // one never takes others with it); sinks so no ICMP comes back; the
    // DUT's entries, REACHABLE at each owner's MAC.
    let subnet = pick(case.family, addr::SCALE_DUT4, addr::SCALE_DUT6);
    let plen = if v6 {
        addr::SCALE_PREFIX6
    } else {
        addr::SCALE_PREFIX4
    };
    lab.add_addresses(&n.dut, &n.dut_host_if, &[(subnet, plen)])?;
    let host_len = if v6 { 128 } else { 32 };
    let nexthops: Vec<IpAddr> = (0..case.nexthops).map(|i| scale_nexthop(v6, i)).collect();
    let moved = moved_indices(case.nexthops, case.moved_pct);
    let moving: BTreeSet<u32> = moved.iter().copied().collect();
    let (on_b, on_a): (Vec<u32>, Vec<u32>) = (0..case.nexthops).partition(|i| moving.contains(i));
    let placed = |idx: &[u32]| -> Vec<(IpAddr, u8)> {
        idx.iter()
            .map(|&i| (nexthops[i as usize], host_len))
            .collect()
    };
    lab.add_addresses(&n.host_a, &n.host_a_if, &placed(&on_a))?;
    lab.add_addresses(&n.host_b, &n.host_b_if, &placed(&on_b))?;
    stop::check()?;
    let _sink_a = traffic::udp_sink(&n.host_a)?;
    let _sink_b = traffic::udp_sink(&n.host_b)?;
    let addrs =
        |idx: &[u32]| -> Vec<IpAddr> { idx.iter().map(|&i| nexthops[i as usize]).collect() };
    set_entries(&lab, &n, &addrs(&on_a), mac1, nud::REACHABLE)?;
    set_entries(&lab, &n, &addrs(&on_b), mac2, nud::REACHABLE)?;
    stop::check()?;

    let fwd = Program::load(case.policy, case.hook)?;
    let _attached = fwd.attach(&lab, case.hook, &n.dut, &n.dut_client_if)?;
    let prog_fd = case.hook.and_then(|h| fwd.prog_fd(h));
    let _run_time = prog_fd.map(|_| RunTimeStats::enable()).transpose()?;
    let setup_ms = setup.elapsed().as_millis() as u64;

    let clock = Instant::now();
    let wire = Capture::start(
        &n.switch,
        &n.switch_dut_port,
        vec![dut_mac],
        None,
        clock,
        Some(CAPTURE_RCVBUF),
    )?;
    let src = pick(case.family, addr::CLIENT4, addr::CLIENT6);
    let flow = crate::standard::spread_flow_through_dut(
        &lab,
        &n,
        src,
        nexthops.clone(),
        opts.rate_pps,
        clock,
    )?;
    warm_up(&wire.watched, case.nexthops, opts.rate_pps)?;
    if case.stale == StaleBy::Aged {
        stop::sleep(AGEING)?;
    }

    // From here on everything counts.
    let table_before = Lab::in_ns(&n.dut, || neigh::table_stats(v6))??;
    let softirq_before = softirq_ms()?;
    let runs_before = prog_fd.map(run_stats).transpose()?;

    // The move, at once: host B's interface (the moved nexthops' owner)
    // takes a new MAC, no announcement reaches the DUT; `forced`: every
    // entry STALE at the MAC it had, the moved ones (now at a dead MAC)
    // first.
    lab.suppress_announcements(true)?;
    let move_at = clock.elapsed();
    let new_mac = moved_mac(mac2);
    lab.set_mac(&n.host_b, &n.host_b_if, new_mac)?;
    if case.stale == StaleBy::Forced {
        set_entries(&lab, &n, &addrs(&on_b), mac2, nud::STALE)?;
    }
    let move_ms = (clock.elapsed() - move_at).as_millis() as u64;
    if case.stale == StaleBy::Forced {
        set_entries(&lab, &n, &addrs(&on_a), mac1, nud::STALE)?;
    }
    let window = opts.window_for(case.nexthops);
    stop::sleep(window.saturating_sub(clock.elapsed() - move_at))?;

    let sent = flow.finish()??.len() as u64;
    let sent_pps = sent as f64 / clock.elapsed().as_secs_f64().max(1e-3);
    stop::sleep(Duration::from_millis(100))?;
    let runs_after = prog_fd.map(run_stats).transpose()?;
    let softirq = softirq_ms()?.saturating_sub(softirq_before);
    let table_after = Lab::in_ns(&n.dut, || neigh::table_stats(v6))??;
    let (captured, capture_drops) = wire.finish_counted()?;
    let (final_states, final_new_mac) = final_entries(&lab, &n, &nexthops, &moved, new_mac)?;
    let header_path = fwd.header_run()?.map(|h| h.path);

    let o = observe(
        &captured,
        dut_mac,
        (mac2, new_mac),
        case.nexthops,
        &moved,
        move_at,
    );
    let times: Vec<f64> = o.first_new_ms.iter().flatten().copied().collect();
    let recovered = times.len() as u32;
    let (prog_run_ms, prog_runs) = match (runs_before, runs_after) {
        (Some((t0, c0)), Some((t1, c1))) => (
            Some(t1.saturating_sub(t0) as f64 / 1e6),
            Some(c1.saturating_sub(c0)),
        ),
        _ => (None, None),
    };
    Ok(ScaleResult {
        id: case.id(),
        case: *case,
        rate_pps: opts.rate_pps,
        window_ms: window.as_millis() as u64,
        moved: moved.len() as u32,
        recovered,
        never: moved.len() as u32 - recovered,
        recovery_ms: Spread::of(&times),
        lost: sent.saturating_sub(o.left_dut),
        sent,
        sent_pps,
        observed: o,
        capture_drops,
        prog_run_ms,
        prog_runs,
        softirq_ms: softirq,
        table: table_delta(&table_before, &table_after),
        final_states,
        final_new_mac,
        move_ms,
        setup_ms,
        sysctls,
        header_path,
        problems: Vec::new(),
    })
}

/// The MAC host B's interface moves to: `mac` with its second byte
/// changed (still unicast, locally administered).
fn moved_mac(mac: [u8; 6]) -> [u8; 6] {
    let mut m = mac;
    m[0] = (m[0] | 0x02) & !0x01;
    m[1] ^= 0x5a;
    m
}

/// The DUT's `gc_stale_time`: an hour, longer than any run.
const GC_STALE_TIME_S: &str = "3600";

/// The DUT's neighbour timers for the case (returned for the report, with
/// the GC thresholds in force).
fn set_timers(lab: &Lab, n: &Names, stale: StaleBy, v6: bool) -> Result<BTreeMap<String, String>> {
    let (reachable, delay) = match stale {
        StaleBy::Forced => (FORCED_REACHABLE_MS, DELAY_FIRST_PROBE_S),
        StaleBy::Aged => (SHORT_REACHABLE_MS, 0),
    };
    let mut sysctls = lab.set_neigh_timers(
        &n.dut,
        &n.dut_host_if,
        v6,
        &[
            (NeighSysctl::BaseReachableTimeMs, reachable),
            (NeighSysctl::DelayFirstProbeTime, delay),
            (NeighSysctl::RetransTimeMs, RETRANS_MS),
            (NeighSysctl::UcastSolicit, UCAST_SOLICIT),
            (NeighSysctl::McastSolicit, MCAST_SOLICIT),
        ],
    )?;
    // No lock time, so a reply with the new MAC is taken at once; and no
    // periodic GC of entries the flow has not used lately: with more
    // entries than gc_thresh1 the kernel removes those unused for
    // gc_stale_time (60 s), which a large N's set-up and warm-up outlast.
    let fam = if v6 { "ipv6" } else { "ipv4" };
    for (param, value) in [("locktime", "0"), ("gc_stale_time", GC_STALE_TIME_S)] {
        let key = format!("net/{fam}/neigh/{}/{param}", n.dut_host_if);
        Lab::in_ns(&n.dut, || rtnl::write_sysctl(&key, value))??;
        sysctls.insert(param.into(), value.into());
    }
    for (i, v) in GcThresholds::read(v6)?.by_index() {
        sysctls.insert(format!("default/gc_thresh{i}"), v.to_string());
    }
    Ok(sysctls)
}

/// Every nexthop's entry on the DUT at `mac` in `state`.
fn set_entries(lab: &Lab, n: &Names, nexthops: &[IpAddr], mac: [u8; 6], state: u16) -> Result<()> {
    let (dev, list) = (n.dut_host_if.clone(), nexthops.to_vec());
    lab.netlink(&n.dut, |h| async move {
        let index = rtnl::ifindex(&h, &dev).await?;
        for (i, a) in list.into_iter().enumerate() {
            rtnl::check_stop(i)?;
            neigh::replace(&h, index, &NeighSpec::new(a, Some(mac), state)).await?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Wait until the flow has been through every nexthop once (frames at
/// host A's MAC, counted by the capture) and for at least a second.
fn warm_up(at_old: &std::sync::atomic::AtomicU64, nexthops: u32, rate_pps: u32) -> Result<()> {
    let round = Duration::from_secs_f64(f64::from(nexthops) / f64::from(rate_pps.max(1)));
    let limit = Duration::from_secs(10) + round * 3;
    let start = Instant::now();
    while at_old.load(Ordering::Relaxed) < u64::from(nexthops)
        || start.elapsed() < Duration::from_secs(1)
    {
        if start.elapsed() > limit {
            return Err(Error::Setup(format!(
                "the flow did not reach host A before the move: {} of {} nexthops' frames in {} s",
                at_old.load(Ordering::Relaxed),
                nexthops,
                limit.as_secs()
            )));
        }
        stop::sleep(Duration::from_millis(20))?;
    }
    Ok(())
}

/// The DUT's nexthop entries by state, and how many moved ones hold the
/// new MAC.
fn final_entries(
    lab: &Lab,
    n: &Names,
    nexthops: &[IpAddr],
    moved: &[u32],
    new_mac: [u8; 6],
) -> Result<(BTreeMap<String, u32>, u32)> {
    let dev = n.dut_host_if.clone();
    let entries = lab.netlink(&n.dut, |h| async move {
        let index = rtnl::ifindex(&h, &dev).await?;
        Ok(neigh::list(&h)
            .await?
            .into_iter()
            .filter(|e| e.ifindex == index)
            .collect::<Vec<_>>())
    })?;
    let ours: BTreeSet<IpAddr> = nexthops.iter().copied().collect();
    let moved: BTreeSet<IpAddr> = moved.iter().map(|&i| nexthops[i as usize]).collect();
    let mut states = BTreeMap::new();
    let mut on_new = 0;
    for e in entries.iter().filter(|e| ours.contains(&e.dst)) {
        *states.entry(nud::name(e.state)).or_insert(0) += 1;
        if moved.contains(&e.dst) && e.lladdr == Some(new_mac) {
            on_new += 1;
        }
    }
    let missing = nexthops.len() as u32 - states.values().sum::<u32>();
    if missing > 0 {
        states.insert("NONE".into(), missing);
    }
    Ok((states, on_new))
}

/// The counters' growth from `before` to `after`; `entries` is the size
/// at the end.
fn table_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, &v)| {
            let d = if k == "entries" {
                v
            } else {
                v.saturating_sub(before.get(k).copied().unwrap_or(0))
            };
            (k.clone(), d)
        })
        .collect()
}

/// Softirq time of all CPUs so far, in ms (`/proc/stat`).
fn softirq_ms() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|e| Error::Setup(format!("failed to read /proc/stat: {e}")))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    parse_softirq_ticks(&text)
        .map(|t| t * 1000 / hz)
        .ok_or_else(|| Error::Setup("no softirq column in /proc/stat".into()))
}

/// The softirq ticks of the `cpu` line: its seventh number.
fn parse_softirq_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    line.split_whitespace().nth(7)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_mac_is_another_unicast_mac() {
        let m = [0x52, 0x54, 0, 1, 2, 3];
        let n = moved_mac(m);
        assert_ne!(m, n);
        assert_eq!(n[0] & 1, 0);
        assert_eq!(moved_mac([0x03, 0, 0, 0, 0, 0])[0], 0x02);
    }

    #[test]
    fn softirq_is_the_seventh_number() {
        let stat = "cpu  10 2 30 400 5 6 77 0 0 0\ncpu0 1 1 1 1 1 1 1 0 0 0\n";
        assert_eq!(parse_softirq_ticks(stat), Some(77));
        assert_eq!(parse_softirq_ticks("cpu0 1 2\n"), None);
    }

    #[test]
    fn table_deltas_keep_the_size() {
        let b: BTreeMap<String, u64> = [("entries".into(), 5), ("lookups".into(), 10)].into();
        let a: BTreeMap<String, u64> = [("entries".into(), 9), ("lookups".into(), 25)].into();
        let d = table_delta(&b, &a);
        assert_eq!(d["entries"], 9);
        assert_eq!(d["lookups"], 15);
    }
}
