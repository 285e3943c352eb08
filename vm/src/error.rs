use std::path::PathBuf;
use std::time::Duration;

/// Everything the VM pipeline can fail with. Each variant names the thing
/// that went wrong so the CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}){}", tail_suffix(.output))]
    Command {
        cmd: String,
        status: String,
        output: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no Debian mirror found in the apt configuration under {}", .0.display())]
    NoMirror(PathBuf),
    #[error("package {package} from {suite}: {reason}")]
    Package {
        package: String,
        suite: String,
        reason: String,
    },
    #[error("kernel source {}: {reason}", .path.display())]
    BadSource { path: PathBuf, reason: String },
    #[error("{}:{line}: {reason}", .file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}:{line}: patch {patch} does not exist", .series.display())]
    MissingPatch {
        series: PathBuf,
        line: usize,
        patch: String,
    },
    #[error("patch {} does not apply:\n{message}", .patch.display())]
    PatchDoesNotApply { patch: PathBuf, message: String },
    #[error("profile {profile} merges {} next to the config fragment {}, and there is none: add one, or choose another profile (--profile tiny builds the fragment alone)", .extra.display(), .fragment.display())]
    NoProfileFragment {
        profile: &'static str,
        fragment: PathBuf,
        extra: PathBuf,
    },
    #[error("`make olddefconfig` dropped {} option(s) from {}: {}", .dropped.len(), .fragment.display(), .dropped.join(", "))]
    DroppedOptions {
        fragment: PathBuf,
        dropped: Vec<String>,
    },
    #[error("no {what} tree unpacked under {}: `fibneigh vm tree --base {args}` makes it", .trees.display())]
    NoTree {
        what: String,
        /// The `--base` (and `--arch`) arguments that make it.
        args: String,
        trees: PathBuf,
    },
    #[error("only {} free on the file system of {}, and a kernel build may need {} (a tree unpacked and built takes about 3.5 GB): free some space (`fibneigh vm cache list` shows what the cache holds, `fibneigh vm cache prune --max-size SIZE` removes the kernels used least recently), or lower --min-free", .free.display().iec(), .dir.display(), .need.display().iec())]
    DiskSpace {
        dir: PathBuf,
        free: bytesize::ByteSize,
        need: bytesize::ByteSize,
    },
    #[error("kernel build failed; full log: {}\n{tail}", .log.display())]
    Build { log: PathBuf, tail: String },
    #[error("{} is not the kernel just built: {why}", .bzimage.display())]
    Payload { bzimage: PathBuf, why: String },
    #[error("kernel image {} does not exist", .0.display())]
    NoKernel(PathBuf),
    #[error("the project's virtme-ng in {} cannot be used: {what}; run scripts/setup.sh (FIBNEIGH_VNG_VENV names another venv)", .venv.display())]
    VirtmeNg { venv: PathBuf, what: String },
    #[error("the guest did not boot or never started the command; console log: {}", .console_log.display())]
    GuestNoStart { console_log: PathBuf },
    #[error("the kernel printed nothing within {}s under KVM: this host's KVM cannot run it; console log: {}", .waited.as_secs(), .console_log.display())]
    KvmStalled {
        waited: Duration,
        console_log: PathBuf,
    },
    #[error("the guest kernel reported {count} bug(s); the first:\n{first}\nconsole log: {}", .console_log.display())]
    GuestSplat {
        count: usize,
        first: String,
        console_log: PathBuf,
    },
    #[error("the guest kernel panicked; console log: {}", .console_log.display())]
    GuestPanic { console_log: PathBuf },
    #[error("the guest did not finish within {}s; console log: {}", .timeout.as_secs(), .console_log.display())]
    GuestTimeout {
        timeout: Duration,
        console_log: PathBuf,
    },
    #[error("the guest command failed ({status}); console log: {}", .console_log.display())]
    GuestCommandFailed {
        status: std::process::ExitStatus,
        console_log: PathBuf,
    },
    #[error("the guest ran the command but recorded no exit status (killed, or the guest crashed); console log: {}", .console_log.display())]
    GuestNoStatus { console_log: PathBuf },
    #[error("interrupted; the guest was stopped; console log: {}", .console_log.display())]
    Interrupted { console_log: PathBuf },
}

fn tail_suffix(output: &str) -> String {
    let output = output.trim_end();
    if output.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = output.lines().collect();
    let start = lines.len().saturating_sub(30);
    format!(":\n{}", lines[start..].join("\n"))
}

impl Error {
    /// An I/O error for a file or directory that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an I/O error.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}
