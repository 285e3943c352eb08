//! Lookup cost: ns per `bpf_fib_lookup()` for flags `0`, `SKIP_NEIGH`,
//! `NEIGH_STATE` and `NEIGH_REFRESH`, on a REACHABLE and a STALE entry,
//! IPv4 and IPv6, from tc and XDP.
//!
//! Each sample is one `BPF_PROG_TEST_RUN` of many runs of a program that
//! calls the helper 64 times per run; the figure is the kernel's own
//! average per-run duration over 64, so neither the syscall nor the test
//! run's setup is in it. A "floor" column runs the same loop without the
//! helper call. Samples of a row are taken in rounds, every variant once
//! per round in rotating order, and each ratio compares a variant with
//! flags `0` of the same round. A second section, "lookup helper-only",
//! subtracts the floor of the same round from each variant: the helper's
//! own cost, whose ratios show a flag's cost without the loop diluting it.

use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use fibneigh_bpf::bench::{Bench, LookupTiming, LOOKUPS_PER_RUN};
use fibneigh_bpf::Hook;
use fibneigh_bpf::{flags, nud, ret, EnteredNetns, FibParams};

use super::{figure, rotated, Error, Figure, Result, Row, Unit};
use crate::lab::{addr, neigh, Lab, Names, NeighSpec, Topology};
use crate::scenario::Support;
use crate::stop;

/// The columns: the loop without the helper, then the four flag sets.
pub const COLUMNS: [(&str, Option<u32>); 5] = [
    (FLOOR, None),
    ("0", Some(0)),
    ("SKIP_NEIGH", Some(flags::SKIP_NEIGH)),
    ("NEIGH_STATE", Some(flags::NEIGH_STATE)),
    ("NEIGH_REFRESH", Some(flags::NEIGH_REFRESH)),
];
/// Ratios are taken against this column.
pub const REFERENCE: &str = "0";
/// The section of the floor-subtracted rows.
pub const HELPER_ONLY: &str = "lookup helper-only";
/// The floor column.
pub const FLOOR: &str = "floor";

/// One row: which entry is looked up, from where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub v6: bool,
    /// `nud::REACHABLE` or `nud::STALE`.
    pub state: u16,
    pub hook: Hook,
}

impl Case {
    pub fn label(&self) -> String {
        format!(
            "{} {} {}",
            if self.v6 { "v6" } else { "v4" },
            nud::name(self.state),
            self.hook.name()
        )
    }

    /// Every row for `hooks`.
    pub fn all(hooks: &[Hook]) -> Vec<Case> {
        let mut v = Vec::new();
        for &hook in hooks {
            for v6 in [false, true] {
                for state in [nud::REACHABLE, nud::STALE] {
                    v.push(Case { v6, state, hook });
                }
            }
        }
        v
    }
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Target duration of one sample (sets the repeat count).
    pub sample: Duration,
    pub hooks: Vec<Hook>,
}

/// A lab with REACHABLE and STALE entries on the DUT and the benchmark
/// programs loaded; samples run from the DUT's namespace.
pub struct LookupLab {
    lab: Lab,
    names: Names,
    /// The DUT's namespace, which every sample enters.
    dut_ns: std::fs::File,
    bench: Bench,
    ingress: u32,
    macs: [[u8; 6]; 2],
    support: Support,
}

impl LookupLab {
    /// Build the standard lab; the DUT's host-side entries stay
    /// REACHABLE for an hour unless changed.
    pub fn new(support: Support) -> Result<Self> {
        let names = Names::for_this_process();
        let lab = Lab::create(&Topology::standard(&names))?;
        for v6 in [false, true] {
            lab.set_neigh_timers(&names.dut, &names.dut_host_if, v6, &neigh::REACHABLE_HOUR)?;
        }
        let ingress = lab.ifindex(&names.dut, &names.dut_client_if)?;
        let macs = [
            lab.mac(&names.host_a, &names.host_a_if)?,
            lab.mac(&names.host_b, &names.host_b_if)?,
        ];
        Ok(LookupLab {
            dut_ns: lab.open_ns(&names.dut)?,
            lab,
            names,
            bench: Bench::load()?,
            ingress,
            macs,
            support,
        })
    }

    /// The entry a case looks up: host A's address REACHABLE, host B's
    /// STALE (each with its host's MAC).
    fn target(&self, case: &Case) -> (IpAddr, IpAddr, [u8; 6]) {
        use addr::*;
        let reachable = case.state == nud::REACHABLE;
        match (case.v6, reachable) {
            (false, true) => (CLIENT4.into(), HOST_A4.into(), self.macs[0]),
            (false, false) => (CLIENT4.into(), HOST_B4.into(), self.macs[1]),
            (true, true) => (CLIENT6.into(), HOST_A6.into(), self.macs[0]),
            (true, false) => (CLIENT6.into(), HOST_B6.into(), self.macs[1]),
        }
    }

