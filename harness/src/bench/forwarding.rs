//! Forwarding cost: packets per second through the forwarder for each
//! policy, and through the kernel stack, with REACHABLE entries, 64-byte
//! UDP frames, tc and XDP, one flow and many.
//!
//! Topology: generator namespace -> DUT -> sink namespace, two veth pairs.
//! The generator is an XDP live-frames test run (`BPF_F_TEST_XDP_LIVE_FRAMES`)
//! in the generator namespace: the kernel builds each frame in a recycled
//! page and transmits it with XDP_TX, tens of millions of frames per second
//! per core with no system call per frame, so it is not the bottleneck
//! (pnet's one `sendto()` per frame would be). The sink is an XDP program
//! on the far veth that counts and drops. A veth only takes frames sent
//! with XDP when its peer runs XDP, so the DUT's ingress runs the XDP
//! forwarder itself, or XDP_PASS under the tc forwarder and the stack.
//!
//! Everything runs softirq-chained on the generating CPU, so a figure is
//! the whole path's time per frame (generator, two veth hops, DUT, sink);
//! the differences between columns of a row are the DUT's. The forwarder's
//! own run time per packet, from the kernel's BPF run-time statistics, is
//! a row of its own.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use fibneigh_bpf::bench::{run_stats, Bench, LiveFrames, RunTimeStats, GEN_FRAME_LEN};
use fibneigh_bpf::Hook;
use fibneigh_bpf::{nud, AttachIn, Attachment, Counters, EnteredNetns, Forwarder, Policy, XdpPass};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::MutableIpv4Packet;
use pnet::packet::udp::MutableUdpPacket;

use super::{figure, rotated, Error, Figure, Result, Row, Unit};
use crate::lab::{addr, neigh, Lab, Names, NeighSpec, Topology};
use crate::scenario::{PolicyChoice, Support};
use crate::stop;

/// First destination of the flows (on the DUT's host-side subnet).
pub const FIRST_DST: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 100);
const SPORT: u16 = 10000;
/// Frames per generator batch: the softirqs carrying a batch through the
/// DUT and the sink run before the next batch is made, and they must stay
/// within one net_rx_action budget (2 ms) even on the slowest path under
/// emulation, or the rest goes to ksoftirqd while the generator overruns
/// the veth rings (256 frames).
pub const BATCH: u32 = 16;
const DPORT: u16 = 9;

/// How many flows a row sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flows {
    /// Destinations, each with its own REACHABLE neighbour entry.
    pub dsts: u32,
    /// Source ports per destination.
    pub sports: u32,
}

impl Flows {
    pub const ONE: Flows = Flows { dsts: 1, sports: 1 };
    /// 64 destinations (below gc_thresh1, so no entry is garbage-collected)
    /// x 16 source ports.
    pub const MANY: Flows = Flows {
        dsts: 64,
        sports: 16,
    };

    pub fn label(&self) -> String {
        let n = self.dsts * self.sports;
        if n == 1 {
            "1 flow".into()
        } else {
            format!("{n} flows ({} dsts)", self.dsts)
        }
    }
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub rounds: usize,
    /// Target duration of one sample (sets the frame count).
    pub sample: Duration,
    pub hooks: Vec<Hook>,
    pub flows: Vec<Flows>,
}

/// The columns, in order; ratios are against `baseline`.
pub fn columns() -> Vec<PolicyChoice> {
    PolicyChoice::all()
}

/// The generator -> DUT -> sink lab.
pub struct FwdLab {
    lab: Lab,
    n: Names,
    bench: Bench,
    gen_if: u32,
    dut_in: u32,
    frame_dst_mac: [u8; 6],
    gen_mac: [u8; 6],
    sink_mac: [u8; 6],
    _sink: Attachment,
    xdp_pass: XdpPass,
}

/// What one sample measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub sent: u64,
    pub delivered: u64,
    pub elapsed: Duration,
    /// Forwarder counters over the sample (None for the stack).
    pub counters: Option<Counters>,
}

