//! Image references: parsing and docker.io normalisation.
//!
//! The rules follow distribution/reference (what docker and podman use): the first path
//! component is a registry when it contains `.` or `:`, is `localhost`, or has an upper-case
//! letter; otherwise the registry is `docker.io`, and a single-component docker.io name lives
//! under `library/`. A reference with neither tag nor digest gets the tag `latest`.

use std::fmt;
use std::str::FromStr;

use crate::store::digest::{parse_digest, Digest};
use crate::{Error, Result};

/// The registry that names without a registry component refer to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy spelling of the default registry, normalised to [`DEFAULT_DOMAIN`].
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official docker.io images.
const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag of a reference that names none.
pub const DEFAULT_TAG: &str = "latest";
/// Longest allowed tag.
const MAX_TAG_LEN: usize = 128;
/// Longest allowed repository name (registry + path).
const MAX_NAME_LEN: usize = 255;

/// A normalised image reference: `registry/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise a reference as docker does (`busybox` → `docker.io/library/busybox:latest`).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidReference { reference: s.to_string(), reason: reason.to_string() };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((name, d)) => {
                let digest = parse_digest(d).map_err(|_| bad("invalid digest"))?;
                (name, Some(digest))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|r| bad(&r))?;
        }
        if name.is_empty() {
            return Err(bad("empty repository name"));
        }
        if is_hex_identifier(name) {
            return Err(bad("cannot specify a 64-character hexadecimal string as a name"));
        }
        let (domain, path) = split_domain(name);
        validate_domain(domain).map_err(|r| bad(&r))?;
        validate_path(path).map_err(|r| bad(&r))?;
        let (domain, path) = normalise(domain, path);
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(bad("repository name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Self { domain, path, tag, digest })
    }

    /// The registry host (with port), e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` when the input named neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name without tag or digest, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        validate_tag(tag).map_err(|reason| Error::InvalidReference { reference: tag.to_string(), reason })?;
        Ok(Self { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.to_string()), digest: None })
    }

    /// The same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: Some(digest) }
    }

    /// The short form docker prints: `busybox:latest`, `user/app:1`, `quay.io/x/y:2`.
    pub fn familiar(&self) -> String {
        let mut out = if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                Some(short) if !short.contains('/') => short.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        };
        push_tag_and_digest(&mut out, self.tag.as_deref(), self.digest.as_ref());
        out
    }
}

fn push_tag_and_digest(out: &mut String, tag: Option<&str>, digest: Option<&Digest>) {
    if let Some(tag) = tag {
        out.push(':');
        out.push_str(tag);
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d.as_ref());
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.name();
        push_tag_and_digest(&mut out, self.tag.as_deref(), self.digest.as_ref());
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// Split `name` into (registry, path) per distribution/reference's splitDockerDomain.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) => {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn normalise(domain: &str, path: &str) -> (String, String) {
    let domain = if domain == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN } else { domain };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("{OFFICIAL_REPO_PREFIX}{path}") } else { path.to_string() };
    (domain.to_string(), path)
}

fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `host[:port]`: dot-separated components of `[A-Za-z0-9-]` not starting or ending with `-`,
/// or a bracketed IPv6 address.
fn validate_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("unterminated IPv6 address")?;
        if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("invalid IPv6 registry address {ip:?}"));
        }
        match after {
            "" => return Ok(()),
            p => (None, Some(p.strip_prefix(':').ok_or("junk after IPv6 address")?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        for comp in host.split('.') {
            let ok = !comp.is_empty()
                && comp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !comp.starts_with('-')
                && !comp.ends_with('-');
            if !ok {
                return Err(format!("invalid registry host {host:?}"));
            }
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid registry port {port:?}"));
        }
    }
    Ok(())
}

/// Path components: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn validate_path(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("empty repository path".into());
    }
    for comp in path.split('/') {
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("repository name must be lowercase".into());
        }
        if !valid_path_component(comp) {
            return Err(format!("invalid repository path component {comp:?}"));
        }
    }
    Ok(())
}

