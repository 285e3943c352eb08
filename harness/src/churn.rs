//! Neighbour churn under traffic: a flow is forwarded through the
//! forwarder (state-aware or refresh, tc or XDP) while another thread
//! churns the DUT's entry for the nexthop: a new MAC (REACHABLE or STALE),
//! forced STALE, deleted, the device's whole table flushed and, with
//! `--fill-table` (in a guest: the table is the machine's), the table
//! filled past `gc_thresh3` so forced GC runs. Afterwards the flow must reach the
//! nexthop's real MAC again, the forwarder's counters must add up, and the
//! lab must leave nothing behind; a kernel splat fails the VM run through
//! the console scan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fibneigh_bpf::Hook;
use fibneigh_bpf::{nud, Counters, Forwarder, Policy};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::lab::{addr, neigh, rtnl, Lab, Names, NeighSpec, Topology};
use crate::scenario::{pick, Family};
use crate::standard;
use crate::stop;
use crate::traffic::{self, Capture};

use crate::error::Result;

/// How long the flow has to reach the real MAC once the churn stops.
pub const RECOVERY_WINDOW: Duration = Duration::from_secs(15);
/// Entries added per table fill: past the default `gc_thresh3` (1024).
pub const FILL_ENTRIES: u32 = 1100;
const RATE_PPS: u32 = 500;

/// One churn run.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub policy: String,
    pub hook: String,
    pub family: u8,
    pub seconds: u64,
    pub seed: u64,
    /// Churn actions done, by kind.
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Whether filling the neighbour table was one of the actions
    /// (`--fill-table`).
    pub fill_table: bool,
    /// Table fills that hit the table's limit (ENOBUFS) before the end.
    pub fills_limited: u64,
    pub sent: u64,
    /// Frames the forwarder saw (looked up or skipped).
    pub seen: u64,
    pub lookups: u64,
    pub redirect: u64,
    pub redirect_neigh: u64,
    pub pass: u64,
    pub drop: u64,
    pub skipped: u64,
    /// Flow frames at the nexthop's real MAC after the churn stopped.
    pub recovered: bool,
    pub recovery_ms: Option<u64>,
    pub note: Option<String>,
    /// What is wrong; empty when all is well.
    pub problems: Vec<String>,
}

impl ChurnReport {
    /// The run's line, its note and its actions by kind; `problems` are
    /// what is wrong with it (its own and what the run left behind).
    pub fn render(&self, problems: &[String]) -> String {
        let r = self;
        let fills = if r.fill_table {
            format!("{} fills hit the table limit", r.fills_limited)
        } else {
            "no table fills: the table is the machine's, --fill-table in a guest".to_string()
        };
        let mut out = format!(
            "churn {} {} v{}: {}s, {} actions ({fills}); sent {}, forwarder saw {} \
             (redirect {}, redirect_neigh {}, pass {}, drop {}); recovered {}: {}\n",
            r.policy,
            r.hook,
            r.family,
            r.seconds,
            r.actions.values().sum::<u64>(),
            r.sent,
            r.seen,
            r.redirect,
            r.redirect_neigh,
            r.pass,
            r.drop,
            r.recovery_ms
                .map_or("never".into(), |ms| format!("in {ms} ms")),
            if problems.is_empty() {
                "ok".to_string()
            } else {
                problems.join("; ")
            }
        );
        if let Some(note) = &r.note {
            out.push_str(&format!("    note: {note}\n"));
        }
        for (k, v) in &r.actions {
            out.push_str(&format!("    {v:>6}  {k}\n"));
        }
        out
    }
}

