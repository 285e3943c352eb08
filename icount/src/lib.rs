//! Guest instructions per `bpf_fib_lookup()` call, counted by a QEMU TCG
//! plugin (`icount/plugin`, loaded into `qemu-system-x86_64`).
//!
//! This crate is the plugin's logic without its FFI, so that it can be
//! unit-tested and so that the harness reads the plugin's report with the
//! same types:
//!
//! - [`Args`]: the plugin's `key=value` arguments (where to write the
//!   report, the helpers' and the markers' entry addresses);
//! - [`call_target`]: the one x86-64 encoding the plugin decodes at
//!   translation time (`call rel32`);
//! - [`Recorder`]: the per-call bookkeeping, fed from the plugin's
//!   callbacks; [`Report`]: what it writes at exit.
//!
//! # Method
//!
//! Every guest instruction at a kernel address (`>=` [`KERNEL_BASE`])
//! increments one 64-bit counter (an inline add, emitted at translation
//! time). A call of a helper starts when its first instruction is about to
//! run (an exec callback at its entry address) and ends when the
//! instruction its `ret` returns to is about to run: the BPF JIT calls a
//! helper with `call rel32`, so translating that call tells the plugin
//! the return site (the call's address + 5), which gets an exec callback
//! when it is translated (always later: only the return reaches it). The
//! call's count is the counter's difference between the two callbacks:
//! every kernel instruction executed from the helper's first instruction
//! to its `ret` included, callees and tail calls included, whatever the
//! order QEMU runs a callback and an inline add of one instruction in
//! (both ends have the same order). An interrupt taken during the call is
//! counted too; [`Segment::mode`] (the most frequent per-call count) is
//! the figure that ignores those rare calls. Calls from the BPF
//! interpreter (an indirect call) are not seen: the JIT must be on.
//!
//! A marker is the entry of a function (e.g. `bpf_prog_test_run_xdp`):
//! each time it runs a new [`Segment`] starts, so the calls of each
//! `BPF_PROG_TEST_RUN` are counted apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The lowest x86-64 kernel address (the upper half of the canonical
/// address space): instructions at or above it are counted.
pub const KERNEL_BASE: u64 = 0xffff_8000_0000_0000;

/// The layout version of [`Report`].
pub const REPORT_VERSION: u32 = 1;

/// Bad plugin arguments or symbol tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("plugin argument {0:?} is not key=value")]
    NotKeyValue(String),
    #[error("plugin argument {key}={value}: not a hexadecimal address (0x...)")]
    BadAddress { key: String, value: String },
    #[error("unknown plugin argument {0:?} (known: out, helper, marker, trace)")]
    UnknownKey(String),
    #[error("plugin argument out=PATH is missing")]
    NoOut,
    #[error("no helper=ADDR plugin argument: nothing to count")]
    NoHelper,
    #[error("symbol {0} is not a text symbol of the kernel's symbol table")]
    NoSymbol(String),
    #[error("symbol {name} has {count} text addresses in the kernel's symbol table")]
    AmbiguousSymbol { name: String, count: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The plugin's arguments: `out=PATH`, `helper=0xADDR` (repeatable, in
/// order), `marker=0xADDR` (repeatable, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub out: PathBuf,
    pub helpers: Vec<u64>,
    pub markers: Vec<u64>,
    /// Keep the first `trace` events in the report (for debugging).
    pub trace: usize,
}

fn hex(key: &str, value: &str) -> Result<u64> {
    value
        .strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| Error::BadAddress {
            key: key.into(),
            value: value.into(),
        })
}

