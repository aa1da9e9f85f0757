//! Resolving paths inside a container root without escaping it (openat2 RESOLVE_IN_ROOT).
//!
//! Every path the container controls is resolved relative to an `O_PATH` fd of the root:
//! existing paths with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, paths to create by
//! a component-by-component walk that opens each step with `O_NOFOLLOW` relative to the fd of
//! the previous one and expands symlinks itself, so that `..` and absolute symlinks stay in
//! the root and a swapped component is never followed out of it.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// Symlinks followed in one walk before giving up, like the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// `struct open_how` of openat2(2); libc's is `non_exhaustive`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn unsafe_path(path: &Path, message: impl Into<String>) -> Error {
    Error::UnsafePath { path: path.display().to_string(), message: message.into() }
}

fn cstring(path: &OsStr) -> Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| unsafe_path(Path::new(path), "path contains a NUL byte"))
}

/// Raw openat2(2), retried on EINTR and EAGAIN (a concurrent rename in the root).
pub fn openat2(dirfd: BorrowedFd, path: &Path, flags: OFlag, mode: u32, resolve: u64) -> nix::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let how = OpenHow { flags: (flags | OFlag::O_CLOEXEC).bits() as u64, mode: mode as u64, resolve };
    for _ in 0..128 {
        // SAFETY: `c` is a valid NUL-terminated string, `how` a valid open_how of the given
        // size; both outlive the call.
        let fd = unsafe {
            libc::syscall(libc::SYS_openat2, dirfd.as_raw_fd(), c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
        };
        if fd >= 0 {
            // SAFETY: openat2 returned a new fd that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        match nix::Error::last() {
            nix::Error::EINTR | nix::Error::EAGAIN => continue,
            e => return Err(e),
        }
    }
    Err(nix::Error::EAGAIN)
}

/// Open a host directory as the root to resolve container paths in (`O_PATH|O_DIRECTORY`).
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| unsafe_path(path, format!("open the root: {e}")))
}

/// Open `path` (absolute or relative, interpreted inside `root`) without leaving the root.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> Result<OwnedFd> {
    open_in_root_raw(root, path, flags).map_err(|e| unsafe_path(path, format!("open: {e}")))
}

/// [`open_in_root`] returning the bare errno, for callers that treat ENOENT specially.
pub fn open_in_root_raw(root: BorrowedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    openat2(root, rel, flags, 0, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS)
}

/// What to create when the last component of a walk does not exist.
#[derive(Clone, Copy)]
enum Leaf {
    Dir(Mode),
    File(Mode),
}

/// Create every missing directory of `path` inside `root` and return an `O_PATH` fd on it.
pub fn mkdir_all_in_root(root: BorrowedFd, path: &Path, mode: Mode) -> Result<OwnedFd> {
    walk_creating(root, path, Leaf::Dir(mode))
}

/// Create an empty regular file at `path` inside `root` (and its parents) unless something
/// already exists there; return an `O_PATH` fd on what is there now.
pub fn create_file_in_root(root: BorrowedFd, path: &Path, mode: Mode) -> Result<OwnedFd> {
    walk_creating(root, path, Leaf::File(mode))
}

/// The components of `path` as a walk sees them: names and `..`; `/` and `.` vanish.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    // Pushed in reverse so that `pop` yields them in order.
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_os_string()),
            Component::ParentDir => todo.push(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn dup_fd(fd: BorrowedFd) -> nix::Result<OwnedFd> {
    fd.try_clone_to_owned().map_err(|e| nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

/// One step of a walk: open `name` in `dir` without following it and without leaving `dir`.
pub fn open_step(dir: BorrowedFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        Path::new(name),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_SYMLINKS,
    )
}

/// The file type bits of an open fd.
pub fn file_type(fd: BorrowedFd) -> nix::Result<libc::mode_t> {
    Ok(nix::sys::stat::fstat(fd)?.st_mode & libc::S_IFMT)
}

/// Whether the symlink `name` in `dir` (open as `link`) is a procfs magic link such as
/// `/proc/self/fd/N`: following it with RESOLVE_NO_MAGICLINKS fails with ELOOP.
fn is_magic_link(dir: BorrowedFd, name: &OsStr, link: BorrowedFd) -> bool {
    let on_proc = nix::sys::statfs::fstatfs(link).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC);
    on_proc
        && matches!(
            openat2(dir, Path::new(name), OFlag::O_PATH, 0, libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_BENEATH),
            Err(nix::Error::ELOOP)
        )
}

/// The target of the symlink `fd` (an `O_PATH|O_NOFOLLOW` fd).
fn read_link_fd(fd: BorrowedFd) -> nix::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the empty path is a valid C string; `buf` is writable for its length.
    let n = unsafe { libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(nix::Error::last());
    }
    buf.truncate(n as usize);
    Ok(OsStr::from_bytes(&buf).to_os_string())
}

/// The directory a walk is in: the last one pushed, or the root.
fn top<'a>(stack: &'a [OwnedFd], root: BorrowedFd<'a>) -> BorrowedFd<'a> {
    stack.last().map_or(root, |fd| fd.as_fd())
}

