//! Image transports as skopeo and podman spell them: `docker://REF` (the default when no
//! transport is named), `oci:DIR[:tag]`, `oci-archive:FILE[:tag]`, `docker-archive:FILE[:ref]`.
//!
//! As in containers/image, the path ends at the first `:` after the transport name, so a path
//! cannot contain `:`; what follows is the tag (OCI) or the docker reference (docker-archive,
//! where `@N` selects the N-th image of the archive's `manifest.json`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::reference::Reference;
use crate::{Error, Result};

/// Transports containers/image knows but berth does not implement.
const UNSUPPORTED: &[&str] = &["dir", "containers-storage", "docker-daemon", "ostree", "sif", "tarball"];

/// Where an image is read from or written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A registry (`docker://REF`, or a bare reference).
    Docker(Reference),
    /// An OCI image layout directory; the tag matches `org.opencontainers.image.ref.name`.
    OciDir {
        /// The layout directory.
        path: PathBuf,
        /// The ref name inside the layout, if given.
        tag: Option<String>,
    },
    /// An OCI image layout in a tar file.
    OciArchive {
        /// The tar file.
        path: PathBuf,
        /// The ref name inside the layout, if given.
        tag: Option<String>,
    },
    /// A `docker save` tar (`manifest.json` with Config/RepoTags/Layers).
    DockerArchive {
        /// The tar file.
        path: PathBuf,
        /// Which image of the archive (reading) or which RepoTag to write (saving).
        selector: Option<ArchiveSelector>,
    },
}

/// Which image of a docker-archive is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSelector {
    /// The image whose RepoTags hold this reference.
    Reference(Reference),
    /// The N-th entry (from 0) of `manifest.json` (`@N`).
    Index(usize),
}

impl Transport {
    /// Parse a transport string; without a known `name:` prefix it is a registry reference.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference { reference: s.to_string(), reason: reason.to_string() };
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Self::Docker(Reference::parse(rest)?));
        }
        let Some((name, rest)) = s.split_once(':') else {
            return Ok(Self::Docker(Reference::parse(s)?));
        };
        let (path, suffix) = match rest.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (rest, None),
        };
        let path_buf = || -> Result<PathBuf> {
            if path.is_empty() {
                return Err(bad("empty path"));
            }
            Ok(PathBuf::from(path))
        };
        let tag = || -> Result<Option<String>> {
            match suffix {
                None => Ok(None),
                Some(t) if valid_ref_name(t) => Ok(Some(t.to_string())),
                Some(t) => Err(bad(&format!("invalid OCI ref name {t:?}"))),
            }
        };
        match name {
            "oci" => Ok(Self::OciDir { path: path_buf()?, tag: tag()? }),
            "oci-archive" => Ok(Self::OciArchive { path: path_buf()?, tag: tag()? }),
            "docker-archive" => {
                let selector = match suffix {
                    None | Some("") => None,
                    Some(sel) => Some(parse_selector(sel).map_err(|r| bad(&r))?),
                };
                Ok(Self::DockerArchive { path: path_buf()?, selector })
            }
            "docker" => Err(bad("the docker transport is written docker://REF")),
            other if UNSUPPORTED.contains(&other) => Err(bad(&format!("transport {other:?} is not supported by berth"))),
            // `host:5000/repo:tag` and `busybox:1` are registry references.
            _ => Ok(Self::Docker(Reference::parse(s)?)),
        }
    }

    /// Whether this is an archive or layout (not a registry).
    pub fn is_local(&self) -> bool {
        !matches!(self, Self::Docker(_))
    }
}

fn parse_selector(sel: &str) -> std::result::Result<ArchiveSelector, String> {
    if let Some(n) = sel.strip_prefix('@') {
        return n.parse().map(ArchiveSelector::Index).map_err(|_| format!("invalid image index {sel:?}"));
    }
    let r = Reference::parse(sel).map_err(|e| e.to_string())?;
    if r.digest().is_some() {
        return Err("a docker-archive reference cannot contain a digest".into());
    }
    Ok(ArchiveSelector::Reference(r))
}