    /// Put the case's entry (back) into its state: REFRESH moves a STALE
    /// entry to DELAY, so every sample starts from the stated state.
    pub fn prepare(&self, case: &Case) -> Result<()> {
        let (_, dst, mac) = self.target(case);
        self.lab.neigh_replace(
            &self.names.dut,
            &self.names.dut_host_if,
            &NeighSpec::new(dst, Some(mac), case.state),
        )?;
        Ok(())
    }

    /// [`Self::prepare`] with the entry deleted and created again: a new
    /// entry goes to the head of its hash bucket's chain, so a lookup walks
    /// past no other entry, whichever entries the boot's random hash seed
    /// puts in the same bucket (`fibneigh vm icount` counts instructions,
    /// which must not depend on that).
    pub fn recreate(&self, case: &Case) -> Result<()> {
        let (_, dst, _) = self.target(case);
        self.lab
            .neigh_delete(&self.names.dut, &self.names.dut_host_if, dst)?;
        self.prepare(case)
    }

    /// Whether this kernel accepts `flags`.
    pub fn supports(&self, flags: u32) -> Vec<&'static str> {
        self.support.missing(flags)
    }

    /// One sample: `runs` test runs of the loop (with `flags`, or the
    /// floor for `None`). Fails if any lookup did not succeed.
    pub fn sample(&mut self, case: &Case, flags: Option<u32>, runs: u32) -> Result<LookupTiming> {
        let (src, dst, _) = self.target(case);
        let params = FibParams::forward(self.ingress, src, dst, 64);
        let _inside = EnteredNetns::enter(self.dut_ns.as_fd())?;
        let t = self.bench.time_lookups(
            case.hook,
            &params,
            flags.unwrap_or(0),
            ret::SUCCESS,
            runs,
            flags.is_none(),
        )?;
        if t.mismatches > 0 {
            return Err(Error::Check(format!(
                "{}: {} of {} lookups with flags {:#x} returned {} instead of SUCCESS",
                case.label(),
                t.mismatches,
                t.lookups,
                flags.unwrap_or(0),
                ret::name(t.bad_rc.unwrap_or(0)),
            )));
        }
        Ok(t)
    }

    /// Check what a single lookup reports before timing it: NEIGH_STATE
    /// must see the entry's state and the cached MAC.
    pub fn verify(&mut self, case: &Case, flags: u32) -> Result<()> {
        self.prepare(case)?;
        let t = self.sample(case, Some(flags), 1)?;
        let (_, _, mac) = self.target(case);
        if flags & flags::SKIP_NEIGH == 0 && t.last.dmac() != mac {
            return Err(Error::Check(format!(
                "{}: the lookup returned dmac {} instead of the entry's {}",
                case.label(),
                fibneigh_bpf::params::mac_string(t.last.dmac()),
                fibneigh_bpf::params::mac_string(mac)
            )));
        }
        if flags & flags::NEIGH_STATE != 0 && t.last.nud_state() != case.state {
            return Err(Error::Check(format!(
                "{}: NEIGH_STATE reported {} for an entry in {}",
                case.label(),
                nud::name(t.last.nud_state()),
                nud::name(case.state)
            )));
        }
        Ok(())
    }
}

/// Repeat count so one sample of the floor-plus-lookup loop takes about
/// `target`, from a short flags-0 sample.
pub fn calibrate(lab: &mut LookupLab, case: &Case, target: Duration) -> Result<u32> {
    lab.prepare(case)?;
    let probe_runs = 200;
    let t = lab.sample(case, Some(0), probe_runs)?;
    let per_run_ns = (t.ns_per_lookup * f64::from(LOOKUPS_PER_RUN)).max(1.0);
    let runs = target.as_secs_f64() * 1e9 / per_run_ns;
    Ok(runs.clamp(20.0, 5_000_000.0) as u32)
}