impl Sample {
    pub fn pps(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn ns_per_packet(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e9 / (self.delivered.max(1) as f64)
    }
}

/// A 60-byte IPv4/UDP frame (64 on the wire), IP checksum left to the
/// generator, UDP checksum 0 (none).
pub fn template(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; GEN_FRAME_LEN];
    f[..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = GEN_FRAME_LEN - 14;
    {
        let mut ip = MutableIpv4Packet::new(&mut f[14..]).expect("46 bytes fit IPv4");
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(ip_len as u16);
        ip.set_ttl(64);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        ip.set_source(src);
        ip.set_destination(dst);
    }
    {
        let mut udp = MutableUdpPacket::new(&mut f[34..]).expect("26 bytes fit UDP");
        udp.set_source(SPORT);
        udp.set_destination(DPORT);
        udp.set_length((ip_len - 20) as u16);
    }
    f
}

impl FwdLab {
    pub fn new() -> Result<Self> {
        // Every sample re-attaches at the same device, where the clsact
        // qdisc already exists.
        fibneigh_bpf::quiet_benign_libbpf_warnings();
        let n = Names::for_this_process();
        let lab = Lab::create(&Topology::direct(&n))?;
        // REACHABLE for an hour: no entry ages during the run.
        lab.set_neigh_timers(&n.dut, &n.dut_host_if, false, &neigh::REACHABLE_HOUR)?;
        let gen_if = lab.ifindex(&n.client, &n.client_if)?;
        let dut_in = lab.ifindex(&n.dut, &n.dut_client_if)?;
        let frame_dst_mac = lab.mac(&n.dut, &n.dut_client_if)?;
        let gen_mac = lab.mac(&n.client, &n.client_if)?;
        let sink_mac = lab.mac(&n.host_a, &n.host_a_if)?;
        let bench = Bench::load()?;
        let sink_if = lab.ifindex(&n.host_a, &n.host_a_if)?;
        let sink = bench.attach_sink_in(lab.open_ns(&n.host_a)?.as_fd(), sink_if)?;
        Ok(FwdLab {
            lab,
            n,
            bench,
            gen_if,
            dut_in,
            frame_dst_mac,
            gen_mac,
            sink_mac,
            _sink: sink,
            xdp_pass: XdpPass::load()?,
        })
    }

    /// Whether the kernel runs the generator's XDP live-frames test runs,
    /// asked in the generator's namespace with its device.
    pub fn live_frames(&mut self) -> Result<LiveFrames> {
        let ns = self.lab.open_ns(&self.n.client)?;
        let _inside = EnteredNetns::enter(ns.as_fd())?;
        Ok(self.bench.live_frames(self.gen_if)?)
    }

    /// Install (again) a REACHABLE entry for every destination of `flows`
    /// and set the generator up for them.
    pub fn prepare(&mut self, flows: Flows) -> Result<()> {
        let first = u32::from(FIRST_DST);
        for i in 0..flows.dsts {
            let dst = Ipv4Addr::from(first + i);
            self.lab.neigh_replace(
                &self.n.dut,
                &self.n.dut_host_if,
                &NeighSpec::new(dst.into(), Some(self.sink_mac), nud::REACHABLE),
            )?;
        }
        let frame = template(self.gen_mac, self.frame_dst_mac, addr::CLIENT4, FIRST_DST);
        self.bench.set_generator(&frame, flows.dsts, flows.sports)?;
        Ok(())
    }

    /// Every destination's entry is still REACHABLE (nothing re-resolved
    /// or aged during the samples).
    pub fn check_reachable(&self, flows: Flows) -> Result<()> {
        let first = u32::from(FIRST_DST);
        for i in 0..flows.dsts {
            let dst = Ipv4Addr::from(first + i);
            let e = self
                .lab
                .neigh_get(&self.n.dut, &self.n.dut_host_if, dst.into())?;
            let state = e.map(|e| e.state).unwrap_or(nud::NONE);
            if state != nud::REACHABLE {
                return Err(Error::Check(format!(
                    "the entry for {dst} is {} after the samples, not REACHABLE",
                    nud::name(state)
                )));
            }
        }
        Ok(())
    }

