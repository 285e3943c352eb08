//! `struct bpf_fib_lookup` as the kernel lays it out (Linux 7.3 plus the
//! series' `nud_state`), and the uAPI values the programs use.
//!
//! The values are the programs' own: fib.h's enums, which the forwarder's
//! skeleton carries as Rust types.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::skel::forwarder::types as c;

/// `BPF_FIB_LOOKUP_*` flags (fib.h's `enum fibneigh_lookup_flag`).
pub mod flags {
    use super::c::fibneigh_lookup_flag as F;

    pub const DIRECT: u32 = F::FIBNEIGH_LOOKUP_DIRECT.0;
    pub const OUTPUT: u32 = F::FIBNEIGH_LOOKUP_OUTPUT.0;
    pub const SKIP_NEIGH: u32 = F::FIBNEIGH_LOOKUP_SKIP_NEIGH.0;
    pub const TBID: u32 = F::FIBNEIGH_LOOKUP_TBID.0;
    pub const SRC: u32 = F::FIBNEIGH_LOOKUP_SRC.0;
    pub const MARK: u32 = F::FIBNEIGH_LOOKUP_MARK.0;
    pub const VLAN: u32 = F::FIBNEIGH_LOOKUP_VLAN.0;
    pub const VLAN_INPUT: u32 = F::FIBNEIGH_LOOKUP_VLAN_INPUT.0;
    /// Patch 1: report the neighbour's NUD state in `nud_state`.
    pub const NEIGH_STATE: u32 = F::FIBNEIGH_LOOKUP_NEIGH_STATE.0;
    /// Patch 2: kick a STALE entry into re-validation.
    pub const NEIGH_REFRESH: u32 = F::FIBNEIGH_LOOKUP_NEIGH_REFRESH.0;
}

/// `NUD_*` states (include/uapi/linux/neighbour.h; fib.h's
/// `enum fibneigh_nud`).
pub mod nud {
    use super::c::fibneigh_nud as N;

    /// `nud_state` is a `__u8`: a C value that does not fit fails the build.
    const fn state(n: N) -> u16 {
        assert!(n.0 <= u8::MAX as u32, "a NUD state wider than nud_state");
        n.0 as u16
    }

    pub const NONE: u16 = state(N::FIBNEIGH_NUD_NONE);
    pub const INCOMPLETE: u16 = state(N::FIBNEIGH_NUD_INCOMPLETE);
    pub const REACHABLE: u16 = state(N::FIBNEIGH_NUD_REACHABLE);
    pub const STALE: u16 = state(N::FIBNEIGH_NUD_STALE);
    pub const DELAY: u16 = state(N::FIBNEIGH_NUD_DELAY);
    pub const PROBE: u16 = state(N::FIBNEIGH_NUD_PROBE);
    pub const FAILED: u16 = state(N::FIBNEIGH_NUD_FAILED);
    pub const NOARP: u16 = state(N::FIBNEIGH_NUD_NOARP);
    pub const PERMANENT: u16 = state(N::FIBNEIGH_NUD_PERMANENT);
    pub const CONNECTED: u16 = state(N::FIBNEIGH_NUD_CONNECTED);

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

/// `BPF_FIB_LKUP_RET_*` return codes (fib.h's `enum fibneigh_ret`).
pub mod ret {
    use super::c::fibneigh_ret as R;

    pub const SUCCESS: i64 = R::FIBNEIGH_RET_SUCCESS.0 as i64;
    pub const BLACKHOLE: i64 = R::FIBNEIGH_RET_BLACKHOLE.0 as i64;
    pub const UNREACHABLE: i64 = R::FIBNEIGH_RET_UNREACHABLE.0 as i64;
    pub const PROHIBIT: i64 = R::FIBNEIGH_RET_PROHIBIT.0 as i64;
    pub const NOT_FWDED: i64 = R::FIBNEIGH_RET_NOT_FWDED.0 as i64;
    pub const FWD_DISABLED: i64 = R::FIBNEIGH_RET_FWD_DISABLED.0 as i64;
    pub const UNSUPP_LWT: i64 = R::FIBNEIGH_RET_UNSUPP_LWT.0 as i64;
    pub const NO_NEIGH: i64 = R::FIBNEIGH_RET_NO_NEIGH.0 as i64;
    pub const FRAG_NEEDED: i64 = R::FIBNEIGH_RET_FRAG_NEEDED.0 as i64;
    pub const NO_SRC_ADDR: i64 = R::FIBNEIGH_RET_NO_SRC_ADDR.0 as i64;
    pub const VLAN_FAILURE: i64 = R::FIBNEIGH_RET_VLAN_FAILURE.0 as i64;
    /// How many codes there are (0 .. COUNT): `FIBNEIGH_RET_MAX`.
    pub(crate) const COUNT: usize = R::FIBNEIGH_RET_MAX.0 as usize;