fn walk_creating(root: BorrowedFd, path: &Path, leaf: Leaf) -> Result<OwnedFd> {
    // Fast path: the whole path usually exists already. One openat2 resolving inside the
    // root gives what the component walk below would (symlinks followed inside the root,
    // `..` stopping at it, magic links refused); anything unusual takes the walk.
    let rel = path.strip_prefix("/").unwrap_or(path);
    if !rel.as_os_str().is_empty() {
        let flags = OFlag::O_PATH;
        if let Ok(fd) = openat2(root, rel, flags, 0, libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS) {
            match (leaf, file_type(fd.as_fd())) {
                (Leaf::Dir(_), Ok(libc::S_IFDIR)) | (Leaf::File(_), Ok(_)) => return Ok(fd),
                _ => {}
            }
        }
    }
    let fail = |msg: String| unsafe_path(path, msg);
    let mut todo = Vec::new();
    push_components(&mut todo, path);
    // The directories walked so far; `..` pops, never past the root.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut links = 0usize;
    while let Some(name) = todo.pop() {
        if name == ".." {
            stack.pop();
            continue;
        }
        let last = todo.is_empty();
        let dir = top(&stack, root);
        let fd = match open_step(dir, &name) {
            Ok(fd) => fd,
            Err(nix::Error::ENOENT) => {
                let what = match (last, leaf) {
                    (true, _) => leaf,
                    (false, Leaf::Dir(mode)) => Leaf::Dir(mode),
                    (false, Leaf::File(_)) => Leaf::Dir(Mode::from_bits_truncate(0o755)),
                };
                create_step(dir, &name, what).map_err(|e| fail(format!("create {:?}: {e}", name)))?;
                open_step(dir, &name).map_err(|e| fail(format!("open {:?} after creating it: {e}", name)))?
            }
            Err(e) => return Err(fail(format!("open {:?}: {e}", name))),
        };
        let typ = file_type(fd.as_fd()).map_err(|e| fail(format!("stat {:?}: {e}", name)))?;
        if typ == libc::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(fail("too many levels of symbolic links".into()));
            }
            if is_magic_link(dir, &name, fd.as_fd()) {
                // Its text ("/host/path", "socket:[N]") is not a path in the root (CVE-2024-21626).
                return Err(fail(format!("{:?} is a procfs magic link", name)));
            }
            let target = read_link_fd(fd.as_fd()).map_err(|e| fail(format!("readlink {:?}: {e}", name)))?;
            let target = PathBuf::from(target);
            if target.has_root() {
                stack.clear();
            }
            push_components(&mut todo, &target);
            continue;
        }
        if last {
            if let Leaf::Dir(_) = leaf {
                if typ != libc::S_IFDIR {
                    return Err(fail("exists and is not a directory".into()));
                }
            }
            return Ok(fd);
        }
        if typ != libc::S_IFDIR {
            return Err(fail(format!("component {:?} is not a directory", name)));
        }
        stack.push(fd);
    }
    // Only `/`, `.` or `..`s: the root itself.
    let fd = match stack.pop() {
        Some(fd) => fd,
        None => dup_fd(root).map_err(|e| fail(format!("dup the root fd: {e}")))?,
    };
    if let Leaf::File(_) = leaf {
        return Err(fail("is the root directory, not a file".into()));
    }
    Ok(fd)
}

fn create_step(dir: BorrowedFd, name: &OsStr, what: Leaf) -> Result<()> {
    let c = cstring(name)?;
    match what {
        Leaf::Dir(mode) => {
            // SAFETY: `c` is a valid C string; mkdirat does not keep the pointer.
            if unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode.bits()) } != 0 {
                let e = nix::Error::last();
                if e != nix::Error::EEXIST {
                    return Err(Error::Sys { context: "mkdirat".into(), source: e });
                }
            }
        }
        Leaf::File(mode) => {
            let flags = libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_RDONLY | libc::O_CLOEXEC;
            // SAFETY: `c` is a valid C string; the returned fd is closed right away.
            let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode.bits() as libc::c_uint) };
            if fd < 0 {
                let e = nix::Error::last();
                if e != nix::Error::EEXIST {
                    return Err(Error::Sys { context: "create file".into(), source: e });
                }
            } else {
                // SAFETY: fd is the new file we own.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(())
}

