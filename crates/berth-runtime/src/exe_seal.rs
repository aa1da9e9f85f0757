//! Protection of the host binary against overwrite through `/proc/self/exe` (CVE-2019-5736).
//!
//! A container process that execs `/proc/self/exe` of a runtime process (directly, or via a
//! `#!/proc/self/exe` interpreter line while the runtime execs the user process) gets a
//! handle on the runtime's binary and could rewrite it. Instead of copying the binary into a
//! sealed memfd on every start (runc's old way, ~ms and the binary's size in memory), berth
//! re-executes itself once from a detached, read-only overlayfs whose only layer is the
//! binary's directory: the exe the container can reach is then a file on a read-only
//! filesystem that cannot be remounted read-write (an overlay without upper dir). The mount
//! is detached (fsmount without move_mount), so it is in no mount table and disappears with
//! the last process using it.
//!
//! A binary installed immutable (`chattr +i`, which `scripts/build-release` does) is already
//! safe — it cannot be opened for writing at all — and is not re-executed.
//!
//! An unprivileged caller (rootless mode) cannot mount an overlay; it re-executes from a
//! sealed memfd copy of the binary instead (runc's way when it runs rootless).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Context, Error, Result};

const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// Set in the environment of the re-executed process so that a failure cannot loop.
const SEALED_ENV: &str = "_BERTH_EXE_SEALED";

/// Whether `/proc/self/exe` cannot be written: an immutable file (`chattr +i`, as
/// `scripts/build-release` installs it), a read-only overlay, or a sealed memfd.
pub fn is_sealed() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else { return false };
    if is_immutable(f.as_raw_fd()) {
        return true;
    }
    // SAFETY: fstatfs fills a statfs struct for an fd we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    // SAFETY: fstatvfs fills a statvfs struct for an fd we own.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(f.as_raw_fd(), &mut vfs) } != 0 {
        return false;
    }
    if st.f_type as i64 == OVERLAYFS_SUPER_MAGIC && (vfs.f_flag & libc::ST_RDONLY) != 0 {
        return true;
    }
    // SAFETY: F_GET_SEALS on an fd we own; fails with EINVAL unless it is a memfd.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & MEMFD_SEALS == MEMFD_SEALS
}

/// Whether the file has FS_IMMUTABLE_FL: nobody may open it for writing, rename, unlink or
/// replace it, not even root, without CAP_LINUX_IMMUTABLE in the initial user namespace
/// (which containers do not get unless privileged). Such a binary needs no re-exec: that
/// saves an exec and a mount on every start.
pub fn is_immutable(fd: RawFd) -> bool {
    const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
    const FS_IMMUTABLE_FL: libc::c_long = 0x10;
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    let rc = unsafe { libc::ioctl(fd, FS_IOC_GETFLAGS, &mut flags) };
    rc == 0 && flags & FS_IMMUTABLE_FL != 0
}

/// Seals that make a memfd copy of the binary immutable.
const MEMFD_SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Re-exec the current process from a read-only overlay of its binary, unless it already
/// runs from one. Returns only if nothing had to be done.
pub fn ensure_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    if std::env::var_os(SEALED_ENV).is_some() {
        return Err(Error::Init("re-executed from a sealed copy but /proc/self/exe is not on a read-only overlay".into()));
    }
    let exe = std::fs::read_link("/proc/self/exe").context("read /proc/self/exe")?;
    let dir = exe.parent().ok_or_else(|| Error::Init("binary has no parent directory".into()))?;
    let name = exe.file_name().ok_or_else(|| Error::Init("binary has no file name".into()))?;
    let exe_fd = match sealed_overlay(dir) {
        Ok(mnt) => {
            let cname = CString::new(name.as_bytes()).map_err(|_| Error::Init("binary name has a NUL".into()))?;
            // SAFETY: openat with a valid dir fd and NUL-terminated name.
            let fd = unsafe { libc::openat(mnt.as_raw_fd(), cname.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error()).context("open the binary in the sealed overlay");
            }
            // SAFETY: fd was just returned by openat.
            unsafe { OwnedFd::from_raw_fd(fd) }
        }
        // Mounting needs CAP_SYS_ADMIN: without it (rootless), a sealed copy does the job.
        Err(e) => {
            tracing::debug!("sealed overlay unavailable ({e}): using a sealed memfd copy");
            sealed_memfd(&exe)?
        }
    };
    std::env::set_var(SEALED_ENV, "1");
    let args: Vec<CString> = std::env::args_os().map(|a| CString::new(a.as_bytes()).unwrap_or_default()).collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let empty = CString::default();
    // SAFETY: argv/envp are NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::syscall(libc::SYS_execveat, exe_fd.as_raw_fd(), empty.as_ptr(), argv.as_ptr(), envp.as_ptr(), libc::AT_EMPTY_PATH) };
    Err(std::io::Error::last_os_error()).context("re-exec from the sealed overlay")
}

