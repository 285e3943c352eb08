//! The libbpf-cargo skeletons of every BPF object, in one leaf module: the
//! loaders use them, and `params` takes fib.h's enums from the forwarder's
//! `types` (see `FIBNEIGH_EXPORT_ENUMS` there), without importing a loader.

macro_rules! skeleton {
    ($(#[$m:meta])* $name:ident, $file:literal) => {
        $(#[$m])*
        pub(crate) mod $name {
            #![allow(clippy::all, unused_imports, non_camel_case_types, non_snake_case)]
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

skeleton!(
    /// The forwarder (`forwarder.bpf.c`); its `types` carry fib.h's enums.
    forwarder, "forwarder.skel.rs");
skeleton!(
    /// One lookup through `BPF_PROG_TEST_RUN` (`probe.bpf.c`).
    probe, "probe.skel.rs");
skeleton!(
    /// The lookup loop the benchmarks time (`bench.bpf.c`).
    bench, "bench.skel.rs");
skeleton!(
    /// The lab switch's announcement filter (`announce.bpf.c`).
    announce, "announce.skel.rs");
skeleton!(
    /// XDP_PASS, for the veth peer of a redirect target (`xdp_pass.bpf.c`).
    xdp_pass, "xdp_pass.skel.rs");
skeleton!(
    /// The public header's tc example (`examples/tc_router.bpf.c`).
    tc_router, "tc_router.skel.rs");
skeleton!(
    /// The public header's XDP example (`examples/xdp_router.bpf.c`).
    xdp_router, "xdp_router.skel.rs");
skeleton!(
    /// REFRESH under a qdisc's root lock and from every CPU
    /// (`lock_stress.bpf.c`).
    lock_stress, "lock_stress.skel.rs");
