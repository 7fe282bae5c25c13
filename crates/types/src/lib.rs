//! Shared vocabulary of Berth: errors by category, ids, digests and image references.

mod error;
mod id;
mod reference;

pub use error::{Error, ErrorKind, Result};
pub use id::{new_id, short_id, validate_name, Digest};
pub use reference::{Reference, DEFAULT_DOMAIN, DEFAULT_TAG};