    /// The codes' names, by value: one for each (or the build fails).
    const NAMES: [&str; COUNT] = [
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

    /// A readable name; negative values are errnos, named as libc names
    /// them (`EINVAL`).
    pub fn name(rc: i64) -> String {
        use nix::errno::Errno;
        match usize::try_from(rc).ok().and_then(|i| NAMES.get(i)) {
            Some(n) => (*n).to_string(),
            None if rc < 0 => match i32::try_from(-rc).map(Errno::from_raw) {
                Ok(Errno::UnknownErrno) | Err(_) => format!("errno {}", -rc),
                Ok(e) => format!("{e:?}"),
            },
            None => format!("unknown({rc})"),
        }
    }
}

pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// `struct bpf_fib_lookup`, field for field. Unions are named after every
/// member they hold. Plain old data (the derive checks there is no padding):
/// it goes to and from the programs' `struct fib_neigh_params` (include/fib_neigh.h) as bytes
/// (`fib_params_conversions!`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
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

/// The size of a field, named by a projection `|s: &T| &s.field`.
pub(crate) const fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// `From` conversions both ways between [`FibParams`] and a skeleton's
/// `struct fib_neigh_params` (include/fib_neigh.h, as libbpf-cargo renders
/// it: its unions are named `__anon_fib_neigh_params_N`), by value as the
/// same 64 bytes (`bytemuck::must_cast`).
///
/// The build fails unless the skeleton type has `FibParams`' size and
/// alignment and each of its fields `FibParams`' offset and size, that is,
/// the same bytes in the same places and no padding.
macro_rules! fib_params_conversions {
    ($skel:ty) => {
        const _: () = {
            use std::mem::{align_of, offset_of, size_of};
            use $crate::params::{field_size, FibParams};
            assert!(size_of::<$skel>() == size_of::<FibParams>());
            assert!(align_of::<$skel>() == align_of::<FibParams>());
            macro_rules! same {
                ($s:ident, $p:ident) => {
                    assert!(offset_of!($skel, $s) == offset_of!(FibParams, $p));
                    assert!(field_size(|s: &$skel| &s.$s) == field_size(|p: &FibParams| &p.$p));
                };
            }
            same!(family, family);
            same!(l4_protocol, l4_protocol);
            same!(__anon_fib_neigh_params_1, sport_nud_state);
            same!(dport, dport);
            same!(__anon_fib_neigh_params_2, tot_len_mtu_result);
            same!(ifindex, ifindex);
            same!(__anon_fib_neigh_params_3, tos_flowinfo_rt_metric);
            same!(__anon_fib_neigh_params_4, src);
            same!(__anon_fib_neigh_params_5, dst);
            same!(__anon_fib_neigh_params_6, vlan_tbid);
            same!(__anon_fib_neigh_params_7, mark_smac_dmac);
        };

        // SAFETY: checked above: the same size and alignment as FibParams
        // (Pod, derived), every field at FibParams' offset with its size,
        // so no padding; every field is an integer, an integer array, or a
        // union of those, so every bit pattern is valid and zero is. Its
        // unions can hold uninitialised bytes only when built in Rust from
        // a narrower member (the generated `Default` does); this crate
        // never does: its values come from the program's memory or from a
        // FibParams.
        unsafe impl bytemuck::Zeroable for $skel {}
        // SAFETY: as above.
        unsafe impl bytemuck::Pod for $skel {}

        impl From<$crate::params::FibParams> for $skel {
            fn from(p: $crate::params::FibParams) -> Self {
                bytemuck::must_cast(p)
            }
        }

        impl From<$skel> for $crate::params::FibParams {
            fn from(p: $skel) -> Self {
                bytemuck::must_cast(p)
            }
        }
    };
}
pub(crate) use fib_params_conversions;

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

    /// The output `nud_state`: the union's first byte (a `__u8`).
    pub fn nud_state(&self) -> u16 {
        u16::from(self.sport_nud_state.to_ne_bytes()[0])
    }

