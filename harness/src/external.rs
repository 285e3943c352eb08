//! Somebody else's forwarder on the DUT, for `fibneigh trial`: a BPF object
//! the harness attaches itself, or a pair of commands (the user's own
//! loader) run inside the DUT's namespace. Either way the harness knows
//! nothing of its counters; `trial` judges it from the wire.
//!
//! Nothing is left behind: the command form runs its detach command when
//! the run ends (also when it failed), and then checks that no XDP program
//! and no tc filter is left on the DUT's devices, naming what it finds.

use std::path::{Path, PathBuf};
use std::process::Command;

use fibneigh_bpf::{Attachment, Hook, ObjectProgram};
use fibneigh_vm::xdp_tools::XdpTools;

use crate::error::{Error, Result};
use crate::lab::{Lab, Names, XdpPeers};

/// A forwarder this project did not write.
pub enum External {
    /// One program of a BPF object, attached at the DUT's client-facing
    /// device (XDP, or tc ingress).
    Object {
        name: String,
        program: ObjectProgram,
    },
    /// Commands run with `sh -c` inside the DUT's namespace; `{ifaces}` is
    /// replaced by the DUT's two device names, `{ns}` by the namespace.
    Command {
        name: String,
        attach: String,
        detach: String,
        hook: Hook,
    },
}

impl External {
    /// The name the tables and reports use.
    pub fn name(&self) -> &str {
        match self {
            External::Object { name, .. } | External::Command { name, .. } => name,
        }
    }

    /// Where it runs.
    pub fn hook(&self) -> Hook {
        match self {
            External::Object { program, .. } => program.hook(),
            External::Command { hook, .. } => *hook,
        }
    }

    /// Put the forwarder on the DUT of `lab`. For XDP, the far ends of the
    /// DUT's veths get XDP_PASS first (a redirect into a veth needs an XDP
    /// program on its peer).
    pub fn attach(&self, lab: &Lab, n: &Names) -> Result<ExternalAttached> {
        let peers = match self.hook() {
            Hook::Xdp => Some(lab.xdp_pass_on_peers_of(&n.dut)?),
            Hook::Tc => None,
        };
        match self {
            External::Object { program, .. } => {
                let index = lab.ifindex(&n.dut, &n.dut_client_if)?;
                let ns = lab.open_ns(&n.dut)?;
                let attachment = program.attach_in(std::os::fd::AsFd::as_fd(&ns), index)?;
                Ok(ExternalAttached {
                    _peers: peers,
                    kind: AttachedKind::Object(Some(attachment)),
                })
            }
            External::Command {
                name,
                attach,
                detach,
                ..
            } => {
                let ifaces = [n.dut_client_if.as_str(), n.dut_host_if.as_str()];
                if let Err(e) = run_in(&n.dut, &expand(attach, &n.dut, &ifaces), name, "attach") {
                    // It may have done part of its work (pinned a program
                    // or a map in bpffs, which outlives the namespace):
                    // detach anyway, and report the attach error.
                    if let Err(d) = run_in(&n.dut, &expand(detach, &n.dut, &ifaces), name, "detach")
                    {
                        return Err(Error::Setup(format!(
                            "{e}; the detach command after it failed too: {d}"
                        )));
                    }
                    return Err(e);
                }
                Ok(ExternalAttached {
                    _peers: peers,
                    kind: AttachedKind::Command {
                        name: name.clone(),
                        detach: Some(expand(detach, &n.dut, &ifaces)),
                        ns: n.dut.clone(),
                        ifaces: ifaces.map(str::to_string),
                    },
                })
            }
        }
    }
}

/// An attached external forwarder. [`finish`](Self::finish) detaches it
/// and checks that nothing is left; dropping it only detaches.
pub struct ExternalAttached {
    _peers: Option<XdpPeers>,
    kind: AttachedKind,
}

enum AttachedKind {
    Object(Option<Attachment>),
    Command {
        name: String,
        detach: Option<String>,
        ns: String,
        ifaces: [String; 2],
    },
}

