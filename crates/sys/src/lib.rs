//! Raw system calls, wrapped so the rest of Berth needs no `unsafe`.

pub mod dynmods;
pub mod idmap;
pub mod memory;
pub mod mntscope;
pub mod mount;
pub mod netns;
pub mod process;
pub mod root;
pub mod socket;
pub mod writeback;
