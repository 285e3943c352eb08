//! The harness library: the network-namespace lab and neighbour control,
//! pnet traffic and capture, the scenarios and their reports. The
//! `fibneigh` binary is the command line on top.

pub mod bench;
pub mod churn;
pub(crate) mod cpus;
pub mod dispatcher_stress;
pub mod error;
pub mod external;
pub mod features;
pub mod fuzz;
pub mod lab;
pub mod lock_stress;
pub mod nud;
pub mod pipeline;
pub mod present;
pub mod report;
pub mod scale;
pub mod scenario;
pub mod standard;
pub mod stop;
pub mod traffic;
pub mod trial;
