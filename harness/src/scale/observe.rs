//! From frames captured leaving the DUT to a scale case's numbers: which
//! nexthops move, when each reached its new MAC, what went to the dead
//! MAC, the probes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::traffic::{is_group, Captured, FrameKind};

/// The nexthops (indices below `n`) that move: `pct` percent of them,
/// at least one, spread evenly over the range.
pub fn moved_indices(n: u32, pct: u32) -> Vec<u32> {
    if n == 0 {
        return Vec::new();
    }
    let m = ((u64::from(n) * u64::from(pct.min(100)) + 50) / 100).clamp(1, u64::from(n));
    (0..m).map(|k| (k * u64::from(n) / m) as u32).collect()
}

/// Median, 99th percentile and maximum of a set of times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// None for no values (nearest-rank percentiles).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let v = crate::bench::finite_sorted(values)?;
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Spread {
            median: rank(0.5),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// What the capture on the DUT's host-side link showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observed {
    /// Flow frames leaving the DUT (any MAC, any time).
    pub left_dut: u64,
    /// Flow frames to the old MAC for a moved nexthop after the move.
    pub to_dead: u64,
    /// ARP requests / neighbour solicitations the DUT sent after the
    /// move, to a unicast MAC and to broadcast/multicast.
    pub probes_unicast: u64,
    pub probes_group: u64,
    /// The most probes in one second after the move.
    pub probes_peak_per_s: u64,
    /// Distinct addresses probed after the move.
    pub probed_addresses: u64,
    /// Probes in the second before the move (the steady state).
    pub probes_before_move: u64,
    /// For each moved nexthop (in `moved` order): ms from the move to its
    /// first frame at the new MAC.
    #[serde(skip)]
    pub first_new_ms: Vec<Option<f64>>,
}

impl Observed {
    pub fn probes_total(&self) -> u64 {
        self.probes_unicast + self.probes_group
    }
}

/// Count what `captured` (frames from `dut_mac` on the host segment)
/// shows for a flow whose frame `seq` went to nexthop `seq % nexthops`,
/// the nexthops `moved` having moved from `old_mac` to `new_mac` at
/// `move_at`.
pub fn observe(
    captured: &[Captured],
    dut_mac: [u8; 6],
    (old_mac, new_mac): ([u8; 6], [u8; 6]),
    nexthops: u32,
    moved: &[u32],
    move_at: Duration,
) -> Observed {
    let slot: BTreeMap<u32, usize> = moved.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let mut o = Observed {
        first_new_ms: vec![None; moved.len()],
        ..Observed::default()
    };
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    let mut probed = BTreeSet::new();
    let before = move_at.saturating_sub(Duration::from_secs(1));
    for c in captured.iter().filter(|c| c.frame.src == dut_mac) {
        match &c.frame.kind {
            FrameKind::Data { seq } => {
                o.left_dut += 1;
                if c.t < move_at || nexthops == 0 {
                    continue;
                }
                let Some(&k) = slot.get(&(seq % nexthops)) else {
                    continue;
                };
                if c.frame.dst == old_mac {
                    o.to_dead += 1;
                } else if c.frame.dst == new_mac && o.first_new_ms[k].is_none() {
                    o.first_new_ms[k] = Some((c.t - move_at).as_secs_f64() * 1000.0);
                }
            }
            FrameKind::ArpRequest { sender, target } if sender != target => probe(
                &mut o,
                c,
                *target,
                move_at,
                before,
                &mut per_second,
                &mut probed,
            ),
            FrameKind::NeighSolicit { target } => probe(
                &mut o,
                c,
                *target,
                move_at,
                before,
                &mut per_second,
                &mut probed,
            ),
            _ => {}
        }
    }
    o.probes_peak_per_s = per_second.values().copied().max().unwrap_or(0);
    o.probed_addresses = probed.len() as u64;
    o
}

