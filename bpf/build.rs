//! Builds the BPF programs in src/bpf into libbpf-rs skeletons.
//! The compiler is `$FIBNEIGH_CLANG`, else `clang-16` (Debian 12), else
//! `clang`. The target's multiarch include directory (for <asm/types.h>) is
//! `$FIBNEIGH_MULTIARCH_INCLUDE` if set, else /usr/include/<triplet> for
//! the build target.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

/// The harness's programs (src/bpf) and the examples built on the public
/// header (examples/, include/): (directory, name).
const PROGRAMS: &[(&str, &str)] = &[
    ("src/bpf", "probe"),
    ("src/bpf", "forwarder"),
    ("src/bpf", "announce"),
    ("src/bpf", "xdp_pass"),
    ("src/bpf", "bench"),
    ("src/bpf", "lock_stress"),
    ("examples", "tc_router"),
    ("examples", "xdp_router"),
];

fn clang() -> String {
    if let Ok(c) = env::var("FIBNEIGH_CLANG") {
        return c;
    }
    let works = |c: &str| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works("clang-16") {
        "clang-16".into()
    } else {
        "clang".into()
    }
}

/// The Debian multiarch triplet (`gcc -print-multiarch`) of a Linux target
/// given by its `CARGO_CFG_TARGET_{ARCH,ENV,ABI,ENDIAN}`.
fn multiarch_triplet(arch: &str, env: &str, abi: &str, endian: &str) -> Option<String> {
    let libc = if env == "musl" { "musl" } else { "gnu" };
    let (cpu, abi) = match (arch, abi) {
        ("x86_64", "x32") => ("x86_64", "x32"),
        ("x86_64", _) => ("x86_64", ""),
        ("x86", _) => ("i386", ""),
        ("aarch64", _) => ("aarch64", ""),
        ("arm", abi) if abi.ends_with("hf") => ("arm", "eabihf"),
        ("arm", _) => ("arm", "eabi"),
        ("riscv64", _) => ("riscv64", ""),
        ("powerpc64", _) if endian == "little" => ("powerpc64le", ""),
        ("powerpc64", _) => ("powerpc64", ""),
        ("s390x", _) => ("s390x", ""),
        ("loongarch64", _) => ("loongarch64", ""),
        _ => return None,
    };
    Some(format!("{cpu}-linux-{libc}{abi}"))
}

/// What `gcc -print-multiarch` says (for an architecture not in the table,
/// when building for the host).
fn gcc_multiarch() -> Option<String> {
    let out = Command::new("gcc").arg("-print-multiarch").output().ok()?;
    let triplet = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !triplet.is_empty()).then_some(triplet)
}

/// The directory with the target's <asm/types.h>, which a `-target bpf`
/// compile does not search: `$FIBNEIGH_MULTIARCH_INCLUDE`, else
/// /usr/include/<the target's multiarch triplet>.
fn multiarch_include() -> PathBuf {
    println!("cargo:rerun-if-env-changed=FIBNEIGH_MULTIARCH_INCLUDE");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let target = var("TARGET");
    let (dir, why) = if let Some(dir) = env::var_os("FIBNEIGH_MULTIARCH_INCLUDE") {
        (PathBuf::from(dir), "FIBNEIGH_MULTIARCH_INCLUDE".to_string())
    } else {
        let arch = var("CARGO_CFG_TARGET_ARCH");
        if var("CARGO_CFG_TARGET_OS") != "linux" {
            panic!(
                "the BPF programs need Linux uAPI headers, but the target {target} is not Linux"
            );
        }
        let triplet = multiarch_triplet(
            &arch,
            &var("CARGO_CFG_TARGET_ENV"),
            &var("CARGO_CFG_TARGET_ABI"),
            &var("CARGO_CFG_TARGET_ENDIAN"),
        )
        .or_else(|| (var("HOST") == target).then(gcc_multiarch).flatten())
        .unwrap_or_else(|| {
            panic!(
                "no multiarch include directory known for the target {target} (arch {arch}): \
                 set FIBNEIGH_MULTIARCH_INCLUDE to the directory holding its asm/types.h"
            )
        });
        (
            Path::new("/usr/include").join(&triplet),
            format!("the multiarch directory of the target {target} ({triplet})"),
        )
    };
    if !dir.join("asm/types.h").is_file() {
        panic!(
            "{}/asm/types.h does not exist: the BPF programs include <asm/types.h> from {why}; \
             install the target's Linux uAPI headers (Debian: linux-libc-dev for its \
             architecture) or set FIBNEIGH_MULTIARCH_INCLUDE to the directory holding them",
            dir.display()
        );
    }
    dir
}

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = clang();
    let multiarch = format!("-I{}", multiarch_include().display());
    println!("cargo:rerun-if-env-changed=FIBNEIGH_CLANG");
    for header in [
        "src/bpf/fib.h",
        "include/fib_neigh.h",
        "examples/example_stats.h",
    ] {
        println!("cargo:rerun-if-changed={header}");
    }
    for (dir, name) in PROGRAMS {
        let src = format!("{dir}/{name}.bpf.c");
        println!("cargo:rerun-if-changed={src}");
        // The object stays in OUT_DIR: the examples' loader digests it and
        // `fibneigh example --write-objects` hands it out.
        SkeletonBuilder::new()
            .source(&src)
            .obj(out.join(format!("{name}.bpf.o")))
            .clang(&clang)
            .clang_args([
                multiarch.as_str(),
                "-Isrc/bpf",
                "-Iinclude",
                "-Wall",
                "-O2",
                "-g",
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src} with {clang}: {e:?}"));
    }
}
