//! BPF programs and their loaders: the lookup probe (one `bpf_fib_lookup`
//! per `BPF_PROG_TEST_RUN`), the forwarder, and the lab's announcement
//! filter.

/// A type that owns one loaded skeleton (field `skel`), and its `load()`:
/// `skel_owner!(/// doc; pub struct Name(skel::XSkel<'static>) from
/// skel::XSkelBuilder, "load the x BPF object");`.
macro_rules! skel_owner {
    ($(#[$m:meta])* $vis:vis struct $name:ident($skel:ty) from $builder:ty, $what:literal) => {
        $(#[$m])*
        $vis struct $name {
            skel: $skel,
        }

        impl $name {
            /// Load it into the kernel (needs CAP_BPF / root).
            pub fn load() -> $crate::Result<Self> {
                $crate::load_skel::<$builder>($what).map(|skel| Self { skel })
            }
        }
    };
}

pub mod announce;
pub mod attach;
pub mod bench;
pub mod example;
pub mod forwarder;
pub mod hook;
pub mod lock_stress;
pub mod object;
pub mod params;
pub mod probe;
mod skel;
pub mod xdp_pass;

pub use announce::AnnounceFilter;
pub use attach::{AttachIn, Attachment, EnteredNetns};
pub use forwarder::{Counters, Forwarder, Policy};
pub use hook::Hook;
pub use object::ObjectProgram;
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
    /// A BPF object given to the harness that it cannot use.
    #[error("BPF object {}: {reason}", .path.display())]
    Object {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("the {program} example program cannot attach at {asked}")]
    WrongHook {
        program: &'static str,
        asked: &'static str,
    },
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

/// Run `prog` (the entry point for `hook`) once on `frame` with
/// `BPF_PROG_TEST_RUN`, as if it arrived on `ingress_ifindex` of the calling
/// thread's namespace (for tc, the frame must be addressed to that device's
/// MAC to count as this host's). Returns the program's verdict (`TC_ACT_*`
/// or `XDP_*`); the kernel does not carry out a redirect.
pub(crate) fn test_run_once(
    prog: &libbpf_rs::ProgramMut<'_>,
    hook: Hook,
    frame: &[u8],
    ingress_ifindex: u32,
    what: &'static str,
) -> Result<u32> {
    test_run_repeat(prog, hook, frame, ingress_ifindex, 1, what)
}

/// [`test_run_once`], the program run `repeat` times in the kernel.
pub(crate) fn test_run_repeat(
    prog: &libbpf_rs::ProgramMut<'_>,
    hook: Hook,
    frame: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
    what: &'static str,
) -> Result<u32> {
    // Only the leading fields the kernel accepts are passed; it zeroes the
    // rest. Offsets are those of the uAPI structs.
    let mut ctx = match hook {
        Hook::Tc => {
            // struct __sk_buff up to `ifindex`: ingress_ifindex at 36 (sets
            // skb_iif), ifindex at 40 (the device).
            let mut skb = [0u8; 44];
            skb[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
            skb[40..44].copy_from_slice(&ingress_ifindex.to_ne_bytes());
            skb.to_vec()
        }
        Hook::Xdp => xdp_md(frame, ingress_ifindex).to_vec(),
    };
    let input = libbpf_rs::ProgramInput {
        context_in: Some(&mut ctx),
        data_in: Some(frame),
        repeat: repeat.max(1),
        ..Default::default()
    };
    Ok(prog.test_run(input).ctx(what)?.return_value)
}

/// The leading fields of a `struct xdp_md` for a test run of `frame`:
/// data_end at 4 (the linear length), ingress_ifindex at 12.
pub(crate) fn xdp_md(frame: &[u8], ingress_ifindex: u32) -> [u8; 24] {
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&len.to_ne_bytes());
    md[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    md
}

/// A libbpf error for the errno a raw libbpf call returned.
pub(crate) fn os_error(errno: i32) -> libbpf_rs::Error {
    libbpf_rs::Error::from(std::io::Error::from_raw_os_error(errno))
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
pub(crate) fn load_skel<B: libbpf_rs::skel::SkelBuilder<'static> + Default>(
    what: &'static str,
) -> Result<<B::Output as libbpf_rs::skel::OpenSkel<'static>>::Output> {
    use libbpf_rs::skel::OpenSkel;
    let open = open_skel(B::default(), what)?;
    open.load().ctx(what)
}

/// A skeleton's global data section (`.bss`, `.rodata`, ...), or
/// [`Error::NoGlobalData`] when the object has none.
pub(crate) fn global<'a, T>(section: &'a Option<&mut T>) -> Result<&'a T> {
    section.as_deref().ok_or(Error::NoGlobalData)
}

/// As [`global`], to write.
pub(crate) fn global_mut<'a, T>(section: &'a mut Option<&mut T>) -> Result<&'a mut T> {
    section.as_deref_mut().ok_or(Error::NoGlobalData)
}

pub(crate) trait BpfContext<T> {
    fn ctx(self, what: &'static str) -> Result<T>;
}

impl<T> BpfContext<T> for libbpf_rs::Result<T> {
    fn ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|source| Error::Bpf { what, source })
    }
}
