//! The traffic cells: a UDP flow from the client to a service on host A,
//! the service moving to host B, and what reaches which MAC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibneigh_bpf::nud;

use super::cell::{pick, Cell, Family};
use super::options::{NeighTimers, Options};
use super::program::Program;
use super::result::{CellResult, Outcome, StateSample, Timeline};
use super::spec::{Entry, Spec, Window};
use crate::error::{Error, Result};
use crate::external::External;
use crate::lab::addr::{GW4, GW6, REMOTE4, REMOTE6, SERVICE4, SERVICE6};
use crate::lab::plan::Route;
use crate::lab::{addr, neigh, rtnl, Lab, Names, NeighSpec, NeighSysctl, Topology};
use crate::stop;
use crate::traffic::{self, Capture, Captured, FrameKind, Worker};

/// Neighbour timers on the DUT's host-side device: short, so a cell takes
/// seconds (reported with every result).
/// `scale` uses the same.
pub(crate) const DELAY_FIRST_PROBE_S: u32 = 1;
pub(crate) const RETRANS_MS: u32 = 100;
pub(crate) const UCAST_SOLICIT: u32 = 3;
pub(crate) const MCAST_SOLICIT: u32 = 3;
/// ip-reassign-aged and managed: REACHABLE lasts 50..150 ms unconfirmed.
pub(crate) const SHORT_REACHABLE_MS: u32 = 100;
const DEFAULT_REACHABLE_MS: u32 = 30_000;
/// Delivery histogram bin.
const BIN_MS: u64 = 50;
/// The flow runs at least this long before the move.
const PRE_MOVE: Duration = Duration::from_millis(300);
/// ip-reassign-aged and managed: long enough for an entry the program
/// never marks as used to age to STALE by itself.
const PRE_MOVE_AGED: Duration = Duration::from_millis(600);
/// How long the flow may take to reach host A before the move.
const WARMUP_LIMIT: Duration = Duration::from_secs(4);

/// The addresses that move from A to B: (address, prefix length).
fn moving_addresses(cell: &Cell) -> Vec<(IpAddr, u8)> {
    let f = cell.family;
    let (plen, host) = match f {
        Family::V4 => (addr::PREFIX4, 32),
        Family::V6 => (addr::PREFIX6, 128),
    };
    if Spec::of(cell.scenario).via_gateway {
        vec![(pick(f, GW4, GW6), plen), (pick(f, REMOTE4, REMOTE6), host)]
    } else {
        vec![(pick(f, SERVICE4, SERVICE6), plen)]
    }
}

/// The nexthop whose neighbour entry matters, and the flow's destination.
fn nexthop_and_dst(cell: &Cell) -> (IpAddr, IpAddr) {
    let f = cell.family;
    if Spec::of(cell.scenario).via_gateway {
        (pick(f, GW4, GW6), pick(f, REMOTE4, REMOTE6))
    } else {
        let s = pick(f, SERVICE4, SERVICE6);
        (s, s)
    }
}

/// A neighbour sample: when, `nud::*` state, lladdr.
pub(crate) type Sample = (Duration, u16, Option<[u8; 6]>);