    /// Attach what sits on the DUT's ingress at `hook`: the forwarder
    /// (`None`: the kernel stack alone), and XDP_PASS where no XDP program
    /// would otherwise give the veth its NAPI context. Detached on drop.
    fn attach(&self, fwd: Option<&Forwarder>, hook: Hook) -> Result<Vec<Attachment>> {
        let ns = self.lab.open_ns(&self.n.dut)?;
        let mut guards = Vec::new();
        if let Some(f) = fwd {
            guards.push(f.attach_in(ns.as_fd(), hook, self.dut_in)?);
        }
        if fwd.is_none() || hook == Hook::Tc {
            guards.push(self.xdp_pass.attach_in(ns.as_fd(), self.dut_in)?);
        }
        Ok(guards)
    }

    /// Send `frames` frames and count what reaches the sink.
    fn send(&mut self, frames: u32) -> Result<(u64, Duration)> {
        let before = self.bench.sink_count()?;
        let ns = self.lab.open_ns(&self.n.client)?;
        let start = Instant::now();
        {
            let _inside = EnteredNetns::enter(ns.as_fd())?;
            self.bench.generate(self.gen_if, frames, BATCH)?;
        }
        // Whatever the softirqs of the call did not finish arrives shortly:
        // the sample ends when the last frame arrived, 50 ms without one
        // after the first, or 1 s without any (a busy machine may defer
        // every receive to ksoftirqd).
        let mut last = self.bench.sink_count()?;
        let mut end = Instant::now();
        let quiet = |last: u64| Duration::from_millis(if last == before { 1000 } else { 50 });
        while last - before < u64::from(frames) && end.elapsed() < quiet(last) {
            std::thread::sleep(Duration::from_micros(500));
            let now = self.bench.sink_count()?;
            if now != last {
                last = now;
                end = Instant::now();
            }
        }
        Ok((last - before, end.saturating_duration_since(start)))
    }

