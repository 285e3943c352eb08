//! `fibneigh`: build and boot patched kernels, probe the running kernel,
//! and run the project's scenarios.

mod cli_bench;
mod cli_churn;
mod cli_fuzz;
mod cli_scenarios;
mod cli_selftests;
mod cli_vm;
mod probe;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a failure of the tool itself (as opposed to a guest
/// command's own exit status, which `vm run` passes through).
pub const EXIT_INFRA: u8 = 125;

#[derive(Parser)]
#[command(
    name = "fibneigh",
    version,
    about = "Neighbour-state-aware bpf_fib_lookup: kernel pipeline and harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build patched kernels and boot them under virtme-ng.
    #[command(subcommand)]
    Vm(cli_vm::VmCommand),
    /// Report the running kernel's version and bpf_fib_lookup features.
    Probe(probe::ProbeArgs),
    /// Build the kernel's test_progs and run `-t fib_lookup` in the VM.
    Selftests(cli_selftests::SelftestsArgs),
    /// Run one scenario cell (scenario x policy x family x hook) in a
    /// fresh netns lab and print its result.
    Run(cli_scenarios::RunArgs),
    /// Run every scenario cell: table, JSON, SVG timelines, --check.
    Matrix(cli_scenarios::MatrixArgs),
    /// Benchmarks: ns per lookup by flag, packets per second by policy,
    /// recovery time by policy; one table, JSON, an SVG plot.
    Bench(cli_bench::BenchArgs),
    /// Seeded fuzzing of bpf_fib_lookup() (flags, families, addresses,
    /// fields, frames) and of the forwarder (random and truncated frames),
    /// each result checked against the helper's documented contract.
    Fuzz(cli_fuzz::FuzzArgs),
    /// Neighbour churn under traffic: replace, force STALE, delete, flush
    /// and overfill the nexthop's table while a flow is forwarded; then
    /// the flow must recover and the counters add up.
    Churn(cli_churn::ChurnArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Vm(cmd) => cli_vm::run(cmd),
        Command::Probe(args) => probe::run(args),
        Command::Selftests(args) => cli_selftests::run(args),
        Command::Run(args) => cli_scenarios::run(args),
        Command::Matrix(args) => cli_scenarios::matrix(args),
        Command::Bench(args) => cli_bench::run(args),
        Command::Fuzz(args) => cli_fuzz::run(args),
        Command::Churn(args) => cli_churn::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("fibneigh: error: {err:#}");
            ExitCode::from(EXIT_INFRA)
        }
    }
}
