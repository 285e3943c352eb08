//! The frames the lab builds: the flow's UDP frames (sequence-numbered
//! payload), gratuitous ARP and unsolicited neighbour advertisements.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet::packet::icmpv6::Icmpv6Packet;
use pnet::packet::ip::IpNextHeaderProtocols;
use pnet::packet::ipv4::{self, MutableIpv4Packet};
use pnet::packet::ipv6::MutableIpv6Packet;
use pnet::packet::udp::{self, MutableUdpPacket, UdpPacket};

/// The first bytes of every flow payload.
pub const MAGIC: [u8; 4] = *b"FNBH";
/// UDP ports of the flow.
pub const SPORT: u16 = 40_000;
pub const DPORT: u16 = 9_000;
/// Payload: magic, sequence number (big endian), padding.
const PAYLOAD_LEN: usize = 32;

pub const BROADCAST: [u8; 6] = [0xff; 6];

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
