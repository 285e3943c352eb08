//! The kernel selftest runner.
