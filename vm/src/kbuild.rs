//! Step 5: build `bzImage` (and `vmlinux`, kept for BTF) with ccache, or
//! for User-Mode Linux the `linux` executable.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd;
use crate::error::{Error, IoContext, Result};
use crate::events::{Event, Phase, Reporter};

/// A build profile: extra `make` arguments that change the output.
// The command line's help (`--profile`) says what the profiles are; only
// `o2` gets a line of its own there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Profile {
    /// tinyconfig + fragment, as tinyconfig selects it: `-Os`
    /// (CONFIG_CC_OPTIMIZE_FOR_SIZE).
    #[cfg_attr(feature = "clap", value(help = None::<&str>))]
    Tiny,
    /// Tiny plus the debug fragment (`config-debug` next to the fragment):
    /// lockdep, KASAN, UBSAN and friends. For correctness runs, never for
    /// benchmarks.
    #[cfg_attr(feature = "clap", value(help = None::<&str>))]
    Debug,
    /// Tiny plus `config-selftests`: what the BPF selftests of the
    /// regression differential need beyond the harness's own tests
    /// (tracing for `bpf_probe_read_kernel`, cgroup BPF, netkit, tun,
    /// vxlan, matchall/skbmod, NR_CPUS for cpumap).
    #[cfg_attr(feature = "clap", value(help = None::<&str>))]
    Selftests,
    /// Tiny built at `-O2` (`config-o2`: CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE,
    /// as distributions ship) instead of tinyconfig's `-Os`: the default,
    /// and what the cost figures lead with.
    #[cfg_attr(
        feature = "clap",
        value(
            help = "The default: the tiny config at -O2 (CONFIG_CC_OPTIMIZE_FOR_PERFORMANCE), as distributions build; tiny is -Os"
        )
    )]
    O2,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Tiny => "tiny",
            Profile::Debug => "debug",
            Profile::Selftests => "selftests",
            Profile::O2 => "o2",
        }
    }

    /// The fragment merged after the main one, by file name, next to it.
    pub fn extra_fragment(self) -> Option<&'static str> {
        match self {
            Profile::Tiny => None,
            Profile::Debug => Some("config-debug"),
            Profile::Selftests => Some("config-selftests"),
            Profile::O2 => Some("config-o2"),
        }
    }

    fn make_args(self) -> Vec<String> {
        Vec::new()
    }
}

/// The architecture a kernel is built for.
// `--arch`'s own help describes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Arch {
    /// An x86-64 `bzImage`, booted under virtme-ng (QEMU).
    #[default]
    #[cfg_attr(feature = "clap", value(name = "x86_64", help = None::<&str>))]
    X86_64,
    /// User-Mode Linux (`ARCH=um`): the kernel is the host program `linux`
    /// and runs natively on the host CPU (see [`crate::uml`]).
    #[cfg_attr(feature = "clap", value(help = None::<&str>))]
    Um,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Um => "um",
        }
    }

    /// The `ARCH=` value `make` is given, if any (x86-64 is the host's).
    pub fn make_arch(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::Um => Some("um"),
        }
    }

    /// The `make` target that builds the bootable image.
    pub fn target(self) -> &'static str {
        match self {
            Arch::X86_64 => "bzImage",
            Arch::Um => "linux",
        }
    }

    /// Where `make` leaves the bootable image, relative to the tree.
    pub fn image_in_tree(self) -> &'static str {
        match self {
            Arch::X86_64 => "arch/x86/boot/bzImage",
            Arch::Um => "linux",
        }
    }

    /// The file name of the architecture's fragment in `kernel-patches/`:
    /// `config`, or for UML `config-um` (no PCI, virtio or ACPI; its
    /// console channels and hostfs instead).
    pub fn fragment(self) -> &'static str {
        match self {
            Arch::X86_64 => "config",
            Arch::Um => "config-um",
        }
    }

    /// `make` with this architecture's `ARCH=` in its environment.
    pub fn make(self, tree: &Path) -> Command {
        let mut c = Command::new("make");
        c.current_dir(tree);
        match self.make_arch() {
            Some(a) => c.env("ARCH", a),
            None => c.env_remove("ARCH"),
        };
        c
    }
}

/// Is this `make` output line one finished object (`  CC      foo.o`)?
pub fn object_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("  ")?;
    let (tool, target) = rest.split_once(' ')?;
    let known = [
        "CC",
        "AS",
        "LD",
        "AR",
        "HOSTCC",
        "HOSTLD",
        "BTF",
        "OBJCOPY",
        "GEN",
        "UPD",
        "CPP",
        "LDS",
        "SYSMAP",
        "KSYMS",
        "MKPIGGY",
        "ZOFFSET",
        "VOFFSET",
        "RELOCS",
        "BTFIDS",
        "SORTTAB",
        "BUILD",
        "XZKERN",
        "GZIP",
        "SYSTBL",
        "SYSHDR",
        "WRAP",
        "HYPERCALLS",
        "POLICY",
        "TABLE",
        "DESCEND",
        "INSTALL",
        "MKELF",
        "MKCAP",
        "CHK",
        "VDSO",
        "VDSO2C",
    ];
    known.contains(&tool).then(|| target.trim())
}

