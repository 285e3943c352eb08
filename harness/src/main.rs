//! `fibneigh`: build and boot patched kernels, probe the running kernel,
//! and run the project's scenarios.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{Stopped, EXIT_INFRA};
use fibneigh::stop::EXIT_INTERRUPTED;

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
    Vm(VmCommand),
    /// Report the running kernel's version and bpf_fib_lookup features.
    Probe(cli::probe::ProbeArgs),
    /// Build the kernel's test_progs and run `-t fib_lookup` in the VM.
    Selftests(cli::selftests::SelftestsArgs),
    /// Run one scenario cell (scenario x policy x family x hook) in a
    /// fresh netns lab and print its result.
    Cell(cli::scenarios::CellArgs),
    /// Run every scenario cell: table, JSON, SVG timelines, --check.
    Matrix(cli::scenarios::MatrixArgs),
    /// Your forwarder on trial: the stale-neighbour scenarios against a
    /// BPF object or a command-loaded forwarder (e.g. --xdp-forward),
    /// judged from the wire.
    Trial(cli::trial::TrialArgs),
    /// Benchmarks: ns per lookup by flag, packets per second by policy,
    /// recovery time by policy; one table, JSON, an SVG plot.
    Bench(cli::bench::BenchArgs),
    /// Seeded fuzzing of bpf_fib_lookup() (flags, families, addresses,
    /// fields, frames) and of the forwarder (random and truncated frames),
    /// each result checked against the helper's documented contract.
    Fuzz(cli::fuzz::FuzzArgs),
    /// Neighbour churn under traffic: replace, force STALE, delete, flush
    /// and overfill the nexthop's table while a flow is forwarded; then
    /// the flow must recover and the counters add up.
    Churn(cli::churn::ChurnArgs),
    /// At scale: N nexthops (each its own entry and destination), a flow
    /// spread over all of them, a fraction moved at once with no
    /// announcement; recovery, dead-MAC frames, probes, CPU time and the
    /// neighbour table's counters per policy, against N.
    Scale(cli::scale::ScaleArgs),
    /// REFRESH under the kernel's locks (for the debug kernel): a cls_bpf
    /// filter under an htb qdisc and test runs on every CPU it may run on
    /// look up one entry that is kept forced STALE
    LockStress(cli::lock_stress::LockStressArgs),
    /// Test runs that add an XDP program to the kernel's XDP dispatcher
    /// and remove it, from every CPU at once: a check of the emulator a
    /// guest runs under (`scripts/tcg-threads.sh`), not of the series.
    DispatcherStress(cli::dispatcher_stress::DispatcherStressArgs),
    /// Write the public header's example objects (tc and XDP, built from
    /// bpf/include/fib_neigh.h) for loading with tc or ip link.
    Examples(cli::examples::ExamplesArgs),
    /// Remove the lab namespaces of runs that are gone (a killed run's
    /// leftovers; every lab command also does this when it starts).
    Clean,
    /// The workload of `vm icount`, run inside its guest.
    #[command(hide = true)]
    IcountGuest(cli::icount::GuestArgs),
}

