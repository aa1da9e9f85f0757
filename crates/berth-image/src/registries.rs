//! The registries config file (TOML): the default registry for short names, mirrors per
//! registry, registries reached over plain HTTP, and the directory of per-registry CA files.
//!
//! ```toml
//! default-registry = "docker.io"
//! insecure-registries = ["localhost:5000"]
//! certs-dir = "/etc/berth/certs.d"
//!
//! [mirrors]
//! "docker.io" = ["mirror.example:5000"]
//! ```
//!
//! Found at `/etc/berth/registries.toml` for root, `$XDG_CONFIG_HOME/berth/registries.toml`
//! (or `~/.config/berth/…`) otherwise; a missing default file means the built-in defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::reference::{Reference, DEFAULT_DOMAIN};
use crate::registry::RegistryConfig;
use crate::{Error, Result};

/// The parsed registries config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistriesConf {
    /// Registry that names without a registry component go to (`docker.io` when unset).
    #[serde(default)]
    pub default_registry: Option<String>,
    /// Registries (`host` or `host:port`) reached over plain HTTP.
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    /// Mirrors tried in order before a registry (key: the registry `host[:port]`).
    #[serde(default)]
    pub mirrors: HashMap<String, Vec<String>>,
    /// Directory of `<host[:port]>/*.crt` CA files.
    #[serde(default)]
    pub certs_dir: Option<PathBuf>,
}

impl RegistriesConf {
    /// The default location: `/etc/berth/registries.toml` for root, else under `$XDG_CONFIG_HOME`.
    pub fn default_path() -> PathBuf {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return PathBuf::from("/etc/berth/registries.toml");
        }
        let config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("/etc"));
        config_home.join("berth/registries.toml")
    }

    /// Load `path`, or the default file (absent means defaults) when `path` is `None`.
    /// An explicitly given file must exist.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (Self::default_path(), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                Self::parse(&text).map_err(|message| Error::Format { what: format!("registries config {}", path.display()), message })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(e) => Err(e).io_context(|| format!("read registries config {}", path.display())),
        }
    }

    /// Parse the TOML text of a registries config.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let conf: Self = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        if let Some(default) = &conf.default_registry {
            Reference::parse(&format!("{default}/probe")).map_err(|_| format!("default-registry {default:?} is not a registry host"))?;
        }
        Ok(conf)
    }

    /// The registry short names go to.
    pub fn default_registry(&self) -> &str {
        self.default_registry.as_deref().filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DOMAIN)
    }

    /// Parse a user's image name, sending names without a registry to the default registry.
    pub fn qualify(&self, name: &str) -> Result<Reference> {
        let reference = Reference::parse(name)?;
        let default = self.default_registry();
        if default == DEFAULT_DOMAIN || names_registry(name) {
            return Ok(reference);
        }
        Reference::parse(&format!("{default}/{name}"))
    }

    /// The registry module's view of this file.
    pub fn registry_config(&self) -> RegistryConfig {
        RegistryConfig { insecure: self.insecure_registries.clone(), mirrors: self.mirrors.clone(), certs_dir: self.certs_dir.clone() }
    }
}

/// Whether the first component of `name` is a registry host (distribution/reference's rule).
fn names_registry(name: &str) -> bool {
    match name.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_converts() {
        let conf = RegistriesConf::parse(
            r#"
default-registry = "quay.io"
insecure-registries = ["localhost:5000"]
certs-dir = "/tmp/certs"
[mirrors]
"docker.io" = ["mirror.local:5000", "other.local"]
"#,
        )
        .unwrap();
        assert_eq!(conf.default_registry(), "quay.io");
        let rc = conf.registry_config();
        assert!(rc.is_insecure("localhost:5000"));
        assert_eq!(rc.endpoints_for("docker.io"), vec!["mirror.local:5000", "other.local", "docker.io"]);
        assert_eq!(rc.certs_dir_for("x.io"), Some(PathBuf::from("/tmp/certs/x.io")));
    }

    #[test]
    fn unknown_keys_and_bad_hosts_are_errors() {
        assert!(RegistriesConf::parse("insecure = true").unwrap_err().contains("insecure"));
        assert!(RegistriesConf::parse("default-registry = \"not a host\"").is_err());
        assert_eq!(RegistriesConf::parse("").unwrap(), RegistriesConf::default());
    }

    #[test]
    fn short_names_go_to_the_default_registry() {
        let conf = RegistriesConf { default_registry: Some("localhost:5000".into()), ..Default::default() };
        assert_eq!(conf.qualify("app:1").unwrap().to_string(), "localhost:5000/app:1");
        assert_eq!(conf.qualify("quay.io/a/b").unwrap().to_string(), "quay.io/a/b:latest");
        let docker = RegistriesConf::default();
        assert_eq!(docker.qualify("busybox").unwrap().to_string(), "docker.io/library/busybox:latest");
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_but_a_missing_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let err = RegistriesConf::load(Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }
}
