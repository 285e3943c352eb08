//! `fibneigh bench`: lookup cost, forwarding rate and recovery, one table,
//! JSON and an SVG plot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fibneigh::bench::request::{self, BenchRequest, Part};
use fibneigh::bench::{self, render};
use fibneigh::scenario::{Family, NeighTimers};
use fibneigh::stop;
use fibneigh_bpf::Hook;

use super::{clean_lab, exit, write_file, write_json, Stopped};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Timers {
    Short,
    KernelDefaults,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Only these parts (repeatable) [default: all three].
    #[arg(long = "only", value_enum)]
    pub parts: Vec<Part>,
    /// Few rounds, short samples, one recovery repetition with short
    /// timers: checks that everything runs, not a result to quote.
    #[arg(long)]
    pub quick: bool,
    /// Interleaved rounds of the lookup and forwarding measurements
    /// [default: 7; --quick: 2].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Target length of one lookup sample in ms [default: 20; --quick: 5].
    #[arg(long)]
    pub lookup_sample_ms: Option<u64>,
    /// Target length of one forwarding sample in ms [default: 300;
    /// --quick: 50].
    #[arg(long)]
    pub forwarding_sample_ms: Option<u64>,
    /// Hooks for the lookup and forwarding measurements (repeatable)
    /// [default: tc and xdp].
    #[arg(long = "hook")]
    pub hooks: Vec<Hook>,
    /// Repetitions of each recovery cell [default: 3; --quick: 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Neighbour timers for recovery (repeatable) [default: short and
    /// kernel-defaults; --quick: short].
    #[arg(long = "timers", value_enum)]
    pub timers: Vec<Timers>,
    /// Hooks for recovery (repeatable) [default: tc].
    #[arg(long = "recovery-hook")]
    pub recovery_hooks: Vec<Hook>,
    /// Address family for recovery.
    #[arg(long, default_value = "4")]
    pub family: Family,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the plot (ns per lookup, pps per policy) as SVG here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Exit non-zero if a goal that could be measured was not met.
    #[arg(long)]
    pub check: bool,
    /// Exit non-zero if the kernel rejected a cell's flags (on a patched
    /// kernel every cell runs).
    #[arg(long)]
    pub require_supported: bool,
    /// Measure nothing: read a report `--json` wrote earlier and print its
    /// table (and write --svg) again.
    #[arg(long, value_name = "JSON")]
    pub from_json: Option<PathBuf>,
}

impl BenchArgs {
    fn request(&self) -> BenchRequest {
        BenchRequest {
            parts: self.parts.clone(),
            quick: self.quick,
            rounds: self.rounds,
            lookup_sample_ms: self.lookup_sample_ms,
            forwarding_sample_ms: self.forwarding_sample_ms,
            hooks: self.hooks.clone(),
            reps: self.reps,
            timers: self
                .timers
                .iter()
                .map(|t| match t {
                    Timers::Short => NeighTimers::Short,
                    Timers::KernelDefaults => NeighTimers::KernelDefaults,
                })
                .collect(),
            recovery_hooks: self.recovery_hooks.clone(),
            family: self.family,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(p) = &args.from_json {
        let report = request::load_report(p)?;
        print!("{}", render::render_table(&report));
        if let Some(svg) = &args.svg {
            write_file(svg, &render::render_svg(&report))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.rounds == Some(0) || args.reps == Some(0) {
        anyhow::bail!("--rounds and --reps must be at least 1");
    }
    clean_lab()?;
    let started = Instant::now();
    let result = bench::run(
        &args.request().options(),
        &request::command_line(),
        |part| {
            eprintln!(
                "fibneigh bench: {part} ({:.0} s in)",
                started.elapsed().as_secs_f64()
            )
        },
    );
    let report = match result {
        Ok(r) => r,
        // A signal also ends a running test run with EINTR.
        Err(_) if stop::requested() => return Err(Stopped::Lab.into()),
        Err(e) => return Err(e).context("benchmark failed"),
    };
    print!("{}", render::render_table(&report));
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    write_json(args.json.as_deref(), &report)?;
    if let Some(p) = &args.svg {
        write_file(p, &render::render_svg(&report))?;
    }
    let unmet = report.unmet_goals();
    if args.check && !unmet.is_empty() {
        eprintln!("fibneigh bench --check: not met: {}", unmet.join("; "));
        return Ok(ExitCode::FAILURE);
    }
    let unsupported = report.unsupported_cells();
    if args.require_supported && !unsupported.is_empty() {
        let cells = unsupported.join(", ");
        eprintln!("fibneigh bench --require-supported: the kernel left cells unsupported: {cells}");
    } else if args.require_supported {
        println!("{} rows, no unsupported cell", report.rows.len());
    }
    Ok(exit(!args.require_supported || unsupported.is_empty()))
}
