//! `cp`: files and directories between a container and the host, or a tar stream, with
//! docker's rules for the destination — and never outside the container's root.
//!
//! The container's side is a directory fd: for a running (or paused) container
//! `/proc/<init>/root`, its own view with every volume, bind and tmpfs mounted; otherwise the
//! overlay mounted at the bundle's `rootfs`. Every container path is resolved relative to that
//! fd with openat2 `RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS`, the walk of a directory goes by fds
//! (`archive.rs`) and the unpacking by `*at` calls on resolved parents (`extract.rs`), so the
//! container's symlinks (`/etc -> /`, `x -> ../../../host`) and its renames during the copy
//! land inside its root (CVE-2018-15664, CVE-2019-14271: berth never enters the container
//! nor loads anything from it). Both sides speak tar, through a pipe, as docker's do.
//!
//! Paths are cleaned lexically and taken from the container's `/`, as docker does; a trailing
//! `/` requires a directory, a trailing `/.` copies a directory's content.

mod archive;
mod extract;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use berth_runtime::rootfs::safe_path;
use berth_runtime::state::Status;
use nix::fcntl::OFlag;

use crate::db::ContainerRow;
use crate::error::{Error, IoContext, Result};
use crate::run::Engine;

use archive::TreeWriter;
use extract::{Extractor, Owners};

/// `cp` flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOptions {
    /// `-a`: keep the uid/gid of the source (else: root in the container, the caller on the host).
    pub archive: bool,
    /// `-L`: follow a symlink given as the source (its content is copied).
    pub follow_link: bool,
}

/// A path as `cp` takes it: lexically cleaned components, and docker's trailing markers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyPath {
    text: String,
    comps: Vec<OsString>,
    /// Ends with `/` or `/.`: must be a directory.
    trailing_slash: bool,
    /// Ends with `/.` (or is the root): a directory's content, not the directory.
    contents: bool,
}

impl CopyPath {
    fn parse(text: &str) -> CopyPath {
        let mut comps: Vec<OsString> = Vec::new();
        for c in Path::new(text).components() {
            match c {
                Component::Normal(n) => comps.push(n.to_os_string()),
                Component::ParentDir => {
                    comps.pop();
                }
                _ => {}
            }
        }
        let contents = text.ends_with("/.") || text == "." || comps.is_empty();
        CopyPath { text: text.to_string(), trailing_slash: text.ends_with('/') || contents, contents, comps }
    }

    fn path(&self) -> PathBuf {
        Path::new("/").join(self.comps.iter().collect::<PathBuf>())
    }

    fn parent(&self) -> PathBuf {
        Path::new("/").join(self.comps[..self.comps.len().saturating_sub(1)].iter().collect::<PathBuf>())
    }

    fn name(&self) -> OsString {
        self.comps.last().cloned().unwrap_or_default()
    }
}

/// What a destination is before the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DestState {
    Dir,
    NonDir,
    Missing,
}

/// Where the copy lands: in the destination (a directory) or its parent, under `top`
/// (empty: the source directory's content goes straight into the destination).
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    into_parent: bool,
    top: OsString,
}

/// docker's rules (`docker cp --help`).
fn plan(src_is_dir: bool, src: &CopyPath, dest: &CopyPath, dest_state: DestState) -> std::result::Result<Plan, String> {
    match (src_is_dir, dest_state) {
        (_, DestState::Dir) if src_is_dir && src.contents => Ok(Plan { into_parent: false, top: OsString::new() }),
        (_, DestState::Dir) => Ok(Plan { into_parent: false, top: src.name() }),
        (true, DestState::NonDir) => Err(format!("cannot copy a directory to a file: {}", dest.text)),
        (false, DestState::NonDir) => Ok(Plan { into_parent: true, top: dest.name() }),
        (false, DestState::Missing) if dest.trailing_slash => Err(format!("destination directory {} does not exist", dest.text)),
        (_, DestState::Missing) => Ok(Plan { into_parent: true, top: dest.name() }),
    }
}

