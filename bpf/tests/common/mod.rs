//! Frames and verdicts the root tests share.
#![allow(dead_code)]

use fibneigh_bpf::Hook;

pub const LOOPBACK: u32 = 1;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_REDIRECT: u32 = 7;
pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// Ethernet to loopback's all-zero MAC (so tc sees PACKET_HOST).
pub fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = vec![0u8; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// A minimal IPv4 UDP frame 10.99.0.1 -> 127.0.0.2 with `ttl`.
pub fn ipv4_udp(ttl: u8) -> Vec<u8> {
    let mut f = ethernet(0x0800);
    let mut ip = [
        0x45, 0, 0, 36, 0, 1, 0x40, 0, ttl, 17, 0, 0, 10, 99, 0, 1, 127, 0, 0, 2,
    ];
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 16, 0, 0]); // UDP
    f.extend_from_slice(b"fibneigh");
    f
}

/// A minimal IPv6 UDP frame fd00:99::1 -> ::1.
pub fn ipv6_udp() -> Vec<u8> {
    let mut f = ethernet(0x86dd);
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, 17, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0u8; 15]);
    f.push(1);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 16, 0, 0]);
    f.extend_from_slice(b"fibneigh");
    f
}

pub fn pass(hook: Hook) -> u32 {
    match hook {
        Hook::Tc => TC_ACT_OK,
        Hook::Xdp => XDP_PASS,
    }
}
