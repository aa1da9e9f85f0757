//! berth's nftables rules: one table per root (`inet berth` for the default root,
//! `inet berth_<hash of the root>` for others, so that parallel roots — tests — do not replace
//! each other's rules), its rules rebuilt as a whole from the state database after every
//! change in one atomic transaction. The table is deleted with the idle bridges (a second
//! after the last container left, see `Networks::reap_idle_bridges`), so `nft list ruleset`
//! shows nothing of berth's once no container runs.
//!
//! The ruleset goes to the kernel through libnftables (the library behind `nft`, package
//! libnftables1, loaded with dlopen so building needs no -dev package): one in-process call
//! takes ~0.5 ms where an `nft -f` process takes ~10 ms on the reference host, which would
//! blow the 5 ms budget of a container's network setup alone.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::error::{Error, Result};
use crate::ipam::Subnet;
use crate::ports::PortMapping;

/// The table of the default root.
pub const TABLE: &str = "berth";

/// The table of the root at `root`.
pub fn table_for(root: &std::path::Path) -> String {
    if root == std::path::Path::new("/var/lib/berth") {
        return TABLE.to_string();
    }
    let h =
        root.as_os_str().as_encoded_bytes().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    format!("{TABLE}_{:08x}", h as u32)
}

/// A network with at least one container, as the rules need it.
pub struct ActiveNetwork {
    /// Bridge name.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// No traffic in or out but between its containers.
    pub internal: bool,
}

/// A published port bound to a container address.
pub struct ActivePort {
    /// The mapping.
    pub mapping: PortMapping,
    /// The container's address.
    pub container_ip: Ipv4Addr,
    /// The bridge of its network.
    pub bridge: String,
}

/// One transaction that makes the table say exactly this: chains are added if missing and
/// every rule is replaced (`flush table`), so an existing table keeps its base chains and
/// their netfilter hooks. (Registering or unregistering a hook waits for RCU grace periods:
/// 5–20 ms on a loaded host, where replacing rules takes well under a millisecond.)
pub fn render(table: &str, networks: &[ActiveNetwork], ports: &[ActivePort]) -> String {
    let mut s = String::new();
    let t = format!("inet {table}");
    let _ = writeln!(s, "add table {t}");
    for c in ["published", "masquerading", "forwarding"] {
        let _ = writeln!(s, "add chain {t} {c}");
    }
    let _ = writeln!(s, "add chain {t} prerouting {{ type nat hook prerouting priority -100; policy accept; }}");
    let _ = writeln!(s, "add chain {t} output {{ type nat hook output priority -100; policy accept; }}");
    let _ = writeln!(s, "add chain {t} postrouting {{ type nat hook postrouting priority 100; policy accept; }}");
    let _ = writeln!(s, "add chain {t} forward {{ type filter hook forward priority 0; policy accept; }}");
    let _ = writeln!(s, "flush table {t}");
    // Published ports: DNAT from outside (prerouting) and from the host itself (output).
    let _ = writeln!(s, "add rule {t} prerouting fib daddr type local jump published");
    let _ = writeln!(s, "add rule {t} output fib daddr type local jump published");
    let _ = writeln!(s, "add rule {t} postrouting jump masquerading");
    let _ = writeln!(s, "add rule {t} forward jump forwarding");
    for p in ports {
        let m = &p.mapping;
        let daddr = if m.host_ip.is_unspecified() { String::new() } else { format!("ip daddr {} ", m.host_ip) };
        let _ = writeln!(
            s,
            "add rule {t} published {daddr}{} dport {} dnat ip to {}:{}",
            m.protocol.as_str(),
            m.host_port,
            p.container_ip,
            m.container_port
        );
    }
    for n in networks {
        // The host reaching a published port on 127.0.0.1: the packet leaves on the bridge
        // (route_localnet lets it) with a loopback source the container cannot answer.
        let _ = writeln!(s, "add rule {t} masquerading oifname \"{}\" ip saddr 127.0.0.0/8 masquerade", n.bridge);
        if n.internal {
            let _ = writeln!(s, "add rule {t} forwarding iifname \"{0}\" oifname != \"{0}\" drop", n.bridge);
            let _ = writeln!(s, "add rule {t} forwarding oifname \"{0}\" iifname != \"{0}\" drop", n.bridge);
        } else {
            let _ = writeln!(s, "add rule {t} masquerading ip saddr {0} ip daddr != {0} masquerade", n.subnet);
            // Hairpin: a container reaching a published port of its own network through a
            // host address is DNATed back onto the bridge; the reply must come back through
            // the host too.
            let _ = writeln!(s, "add rule {t} masquerading ip saddr {0} ip daddr {0} ct status dnat masquerade", n.subnet);
            let _ = writeln!(s, "add rule {t} forwarding iifname \"{}\" accept", n.bridge);
            let _ = writeln!(s, "add rule {t} forwarding oifname \"{}\" ct state established,related accept", n.bridge);
            let _ = writeln!(s, "add rule {t} forwarding oifname \"{}\" ct status dnat accept", n.bridge);
        }
    }
    s
}