/// `/proc/self/fd/N` of an fd: a path mount(2) can use as the target without re-resolving.
pub fn proc_fd_path(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The host path the kernel reports for an fd (readlink of `/proc/self/fd/N`).
pub fn fd_host_path(fd: BorrowedFd) -> Result<PathBuf> {
    std::fs::read_link(proc_fd_path(fd)).map_err(|e| Error::Io { context: format!("readlink /proc/self/fd/{}", fd.as_raw_fd()), source: e })
}

/// Check that `fd` still lies inside `root` (a host path) and return its path in the container.
pub fn container_path_of(fd: BorrowedFd, root: &Path) -> Result<PathBuf> {
    let host = fd_host_path(fd)?;
    if root == Path::new("/") {
        return Ok(host);
    }
    match host.strip_prefix(root) {
        Ok(rel) => Ok(Path::new("/").join(rel)),
        Err(_) => Err(unsafe_path(&host, format!("resolved outside the container root {}", root.display()))),
    }
}

/// The mount id of the mount an fd lies on (statx STATX_MNT_ID).
pub fn mount_id(fd: BorrowedFd) -> nix::Result<u64> {
    // SAFETY: statx is plain data; zero is a valid initial value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: empty path with AT_EMPTY_PATH stats the fd itself; `stx` is writable.
    let r =
        unsafe { libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW, libc::STATX_MNT_ID, &mut stx) };
    if r != 0 {
        return Err(nix::Error::last());
    }
    Ok(stx.stx_mnt_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let fd = open_root(&root).unwrap();
        (dir, fd)
    }

    fn root_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("root").canonicalize().unwrap()
    }

    #[test]
    fn absolute_symlink_resolves_inside_the_root() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        std::fs::create_dir(r.join("etc")).unwrap();
        std::fs::write(r.join("etc/passwd"), "inside").unwrap();
        symlink("/etc", r.join("link")).unwrap();
        let fd = open_in_root(root.as_fd(), Path::new("/link/passwd"), OFlag::O_RDONLY).unwrap();
        let host = fd_host_path(fd.as_fd()).unwrap();
        assert_eq!(host, r.join("etc/passwd"));
    }

    #[test]
    fn dotdot_symlink_cannot_climb_out_of_the_root() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        std::fs::write(dir.path().join("secret"), "host").unwrap();
        symlink("../../../../secret", r.join("up")).unwrap();
        let err = open_in_root_raw(root.as_fd(), Path::new("up"), OFlag::O_RDONLY).unwrap_err();
        assert_eq!(err, nix::Error::ENOENT);
        let err = open_in_root_raw(root.as_fd(), Path::new("../secret"), OFlag::O_RDONLY).unwrap_err();
        assert_eq!(err, nix::Error::ENOENT);
    }

    #[test]
    fn symlink_loops_fail_with_eloop() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        symlink("b", r.join("a")).unwrap();
        symlink("a", r.join("b")).unwrap();
        let err = open_in_root_raw(root.as_fd(), Path::new("a"), OFlag::O_RDONLY).unwrap_err();
        assert_eq!(err, nix::Error::ELOOP);
        assert!(mkdir_all_in_root(root.as_fd(), Path::new("/a/x"), Mode::from_bits_truncate(0o755)).is_err());
    }

    #[test]
    fn mkdir_all_through_an_escaping_symlink_creates_inside_the_root() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        let host_target = dir.path().join("host-target");
        symlink(&host_target, r.join("evil")).unwrap();
        symlink("../../../../../host2", r.join("evil2")).unwrap();
        let fd = mkdir_all_in_root(root.as_fd(), Path::new("/evil/sub"), Mode::from_bits_truncate(0o755)).unwrap();
        assert!(!host_target.exists());
        let inside = r.join(host_target.strip_prefix("/").unwrap()).join("sub");
        assert!(inside.is_dir());
        assert_eq!(fd_host_path(fd.as_fd()).unwrap(), inside);
        let fd = mkdir_all_in_root(root.as_fd(), Path::new("evil2/x"), Mode::from_bits_truncate(0o755)).unwrap();
        assert_eq!(fd_host_path(fd.as_fd()).unwrap(), r.join("host2/x"));
        assert!(container_path_of(fd.as_fd(), &r).unwrap() == Path::new("/host2/x"));
    }

    #[test]
    fn mkdir_all_refuses_a_file_in_the_way() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        std::fs::write(r.join("file"), "").unwrap();
        let err = mkdir_all_in_root(root.as_fd(), Path::new("/file/sub"), Mode::from_bits_truncate(0o755));
        assert!(matches!(err, Err(Error::UnsafePath { .. })));
        assert!(mkdir_all_in_root(root.as_fd(), Path::new("/file"), Mode::from_bits_truncate(0o755)).is_err());
    }

    #[test]
    fn create_file_follows_dangling_symlink_inside_the_root() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        symlink("/../../outside-file", r.join("dangling")).unwrap();
        let fd = create_file_in_root(root.as_fd(), Path::new("/dangling"), Mode::from_bits_truncate(0o644)).unwrap();
        assert_eq!(fd_host_path(fd.as_fd()).unwrap(), r.join("outside-file"));
        assert!(!dir.path().join("outside-file").exists());
        assert_eq!(file_type(fd.as_fd()).unwrap(), libc::S_IFREG);
    }

    #[test]
    fn root_itself_resolves_for_slash_and_dotdot() {
        let (dir, root) = setup();
        let r = root_path(&dir);
        let fd = mkdir_all_in_root(root.as_fd(), Path::new("/../.."), Mode::from_bits_truncate(0o755)).unwrap();
        assert_eq!(fd_host_path(fd.as_fd()).unwrap(), r);
        let fd = open_in_root(root.as_fd(), Path::new("/"), OFlag::O_PATH).unwrap();
        assert_eq!(fd_host_path(fd.as_fd()).unwrap(), r);
    }
}
