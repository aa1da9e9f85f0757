//! Media types: Docker schema2 ↔ OCI equivalents, and what each layer type says about compression.
//!
//! The config and layer bytes are identical in both worlds; only the media type strings of
//! the manifest and its descriptors differ. Converting a manifest therefore rewrites those
//! strings (which changes the manifest's digest) and nothing else.

use serde_json::Value;

use crate::unpack::Compression;
use crate::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) gzip layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Pairs of (Docker, OCI) media types that name the same content.
const EQUIVALENTS: &[(&str, &str)] = &[
    (DOCKER_MANIFEST, OCI_MANIFEST),
    (DOCKER_MANIFEST_LIST, OCI_INDEX),
    (DOCKER_CONFIG, OCI_CONFIG),
    (DOCKER_LAYER_GZIP, OCI_LAYER_GZIP),
    (DOCKER_LAYER_TAR, OCI_LAYER_TAR),
    (DOCKER_FOREIGN_LAYER, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
];

/// Whether a media type is an index (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_MANIFEST_LIST)
}

/// Whether a media type is a single-image manifest (OCI or Docker schema2).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// The OCI media type for a Docker one (OCI types are returned unchanged).
pub fn to_oci(media_type: &str) -> &str {
    EQUIVALENTS.iter().find(|(d, _)| *d == media_type).map_or(media_type, |(_, o)| o)
}

/// The compression of a layer media type, or an error naming an unknown type.
pub fn layer_compression(media_type: &str) -> Result<Compression> {
    let oci = to_oci(media_type);
    let base = oci.strip_prefix("application/vnd.oci.image.layer.").ok_or_else(|| unknown(media_type))?;
    match base {
        "v1.tar" | "nondistributable.v1.tar" => Ok(Compression::None),
        "v1.tar+gzip" | "nondistributable.v1.tar+gzip" => Ok(Compression::Gzip),
        "v1.tar+zstd" | "nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        _ => Err(unknown(media_type)),
    }
}

fn unknown(media_type: &str) -> Error {
    Error::Format { what: format!("layer media type {media_type:?}"), message: "unsupported media type".into() }
}

/// The `mediaType` of a manifest document (absent in old OCI manifests: then by shape).
pub fn document_media_type(doc: &Value) -> String {
    match doc.get("mediaType").and_then(Value::as_str) {
        Some(mt) => mt.to_string(),
        None if doc.get("manifests").is_some() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    }
}

/// Rewrite a Docker schema2 manifest as an OCI manifest (an OCI manifest is returned as is).
/// Returns `None` when nothing changed, so the caller can keep the original bytes and digest.
pub fn manifest_to_oci(doc: &Value) -> Result<Option<Value>> {
    let media_type = document_media_type(doc);
    if media_type == OCI_MANIFEST {
        return Ok(None);
    }
    if media_type != DOCKER_MANIFEST {
        return Err(Error::Format { what: "manifest".into(), message: format!("cannot convert media type {media_type:?} to OCI") });
    }
    let mut out = doc.clone();
    out["mediaType"] = Value::from(OCI_MANIFEST);
    let retype = |desc: &mut Value| {
        if let Some(mt) = desc.get("mediaType").and_then(Value::as_str) {
            let oci = to_oci(mt).to_string();
            desc["mediaType"] = Value::from(oci);
        }
    };
    if let Some(config) = out.get_mut("config") {
        retype(config);
    }
    if let Some(layers) = out.get_mut("layers").and_then(Value::as_array_mut) {
        layers.iter_mut().for_each(retype);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_layer_types_map_to_oci_compression() {
        assert_eq!(layer_compression(DOCKER_LAYER_GZIP).unwrap(), Compression::Gzip);
        assert_eq!(layer_compression(DOCKER_LAYER_TAR).unwrap(), Compression::None);
        assert_eq!(layer_compression(OCI_LAYER_ZSTD).unwrap(), Compression::Zstd);
        assert!(layer_compression("application/x-foo").is_err());
    }

    #[test]
    fn docker_manifest_converts_to_oci_with_the_same_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let doc = json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": d, "size": 1},
            "layers": [{"mediaType": DOCKER_LAYER_GZIP, "digest": d, "size": 2}],
        });
        let oci = manifest_to_oci(&doc).unwrap().unwrap();
        assert_eq!(oci["mediaType"], OCI_MANIFEST);
        assert_eq!(oci["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(oci["layers"][0]["mediaType"], OCI_LAYER_GZIP);
        assert_eq!(oci["layers"][0]["digest"], d);
        assert!(manifest_to_oci(&oci).unwrap().is_none());
    }
}
