//! `fibneigh vm run`'s guest: the runner found before the boot, User-Mode
//! Linux's rules (no accelerator, one CPU), the boot, and what its manifest
//! says.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use fibneigh_vm::{Accel, Arch, Guest, RunRequest, TcgThreads, VirtmeNg};

use super::render::describe_build;
use super::{guest, run_guest, AccelChoice, Error, KernelChoice, Result};
use crate::bench::platform::KERNEL_BUILD_ENV;
use crate::stop;

/// The guest to boot and the command to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub kernel: PathBuf,
    /// User-Mode Linux rather than x86-64 under virtme-ng.
    pub um: bool,
    pub accel: AccelChoice,
    pub cache: PathBuf,
    /// Shared read-write besides the repository.
    pub rwdirs: Vec<PathBuf>,
    pub memory: String,
    pub cpus: u32,
    pub tcg_threads: TcgThreads,
    pub command: Vec<String>,
    pub timeout: Duration,
    pub keep_console: bool,
    /// Which build the kernel is, when `vm build` made it: the guest's
    /// command sees it as `FIBNEIGH_KERNEL_BUILD` ([`guest_command`]).
    pub build: Option<String>,
}

/// The guest `vm run` asks for, besides its kernel build and command.
#[derive(Debug, Clone, clap::Args)]
pub struct GuestChoice {
    /// bzImage to boot (default: the kernel `vm build` makes, built first
    /// if it is not cached).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Seconds before the guest is killed.
    #[arg(long, default_value_t = RunRequest::default().timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Guest memory (QEMU syntax).
    #[arg(long, default_value_t = RunRequest::default().memory)]
    pub memory: String,
    #[arg(long, default_value_t = RunRequest::default().cpus,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub cpus: u32,
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Under TCG with more than one vCPU: run them all in one host thread
    /// (single), or one thread each (multi: faster when the guest keeps
    /// both busy, but QEMU 7.2 can then run XDP dispatcher code another
    /// vCPU has rewritten, and the guest dies with `Oops: int3` in
    /// `bpf_dispatcher_xdp_func`; README, "The VM pipeline").
    #[arg(long, value_enum, default_value_t = TcgThreads::default())]
    pub tcg_threads: TcgThreads,
    /// Extra host directories shared read-write (the repository always is).
    #[arg(long)]
    pub rwdir: Vec<PathBuf>,
    /// Keep the console log even when the command succeeds.
    #[arg(long)]
    pub keep_console: bool,
}

impl GuestChoice {
    /// The run of `command`: on `self.kernel`, else on the kernel `build`
    /// asks for (built first if it is not cached).
    pub fn spec(&self, build: &KernelChoice, command: &[String]) -> Result<RunSpec> {
        let (kernel, described) = match &self.kernel {
            Some(k) => (k.clone(), None),
            None => {
                let image = super::build(&build.request()?)?;
                (image.bzimage, Some(describe_build(&image.key)))
            }
        };
        Ok(RunSpec {
            kernel,
            build: described,
            um: build.arch == Arch::Um,
            accel: self.accel,
            cache: build.cache_dir.clone(),
            rwdirs: self.rwdir.clone(),
            memory: self.memory.clone(),
            cpus: self.cpus,
            tcg_threads: self.tcg_threads,
            command: command.to_vec(),
            timeout: Duration::from_secs(self.timeout),
            keep_console: self.keep_console,
        })
    }
}

