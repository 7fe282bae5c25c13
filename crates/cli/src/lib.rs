//! The Engine API client shared by `berth` and the end-to-end tests.

pub mod build;
pub mod client;
pub mod commands;
pub mod context;
pub mod objects;
pub mod registry;
