//! What a captured frame is: ARP / NDISC requests and replies, flow data
//! with its sequence number, anything else.

use std::net::{IpAddr, Ipv6Addr};

use pnet::packet::arp::{ArpOperations, ArpPacket};
use pnet::packet::ethernet::{EtherTypes, EthernetPacket};
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::Ipv4Packet;
use pnet::packet::ipv6::Ipv6Packet;
use pnet::packet::udp::UdpPacket;
use pnet::packet::Packet;
use serde::Serialize;

use super::{DPORT, MAGIC};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{flow_frame, garp_frame, unsolicited_na_frame, FlowSpec, BROADCAST};
    use pnet::packet::ipv4::{self, Ipv4Packet};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