fn probe(
    o: &mut Observed,
    c: &Captured,
    target: std::net::IpAddr,
    move_at: Duration,
    before: Duration,
    per_second: &mut BTreeMap<u64, u64>,
    probed: &mut BTreeSet<std::net::IpAddr>,
) {
    if c.t < move_at {
        if c.t >= before {
            o.probes_before_move += 1;
        }
        return;
    }
    if is_group(c.frame.dst) {
        o.probes_group += 1;
    } else {
        o.probes_unicast += 1;
    }
    *per_second.entry((c.t - move_at).as_secs()).or_default() += 1;
    probed.insert(target);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Classified, BROADCAST};
    use std::net::IpAddr;

    const DUT: [u8; 6] = [2, 0, 0, 0, 0, 0xd];
    const OLD: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const NEW: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn at(t_ms: u64, src: [u8; 6], dst: [u8; 6], kind: FrameKind) -> Captured {
        Captured {
            t: Duration::from_millis(t_ms),
            frame: Classified { src, dst, kind },
        }
    }

    #[test]
    fn moved_nexthops_spread_over_the_range() {
        assert_eq!(moved_indices(1, 10), vec![0]);
        assert_eq!(moved_indices(10, 10), vec![0]);
        assert_eq!(moved_indices(64, 10), vec![0, 10, 21, 32, 42, 53]);
        assert_eq!(moved_indices(4, 100), vec![0, 1, 2, 3]);
        assert_eq!(moved_indices(1024, 10).len(), 102);
        assert_eq!(moved_indices(16384, 100).len(), 16384);
        assert!(moved_indices(0, 50).is_empty());
    }

    #[test]
    fn spreads_use_nearest_rank() {
        assert_eq!(Spread::of(&[]), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Spread::of(&v).unwrap();
        assert_eq!((s.median, s.p99, s.max), (50.0, 99.0, 100.0));
        let one = Spread::of(&[7.0]).unwrap();
        assert_eq!((one.median, one.p99, one.max), (7.0, 7.0, 7.0));
    }

    #[test]
    fn frames_become_recoveries_dead_frames_and_probes() {
        let n = 4;
        let moved = [1, 3];
        let target = |i: u8| IpAddr::from([10, 3, 0, 16 + i]);
        let arp = |t, dst, i| {
            at(
                t,
                DUT,
                dst,
                FrameKind::ArpRequest {
                    sender: IpAddr::from([10, 3, 0, 1]),
                    target: target(i),
                },
            )
        };
        let frames = vec![
            // Before the move at 1000 ms: everything to the old MAC.
            at(100, DUT, OLD, FrameKind::Data { seq: 0 }),
            at(200, DUT, OLD, FrameKind::Data { seq: 1 }),
            arp(500, OLD, 0),
            // After: nexthop 1 (seq 5) still at the dead MAC, then moves.
            at(1100, DUT, OLD, FrameKind::Data { seq: 5 }),
            arp(1150, OLD, 1),
            arp(1300, BROADCAST, 1),
            arp(2100, BROADCAST, 3),
            at(1400, DUT, NEW, FrameKind::Data { seq: 9 }),
            at(1500, DUT, NEW, FrameKind::Data { seq: 13 }),
            // An unmoved nexthop at the old MAC is no dead frame.
            at(1600, DUT, OLD, FrameKind::Data { seq: 4 }),
            // Not from the DUT: ignored.
            at(1700, OLD, DUT, FrameKind::Data { seq: 3 }),
            // A gratuitous ARP is no probe.
            at(
                1800,
                DUT,
                BROADCAST,
                FrameKind::ArpRequest {
                    sender: target(2),
                    target: target(2),
                },
            ),
        ];
        let o = observe(
            &frames,
            DUT,
            (OLD, NEW),
            n,
            &moved,
            Duration::from_millis(1000),
        );
        assert_eq!(o.left_dut, 6);
        assert_eq!(o.to_dead, 1);
        assert_eq!((o.probes_unicast, o.probes_group), (1, 2));
        assert_eq!(o.probes_before_move, 1);
        assert_eq!(o.probes_peak_per_s, 2);
        assert_eq!(o.probed_addresses, 2);
        assert_eq!(o.first_new_ms, vec![Some(400.0), None]);
        assert_eq!(o.probes_total(), 3);
    }
}
