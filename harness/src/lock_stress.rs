//! REFRESH under the kernel's locks, for the debug kernel (lockdep, KASAN):
//! the series' `NEIGH_STATE | NEIGH_REFRESH` lookup of one target entry,
//! which this thread keeps forcing STALE (new MACs, REACHABLE, deleted and
//! made again), made at the same time
//! - by a cls_bpf filter under an htb qdisc on the DUT's egress device,
//!   while a flow is forwarded through it: the filter runs inside the
//!   qdisc's enqueue with its root lock held, so a STALE entry's
//!   `neigh->lock` is taken inside it (root_lock -> neigh->lock);
//! - by test runs of the tc program pinned to every CPU the process may
//!   run on (its affinity mask), and of the XDP program on the first.
//!   (XDP test runs of several programs at once rewrite the XDP
//!   dispatcher under each other: under TCG with a host thread per vCPU
//!   that ended in an int3 Oops in `bpf_dispatcher_xdp_func`, in code the
//!   series does not touch (`fibneigh_vm::TcgThreads`), so XDP runs from
//!   one thread.)
//!
//! Whether a site finds the entry STALE while all of them run is chance
//! (the first lookup after a forced STALE kicks it; the others then see
//! DELAY), so once they have stopped, each site in turn kicks it on
//! purpose: the entry is forced STALE with no other site running, that
//! site looks it up until it has found it STALE, and the entry must then
//! have left STALE (DELAY, or PROBE once DELAY's time is up). The filter
//! does so under the qdisc's root lock, driven by the flow.
//!
//! The run fails when a site's counts do not add up (every test run is
//! counted once), a lookup returns anything but SUCCESS or NO_NEIGH, or a
//! site's kick on purpose did not happen or left the entry STALE; a
//! kernel report fails the VM run through the console scan.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use fibneigh_bpf::lock_stress::{LockStress, Site, SiteCounts};
use fibneigh_bpf::{nud, ret, EnteredNetns, FibParams, Hook};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cpus::{allowed_cpus, join_all, pin_to};
use crate::error::{Error, Result};
use crate::lab::{addr, Lab, Names, NeighSpec, Topology};
use crate::nud::Nud;
use crate::standard;
use crate::stop;
use crate::traffic;

/// The target entry: on the DUT's host-side device, in its subnet, and
/// nobody's address (nothing answers for it, so only the churn moves it).
pub const TARGET: IpAddr = IpAddr::V4(addr::NOBODY4);
/// Lookups per test run.
const REPEAT: u32 = 200;
const RATE_PPS: u32 = 1000;
/// The qdisc the filter sits under: `htb`, handle `1:`.
const QDISC_MAJOR: u16 = 1;

/// What one site did.
#[derive(Debug, Clone, Serialize)]
pub struct SiteReport {
    pub lookups: u64,
    pub success: u64,
    pub no_neigh: u64,
    /// Lookups that found the entry STALE (each kicked it towards DELAY).
    pub stale: u64,
    /// Any other result (another return code, a negative errno).
    pub other: u64,
}

impl SiteReport {
    fn from_counts(c: &SiteCounts) -> Self {
        let at = |rc: i64| c.by_ret.get(rc as usize).copied().unwrap_or(0);
        let success = at(ret::SUCCESS);
        let no_neigh = at(ret::NO_NEIGH);
        SiteReport {
            lookups: c.total(),
            success,
            no_neigh,
            stale: c.stale,
            other: c.total() - success - no_neigh,
        }
    }
}

/// One site's kick on purpose: the entry forced STALE with no other site
/// running, then that site's lookups until one found it STALE.
#[derive(Debug, Clone, Serialize)]
pub struct Kick {
    pub site: String,
    /// Times the entry was forced STALE before the site found it so
    /// (another lookup, e.g. of the DUT's own frames through the qdisc,
    /// may kick it first); 0 if it never did within [`KICK_TRIES`].
    pub tries: u32,
    /// The entry's state after the kick (None: no entry).
    pub state_after: Option<Nud>,
}

