//! `fibneigh bench`: lookup cost, forwarding rate and recovery, one table,
//! JSON and an SVG plot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::bench::request::{self, BenchRequest};
use fibneigh::bench::{self, render};
use fibneigh::stop;

use super::{clean_lab, exit, write_file, JsonOut, Stopped};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub request: BenchRequest,
    #[command(flatten)]
    pub out: JsonOut,
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

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    if let Some(p) = &args.from_json {
        let report = request::load_report(p)?;
        print!("{}", render::render_table(&report));
        if let Some(svg) = &args.svg {
            write_file(svg, &render::render_svg(&report))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    args.request.validate()?;
    clean_lab()?;
    let started = Instant::now();
    let result = bench::run(&args.request.options(), &request::command_line(), |part| {
        eprintln!(
            "fibneigh bench: {part} ({:.0} s in)",
            started.elapsed().as_secs_f64()
        )
    });
    let report = match result {
        Ok(r) => r,
        // A signal also ends a running test run with EINTR.
        Err(_) if stop::requested() => return Err(Stopped::Lab.into()),
        Err(e) => return Err(e).context("benchmark failed"),
    };
    print!("{}", render::render_table(&report));
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    args.out.write(&report)?;
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