/// Samples the DUT's entry for `nexthop` until stopped; keeps changes.
fn start_sampler(
    dut: String,
    dev: String,
    nexthop: IpAddr,
    clock: Instant,
) -> Worker<crate::lab::Result<Vec<Sample>>> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    Worker::new(
        stop,
        std::thread::spawn(move || {
            rtnl::with_netlink(&dut, |h| async move {
                let index = rtnl::ifindex(&h, &dev).await?;
                let mut out: Vec<Sample> = Vec::new();
                while !stopped.load(Ordering::Relaxed) {
                    let e = neigh::get(&h, index, nexthop).await?;
                    let now = (
                        e.as_ref().map_or(nud::NONE, |e| e.state),
                        e.and_then(|e| e.lladdr),
                    );
                    if out.last().map(|l| (l.1, l.2)) != Some(now) {
                        out.push((clock.elapsed(), now.0, now.1));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(out)
            })
        }),
    )
}

pub(super) fn run(
    cell: &Cell,
    spec: &Spec,
    opts: &Options,
    external: Option<&External>,
) -> Result<CellResult> {
    let v6 = cell.v6();
    let n = Names::for_this_process();
    stop::check()?;
    let mut lab = Lab::create(&Topology::standard(&n))?;
    stop::check()?;
    let dut_mac = lab.mac(&n.dut, &n.dut_host_if)?;
    let mac1 = lab.mac(&n.host_a, &n.host_a_if)?;
    let mac2 = lab.mac(&n.host_b, &n.host_b_if)?;
    let (nexthop, dst) = nexthop_and_dst(cell);

    let sysctls = set_timers(&lab, &n, spec, opts, v6)?;

    // The service on host A; sinks on both hosts so no ICMP comes back.
    let moving = moving_addresses(cell);
    let _sink_a = traffic::udp_sink(&n.host_a)?;
    let _sink_b = traffic::udp_sink(&n.host_b)?;
    place_service(&lab, &n, spec, &moving, nexthop, dst, mac1, v6)?;

    // The forwarder on the DUT's client-facing device, or somebody else's.
    let fwd = match external {
        Some(_) => Program::None,
        None => Program::load(cell.policy, cell.hook)?,
    };
    let external_attached = match (external, cell.hook) {
        (Some(e), Some(_)) => Some(e.attach(&lab, &n)?),
        _ => None,
    };
    let _attached = fwd.attach(&lab, cell.hook, &n.dut, &n.dut_client_if)?;
    let counters = |f: &Program| f.counters();

    // Captures, sampler, flow.
    let clock = Instant::now();
    let wire = Capture::start(
        &n.switch,
        &n.switch_dut_port,
        vec![dut_mac, mac1, mac2],
        None,
        clock,
        None,
    )?;
    let at_a = Capture::start(
        &n.host_a,
        &n.host_a_if,
        vec![dut_mac],
        Some(mac1),
        clock,
        None,
    )?;
    let at_b = Capture::start(
        &n.host_b,
        &n.host_b_if,
        vec![dut_mac],
        Some(mac2),
        clock,
        None,
    )?;
    let sampler = start_sampler(n.dut.clone(), n.dut_host_if.clone(), nexthop, clock);
    let src_ip = pick(cell.family, addr::CLIENT4, addr::CLIENT6);
    let flow = crate::standard::flow_through_dut(&lab, &n, src_ip, dst, opts.rate_pps, clock)?;

    warm_up(&at_a.watched, clock, spec)?;

    let (move_at, before) = if !spec.moves {
        let before = counters(&fwd)?;
        stop::sleep(opts.fastpath_window)?;
        (None, before)
    } else {
        lab.suppress_announcements(!spec.announce)?;
        let at = clock.elapsed();
        let before = counters(&fwd)?;
        move_service(
            &lab,
            &n,
            spec,
            opts,
            &moving,
            nexthop,
            (mac1, mac2),
            &at_b.watched,
        )?;
        (Some(at), before)
    };

    // Wind down: stop the flow, let the last packets land.
    let sent = flow.finish()??;
    stop::sleep(Duration::from_millis(60))?;
    let end = clock.elapsed();
    let after = counters(&fwd)?;
    let samples = sampler.finish()??;
    let wire = wire.finish()?;
    let at_a = at_a.finish()?;
    let at_b = at_b.finish()?;
    let final_entry = lab.neigh_get(&n.dut, &n.dut_host_if, nexthop)?;
    if let Some(a) = external_attached {
        a.finish()?;
    }

    let outcome = if move_at.is_none() {
        Outcome::Measured
    } else if at_b.iter().any(|c| is_flow_to(c, mac2)) {
        Outcome::Recovered
    } else {
        Outcome::NotRecovered
    };
    let mut r = CellResult::new(*cell, outcome);
    r.header = fwd.header_run()?;
    r.sysctls = sysctls;
    fill(
        &mut r,
        &Observed {
            sent: &sent,
            wire: &wire,
            at_a: &at_a,
            at_b: &at_b,
            samples: &samples,
            move_at,
            end,
            dut_mac,
            mac1,
            mac2,
            nexthop,
        },
    );
    let c = after.since(&before);
    r.redirect = c.redirect;
    r.redirect_neigh = c.redirect_neigh;
    r.neigh_pass = c.neigh_pass;
    r.pass = c.pass;
    r.lookups_einval = c.lookups_returning(-(libc::EINVAL as i64));
    r.final_state = Some(
        final_entry
            .as_ref()
            .map_or("NONE".into(), |e| nud::name(e.state)),
    );
    r.final_new_mac = final_entry.and_then(|e| e.lladdr).map(|m| m == mac2);
    Ok(r)
}

/// The DUT's neighbour timers for the scenario (reported with the result),
/// and locktime 0 so that an announcement is never ignored for arriving
/// within it of the entry's last update.
fn set_timers(
    lab: &Lab,
    n: &Names,
    spec: &Spec,
    opts: &Options,
    v6: bool,
) -> Result<BTreeMap<String, String>> {
    // Natural ageing: an entry leaves REACHABLE for DELAY instead of STALE
    // while it was used within delay_first_probe_time (the stack's own use
    // while resolving it), so that is 0 here: an entry the program never
    // marks as used goes STALE at its first expiry.
    let (reachable, delay_first_probe) = if spec.aged {
        (SHORT_REACHABLE_MS, 0)
    } else {
        (DEFAULT_REACHABLE_MS, DELAY_FIRST_PROBE_S)
    };
    let timers = match opts.timers {
        NeighTimers::Short => [
            (NeighSysctl::BaseReachableTimeMs, reachable),
            (NeighSysctl::DelayFirstProbeTime, delay_first_probe),
            (NeighSysctl::RetransTimeMs, RETRANS_MS),
            (NeighSysctl::UcastSolicit, UCAST_SOLICIT),
            (NeighSysctl::McastSolicit, MCAST_SOLICIT),
        ],
        NeighTimers::KernelDefaults => NeighTimers::KERNEL_DEFAULTS,
    };
    let mut sysctls = lab.set_neigh_timers(&n.dut, &n.dut_host_if, v6, &timers)?;
    // A GARP must not be ignored for arriving within `locktime` of the
    // entry's last update.
    let fam = if v6 { "ipv6" } else { "ipv4" };
    let key = format!("net/{fam}/neigh/{}/locktime", n.dut_host_if);
    Lab::in_ns(&n.dut, || rtnl::write_sysctl(&key, "0"))??;
    sysctls.insert("locktime".into(), "0".into());
    if spec.entry == Entry::Managed {
        // Managed entries are re-probed on a global timer (not per netns).
        let v = rtnl::read_sysctl(&format!("net/{fam}/neigh/default/interval_probe_time_ms"))
            .unwrap_or_else(|_| "?".into());
        sysctls.insert("default/interval_probe_time_ms".into(), v);
    }
    Ok(sysctls)
}

/// The service's addresses on host A, the route through the gateway when
/// the scenario has one, and the DUT's entry when the scenario makes it
/// (managed, pinned).
#[allow(clippy::too_many_arguments)]
fn place_service(
    lab: &Lab,
    n: &Names,
    spec: &Spec,
    moving: &[(IpAddr, u8)],
    nexthop: IpAddr,
    dst: IpAddr,
    mac1: [u8; 6],
    v6: bool,
) -> Result<()> {
    lab.add_addresses(&n.host_a, &n.host_a_if, moving)?;
    if spec.via_gateway {
        let route = Route {
            ns: n.dut.clone(),
            dst: Some((dst, if v6 { 128 } else { 32 })),
            gateway: nexthop,
        };
        lab.netlink(&n.dut, |h| async move { rtnl::add_route(&h, &route).await })?;
    }
    match spec.entry {
        Entry::Managed => {
            let mut entry = NeighSpec::new(nexthop, None, nud::NONE);
            entry.managed = true;
            entry.extern_learn = true;
            lab.neigh_replace(&n.dut, &n.dut_host_if, &entry)?;
        }
        Entry::Pinned => {
            let entry = NeighSpec::new(nexthop, Some(mac1), nud::PERMANENT);
            lab.neigh_replace(&n.dut, &n.dut_host_if, &entry)?;
        }
        Entry::Learnt => {}
    }
    Ok(())
}

/// The error of a cell whose flow never reached host A: nothing forwarded
/// it (`fibneigh trial` diagnoses a forwarder that never forwards by it).
pub const NO_FLOW_BEFORE_MOVE: &str = "the flow did not reach host A before the move";

/// Warm-up: the flow reaches host A through the program (`at_a` counts
/// its frames there), for at least the scenario's time before the move.
fn warm_up(at_a: &AtomicU64, clock: Instant, spec: &Spec) -> Result<()> {
    let warm_deadline = Instant::now() + WARMUP_LIMIT;
    let pre_move = if spec.aged { PRE_MOVE_AGED } else { PRE_MOVE };
    while at_a.load(Ordering::Relaxed) < 10 || clock.elapsed() < pre_move {
        stop::sleep(Duration::from_millis(10))?;
        if Instant::now() > warm_deadline {
            return Err(Error::Setup(NO_FLOW_BEFORE_MOVE.into()));
        }
    }
    Ok(())
}

/// The move: the service leaves host A (`macs.0`) for host B (`macs.1`),
/// the entry forced STALE and the announcement sent as the scenario says;
/// then watch until the flow has reached host B (`at_b` counts its frames
/// there) for `after_recovery`, or the window closes.
#[allow(clippy::too_many_arguments)]
fn move_service(
    lab: &Lab,
    n: &Names,
    spec: &Spec,
    opts: &Options,
    moving: &[(IpAddr, u8)],
    nexthop: IpAddr,
    macs: ([u8; 6], [u8; 6]),
    at_b: &AtomicU64,
) -> Result<()> {
    let (mac1, mac2) = macs;
    lab.del_addresses(&n.host_a, &n.host_a_if, moving)?;
    lab.add_addresses(&n.host_b, &n.host_b_if, moving)?;
    if spec.force_stale {
        // The field reproducer.
        let spec = NeighSpec::new(nexthop, Some(mac1), nud::STALE);
        lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
    }
    if spec.announce {
        stop::sleep(Duration::from_millis(20))?;
        let frame = match nexthop {
            IpAddr::V4(a) => traffic::garp_frame(mac2, a),
            IpAddr::V6(a) => traffic::unsolicited_na_frame(mac2, a),
        };
        traffic::send_frame(&n.host_b, &n.host_b_if, frame)?;
    }
    let window = match spec.window {
        Window::Managed => opts.managed_window,
        Window::Recovery | Window::Fastpath => opts.window,
    };
    let until = Instant::now() + window;
    let mut recovered_at: Option<Instant> = None;
    while Instant::now() < until {
        stop::sleep(Duration::from_millis(10))?;
        if recovered_at.is_none() && at_b.load(Ordering::Relaxed) > 0 {
            recovered_at = Some(Instant::now());
        }
        if recovered_at.is_some_and(|t| t.elapsed() >= opts.after_recovery) {
            break;
        }
    }
    Ok(())
}

fn is_flow_to(c: &Captured, mac: [u8; 6]) -> bool {
    c.frame.dst == mac && matches!(c.frame.kind, FrameKind::Data { .. })
}

/// The raw observations of one cell.
pub(crate) struct Observed<'a> {
    pub sent: &'a [Duration],
    pub wire: &'a [Captured],
    pub at_a: &'a [Captured],
    pub at_b: &'a [Captured],
    pub samples: &'a [Sample],
    pub move_at: Option<Duration>,
    pub end: Duration,
    pub dut_mac: [u8; 6],
    pub mac1: [u8; 6],
    pub mac2: [u8; 6],
    pub nexthop: IpAddr,
}