    /// The union's second byte: reserved, written 0 with `nud_state`.
    pub fn nud_reserved(&self) -> u8 {
        self.sport_nud_state.to_ne_bytes()[1]
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

/// A skeleton's `fib_neigh_params` holds a [`FibParams`] byte for byte, both
/// ways.
#[cfg(test)]
pub(crate) fn assert_round_trip<T>()
where
    T: bytemuck::Pod + From<FibParams> + Into<FibParams>,
{
    let p = distinct_params();
    let s = T::from(p);
    assert_eq!(bytemuck::bytes_of(&s), bytemuck::bytes_of(&p));
    assert_eq!(s.into(), p);
}

/// Parameters with every byte set and no two bytes alike, so a conversion
/// that moves or drops a byte shows.
#[cfg(test)]
pub(crate) fn distinct_params() -> FibParams {
    let mut p = FibParams::default();
    for (i, b) in bytemuck::bytes_of_mut(&mut p).iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn values_match_the_system_uapi_headers() {
        // libbpf-sys's linux/bpf.h and libc's NUD_* are independent of
        // fib.h; the series' own values are only in fib.h.
        use libbpf_rs::libbpf_sys as sys;
        assert_eq!(flags::DIRECT, sys::BPF_FIB_LOOKUP_DIRECT);
        assert_eq!(flags::OUTPUT, sys::BPF_FIB_LOOKUP_OUTPUT);
        assert_eq!(flags::SKIP_NEIGH, sys::BPF_FIB_LOOKUP_SKIP_NEIGH);
        assert_eq!(flags::TBID, sys::BPF_FIB_LOOKUP_TBID);
        assert_eq!(flags::SRC, sys::BPF_FIB_LOOKUP_SRC);
        assert_eq!(flags::MARK, sys::BPF_FIB_LOOKUP_MARK);
        let rets = [
            (ret::SUCCESS, sys::BPF_FIB_LKUP_RET_SUCCESS),
            (ret::BLACKHOLE, sys::BPF_FIB_LKUP_RET_BLACKHOLE),
            (ret::UNREACHABLE, sys::BPF_FIB_LKUP_RET_UNREACHABLE),
            (ret::PROHIBIT, sys::BPF_FIB_LKUP_RET_PROHIBIT),
            (ret::NOT_FWDED, sys::BPF_FIB_LKUP_RET_NOT_FWDED),
            (ret::FWD_DISABLED, sys::BPF_FIB_LKUP_RET_FWD_DISABLED),
            (ret::UNSUPP_LWT, sys::BPF_FIB_LKUP_RET_UNSUPP_LWT),
            (ret::NO_NEIGH, sys::BPF_FIB_LKUP_RET_NO_NEIGH),
            (ret::FRAG_NEEDED, sys::BPF_FIB_LKUP_RET_FRAG_NEEDED),
            (ret::NO_SRC_ADDR, sys::BPF_FIB_LKUP_RET_NO_SRC_ADDR),
        ];
        for (ours, theirs) in rets {
            assert_eq!(ours, i64::from(theirs), "{}", ret::name(ours));
        }
        let states = [
            (nud::NONE, libc::NUD_NONE),
            (nud::INCOMPLETE, libc::NUD_INCOMPLETE),
            (nud::REACHABLE, libc::NUD_REACHABLE),
            (nud::STALE, libc::NUD_STALE),
            (nud::DELAY, libc::NUD_DELAY),
            (nud::PROBE, libc::NUD_PROBE),
            (nud::FAILED, libc::NUD_FAILED),
            (nud::NOARP, libc::NUD_NOARP),
            (nud::PERMANENT, libc::NUD_PERMANENT),
        ];
        for (ours, theirs) in states {
            assert_eq!(ours, theirs, "{}", nud::name(ours));
        }
        assert_eq!(
            nud::CONNECTED,
            libc::NUD_PERMANENT | libc::NUD_NOARP | libc::NUD_REACHABLE
        );
    }

    #[test]
    fn accessors_read_the_right_bytes() {
        let p = distinct_params();
        let bytes = bytemuck::bytes_of(&p);
        assert_eq!(p.nud_state(), u16::from(bytes[2]));
        assert_eq!(p.nud_reserved(), bytes[3]);
        assert_eq!(p.smac(), bytes[52..58]);
        assert_eq!(p.dmac(), bytes[58..64]);
    }

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
        assert_eq!(ret::name(-5), "EIO");
        assert_eq!(ret::name(-4000), "errno 4000");
        assert_eq!(ret::name(42), "unknown(42)");
    }
}
