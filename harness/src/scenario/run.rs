//! The traffic cells: a UDP flow from the client to a service on host A,
//! the service moving to host B, and what reaches which MAC.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibneigh_bpf::{nud, Counters, Forwarder};
use futures::TryStreamExt;

use super::{
    pick, Cell, Error, Family, HookKind, NeighTimers, Options, PolicyChoice, Result, Scenario,
};
use crate::lab::plan::Route;
use crate::lab::{addr, neigh, rtnl, Lab, Names, NeighSpec, NeighSysctl, Topology};
use crate::report::{CellResult, Outcome, StateSample, Timeline};
use crate::stop;
use crate::traffic::{self, Capture, Captured, FlowSpec, FrameKind};

/// The service address (on host A, later host B).
pub const SERVICE4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 50);
pub const SERVICE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x50);
/// gateway: the router host's address on the host segment ...
pub const GW4: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 20);
pub const GW6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 0x20);
/// ... and the service behind it.
pub const REMOTE4: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 9, 0, 0, 0, 0, 0, 1);

/// Neighbour timers on the DUT's host-side device: short, so a cell takes
/// seconds (reported with every result).
const DELAY_FIRST_PROBE_S: u32 = 1;
const RETRANS_MS: u32 = 100;
const UCAST_SOLICIT: u32 = 3;
const MCAST_SOLICIT: u32 = 3;
/// ip-reassign-aged and managed: REACHABLE lasts 50..150 ms unconfirmed.
const SHORT_REACHABLE_MS: u32 = 100;
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

async fn del_address(h: &rtnetlink::Handle, ifname: &str, a: IpAddr) -> crate::lab::Result<()> {
    let index = rtnl::ifindex(h, ifname).await?;
    let msgs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(a)
        .execute()
        .try_collect()
        .await
        .map_err(rtnl::nl_err(format!("list addresses of {ifname}")))?;
    for m in msgs {
        h.address()
            .del(m)
            .execute()
            .await
            .map_err(rtnl::nl_err(format!("remove {a} from {ifname}")))?;
    }
    Ok(())
}

/// The addresses that move from A to B: (address, prefix length).
fn moving_addresses(cell: &Cell) -> Vec<(IpAddr, u8)> {
    let f = cell.family;
    let (plen, host) = match f {
        Family::V4 => (addr::PREFIX4, 32),
        Family::V6 => (addr::PREFIX6, 128),
    };
    if cell.scenario == Scenario::Gateway {
        vec![(pick(f, GW4, GW6), plen), (pick(f, REMOTE4, REMOTE6), host)]
    } else {
        vec![(pick(f, SERVICE4, SERVICE6), plen)]
    }
}

/// The nexthop whose neighbour entry matters, and the flow's destination.
fn nexthop_and_dst(cell: &Cell) -> (IpAddr, IpAddr) {
    let f = cell.family;
    if cell.scenario == Scenario::Gateway {
        (pick(f, GW4, GW6), pick(f, REMOTE4, REMOTE6))
    } else {
        let s = pick(f, SERVICE4, SERVICE6);
        (s, s)
    }
}

/// A neighbour sample: when, `nud::*` state, lladdr.
pub(crate) type Sample = (Duration, u16, Option<[u8; 6]>);

