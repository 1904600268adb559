//! The providers, one file each.

pub mod http;
pub mod noop;