/// Measure every case; returns the rows and how they were measured.
pub fn run(opts: &Options, support: Support) -> Result<(Vec<Row>, Vec<String>)> {
    let mut lab = LookupLab::new(support)?;
    let cases = Case::all(&opts.hooks);
    let Some(first) = cases.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    // Which columns this kernel can measure, each checked once per case.
    let mut measurable: Vec<Vec<(&str, Option<u32>)>> = Vec::new();
    let mut notes: Vec<Vec<Figure>> = Vec::new();
    for case in &cases {
        let mut cols = Vec::new();
        let mut missing = Vec::new();
        for (name, f) in COLUMNS {
            let unsupported = f.map(|bits| lab.supports(bits)).unwrap_or_default();
            if !unsupported.is_empty() {
                missing.push(Figure::unsupported(name, &unsupported));
                continue;
            }
            if let Some(bits) = f {
                lab.verify(case, bits)?;
            }
            cols.push((name, f));
        }
        measurable.push(cols);
        notes.push(missing);
    }
    let runs = calibrate(&mut lab, first, opts.sample)?;
    // samples[case][column] = ns per lookup, one per round
    let mut samples: Vec<Vec<Vec<f64>>> = measurable
        .iter()
        .map(|cols| vec![Vec::new(); cols.len()])
        .collect();
    for round in 0..opts.rounds.max(1) {
        for (ci, case) in cases.iter().enumerate() {
            let order: Vec<usize> = rotated(&(0..measurable[ci].len()).collect::<Vec<_>>(), round);
            for col in order {
                stop::check()?;
                let (_, f) = measurable[ci][col];
                lab.prepare(case)?;
                let t = lab.sample(case, f, runs)?;
                samples[ci][col].push(t.ns_per_lookup);
            }
        }
    }
    let mut rows = Vec::new();
    let mut helper_rows = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        let cols = &measurable[ci];
        if let Some(row) = helper_only_row(case, cols, &samples[ci]) {
            helper_rows.push(row);
        }
        let reference = cols
            .iter()
            .position(|(n, _)| *n == REFERENCE)
            .map(|i| samples[ci][i].clone())
            .unwrap_or_default();
        let mut figures: Vec<Figure> = cols
            .iter()
            .enumerate()
            .map(|(i, (name, _))| figure(name, &samples[ci][i], &reference))
            .collect();
        if case.state == nud::STALE {
            if let Some(f) = figures.iter_mut().find(|f| f.column == "NEIGH_REFRESH") {
                f.note = Some(
                    "the first lookup of a sample moves the entry to DELAY; the rest see DELAY"
                        .into(),
                );
            }
        }
        figures.extend(notes[ci].iter().cloned());
        figures.sort_by_key(|f| COLUMNS.iter().position(|(n, _)| *n == f.column));
        rows.push(Row {
            section: "lookup".into(),
            label: case.label(),
            unit: Unit::NsPerLookup,
            reference: REFERENCE.into(),
            figures,
        });
    }
    rows.extend(helper_rows);
    let method = vec![format!(
        "lookup: BPF_PROG_TEST_RUN of a program calling bpf_fib_lookup() {LOOKUPS_PER_RUN} times per run, \
         {runs} runs per sample ({} lookups), kernel-reported mean duration per run / {LOOKUPS_PER_RUN}; \
         {} rounds, variants interleaved in rotating order; 'floor' is the same loop without the helper; \
         '{HELPER_ONLY}' = ns/lookup - floor of the same round, ratios to flags 0's helper-only of that round",
        u64::from(runs) * u64::from(LOOKUPS_PER_RUN),
        opts.rounds.max(1)
    )];
    Ok((rows, method))
}

/// The floor-subtracted row of one case: per round, each flag column's
/// ns/lookup minus that round's floor, with ratios to flags 0's
/// helper-only figure of the same round. `None` without a floor or a
/// reference column.
pub fn helper_only_row(
    case: &Case,
    cols: &[(&str, Option<u32>)],
    samples: &[Vec<f64>],
) -> Option<Row> {
    let floor = &samples[cols.iter().position(|(n, _)| *n == FLOOR)?];
    let minus_floor = |v: &[f64]| -> Vec<f64> { v.iter().zip(floor).map(|(a, f)| a - f).collect() };
    let reference = minus_floor(&samples[cols.iter().position(|(n, _)| *n == REFERENCE)?]);
    let figures = cols
        .iter()
        .zip(samples)
        .filter(|((n, _), _)| *n != FLOOR)
        .map(|((n, _), v)| figure(n, &minus_floor(v), &reference))
        .collect();
    Some(Row {
        section: HELPER_ONLY.into(),
        label: case.label(),
        unit: Unit::NsPerLookup,
        reference: REFERENCE.into(),
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_only_subtracts_the_floor_of_the_same_round() {
        let case = Case {
            v6: false,
            state: nud::REACHABLE,
            hook: Hook::Tc,
        };
        let cols = [(FLOOR, None), ("0", Some(0)), ("NEIGH_STATE", Some(1 << 8))];
        // Two rounds: the floor moves with the machine, the helper does not.
        let samples = vec![vec![30.0, 40.0], vec![70.0, 80.0], vec![74.0, 84.0]];
        let row = helper_only_row(&case, &cols, &samples).unwrap();
        assert_eq!(row.section, HELPER_ONLY);
        assert_eq!(row.figures.len(), 2, "no floor column");
        let zero = row.figure("0").unwrap();
        assert_eq!(zero.value.unwrap().median, 40.0);
        let state = row.figure("NEIGH_STATE").unwrap();
        assert_eq!(state.value.unwrap().median, 44.0);
        assert!((state.ratio.unwrap().median - 1.1).abs() < 1e-12);
        // Without a floor there is no helper-only row.
        assert!(helper_only_row(&case, &cols[1..], &samples[1..]).is_none());
    }
}
