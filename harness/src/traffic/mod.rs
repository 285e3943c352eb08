//! Traffic and capture with pnet: a UDP flow at a fixed rate whose payload
//! carries a sequence number, receiver threads that record what crosses a
//! capture point with a timestamp, and the classification of those frames
//! (ARP / NDISC requests and replies, data by destination MAC).
//!
//! Every thread enters its namespace before it opens its channel: a pnet
//! channel stays bound to the namespace it was opened in. The receiver does
//! not report direction, so captures keep only frames whose source MAC is
//! one of a given set.

mod capture;
mod classify;
mod flow;
mod frames;

pub use capture::{Capture, Captured};
pub use classify::{classify, is_group, Classified, FrameKind};
pub use flow::{send_frame, start_flow, Flow};
pub use frames::{
    flow_frame, garp_frame, unsolicited_na_frame, FlowSpec, BROADCAST, DPORT, MAGIC, SPORT,
};

use std::fs::File;
use std::net::Ipv6Addr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use pnet::datalink::{self, Channel, Config, DataLinkReceiver, DataLinkSender};

use crate::lab::netns;

/// Errors from the traffic threads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no interface {0} in this namespace")]
    NoInterface(String),
    #[error("{0}: not an Ethernet channel")]
    NotEthernet(String),
    #[error("a traffic thread ended unexpectedly")]
    ThreadDied,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Start a thread that first enters network namespace `ns`, then runs `f`.
pub fn spawn_in_ns<T, F>(ns: &str, f: F) -> Result<JoinHandle<Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let file = File::open(netns::path(ns)).map_err(io_err(format!("open namespace {ns}")))?;
    let name = ns.to_string();
    Ok(std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| io_err(format!("enter namespace {name}"))(e.into()))?;
        f()
    }))
}

/// A UDP socket bound to the flow's port on every address of namespace
/// `ns`, so flow packets that arrive there are taken, not answered with
/// ICMP port unreachable. Closed when dropped.
pub fn udp_sink(ns: &str) -> Result<std::net::UdpSocket> {
    let what = format!("bind the flow's UDP sink in {ns}");
    spawn_in_ns(ns, move || {
        std::net::UdpSocket::bind((Ipv6Addr::UNSPECIFIED, DPORT)).map_err(io_err(what))
    })?
    .join()
    .map_err(|_| Error::ThreadDied)?
}

/// A pnet Ethernet channel on `ifname` of the calling thread's namespace.
pub fn open_channel(
    ifname: &str,
    read_timeout: Option<Duration>,
) -> Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let iface = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
        .ok_or_else(|| Error::NoInterface(ifname.to_string()))?;
    let config = Config {
        read_timeout,
        read_buffer_size: 65536,
        ..Default::default()
    };
    match datalink::channel(&iface, config)
        .map_err(io_err(format!("open a packet channel on {ifname}")))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(Error::NotEthernet(ifname.to_string())),
    }
}

/// A thread that runs until its stop flag is set: stopped and joined by
/// [`Worker::finish`], or when dropped (on every error path).
pub struct Worker<T> {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<T>>,
}

impl<T> Worker<T> {
    /// `thread` must return once `stop` is set.
    pub fn new(stop: Arc<AtomicBool>, thread: JoinHandle<T>) -> Self {
        Worker {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop the thread and return what it returned.
    pub fn finish(mut self) -> Result<T> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().map_err(|_| Error::ThreadDied),
            None => Err(Error::ThreadDied),
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wait for a thread's "channel open" signal; on failure, its error.
fn wait_ready<T>(
    ready: mpsc::Receiver<bool>,
    handle: JoinHandle<Result<T>>,
) -> Result<JoinHandle<Result<T>>> {
    match ready.recv() {
        Ok(true) => Ok(handle),
        // The thread failed before or while opening: return its error.
        _ => match handle.join() {
            Ok(Err(e)) => Err(e),
            _ => Err(Error::ThreadDied),
        },
    }
}