    /// One sample of the forwarder `fwd` (`None`: the kernel stack) at
    /// `hook`: attach, send, detach. With `run_time`, also the forwarder's
    /// kernel-measured ns per run (with BPF run-time statistics on, which
    /// slows every program a little, so that pass's rate is not used).
    pub fn sample(
        &mut self,
        fwd: Option<&Forwarder>,
        hook: Hook,
        frames: u32,
        run_time: bool,
    ) -> Result<(Sample, Option<f64>)> {
        let guards = self.attach(fwd, hook)?;
        if let Some(f) = fwd {
            f.reset_counters()?;
        }
        let (stats, before) = match (fwd, run_time) {
            (Some(f), true) => {
                let s = RunTimeStats::enable()?;
                let b = run_stats(f.prog_fd(hook))?;
                (Some(s), Some(b))
            }
            _ => (None, None),
        };
        let (delivered, elapsed) = self.send(frames)?;
        let ns_per_run = match (fwd, before) {
            (Some(f), Some((t0, c0))) => {
                let (t1, c1) = run_stats(f.prog_fd(hook))?;
                (c1 > c0).then(|| (t1 - t0) as f64 / (c1 - c0) as f64)
            }
            _ => None,
        };
        drop(stats);
        let counters = fwd.map(Forwarder::counters).transpose()?;
        drop(guards);
        Ok((
            Sample {
                sent: u64::from(frames),
                delivered,
                elapsed,
                counters,
            },
            ns_per_run,
        ))
    }
}

impl FwdLab {
    /// The generator's own ceiling: the DUT's ingress drops every frame
    /// (the sink program, attached there), so only the generator and one
    /// veth hop are measured.
    pub fn generator_ceiling(&mut self, frames: u32) -> Result<f64> {
        let ns = self.lab.open_ns(&self.n.dut)?;
        let _drop = self.bench.attach_sink_in(ns.as_fd(), self.dut_in)?;
        let (delivered, elapsed) = self.send(frames)?;
        Ok(delivered as f64 / elapsed.as_secs_f64().max(1e-9))
    }
}

/// Check that a sample took the policy's path: frames reached the sink,
/// and the forwarder saw frames and acted on (nearly) all of them as the
/// policy does for a REACHABLE entry. How many frames are lost at a veth
/// ring is not checked: it depends on the machine's load (a busy host
/// defers the receivers to ksoftirqd while the generator runs on, and a
/// CI run lost 54% that way), so it is reported with the figure instead
/// (see [`loss_note`]).
pub fn check_sample(policy: PolicyChoice, hook: Hook, s: &Sample) -> Result<()> {
    if s.delivered == 0 {
        return Err(Error::Check(format!(
            "{policy} ({hook:?}): none of the {} frames reached the sink",
            s.sent
        )));
    }
    let Some(c) = &s.counters else {
        return Ok(());
    };
    let (what, n) = match (policy, hook) {
        (PolicyChoice::Prog(Policy::AlwaysNeigh), Hook::Tc) => {
            ("bpf_redirect_neigh", c.redirect_neigh)
        }
        (PolicyChoice::Prog(Policy::AlwaysNeigh), Hook::Xdp) => ("pass to the stack", c.neigh_pass),
        _ => ("bpf_redirect", c.redirect),
    };
    let seen = c.lookups_total();
    if seen == 0 || n * 100 < seen * 99 {
        return Err(Error::Check(format!(
            "{policy} ({hook:?}): only {n} of the {seen} frames the forwarder looked up took {what}"
        )));
    }
    Ok(())
}

/// Note for a figure whose samples lost frames at a veth ring.
pub fn loss_note(losses: &[f64]) -> Option<String> {
    let m = super::Stats::of(losses)?;
    (m.median > 0.01).then(|| {
        format!(
            "{:.0}% of the frames (median) were lost at a veth ring: the path was overloaded; rates count delivered frames",
            m.median * 100.0
        )
    })
}

/// What the rounds of one row group (a hook and a flow count) measured:
/// per measurable policy (in [`Measurement::measurable`]'s order), one
/// entry per round.
struct Measured {
    hook: Hook,
    flows: Flows,
    pps: Vec<Vec<f64>>,
    ns_per_packet: Vec<Vec<f64>>,
    /// The forwarder's own run time (empty for the kernel stack).
    prog_ns: Vec<Vec<f64>>,
    /// Share of the frames lost at a veth ring.
    loss: Vec<Vec<f64>>,
}

/// Everything [`measure`] measured.
struct Measurement {
    /// The policies this kernel can run, in column order.
    measurable: Vec<PolicyChoice>,
    groups: Vec<Measured>,
    /// Frames per sample, per group.
    frames_used: Vec<u32>,
    /// The generator's rate with nothing behind it, per sample.
    ceiling: Vec<f64>,
}

/// Measure every row: the interleaved rounds for each hook and flow
/// count, then the generator's ceiling.
fn measure(mut lab: FwdLab, opts: &Options, support: Support) -> Result<Measurement> {
    let measurable: Vec<PolicyChoice> = columns()
        .into_iter()
        .filter(|p| support.missing(p.required_flags()).is_empty())
        .collect();
    // Each policy's forwarder is loaded (and verified) once; the samples
    // attach and detach it.
    let forwarders: Vec<Option<Forwarder>> = measurable
        .iter()
        .map(|p| match p {
            // columns() offers neither the header's example nor an
            // external forwarder.
            PolicyChoice::KernelStack | PolicyChoice::Header | PolicyChoice::External => Ok(None),
            PolicyChoice::Prog(p) => Forwarder::load_with(*p, false).map(Some),
        })
        .collect::<Result<_, _>>()?;
    let mut groups = Vec::new();
    let mut frames_used = Vec::new();
    for &hook in &opts.hooks {
        for &flows in &opts.flows {
            lab.prepare(flows)?;
            // Warm up every path once, checking it is the policy's path,
            // and size the samples from the baseline's rate.
            let mut frames = 20_000u32;
            for (&p, fwd) in measurable.iter().zip(&forwarders) {
                stop::check()?;
                let (s, _) = lab.sample(fwd.as_ref(), hook, frames.min(20_000), false)?;
                check_sample(p, hook, &s)?;
                if p == PolicyChoice::Prog(Policy::Baseline) {
                    let want = s.pps() * opts.sample.as_secs_f64();
                    frames = want.clamp(10_000.0, 20_000_000.0) as u32;
                }
            }
            frames_used.push(frames);
            let k = measurable.len();
            let mut m = Measured {
                hook,
                flows,
                pps: vec![Vec::new(); k],
                ns_per_packet: vec![Vec::new(); k],
                prog_ns: vec![Vec::new(); k],
                loss: vec![Vec::new(); k],
            };
            for round in 0..opts.rounds.max(1) {
                for i in rotated(&(0..k).collect::<Vec<_>>(), round) {
                    stop::check()?;
                    let (p, fwd) = (measurable[i], forwarders[i].as_ref());
                    let (s, _) = lab.sample(fwd, hook, frames, false)?;
                    check_sample(p, hook, &s)?;
                    m.pps[i].push(s.pps());
                    m.loss[i].push(1.0 - s.delivered as f64 / s.sent.max(1) as f64);
                    m.ns_per_packet[i].push(s.ns_per_packet());
                    if fwd.is_some() {
                        let (_, ns) = lab.sample(fwd, hook, (frames / 4).max(1000), true)?;
                        m.prog_ns[i].push(ns.unwrap_or(f64::NAN));
                    }
                }
            }
            lab.check_reachable(flows)?;
            groups.push(m);
        }
    }
    // The generator must not be the bottleneck: its rate with nothing
    // behind it, for the method line.
    lab.prepare(Flows::ONE)?;
    let frames = frames_used.iter().copied().max().unwrap_or(100_000);
    let mut ceiling = Vec::new();
    for _ in 0..opts.rounds.clamp(1, 3) {
        stop::check()?;
        ceiling.push(lab.generator_ceiling(frames)?);
    }
    Ok(Measurement {
        measurable,
        groups,
        frames_used,
        ceiling,
    })
}

/// The rows: per group, rate, time per packet and the forwarder's run
/// time, one figure per column (ratios to the baseline), with loss and
/// XDP notes.
fn figures(m: &Measurement, support: Support) -> Vec<Row> {
    let cols = columns();
    let measurable = &m.measurable;
    let base = measurable
        .iter()
        .position(|p| *p == PolicyChoice::Prog(Policy::Baseline));
    let reference = |v: &Vec<Vec<f64>>| base.map(|b| v[b].clone()).unwrap_or_default();
    let mut rows = Vec::new();
    for g in &m.groups {
        let label = format!("{} {}", g.hook.name(), g.flows.label());
        // (unit, what, figures, whether only programs have the figure)
        // In PARTS' order; only programs have a run time.
        let data = [
            (&g.pps, false),
            (&g.ns_per_packet, false),
            (&g.prog_ns, true),
        ];
        for ((unit, what), (data, programs_only)) in PARTS.into_iter().zip(data) {
            let r = reference(data);
            let mut figures: Vec<Figure> = cols
                .iter()
                .map(|p| match measurable.iter().position(|m| m == p) {
                    Some(_) if programs_only && *p == PolicyChoice::KernelStack => {
                        Figure::missing(p.name(), "no program")
                    }
                    Some(i) => figure(p.name(), &data[i], &r),
                    None => Figure::unsupported(p.name(), &support.missing(p.required_flags())),
                })
                .collect();
            if unit == Unit::Pps {
                for (i, p) in measurable.iter().enumerate() {
                    if let (Some(note), Some(f)) = (
                        loss_note(&g.loss[i]),
                        figures.iter_mut().find(|f| f.column == p.name()),
                    ) {
                        f.note = Some(note);
                    }
                }
            }
            if g.hook == Hook::Xdp {
                if let Some(f) = figures.iter_mut().find(|f| f.column == "always-neigh") {
                    if f.note.is_none() {
                        f.note =
                            Some("XDP has no bpf_redirect_neigh(): passes to the stack".into());
                    }
                }
            }
            rows.push(row(&label, what, unit, figures));
        }
    }
    rows
}

/// What each hook and flow count has a row of, in order.
const PARTS: [(Unit, &str); 3] = [
    (Unit::Pps, "rate"),
    (Unit::NsPerPacket, "time"),
    (Unit::NsPerPacket, "forwarder run time"),
];

/// One row of the section: `group` (hook and flows), `what` is measured.
fn row(group: &str, what: &str, unit: Unit, figures: Vec<Figure>) -> Row {
    Row {
        section: "forwarding".into(),
        label: format!("{group} {what}"),
        unit,
        reference: "baseline".into(),
        figures,
    }
}

/// How the rows were measured, and the generator's ceiling against the
/// fastest figure of `rows`.
fn method(opts: &Options, m: &Measurement, rows: &[Row]) -> Vec<String> {
    let ceiling = super::Stats::of(&m.ceiling);
    let best = rows
        .iter()
        .filter(|r| r.unit == Unit::Pps)
        .flat_map(|r| r.figures.iter().filter_map(|f| f.value.map(|v| v.median)))
        .fold(0.0f64, f64::max);
    let mut method = vec![format!(
        "forwarding: XDP live-frames generator (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES, \
         XDP_TX on the generator's veth, {BATCH} frames per batch; chosen because it makes no system \
         call per frame, where pnet's one sendto() per frame would be the bottleneck; its own \
         ceiling is the next line) -> DUT -> XDP counting sink; 60-byte IPv4/UDP frames (64 on the wire); frames per \
         sample sized from the baseline's rate, per row: {:?}; rate = frames at the sink / time from the \
         start of the run until the last one arrived; {} rounds, policies interleaved in rotating \
         order; the forwarder's run time from BPF_ENABLE_STATS in a separate pass of 1/4 the frames; \
         the forwarders count only the lookup's return code and the action (no per-state \
         histogram), the same bookkeeping for every policy",
        m.frames_used,
        opts.rounds.max(1)
    )];
    if let Some(c) = ceiling {
        method.push(format!(
            "forwarding: the generator alone (the DUT's ingress drops every frame at XDP) ran at \
             {:.0} pps (median of {}), {:.1}x the fastest forwarding figure ({best:.0} pps)",
            c.median,
            c.n,
            c.median / best.max(1.0)
        ));
    }
    method
}

/// Measure every row; returns the rows and how they were measured. On a
/// kernel that refuses the generator's live-frames test runs nothing is
/// measured: every figure is unsupported, with the reason.
pub fn run(opts: &Options, support: Support) -> Result<(Vec<Row>, Vec<String>)> {
    let mut lab = FwdLab::new()?;
    let live = lab.live_frames()?;
    if live != LiveFrames::Supported {
        return Ok(refused(opts, &live.reason()));
    }
    let m = measure(lab, opts, support)?;
    let rows = figures(&m, support);
    let method = method(opts, &m, &rows);
    Ok((rows, method))
}

/// The rows [`run`] would measure, every figure unsupported because of
/// `reason`, and the method line that says so.
fn refused(opts: &Options, reason: &str) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    for hook in &opts.hooks {
        for flows in &opts.flows {
            let label = format!("{} {}", hook.name(), flows.label());
            for (unit, what) in PARTS {
                let figures = columns()
                    .iter()
                    .map(|p| Figure::unsupported(p.name(), &[LIVE_FRAMES_FLAG]))
                    .collect();
                rows.push(row(&label, what, unit, figures));
            }
        }
    }
    let method = format!(
        "forwarding: not measured: {reason}, and the generator is an XDP live-frames test run"
    );
    (rows, vec![method])
}

