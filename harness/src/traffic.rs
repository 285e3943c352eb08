//! Traffic and capture with pnet: a UDP flow at a fixed rate whose payload
//! carries a sequence number, receiver threads that record what crosses a
//! capture point with a timestamp, and the classification of those frames
//! (ARP / NDISC requests and replies, data by destination MAC).
//!
//! Every thread enters its namespace before it opens its channel: a pnet
//! channel stays bound to the namespace it was opened in. The receiver does
//! not report direction, so captures keep only frames whose source MAC is
//! one of a given set.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet::datalink::{self, Channel, Config, DataLinkReceiver, DataLinkSender};
use pnet::packet::arp::{ArpOperations, ArpPacket};
use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet::packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet::packet::udp::{self, MutableUdpPacket, UdpPacket};
use pnet::packet::Packet;
use serde::Serialize;

use crate::lab::netns;

/// The first bytes of every flow payload.
pub const MAGIC: [u8; 4] = *b"FNBH";
/// UDP ports of the flow.
pub const SPORT: u16 = 40_000;
pub const DPORT: u16 = 9_000;
/// Payload: magic, sequence number (big endian), padding.
const PAYLOAD_LEN: usize = 32;

pub const BROADCAST: [u8; 6] = [0xff; 6];

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

// ---- frames we build -------------------------------------------------

/// One flow: Ethernet from `src_mac` to `dst_mac`, UDP `src_ip` -> `dst_ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    pub rate_pps: u32,
}

/// The frame carrying sequence number `seq` (addresses of mixed families
/// are taken as IPv6 with v4-mapped addresses, which nothing here does).
pub fn flow_frame(spec: &FlowSpec, seq: u32) -> Vec<u8> {
    let mut payload = [0u8; PAYLOAD_LEN];
    payload[..4].copy_from_slice(&MAGIC);
    payload[4..8].copy_from_slice(&seq.to_be_bytes());
    let udp_len = 8 + PAYLOAD_LEN;
    let mut udp_buf = vec![0u8; udp_len];
    {
        let mut u = MutableUdpPacket::new(&mut udp_buf).expect("buffer fits a UDP header");
        u.set_source(SPORT);
        u.set_destination(DPORT);
        u.set_length(udp_len as u16);
        u.set_payload(&payload);
    }
    let mut frame = Vec::with_capacity(14 + 40 + udp_len);
    frame.extend_from_slice(&spec.dst_mac);
    frame.extend_from_slice(&spec.src_mac);
    match (spec.src_ip, spec.dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = udp::ipv4_checksum(&UdpPacket::new(&udp_buf).expect("UDP header"), &s, &d);
            udp_buf[6..8].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0u8; 20 + udp_len];
            {
                let mut p = MutableIpv4Packet::new(&mut ip).expect("buffer fits IPv4");
                p.set_version(4);
                p.set_header_length(5);
                p.set_total_length((20 + udp_len) as u16);
                p.set_identification(seq as u16);
                p.set_ttl(64);
                p.set_next_level_protocol(IpNextHeaderProtocols::Udp);
                p.set_source(s);
                p.set_destination(d);
                p.set_payload(&udp_buf);
                let c = ipv4::checksum(&p.to_immutable());
                p.set_checksum(c);
            }
            frame.extend_from_slice(&ip);
        }
        (s, d) => {
            let (s, d) = (to_v6(s), to_v6(d));
            let sum = udp::ipv6_checksum(&UdpPacket::new(&udp_buf).expect("UDP header"), &s, &d);
            udp_buf[6..8].copy_from_slice(&sum.to_be_bytes());
            frame.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = vec![0u8; 40 + udp_len];
            {
                let mut p = MutableIpv6Packet::new(&mut ip).expect("buffer fits IPv6");
                p.set_version(6);
                p.set_payload_length(udp_len as u16);
                p.set_next_header(IpNextHeaderProtocols::Udp);
                p.set_hop_limit(64);
                p.set_source(s);
                p.set_destination(d);
                p.set_payload(&udp_buf);
            }
            frame.extend_from_slice(&ip);
        }
    }
    frame
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// A gratuitous ARP request from `mac` announcing `ip`.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = BROADCAST.to_vec();
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f
}