fn sys_fd(rc: libc::c_long, what: &str) -> Result<OwnedFd> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context(what.to_string());
    }
    // SAFETY: the syscall returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as RawFd) })
}

fn fsconfig(fs: &OwnedFd, cmd: u32, key: Option<&str>, value: Option<&str>) -> Result<()> {
    let k = key.map(|k| CString::new(k).unwrap_or_default());
    let v = value.map(|v| CString::new(v).unwrap_or_default());
    // SAFETY: fsconfig reads the NUL-terminated key/value strings if given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            cmd,
            k.as_ref().map_or(std::ptr::null(), |k| k.as_ptr()),
            v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("overlay fsconfig {}={}", key.unwrap_or(""), value.unwrap_or("")));
    }
    Ok(())
}

/// A sealed, read-only memfd copy of the binary at `exe`.
fn sealed_memfd(exe: &std::path::Path) -> Result<OwnedFd> {
    let src = std::fs::File::open(exe).with_context(|| format!("open {}", exe.display()))?;
    // SAFETY: memfd_create takes a NUL-terminated name and flags and returns a new fd.
    let rc = unsafe { libc::memfd_create(c"berth-runtime".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    let memfd = std::fs::File::from(sys_fd(rc as libc::c_long, "memfd_create for the sealed binary copy")?);
    // std's copy uses copy_file_range / sendfile where the kernel allows them.
    std::io::copy(&mut &src, &mut &memfd).with_context(|| format!("copy {} into a memfd", exe.display()))?;
    // SAFETY: F_ADD_SEALS on the memfd we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, MEMFD_SEALS) } != 0 {
        return Err(std::io::Error::last_os_error()).context("seal the memfd copy of the binary");
    }
    Ok(memfd.into())
}

const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;

/// A detached read-only overlay of `dir` (plus an empty tmpfs, since an overlay without an
/// upper layer needs two lower layers).
fn sealed_overlay(dir: &std::path::Path) -> Result<OwnedFd> {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    // SAFETY: fsopen/fsmount take a NUL-terminated fs name, fds and flags only.
    let tmpfs = sys_fd(unsafe { libc::syscall(libc::SYS_fsopen, c("tmpfs").as_ptr(), 1) }, "fsopen tmpfs")?;
    fsconfig(&tmpfs, FSCONFIG_CMD_CREATE, None, None)?;
    // SAFETY: as above.
    let empty = sys_fd(unsafe { libc::syscall(libc::SYS_fsmount, tmpfs.as_raw_fd(), 1, 0) }, "fsmount tmpfs")?;
    // SAFETY: as above.
    let ovl = sys_fd(unsafe { libc::syscall(libc::SYS_fsopen, c("overlay").as_ptr(), 1) }, "fsopen overlay")?;
    let lower = format!("{}:/proc/self/fd/{}", dir.display(), empty.as_raw_fd());
    fsconfig(&ovl, FSCONFIG_SET_STRING, Some("lowerdir"), Some(&lower))?;
    fsconfig(&ovl, FSCONFIG_SET_STRING, Some("xino"), Some("off"))?;
    fsconfig(&ovl, FSCONFIG_CMD_CREATE, None, None)?;
    const MOUNT_ATTR_RDONLY: u32 = 1;
    const MOUNT_ATTR_NODEV: u32 = 4;
    // SAFETY: fsmount of a configured fs context fd.
    sys_fd(unsafe { libc::syscall(libc::SYS_fsmount, ovl.as_raw_fd(), 1, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV) }, "fsmount overlay")
}
