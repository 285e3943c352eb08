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
    /// (`CCACHE_DISABLE`): what a clean build costs. The directory is
    /// where the compiler wrapper is (`incbin_wrapper`), so that `CC`, which
    /// kbuild records for every object, is the same in both modes.
    Disabled(PathBuf),
}

/// `make -jN bzImage` (`linux` for UML) in `tree`; output goes to `log`.
/// An x86-64 `bzImage` is then checked to carry the kernel just linked
/// ([`check_payload`]).
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
        .args(ccache_args(ccache)?)
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
        // Nor does the dependency file name what `.incbin` pulls in: the
        // compiler wrapper (`incbin_wrapper`) keeps those sources from
        // ccache.
        Ccache::In(dir) => {
            make.env("CCACHE_DIR", dir).env_remove("CCACHE_DISABLE");
            if let Some(stamp) = system_headers_stamp(dir)? {
                make.env("CCACHE_DEPEND", "1")
                    .env("CCACHE_EXTRAFILES", stamp);
            }
            &mut make
        }
        Ccache::Disabled(_) => make.env("CCACHE_DISABLE", "1"),
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
    if arch == Arch::X86_64 {
        check_payload(tree)?;
    }
    reporter.event(Event::End(Phase::Build));
    Ok(())
}

/// The kernel's compiler (`CC`) with a cache: ccache, except for a source
/// that has `.incbin` in it, which runs the compiler alone. `.incbin`
/// pulls a file into the object that neither the preprocessor nor the
/// dependency file sees, so ccache's depend mode never hashes it: a source
/// whose text matched an earlier build's got that build's object back.
/// That happened to `arch/x86/boot/compressed/piggy.S`, which holds only
/// the compressed kernel's sizes: on 2026-12-07 a cached `bzImage` booted
/// another build's kernel than the `vmlinux` beside it (the icount
/// plugin's markers, taken from the `vmlinux`, never fired). The same
/// holds for, among others, `arch/x86/realmode/rmpiggy.S`,
/// `kernel/configs.c`, `usr/initramfs_data.S` and UML's
/// `stub_exe_embed.S`. A `.incbin` that came from a header would not be
/// seen; the kernel has none.
const INCBIN_WRAPPER: &str = "#!/bin/sh
# Written by fibneigh (vm/src/kbuild.rs): the kernel's CC, through ccache
# unless the source has .incbin in it (ccache's depend mode never hashes
# the file .incbin pulls in).
for a; do
	case $a in
	*.c | *.S | *.s)
		if [ -f \"$a\" ] && grep -q -e '\\.incbin' -- \"$a\"; then
			exec \"$@\"
		fi
		;;
	esac
done
exec ccache \"$@\"
";

/// [`INCBIN_WRAPPER`] written (executable) beside the ccache directory,
/// unless it is there already.
fn incbin_wrapper(ccache_dir: &Path) -> Result<PathBuf> {
    let path = ccache_dir.with_file_name("ccache-incbin-cc");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at(dir)?;
    }
    write_if_changed(&path, INCBIN_WRAPPER.as_bytes(), Some(0o755))?;
    Ok(path)
}

/// Write `bytes` to `path` unless it holds them already: through a
/// temporary file renamed over it (with `mode`, if given), so that another
/// process never reads half a file.
fn write_if_changed(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;

    if fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    fs::write(&tmp, bytes).at(&tmp)?;
    if let Some(mode) = mode {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).at(&tmp)?;
    }
    fs::rename(&tmp, path).at(path)
}

/// Where kbuild leaves x86-64's compressed-kernel wrapper, relative to the
/// tree.
const PIGGY: &str = "arch/x86/boot/compressed/piggy.S";

/// Does the `bzImage` in `tree` carry the kernel linked beside it? Its
/// payload (the boot protocol's `payload_offset` and `payload_length`)
/// must be, byte for byte, the compressed `vmlinux.bin` that `piggy.S`
/// includes.
pub fn check_payload(tree: &Path) -> Result<()> {
    let bzimage = tree.join(Arch::X86_64.image_in_tree());
    let image = fs::read(&bzimage).at(&bzimage)?;
    let piggy = tree.join(PIGGY);
    let text = fs::read_to_string(&piggy).at(&piggy)?;
    let Some(included) = incbin_path(&text) else {
        return Err(Error::Payload {
            bzimage,
            why: format!("{} has no .incbin line", piggy.display()),
        });
    };
    let compressed = tree.join(included);
    let want = fs::read(&compressed).at(&compressed)?;
    match bzimage_payload(&image) {
        None => Err(Error::Payload {
            bzimage,
            why: "no x86 boot header, a boot protocol before 2.08 (no payload fields), or a payload outside the file".into(),
        }),
        Some(got) if got != want.as_slice() => Err(Error::Payload {
            bzimage,
            why: format!(
                "its payload ({} bytes) is not {} ({} bytes): it would boot another build's kernel",
                got.len(),
                compressed.display(),
                want.len()
            ),
        }),
        Some(_) => Ok(()),
    }
}