/// An unsolicited, overriding neighbour advertisement from `mac` for
/// `ip`, to all nodes.
pub fn unsolicited_na_frame(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    // type 136, code 0, checksum, flags (override), target, option 2 (TLLA).
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac);
    let sum = pnet::packet::icmpv6::checksum(
        &Icmpv6Packet::new(&icmp).expect("ICMPv6 header"),
        &ip,
        &all_nodes,
    );
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = vec![0x33, 0x33, 0, 0, 0, 1];
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&all_nodes.octets());
    f.extend_from_slice(&icmp);
    f
}

// ---- classification ------------------------------------------------------

/// What a captured frame is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FrameKind {
    /// ARP request for `target` (gratuitous when sender == target).
    ArpRequest {
        sender: IpAddr,
        target: IpAddr,
    },
    ArpReply {
        sender: IpAddr,
    },
    /// Neighbour solicitation for `target`.
    NeighSolicit {
        target: IpAddr,
    },
    NeighAdvert {
        target: IpAddr,
        solicited: bool,
        override_flag: bool,
    },
    /// A frame of the flow.
    Data {
        seq: u32,
    },
    Other,
}

impl FrameKind {
    /// An ARP request or neighbour solicitation (a probe).
    pub fn is_probe_for(&self, ip: IpAddr) -> bool {
        match self {
            FrameKind::ArpRequest { sender, target } => *target == ip && sender != target,
            FrameKind::NeighSolicit { target } => *target == ip,
            _ => false,
        }
    }
}

/// A frame's addresses and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    pub kind: FrameKind,
}

/// Whether `mac` is a broadcast or multicast address.
pub fn is_group(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// Classify an Ethernet frame; None if it is not even Ethernet.
pub fn classify(frame: &[u8]) -> Option<Classified> {
    let eth = EthernetPacket::new(frame)?;
    let src: [u8; 6] = frame[6..12].try_into().ok()?;
    let dst: [u8; 6] = frame[..6].try_into().ok()?;
    let kind = match eth.get_ethertype() {
        EtherTypes::Arp => classify_arp(eth.payload()),
        EtherTypes::Ipv4 => Ipv4Packet::new(eth.payload())
            .filter(|p| p.get_next_level_protocol() == IpNextHeaderProtocols::Udp)
            .and_then(|p| UdpPacket::new(p.payload()).and_then(|u| flow_seq(&u)))
            .map(|seq| FrameKind::Data { seq }),
        EtherTypes::Ipv6 => {
            Ipv6Packet::new(eth.payload()).and_then(|p| match p.get_next_header() {
                IpNextHeaderProtocols::Udp => UdpPacket::new(p.payload())
                    .and_then(|u| flow_seq(&u))
                    .map(|seq| FrameKind::Data { seq }),
                IpNextHeaderProtocols::Icmpv6 => classify_ndisc(p.payload()),
                _ => None,
            })
        }
        _ => None,
    }
    .unwrap_or(FrameKind::Other);
    Some(Classified { src, dst, kind })
}

fn flow_seq(u: &UdpPacket<'_>) -> Option<u32> {
    let p = u.payload();
    if u.get_destination() != DPORT || p.len() < 8 || p[..4] != MAGIC {
        return None;
    }
    Some(u32::from_be_bytes(p[4..8].try_into().ok()?))
}

fn classify_arp(payload: &[u8]) -> Option<FrameKind> {
    let a = ArpPacket::new(payload)?;
    let sender = IpAddr::V4(a.get_sender_proto_addr());
    let target = IpAddr::V4(a.get_target_proto_addr());
    match a.get_operation() {
        ArpOperations::Request => Some(FrameKind::ArpRequest { sender, target }),
        ArpOperations::Reply => Some(FrameKind::ArpReply { sender }),
        _ => None,
    }
}

fn classify_ndisc(icmp: &[u8]) -> Option<FrameKind> {
    if icmp.len() < 24 {
        return None;
    }
    let target = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).ok()?));
    match icmp[0] {
        135 => Some(FrameKind::NeighSolicit { target }),
        136 => Some(FrameKind::NeighAdvert {
            target,
            solicited: icmp[4] & 0x40 != 0,
            override_flag: icmp[4] & 0x20 != 0,
        }),
        _ => None,
    }
}

// ---- the flow ----------------------------------------------------------------

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
            let frame = flow_frame(&spec, seq);
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

// ---- capture ---------------------------------------------------------------