/// What stops a series of churn runs.
#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("churn run failed")]
    Run(#[source] crate::error::Error),
    #[error("failed to look for leftovers")]
    Leftovers(#[source] crate::lab::Error),
    /// Stopped by SIGINT/SIGTERM; the lab was removed.
    #[error("interrupted")]
    Interrupted,
    /// A request that cannot run (the flag and why).
    #[error("{0}")]
    Invalid(&'static str),
}

/// The runs `fibneigh churn` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct ChurnRequest {
    /// Seconds of churn per run (policy x hook; at most a day).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(..=86_400))]
    pub seconds: u64,
    /// Policies to run (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "state-aware,refresh")]
    pub policy: Vec<Policy>,
    /// Hooks to run (comma-separated): tc, xdp.
    #[arg(long, value_delimiter = ',', default_value = "tc,xdp")]
    pub hook: Vec<Hook>,
    /// Address family of the flow and the churned entry: 4 or 6.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=6))]
    pub family: u8,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also fill the neighbour table past gc_thresh3 as one of the
    /// actions. The table is one per family for the whole machine, not
    /// per namespace: a fill makes forced GC evict the machine's own idle
    /// entries and refuse new ones while it lasts, so use it in a guest
    /// (`fibneigh vm run -- fibneigh churn --fill-table`), not on a host
    /// that has other work.
    #[arg(long)]
    pub fill_table: bool,
}

impl ChurnRequest {
    /// The request, if it can run.
    pub fn validate(&self) -> std::result::Result<(), RunsError> {
        if self.family == 5 {
            return Err(RunsError::Invalid("--family must be 4 or 6"));
        }
        if self.seconds == 0 {
            return Err(RunsError::Invalid("--seconds must be at least 1"));
        }
        Ok(())
    }

    /// The `BPF_FIB_LOOKUP_*` flags its policies need from the kernel.
    pub fn required_flags(&self) -> u32 {
        self.policy.iter().fold(0, |f, p| f | p.required_flags())
    }
}

/// A run per policy and hook, in order; `done` hears of each with its
/// problems (its own and the namespaces it left behind). The reports, and
/// how many runs had a problem.
pub fn run_each(
    req: &ChurnRequest,
    mut done: impl FnMut(&ChurnReport, &[String]),
) -> std::result::Result<(Vec<ChurnReport>, usize), RunsError> {
    let mut reports = Vec::new();
    let mut failed = 0;
    for policy in &req.policy {
        for hook in &req.hook {
            let r = match run(*policy, *hook, req) {
                Ok(r) => r,
                Err(crate::error::Error::Interrupted(_)) => return Err(RunsError::Interrupted),
                Err(e) => return Err(RunsError::Run(e)),
            };
            let problems = Lab::with_leftovers(r.problems.clone()).map_err(RunsError::Leftovers)?;
            done(&r, &problems);
            if !problems.is_empty() {
                failed += 1;
            }
            reports.push(r);
        }
    }
    Ok((reports, failed))
}

/// The checks on the counters: every lookup ended in exactly one action,
/// and the forwarder looked up no more frames than the flow sent (the
/// lab's own multicast, ND and ARP frames are skipped, not looked up).
pub fn counter_problems(c: &Counters, sent: u64) -> Vec<String> {
    let mut p = Vec::new();
    let looked_up = c.lookups_total();
    let acted = c.redirect + c.redirect_neigh + c.drop + c.pass.saturating_sub(c.skipped);
    if looked_up != acted {
        p.push(format!(
            "{looked_up} lookups but {acted} actions (redirect {}, redirect_neigh {}, drop {}, pass {} of which skipped {})",
            c.redirect, c.redirect_neigh, c.drop, c.pass, c.skipped
        ));
    }
    if c.skipped > c.pass {
        p.push(format!("{} skipped but only {} passed", c.skipped, c.pass));
    }
    if looked_up > sent {
        p.push(format!(
            "the forwarder looked up {looked_up} frames of {sent} sent"
        ));
    }
    if looked_up == 0 {
        p.push("the forwarder looked nothing up".into());
    }
    p
}

fn fill_addr(v6: bool, i: u32) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0xee,
            0,
            0,
            0,
            0,
            (i >> 16) as u16,
            i as u16,
        ))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 200, (i >> 8) as u8, i as u8))
    }
}