/// Times a site's kick on purpose is tried.
pub const KICK_TRIES: u32 = 5;
/// How long one try waits for the site to find the entry STALE (the
/// filter waits for the flow's next frame through the qdisc, which a busy
/// emulated guest may hold up).
pub const KICK_WAIT: Duration = Duration::from_secs(5);

impl Kick {
    /// What is wrong with the kick, if anything.
    fn problem(&self) -> Option<String> {
        if self.tries == 0 {
            return Some(format!(
                "{}: forced STALE {KICK_TRIES} times, never found it STALE",
                self.site
            ));
        }
        match self.state_after {
            Some(Nud(st)) if st & (nud::DELAY | nud::PROBE) != 0 => None,
            other => Some(format!(
                "{}: found the entry STALE, but it is {} after the kick, not DELAY or PROBE",
                self.site,
                other.map_or("gone".into(), Nud::name)
            )),
        }
    }
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct LockStressReport {
    pub seconds: u64,
    pub seed: u64,
    /// CPUs a test-run thread was pinned to.
    pub cpus: usize,
    /// Churn actions done, by kind.
    pub actions: std::collections::BTreeMap<String, u64>,
    /// Flow frames sent through the DUT (and its qdisc).
    pub sent: u64,
    pub qdisc: SiteReport,
    pub tc_run: SiteReport,
    pub xdp_run: SiteReport,
    /// Test runs made (each `REPEAT` lookups), over all threads.
    pub test_runs: u64,
    /// Each site's kick on purpose, after the free run.
    pub kicks: Vec<Kick>,
    /// What is wrong; empty when all is well.
    pub problems: Vec<String>,
}

impl LockStressReport {
    /// The run's line, each site's lookups and the churn's actions.
    pub fn render(&self) -> String {
        let r = self;
        let mut out = format!(
            "lock-stress: {}s, {} churn actions, {} frames through the htb qdisc, {} test runs on {} CPU(s)\n",
            r.seconds,
            r.actions.values().sum::<u64>(),
            r.sent,
            r.test_runs,
            r.cpus
        );
        for (name, s) in [
            ("qdisc (cls_bpf under htb)", &r.qdisc),
            ("tc test runs", &r.tc_run),
            ("XDP test runs", &r.xdp_run),
        ] {
            out.push_str(&format!(
                "    {name:<26} {:>9} lookups: SUCCESS {}, NO_NEIGH {}, other {}; found STALE (kicked) {}\n",
                s.lookups, s.success, s.no_neigh, s.other, s.stale
            ));
        }
        for (k, v) in &r.actions {
            out.push_str(&format!("    {v:>6}  {k}\n"));
        }
        for k in &r.kicks {
            let state = k.state_after.map_or("no entry".into(), Nud::name);
            out.push_str(&match k.tries {
                0 => format!("    kick on purpose, {}: never found it STALE\n", k.site),
                t => format!(
                    "    kick on purpose, {}: found STALE (forced {t} time(s)), then {state}\n",
                    k.site
                ),
            });
        }
        out
    }
}

/// What `fibneigh lock-stress` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct LockStressRequest {
    /// How long the filter, the test runs and the churn run together
    /// (at most a day).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(..=86_400))]
    pub seconds: u64,
    /// Seed of the churn's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A request for no time at all.
#[derive(Debug, thiserror::Error)]
#[error("--seconds must be at least 1")]
pub struct NoSeconds;

impl LockStressRequest {
    /// The request, if it runs for some time.
    pub fn validate(&self) -> std::result::Result<(), NoSeconds> {
        if self.seconds == 0 {
            return Err(NoSeconds);
        }
        Ok(())
    }

