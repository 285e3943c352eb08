//! What the runs on the standard lab (`Topology::standard`) share: the flow
//! from the client through the DUT.

use std::net::IpAddr;
use std::time::Instant;

use crate::error::Result;
use crate::lab::{Lab, Names};
use crate::traffic::{Flow, FlowSpec};

/// The flow's addresses through the DUT: from the client's MAC to the
/// DUT's client-side MAC.
fn spec(lab: &Lab, n: &Names, src_ip: IpAddr, dst_ip: IpAddr, rate_pps: u32) -> Result<FlowSpec> {
    Ok(FlowSpec {
        src_mac: lab.mac(&n.client, &n.client_if)?,
        dst_mac: lab.mac(&n.dut, &n.dut_client_if)?,
        src_ip,
        dst_ip,
        rate_pps,
    })
}

/// Start a flow from the client to `dst_ip` through the DUT (addressed to
/// the DUT's client-side MAC) at `rate_pps`; it stops when dropped.
pub fn flow_through_dut(
    lab: &Lab,
    n: &Names,
    src_ip: IpAddr,
    dst_ip: IpAddr,
    rate_pps: u32,
    clock: Instant,
) -> Result<Flow> {
    let spec = spec(lab, n, src_ip, dst_ip, rate_pps)?;
    Ok(Flow::start(&n.client, &n.client_if, spec, clock)?)
}

/// As [`flow_through_dut`], frame `seq` to `dsts[seq % dsts.len()]`: one
/// rate spread over every destination in turn.
pub fn spread_flow_through_dut(
    lab: &Lab,
    n: &Names,
    src_ip: IpAddr,
    dsts: Vec<IpAddr>,
    rate_pps: u32,
    clock: Instant,
) -> Result<Flow> {
    let first = dsts.first().copied().unwrap_or(src_ip);
    let spec = spec(lab, n, src_ip, first, rate_pps)?;
    Ok(Flow::start_spread(
        &n.client,
        &n.client_if,
        spec,
        dsts,
        clock,
    )?)
}
