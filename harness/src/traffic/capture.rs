//! Capture points: a receiver thread that records the frames crossing an
//! interface (from a given set of source MACs) with a timestamp.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::{
    capture_socket, classify, io_err, open_channel_on, packet_drops, spawn_in_ns, wait_ready,
    Classified, FrameKind, Result, Worker,
};

/// How long a buffered capture goes on reading its queue after the stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A frame seen at a capture point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Since the run's clock started, when the capture read it (a
    /// buffered capture behind its queue reads late).
    pub t: Duration,
    pub frame: Classified,
}

/// A running receiver thread; [`finish`](Self::finish) stops it and
/// returns what it saw.
pub struct Capture {
    /// What it saw, and the frames the kernel dropped before it read them
    /// (counted for a buffered capture only).
    worker: Worker<Result<(Vec<Captured>, u64)>>,
    /// Flow frames addressed to `watch_dst` (any, without one) seen so
    /// far.
    pub watched: Arc<AtomicU64>,
}

impl Capture {
    /// Capture on `ifname` in namespace `ns` every frame whose source MAC
    /// is in `sources`; count flow frames addressed to `watch_dst` (every
    /// flow frame, without one) live in [`watched`](Self::watched). With
    /// `rcvbuf`, on a socket with a receive buffer of that many bytes, for
    /// thousands of frames a second ([`finish_counted`](Self::finish_counted)
    /// says how many the kernel still dropped). Returns once the channel is
    /// open.
    pub fn start(
        ns: &str,
        ifname: &str,
        sources: Vec<[u8; 6]>,
        watch_dst: Option<[u8; 6]>,
        clock: Instant,
        rcvbuf: Option<usize>,
    ) -> Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let watched = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ifname = ifname.to_string();
        let (stop2, watched2) = (stop.clone(), watched.clone());
        let handle = spawn_in_ns(ns, move || {
            let fd = match rcvbuf.map(capture_socket).transpose() {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = ready_tx.send(false);
                    return Err(e);
                }
            };
            let opened = open_channel_on(&ifname, Some(Duration::from_millis(20)), fd);
            let (_tx, mut rx) = match opened {
                Ok(c) => {
                    let _ = ready_tx.send(true);
                    c
                }
                Err(e) => {
                    let _ = ready_tx.send(false);
                    return Err(e);
                }
            };
            let mut seen = Vec::new();
            // After the stop, a buffered capture still reads what its
            // queue holds (up to DRAIN_LIMIT), so the frames it counts
            // are the ones that crossed before the stop.
            let mut drain_until: Option<Instant> = None;
            loop {
                if drain_until.is_none() && stop2.load(Ordering::Relaxed) {
                    if fd.is_none() {
                        break;
                    }
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                }
                if drain_until.is_some_and(|end| Instant::now() > end) {
                    break;
                }
                let frame = match rx.next() {
                    Ok(f) => f,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        if drain_until.is_some() && e.kind() != std::io::ErrorKind::Interrupted {
                            break;
                        }
                        continue;
                    }
                    Err(e) => return Err(io_err(format!("capture on {ifname}"))(e)),
                };
                let t = clock.elapsed();
                let Some(c) = classify(frame) else { continue };
                if !sources.contains(&c.src) {
                    continue;
                }
                if matches!(c.kind, FrameKind::Data { .. }) && watch_dst.is_none_or(|d| d == c.dst)
                {
                    watched2.fetch_add(1, Ordering::Relaxed);
                }
                seen.push(Captured { t, frame: c });
            }
            // The channel (which owns `fd`) lives until the end of this
            // closure.
            let drops = fd.map(packet_drops).transpose()?.unwrap_or(0);
            Ok((seen, drops))
        })?;
        let handle = wait_ready(ready_rx, handle)?;
        Ok(Capture {
            worker: Worker::new(stop, handle),
            watched,
        })
    }

    /// Stop the thread and return what it captured.
    pub fn finish(self) -> Result<Vec<Captured>> {
        Ok(self.worker.finish()??.0)
    }

    /// Stop the thread; what it captured and the frames the kernel
    /// dropped before it could read them (0 unless buffered).
    pub fn finish_counted(self) -> Result<(Vec<Captured>, u64)> {
        self.worker.finish()?
    }
}