/// The file `piggy.S` includes, as written there (relative to the tree).
fn incbin_path(piggy: &str) -> Option<&str> {
    piggy.lines().find_map(|l| {
        l.trim()
            .strip_prefix(".incbin")?
            .trim()
            .strip_prefix('"')?
            .strip_suffix('"')
    })
}

/// The compressed kernel inside a `bzImage`: the setup header's
/// `payload_offset` (0x248) and `payload_length` (0x24c), counted from the
/// protected-mode code after `setup_sects` (0x1f1; 0 means 4) sectors and
/// the boot sector. Those fields exist from boot protocol 2.08 (the
/// `version` word at 0x206); an older header has other data there.
fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let version = u16::from_le_bytes(image.get(0x206..0x208)?.try_into().ok()?);
    if version < 0x0208 {
        return None;
    }
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = image.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let sects = match *image.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let start = ((sects + 1) * 512).checked_add(word(0x248)?)?;
    image.get(start..start.checked_add(word(0x24c)?)?)
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
    write_if_changed(&path, &out.stdout, None)?;
    Ok(Some(path))
}

/// `CC` and `HOSTCC` through ccache when it exists (setup installs it):
/// `CC` is [`incbin_wrapper`], in both modes (a changed `CC` would make
/// kbuild compile every object again). Host programs do not use
/// `.incbin`.
fn ccache_args(ccache: &Ccache) -> Result<Vec<String>> {
    let have = Command::new("ccache")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        return Ok(Vec::new());
    }
    let (Ccache::In(dir) | Ccache::Disabled(dir)) = ccache;
    let wrapper = incbin_wrapper(dir)?;
    Ok(vec![
        format!("CC={} gcc", wrapper.display()),
        "HOSTCC=ccache gcc".into(),
    ])
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

    /// A `bzImage`-shaped buffer: boot header magic, `setup_sects`, and a
    /// payload at `payload_offset` from the protected-mode code.
    fn image(setup_sects: u8, offset: u32, payload: &[u8]) -> Vec<u8> {
        let sects = if setup_sects == 0 {
            4
        } else {
            usize::from(setup_sects)
        };
        let start = (sects + 1) * 512 + offset as usize;
        let mut v = vec![0u8; start];
        v[0x1f1] = setup_sects;
        v[0x202..0x206].copy_from_slice(b"HdrS");
        v[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        v[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        v[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        v.extend_from_slice(payload);
        v.extend_from_slice(b"trailer");
        v
    }

    #[test]
    fn finds_the_payload_by_the_boot_header() {
        assert_eq!(bzimage_payload(&image(31, 675, b"xz!")), Some(&b"xz!"[..]));
        // setup_sects 0 means 4
        assert_eq!(bzimage_payload(&image(0, 8, b"gz")), Some(&b"gz"[..]));
        // no magic: not a bzImage
        let mut bad = image(31, 675, b"xz!");
        bad[0x202] = b'X';
        assert_eq!(bzimage_payload(&bad), None);
        // a length past the end
        let mut short = image(31, 675, b"xz!");
        short[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(bzimage_payload(&short), None);
        assert_eq!(bzimage_payload(b"tiny"), None);
        // boot protocol 2.07: no payload fields yet; 2.08 has them
        let mut old = image(31, 675, b"xz!");
        old[0x206..0x208].copy_from_slice(&0x0207u16.to_le_bytes());
        assert_eq!(bzimage_payload(&old), None);
        old[0x206..0x208].copy_from_slice(&0x0208u16.to_le_bytes());
        assert_eq!(bzimage_payload(&old), Some(&b"xz!"[..]));
    }

    /// The header of a real 7.3 bzImage: boot protocol 2.15, 31 setup
    /// sectors, the payload 675 bytes into the protected-mode code, so at
    /// byte 17,059.
    #[test]
    fn a_real_header_puts_the_payload_at_17059() {
        let mut v = vec![0u8; 17_059];
        v[0x1f1] = 31;
        v[0x202..0x206].copy_from_slice(b"HdrS");
        v[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        v[0x248..0x24c].copy_from_slice(&675u32.to_le_bytes());
        v[0x24c..0x250].copy_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(&[0xfd, b'7', b'z', b'X', b'Z', 0]);
        assert_eq!(
            bzimage_payload(&v),
            Some(&[0xfd, b'7', b'z', b'X', b'Z', 0][..])
        );
    }

    /// The wrapper runs the compiler alone for a source with `.incbin`
    /// and through ccache for any other; a fake `ccache` on `PATH` says
    /// which ran.
    #[test]
    fn the_wrapper_keeps_incbin_sources_from_ccache() {
        use std::os::unix::fs::PermissionsExt;

        let d = tempfile::tempdir().expect("tempdir");
        let wrapper = incbin_wrapper(&d.path().join("ccache")).expect("wrapper");
        assert_eq!(wrapper, d.path().join("ccache-incbin-cc"));
        // written once, found again
        assert_eq!(
            incbin_wrapper(&d.path().join("ccache")).expect("again"),
            wrapper
        );
        let bin = d.path().join("bin");
        fs::create_dir_all(&bin).expect("bin");
        let out = d.path().join("ran");
        for (name, says) in [("ccache", "ccache"), ("fakecc", "compiler")] {
            let tool = bin.join(name);
            let body = if name == "ccache" {
                format!(
                    "#!/bin/sh\necho {says} >> {}\nshift\nexit 0\n",
                    out.display()
                )
            } else {
                format!("#!/bin/sh\necho {says} >> {}\n", out.display())
            };
            fs::write(&tool, body).expect("tool");
            fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let piggy = d.path().join("piggy.S");
        fs::write(&piggy, "input_data:\n.incbin \"vmlinux.bin.xz\"\n").expect("piggy");
        let plain = d.path().join("filter.c");
        fs::write(&plain, "int x;\n").expect("c");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        for source in [&piggy, &plain] {
            let status = Command::new(&wrapper)
                .env("PATH", &path)
                .args(["fakecc", "-DX=\"a b\"", "-c", "-o", "x.o"])
                .arg(source)
                .status()
                .expect("run the wrapper");
            assert!(status.success());
        }
        let ran = fs::read_to_string(&out).expect("ran");
        assert_eq!(
            ran, "compiler\nccache\n",
            "piggy.S alone, filter.c through ccache"
        );
    }

    /// kbuild records `CC` for every object: a clean build (`Disabled`)
    /// and a cached one must pass the same, or switching compiles
    /// everything again.
    #[test]
    fn both_modes_pass_the_same_cc() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("ccache");
        let cached = ccache_args(&Ccache::In(dir.clone())).expect("cached");
        let clean = ccache_args(&Ccache::Disabled(dir)).expect("clean");
        assert_eq!(cached, clean);
    }

    #[test]
    fn reads_the_file_piggy_includes() {
        let piggy = ".globl input_data, input_data_end\ninput_data:\n\
                     .incbin \"arch/x86/boot/compressed/vmlinux.bin.xz\"\ninput_data_end:\n";
        assert_eq!(
            incbin_path(piggy),
            Some("arch/x86/boot/compressed/vmlinux.bin.xz")
        );
        assert_eq!(incbin_path("input_data:\n"), None);
    }

    /// The defect this check exists for: a `bzImage` whose payload is an
    /// earlier build's compressed kernel, beside this build's.
    #[test]
    fn a_bzimage_carrying_another_kernel_is_refused_by_name() {
        let d = tempfile::tempdir().expect("tempdir");
        let boot = d.path().join("arch/x86/boot");
        fs::create_dir_all(boot.join("compressed")).expect("mkdir");
        fs::write(
            d.path().join(PIGGY),
            "input_data:\n.incbin \"arch/x86/boot/compressed/vmlinux.bin.xz\"\n",
        )
        .expect("piggy");
        fs::write(boot.join("compressed/vmlinux.bin.xz"), b"this build").expect("xz");
        fs::write(boot.join("bzImage"), image(31, 675, b"this build")).expect("bz");
        check_payload(d.path()).expect("the same payload passes");

        fs::write(boot.join("bzImage"), image(31, 675, b"that build")).expect("bz");
        let e = check_payload(d.path()).expect_err("another build's payload");
        let text = e.to_string();
        assert!(
            text.contains("bzImage is not the kernel just built"),
            "{text}"
        );
        assert!(text.contains("vmlinux.bin.xz"), "{text}");
    }
}
