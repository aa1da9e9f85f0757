//! `import`: a rootfs tarball becomes a one-layer image in the store (like `docker import`).
//!
//! The tarball (plain, gzip or zstd) is recompressed with gzip while both the diff_id and the
//! blob digest are computed in the same pass; then an OCI image config (host architecture and
//! os, rootfs.diff_ids, one history entry), a manifest, and the tag. Works offline, e.g. from
//! Debian's busybox-static installed into a directory and tarred.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, MediaType};
use serde_json::json;

use super::compression;
use crate::error::IoContext;
use crate::reference::Reference;
use crate::store::digest::{Digest, HashingReader};
use crate::store::{BlobInfo, Store};
use crate::{Error, Result};

/// What the imported image's config says beyond its rootfs.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `config.WorkingDir`.
    pub working_dir: Option<String>,
    /// The history entry's comment.
    pub comment: Option<String>,
    /// Creation time (seconds since the epoch); now when unset. Fix it for reproducible images.
    pub created: Option<u64>,
}

/// The blobs an import wrote.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    /// The manifest descriptor that the name now points to.
    pub manifest: Descriptor,
    /// The image config blob.
    pub config: BlobInfo,
    /// The gzip layer blob.
    pub layer: BlobInfo,
    /// The layer's diff_id.
    pub diff_id: Digest,
}

/// The OCI architecture name of the host (GOARCH spelling).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Import the rootfs tarball read from `reader` as the image `name`.
pub fn import_rootfs<R: Read>(store: &Store, reader: R, name: &Reference, opts: &ImportOptions) -> Result<ImportedImage> {
    let _lease = store.lease()?;
    let (_, decoded) = compression::decoder(reader).io_context(|| "import: read rootfs tarball".to_string())?;
    let mut encoder = flate2::read::GzEncoder::new(HashingReader::new(decoded), flate2::Compression::default());
    let layer = store.put_blob(&mut encoder, None, None)?;
    let (diff_id, tar_size) = encoder.into_inner().finish().io_context(|| "import: read rootfs tarball".to_string())?;
    if tar_size == 0 {
        return Err(Error::Format { what: "import".into(), message: "the rootfs tarball is empty".into() });
    }
    let created = rfc3339(opts.created.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)));
    let mut cfg = serde_json::Map::new();
    let list = |v: &Vec<String>| json!(v);
    if !opts.env.is_empty() {
        cfg.insert("Env".into(), list(&opts.env));
    }
    if !opts.entrypoint.is_empty() {
        cfg.insert("Entrypoint".into(), list(&opts.entrypoint));
    }
    if !opts.cmd.is_empty() {
        cfg.insert("Cmd".into(), list(&opts.cmd));
    }
    if let Some(wd) = &opts.working_dir {
        cfg.insert("WorkingDir".into(), json!(wd));
    }
    let mut history = json!({ "created": created, "created_by": "berth import" });
    if let Some(c) = &opts.comment {
        history["comment"] = json!(c);
    }
    let config_doc = json!({
        "created": created,
        "architecture": host_architecture(),
        "os": "linux",
        "config": cfg,
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [history],
    });
    let config = store.put_bytes(&to_json(&config_doc)?)?;
    let manifest_doc = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": { "mediaType": MediaType::ImageConfig.to_string(), "digest": config.digest.to_string(), "size": config.size },
        "layers": [{ "mediaType": MediaType::ImageLayerGzip.to_string(), "digest": layer.digest.to_string(), "size": layer.size }],
    });
    let manifest = store.put_bytes(&to_json(&manifest_doc)?)?.descriptor(MediaType::ImageManifest);
    store.tag(name, &manifest)?;
    Ok(ImportedImage { manifest, config, layer, diff_id })
}

fn to_json(v: &serde_json::Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Format { what: "image document".into(), message: e.to_string() })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
