//! `login`/`logout`: `auths` entries in containers' auth file
//! (`$XDG_RUNTIME_DIR/containers/auth.json`) or docker's (`~/.docker/config.json`).
//! Credentials are checked against the registry before anything is written; the file is
//! replaced atomically with mode 0600 and its other keys are kept.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::IoContext;
use crate::registry::{Credentials, RegistryClient, RegistryConfig, DOCKER_HUB_ENDPOINT};
use crate::store::random_suffix;
use crate::{Error, Result};

/// The auth file `login` writes: `$REGISTRY_AUTH_FILE`, else containers' under
/// `$XDG_RUNTIME_DIR`, else docker's (`docker_config` forces docker's).
pub fn auth_file(docker_config: bool) -> Result<PathBuf> {
    let docker = || {
        std::env::var_os("HOME")
            .map(|h| Path::new(&h).join(".docker/config.json"))
            .ok_or_else(|| Error::NotFound("auth file: $HOME is not set".into()))
    };
    if docker_config {
        return docker();
    }
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE") {
        return Ok(PathBuf::from(path));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => Ok(Path::new(&dir).join("containers/auth.json")),
        None => docker(),
    }
}

/// The key an `auths` entry is stored under: the registry host, `docker.io` for Docker Hub.
fn auth_key(registry: &str) -> String {
    let key = registry.strip_prefix("https://").or_else(|| registry.strip_prefix("http://")).unwrap_or(registry);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | DOCKER_HUB_ENDPOINT | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Check `credentials` against `registry` (a 401 is a clear error), then store them in `file`.
pub fn login(registry: &str, credentials: &Credentials, config: &RegistryConfig, file: &Path) -> Result<()> {
    let key = auth_key(registry);
    let client = RegistryClient::new(&key, config, Some(credentials.clone()))?;
    client.ping().map_err(|e| Error::Format { what: format!("login to {key} as {:?}", credentials.username), message: e.to_string() })?;
    let mut doc = read_auth_file(file)?;
    let auths = auths_of(&mut doc, file)?;
    auths.retain(|k, _| auth_key(k) != key);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credentials.username, credentials.password));
    auths.insert(key, serde_json::json!({ "auth": encoded }));
    write_auth_file(file, &doc)
}

/// Remove the entries for `registry` from `file`; `false` when there were none.
pub fn logout(registry: &str, file: &Path) -> Result<bool> {
    let key = auth_key(registry);
    if !file.exists() {
        return Ok(false);
    }
    let mut doc = read_auth_file(file)?;
    let auths = auths_of(&mut doc, file)?;
    let before = auths.len();
    auths.retain(|k, _| auth_key(k) != key);
    if auths.len() == before {
        return Ok(false);
    }
    write_auth_file(file, &doc)?;
    Ok(true)
}

fn read_auth_file(file: &Path) -> Result<Value> {
    match std::fs::read(file) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Value::Object(Map::new())),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Format { what: format!("auth file {}", file.display()), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Value::Object(Map::new())),
        Err(e) => Err(e).io_context(|| format!("read auth file {}", file.display())),
    }
}

fn auths_of<'a>(doc: &'a mut Value, file: &Path) -> Result<&'a mut Map<String, Value>> {
    let bad = |m: &str| Error::Format { what: format!("auth file {}", file.display()), message: m.to_string() };
    let top = doc.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    top.entry("auths").or_insert_with(|| Value::Object(Map::new())).as_object_mut().ok_or_else(|| bad("\"auths\" is not an object"))
}

/// Replace `file` atomically, readable by its owner only.
fn write_auth_file(file: &Path, doc: &Value) -> Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).io_context(|| format!("create {}", dir.display()))?;
    let bytes = serde_json::to_vec_pretty(doc).map_err(|e| Error::Format { what: "auth file".into(), message: e.to_string() })?;
    let tmp = dir.join(format!(".auth.json.tmp-{}", random_suffix()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .io_context(|| format!("create {}", tmp.display()))?;
        f.write_all(&bytes).io_context(|| format!("write {}", tmp.display()))?;
        f.sync_all().io_context(|| format!("fsync {}", tmp.display()))?;
        std::fs::rename(&tmp, file).io_context(|| format!("rename {} to {}", tmp.display(), file.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::credentials_from_auth_file;

    #[test]
    fn logout_removes_only_that_registry_and_keeps_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, r#"{"auths":{"a.io":{"auth":"dTpw"},"https://index.docker.io/v1/":{"auth":"dTpw"}},"credHelpers":{}}"#)
            .unwrap();
        assert!(logout("docker.io", &file).unwrap());
        assert!(!logout("docker.io", &file).unwrap());
        let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert!(doc["credHelpers"].is_object());
        assert_eq!(credentials_from_auth_file(&file, "a.io").unwrap(), Some(Credentials::new("u", "p")));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_malformed_auth_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("auth.json");
        std::fs::write(&file, "[1]").unwrap();
        let err = logout("x.io", &file).unwrap_err().to_string();
        assert!(err.contains("auth.json") && err.contains("not a JSON object"), "{err}");
    }
}