fn not_found(e: nix::Error) -> bool {
    matches!(e, nix::Error::ENOENT | nix::Error::ENOTDIR)
}

/// The object `p` names in `root`, open `O_PATH`: its last symlink is the object itself unless
/// `follow` (or a trailing slash) asks for its target.
fn open_source(root: BorrowedFd, p: &CopyPath, follow: bool) -> nix::Result<OwnedFd> {
    let path = p.path();
    if p.comps.is_empty() || follow || p.trailing_slash {
        return safe_path::open_in_root_raw(root, &path, OFlag::O_PATH);
    }
    let parent = safe_path::open_in_root_raw(root, &p.parent(), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    safe_path::open_step(parent.as_fd(), &p.name())
}

/// Whether `p` exists in `root` as a directory (its symlinks followed inside the root).
fn dest_state(root: BorrowedFd, p: &CopyPath) -> Result<DestState> {
    match safe_path::open_in_root_raw(root, &p.path(), OFlag::O_PATH) {
        Ok(fd) => Ok(if safe_path::file_type(fd.as_fd()) == Ok(libc::S_IFDIR) { DestState::Dir } else { DestState::NonDir }),
        Err(nix::Error::ENOENT) => Ok(DestState::Missing),
        Err(e) => Err(Error::Invalid(format!("{}: {e}", p.text))),
    }
}

fn is_dir(fd: BorrowedFd) -> Result<bool> {
    Ok(archive::fstat(fd).io_context(|| "stat the source".into())?.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Run `produce` (writing a tar stream) on a thread and `consume` (reading it) here.
fn through_pipe(
    produce: impl FnOnce(std::fs::File) -> std::io::Result<()> + Send,
    consume: impl FnOnce(std::fs::File) -> std::io::Result<u64>,
) -> std::io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into a valid array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two new fds owned by nobody else.
    let (r, w) = unsafe { (std::fs::File::from(OwnedFd::from_raw_fd(fds[0])), std::fs::File::from(OwnedFd::from_raw_fd(fds[1]))) };
    std::thread::scope(|s| {
        let writer = s.spawn(move || produce(w));
        let read = consume(r);
        let wrote = writer.join().unwrap_or_else(|_| Err(std::io::Error::other("the archive writer panicked")));
        // The reader's error first: the writer's is then only EPIPE.
        read.map(drop).and(wrote)
    })
}

impl Engine {
    /// A directory fd of the container's root as the container sees it: `/proc/<init>/root`
    /// while it runs (its mounts included), else its overlay.
    fn container_root(&self, row: &ContainerRow) -> Result<OwnedFd> {
        if matches!(row.state.as_str(), "running" | "paused") {
            if let Some(fd) = row.pid.and_then(|pid| self.live_root(row, pid)) {
                return Ok(fd);
            }
        }
        let d = self.dirs(&row.id);
        let rootfs = d.rootfs();
        let fd = safe_path::open_root(&rootfs)?;
        let bundle = safe_path::open_root(&d.bundle())?;
        // An unmounted overlay (after a reboot) would be an empty directory: say so instead.
        if safe_path::mount_id(fd.as_fd()).ok() == safe_path::mount_id(bundle.as_fd()).ok() {
            return Err(Error::WrongState(format!("container {}: its root filesystem is not mounted", row.name)));
        }
        Ok(fd)
    }

    /// The root to resolve `p` in, and `p` within it. A running container's own view has its
    /// volumes and binds; for a stopped one, a path under a directory bind or volume (from the
    /// bundle's config.json) is taken from the mount's source, resolved inside that directory —
    /// a lexical match: a symlink of the image leading into a volume is not followed there. A
    /// file bind (`/etc/hosts`, `-v /host/file:/f`) is read from its source, not written.
    fn container_side(&self, row: &ContainerRow, p: CopyPath, writing: bool) -> Result<(OwnedFd, CopyPath)> {
        let root = self.container_root(row)?;
        if matches!(row.state.as_str(), "running" | "paused") {
            return Ok((root, p));
        }
        let config = self.dirs(&row.id).bundle().join("config.json");
        let spec: serde_json::Value =
            std::fs::read(&config).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(serde_json::Value::Null);
        // (depth, source, read-only, a file bind)
        let mut best: Option<(usize, PathBuf, bool, bool)> = None;
        for m in spec["mounts"].as_array().into_iter().flatten() {
            let (Some(dest), Some(source)) = (m["destination"].as_str(), m["source"].as_str()) else { continue };
            let Ok(md) = std::fs::metadata(source) else { continue };
            let d = CopyPath::parse(dest);
            // A file bind (/etc/hosts…) is the path itself only.
            let covers = if md.is_dir() { p.comps.starts_with(&d.comps) } else { md.is_file() && p.comps == d.comps };
            if m["type"] != "bind" || d.comps.is_empty() || !covers || best.as_ref().is_some_and(|b| b.0 >= d.comps.len()) {
                continue;
            }
            let ro = m["options"].as_array().is_some_and(|o| o.iter().any(|x| x == "ro"));
            best = Some((d.comps.len(), PathBuf::from(source), ro, !md.is_dir()));
        }
        let Some((depth, source, ro, file)) = best else { return Ok((root, p)) };
        if writing && (ro || file) {
            let why = if ro { "a read-only mount" } else { "a file bind mount (copy into it while the container runs)" };
            return Err(Error::Invalid(format!("container {}: {} is {why}", row.name, p.text)));
        }
        if file {
            let (Some(dir), Some(name)) = (source.parent(), source.file_name()) else { return Ok((root, p)) };
            let fd = safe_path::open_root(dir)?;
            return Ok((fd, CopyPath { comps: vec![name.to_os_string()], ..p }));
        }
        let fd = safe_path::open_root(&source)?;
        let inner = CopyPath { comps: p.comps[depth..].to_vec(), ..p };
        Ok((fd, inner))
    }

    /// `/proc/<pid>/root` of the container's init, if `pid` still is that init (pidfd taken
    /// first, then the runtime's check of pid and start time).
    fn live_root(&self, row: &ContainerRow, pid: i32) -> Option<OwnedFd> {
        let pidfd = berth_runtime::signals::pidfd_open(pid)?;
        let root = safe_path::open_root(Path::new(&format!("/proc/{pid}/root"))).ok()?;
        let st = self.backend(row).ok()?.state(&row.id).ok()??;
        let same = st.pid == pid && matches!(st.status, Status::Running | Status::Paused);
        let mut p = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; a zero timeout.
        let exited = unsafe { libc::poll(&mut p, 1, 0) } != 0;
        (same && !exited).then_some(root)
    }

    fn open_container_source(&self, row: &ContainerRow, root: BorrowedFd, src: &CopyPath, opts: &CopyOptions) -> Result<(OwnedFd, bool)> {
        let fd = open_source(root, src, opts.follow_link).map_err(|e| {
            if not_found(e) {
                Error::Invalid(format!("could not find the file {} in container {}", src.text, row.name))
            } else {
                Error::Invalid(format!("container {}: {}: {e}", row.name, src.text))
            }
        })?;
        let dir = is_dir(fd.as_fd())?;
        if src.trailing_slash && !dir {
            return Err(Error::Invalid(format!("container {}: {}: not a directory", row.name, src.text)));
        }
        if archive::on_pseudo_fs(fd.as_fd()) {
            return Err(Error::Invalid(format!(
                "container {}: {}: copying from the kernel's proc, sys or cgroup files is not supported",
                row.name, src.text
            )));
        }
        Ok((fd, dir))
    }

    /// `cp CONTAINER:SRC -`: SRC as a tar stream on `out` (a directory's content only with `/.`).
    pub fn copy_out_to_stream(&self, key: &str, src: &str, opts: &CopyOptions, out: impl Write) -> Result<()> {
        let row = self.find(key)?;
        let (root, src) = self.container_side(&row, CopyPath::parse(src), false)?;
        let (fd, dir) = self.open_container_source(&row, root.as_fd(), &src, opts)?;
        let top = if dir && src.contents { OsString::new() } else { src.name() };
        let mut w = TreeWriter::new(out);
        w.append(fd.as_fd(), Path::new(&top)).io_context(|| format!("container {}: archive {}", row.name, src.text))?;
        w.finish().io_context(|| "write the archive".into())?.flush().io_context(|| "write the archive".into())
    }

    /// `cp CONTAINER:SRC DEST`: to the host path `dest`.
    pub fn copy_out(&self, key: &str, src: &str, dest: &Path, opts: &CopyOptions) -> Result<()> {
        let row = self.find(key)?;
        let (root, src) = self.container_side(&row, CopyPath::parse(src), false)?;
        let (fd, dir) = self.open_container_source(&row, root.as_fd(), &src, opts)?;
        let dest_text = dest.to_string_lossy().to_string();
        let dest_p = CopyPath::parse(&dest_text);
        let state = match std::fs::metadata(dest) {
            Ok(m) if m.is_dir() => DestState::Dir,
            Ok(_) => DestState::NonDir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DestState::Missing,
            Err(e) => return Err(e).io_context(|| format!("{}", dest.display())),
        };
        let mut p = plan(dir, &src, &dest_p, state).map_err(Error::Invalid)?;
        // The host side is the caller's own: its paths are taken as they are, not cleaned.
        let target_dir = if p.into_parent {
            p.top = dest.file_name().map(|n| n.to_os_string()).ok_or_else(|| Error::Invalid(format!("{dest_text}: not a file name")))?;
            match dest.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            }
        } else {
            dest.to_path_buf()
        };
        let host_dir = safe_path::open_root(&target_dir)
            .map_err(|_| Error::Invalid(format!("destination directory {} does not exist", target_dir.display())))?;
        let owners = if opts.archive { Owners::Keep } else { Owners::Caller };
        let top = PathBuf::from(&p.top);
        through_pipe(
            |w| {
                let mut tw = TreeWriter::new(w);
                tw.append(fd.as_fd(), &top)?;
                tw.finish().map(drop)
            },
            |r| Extractor::new(host_dir.as_fd(), PathBuf::from("/"), owners).unpack(r),
        )
        .io_context(|| format!("copy {}:{} to {}", row.name, src.text, dest.display()))
    }

    /// `cp - CONTAINER:DEST`: unpack the tar stream `input` into the directory DEST.
    pub fn copy_in_from_stream(&self, key: &str, input: impl Read, dest: &str, opts: &CopyOptions) -> Result<()> {
        let row = self.find(key)?;
        let (root, dest) = self.container_side(&row, CopyPath::parse(dest), true)?;
        if dest_state(root.as_fd(), &dest)? != DestState::Dir {
            return Err(Error::Invalid(format!("container {}: destination {} must be an existing directory", row.name, dest.text)));
        }
        let owners = if opts.archive { Owners::Keep } else { Owners::Fixed(0, 0) };
        Extractor::new(root.as_fd(), dest.path(), owners)
            .unpack(input)
            .map(drop)
            .io_context(|| format!("copy into {}:{}", row.name, dest.text))
    }

    /// `cp SRC CONTAINER:DEST`: from the host path `src`.
    pub fn copy_in(&self, key: &str, src: &Path, dest: &str, opts: &CopyOptions) -> Result<()> {
        let row = self.find(key)?;
        let (root, dest) = self.container_side(&row, CopyPath::parse(dest), true)?;
        let src_text = src.to_string_lossy().to_string();
        let abs = std::path::absolute(src).io_context(|| src_text.clone())?;
        let mut src_p = CopyPath::parse(&src_text);
        src_p.comps = CopyPath::parse(&abs.to_string_lossy()).comps;
        let host_root = safe_path::open_root(Path::new("/"))?;
        let fd = open_source(host_root.as_fd(), &src_p, opts.follow_link).map_err(|e| Error::Invalid(format!("{src_text}: {e}")))?;
        let dir = is_dir(fd.as_fd())?;
        if src_p.trailing_slash && !dir {
            return Err(Error::Invalid(format!("{src_text}: not a directory")));
        }
        let p = plan(dir, &src_p, &dest, dest_state(root.as_fd(), &dest)?).map_err(Error::Invalid)?;
        let target_dir = if p.into_parent {
            let parent = CopyPath::parse(&dest.parent().to_string_lossy());
            if dest_state(root.as_fd(), &parent)? != DestState::Dir {
                return Err(Error::Invalid(format!("container {}: destination directory {} does not exist", row.name, parent.text)));
            }
            dest.parent()
        } else {
            dest.path()
        };
        let owners = if opts.archive { Owners::Keep } else { Owners::Fixed(0, 0) };
        let top = PathBuf::from(&p.top);
        through_pipe(
            |w| {
                let mut tw = TreeWriter::new(w);
                tw.append(fd.as_fd(), &top)?;
                tw.finish().map(drop)
            },
            |r| Extractor::new(root.as_fd(), target_dir, owners).unpack(r),
        )
        .io_context(|| format!("copy {src_text} to {}:{}", row.name, dest.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(src_dir: bool, src: &str, dest: &str, st: DestState) -> std::result::Result<(bool, String), String> {
        plan(src_dir, &CopyPath::parse(src), &CopyPath::parse(dest), st).map(|p| (p.into_parent, p.top.to_string_lossy().into_owned()))
    }

    #[test]
    fn paths_are_cleaned_lexically_and_keep_dockers_trailing_markers() {
        let p = CopyPath::parse("/a/../../b/./c/");
        assert_eq!(p.path(), Path::new("/b/c"));
        assert!(p.trailing_slash && !p.contents);
        let p = CopyPath::parse("dir/.");
        assert!(p.contents && p.trailing_slash);
        assert_eq!(p.path(), Path::new("/dir"));
        assert!(CopyPath::parse("/").contents);
        assert_eq!(CopyPath::parse("../../etc/passwd").path(), Path::new("/etc/passwd"));
    }

    #[test]
    fn a_file_goes_into_an_existing_directory_or_becomes_the_destination() {
        assert_eq!(plan_of(false, "/etc/hosts", "/tmp", DestState::Dir), Ok((false, "hosts".into())));
        assert_eq!(plan_of(false, "/etc/hosts", "/tmp/h", DestState::Missing), Ok((true, "h".into())));
        assert_eq!(plan_of(false, "/etc/hosts", "/tmp/h", DestState::NonDir), Ok((true, "h".into())));
        assert!(plan_of(false, "/etc/hosts", "/tmp/new/", DestState::Missing).is_err());
    }

    #[test]
    fn a_directory_is_copied_into_an_existing_one_or_its_content_with_slash_dot() {
        assert_eq!(plan_of(true, "/etc", "/tmp", DestState::Dir), Ok((false, "etc".into())));
        assert_eq!(plan_of(true, "/etc/.", "/tmp", DestState::Dir), Ok((false, "".into())));
        assert_eq!(plan_of(true, "/etc", "/tmp/new", DestState::Missing), Ok((true, "new".into())));
        assert_eq!(plan_of(true, "/etc/.", "/tmp/new", DestState::Missing), Ok((true, "new".into())));
        assert!(plan_of(true, "/etc", "/tmp/file", DestState::NonDir).is_err());
    }
}
