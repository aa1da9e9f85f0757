//! `--sysctl KEY=VALUE`: only the namespaced ones docker allows (IPC's `kernel.msg*`,
//! `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`; `net.*` with the container's own network).

use crate::error::{Error, Result};

const IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Parse and check one `--sysctl`; `own_network`: the container has a network namespace.
pub fn parse(value: &str, own_network: bool) -> Result<(String, String)> {
    let (k, v) = value
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| Error::Invalid(format!("--sysctl {value:?}: expected KEY=VALUE")))?;
    let key = k.trim().replace('/', ".");
    if IPC.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
        return Ok((key, v.to_string()));
    }
    if key.starts_with("net.") {
        if !own_network {
            return Err(Error::Invalid(format!("--sysctl {value:?}: net.* sysctls cannot be set with --network host")));
        }
        return Ok((key, v.to_string()));
    }
    Err(Error::Invalid(format!("--sysctl {value:?}: {key} is not namespaced: a container cannot set it")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_are_accepted() {
        assert_eq!(parse("kernel.msgmax=65536", true).unwrap(), ("kernel.msgmax".into(), "65536".into()));
        assert_eq!(parse("net/ipv4/ip_forward=1", true).unwrap().0, "net.ipv4.ip_forward");
        assert!(parse("net.ipv4.ip_forward=1", false).unwrap_err().to_string().contains("--network host"));
        assert!(parse("kernel.panic=1", true).unwrap_err().to_string().contains("not namespaced"));
        assert!(parse("kernel.msgmax", true).unwrap_err().to_string().starts_with("--sysctl "));
    }
}
