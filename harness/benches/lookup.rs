//! Criterion benchmarks of `bpf_fib_lookup()` by flag: flags 0,
//! SKIP_NEIGH, NEIGH_STATE and NEIGH_REFRESH on a REACHABLE and a STALE
//! entry, IPv4 and IPv6, from tc and XDP.
//!
//! Each measurement is one `BPF_PROG_TEST_RUN` with a large repeat count
//! of a program calling the helper 64 times per run; `iter_custom` returns
//! the kernel's own per-run duration times the runs, so no system call or
//! test-run setup is in the figures. Needs root (CAP_BPF, CAP_NET_ADMIN):
//! without it the benchmarks say so and measure nothing. Flags the running
//! kernel rejects are reported as skipped.
//!
//!   cargo bench -p fibneigh --bench lookup            (host)
//!   scripts/criterion-vm.sh                           (patched kernel in the VM)

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fibneigh::bench::lookup::{Case, LookupLab, COLUMNS};
use fibneigh::scenario::Support;
use fibneigh_bpf::bench::LOOKUPS_PER_RUN;
use fibneigh_bpf::Hook;

fn lookups(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: the lookup benchmarks need root (BPF_PROG_TEST_RUN, a netns lab)");
        return;
    }
    // SIGINT/SIGTERM set a flag the measurements check, so the lab is
    // removed on the way out.
    if let Err(e) = fibneigh::stop::install() {
        eprintln!("error: cannot install the signal handlers: {e}");
        std::process::exit(1);
    }
    let support = match Support::probe() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: cannot probe the kernel: {e}");
            return;
        }
    };
    let mut lab = match LookupLab::new(support) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot build the lab: {e}");
            std::process::exit(1);
        }
    };
    for case in Case::all(&[Hook::Tc, Hook::Xdp]) {
        let mut group = c.benchmark_group(format!("bpf_fib_lookup/{}", case.label()));
        group
            .throughput(Throughput::Elements(1))
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(20);
        for (name, flags) in COLUMNS {
            if let Some(f) = flags {
                let missing = lab.supports(f);
                if !missing.is_empty() {
                    eprintln!(
                        "SKIPPED: {}/{name}: unsupported by this kernel ({})",
                        case.label(),
                        missing.join(", ")
                    );
                    continue;
                }
                if let Err(e) = lab.verify(&case, f) {
                    // Unwinding drops the lab (its namespaces go with it).
                    panic!("{}/{name}: {e}", case.label());
                }
            }
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_custom(|iters| {
                    if fibneigh::stop::requested() {
                        panic!("interrupted");
                    }
                    let runs = iters.div_ceil(u64::from(LOOKUPS_PER_RUN)).max(1);
                    let runs = u32::try_from(runs).unwrap_or(u32::MAX);
                    let t = lab
                        .prepare(&case)
                        .and_then(|()| lab.sample(&case, flags, runs))
                        .unwrap_or_else(|e| panic!("{}/{name}: {e}", case.label()));
                    Duration::from_secs_f64(t.ns_per_lookup * iters as f64 / 1e9)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lookups);
criterion_main!(benches);