/// Turn observations into the result's numbers and timeline.
pub(crate) fn fill(r: &mut CellResult, o: &Observed<'_>) {
    let ms = |d: Duration| d.as_millis() as u64;
    let seq = |c: &Captured| match c.frame.kind {
        FrameKind::Data { seq } => Some(seq),
        _ => None,
    };
    // Delivered: to the old MAC while it owned the address, to the new
    // one any time.
    let moved = o.move_at.unwrap_or(Duration::MAX);
    let mut delivered = BTreeSet::new();
    let old: Vec<&Captured> = o.at_a.iter().filter(|c| is_flow_to(c, o.mac1)).collect();
    let new: Vec<&Captured> = o.at_b.iter().filter(|c| is_flow_to(c, o.mac2)).collect();
    for c in &old {
        if c.t < moved {
            delivered.extend(seq(c));
        }
    }
    for c in &new {
        delivered.extend(seq(c));
    }
    r.sent = o.sent.len() as u64;
    r.to_old_after_move = old.iter().filter(|c| c.t >= moved).count() as u64;
    r.delivered_old = old.len() as u64;
    r.delivered_new = new.len() as u64;
    r.lost = r.sent.saturating_sub(delivered.len() as u64);
    if let Some(m) = o.move_at {
        r.recovery_ms = new
            .iter()
            .filter(|c| c.t >= m)
            .map(|c| (c.t - m).as_secs_f64() * 1000.0)
            .reduce(f64::min);
        for c in o.wire.iter().filter(|c| c.t >= m) {
            if c.frame.src == o.dut_mac && c.frame.kind.is_probe_for(o.nexthop) {
                if traffic::is_group(c.frame.dst) {
                    r.probes_multicast += 1;
                } else {
                    r.probes_unicast += 1;
                }
            }
        }
    }
    let bins = (ms(o.end) / BIN_MS + 1) as usize;
    let mut to_old = vec![0u32; bins];
    let mut to_new = vec![0u32; bins];
    for (v, list) in [(&mut to_old, &old), (&mut to_new, &new)] {
        for c in list.iter() {
            if let Some(b) = v.get_mut((ms(c.t) / BIN_MS) as usize) {
                *b += 1;
            }
        }
    }
    r.timeline = Some(Timeline {
        move_ms: o.move_at.map(ms),
        end_ms: ms(o.end),
        bin_ms: BIN_MS,
        to_old,
        to_new,
        states: o
            .samples
            .iter()
            .map(|(t, s, mac)| StateSample {
                t_ms: ms(*t),
                state: nud::name(*s),
                new_mac: mac.map(|m| m == o.mac2),
            })
            .collect(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{PolicyChoice, Scenario};
    use crate::traffic::Classified;
    use fibneigh_bpf::Hook;

    const DUT: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
    const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn data(t_ms: u64, dst: [u8; 6], seq: u32) -> Captured {
        Captured {
            t: Duration::from_millis(t_ms),
            frame: Classified {
                src: DUT,
                dst,
                kind: FrameKind::Data { seq },
            },
        }
    }

    #[test]
    fn observations_become_numbers() {
        let sip: IpAddr = SERVICE4.into();
        let sent: Vec<Duration> = (0..10).map(|i| Duration::from_millis(i * 100)).collect();
        // 0..4 to A before the move at 450 ms, 5..6 to A after (lost),
        // 7 lost on the way, 8..9 to B.
        let at_a: Vec<Captured> = (0..7).map(|i| data(i * 100 + 1, M1, i as u32)).collect();
        let at_b = vec![data(801, M2, 8), data(901, M2, 9)];
        let probe = |t, dst| Captured {
            t: Duration::from_millis(t),
            frame: Classified {
                src: DUT,
                dst,
                kind: FrameKind::ArpRequest {
                    sender: IpAddr::from(addr::DUT_HOST4),
                    target: sip,
                },
            },
        };
        let wire = vec![
            probe(100, traffic::BROADCAST),
            probe(600, M1),
            probe(700, traffic::BROADCAST),
        ];
        let samples = vec![
            (Duration::from_millis(0), nud::REACHABLE, Some(M1)),
            (Duration::from_millis(450), nud::STALE, Some(M1)),
            (Duration::from_millis(790), nud::REACHABLE, Some(M2)),
        ];
        let cell = Cell::new(
            Scenario::IpReassign,
            PolicyChoice::KernelStack,
            Family::V4,
            Hook::Tc,
        );
        let mut r = CellResult::new(cell, Outcome::Recovered);
        fill(
            &mut r,
            &Observed {
                sent: &sent,
                wire: &wire,
                at_a: &at_a,
                at_b: &at_b,
                samples: &samples,
                move_at: Some(Duration::from_millis(450)),
                end: Duration::from_millis(1000),
                dut_mac: DUT,
                mac1: M1,
                mac2: M2,
                nexthop: sip,
            },
        );
        assert_eq!(r.sent, 10);
        assert_eq!((r.delivered_old, r.delivered_new), (7, 2));
        assert_eq!(r.lost, 3);
        assert_eq!(r.recovery_ms.map(|v| v.round()), Some(351.0));
        assert_eq!((r.probes_unicast, r.probes_multicast), (1, 1));
        let t = r.timeline.unwrap();
        assert_eq!(t.move_ms, Some(450));
        assert_eq!(t.to_new.iter().sum::<u32>(), 2);
        assert_eq!(t.states[2].new_mac, Some(true));
        assert_eq!(t.states[1].state, "STALE");
    }
}
