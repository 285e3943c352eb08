//! The VM pipeline's text: a kernel's one-line description, and `vm
//! timing`'s figures.

use std::time::Duration;

use fibneigh_vm::timing::Timings;
use fibneigh_vm::{Accel, CacheKey, KernelImage};

use crate::present::Table;

/// One line on a kernel: its release, upstream and origin, and what it
/// was built from ([`describe_build`]).
pub fn describe(image: &KernelImage) -> String {
    format!(
        "kernel {} (upstream {}, {}; {})",
        image.release,
        image.upstream,
        image.origin,
        describe_build(&image.key)
    )
}

/// What a kernel was built from, in one line: also what `vm run` tells
/// the guest, whose `uname -r` is the same for every series on one base.
pub fn describe_build(key: &CacheKey) -> String {
    format!(
        "series {}, profile {}, {}, config {}, base {}",
        key.series, key.profile, key.arch, key.config, key.base
    )
}

fn minutes(d: Duration) -> String {
    format!("{:.1} min", d.as_secs_f64() / 60.0)
}

/// `vm timing`'s figures: a heading line and the table.
pub fn timings(t: &Timings) -> String {
    let secs = |d: Duration| d.as_secs_f64();
    let mut rows: Vec<(String, String)> = Vec::new();
    if let Some(d) = t.clean_build {
        rows.push((
            "clean build (unpack, commit, patch, configure, make; no ccache)".into(),
            minutes(d),
        ));
    }
    rows.push((
        "rebuild after touching net/core/filter.c".into(),
        minutes(t.rebuild),
    ));
    let label = match t.accel {
        Accel::Kvm => "KVM",
        Accel::Tcg => "TCG",
    };
    rows.push((
        format!(
            "boot-to-command for `true` ({label}, median of {})",
            t.boots.len()
        ),
        format!(
            "{:.1} s (min {:.1}, max {:.1})",
            secs(t.median_boot()),
            secs(t.boots[0]),
            secs(t.boots[t.boots.len() - 1])
        ),
    ));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "vm timing: kernel {} ({}), {cpus} CPUs, make -j{}\n",
        t.image.release, t.image.origin, t.jobs
    );
    let mut table = Table::new().indent(2);
    for (k, v) in rows {
        table.row([k, v]);
    }
    out.push_str(&table.render());
    out
}
