//! The content store: blobs under blobs/sha256 as an OCI image layout, verified before visible.
