//! BPF programs and their loaders: the lookup probe (one `bpf_fib_lookup`
//! per `BPF_PROG_TEST_RUN`), the forwarder, and the lab's announcement
//! filter.

pub mod announce;
pub mod attach;
pub mod bench;
pub mod forwarder;
pub mod params;
pub mod probe;
pub mod xdp_pass;

pub use announce::AnnounceFilter;
pub use attach::{Attachment, EnteredNetns};
pub use forwarder::{Counters, Forwarder, Policy};
pub use params::{flags, nud, ret, FibParams};
pub use xdp_pass::XdpPass;

/// Errors from loading or running the programs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what}: {source}")]
    Bpf {
        what: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("the program's global data is not memory-mapped (kernel lacks BPF_F_MMAPABLE?)")]
    NoGlobalData,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Send libbpf's warnings to stderr, minus one known-benign line: the
/// kernel's "Exclusivity flag on, cannot modify" when a tc attach finds
/// the device's clsact qdisc already there (libbpf-rs takes that EEXIST as
/// success). A program that attaches tc programs repeatedly calls this
/// once.
pub fn quiet_benign_libbpf_warnings() {
    fn print(_level: libbpf_rs::PrintLevel, msg: String) {
        if !msg.contains("Exclusivity flag on, cannot modify") {
            eprint!("{msg}");
        }
    }
    libbpf_rs::set_print(Some((libbpf_rs::PrintLevel::Warn, print)));
}

/// The per-CPU `u64` values stored under `key` in `map`, summed over CPUs
/// (0 for a missing key).
pub(crate) fn percpu_u64_sum<M: libbpf_rs::MapCore>(
    map: &M,
    key: u32,
    what: &'static str,
) -> Result<u64> {
    let per_cpu = map
        .lookup_percpu(&key.to_ne_bytes(), libbpf_rs::MapFlags::ANY)
        .ctx(what)?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8))
        .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        .sum())
}

/// Open a skeleton. A skeleton borrows its object storage for its whole
/// life and our loaded programs live as long as their owner, so the storage
/// (one pointer) is leaked per load; the BPF object itself is freed when the
/// skeleton drops.
pub(crate) fn open_skel<B: libbpf_rs::skel::SkelBuilder<'static>>(
    builder: B,
    what: &'static str,
) -> Result<B::Output> {
    let storage: &'static mut std::mem::MaybeUninit<libbpf_rs::OpenObject> =
        Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    builder.open(storage).ctx(what)
}

/// Open and load a skeleton with nothing to set in between; `what` names
/// the object in errors ("the probe", ...).
pub(crate) fn load_skel<B: libbpf_rs::skel::SkelBuilder<'static>>(
    builder: B,
    what: &'static str,
) -> Result<<B::Output as libbpf_rs::skel::OpenSkel<'static>>::Output> {
    use libbpf_rs::skel::OpenSkel;
    let open = open_skel(builder, what)?;
    open.load().ctx(what)
}

pub(crate) trait BpfContext<T> {
    fn ctx(self, what: &'static str) -> Result<T>;
}

impl<T> BpfContext<T> for libbpf_rs::Result<T> {
    fn ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|source| Error::Bpf { what, source })
    }
}