/// Make the table say `ruleset` (from `render`), atomically.
pub fn apply(ruleset: &str) -> Result<()> {
    Nft::get()?.run(ruleset)
}

/// Delete the table (absent is fine).
pub fn delete(table: &str) -> Result<()> {
    // "add table" makes the delete valid whether or not the table exists; one transaction.
    Nft::get()?.run(&format!("add table inet {table}\ndelete table inet {table}\n"))
}

type NewFn = unsafe extern "C" fn(u32) -> *mut c_void;
type RunFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type BufferFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBufferFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;

/// libnftables, loaded once per process.
struct Nft {
    new: NewFn,
    run: RunFn,
    free: FreeFn,
    buffer_error: BufferFn,
    get_error: GetBufferFn,
}

static NFT: std::sync::OnceLock<std::result::Result<Nft, String>> = std::sync::OnceLock::new();

impl Nft {
    fn get() -> Result<&'static Nft> {
        NFT.get_or_init(Nft::load).as_ref().map_err(|e| Error::Nft(e.clone()))
    }

    fn load() -> std::result::Result<Nft, String> {
        let name = c"libnftables.so.1";
        // SAFETY: dlopen with a valid C string; the handle is never closed, so the symbols
        // below stay valid for the life of the process.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err("cannot load libnftables.so.1 (install the nftables package)".into());
        }
        let sym = |n: &CStr| -> std::result::Result<*mut c_void, String> {
            // SAFETY: handle is a live dlopen handle and n a C string.
            let p = unsafe { libc::dlsym(handle, n.as_ptr()) };
            if p.is_null() {
                Err(format!("libnftables.so.1 lacks {}", n.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        // SAFETY: the symbols are libnftables' public API (nftables/libnftables.h) with these
        // exact C signatures.
        unsafe {
            Ok(Nft {
                new: std::mem::transmute::<*mut c_void, NewFn>(sym(c"nft_ctx_new")?),
                run: std::mem::transmute::<*mut c_void, RunFn>(sym(c"nft_run_cmd_from_buffer")?),
                free: std::mem::transmute::<*mut c_void, FreeFn>(sym(c"nft_ctx_free")?),
                buffer_error: std::mem::transmute::<*mut c_void, BufferFn>(sym(c"nft_ctx_buffer_error")?),
                get_error: std::mem::transmute::<*mut c_void, GetBufferFn>(sym(c"nft_ctx_get_error_buffer")?),
            })
        }
    }

    fn run(&self, cmd: &str) -> Result<()> {
        let c = CString::new(cmd).map_err(|_| Error::Nft("a NUL byte in the ruleset".into()))?;
        // SAFETY: NFT_CTX_DEFAULT is 0; the context is freed below on every path.
        let ctx = unsafe { (self.new)(0) };
        if ctx.is_null() {
            return Err(Error::Nft("nft_ctx_new failed".into()));
        }
        // SAFETY: ctx is live; c outlives the call; the error buffer belongs to ctx and is
        // copied before ctx is freed.
        unsafe {
            (self.buffer_error)(ctx);
            let rc = (self.run)(ctx, c.as_ptr());
            let err = if rc != 0 {
                let p = (self.get_error)(ctx);
                Some(if p.is_null() { "unknown error".to_string() } else { CStr::from_ptr(p).to_string_lossy().trim().to_string() })
            } else {
                None
            };
            (self.free)(ctx);
            match err {
                Some(e) => Err(Error::Nft(e)),
                None => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::PortMapping;

    #[test]
    fn tables_are_named_per_root() {
        assert_eq!(table_for(std::path::Path::new("/var/lib/berth")), "berth");
        assert_ne!(table_for(std::path::Path::new("/tmp/a")), table_for(std::path::Path::new("/tmp/b")));
    }

    #[test]
    fn a_published_port_becomes_a_dnat_rule_and_internal_networks_are_not_masqueraded() {
        let nets = [
            ActiveNetwork { bridge: "b0".into(), subnet: "10.1.0.0/24".parse().unwrap(), internal: false },
            ActiveNetwork { bridge: "b1".into(), subnet: "10.2.0.0/24".parse().unwrap(), internal: true },
        ];
        let ports = [ActivePort {
            mapping: PortMapping::parse("8080:80").unwrap()[0].clone(),
            container_ip: "10.1.0.2".parse().unwrap(),
            bridge: "b0".into(),
        }];
        let r = render(TABLE, &nets, &ports);
        assert!(r.contains("published tcp dport 8080 dnat ip to 10.1.0.2:80"), "{r}");
        assert!(r.contains("flush table inet berth\n"));
        assert!(r.contains("ip saddr 10.1.0.0/24 ip daddr != 10.1.0.0/24 masquerade"));
        assert!(!r.contains("ip saddr 10.2.0.0/24"));
        assert!(r.contains("forwarding iifname \"b1\" oifname != \"b1\" drop"));
    }
}