/// A frame seen at a capture point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Since the run's clock started.
    pub t: Duration,
    pub frame: Classified,
}

/// A running receiver thread; [`finish`](Self::finish) stops it and
/// returns what it saw.
pub struct Capture {
    worker: Worker<Result<Vec<Captured>>>,
    /// Flow frames addressed to `watch_dst` seen so far.
    pub watched: Arc<AtomicU64>,
}

impl Capture {
    /// Capture on `ifname` in namespace `ns` every frame whose source MAC
    /// is in `sources`; count flow frames addressed to `watch_dst` live in
    /// [`watched`](Self::watched). Returns once the channel is open.
    pub fn start(
        ns: &str,
        ifname: &str,
        sources: Vec<[u8; 6]>,
        watch_dst: Option<[u8; 6]>,
        clock: Instant,
    ) -> Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let watched = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = mpsc::channel();
        let ifname = ifname.to_string();
        let (stop2, watched2) = (stop.clone(), watched.clone());
        let handle = spawn_in_ns(ns, move || {
            let opened = open_channel(&ifname, Some(Duration::from_millis(20)));
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
            while !stop2.load(Ordering::Relaxed) {
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
                        continue
                    }
                    Err(e) => return Err(io_err(format!("capture on {ifname}"))(e)),
                };
                let t = clock.elapsed();
                let Some(c) = classify(frame) else { continue };
                if !sources.contains(&c.src) {
                    continue;
                }
                if matches!(c.kind, FrameKind::Data { .. }) && Some(c.dst) == watch_dst {
                    watched2.fetch_add(1, Ordering::Relaxed);
                }
                seen.push(Captured { t, frame: c });
            }
            Ok(seen)
        })?;
        let handle = wait_ready(ready_rx, handle)?;
        Ok(Capture {
            worker: Worker::new(stop, handle),
            watched,
        })
    }

    /// Stop the thread and return what it captured.
    pub fn finish(self) -> Result<Vec<Captured>> {
        self.worker.finish()?
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

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    #[test]
    fn flow_frames_classify_with_their_sequence() {
        for (s, d) in [
            (IpAddr::from([10, 1, 0, 2]), IpAddr::from([10, 2, 0, 50])),
            ("fd00:1::2".parse().unwrap(), "fd00:2::50".parse().unwrap()),
        ] {
            let spec = FlowSpec {
                src_mac: A,
                dst_mac: B,
                src_ip: s,
                dst_ip: d,
                rate_pps: 200,
            };
            let f = flow_frame(&spec, 0xdead_beef);
            let c = classify(&f).expect("ethernet");
            assert_eq!((c.src, c.dst), (A, B));
            assert_eq!(c.kind, FrameKind::Data { seq: 0xdead_beef });
            if s.is_ipv4() {
                let ip = Ipv4Packet::new(&f[14..]).unwrap();
                assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
            }
        }
    }

    #[test]
    fn announcements_and_probes_classify() {
        let ip4 = Ipv4Addr::new(10, 2, 0, 50);
        let g = classify(&garp_frame(A, ip4)).unwrap();
        assert_eq!(g.dst, BROADCAST);
        assert_eq!(
            g.kind,
            FrameKind::ArpRequest {
                sender: ip4.into(),
                target: ip4.into()
            }
        );
        assert!(!g.kind.is_probe_for(ip4.into()), "gratuitous, not a probe");

        let ip6: Ipv6Addr = "fd00:2::50".parse().unwrap();
        let na = classify(&unsolicited_na_frame(A, ip6)).unwrap();
        assert_eq!(
            na.kind,
            FrameKind::NeighAdvert {
                target: ip6.into(),
                solicited: false,
                override_flag: true
            }
        );
        assert!(is_group(na.dst));

        // An NS: the NA with type 135.
        let mut ns = unsolicited_na_frame(A, ip6);
        ns[54] = 135;
        assert!(classify(&ns).unwrap().kind.is_probe_for(ip6.into()));

        let mut req = garp_frame(A, ip4);
        req[28..32].copy_from_slice(&[10, 2, 0, 1]);
        assert!(classify(&req).unwrap().kind.is_probe_for(ip4.into()));
        assert_eq!(classify(&[0u8; 10]), None);
        let mut other = garp_frame(A, ip4);
        other[12] = 0x88;
        assert_eq!(classify(&other).unwrap().kind, FrameKind::Other);
    }
}
