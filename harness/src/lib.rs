//! The harness library: the network-namespace lab and neighbour control
//! (more to come: traffic, scenarios, reports). The `fibneigh` binary is
//! the command line on top.

pub mod lab;