impl Args {
    /// Parse the plugin's argv (each `key=value`).
    pub fn parse<I, S>(argv: I) -> Result<Args>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = None;
        let mut helpers = Vec::new();
        let mut markers = Vec::new();
        let mut trace = 0;
        for arg in argv {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| Error::NotKeyValue(arg.into()))?;
            match key {
                "out" => out = Some(PathBuf::from(value)),
                "helper" => helpers.push(hex(key, value)?),
                "marker" => markers.push(hex(key, value)?),
                "trace" => {
                    trace = value.parse().map_err(|_| Error::BadAddress {
                        key: key.into(),
                        value: value.into(),
                    })?
                }
                _ => return Err(Error::UnknownKey(key.into())),
            }
        }
        if helpers.is_empty() {
            return Err(Error::NoHelper);
        }
        Ok(Args {
            out: out.ok_or(Error::NoOut)?,
            helpers,
            markers,
            trace,
        })
    }

    /// The value of QEMU's `-plugin` option loading `plugin` with these
    /// arguments (QEMU's option syntax: a comma in a value is doubled).
    pub fn qemu_option(&self, plugin: &std::path::Path) -> String {
        let esc = |p: &std::path::Path| p.display().to_string().replace(',', ",,");
        let mut s = format!("file={},out={}", esc(plugin), esc(&self.out));
        for h in &self.helpers {
            s.push_str(&format!(",helper={h:#x}"));
        }
        for m in &self.markers {
            s.push_str(&format!(",marker={m:#x}"));
        }
        if self.trace > 0 {
            s.push_str(&format!(",trace={}", self.trace));
        }
        s
    }
}

/// The address of each of `names` among the text symbols (`T`/`t`) of
/// `nm` output (`ADDR TYPE NAME` lines), in order. A name with two
/// different addresses is an error (a static function defined twice).
pub fn text_symbols(nm: &str, names: &[&str]) -> Result<Vec<u64>> {
    let mut found: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for line in nm.lines() {
        let mut f = line.split_whitespace();
        let (Some(addr), Some(kind), Some(name), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if !matches!(kind, "T" | "t") || !names.contains(&name) {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(addr, 16) {
            let v = found.entry(name).or_default();
            if !v.contains(&a) {
                v.push(a);
            }
        }
    }
    names
        .iter()
        .map(|n| match found.get(n).map(Vec::as_slice) {
            Some([a]) => Ok(*a),
            Some(v) if v.len() > 1 => Err(Error::AmbiguousSymbol {
                name: (*n).into(),
                count: v.len(),
            }),
            _ => Err(Error::NoSymbol((*n).into())),
        })
        .collect()
}

/// The target of `insn` at `vaddr` if it is a `call rel32` (`e8`).
pub fn call_target(vaddr: u64, insn: &[u8]) -> Option<u64> {
    match insn {
        [0xe8, a, b, c, d] => {
            let rel = i32::from_le_bytes([*a, *b, *c, *d]);
            Some(vaddr.wrapping_add(5).wrapping_add(rel as i64 as u64))
        }
        _ => None,
    }
}

/// The calls counted between two markers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Index of the marker that opened it (in [`Args::markers`]); `None`
    /// for the calls before the first marker.
    pub marker: Option<usize>,
    /// Completed calls.
    pub calls: u64,
    /// Completed calls per helper (index in [`Args::helpers`]).
    pub per_helper: Vec<u64>,
    /// The first call's instruction count.
    pub first: Option<u64>,
    /// `[instructions, calls]`, by instructions.
    pub histogram: Vec<[u64; 2]>,
}

impl Segment {
    fn new(marker: Option<usize>, helpers: usize) -> Self {
        Segment {
            marker,
            per_helper: vec![0; helpers],
            ..Default::default()
        }
    }

    fn add(&mut self, helper: usize, insns: u64) {
        self.calls += 1;
        if let Some(n) = self.per_helper.get_mut(helper) {
            *n += 1;
        }
        self.first.get_or_insert(insns);
        match self.histogram.binary_search_by_key(&insns, |b| b[0]) {
            Ok(i) => self.histogram[i][1] += 1,
            Err(i) => self.histogram.insert(i, [insns, 1]),
        }
    }

    /// The most frequent per-call count and how many calls had it (the
    /// smaller count on a tie).
    pub fn mode(&self) -> Option<(u64, u64)> {
        self.histogram
            .iter()
            .fold(None, |best: Option<[u64; 2]>, b| match best {
                Some(m) if m[1] >= b[1] => Some(m),
                _ => Some(*b),
            })
            .map(|b| (b[0], b[1]))
    }

    pub fn min(&self) -> Option<u64> {
        self.histogram.first().map(|b| b[0])
    }

    pub fn max(&self) -> Option<u64> {
        self.histogram.last().map(|b| b[0])
    }
}

/// A call in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Open {
    helper: usize,
    /// The counter's value at its entry callback.
    start: u64,
}

