//! `fibneigh probe`: what the running kernel offers.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use fibneigh::features::Features;

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

pub fn run(args: ProbeArgs) -> Result<ExitCode> {
    let f = Features::probe().context("failed to probe the kernel (are you root?)")?;
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
    if args.expect_patched && !f.patched() {
        bail!("this kernel does not support NEIGH_STATE and NEIGH_REFRESH");
    }
    Ok(ExitCode::SUCCESS)
}
