//! The Engine API client shared by `berth` and the end-to-end tests.
#![recursion_limit = "256"]

pub mod build;
pub mod client;
pub mod cmd;
pub mod context;
pub mod creds;
pub mod format;
pub mod objects;
pub mod output;
pub mod progress;
pub mod registry;
pub mod transport;
pub mod tty;
pub mod units;
