//! The timings of a run: flow rate, windows, neighbour timers.

use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::lab::NeighSysctl;

/// Timings of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Options {
    /// Flow rate.
    pub rate_pps: u32,
    /// How long after the move a cell waits for recovery.
    #[serde(serialize_with = "ms")]
    pub window: Duration,
    /// Window for the managed scenario (its entries are re-probed only
    /// every interval_probe_time_ms, a global default of 5 s, at a phase
    /// of its own; CI's guests took up to 5.5 s, so 12 s leaves room for
    /// a busy machine, and a cell ends soon after it recovers).
    #[serde(serialize_with = "ms")]
    pub managed_window: Duration,
    /// How long reachable-fastpath measures.
    #[serde(serialize_with = "ms")]
    pub fastpath_window: Duration,
    /// Kept running after the first packet to the new MAC.
    #[serde(serialize_with = "ms")]
    pub after_recovery: Duration,
    /// The DUT's neighbour timers.
    pub timers: NeighTimers,
}

/// Which neighbour timers the DUT's host-side device gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NeighTimers {
    /// Short, so a cell takes seconds: delay_first_probe_time 1 s,
    /// retrans_time_ms 100 (and short ageing for the aged and managed
    /// scenarios).
    Short,
    /// The kernel's built-in defaults, written explicitly (a new namespace
    /// would otherwise inherit the host's `default` table values).
    KernelDefaults,
}

impl NeighTimers {
    /// base_reachable_time_ms, delay_first_probe_time (s), retrans_time_ms,
    /// ucast_solicit, mcast_solicit as the kernel sets them
    /// (net/ipv4/arp.c, net/ipv6/ndisc.c).
    pub const KERNEL_DEFAULTS: [(NeighSysctl, u32); 5] = [
        (NeighSysctl::BaseReachableTimeMs, 30_000),
        (NeighSysctl::DelayFirstProbeTime, 5),
        (NeighSysctl::RetransTimeMs, 1000),
        (NeighSysctl::UcastSolicit, 3),
        (NeighSysctl::McastSolicit, 3),
    ];

    pub fn name(self) -> &'static str {
        match self {
            NeighTimers::Short => "short",
            NeighTimers::KernelDefaults => "kernel defaults",
        }
    }
}

fn ms<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate_pps: 200,
            window: Duration::from_millis(2000),
            managed_window: Duration::from_millis(12_000),
            fastpath_window: Duration::from_millis(1000),
            after_recovery: Duration::from_millis(250),
            timers: NeighTimers::Short,
        }
    }
}