/// What an unsupported forwarding figure names when the kernel refuses
/// the generator.
pub const LIVE_FRAMES_FLAG: &str = "BPF_F_TEST_XDP_LIVE_FRAMES";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sent: u64, delivered: u64, counters: Option<Counters>) -> Sample {
        Sample {
            sent,
            delivered,
            elapsed: Duration::from_millis(10),
            counters,
        }
    }

    fn looked_up(n: u64, f: impl FnOnce(&mut Counters)) -> Counters {
        let mut c = Counters::default();
        c.lookups[0] = n;
        f(&mut c);
        c
    }

    const BASELINE: PolicyChoice = PolicyChoice::Prog(Policy::Baseline);
    const ALWAYS: PolicyChoice = PolicyChoice::Prog(Policy::AlwaysNeigh);

    #[test]
    fn a_kernel_refusing_live_frames_gets_every_row_unsupported_with_the_reason() {
        let opts = Options {
            rounds: 3,
            sample: Duration::from_millis(20),
            hooks: vec![Hook::Tc, Hook::Xdp],
            flows: vec![Flows::ONE, Flows::MANY],
        };
        let reason = LiveFrames::Refused { errno: libc::EPERM }.reason();
        assert!(reason.contains("EPERM"), "{reason}");
        let (rows, method) = refused(&opts, &reason);
        assert_eq!(rows.len(), 12, "rate, time and run time per hook and flows");
        assert_eq!(rows[0].label, "tc 1 flow rate");
        assert_eq!(
            rows[11].label,
            "xdp 1024 flows (64 dsts) forwarder run time"
        );
        for r in &rows {
            assert_eq!(r.figures.len(), columns().len());
            for f in &r.figures {
                assert!(f.is_unsupported(), "{f:?}");
                assert!(f.note.as_deref().unwrap().contains(LIVE_FRAMES_FLAG));
            }
        }
        assert_eq!(method.len(), 1);
        assert!(method[0].contains(&reason), "{method:?}");
        assert_eq!(LiveFrames::Supported.reason(), "");
    }

    #[test]
    fn heavy_loss_at_a_ring_is_not_a_failure() {
        // A loaded machine lost 54% of the frames at a veth ring; the
        // forwarder still sent every frame it saw on the policy's path.
        let c = looked_up(41_834, |c| c.redirect_neigh = 41_834);
        check_sample(ALWAYS, Hook::Tc, &sample(41_834, 19_087, Some(c))).unwrap();
        let c = looked_up(1_000, |c| c.redirect = 1_000);
        check_sample(BASELINE, Hook::Xdp, &sample(100_000, 1, Some(c))).unwrap();
        check_sample(PolicyChoice::KernelStack, Hook::Tc, &sample(10, 1, None)).unwrap();
    }

    #[test]
    fn nothing_delivered_fails() {
        let c = looked_up(100, |c| c.redirect = 100);
        let e = check_sample(BASELINE, Hook::Tc, &sample(100, 0, Some(c))).unwrap_err();
        assert!(e.to_string().contains("none of the 100 frames"), "{e}");
        assert!(check_sample(PolicyChoice::KernelStack, Hook::Xdp, &sample(5, 0, None)).is_err());
    }

    #[test]
    fn the_wrong_path_fails() {
        // Frames delivered, but by bpf_redirect() where the policy calls
        // bpf_redirect_neigh(), or not looked up at all.
        let c = looked_up(100, |c| c.redirect = 100);
        let e = check_sample(ALWAYS, Hook::Tc, &sample(100, 100, Some(c))).unwrap_err();
        assert!(e.to_string().contains("bpf_redirect_neigh"), "{e}");
        let c = looked_up(100, |c| c.redirect = 98);
        assert!(check_sample(BASELINE, Hook::Tc, &sample(100, 100, Some(c))).is_err());
        let c = looked_up(100, |c| c.neigh_pass = 100);
        check_sample(ALWAYS, Hook::Xdp, &sample(100, 100, Some(c))).unwrap();
        let none = Counters::default();
        assert!(check_sample(BASELINE, Hook::Xdp, &sample(100, 100, Some(none))).is_err());
    }
}