/// What the plugin writes at exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub helpers: Vec<u64>,
    pub markers: Vec<u64>,
    /// Kernel instructions executed in the whole run.
    pub kernel_insns: u64,
    /// Calls before the first marker.
    pub unmarked: Segment,
    /// One per marker hit, in order.
    pub segments: Vec<Segment>,
    /// Returns seen with no call in progress (should stay 0).
    pub stray_returns: u64,
    /// Calls still open at exit.
    pub unclosed: u64,
    /// Problems the plugin saw (none expected).
    pub errors: Vec<String>,
    /// The first events, when asked for (`trace=N`).
    #[serde(default)]
    pub trace: Vec<String>,
}

/// Per-call bookkeeping, driven by the plugin's callbacks.
#[derive(Debug, Clone)]
pub struct Recorder {
    helpers: Vec<u64>,
    markers: Vec<u64>,
    unmarked: Segment,
    segments: Vec<Segment>,
    open: Vec<Open>,
    stray_returns: u64,
    errors: Vec<String>,
    trace_left: usize,
    trace: Vec<String>,
}

/// At most this many distinct errors are kept.
const MAX_ERRORS: usize = 16;

impl Recorder {
    pub fn new(args: &Args) -> Self {
        Recorder {
            helpers: args.helpers.clone(),
            markers: args.markers.clone(),
            unmarked: Segment::new(None, args.helpers.len()),
            segments: Vec::new(),
            open: Vec::new(),
            stray_returns: 0,
            errors: Vec::new(),
            trace_left: args.trace,
            trace: Vec::new(),
        }
    }

    /// Keep `event` if tracing is on and its budget lasts.
    pub fn trace(&mut self, event: impl FnOnce() -> String) {
        if self.trace_left > 0 {
            self.trace_left -= 1;
            self.trace.push(event());
        }
    }

    /// Marker `marker` ran: later calls count in a new segment.
    pub fn marker(&mut self, marker: usize) {
        self.trace(|| format!("marker {marker}"));
        self.segments
            .push(Segment::new(Some(marker), self.helpers.len()));
    }

    /// A call of `helper` is about to run its first instruction; the
    /// counter reads `count`.
    pub fn enter(&mut self, helper: usize, count: u64) {
        self.trace(|| format!("enter {helper} at {count}"));
        self.open.push(Open {
            helper,
            start: count,
        });
    }

    /// Calls in progress.
    pub fn open_calls(&self) -> usize {
        self.open.len()
    }

    /// The innermost call's return site is about to run; the counter
    /// reads `count`.
    pub fn exit(&mut self, count: u64) {
        self.trace(|| format!("exit at {count}"));
        let Some(call) = self.open.pop() else {
            self.stray_returns += 1;
            return;
        };
        let insns = count.wrapping_sub(call.start);
        self.segments
            .last_mut()
            .unwrap_or(&mut self.unmarked)
            .add(call.helper, insns);
    }