/// `fibneigh vm`'s subcommands: the kernel pipeline (`cli/vm.rs`) and the
/// instruction counts (`cli/icount.rs`) and the kernel cache (`cli/cache.rs`).
#[derive(Subcommand)]
enum VmCommand {
    /// Fetch the base source, apply kernel-patches/series, configure and
    /// build bzImage (cached by content). Prints the kernel's path.
    Build(cli::vm::BuildCmd),
    /// Boot a kernel under virtme-ng and run CMD inside; exits with CMD's
    /// status.
    Run(cli::vm::RunArgs),
    /// Measure clean build, one-file rebuild and boot-to-command times.
    Timing(cli::vm::TimingArgs),
    /// Make the kernel tree hold the series (applied and configured, not
    /// built) and print its path; with --print-path, only print it.
    Tree(cli::vm::TreeCmd),
    /// Print a base's series: its patch files in order, its directory,
    /// its posting subject prefix or its branch; or check an author's
    /// identity (for scripts/series.sh).
    Series(fibneigh::pipeline::series::SeriesQuery),
    /// Instructions per bpf_fib_lookup() call by flag, counted by a QEMU
    /// TCG plugin in a 1-vCPU guest: deterministic cost figures.
    Icount(cli::icount::IcountArgs),
    /// The kernel cache: list what it holds, or prune the kernels used
    /// least recently (each build also keeps it within
    /// --kernel-cache-max).
    #[command(subcommand)]
    Cache(cli::cache::CacheCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) =
        fibneigh::present::json::reserve_stdout(&std::env::args_os().collect::<Vec<_>>())
    {
        eprintln!("fibneigh: error: {err:#}");
        return ExitCode::from(EXIT_INFRA);
    }
    let result = match cli.command {
        Command::Vm(VmCommand::Build(args)) => cli::vm::build_cmd(args),
        Command::Vm(VmCommand::Run(args)) => cli::vm::run_in_guest(args),
        Command::Vm(VmCommand::Timing(args)) => cli::vm::timing(args),
        Command::Vm(VmCommand::Tree(args)) => cli::vm::tree(args),
        Command::Vm(VmCommand::Series(args)) => cli::vm::series(args),
        Command::Vm(VmCommand::Icount(args)) => cli::icount::run(args),
        Command::Vm(VmCommand::Cache(cmd)) => cli::cache::run(cmd),
        Command::Probe(args) => cli::probe::run(args),
        Command::Selftests(args) => cli::selftests::run(args),
        Command::Cell(args) => cli::scenarios::cell(args),
        Command::Matrix(args) => cli::scenarios::matrix(args),
        Command::Trial(args) => cli::trial::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Fuzz(args) => cli::fuzz::run(args),
        Command::Churn(args) => cli::churn::run(args),
        Command::Scale(args) => cli::scale::run(args),
        Command::LockStress(args) => cli::lock_stress::run(args),
        Command::DispatcherStress(args) => cli::dispatcher_stress::run(args),
        Command::Examples(args) => cli::examples::run(args),
        Command::Clean => cli::clean::run(),
        Command::IcountGuest(args) => cli::icount::guest(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<Stopped>() {
            Some(Stopped::Quiet) => ExitCode::from(EXIT_INTERRUPTED),
            Some(stopped) => {
                eprintln!("fibneigh: {stopped}");
                ExitCode::from(EXIT_INTERRUPTED)
            }
            None => {
                eprintln!("fibneigh: error: {err:#}");
                ExitCode::from(EXIT_INFRA)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count or a time of zero is refused by clap, naming the option,
    /// before anything runs.
    #[test]
    fn zero_counts_and_times_are_refused_by_name() {
        let cases: [&[&str]; 8] = [
            &["vm", "run", "--cpus", "0", "--", "true"],
            &["vm", "run", "--timeout", "0", "--", "true"],
            &["vm", "build", "--jobs", "0"],
            &["vm", "timing", "--boots", "0"],
            &["vm", "icount", "--timeout", "0"],
            &["selftests", "--timeout", "0"],
            &["bench", "--lookup-sample-ms", "0"],
            &["bench", "--forwarding-sample-ms", "0"],
        ];
        for args in cases {
            let flag = args[args
                .iter()
                .position(|a| a.starts_with("--"))
                .expect("a flag")];
            let argv = std::iter::once("fibneigh").chain(args.iter().copied());
            match Cli::try_parse_from(argv) {
                Ok(_) => panic!("{args:?} was accepted"),
                Err(e) => assert!(e.to_string().contains(flag), "{args:?}: {e}"),
            }
        }
        // One is fine.
        assert!(
            Cli::try_parse_from(["fibneigh", "vm", "run", "--cpus", "1", "--", "true"]).is_ok()
        );
    }

    /// The cache's sizes are checked by clap, naming the option: a limit
    /// that is neither a size nor `unlimited` is refused.
    #[test]
    fn cache_sizes_are_refused_by_name() {
        let cases: [(&[&str], &str); 4] = [
            (
                &["vm", "cache", "list", "--kernel-cache-max", "x"],
                "--kernel-cache-max",
            ),
            (&["vm", "cache", "prune", "--max-size", "big"], "--max-size"),
            (
                &["vm", "build", "--kernel-cache-max", "lots"],
                "--kernel-cache-max",
            ),
            (&["vm", "build", "--min-free", "some"], "--min-free"),
        ];
        for (args, flag) in cases {
            let argv = std::iter::once("fibneigh").chain(args.iter().copied());
            match Cli::try_parse_from(argv) {
                Ok(_) => panic!("{args:?} was accepted"),
                Err(e) => assert!(e.to_string().contains(flag), "{args:?}: {e}"),
            }
        }
        for args in [
            &["vm", "cache", "prune", "--max-size", "8GiB", "--dry-run"][..],
            &[
                "vm",
                "build",
                "--kernel-cache-max",
                "unlimited",
                "--min-free",
                "0",
            ],
            &["vm", "cache", "list"],
            &["vm", "cache", "prune", "--max-size", "unlimited"],
            &["vm", "cache", "prune"],
        ] {
            let argv = std::iter::once("fibneigh").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_ok(), "{args:?}");
        }
    }

    /// `vm icount --pristine-code` changes how the pristine base is built,
    /// so it needs one: alone it is refused by name.
    #[test]
    fn icount_pristine_code_needs_a_pristine_base() {
        let err = match Cli::try_parse_from(["fibneigh", "vm", "icount", "--pristine-code"]) {
            Ok(_) => panic!("--pristine-code alone was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("--pristine-code"), "{err}");
        for with in ["--pristine", "--with-pristine"] {
            let argv = ["fibneigh", "vm", "icount", "--pristine-code", with];
            assert!(Cli::try_parse_from(argv).is_ok(), "{argv:?}");
        }
    }

    /// `selftests --from-output` judges only a run its script left: an
    /// empty directory is an error naming the missing file and the script
    /// to run, before any kernel is looked up; and it goes with neither
    /// the boot of --kernel nor the writing of --guest-script.
    #[test]
    fn selftests_from_output_needs_the_scripts_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("out");
        std::fs::create_dir(&dir).expect("mkdir");
        let argv = ["fibneigh", "selftests", "--cache-dir"]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain([d.path().join("cache").into_os_string()])
            .chain([
                std::ffi::OsString::from("--from-output"),
                dir.clone().into_os_string(),
            ]);
        let Command::Selftests(args) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not the selftests command");
        };
        let err = format!("{:#}", cli::selftests::run(args).expect_err("refused"));
        assert!(
            err.contains(&dir.join("test_progs.rc").display().to_string())
                && err.contains(&dir.join("run.sh").display().to_string()),
            "{err}"
        );
        assert!(
            !d.path().join("cache").join("kernels").exists(),
            "nothing built"
        );
        for other in [["--kernel", "/k"], ["--guest-script", "/g"]] {
            let argv = [
                "fibneigh",
                "selftests",
                "--from-output",
                "/o",
                other[0],
                other[1],
            ];
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    /// `matrix --same-header-objects-as` reads its report before anything
    /// runs: a missing or malformed one is an error naming the file, with
    /// no lab built and no cell run (read after the matrix, it would come
    /// only after every cell, and unprivileged the lab's probe would fail
    /// first).
    #[test]
    fn matrix_refuses_a_bad_earlier_report_before_it_runs() {
        let d = tempfile::tempdir().expect("tempdir");
        let missing = d.path().join("gone.json");
        let malformed = d.path().join("bad.json");
        std::fs::write(&malformed, "{").expect("write");
        for p in [&missing, &malformed] {
            let argv = [
                "fibneigh",
                "matrix",
                "--scenario",
                "ip-reassign",
                "--expect-header-path",
                "state",
                "--same-header-objects-as",
            ]
            .map(std::ffi::OsString::from)
            .into_iter()
            .chain(std::iter::once(p.as_os_str().to_owned()));
            let Command::Matrix(args) = Cli::try_parse_from(argv).expect("parses").command else {
                panic!("not the matrix command");
            };
            let err = cli::scenarios::matrix(args).expect_err("refused");
            assert!(
                format!("{err:#}").contains(&p.display().to_string()),
                "{err:#}"
            );
        }
    }
}