/// Run one churn: `req.seconds` of churn under a flow, then recovery.
pub fn run(policy: Policy, hook: Hook, req: &ChurnRequest) -> Result<ChurnReport> {
    let (seconds, seed, v6) = (req.seconds, req.seed, req.family == 6);
    let n = Names::for_this_process();
    stop::check()?;
    let lab = Lab::create(&Topology::standard(&n))?;
    // Short timers, so whatever state the churn leaves resolves in the
    // window.
    lab.set_neigh_timers(&n.dut, &n.dut_host_if, v6, &neigh::QUICK)?;
    let real_mac = lab.mac(&n.host_a, &n.host_a_if)?;
    let dut_mac = lab.mac(&n.dut, &n.dut_host_if)?;
    let dev_index = lab.ifindex(&n.dut, &n.dut_host_if)?;
    let family = if v6 { Family::V6 } else { Family::V4 };
    let nexthop = pick(family, addr::HOST_A4, addr::HOST_A6);
    let src = pick(family, addr::CLIENT4, addr::CLIENT6);
    let _sink = traffic::udp_sink(&n.host_a)?;

    let fwd = Forwarder::load(policy)?;
    let _attached = lab.attach_forwarder(&fwd, hook, &n.dut, &n.dut_client_if)?;
    let before = fwd.counters()?;

    let clock = Instant::now();
    let at_a = Capture::start(
        &n.host_a,
        &n.host_a_if,
        vec![dut_mac],
        Some(real_mac),
        clock,
        None,
    )?;
    // Stops on every way out of here, errors included.
    let flow = standard::flow_through_dut(&lab, &n, src, nexthop, RATE_PPS, clock)?;

    // The churn, on this thread.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut actions = std::collections::BTreeMap::<String, u64>::new();
    let mut fills_limited = 0;
    let churn_end = Instant::now() + Duration::from_secs(seconds);
    let mut fill_base = 0u32;
    while Instant::now() < churn_end {
        stop::check()?;
        // The last kind, a table fill, only when asked for.
        let kind = rng.gen_range(0..if req.fill_table { 12 } else { 11 });
        let mac: [u8; 6] = [0x02, 0xc4, rng.gen(), rng.gen(), rng.gen(), rng.gen()];
        let name = match kind {
            0..=2 => {
                let spec = NeighSpec::new(nexthop, Some(mac), nud::REACHABLE);
                lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
                "new MAC, REACHABLE"
            }
            3..=5 => {
                let spec = NeighSpec::new(nexthop, Some(mac), nud::STALE);
                lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
                "new MAC, STALE"
            }
            6 | 7 => {
                let spec = NeighSpec::new(nexthop, Some(real_mac), nud::STALE);
                lab.neigh_replace(&n.dut, &n.dut_host_if, &spec)?;
                "real MAC, forced STALE"
            }
            8 | 9 => {
                lab.neigh_delete(&n.dut, &n.dut_host_if, nexthop)?;
                "deleted"
            }
            10 => {
                rtnl::with_netlink(&n.dut, move |h| async move {
                    for e in neigh::list(&h).await? {
                        if e.ifindex == dev_index {
                            neigh::delete(&h, dev_index, e.dst).await?;
                        }
                    }
                    Ok(())
                })?;
                "device table flushed"
            }
            _ => {
                let base = fill_base;
                fill_base = fill_base.wrapping_add(FILL_ENTRIES);
                let limited = rtnl::with_netlink(&n.dut, move |h| async move {
                    for i in 0..FILL_ENTRIES {
                        let spec = NeighSpec::new(
                            fill_addr(v6, base.wrapping_add(i) % 60_000),
                            Some([0x02, 0xf1, 0, 0, (i >> 8) as u8, i as u8]),
                            nud::STALE,
                        );
                        // Past gc_thresh3 the table refuses (ENOBUFS) when
                        // forced GC cannot make room: that is the point.
                        if neigh::replace(&h, dev_index, &spec).await.is_err() {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                })?;
                if limited {
                    fills_limited += 1;
                }
                "table filled past gc_thresh3"
            }
        };
        *actions.entry(name.into()).or_default() += 1;
        stop::sleep(Duration::from_millis(rng.gen_range(5..60)))?;
    }

    // Recovery: the flow reaches the real MAC again.
    let churn_stopped = Instant::now();
    let seen_before = at_a.watched.load(Ordering::Relaxed);
    let mut recovery_ms = None;
    while churn_stopped.elapsed() < RECOVERY_WINDOW {
        stop::sleep(Duration::from_millis(20))?;
        // Several frames, so one frame in flight at the stop does not count.
        if at_a.watched.load(Ordering::Relaxed) >= seen_before + 10 {
            recovery_ms = Some(churn_stopped.elapsed().as_millis() as u64);
            break;
        }
    }
    let sent = flow.finish()??.len() as u64;
    stop::sleep(Duration::from_millis(60))?;
    let _ = at_a.finish()?;
    let c = fwd.counters()?.since(&before);

    let mut problems = counter_problems(&c, sent);
    // Baseline never re-validates a wrong MAC: that is the bug the series
    // fixes, reported but not a failure of the run.
    let note = if recovery_ms.is_none() && policy == Policy::Baseline {
        Some("baseline did not recover: the stale-MAC bug itself".to_string())
    } else {
        None
    };
    if recovery_ms.is_none() && policy != Policy::Baseline {
        problems.push(format!(
            "the flow did not reach the nexthop's real MAC within {}s of the churn's end",
            RECOVERY_WINDOW.as_secs()
        ));
    }
    Ok(ChurnReport {
        policy: policy.name().into(),
        hook: hook.name().into(),
        family: if v6 { 6 } else { 4 },
        seconds,
        seed,
        actions,
        fill_table: req.fill_table,
        fills_limited,
        sent,
        seen: c.lookups_total() + c.skipped,
        lookups: c.lookups_total(),
        redirect: c.redirect,
        redirect_neigh: c.redirect_neigh,
        pass: c.pass,
        drop: c.drop,
        skipped: c.skipped,
        recovered: recovery_ms.is_some(),
        recovery_ms,
        note,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_must_add_up() {
        let mut c = Counters::default();
        c.lookups[0] = 90; // SUCCESS
        c.lookups[7] = 10; // NO_NEIGH
        c.redirect = 90;
        c.redirect_neigh = 10;
        c.pass = 5;
        c.skipped = 5;
        assert!(counter_problems(&c, 105).is_empty());
        // A lookup without an action.
        c.redirect = 89;
        assert_eq!(counter_problems(&c, 105).len(), 1);
        c.redirect = 90;
        // More frames looked up than sent.
        assert_eq!(counter_problems(&c, 99).len(), 1);
        // Nothing looked up.
        assert!(!counter_problems(&Counters::default(), 10).is_empty());
    }

    #[test]
    fn fill_addresses_are_distinct() {
        let a: std::collections::BTreeSet<_> =
            (0..FILL_ENTRIES).map(|i| fill_addr(false, i)).collect();
        assert_eq!(a.len(), FILL_ENTRIES as usize);
        let b: std::collections::BTreeSet<_> =
            (0..FILL_ENTRIES).map(|i| fill_addr(true, i)).collect();
        assert_eq!(b.len(), FILL_ENTRIES as usize);
    }
}