    /// Record a problem once.
    pub fn error(&mut self, what: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&what) {
            self.errors.push(what);
        }
    }

    pub fn report(&self, kernel_insns: u64) -> Report {
        Report {
            version: REPORT_VERSION,
            helpers: self.helpers.clone(),
            markers: self.markers.clone(),
            kernel_insns,
            unmarked: self.unmarked.clone(),
            segments: self.segments.clone(),
            stray_returns: self.stray_returns,
            unclosed: self.open.len() as u64,
            errors: self.errors.clone(),
            trace: self.trace.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args::parse([
            "out=/tmp/x.json",
            "helper=0xffffffff81000010",
            "helper=0xffffffff81000020",
            "marker=0xffffffff81000100",
        ])
        .unwrap()
    }

    #[test]
    fn parses_arguments_in_order() {
        let a = args();
        assert_eq!(a.out, PathBuf::from("/tmp/x.json"));
        assert_eq!(a.helpers, [0xffffffff81000010, 0xffffffff81000020]);
        assert_eq!(a.markers, [0xffffffff81000100]);
        assert_eq!(
            a.qemu_option(std::path::Path::new("/p/a,b.so")),
            "file=/p/a,,b.so,out=/tmp/x.json,helper=0xffffffff81000010,\
             helper=0xffffffff81000020,marker=0xffffffff81000100"
        );
    }

    #[test]
    fn rejects_bad_arguments_by_name() {
        assert_eq!(Args::parse(["out"]), Err(Error::NotKeyValue("out".into())));
        assert_eq!(
            Args::parse(["out=x", "helper=12"]),
            Err(Error::BadAddress {
                key: "helper".into(),
                value: "12".into()
            })
        );
        assert_eq!(
            Args::parse(["out=x", "helpr=0x1"]),
            Err(Error::UnknownKey("helpr".into()))
        );
        assert_eq!(Args::parse(["out=x"]), Err(Error::NoHelper));
        assert_eq!(Args::parse(["helper=0x1"]), Err(Error::NoOut));
    }

    #[test]
    fn finds_text_symbols() {
        let nm = "ffffffff8137149b T bpf_xdp_fib_lookup\n\
                  ffffffff81371555 T bpf_skb_fib_lookup\n\
                  ffffffff82000000 D bpf_data\n\
                  ffffffff81000001 t twice\nffffffff81000002 t twice\n";
        assert_eq!(
            text_symbols(nm, &["bpf_skb_fib_lookup", "bpf_xdp_fib_lookup"]),
            Ok(vec![0xffffffff81371555, 0xffffffff8137149b])
        );
        assert_eq!(
            text_symbols(nm, &["bpf_data"]),
            Err(Error::NoSymbol("bpf_data".into()))
        );
        assert_eq!(
            text_symbols(nm, &["twice"]),
            Err(Error::AmbiguousSymbol {
                name: "twice".into(),
                count: 2
            })
        );
    }

    #[test]
    fn decodes_call_rel32() {
        let rel = (-0x1234i32).to_le_bytes();
        let insn = [0xe8, rel[0], rel[1], rel[2], rel[3]];
        assert_eq!(
            call_target(0xffffffffa0001000, &insn),
            Some(0xffffffffa0001005 - 0x1234)
        );
        assert_eq!(call_target(0x1000, &[0xff, 0xd0]), None); // call *%rax
    }

    #[test]
    fn counts_each_call_from_entry_to_its_return_site() {
        let mut r = Recorder::new(&args());
        r.enter(0, 100);
        r.exit(140);
        assert_eq!(r.open_calls(), 0);
        r.marker(0);
        for (start, end) in [(200, 240), (300, 340), (400, 450)] {
            r.enter(1, start);
            r.exit(end);
        }
        r.enter(0, 500);
        let rep = r.report(1000);
        assert_eq!(rep.unmarked.calls, 1);
        assert_eq!(rep.unmarked.histogram, vec![[40, 1]]);
        let s = &rep.segments[0];
        assert_eq!((s.calls, s.first), (3, Some(40)));
        assert_eq!(s.per_helper, vec![0, 3]);
        assert_eq!(s.mode(), Some((40, 2)));
        assert_eq!((s.min(), s.max()), (Some(40), Some(50)));
        assert_eq!(rep.unclosed, 1);
    }

    #[test]
    fn nested_calls_close_innermost_first() {
        let mut r = Recorder::new(&args());
        r.enter(0, 10);
        r.enter(1, 20); // e.g. from an interrupt's program
        r.exit(30);
        r.exit(50);
        r.exit(60);
        let rep = r.report(0);
        assert_eq!(rep.unmarked.histogram, vec![[10, 1], [40, 1]]);
        assert_eq!(rep.unmarked.per_helper, vec![1, 1]);
        assert_eq!(rep.stray_returns, 1);
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut r = Recorder::new(&args());
        r.marker(0);
        r.enter(0, 10);
        r.exit(20);
        r.error("x".into());
        r.error("x".into());
        let rep = r.report(5);
        assert_eq!(rep.errors, vec!["x".to_string()]);
        let back: Report = serde_json::from_str(&serde_json::to_string(&rep).unwrap()).unwrap();
        assert_eq!(back, rep);
    }
}