/// Samples the DUT's entry for `nexthop` until `stop`; keeps changes.
fn start_sampler(
    dut: String,
    dev: String,
    nexthop: IpAddr,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<crate::lab::Result<Vec<Sample>>> {
    std::thread::spawn(move || {
        rtnl::with_netlink(&dut, |h| async move {
            let index = rtnl::ifindex(&h, &dev).await?;
            let mut out: Vec<Sample> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
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
    })
}

/// Everything that must stay alive while a cell runs, dropped in order.
struct Running {
    flow_stop: Arc<AtomicBool>,
    sampler_stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.flow_stop.store(true, Ordering::Relaxed);
        self.sampler_stop.store(true, Ordering::Relaxed);
    }
}

pub(super) fn run(cell: &Cell, opts: &Options) -> Result<CellResult> {
    let v6 = cell.v6();
    let n = Names::for_this_process();
    stop::check()?;
    let mut lab = Lab::create(&Topology::standard(&n))?;
    stop::check()?;
    let dut_in_mac = lab.mac(&n.dut, &n.dut_client_if)?;
    let dut_mac = lab.mac(&n.dut, &n.dut_host_if)?;
    let client_mac = lab.mac(&n.client, &n.client_if)?;
    let mac1 = lab.mac(&n.host_a, &n.host_a_if)?;
    let mac2 = lab.mac(&n.host_b, &n.host_b_if)?;
    let (nexthop, dst) = nexthop_and_dst(cell);

    // Timers, reported with the result.
    // Natural ageing: an entry leaves REACHABLE for DELAY instead of STALE
    // while it was used within delay_first_probe_time (the stack's own use
    // while resolving it), so that is 0 here: an entry the program never
    // marks as used goes STALE at its first expiry.
    let (reachable, delay_first_probe) = match cell.scenario {
        Scenario::IpReassignAged | Scenario::Managed => (SHORT_REACHABLE_MS, 0),
        _ => (DEFAULT_REACHABLE_MS, DELAY_FIRST_PROBE_S),
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
    let mut sysctls = BTreeMap::new();
    for (p, v) in timers {
        lab.set_neigh_sysctl(&n.dut, &n.dut_host_if, v6, p, v)?;
        sysctls.insert(p.file().to_string(), v.to_string());
    }
    // A GARP must not be ignored for arriving within `locktime` of the
    // entry's last update.
    let fam = if v6 { "ipv6" } else { "ipv4" };
    let key = format!("net/{fam}/neigh/{}/locktime", n.dut_host_if);
    Lab::in_ns(&n.dut, || rtnl::write_sysctl(&key, "0"))??;
    sysctls.insert("locktime".into(), "0".into());
    if cell.scenario == Scenario::Managed {
        // Managed entries are re-probed on a global timer (not per netns).
        let v = rtnl::read_sysctl(&format!("net/{fam}/neigh/default/interval_probe_time_ms"))
            .unwrap_or_else(|_| "?".into());
        sysctls.insert("default/interval_probe_time_ms".into(), v);
    }

    // The service on host A; sinks on both hosts so no ICMP comes back.
    let moving = moving_addresses(cell);
    let a_if = n.host_a_if.clone();
    let m = moving.clone();
    lab.netlink(&n.host_a, |h| async move {
        for (a, len) in m {
            rtnl::add_address(&h, &a_if, a, len).await?;
        }
        Ok(())
    })?;
    if cell.scenario == Scenario::Gateway {
        let route = Route {
            ns: n.dut.clone(),
            dst: Some((dst, if v6 { 128 } else { 32 })),
            gateway: nexthop,
        };
        lab.netlink(&n.dut, |h| async move { rtnl::add_route(&h, &route).await })?;
    }
    let sink = || UdpSocket::bind((Ipv6Addr::UNSPECIFIED, traffic::DPORT));
    let _sink_a = Lab::in_ns(&n.host_a, sink)?
        .map_err(|e| Error::Setup(format!("bind the sink on host A: {e}")))?;
    let _sink_b = Lab::in_ns(&n.host_b, sink)?
        .map_err(|e| Error::Setup(format!("bind the sink on host B: {e}")))?;

    match cell.scenario {
        Scenario::Managed => {
            let mut spec = NeighSpec::new(nexthop, None, nud::NONE);
            spec.managed = true;
            spec.extern_learn = true;
            lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
        }
        Scenario::Permanent => {
            let spec = NeighSpec::new(nexthop, Some(mac1), nud::PERMANENT);
            lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
        }
        _ => {}
    }

    // The forwarder on the DUT's client-facing device.
    let (fwd, _attached, _peers) = match (cell.policy, cell.hook) {
        (PolicyChoice::Prog(p), Some(hook)) => {
            let fwd = Forwarder::load(p)?;
            let dut_ns = lab.open_ns(&n.dut)?;
            let index = lab.ifindex(&n.dut, &n.dut_client_if)?;
            let peers = if hook == HookKind::Xdp {
                Some(lab.xdp_pass_on_peers_of(&n.dut)?)
            } else {
                None
            };
            let att = fwd.attach_in(dut_ns.as_fd(), hook.hook(), index)?;
            (Some(fwd), Some(att), peers)
        }
        _ => (None, None, None),
    };
    let counters = |f: &Option<Forwarder>| -> Result<Counters> {
        Ok(match f {
            Some(f) => f.counters()?,
            None => Counters::default(),
        })
    };

    // Captures, sampler, flow.
    let clock = Instant::now();
    let wire = Capture::start(
        &n.switch,
        &n.switch_dut_port,
        vec![dut_mac, mac1, mac2],
        None,
        clock,
    )?;
    let at_a = Capture::start(&n.host_a, &n.host_a_if, vec![dut_mac], Some(mac1), clock)?;
    let at_b = Capture::start(&n.host_b, &n.host_b_if, vec![dut_mac], Some(mac2), clock)?;
    let running = Running {
        flow_stop: Arc::new(AtomicBool::new(false)),
        sampler_stop: Arc::new(AtomicBool::new(false)),
    };
    let sampler = start_sampler(
        n.dut.clone(),
        n.dut_host_if.clone(),
        nexthop,
        clock,
        running.sampler_stop.clone(),
    );
    let src_ip = pick(cell.family, addr::CLIENT4, addr::CLIENT6);
    let flow = traffic::start_flow(
        &n.client,
        &n.client_if,
        FlowSpec {
            src_mac: client_mac,
            dst_mac: dut_in_mac,
            src_ip,
            dst_ip: dst,
            rate_pps: opts.rate_pps,
        },
        clock,
        running.flow_stop.clone(),
    )?;

    // Warm-up: the flow reaches host A through the program.
    let warm_deadline = Instant::now() + WARMUP_LIMIT;
    let pre_move = match cell.scenario {
        Scenario::IpReassignAged | Scenario::Managed => PRE_MOVE_AGED,
        _ => PRE_MOVE,
    };
    while at_a.watched.load(Ordering::Relaxed) < 10 || clock.elapsed() < pre_move {
        stop::sleep(Duration::from_millis(10))?;
        if Instant::now() > warm_deadline {
            return Err(Error::Setup(
                "the flow did not reach host A before the move".into(),
            ));
        }
    }

    let mut move_at = None;
    let before;
    if cell.scenario == Scenario::ReachableFastpath {
        before = counters(&fwd)?;
        stop::sleep(opts.fastpath_window)?;
    } else {
        // The move.
        let garp = cell.scenario == Scenario::IpReassignGarp;
        lab.suppress_announcements(!garp)?;
        move_at = Some(clock.elapsed());
        before = counters(&fwd)?;
        let (a_if, b_if) = (n.host_a_if.clone(), n.host_b_if.clone());
        let m = moving.clone();
        lab.netlink(&n.host_a, |h| async move {
            for (a, _) in m {
                del_address(&h, &a_if, a).await?;
            }
            Ok(())
        })?;
        let m = moving.clone();
        lab.netlink(&n.host_b, |h| async move {
            for (a, len) in m {
                rtnl::add_address(&h, &b_if, a, len).await?;
            }
            Ok(())
        })?;
        if matches!(
            cell.scenario,
            Scenario::IpReassign | Scenario::IpReassignGarp | Scenario::Gateway
        ) {
            // The field reproducer.
            let spec = NeighSpec::new(nexthop, Some(mac1), nud::STALE);
            lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
        }
        if garp {
            stop::sleep(Duration::from_millis(20))?;
            let frame = match nexthop {
                IpAddr::V4(a) => traffic::garp_frame(mac2, a),
                IpAddr::V6(a) => traffic::unsolicited_na_frame(mac2, a),
            };
            traffic::send_frame(&n.host_b, &n.host_b_if, frame)?;
        }
        let window = if cell.scenario == Scenario::Managed {
            opts.managed_window
        } else {
            opts.window
        };
        let until = Instant::now() + window;
        let mut recovered_at: Option<Instant> = None;
        while Instant::now() < until {
            stop::sleep(Duration::from_millis(10))?;
            if recovered_at.is_none() && at_b.watched.load(Ordering::Relaxed) > 0 {
                recovered_at = Some(Instant::now());
            }
            if recovered_at.is_some_and(|t| t.elapsed() >= opts.after_recovery) {
                break;
            }
        }
    }

    // Wind down: stop the flow, let the last packets land.
    running.flow_stop.store(true, Ordering::Relaxed);
    let sent = flow.join().map_err(|_| traffic::Error::ThreadDied)??;
    stop::sleep(Duration::from_millis(60))?;
    let end = clock.elapsed();
    let after = counters(&fwd)?;
    drop(running);
    let samples = sampler.join().map_err(|_| traffic::Error::ThreadDied)??;
    let wire = wire.finish()?;
    let at_a = at_a.finish()?;
    let at_b = at_b.finish()?;
    let final_entry = lab.neigh_get(&n.dut, &n.dut_host_if, nexthop)?;

    let outcome = if move_at.is_none() {
        Outcome::Measured
    } else if at_b.iter().any(|c| is_flow_to(c, mac2)) {
        Outcome::Recovered
    } else {
        Outcome::NotRecovered
    };
    let mut r = CellResult::new(*cell, outcome);
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
    use crate::traffic::Classified;

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
            HookKind::Tc,
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
