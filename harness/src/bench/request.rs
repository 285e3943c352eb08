//! What `fibneigh bench` asks for, and the options it comes to (the full
//! run's defaults, or `quick`'s); and a report read back from its JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fibneigh_bpf::Hook;

use super::{forwarding, lookup, recovery, BenchOptions, BenchReport};
use crate::scenario::{Family, NeighTimers};

/// A part of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Lookup,
    Forwarding,
    Recovery,
}

/// The command line's settings; `None` and empty lists take the defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchRequest {
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
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub lookup_sample_ms: Option<u64>,
    /// Target length of one forwarding sample in ms [default: 300;
    /// --quick: 50].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
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
    #[arg(long = "timers", value_parser = timers_parser())]
    pub timers: Vec<NeighTimers>,
    /// Hooks for recovery (repeatable) [default: tc].
    #[arg(long = "recovery-hook")]
    pub recovery_hooks: Vec<Hook>,
    /// Address family for recovery.
    #[arg(long, default_value = "4")]
    pub family: Family,
}

/// `--timers`' values: short, kernel-defaults.
fn timers_parser() -> impl clap::builder::TypedValueParser<Value = NeighTimers> {
    let names = clap::builder::PossibleValuesParser::new(["short", "kernel-defaults"]);
    clap::builder::TypedValueParser::map(names, |s| match &*s {
        "short" => NeighTimers::Short,
        _ => NeighTimers::KernelDefaults,
    })
}

/// A request for no rounds or no repetitions.
#[derive(Debug, thiserror::Error)]
#[error("--rounds and --reps must be at least 1")]
pub struct NoRounds;

impl BenchRequest {
    /// The request, if it measures something each time.
    pub fn validate(&self) -> Result<(), NoRounds> {
        if self.rounds == Some(0) || self.reps == Some(0) {
            return Err(NoRounds);
        }
        Ok(())
    }

    /// The options to measure with.
    pub fn options(&self) -> BenchOptions {
        let q = self.quick;
        let want = |p: Part| self.parts.is_empty() || self.parts.contains(&p);
        let rounds = self.rounds.unwrap_or(if q { 2 } else { 7 });
        let hooks: Vec<_> = if self.hooks.is_empty() {
            Hook::ALL.to_vec()
        } else {
            self.hooks.clone()
        };
        let ms = Duration::from_millis;
        BenchOptions {
            lookup: want(Part::Lookup).then(|| lookup::Options {
                rounds,
                sample: ms(self.lookup_sample_ms.unwrap_or(if q { 5 } else { 20 })),
                hooks: hooks.clone(),
            }),
            forwarding: want(Part::Forwarding).then(|| forwarding::Options {
                rounds,
                sample: ms(self
                    .forwarding_sample_ms
                    .unwrap_or(if q { 50 } else { 300 })),
                hooks: hooks.clone(),
                flows: vec![forwarding::Flows::ONE, forwarding::Flows::MANY],
            }),
            recovery: want(Part::Recovery).then(|| recovery::Options {
                reps: self.reps.unwrap_or(if q { 1 } else { 3 }),
                timers: if self.timers.is_empty() {
                    if q {
                        vec![NeighTimers::Short]
                    } else {
                        vec![NeighTimers::Short, NeighTimers::KernelDefaults]
                    }
                } else {
                    self.timers.clone()
                },
                hooks: if self.recovery_hooks.is_empty() {
                    vec![Hook::Tc]
                } else {
                    self.recovery_hooks.clone()
                },
                family: self.family,
                window_short: ms(if q { 4000 } else { 3000 }),
                window_default: ms(15_000),
            }),
        }
    }
}

/// A report that could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("failed to read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a fibneigh bench report", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// This process's command line, each word quoted for a shell where it needs
/// it: what a report's `command` records.
pub fn command_line() -> String {
    let words = std::env::args().map(|a| shlex::try_quote(&a).map(|c| c.into_owned()).unwrap_or(a));
    words.collect::<Vec<_>>().join(" ")
}

/// The report `bench --json` wrote at `path`.
pub fn load_report(path: &Path) -> Result<BenchReport, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}
