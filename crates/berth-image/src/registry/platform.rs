//! Platforms (`os/arch[/variant]`) and picking one manifest out of an index.

use std::fmt;

use crate::error::{Error, Result};

/// An OS, architecture and optional CPU variant, named as in OCI image indexes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// GOARCH names: `amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`, `riscv64`.
    pub architecture: String,
    /// `v7`, `v8`, … when the architecture has variants.
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform { os: os.into(), architecture: architecture.into(), variant: variant.map(Into::into) }
    }

    /// The platform this process runs on.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, architecture, variant)
    }

    /// Parse `os/arch[/variant]` as given to `--platform`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || Error::Format { what: format!("platform {text:?}"), message: "expected os/arch[/variant]".into() };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }

    /// Whether an index entry for (`os`, `architecture`, `variant`) runs here; `Some(exact)`
    /// tells an exact variant match from an accepted one.
    fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> Option<bool> {
        if !self.os.eq_ignore_ascii_case(os) || normalize_arch(&self.architecture) != normalize_arch(architecture) {
            return None;
        }
        let default_variant = |arch: &str| match normalize_arch(arch) {
            "arm64" => Some("v8"),
            _ => None,
        };
        let wanted = self.variant.as_deref().or_else(|| default_variant(&self.architecture));
        let offered = variant.filter(|v| !v.is_empty()).or_else(|| default_variant(architecture));
        match (wanted, offered) {
            (None, _) => Some(offered.is_none()),
            (Some(w), Some(o)) if w == o => Some(true),
            // An entry that names no variant is accepted for any, but ranks below an exact one.
            (Some(_), None) => Some(false),
            (Some(_), Some(_)) => None,
        }
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The index of the entry in `entries` (os, arch, variant) that best fits `wanted`.
pub(crate) fn select<'a>(
    wanted: &Platform,
    entries: impl IntoIterator<Item = (usize, Option<(&'a str, &'a str, Option<&'a str>)>)>,
    reference: &str,
) -> Result<usize> {
    let mut best: Option<(usize, bool)> = None;
    let mut available = Vec::new();
    for (index, platform) in entries {
        let Some((os, arch, variant)) = platform else {
            available.push("(no platform)".to_string());
            continue;
        };
        available.push(Platform::new(os, arch, variant).to_string());
        match (wanted.matches(os, arch, variant), best) {
            (Some(true), Some((_, false)) | None) => best = Some((index, true)),
            (Some(false), None) => best = Some((index, false)),
            _ => {}
        }
    }
    best.map(|(index, _)| index).ok_or_else(|| Error::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: wanted.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(wanted: &str, offered: &[(&'static str, &'static str, Option<&'static str>)]) -> Result<usize> {
        let wanted = Platform::parse(wanted).unwrap();
        select(&wanted, offered.iter().enumerate().map(|(i, p)| (i, Some(*p))), "img")
    }

    #[test]
    fn exact_variant_beats_a_variantless_entry() {
        let offered = [("linux", "arm", None), ("linux", "arm", Some("v6")), ("linux", "arm", Some("v7"))];
        assert_eq!(pick("linux/arm/v7", &offered).unwrap(), 2);
        assert_eq!(pick("linux/arm/v5", &offered).unwrap(), 0);
        assert_eq!(pick("linux/arm64", &[("linux", "arm64", Some("v8"))]).unwrap(), 0);
        assert_eq!(pick("linux/amd64", &[("linux", "arm64", None), ("linux", "amd64", None)]).unwrap(), 1);
    }

    #[test]
    fn no_match_lists_what_is_available() {
        let err = pick("linux/s390x", &[("linux", "amd64", None), ("linux", "arm", Some("v7"))]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("linux/s390x") && text.contains("linux/amd64, linux/arm/v7"), "{text}");
    }

    #[test]
    fn platform_strings_parse_strictly() {
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap(), Platform::new("linux", "arm64", Some("v8")));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("a/b/c/d").is_err());
        assert_eq!(Platform::host().os, std::env::consts::OS);
    }
}
