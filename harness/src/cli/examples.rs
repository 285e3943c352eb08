//! `fibneigh examples`: the header's example objects, for loading with
//! `tc` or `ip link` (the same bytes the scenarios load).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use fibneigh_bpf::example;
use fibneigh_bpf::probe::Hook;
use sha2::{Digest, Sha256};

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
        std::fs::create_dir_all(&args.out)?;
        std::fs::write(&path, bytes)?;
        println!(
            "{}  sha256 {}",
            path.display(),
            hex::encode(Sha256::digest(bytes))
        );
    }
    Ok(ExitCode::SUCCESS)
}
