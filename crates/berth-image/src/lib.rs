//! berth-image: OCI and Docker images — references, the registry client (distribution API),
//! the content-addressed blob store (an OCI image layout), and layer unpacking into
//! snapshot directories ready for overlayfs.
//!
//! It knows nothing of containers: the engine asks it for an image's snapshot chain and
//! config, and builds the runtime spec from them.

pub mod archive;
pub mod error;
pub mod images;
pub mod login;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries;
pub mod registry;
pub mod store;
pub mod transport;
pub mod unpack;

pub use error::{Error, Result};
