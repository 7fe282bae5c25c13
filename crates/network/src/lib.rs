//! Networks: IPAM, bridges and veths, port proxies.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netlink;
pub mod proxy;
pub mod store;

pub use ipam::{Ipv4Net, Ipv6Net, Pools};
pub use store::{Endpoint, Network, NetworkStore, BUILTIN};