    /// [`run`] as asked.
    pub fn run(&self) -> Result<LockStressReport> {
        run(self.seconds, self.seed)
    }
}

/// Run for `seconds`.
pub fn run(seconds: u64, seed: u64) -> Result<LockStressReport> {
    let n = Names::for_this_process();
    stop::check()?;
    let lab = Lab::create(&Topology::standard(&n))?;
    let ns = lab.open_ns(&n.dut).map_err(Error::from)?;
    let in_index = lab.ifindex(&n.dut, &n.dut_client_if)?;
    let out_index = lab.ifindex(&n.dut, &n.dut_host_if)?;
    let target = FibParams::forward(in_index, IpAddr::V4(addr::CLIENT4), TARGET, 0);
    let stale = NeighSpec::new(TARGET, Some([0x02, 0x10, 0, 0, 0, 1]), nud::STALE);
    lab.neigh_replace(&n.dut, &n.dut_host_if, &stale)?;

    // The classful qdisc, and the filter under it.
    let stress = LockStress::load(target)?;
    let _filter = {
        let _inside = EnteredNetns::enter(ns.as_fd())?;
        tc(&[
            "qdisc",
            "add",
            "dev",
            &n.dut_host_if,
            "root",
            "handle",
            "1:",
            "htb",
            "default",
            "10",
        ])?;
        tc(&[
            "class",
            "add",
            "dev",
            &n.dut_host_if,
            "parent",
            "1:",
            "classid",
            "1:10",
            "htb",
            "rate",
            "1gbit",
        ])?;
        stress.attach_under_qdisc(out_index, QDISC_MAJOR)?
    };

    let _sink = traffic::udp_sink(&n.host_a)?;
    let clock = Instant::now();
    let flow = standard::flow_through_dut(
        &lab,
        &n,
        IpAddr::V4(addr::CLIENT4),
        IpAddr::V4(addr::HOST_A4),
        RATE_PPS,
        clock,
    )?;

    let allowed = allowed_cpus()?;
    let cpus = allowed.len();
    let end = Instant::now() + Duration::from_secs(seconds);
    // Set when the churn fails: the test runs stop then, not at `end`.
    let churn_failed = std::sync::atomic::AtomicBool::new(false);
    let (actions, runs) = std::thread::scope(|s| -> Result<_> {
        let workers: Vec<_> = allowed
            .iter()
            .enumerate()
            .map(|(i, &cpu)| {
                let ns = ns.as_fd();
                let stop_early = &churn_failed;
                let xdp = i == 0;
                s.spawn(move || test_runs(ns, cpu, xdp, target, in_index, end, stop_early))
            })
            .collect();
        let actions = churn(&lab, &n.dut, &n.dut_host_if, end, seed);
        if actions.is_err() {
            churn_failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let runs = join_all(workers)?;
        Ok((actions?, runs))
    })?;
    // The kicks on purpose: the filter's while the flow still runs through
    // the qdisc, then, the flow stopped, the test runs'.
    let qdisc_kick = kick(
        &lab,
        &n,
        "qdisc (cls_bpf under htb)",
        || Ok(()),
        || Ok(stress.counts(Site::Qdisc)?.stale),
    )?;
    let sent = flow.finish()??.len() as u64;
    let mut kicks = vec![qdisc_kick];
    kicks.extend(test_run_kicks(&lab, &n, ns.as_fd(), target, in_index)?);

    let qdisc = SiteReport::from_counts(&stress.counts(Site::Qdisc)?);
    let mut tc_run = SiteCounts::default();
    let mut xdp_run = SiteCounts::default();
    let mut test_runs = 0;
    let mut problems = Vec::new();
    for r in &runs {
        test_runs += r.tc_runs + r.xdp_runs;
        for (hook, got, runs) in [
            (Hook::Tc, &r.tc, r.tc_runs),
            (Hook::Xdp, &r.xdp, r.xdp_runs),
        ] {
            let want = runs * u64::from(REPEAT);
            if got.total() != want {
                problems.push(format!(
                    "CPU {}: {} test runs counted {} lookups, not {want}",
                    r.cpu,
                    hook,
                    got.total()
                ));
            }
        }
        add(&mut tc_run, &r.tc);
        add(&mut xdp_run, &r.xdp);
    }
    let tc_run = SiteReport::from_counts(&tc_run);
    let xdp_run = SiteReport::from_counts(&xdp_run);
    for (name, site) in [
        ("qdisc", &qdisc),
        ("tc test run", &tc_run),
        ("XDP test run", &xdp_run),
    ] {
        if site.other > 0 {
            problems.push(format!(
                "{name}: {} lookup(s) returned neither SUCCESS nor NO_NEIGH",
                site.other
            ));
        }
    }
    problems.extend(kicks.iter().filter_map(Kick::problem));
    Ok(LockStressReport {
        seconds,
        seed,
        cpus,
        actions,
        sent,
        qdisc,
        tc_run,
        xdp_run,
        test_runs,
        kicks,
        problems,
    })
}

/// One site's kick on purpose: up to [`KICK_TRIES`] times, make the
/// target REACHABLE (so that no lookup finds it STALE), read `found` (the
/// site's count of STALE entries found), force it STALE, then `look` (that
/// site's lookups) until `found` has grown, for up to [`KICK_WAIT`]; a try
/// fails when another lookup kicked the entry first.
fn kick(
    lab: &Lab,
    n: &Names,
    site: &str,
    mut look: impl FnMut() -> Result<()>,
    found: impl Fn() -> Result<u64>,
) -> Result<Kick> {
    let mac = Some([0x02, 0x10, 0, 0, 0, 2]);
    let reachable = NeighSpec::new(TARGET, mac, nud::REACHABLE);
    let stale = NeighSpec::new(TARGET, mac, nud::STALE);
    for tries in 1..=KICK_TRIES {
        lab.neigh_replace(&n.dut, &n.dut_host_if, &reachable)?;
        let before = found()?;
        lab.neigh_replace(&n.dut, &n.dut_host_if, &stale)?;
        let start = Instant::now();
        while start.elapsed() < KICK_WAIT {
            stop::check()?;
            look()?;
            if found()? > before {
                let state_after = lab
                    .neigh_get(&n.dut, &n.dut_host_if, TARGET)?
                    .map(|e| Nud(e.state));
                return Ok(Kick {
                    site: site.into(),
                    tries,
                    state_after,
                });
            }
            stop::sleep(Duration::from_millis(10))?;
        }
    }
    Ok(Kick {
        site: site.into(),
        tries: 0,
        state_after: None,
    })
}

/// The tc and XDP test runs' kicks on purpose, one test run (one lookup)
/// at a time, with this thread in the DUT's namespace (the test runs look
/// up in the caller's; the lab's netlink calls open their own).
fn test_run_kicks(
    lab: &Lab,
    n: &Names,
    ns: std::os::fd::BorrowedFd<'_>,
    target: FibParams,
    in_index: u32,
) -> Result<Vec<Kick>> {
    let _inside = EnteredNetns::enter(ns)?;
    let stress = LockStress::load(target)?;
    [
        (Hook::Tc, Site::TcRun, "tc test run"),
        (Hook::Xdp, Site::XdpRun, "XDP test run"),
    ]
    .into_iter()
    .map(|(hook, site, name)| {
        kick(
            lab,
            n,
            name,
            || Ok(stress.test_run(hook, in_index, 1)?),
            || Ok(stress.counts(site)?.stale),
        )
    })
    .collect()
}

fn add(total: &mut SiteCounts, c: &SiteCounts) {
    if total.by_ret.len() < c.by_ret.len() {
        total.by_ret.resize(c.by_ret.len(), 0);
    }
    for (t, v) in total.by_ret.iter_mut().zip(&c.by_ret) {
        *t += v;
    }
    total.errno += c.errno;
    total.stale += c.stale;
}

/// `tc ARGS` in the calling thread's network namespace.
fn tc(args: &[&str]) -> Result<()> {
    let out = Command::new("tc")
        .args(args)
        .output()
        .map_err(|e| Error::Setup(format!("failed to run tc {}: {e}", args.join(" "))))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("qdisc kind is unknown") {
            " (this kernel has no htb, CONFIG_NET_SCH_HTB: the debug profile's config-debug has it)"
        } else {
            ""
        };
        return Err(Error::Setup(format!(
            "tc {} failed: {}{hint}",
            args.join(" "),
            stderr.trim()
        )));
    }
    Ok(())
}

/// What one pinned thread ran.
struct Runs {
    cpu: usize,
    tc_runs: u64,
    xdp_runs: u64,
    tc: SiteCounts,
    xdp: SiteCounts,
}

/// Test runs on `cpu` in the DUT's namespace until `end`: tc, and with
/// `xdp` (one thread only) XDP in turn with it; with an object of the
/// thread's own (a skeleton stays in its thread).
fn test_runs(
    ns: std::os::fd::BorrowedFd<'_>,
    cpu: usize,
    xdp: bool,
    target: FibParams,
    in_index: u32,
    end: Instant,
    stop_early: &std::sync::atomic::AtomicBool,
) -> Result<Runs> {
    pin_to(cpu)?;
    let _inside = EnteredNetns::enter(ns)?;
    let stress = LockStress::load(target)?;
    let (mut tc_runs, mut xdp_runs) = (0, 0);
    while Instant::now() < end && !stop_early.load(std::sync::atomic::Ordering::Relaxed) {
        stop::check()?;
        stress.test_run(Hook::Tc, in_index, REPEAT)?;
        tc_runs += 1;
        if xdp {
            stress.test_run(Hook::Xdp, in_index, REPEAT)?;
            xdp_runs += 1;
        }
    }
    Ok(Runs {
        cpu,
        tc_runs,
        xdp_runs,
        tc: stress.counts(Site::TcRun)?,
        xdp: stress.counts(Site::XdpRun)?,
    })
}

/// Keep moving the target entry until `end`, mostly back to STALE.
fn churn(
    lab: &Lab,
    ns: &str,
    dev: &str,
    end: Instant,
    seed: u64,
) -> Result<std::collections::BTreeMap<String, u64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut actions = std::collections::BTreeMap::<String, u64>::new();
    while Instant::now() < end {
        stop::check()?;
        let mac: [u8; 6] = [0x02, 0x10, rng.gen(), rng.gen(), rng.gen(), rng.gen()];
        let name = match rng.gen_range(0..10) {
            0..=5 => {
                lab.neigh_replace(ns, dev, &NeighSpec::new(TARGET, Some(mac), nud::STALE))?;
                "forced STALE, new MAC"
            }
            6 | 7 => {
                lab.neigh_replace(ns, dev, &NeighSpec::new(TARGET, Some(mac), nud::REACHABLE))?;
                "REACHABLE, new MAC"
            }
            _ => {
                lab.neigh_delete(ns, dev, TARGET)?;
                "deleted"
            }
        };
        *actions.entry(name.into()).or_default() += 1;
        stop::sleep(Duration::from_millis(rng.gen_range(1..10)))?;
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kick(tries: u32, state_after: Option<u16>) -> Kick {
        Kick {
            site: "tc test run".into(),
            tries,
            state_after: state_after.map(Nud),
        }
    }

    #[test]
    fn a_kick_passes_when_the_entry_left_stale() {
        assert_eq!(kick(1, Some(nud::DELAY)).problem(), None);
        // DELAY's time ran out before the read.
        assert_eq!(kick(3, Some(nud::PROBE)).problem(), None);
    }

    #[test]
    fn a_kick_that_never_happened_or_left_the_entry_fails() {
        let never = kick(0, None).problem().expect("a problem");
        assert!(never.contains("never found it STALE"), "{never}");
        let still = kick(1, Some(nud::STALE)).problem().expect("a problem");
        assert!(still.contains("STALE after the kick"), "{still}");
        let gone = kick(1, None).problem().expect("a problem");
        assert!(gone.contains("gone after the kick"), "{gone}");
        assert!(kick(1, Some(nud::REACHABLE)).problem().is_some());
    }

    #[test]
    fn the_report_names_each_kick() {
        let site = SiteReport {
            lookups: 0,
            success: 0,
            no_neigh: 0,
            stale: 0,
            other: 0,
        };
        let r = LockStressReport {
            seconds: 1,
            seed: 1,
            cpus: 2,
            actions: Default::default(),
            sent: 0,
            qdisc: site.clone(),
            tc_run: site.clone(),
            xdp_run: site,
            test_runs: 0,
            kicks: vec![kick(2, Some(nud::DELAY)), kick(0, None)],
            problems: Vec::new(),
        };
        let text = r.render();
        assert!(
            text.contains(
                "kick on purpose, tc test run: found STALE (forced 2 time(s)), then DELAY"
            ),
            "{text}"
        );
        assert!(text.contains("tc test run: never found it STALE"), "{text}");
    }
}
