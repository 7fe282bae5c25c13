//! Volumes and the local driver.
//!
//! Lifecycle: `create` records a volume (and makes its `_data` folder); a container start calls
//! `mount`, which returns the host path to bind into the container (mounting a tmpfs or device first
//! when the volume has options, on the first of concurrent users); the container's exit calls
//! `unmount`; `remove` refuses while any container refers to the volume.

mod copy;
mod store;

pub use copy::copy_up;
pub use store::{validate_name, Volume, VolumeStore, ANONYMOUS_LABEL};
