//! Registry client for pull, push and login: endpoints, auth, manifests and blobs.

pub mod auth;
mod client;
pub mod manifest;
mod ops;

pub use auth::AuthConfig;
pub use client::{Failure, Registries, RegistryConfig, RegistryError, Repository, DOCKER_HUB_INDEX};
pub use ops::{BlobStream, FetchedManifest};
