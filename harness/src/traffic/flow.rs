//! The flow: frames of a `FlowSpec` at a fixed rate from a thread in a
//! namespace (to one destination, or spread over many), and single frames.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    flow_frame, io_err, open_channel, spawn_in_ns, wait_ready, Error, FlowSpec, Result, Worker,
};

/// A running flow (see [`start_flow`]); [`Worker::finish`] gives the send
/// time of every sequence number.
pub type Flow = Worker<Result<Vec<Duration>>>;

impl Flow {
    /// Start the flow of `spec` from `ifname` in `ns`.
    pub fn start(ns: &str, ifname: &str, spec: FlowSpec, clock: Instant) -> Result<Flow> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = start_flow(ns, ifname, spec, clock, stop.clone())?;
        Ok(Worker::new(stop, thread))
    }

    /// A flow of `spec` whose frame `seq` goes to `dsts[seq % dsts.len()]`
    /// (`spec.dst_ip` is not used): one rate, spread over every
    /// destination in turn. Errors if `dsts` is empty.
    pub fn start_spread(
        ns: &str,
        ifname: &str,
        spec: FlowSpec,
        dsts: Vec<IpAddr>,
        clock: Instant,
    ) -> Result<Flow> {
        if dsts.is_empty() {
            return Err(Error::NoDestination);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = send_loop(ns, ifname, spec, dsts, clock, stop.clone())?;
        Ok(Worker::new(stop, thread))
    }
}

/// Send frames of `spec`, sequence 0, 1, ..., at `spec.rate_pps` from
/// `ifname` in namespace `ns`, until `stop` is set. The thread returns the
/// send time of every sequence number (index = seq), relative to `clock`.
pub fn start_flow(
    ns: &str,
    ifname: &str,
    spec: FlowSpec,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<Vec<Duration>>>> {
    send_loop(ns, ifname, spec, vec![spec.dst_ip], clock, stop)
}

/// The sending thread of [`start_flow`] and [`Flow::start_spread`].
fn send_loop(
    ns: &str,
    ifname: &str,
    spec: FlowSpec,
    dsts: Vec<IpAddr>,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<Vec<Duration>>>> {
    let ifname = ifname.to_string();
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = spawn_in_ns(ns, move || {
        let opened = open_channel(&ifname, None);
        let (mut tx, _rx) = match opened {
            Ok(c) => {
                let _ = ready_tx.send(true);
                c
            }
            Err(e) => {
                let _ = ready_tx.send(false);
                return Err(e);
            }
        };
        let interval = Duration::from_secs_f64(1.0 / f64::from(spec.rate_pps.max(1)));
        let start = Instant::now();
        let mut sent = Vec::new();
        let mut seq: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = start + interval * seq;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let to = FlowSpec {
                dst_ip: dsts[seq as usize % dsts.len()],
                ..spec
            };
            let frame = flow_frame(&to, seq);
            if let Some(r) = tx.send_to(&frame, None) {
                r.map_err(io_err(format!("send on {ifname}")))?;
            }
            sent.push(clock.elapsed());
            seq = seq.wrapping_add(1);
        }
        Ok(sent)
    })?;
    wait_ready(ready_rx, handle)
}

/// Send one frame from `ifname` in namespace `ns`.
pub fn send_frame(ns: &str, ifname: &str, frame: Vec<u8>) -> Result<()> {
    let ifname = ifname.to_string();
    let h = spawn_in_ns(ns, move || {
        let (mut tx, _rx) = open_channel(&ifname, None)?;
        match tx.send_to(&frame, None) {
            Some(r) => r.map_err(io_err(format!("send on {ifname}"))),
            None => Ok(()),
        }
    })?;
    h.join().map_err(|_| Error::ThreadDied)?
}
