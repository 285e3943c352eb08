//! `struct bpf_fib_lookup` as the kernel lays it out (Linux 7.3 plus the
//! series' `nud_state`), and the uAPI values the programs use.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `BPF_FIB_LOOKUP_*` flags.
pub mod flags {
    pub const DIRECT: u32 = 1 << 0;
    pub const OUTPUT: u32 = 1 << 1;
    pub const SKIP_NEIGH: u32 = 1 << 2;
    pub const TBID: u32 = 1 << 3;
    pub const SRC: u32 = 1 << 4;
    pub const MARK: u32 = 1 << 5;
    pub const VLAN: u32 = 1 << 6;
    pub const VLAN_INPUT: u32 = 1 << 7;
    /// Patch 1: report the neighbour's NUD state in `nud_state`.
    pub const NEIGH_STATE: u32 = 1 << 8;
    /// Patch 2: kick a STALE entry into re-validation.
    pub const NEIGH_REFRESH: u32 = 1 << 9;
}

/// `NUD_*` states (include/uapi/linux/neighbour.h).
pub mod nud {
    pub const NONE: u16 = 0x00;
    pub const INCOMPLETE: u16 = 0x01;
    pub const REACHABLE: u16 = 0x02;
    pub const STALE: u16 = 0x04;
    pub const DELAY: u16 = 0x08;
    pub const PROBE: u16 = 0x10;
    pub const FAILED: u16 = 0x20;
    pub const NOARP: u16 = 0x40;
    pub const PERMANENT: u16 = 0x80;
    pub const CONNECTED: u16 = PERMANENT | NOARP | REACHABLE;

    /// A readable name for a state value (single bit or 0).
    pub fn name(state: u16) -> String {
        let known = [
            (INCOMPLETE, "INCOMPLETE"),
            (REACHABLE, "REACHABLE"),
            (STALE, "STALE"),
            (DELAY, "DELAY"),
            (PROBE, "PROBE"),
            (FAILED, "FAILED"),
            (NOARP, "NOARP"),
            (PERMANENT, "PERMANENT"),
        ];
        if state == NONE {
            return "NONE".into();
        }
        let names: Vec<&str> = known
            .iter()
            .filter(|(bit, _)| state & bit != 0)
            .map(|(_, n)| *n)
            .collect();
        let rest = state & !known.iter().fold(0, |a, (b, _)| a | b);
        if rest != 0 || names.is_empty() {
            format!("{:#x}", state)
        } else {
            names.join("|")
        }
    }
}

/// `BPF_FIB_LKUP_RET_*` return codes.
pub mod ret {
    pub const SUCCESS: i64 = 0;
    pub const BLACKHOLE: i64 = 1;
    pub const UNREACHABLE: i64 = 2;
    pub const PROHIBIT: i64 = 3;
    pub const NOT_FWDED: i64 = 4;
    pub const FWD_DISABLED: i64 = 5;
    pub const UNSUPP_LWT: i64 = 6;
    pub const NO_NEIGH: i64 = 7;
    pub const FRAG_NEEDED: i64 = 8;
    pub const NO_SRC_ADDR: i64 = 9;
    pub const VLAN_FAILURE: i64 = 10;

    /// A readable name; negative values are errnos.
    pub fn name(rc: i64) -> String {
        let names = [
            "SUCCESS",
            "BLACKHOLE",
            "UNREACHABLE",
            "PROHIBIT",
            "NOT_FWDED",
            "FWD_DISABLED",
            "UNSUPP_LWT",
            "NO_NEIGH",
            "FRAG_NEEDED",
            "NO_SRC_ADDR",
            "VLAN_FAILURE",
        ];
        match usize::try_from(rc).ok().and_then(|i| names.get(i)) {
            Some(n) => (*n).to_string(),
            None if rc == -(libc::EINVAL as i64) => "EINVAL".into(),
            None if rc == -(libc::ENODEV as i64) => "ENODEV".into(),
            None if rc == -(libc::EAFNOSUPPORT as i64) => "EAFNOSUPPORT".into(),
            None if rc < 0 => format!("errno {}", -rc),
            None => format!("unknown({rc})"),
        }
    }
}

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `struct bpf_fib_lookup`, field for field. Unions are named after every
/// member they hold.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FibParams {
    pub family: u8,
    pub l4_protocol: u8,
    /// input `sport` (network order) / output `nud_state`.
    pub sport_nud_state: u16,
    pub dport: u16,
    pub tot_len_mtu_result: u16,
    pub ifindex: u32,
    pub tos_flowinfo_rt_metric: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub vlan_tbid: [u8; 4],
    /// input `mark` in the first four bytes / output `smac` then `dmac`.
    pub mark_smac_dmac: [u8; 12],
}

const _: () = assert!(std::mem::size_of::<FibParams>() == 64);

impl FibParams {
    /// Parameters for a forwarding lookup of `dst` arriving on `ifindex`.
    pub fn forward(ifindex: u32, src: IpAddr, dst: IpAddr, tot_len: u16) -> Self {
        let mut p = FibParams {
            ifindex,
            tot_len_mtu_result: tot_len,
            ..Default::default()
        };
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                p.family = AF_INET;
                p.src[..4].copy_from_slice(&s.octets());
                p.dst[..4].copy_from_slice(&d.octets());
            }
            (s, d) => {
                p.family = AF_INET6;
                p.src = to_v6(s).octets();
                p.dst = to_v6(d).octets();
            }
        }
        p
    }

    pub fn nud_state(&self) -> u16 {
        self.sport_nud_state
    }

    pub fn smac(&self) -> [u8; 6] {
        self.mark_smac_dmac[..6].try_into().expect("6 bytes")
    }

    pub fn dmac(&self) -> [u8; 6] {
        self.mark_smac_dmac[6..].try_into().expect("6 bytes")
    }

    /// The nexthop the lookup wrote back (the gateway, or the destination
    /// on a connected route).
    pub fn dst_addr(&self) -> IpAddr {
        if self.family == AF_INET {
            IpAddr::V4(Ipv4Addr::new(
                self.dst[0],
                self.dst[1],
                self.dst[2],
                self.dst[3],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.dst))
        }
    }
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn layout_matches_the_kernel() {
        assert_eq!(offset_of!(FibParams, sport_nud_state), 2);
        assert_eq!(offset_of!(FibParams, ifindex), 8);
        assert_eq!(offset_of!(FibParams, src), 16);
        assert_eq!(offset_of!(FibParams, dst), 32);
        assert_eq!(offset_of!(FibParams, vlan_tbid), 48);
        assert_eq!(offset_of!(FibParams, mark_smac_dmac), 52);
    }

    #[test]
    fn names() {
        assert_eq!(nud::name(nud::STALE), "STALE");
        assert_eq!(nud::name(0), "NONE");
        assert_eq!(nud::name(0x100), "0x100");
        assert_eq!(ret::name(ret::NO_NEIGH), "NO_NEIGH");
        assert_eq!(ret::name(-22), "EINVAL");
        assert_eq!(ret::name(-97), "EAFNOSUPPORT");
        assert_eq!(ret::name(-5), "errno 5");
        assert_eq!(ret::name(42), "unknown(42)");
    }
}
