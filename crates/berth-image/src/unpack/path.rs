//! Entry names: lexical cleaning (no component may climb out of the root) and whiteouts.

use super::PathPolicy;

/// The AUFS whiteout prefix used by Docker and OCI layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Prefix of other AUFS metadata entries (hardlink dirs and such), which carry no content.
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";

/// A cleaned entry name relative to the snapshot root: components without `.`, `..` or empties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    components: Vec<String>,
}

impl CleanPath {
    /// The root itself (an entry named `./`).
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The parent directory's components (empty for an entry directly under the root).
    pub fn parent(&self) -> &[String] {
        &self.components[..self.components.len().saturating_sub(1)]
    }

    /// The last component (empty for the root).
    pub fn base(&self) -> &str {
        self.components.last().map_or("", String::as_str)
    }

    /// The relative path as a string, for messages and `openat2`.
    pub fn joined(&self) -> String {
        self.components.join("/")
    }
}

/// Clean a tar entry name lexically. `..` that would climb above the root is refused; a leading
/// `/` is stripped under [`PathPolicy::Docker`] and refused under [`PathPolicy::Strict`].
pub fn clean(name: &[u8], policy: PathPolicy) -> Result<CleanPath, String> {
    if name.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    let name = std::str::from_utf8(name).map_err(|_| "name is not UTF-8".to_string())?;
    if name.starts_with('/') && policy == PathPolicy::Strict {
        return Err("absolute name".into());
    }
    let mut components: Vec<String> = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err("name climbs out of the layer root with '..'".into());
                }
            }
            c => components.push(c.to_string()),
        }
    }
    Ok(CleanPath { components })
}

/// What an entry's last component says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// A plain entry.
    None,
    /// `.wh..wh..opq`: the parent directory hides everything below it in lower layers.
    Opaque,
    /// `.wh.<name>`: `<name>` in the parent is deleted.
    Delete(&'a str),
    /// Other `.wh..wh.*` metadata: ignored.
    Meta,
}

/// Classify a base name; a whiteout of `.`, `..` or an empty name is refused.
pub fn whiteout(base: &str) -> Result<Whiteout<'_>, String> {
    if base == OPAQUE_MARKER {
        return Ok(Whiteout::Opaque);
    }
    if base.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Whiteout::Meta);
    }
    match base.strip_prefix(WHITEOUT_PREFIX) {
        None => Ok(Whiteout::None),
        Some("" | "." | "..") => Err(format!("whiteout of {base:?} names no entry of its directory")),
        Some(name) => Ok(Whiteout::Delete(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str, p: PathPolicy) -> Result<String, String> {
        clean(s.as_bytes(), p).map(|c| c.joined())
    }

    #[test]
    fn names_are_cleaned_or_refused() {
        use PathPolicy::*;
        assert_eq!(c("./usr/bin/ls", Strict).unwrap(), "usr/bin/ls");
        assert_eq!(c("usr//bin/./ls", Strict).unwrap(), "usr/bin/ls");
        assert_eq!(c("a/../b", Strict).unwrap(), "b");
        assert_eq!(c("./", Strict).unwrap(), "");
        assert!(c("../../etc/passwd", Strict).is_err());
        assert!(c("a/../../b", Docker).is_err());
        assert!(c("/etc/passwd", Strict).is_err());
        assert_eq!(c("/etc/passwd", Docker).unwrap(), "etc/passwd");
        assert!(clean(b"a\0b", Docker).is_err());
    }

    #[test]
    fn whiteouts_are_classified() {
        assert_eq!(whiteout("file").unwrap(), Whiteout::None);
        assert_eq!(whiteout(".wh.file").unwrap(), Whiteout::Delete("file"));
        assert_eq!(whiteout(".wh..wh..opq").unwrap(), Whiteout::Opaque);
        assert_eq!(whiteout(".wh..wh.plnk").unwrap(), Whiteout::Meta);
        assert!(whiteout(".wh...").is_err());
        assert!(whiteout(".wh..").is_err());
        assert!(whiteout(".wh.").is_err());
    }
}
