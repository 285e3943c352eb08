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
    #[error("a flow needs at least one destination")]
    NoDestination,
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
    open_channel_on(ifname, read_timeout, None)
}

/// [`open_channel`] on `socket_fd` (see [`capture_socket`]) when given;
/// the channel owns and closes it.
fn open_channel_on(
    ifname: &str,
    read_timeout: Option<Duration>,
    socket_fd: Option<i32>,
) -> Result<(Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>)> {
    let Some(iface) = datalink::interfaces()
        .into_iter()
        .find(|i| i.name == ifname)
    else {
        if let Some(fd) = socket_fd {
            // SAFETY: the descriptor is ours and nothing else holds it.
            unsafe { libc::close(fd) };
        }
        return Err(Error::NoInterface(ifname.to_string()));
    };
    let config = Config {
        read_timeout,
        read_buffer_size: 65536,
        socket_fd,
        ..Default::default()
    };
    match datalink::channel(&iface, config)
        .map_err(io_err(format!("open a packet channel on {ifname}")))?
    {
        Channel::Ethernet(tx, rx) => Ok((tx, rx)),
        _ => Err(Error::NotEthernet(ifname.to_string())),
    }
}

/// An `AF_PACKET` socket for every protocol with a receive buffer of
/// `rcvbuf` bytes (`SO_RCVBUFFORCE`: root), for a capture that must keep up
/// with thousands of frames a second; [`open_channel_on`] binds it.
fn capture_socket(rcvbuf: usize) -> Result<i32> {
    // Protocol 0: nothing is queued until the bind names the interface
    // (and ETH_P_ALL), so no frame of another interface gets in first.
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io_err("open a packet socket")(
                std::io::Error::last_os_error(),
            ));
        }
        let size = i32::try_from(rcvbuf).unwrap_or(i32::MAX);
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(io_err("size a packet socket's receive buffer")(e));
        }
        Ok(fd)
    }
}

/// Frames the kernel dropped on packet socket `fd` for want of room since
/// the last call (`PACKET_STATISTICS`, which resets them).
fn packet_drops(fd: i32) -> Result<u64> {
    #[repr(C)]
    struct TpacketStats {
        packets: u32,
        drops: u32,
    }
    let mut st = TpacketStats {
        packets: 0,
        drops: 0,
    };
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: `st` is a tpacket_stats of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io_err("read a packet socket's statistics")(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(u64::from(st.drops))
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
