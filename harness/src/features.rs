//! What the running kernel offers the project (`fibneigh probe`): its
//! release, whether a tc and an XDP program calling `bpf_fib_lookup()` load
//! and run, the series' flags (through [`Support::from_probe`], the one
//! probe of them, on the same loaded probe), tcx, and whether XDP
//! live-frames test runs (the forwarding bench's generator) are allowed.

use fibneigh_bpf::bench::{Bench, LiveFrames};
use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::{ret, FibParams, Hook};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::scenario::Support;

#[derive(Debug, Clone, Serialize)]
pub struct Features {
    pub release: String,
    /// A tc and an XDP program calling bpf_fib_lookup loaded and ran: the
    /// return of a loopback lookup from each.
    pub fib_lookup_tc: String,
    pub fib_lookup_xdp: String,
    pub neigh_state: bool,
    pub neigh_refresh: bool,
    /// The kernel knows tcx links (from its BTF); None without BTF.
    pub tcx: Option<bool>,
    /// XDP live-frames test runs, the forwarding bench's generator, run.
    pub xdp_live_frames: bool,
    /// Why not, when they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xdp_live_frames_refused: Option<String>,
}

/// What `fibneigh probe` expects of the kernel.
#[derive(Debug, Clone, clap::Args)]
pub struct Expected {
    /// Fail unless the kernel's release starts with this (e.g. 7.3).
    #[arg(long)]
    pub expect_release: Option<String>,
    /// Fail unless NEIGH_STATE and NEIGH_REFRESH are supported.
    #[arg(long)]
    pub expect_patched: bool,
}

/// A kernel that is not the one expected.
#[derive(Debug, thiserror::Error)]
pub enum Unexpected {
    #[error("kernel release {found} does not match the expected {want}")]
    Release { found: String, want: String },
    #[error("this kernel does not support NEIGH_STATE and NEIGH_REFRESH")]
    Unpatched,
}

impl Expected {
    /// Whether `f` is the kernel expected.
    pub fn check(&self, f: &Features) -> std::result::Result<(), Unexpected> {
        if let Some(want) = &self.expect_release {
            if !f.release.starts_with(want.as_str()) {
                let (found, want) = (f.release.clone(), want.clone());
                return Err(Unexpected::Release { found, want });
            }
        }
        if self.expect_patched && !f.patched() {
            return Err(Unexpected::Unpatched);
        }
        Ok(())
    }
}

impl Features {
    /// Probe the running kernel (needs root).
    pub fn probe() -> Result<Features> {
        let release = nix::sys::utsname::uname()
            .map_err(|e| Error::Setup(format!("failed to read uname: {e}")))?
            .release()
            .to_string_lossy()
            .into_owned();
        let mut probe = Probe::load()?;
        let lo = FibParams::forward(1, [127, 0, 0, 1].into(), [127, 0, 0, 1].into(), 64);
        let fib_lookup_tc = ret::name(probe.lookup(Hook::Tc, &lo, 0)?.rc);
        let fib_lookup_xdp = ret::name(probe.lookup(Hook::Xdp, &lo, 0)?.rc);
        let support = Support::from_probe(&mut probe)?;
        // The sink drops the one frame: nothing is transmitted. Without a
        // device in the context the kernel takes the namespace's loopback
        // as the receiving one.
        let live = Bench::load()?.live_frames(0)?;
        Ok(Features {
            release,
            fib_lookup_tc,
            fib_lookup_xdp,
            neigh_state: support.neigh_state,
            neigh_refresh: support.neigh_refresh,
            tcx: fibneigh_bpf::probe::kernel_knows_tcx(),
            xdp_live_frames: live == LiveFrames::Supported,
            xdp_live_frames_refused: (live != LiveFrames::Supported).then(|| live.reason()),
        })
    }

    /// Both of the series' flags.
    pub fn patched(&self) -> bool {
        self.neigh_state && self.neigh_refresh
    }

    /// What `fibneigh probe` prints: a line per feature.
    pub fn render(&self) -> String {
        let yes = |b| {
            if b {
                "supported"
            } else {
                "not supported (-EINVAL)"
            }
        };
        let tcx = match self.tcx {
            Some(true) => {
                "known to the kernel (BPF_TCX_INGRESS in its BTF); the harness attaches with clsact"
            }
            Some(false) => "not known to the kernel; tc programs attach with clsact",
            None => "unknown (no kernel BTF)",
        };
        let live = match &self.xdp_live_frames_refused {
            None => "supported (the forwarding bench's generator)".to_string(),
            Some(why) => format!("not supported: {why}; the forwarding bench cannot run"),
        };
        format!(
            "kernel release        {}\n\
             bpf_fib_lookup (tc)   loads and runs; loopback lookup -> {}\n\
             bpf_fib_lookup (xdp)  loads and runs; loopback lookup -> {}\n\
             NEIGH_STATE           {}\n\
             NEIGH_REFRESH         {}\n\
             tcx                   {tcx}\n\
             XDP live frames       {live}\n",
            self.release,
            self.fib_lookup_tc,
            self.fib_lookup_xdp,
            yes(self.neigh_state),
            yes(self.neigh_refresh),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_prints_a_line_per_feature() {
        let f = Features {
            release: "7.3.0".into(),
            fib_lookup_tc: "SUCCESS".into(),
            fib_lookup_xdp: "SUCCESS".into(),
            neigh_state: true,
            neigh_refresh: false,
            tcx: None,
            xdp_live_frames: false,
            xdp_live_frames_refused: Some("the kernel refuses them (EPERM)".into()),
        };
        assert_eq!(
            f.render(),
            "kernel release        7.3.0\n\
             bpf_fib_lookup (tc)   loads and runs; loopback lookup -> SUCCESS\n\
             bpf_fib_lookup (xdp)  loads and runs; loopback lookup -> SUCCESS\n\
             NEIGH_STATE           supported\n\
             NEIGH_REFRESH         not supported (-EINVAL)\n\
             tcx                   unknown (no kernel BTF)\n\
             XDP live frames       not supported: the kernel refuses them (EPERM); the forwarding bench cannot run\n"
        );
    }
}
