//! Registry settings (insecure registries, mirrors, CA directory) and credentials,
//! including the `auths` entries of docker's and containers' auth files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::error::{Error, IoContext, Result};

/// The host that answers the distribution API for `docker.io`.
pub const DOCKER_HUB_ENDPOINT: &str = "registry-1.docker.io";

/// How to reach registries: which speak plain HTTP, which have mirrors, where CA files live.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`host` or `host:port`) reached over plain HTTP instead of HTTPS.
    pub insecure: Vec<String>,
    /// Mirrors to try, in order, before a registry itself (key: the registry `host[:port]`).
    pub mirrors: HashMap<String, Vec<String>>,
    /// Directory holding `<host[:port]>/*.crt` CA files, like `/etc/containers/certs.d`.
    pub certs_dir: Option<PathBuf>,
}

impl RegistryConfig {
    /// Whether `registry` is configured to be reached over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host_only = strip_port(registry);
        self.insecure.iter().any(|entry| entry == registry || entry == host_only)
    }

    /// The endpoints to try for `registry`: its mirrors in order, then the registry itself.
    pub fn endpoints_for(&self, registry: &str) -> Vec<String> {
        let mut endpoints = self.mirrors.get(registry).cloned().unwrap_or_default();
        endpoints.push(registry.to_string());
        endpoints
    }

    /// The directory of CA files for `registry`, if a certs dir is configured.
    pub fn certs_dir_for(&self, registry: &str) -> Option<PathBuf> {
        self.certs_dir.as_ref().map(|dir| dir.join(registry))
    }
}

/// `host:port` → `host`; `[::1]:5000` → `[::1]`; anything else unchanged.
fn strip_port(registry: &str) -> &str {
    match registry.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']')) =>
        {
            host
        }
        _ => registry,
    }
}

/// A user name and password (or token used as a password) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl Credentials {
    /// Credentials from a user name and a password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { username: username.into(), password: password.into() }
    }

    /// The value of an `Authorization: Basic …` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log line.
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The auth files consulted, in order: `$REGISTRY_AUTH_FILE`, containers' and docker's.
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&dir).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        files.push(Path::new(&home).join(".docker/config.json"));
    }
    files
}

/// Credentials for `registry` from the first default auth file that has an entry for it.
pub fn load_credentials(registry: &str) -> Result<Option<Credentials>> {
    for file in default_auth_files() {
        if !file.exists() {
            continue;
        }
        if let Some(found) = credentials_from_auth_file(&file, registry)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Credentials for `registry` from one auth file's `auths` map (base64 `user:password`).
pub fn credentials_from_auth_file(path: &Path, registry: &str) -> Result<Option<Credentials>> {
    let text = std::fs::read(path).io_context(|| format!("read auth file {}", path.display()))?;
    credentials_from_auth_json(&text, registry).map_err(|message| Error::Format { what: format!("auth file {}", path.display()), message })
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

fn credentials_from_auth_json(text: &[u8], registry: &str) -> Result<Option<Credentials>, String> {
    let file: AuthFile = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let wanted = normalize_auth_key(registry);
    let Some(entry) = file.auths.iter().find(|(key, _)| normalize_auth_key(key) == wanted).map(|(_, e)| e) else {
        return Ok(None);
    };
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("entry {registry:?}: auth is not base64: {e}"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| format!("entry {registry:?}: auth is not UTF-8"))?;
        let (user, pass) = decoded.split_once(':').ok_or_else(|| format!("entry {registry:?}: auth is not user:password"))?;
        return Ok(Some(Credentials::new(user, pass)));
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials::new(u.clone(), p.clone()))),
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/`, `docker.io` and `registry-1.docker.io` are one registry.
fn normalize_auth_key(key: &str) -> String {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | DOCKER_HUB_ENDPOINT | "docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_entries_decode_base64_and_normalise_docker_hub() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "localhost:5000":{"auth":"YTpi"}}}"#;
        let hub = credentials_from_auth_json(json, "docker.io").unwrap().unwrap();
        assert_eq!(hub, Credentials::new("user", "pa:ss"));
        let local = credentials_from_auth_json(json, "localhost:5000").unwrap().unwrap();
        assert_eq!(local, Credentials::new("a", "b"));
        assert!(credentials_from_auth_json(json, "quay.io").unwrap().is_none());
    }

    #[test]
    fn broken_auth_entry_is_an_error_not_a_panic() {
        let json = br#"{"auths":{"r":{"auth":"!!"}}}"#;
        assert!(credentials_from_auth_json(json, "r").is_err());
        let json = br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#;
        assert!(credentials_from_auth_json(json, "r").is_err());
    }

    #[test]
    fn insecure_matches_host_with_or_without_port() {
        let config = RegistryConfig { insecure: vec!["localhost".into(), "10.0.0.1:5000".into()], ..Default::default() };
        assert!(config.is_insecure("localhost:5000"));
        assert!(config.is_insecure("10.0.0.1:5000"));
        assert!(!config.is_insecure("10.0.0.1:5001"));
        assert!(!config.is_insecure("quay.io"));
    }
}
