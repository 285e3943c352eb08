//! `fibneigh examples`: the header's example objects, for loading with
//! `tc` or `ip link` (the same bytes the scenarios load).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use fibneigh::scenario::object_digest;
use fibneigh_bpf::example;
use fibneigh_bpf::Hook;

#[derive(Args)]
pub struct ExamplesArgs {
    /// Write tc_router.bpf.o and xdp_router.bpf.o into this directory.
    #[arg(long, default_value = "target/examples")]
    pub out: PathBuf,
}

pub fn run(args: ExamplesArgs) -> Result<ExitCode> {
    for hook in [Hook::Tc, Hook::Xdp] {
        let (name, bytes) = example::object(hook);
        let path = args.out.join(name);
        std::fs::create_dir_all(&args.out)
            .with_context(|| format!("failed to create {}", args.out.display()))?;
        std::fs::write(&path, bytes)
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!("{}  sha256 {}", path.display(), object_digest(hook).1);
    }
    Ok(ExitCode::SUCCESS)
}
