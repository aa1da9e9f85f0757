//! The registry client: distribution API v2, token and basic auth, TLS.
//!
//! One [`RegistryClient`] per registry host; repositories and references are plain strings
//! here (the engine turns a parsed image reference into them). Pulls return verified bytes
//! or stream verified blobs into a caller's writer; nothing unverified is reported as done.

mod auth;
mod blob;
mod client;
mod config;
mod digest;
mod manifest;
mod names;
mod parallel;
mod platform;
mod push;

pub use auth::{parse_www_authenticate, Challenge};
pub use blob::BlobInfo;
pub use client::{RegistryClient, RetryPolicy};
pub use config::{credentials_from_auth_file, default_auth_files, load_credentials, Credentials, RegistryConfig, DOCKER_HUB_ENDPOINT};
pub use digest::{is_digest, sha256_digest};
pub use manifest::{
    select_manifest, FetchedManifest, ManifestKind, ResolvedImage, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, MANIFEST_ACCEPT, OCI_INDEX,
    OCI_MANIFEST,
};
pub use parallel::BlobSink;
pub use platform::Platform;
pub use push::{BlobPushOutcome, PushOptions, UploadMethod};
