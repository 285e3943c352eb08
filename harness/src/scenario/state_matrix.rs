//! state-matrix: every NUD state of the DUT's entry for an address nobody
//! owns, through the probe program (one `bpf_fib_lookup` per state with
//! the policy's flags), from tc or XDP. No traffic.

use std::net::IpAddr;

use fibneigh_bpf::probe::Probe;
use fibneigh_bpf::{flags, params::mac_string, ret, FibParams};

use super::cell::{pick, Cell, PolicyChoice};
use super::result::{CellResult, Outcome, StateRow};
use crate::error::{Error, Result};
use crate::lab::{addr, neigh, rtnl, Lab, Names, NeighSpec, Topology};
use crate::nud::Nud;
use crate::stop;

/// The entry's MAC for valid states.
const OLD_MAC: [u8; 6] = [0x02, 0xf1, 0xb0, 0, 0, 0x0b];

pub(super) fn run(cell: &Cell) -> Result<CellResult> {
    let PolicyChoice::Prog(policy) = cell.policy else {
        return Err(Error::Setup(
            "state-matrix needs a program policy, not the kernel stack".into(),
        ));
    };
    let hook = cell
        .hook
        .ok_or_else(|| Error::Setup("state-matrix needs a hook".into()))?;
    let v6 = cell.v6();
    let n = Names::for_this_process();
    stop::check()?;
    let lab = Lab::create(&Topology::standard(&n))?;
    // Slow timers: no entry changes state while it is looked up.
    let sysctls = lab.set_neigh_timers(&n.dut, &n.dut_host_if, v6, &neigh::FROZEN)?;
    let in_index = lab.ifindex(&n.dut, &n.dut_client_if)?;
    let dev_index = lab.ifindex(&n.dut, &n.dut_host_if)?;
    let src: IpAddr = pick(cell.family, addr::CLIENT4, addr::CLIENT6);
    let dst: IpAddr = pick(cell.family, addr::NOBODY4, addr::NOBODY6);
    let lookup_flags = policy.required_flags();
    let dut = n.dut.clone();
    // The probe runs in the DUT's namespace: the test run's lookup uses
    // the namespace of the calling thread.
    let rows = Lab::in_ns(&n.dut, move || -> Result<Vec<StateRow>> {
        let mut probe = Probe::load()?;
        let mut rows = Vec::new();
        // Every settable state, then no entry at all.
        for state in Nud::SETTABLE.into_iter().chain([Nud::NONE]) {
            stop::check()?;
            let d = dut.clone();
            let before = rtnl::with_netlink(&d, move |h| async move {
                if state == Nud::NONE {
                    neigh::delete(&h, dev_index, dst).await?;
                } else {
                    let lladdr = state.has_lladdr().then_some(OLD_MAC);
                    neigh::replace(&h, dev_index, &NeighSpec::new(dst, lladdr, state.0)).await?;
                }
                neigh::get(&h, dev_index, dst).await
            })?;
            let params = FibParams::forward(in_index, src, dst, 100);
            let res = probe.lookup(hook, &params, lookup_flags)?;
            let after =
                rtnl::with_netlink(
                    &d,
                    move |h| async move { neigh::get(&h, dev_index, dst).await },
                )?;
            let state_of =
                |e: &Option<neigh::NeighEntry>| e.as_ref().map_or(Nud::NONE, |e| Nud(e.state));
            let reports_state = lookup_flags & flags::NEIGH_STATE != 0
                && (res.rc == ret::SUCCESS || res.rc == ret::NO_NEIGH);
            let nud_state = if reports_state {
                res.params.nud_state()
            } else {
                0
            };
            let success = res.rc == ret::SUCCESS && lookup_flags & flags::SKIP_NEIGH == 0;
            rows.push(StateRow {
                set: state,
                before: state_of(&before),
                rc: res.rc,
                rc_name: ret::name(res.rc),
                nud_state,
                reported: reports_state.then_some(Nud(nud_state)),
                dmac: success.then(|| mac_string(res.params.dmac())),
                dmac_matches: success && res.params.dmac() == OLD_MAC,
                after: state_of(&after),
            });
        }
        Ok(rows)
    })??;
    let mut r = CellResult::new(*cell, Outcome::Measured);
    r.state_rows = rows;
    r.sysctls = sysctls;
    Ok(r)
}