fn valid_path_component(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if b.is_empty() {
        return Err("empty tag".into());
    }
    if b.len() > MAX_TAG_LEN {
        return Err(format!("tag longer than {MAX_TAG_LEN} characters"));
    }
    if !word(b[0]) || !b.iter().all(|&c| word(c) || c == b'.' || c == b'-') {
        return Err(format!("invalid tag {tag:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn references_normalise_like_docker() {
        let d = format!("sha256:{HEX}");
        let cases: Vec<(String, String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into(), "busybox:latest".into()),
            ("busybox:1.36".into(), "docker.io/library/busybox:1.36".into(), "busybox:1.36".into()),
            ("user/app".into(), "docker.io/user/app:latest".into(), "user/app:latest".into()),
            ("docker.io/busybox".into(), "docker.io/library/busybox:latest".into(), "busybox:latest".into()),
            ("index.docker.io/library/busybox".into(), "docker.io/library/busybox:latest".into(), "busybox:latest".into()),
            ("library/busybox".into(), "docker.io/library/busybox:latest".into(), "busybox:latest".into()),
            ("localhost/x".into(), "localhost/x:latest".into(), "localhost/x:latest".into()),
            ("localhost:5000/a/b:v1".into(), "localhost:5000/a/b:v1".into(), "localhost:5000/a/b:v1".into()),
            ("quay.io/coreos/etcd:v3.5.0".into(), "quay.io/coreos/etcd:v3.5.0".into(), "quay.io/coreos/etcd:v3.5.0".into()),
            ("127.0.0.1:5000/x".into(), "127.0.0.1:5000/x:latest".into(), "127.0.0.1:5000/x:latest".into()),
            ("[::1]:5000/x:t".into(), "[::1]:5000/x:t".into(), "[::1]:5000/x:t".into()),
            (format!("busybox@{d}"), format!("docker.io/library/busybox@{d}"), format!("busybox@{d}")),
            (format!("busybox:1@{d}"), format!("docker.io/library/busybox:1@{d}"), format!("busybox:1@{d}")),
            ("a-b__c/e---f.g:T_1.x-y".into(), "docker.io/a-b__c/e---f.g:T_1.x-y".into(), "a-b__c/e---f.g:T_1.x-y".into()),
            ("Registry/x".into(), "Registry/x:latest".into(), "Registry/x:latest".into()),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "display of {input}");
            assert_eq!(r.familiar(), familiar, "familiar of {input}");
            assert_eq!(Reference::parse(&full).unwrap(), r, "round trip of {input}");
        }
    }

    #[test]
    fn reference_parts_are_split() {
        let r = Reference::parse("localhost:5000/team/app:v2").unwrap();
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "team/app");
        assert_eq!(r.tag(), Some("v2"));
        assert_eq!(r.name(), "localhost:5000/team/app");
        assert!(r.digest().is_none());
        assert_eq!(r.with_tag("v3").unwrap().to_string(), "localhost:5000/team/app:v3");
    }

    #[test]
    fn invalid_references_are_rejected() {
        let long_tag = format!("busybox:{}", "a".repeat(129));
        let long_name = format!("x.io/{}", "a".repeat(260));
        let cases = [
            "",
            "Busybox",
            "user/App",
            "busybox:",
            "busybox:-tag",
            "busybox:ta/g",
            long_tag.as_str(),
            long_name.as_str(),
            "busybox@sha256:1234",
            "busybox@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "busybox@md5",
            "-busybox",
            "busy--box_",
            "a//b",
            "a/b/",
            "a..b",
            "a___b",
            "host:port/x",
            "-host.io/x",
            "under_score.io/x",
            "[::1/x",
            HEX,
            ":tag",
            "@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ];
        for input in cases {
            assert!(Reference::parse(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn tag_of_128_characters_is_accepted() {
        let r = Reference::parse(&format!("busybox:{}", "a".repeat(128))).unwrap();
        assert_eq!(r.tag().map(str::len), Some(128));
    }
}