impl ExternalAttached {
    /// Detach, then fail naming whatever the forwarder left on the DUT's
    /// devices (an XDP program, a tc filter).
    pub fn finish(mut self) -> Result<()> {
        match &mut self.kind {
            AttachedKind::Object(a) => {
                drop(a.take());
                Ok(())
            }
            AttachedKind::Command {
                name,
                detach,
                ns,
                ifaces,
            } => {
                if let Some(cmd) = detach.take() {
                    run_in(ns, &cmd, name, "detach")?;
                }
                let left = leftovers(ns, ifaces)?;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(Error::Setup(format!(
                        "forwarder {name} left behind after its detach command: {}",
                        left.join("; ")
                    )))
                }
            }
        }
    }
}

impl Drop for ExternalAttached {
    fn drop(&mut self) {
        if let AttachedKind::Command {
            name, detach, ns, ..
        } = &mut self.kind
        {
            if let Some(cmd) = detach.take() {
                if let Err(e) = run_in(ns, &cmd, name, "detach") {
                    eprintln!("fibneigh: {e}");
                }
            }
        }
    }
}

/// `template` with `{ifaces}` and `{ns}` replaced.
pub fn expand(template: &str, ns: &str, ifaces: &[&str]) -> String {
    template
        .replace("{ifaces}", &ifaces.join(" "))
        .replace("{ns}", ns)
}

