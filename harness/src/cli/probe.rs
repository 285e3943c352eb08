//! `fibneigh probe`: what the running kernel offers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::Hook;
use fibneigh_bpf::{flags, ret, FibParams};
use serde::Serialize;

#[derive(Args)]
pub struct ProbeArgs {
    /// Write the features as JSON here (`-`: standard output).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Fail unless the kernel's release starts with this (e.g. 7.3).
    #[arg(long)]
    pub expect_release: Option<String>,
    /// Fail unless NEIGH_STATE and NEIGH_REFRESH are supported.
    #[arg(long)]
    pub expect_patched: bool,
}

#[derive(Serialize)]
pub struct Features {
    pub release: String,
    /// A tc and an XDP program calling bpf_fib_lookup loaded and ran.
    pub fib_lookup_tc: String,
    pub fib_lookup_xdp: String,
    pub neigh_state: bool,
    pub neigh_refresh: bool,
    /// The kernel knows tcx links (from its BTF); None without BTF.
    pub tcx: Option<bool>,
}

fn release() -> Result<String> {
    Ok(nix::sys::utsname::uname()
        .context("failed to read uname")?
        .release()
        .to_string_lossy()
        .into_owned())
}

pub fn features() -> Result<Features> {
    let mut probe =
        Probe::load().context("failed to load the probe BPF programs (are you root?)")?;
    let lo = FibParams::forward(1, [127, 0, 0, 1].into(), [127, 0, 0, 1].into(), 64);
    let mut run = |hook| -> Result<String> {
        let r = probe
            .lookup(hook, &lo, 0)
            .context("failed to test-run bpf_fib_lookup")?;
        Ok(ret::name(r.rc))
    };
    let fib_lookup_tc = run(Hook::Tc)?;
    let fib_lookup_xdp = run(Hook::Xdp)?;
    Ok(Features {
        release: release()?,
        fib_lookup_tc,
        fib_lookup_xdp,
        neigh_state: probe.accepts_flag(flags::NEIGH_STATE)?,
        neigh_refresh: probe.accepts_flag(flags::NEIGH_REFRESH)?,
        tcx: fibneigh_bpf::probe::kernel_knows_tcx(),
    })
}

pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let f = features()?;
    if let Some(p) = &args.json {
        super::write_json(p, &f)?;
    }
    {
        let mut out = std::io::stdout().lock();
        let yes = |b| {
            if b {
                "supported"
            } else {
                "not supported (-EINVAL)"
            }
        };
        writeln!(out, "kernel release        {}", f.release)?;
        writeln!(
            out,
            "bpf_fib_lookup (tc)   loads and runs; loopback lookup -> {}",
            f.fib_lookup_tc
        )?;
        writeln!(
            out,
            "bpf_fib_lookup (xdp)  loads and runs; loopback lookup -> {}",
            f.fib_lookup_xdp
        )?;
        writeln!(out, "NEIGH_STATE           {}", yes(f.neigh_state))?;
        writeln!(out, "NEIGH_REFRESH         {}", yes(f.neigh_refresh))?;
        writeln!(
            out,
            "tcx                   {}",
            match f.tcx {
                Some(true) => "known to the kernel (BPF_TCX_INGRESS in its BTF); the harness attaches with clsact",
                Some(false) => "not known to the kernel; tc programs attach with clsact",
                None => "unknown (no kernel BTF)",
            }
        )?;
    }
    if let Some(want) = &args.expect_release {
        if !f.release.starts_with(want.as_str()) {
            bail!(
                "kernel release {} does not match the expected {want}",
                f.release
            );
        }
    }
    if args.expect_patched && !(f.neigh_state && f.neigh_refresh) {
        bail!("this kernel does not support NEIGH_STATE and NEIGH_REFRESH");
    }
    Ok(ExitCode::SUCCESS)
}