/// The command as the guest runs it: with `build` known, through `env` so
/// that it sees `FIBNEIGH_KERNEL_BUILD`; otherwise as given.
pub fn guest_command(command: &[String], build: Option<&str>) -> Vec<String> {
    match build {
        Some(b) => ["env".to_string(), format!("{}={b}", KERNEL_BUILD_ENV)]
            .into_iter()
            .chain(command.iter().cloned())
            .collect(),
        None => command.to_vec(),
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Ran {
    pub guest: Guest,
    /// The accelerator the command ran under.
    pub accel: Accel,
    /// The virtme-ng that booted it (none for User-Mode Linux).
    pub runner: Option<VirtmeNg>,
    pub status: ExitStatus,
    /// [`RunSpec::build`].
    pub build: Option<String>,
}

/// Boot `spec`'s kernel and run its command. A guest stopped by
/// SIGINT/SIGTERM is [`Error::Stopped`].
pub fn run(spec: &RunSpec) -> Result<Ran> {
    if !spec.kernel.is_file() {
        return Err(Error::Vm(fibneigh_vm::Error::NoKernel(spec.kernel.clone())));
    }
    let um = spec.um;
    // UML runs natively: no accelerator to probe, and one CPU.
    let accel = if um {
        Accel::Tcg
    } else {
        spec.accel.resolve(&spec.cache)
    };
    // The runner is checked before the boot so that a missing one is named
    // up front, and the manifest says which one ran.
    let runner = if um {
        None
    } else {
        let v = VirtmeNg::locate().map_err(Error::Runner)?;
        eprintln!("runner: {}", v.describe());
        Some(v)
    };
    let mut guest = guest(spec.kernel.clone(), accel, &spec.cache, &spec.rwdirs);
    guest.memory = spec.memory.clone();
    if um {
        guest.arch = Arch::Um;
        if spec.cpus != RunRequest::default().cpus && spec.cpus != 1 {
            eprintln!(
                "fibneigh: --cpus {} ignored: User-Mode Linux runs one CPU",
                spec.cpus
            );
        }
        guest.cpus = 1;
    } else {
        guest.cpus = spec.cpus;
        guest.tcg_threads = spec.tcg_threads;
    }
    let done = match run_guest(
        &guest,
        guest_command(&spec.command, spec.build.as_deref()),
        spec.timeout,
        spec.keep_console,
    ) {
        Ok(done) => done,
        Err(e) if stop::requested() => return Err(Error::Stopped(Box::new(e))),
        Err(e) => return Err(e),
    };
    Ok(Ran {
        guest,
        // TCG after a KVM stall, whatever was chosen before the boot.
        accel: done.accel,
        runner,
        status: done.status,
        build: spec.build.clone(),
    })
}

impl Ran {
    /// What `vm run --json` writes, with the command and its exit code.
    pub fn manifest<'a>(&'a self, command: &'a [String], exit_code: i32) -> RunManifest<'a> {
        let um = self.guest.arch == Arch::Um;
        RunManifest {
            kernel: &self.guest.kernel,
            build: self.build.as_deref(),
            arch: if um { "um" } else { "x86_64" },
            accel: match self.accel {
                Accel::Kvm if !um => "kvm",
                _ if um => "native (User-Mode Linux)",
                _ => "tcg",
            },
            // None for User-Mode Linux too: `run` gives it one CPU.
            tcg_threads: TcgThreads::in_effect(self.accel, self.guest.cpus, self.guest.tcg_threads)
                .map(TcgThreads::as_str),
            runner: self.runner.as_ref(),
            command,
            exit_code,
        }
    }
}

/// What `vm run --json` writes.
#[derive(serde::Serialize)]
pub struct RunManifest<'a> {
    pub kernel: &'a Path,
    /// Which build the kernel is ([`describe_build`]), when `vm build`
    /// made it.
    #[serde(rename = "kernel_build", skip_serializing_if = "Option::is_none")]
    pub build: Option<&'a str>,
    pub arch: &'static str,
    pub accel: &'static str,
    /// Under TCG with more than one vCPU, how they ran: `single` (one host
    /// thread) or `multi` (one each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcg_threads: Option<&'static str>,
    /// The virtme-ng that booted the guest (none for User-Mode Linux).
    pub runner: Option<&'a VirtmeNg>,
    pub command: &'a [String],
    pub exit_code: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibneigh_vm::CacheKey;

    fn key() -> CacheKey {
        CacheKey {
            base: "linux-source-7.3_7.3.4-1~bpo13+1".into(),
            series: "3dd8662660395c1c".into(),
            config: "3e4d59cc0ff9d46e".into(),
            profile: "o2".into(),
            arch: "um".into(),
        }
    }

    #[test]
    fn a_known_build_reaches_the_guest_through_env() {
        let build = describe_build(&key());
        assert_eq!(
            build,
            "series 3dd8662660395c1c, profile o2, um, config 3e4d59cc0ff9d46e, \
             base linux-source-7.3_7.3.4-1~bpo13+1"
        );
        let command = vec!["fibneigh".to_string(), "bench".into(), "--only".into()];
        let argv = guest_command(&command, Some(&build));
        assert_eq!(argv[0], "env");
        assert_eq!(argv[1], format!("FIBNEIGH_KERNEL_BUILD={build}"));
        assert_eq!(&argv[2..], &command[..]);
        // --kernel PATH: nothing is known, the command runs as given.
        assert_eq!(guest_command(&command, None), command);
        // The guest's shell line (virtme-ng's `exec ...`) gives the same
        // argv back, the build as one word.
        let line = fibneigh_vm::boot::guest_script(&argv);
        let exec = line.split("exec ").nth(1).expect("an exec line");
        assert_eq!(shlex::split(exec).expect("a shell line"), argv);
    }
}