/// The OCI image-layout ref name grammar: alphanumerics separated by `-._:@/+`.
pub fn valid_ref_name(s: &str) -> bool {
    let sep = |c: char| matches!(c, '-' | '.' | '_' | ':' | '@' | '/' | '+' | '=');
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || sep(c)) && !s.starts_with(sep) && !s.ends_with(sep)
}

impl FromStr for Transport {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = |t: &Option<String>| t.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        match self {
            Self::Docker(r) => write!(f, "docker://{r}"),
            Self::OciDir { path, tag } => write!(f, "oci:{}{}", path.display(), suffix(tag)),
            Self::OciArchive { path, tag } => write!(f, "oci-archive:{}{}", path.display(), suffix(tag)),
            Self::DockerArchive { path, selector } => {
                write!(f, "docker-archive:{}", path.display())?;
                match selector {
                    Some(ArchiveSelector::Reference(r)) => write!(f, ":{r}"),
                    Some(ArchiveSelector::Index(n)) => write!(f, ":@{n}"),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Transport {
        Transport::parse(s).unwrap()
    }

    #[test]
    fn bare_and_docker_references_are_registry_images() {
        let busybox = Reference::parse("busybox").unwrap();
        assert_eq!(p("busybox"), Transport::Docker(busybox.clone()));
        assert_eq!(p("docker://busybox"), Transport::Docker(busybox));
        assert_eq!(p("localhost:5000/app:v1"), Transport::Docker(Reference::parse("localhost:5000/app:v1").unwrap()));
        assert_eq!(p("busybox:1.36"), Transport::Docker(Reference::parse("busybox:1.36").unwrap()));
        assert!(Transport::parse("docker:busybox").is_err());
    }

    #[test]
    fn oci_transports_split_path_and_tag_at_the_first_colon() {
        assert_eq!(p("oci:/tmp/layout"), Transport::OciDir { path: "/tmp/layout".into(), tag: None });
        assert_eq!(p("oci:/tmp/layout:v1"), Transport::OciDir { path: "/tmp/layout".into(), tag: Some("v1".into()) });
        assert_eq!(
            p("oci-archive:img.tar:docker.io/library/busybox:latest"),
            Transport::OciArchive { path: "img.tar".into(), tag: Some("docker.io/library/busybox:latest".into()) }
        );
        assert!(Transport::parse("oci::v1").is_err());
        assert!(Transport::parse("oci:/x:-bad").is_err());
    }

    #[test]
    fn docker_archive_takes_a_reference_or_an_index() {
        assert_eq!(p("docker-archive:a.tar"), Transport::DockerArchive { path: "a.tar".into(), selector: None });
        assert_eq!(
            p("docker-archive:a.tar:busybox:1"),
            Transport::DockerArchive {
                path: "a.tar".into(),
                selector: Some(ArchiveSelector::Reference(Reference::parse("busybox:1").unwrap()))
            }
        );
        assert_eq!(
            p("docker-archive:a.tar:@2"),
            Transport::DockerArchive { path: "a.tar".into(), selector: Some(ArchiveSelector::Index(2)) }
        );
        assert!(Transport::parse("docker-archive:a.tar:@x").is_err());
        let digest = format!("docker-archive:a.tar:busybox@sha256:{}", "a".repeat(64));
        assert!(Transport::parse(&digest).is_err());
    }

    #[test]
    fn unsupported_transports_are_named_in_the_error() {
        let err = Transport::parse("containers-storage:busybox").unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["oci:/tmp/x:v1", "oci-archive:a.tar", "docker-archive:a.tar:@1", "docker://docker.io/library/busybox:latest"] {
            assert_eq!(p(s).to_string(), s);
        }
    }
}
