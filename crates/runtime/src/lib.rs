//! Container runtime plumbing on the daemon's side of the shim.

pub mod cdi;
mod oci;
pub mod proto;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod user;
