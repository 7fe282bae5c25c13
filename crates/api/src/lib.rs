//! Docker Engine API wire types and codecs.

pub mod auth;
pub mod container;
pub mod detach;
pub mod events;
pub mod filters;
pub mod hostconfig;
pub mod image;
pub mod mount;
pub mod network;
pub mod progress;
pub mod serde_helpers;
pub mod stats;
pub mod stdcopy;
pub mod system;
pub mod volume;

/// The API version Berth advertises.
pub const API_VERSION: &str = "1.56";
/// The oldest API version Berth accepts.
pub const MIN_API_VERSION: &str = "1.24";
/// The Docker Engine version Berth reports compatibility with.
pub const ENGINE_VERSION: &str = "29.7.2-berth";

/// Go's zero time, which Docker shows for a time that never happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Compares two `major.minor` API versions.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| -> (u32, u32) {
        let (maj, min) = v.split_once('.').unwrap_or((v, "0"));
        (maj.parse().unwrap_or(0), min.parse().unwrap_or(0))
    };
    parse(a).cmp(&parse(b))
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(super::version_cmp("1.9", "1.24"), Ordering::Less);
        assert_eq!(super::version_cmp("1.44", "1.44"), Ordering::Equal);
        assert_eq!(super::version_cmp("1.45", "1.44"), Ordering::Greater);
    }
}
