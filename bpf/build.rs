//! Builds the BPF programs in src/bpf into libbpf-rs skeletons.
//! The compiler is `$FIBNEIGH_CLANG`, else `clang-16` (Debian 12), else
//! `clang`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

const PROGRAMS: &[&str] = &["probe", "forwarder", "announce", "xdp_pass", "bench"];

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

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = clang();
    println!("cargo:rerun-if-env-changed=FIBNEIGH_CLANG");
    println!("cargo:rerun-if-changed=src/bpf/fib.h");
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        println!("cargo:rerun-if-changed={src}");
        SkeletonBuilder::new()
            .source(&src)
            .clang(&clang)
            // <asm/types.h> lives in the multiarch directory, which a
            // -target bpf compile does not search.
            .clang_args([
                "-I/usr/include/x86_64-linux-gnu",
                "-Isrc/bpf",
                "-Wall",
                "-O2",
                "-g",
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src} with {clang}: {e:?}"));
    }
}