fn run_in(ns: &str, cmd: &str, name: &str, what: &str) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", cmd])
        .output()
        .map_err(|e| {
            Error::Setup(format!(
                "forwarder {name}: cannot run its {what} command: {e}"
            ))
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = [stderr.trim(), stdout.trim()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    Err(Error::Setup(format!(
        "forwarder {name}: its {what} command failed ({}): {cmd}{}",
        out.status,
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    )))
}

/// What is attached to `ifaces` in `ns`: XDP programs and tc filters.
fn leftovers(ns: &str, ifaces: &[String]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for dev in ifaces {
        let link = capture(ns, &["ip", "-d", "link", "show", "dev", dev])?;
        if let Some(line) = link.lines().find(|l| l.contains("prog/xdp")) {
            found.push(format!("an XDP program on {dev} ({})", line.trim()));
        }
        for dir in ["ingress", "egress"] {
            let filters = capture(ns, &["tc", "filter", "show", "dev", dev, dir])?;
            if !filters.trim().is_empty() {
                found.push(format!("a tc {dir} filter on {dev}"));
            }
        }
    }
    Ok(found)
}

/// What `argv` prints in namespace `ns`; a command that fails is an error
/// naming it (an inspection that could not look finds nothing left
/// behind only by mistake).
fn capture(ns: &str, argv: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .map_err(|e| Error::Setup(format!("cannot run {}: {e}", argv.join(" "))))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "{} in {ns} failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where the forwarder comes from, as the command line gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalSpec {
    Object {
        name: String,
        path: PathBuf,
        program: Option<String>,
    },
    Command {
        name: String,
        attach: String,
        detach: String,
        hook: Hook,
    },
}

impl ExternalSpec {
    /// Load (object form) or take as it is (command form).
    pub fn load(&self) -> Result<External> {
        Ok(match self {
            ExternalSpec::Object {
                name,
                path,
                program,
            } => External::Object {
                name: name.clone(),
                program: ObjectProgram::load(path, program.as_deref())?,
            },
            ExternalSpec::Command {
                name,
                attach,
                detach,
                hook,
            } => External::Command {
                name: name.clone(),
                attach: attach.clone(),
                detach: detach.clone(),
                hook: *hook,
            },
        })
    }

    pub fn name(&self) -> &str {
        match self {
            ExternalSpec::Object { name, .. } | ExternalSpec::Command { name, .. } => name,
        }
    }
}

/// The forwarder as the command line names it: an object (and maybe its
/// program), a pair of commands with their hook, or xdp-forward.
#[derive(Debug, Clone, clap::Args)]
pub struct ForwarderChoice {
    /// The forwarder as a BPF object file: the harness loads it as it is
    /// and attaches its XDP or tc program to the DUT's client-facing device.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["attach", "xdp_forward"])]
    pub object: Option<PathBuf>,
    /// With --object: the program (name or section) to attach, when the
    /// object has more than one XDP/tc program.
    #[arg(long, requires = "object")]
    pub program: Option<String>,
    /// The forwarder as a command that attaches it, run with `sh -c`
    /// inside the DUT's namespace: `{ifaces}` becomes the DUT's two
    /// devices, `{ns}` the namespace (e.g. 'xdp-forward load -m native
    /// {ifaces}').
    #[arg(long, value_name = "CMD", requires_all = ["detach", "hook"], conflicts_with = "xdp_forward")]
    pub attach: Option<String>,
    /// With --attach: the command that detaches it (e.g. 'xdp-forward
    /// unload {ifaces}'). Afterwards no XDP program and no tc filter may be
    /// left on the DUT's devices.
    #[arg(long, value_name = "CMD", requires = "attach")]
    pub detach: Option<String>,
    /// With --attach: where the forwarder runs (tc or xdp).
    #[arg(long)]
    pub hook: Option<Hook>,
    /// xdp-forward from Debian trixie's xdp-tools, unmodified (fetched into
    /// the cache on first use; run with trixie's own loader and libraries),
    /// attached with 'xdp-forward load -m native {ifaces}'.
    #[arg(long)]
    pub xdp_forward: bool,
}

/// A forwarder the command line did not name, or could not get.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("--object {}: no such file", .0.display())]
    NoObject(PathBuf),
    #[error("failed to fetch xdp-tools from Debian trixie (xdp-forward is not in bookworm)")]
    XdpTools(#[source] fibneigh_vm::Error),
    #[error("name the forwarder: --object PATH, --attach CMD --detach CMD --hook HOOK, or --xdp-forward")]
    Unnamed,
}

/// Debian trixie's xdp-tools in `cache` (fetched on first use).
pub fn fetch_xdp_tools(cache: &Path) -> std::result::Result<XdpTools, SpecError> {
    XdpTools::ensure(cache).map_err(SpecError::XdpTools)
}

impl ForwarderChoice {
    /// The forwarder named: the object, else the commands, else
    /// xdp-forward (fetched into `cache_dir`), attached with 'xdp-forward
    /// load -m native {ifaces}'; `name` overrides the name taken from it.
    pub fn spec(
        &self,
        name: Option<&str>,
        cache_dir: &Path,
    ) -> std::result::Result<ExternalSpec, SpecError> {
        let name = name.map(str::to_string);
        if let Some(path) = &self.object {
            if !path.is_file() {
                return Err(SpecError::NoObject(path.clone()));
            }
            let name = name.unwrap_or_else(|| {
                path.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "object".into())
            });
            return Ok(ExternalSpec::Object {
                name,
                path: path.clone(),
                program: self.program.clone(),
            });
        }
        if let (Some(attach), Some(detach), Some(hook)) = (&self.attach, &self.detach, self.hook) {
            let name = name.unwrap_or_else(|| {
                attach
                    .split_whitespace()
                    .next()
                    .unwrap_or("command")
                    .to_string()
            });
            return Ok(ExternalSpec::Command {
                name,
                attach: attach.clone(),
                detach: detach.clone(),
                hook,
            });
        }
        if self.xdp_forward {
            let tools = fetch_xdp_tools(cache_dir)?;
            let bin = tools.shell_command("xdp-forward");
            return Ok(ExternalSpec::Command {
                name: name.unwrap_or_else(|| format!("xdp-forward {}", tools.version)),
                attach: format!("{bin} load -m native {{ifaces}}"),
                detach: format!("{bin} unload {{ifaces}}"),
                hook: Hook::Xdp,
            });
        }
        Err(SpecError::Unnamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_get_the_duts_devices_and_namespace() {
        assert_eq!(
            expand("xdp-forward load -m native {ifaces}", "dut", &["c0", "h0"]),
            "xdp-forward load -m native c0 h0"
        );
        assert_eq!(expand("echo {ns}", "fn-1-dut", &[]), "echo fn-1-dut");
    }
}