/// How `make` uses ccache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ccache {
    /// Objects kept in this directory, shared between trees (paths are
    /// made relative to the tree so another tree of the same base hits
    /// the same entries).
    In(PathBuf),
    /// Compiled as with ccache, but nothing is looked up or stored
    /// (`CCACHE_DISABLE`): what a clean build costs.
    Disabled,
}

/// `make -jN bzImage` (`linux` for UML) in `tree`; output goes to `log`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    tree: &Path,
    arch: Arch,
    profile: Profile,
    jobs: usize,
    ccache: &Ccache,
    log: &Path,
    reporter: &mut dyn Reporter,
) -> Result<()> {
    let target = arch.target();
    reporter.event(Event::Start(
        Phase::Build,
        format!("{target} ({}), -j{jobs}", arch.name()),
    ));
    let mut make = arch.make(tree);
    make.arg(format!("-j{jobs}"))
        .args(ccache_args())
        .args(profile.make_args())
        .arg(target)
        .env("CCACHE_BASEDIR", tree)
        .env("CCACHE_NOHASHDIR", "1");
    match ccache {
        // Depend mode: ccache reads the headers a file used from the
        // dependency file the compiler writes anyway (kbuild's
        // -Wp,-MMD), instead of running the preprocessor once more to
        // hash its output on every miss. That second pass cost an empty
        // cache a third more CPU than compiling without ccache (net/ipv4,
        // net/core and kernel/bpf at -O2: 230 CPU-s against 172; depend
        // mode 172); hits are found as before (README, "The VM pipeline").
        // The dependency file leaves system headers out (-MMD), which the
        // kernel proper does not use (-nostdinc) but host programs and
        // UML's user-space objects do: the versions of the packages that
        // hold them go into every hash instead (CCACHE_EXTRAFILES), and
        // without dpkg the default mode hashes the headers themselves.
        Ccache::In(dir) => {
            make.env("CCACHE_DIR", dir).env_remove("CCACHE_DISABLE");
            if let Some(stamp) = system_headers_stamp(dir)? {
                make.env("CCACHE_DEPEND", "1")
                    .env("CCACHE_EXTRAFILES", stamp);
            }
            &mut make
        }
        Ccache::Disabled => make.env("CCACHE_DISABLE", "1"),
    };
    let mut done = 0;
    let ok = cmd::stream(make, log, |line| {
        if let Some(item) = object_line(line) {
            done += 1;
            reporter.event(Event::Progress {
                done,
                item: item.to_string(),
            });
        }
    })?;
    if !ok {
        let text = fs::read_to_string(log).at(log)?;
        let interesting: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("error") || l.contains("Error") || l.starts_with("make"))
            .collect();
        let start = interesting.len().saturating_sub(20);
        return Err(Error::Build {
            log: log.to_path_buf(),
            tail: interesting[start..].join("\n"),
        });
    }
    reporter.event(Event::End(Phase::Build));
    Ok(())
}

/// The Debian packages whose headers host programs and UML's user-space
/// objects include.
const SYSTEM_HEADER_PACKAGES: [&str; 5] = [
    "libc6-dev",
    "linux-libc-dev",
    "libssl-dev",
    "libelf-dev",
    "zlib1g-dev",
];

/// A file beside the ccache directory naming the installed versions of
/// [`SYSTEM_HEADER_PACKAGES`]; None where dpkg cannot say.
fn system_headers_stamp(ccache_dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(out) = Command::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${Version}\\n"])
        .args(SYSTEM_HEADER_PACKAGES)
        .output()
    else {
        return Ok(None);
    };
    if !out.status.success() {
        return Ok(None);
    }
    let path = ccache_dir.with_file_name("ccache-system-headers");
    if fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&tmp, &out.stdout).at(&tmp)?;
        fs::rename(&tmp, &path).at(&path)?;
    }
    Ok(Some(path))
}

/// `CC=ccache gcc` when ccache exists (setup installs it).
fn ccache_args() -> Vec<String> {
    let have = Command::new("ccache")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        vec!["CC=ccache gcc".into(), "HOSTCC=ccache gcc".into()]
    } else {
        Vec::new()
    }
}

/// `uname -r` of the configured tree.
pub fn kernel_release(tree: &Path, arch: Arch) -> Result<String> {
    Ok(cmd::output(arch.make(tree).args(["-s", "kernelrelease"]))?
        .trim()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_object_lines_only() {
        assert_eq!(
            object_line("  CC      net/core/filter.o"),
            Some("net/core/filter.o")
        );
        assert_eq!(object_line("  LD      vmlinux.o"), Some("vmlinux.o"));
        assert_eq!(object_line("make[1]: Entering directory"), None);
        assert_eq!(object_line("net/core/filter.c:12: warning: unused"), None);
        assert_eq!(object_line("  FOO     bar"), None);
    }
}
