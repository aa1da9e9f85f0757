//! `--ulimit name=soft[:hard]` → `process.rlimits` (docker's names).

use crate::error::{Error, Result};

/// One resource limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    /// `RLIMIT_NOFILE`, …
    pub kind: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

const NAMES: &[(&str, &str)] = &[
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

fn limit(value: &str, v: &str) -> Result<u64> {
    match v {
        "-1" | "unlimited" => Ok(u64::MAX),
        _ => v.parse().map_err(|_| Error::Invalid(format!("--ulimit {value:?}: {v:?} is not a number"))),
    }
}

/// Parse `nofile=100:200` (hard = soft when absent; `-1` or `unlimited` for no limit).
pub fn parse(value: &str) -> Result<Ulimit> {
    let (name, limits) = value.split_once('=').ok_or_else(|| Error::Invalid(format!("--ulimit {value:?}: expected NAME=SOFT[:HARD]")))?;
    let kind = NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| k.to_string())
        .ok_or_else(|| Error::Invalid(format!("--ulimit {value:?}: unknown limit {name:?}")))?;
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (limit(value, s)?, limit(value, h)?),
        None => {
            let l = limit(value, limits)?;
            (l, l)
        }
    };
    if soft > hard {
        return Err(Error::Invalid(format!("--ulimit {value:?}: the soft limit is above the hard limit")));
    }
    Ok(Ulimit { kind, soft, hard })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_parse_soft_and_hard_with_dockers_names() {
        assert_eq!(parse("nofile=100:200").unwrap(), Ulimit { kind: "RLIMIT_NOFILE".into(), soft: 100, hard: 200 });
        assert_eq!(parse("nproc=50").unwrap(), Ulimit { kind: "RLIMIT_NPROC".into(), soft: 50, hard: 50 });
        assert_eq!(parse("core=-1").unwrap().hard, u64::MAX);
        for bad in ["nofile", "files=1", "nofile=a", "nofile=200:100"] {
            assert!(parse(bad).unwrap_err().to_string().starts_with("--ulimit "), "{bad}");
        }
    }
}
