//! Applying tar entries to a snapshot directory, one entry at a time, fd-relative.
//!
//! The `tar` crate only parses headers (long names, PAX records); every file system object is
//! created here through [`Dir`], whose paths the kernel resolves inside the snapshot root.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use tar::EntryType;

use super::fsops::{self, Dir, Time};
use super::path::{self, CleanPath, Whiteout};
use super::UnpackOptions;
use crate::error::IoContext;
use crate::{Error, Result};

/// The xattr that makes an overlayfs directory opaque.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Time,
    mtime: Time,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Applies the entries of one layer to one snapshot directory.
pub struct Extractor<'o> {
    root: Dir,
    opts: &'o UnpackOptions,
    layer: String,
    /// The parent directory of the previous entry: consecutive entries usually share it.
    cached_parent: Option<(String, Dir)>,
    /// Directory times are set last, deepest first, since creating children changes them.
    dir_times: Vec<(CleanPath, Time, Time)>,
    buf: Vec<u8>,
}

impl<'o> Extractor<'o> {
    /// Prepare to extract into the (empty) directory `root`.
    pub fn new(root: &Path, opts: &'o UnpackOptions, layer: String) -> Result<Self> {
        let root = Dir::open_root(root).io_context(|| format!("open snapshot {}", root.display()))?;
        Ok(Self { root, opts, layer, cached_parent: None, dir_times: Vec::new(), buf: vec![0; 256 << 10] })
    }

    fn hostile(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::HostileLayer { layer: self.layer.clone(), entry: entry.to_string(), reason: reason.into() }
    }

    fn io(&self, entry: &str, what: &str, e: io::Error) -> Error {
        Error::Io { context: format!("layer {}: entry {entry:?}: {what}", self.layer), source: e }
    }

    /// Extract every entry of `archive`, then set directory times.
    pub fn run<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<()> {
        let entries = archive.entries().io_context(|| format!("layer {}: read tar", self.layer))?;
        for entry in entries {
            let mut entry = entry.io_context(|| format!("layer {}: read tar entry", self.layer))?;
            self.apply(&mut entry)?;
        }
        self.finish_dir_times()
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let path = path::clean(&raw, self.opts.policy).map_err(|r| self.hostile(&shown, r))?;
        let meta = self.meta(entry, &shown)?;
        if path.is_root() {
            if kind != EntryType::Directory {
                return Err(self.hostile(&shown, "a non-directory entry names the layer root"));
            }
            return self.apply_root(&meta, &shown);
        }
        match path::whiteout(path.base()).map_err(|r| self.hostile(&shown, r))? {
            Whiteout::None => {}
            Whiteout::Meta => return Ok(()),
            Whiteout::Opaque => {
                let parent = self.parent(&path, &shown)?;
                parent.set_xattr(OPAQUE_XATTR, b"y").map_err(|e| self.io(&shown, "mark directory opaque", e))?;
                return self.keep_parent(&path, parent);
            }
            Whiteout::Delete(name) => {
                let name = name.to_string();
                let parent = self.parent(&path, &shown)?;
                self.replace(&parent, &name, &shown)?;
                parent.mknod(&name, libc::S_IFCHR, 0).map_err(|e| self.io(&shown, "create whiteout device", e))?;
                return self.keep_parent(&path, parent);
            }
        }
        let parent = self.parent(&path, &shown)?;
        let base = path.base().to_string();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.replace(&parent, &base, &shown)?;
                self.write_file(&parent, &base, entry, &meta, &shown)?;
            }
            EntryType::Directory => self.make_dir(&parent, &path, &meta, &shown)?,
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| self.hostile(&shown, "symlink without a target"))?;
                let target = CString::new(target.into_owned()).map_err(|_| self.hostile(&shown, "NUL in symlink target"))?;
                self.replace(&parent, &base, &shown)?;
                parent.symlink(&target, &base).map_err(|e| self.io(&shown, "create symlink", e))?;
                self.special_meta(&parent, &base, &meta, &shown, false)?;
                // A new symlink may now be a component of the cached path.
                self.cached_parent = None;
                return Ok(());
            }
            EntryType::Link => self.hardlink(&parent, &base, entry, &shown)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (fmt, dev) = match kind {
                    EntryType::Fifo => (libc::S_IFIFO, 0),
                    k => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let fmt = if k == EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                        (fmt, fsops::makedev(major, minor))
                    }
                };
                self.replace(&parent, &base, &shown)?;
                parent.mknod(&base, fmt | (meta.mode & 0o7777), dev).map_err(|e| self.io(&shown, "mknod", e))?;
                self.special_meta(&parent, &base, &meta, &shown, true)?;
            }
            other => tracing::debug!(layer = %self.layer, entry = %shown, kind = ?other, "skipping unsupported tar entry"),
        }
        self.keep_parent(&path, parent)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &str| self.hostile(shown, format!("unreadable {what} in header"));
        let id = |v: u64, what: &str| u32::try_from(v).map_err(|_| self.hostile(shown, format!("{what} {v} out of range")));
        let mut m = Meta {
            mode: h.mode().map_err(|_| bad("mode"))? & 0o7777,
            uid: id(h.uid().map_err(|_| bad("uid"))?, "uid")?,
            gid: id(h.gid().map_err(|_| bad("gid"))?, "gid")?,
            atime: (0, 0),
            mtime: (h.mtime().map_err(|_| bad("mtime"))? as i64, 0),
            xattrs: Vec::new(),
        };
        m.atime = m.mtime;
        let mut atime = None;
        if let Some(exts) = entry.pax_extensions().map_err(|_| bad("PAX records"))? {
            for ext in exts {
                let ext = ext.map_err(|_| bad("PAX record"))?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                    m.xattrs.push((name.to_string(), value.to_vec()));
                    continue;
                }
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    "mtime" => m.mtime = parse_pax_time(text).ok_or_else(|| bad("PAX mtime"))?,
                    "atime" => atime = Some(parse_pax_time(text).ok_or_else(|| bad("PAX atime"))?),
                    "uid" => m.uid = id(text.parse().map_err(|_| bad("PAX uid"))?, "uid")?,
                    "gid" => m.gid = id(text.parse().map_err(|_| bad("PAX gid"))?, "gid")?,
                    _ => {}
                }
            }
        }
        m.atime = atime.unwrap_or(m.mtime);
        Ok(m)
    }

    fn owner(&self, meta: &Meta) -> Option<(u32, u32)> {
        self.opts.same_owner.then_some((meta.uid, meta.gid))
    }

    /// The directory that will hold `path`, created (0755) where missing, resolved in the root.
    fn parent(&mut self, path: &CleanPath, shown: &str) -> Result<Dir> {
        let key = path.parent().join("/");
        if let Some((k, dir)) = self.cached_parent.take() {
            if k == key {
                return Ok(dir);
            }
        }
        match self.root.open_dir_in(&key, self.opts.policy) {
            Ok(d) => return Ok(d),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(self.resolve_error(shown, &key, e)),
        }
        let mut cur = self.root.open_dir_in("", self.opts.policy).map_err(|e| self.io(shown, "open root", e))?;
        for i in 0..path.parent().len() {
            let prefix = path.parent()[..=i].join("/");
            cur = match self.root.open_dir_in(&prefix, self.opts.policy) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    cur.mkdir(&path.parent()[i], 0o755).map_err(|e| self.io(shown, "create parent directory", e))?;
                    self.root.open_dir_in(&prefix, self.opts.policy).map_err(|e| self.resolve_error(shown, &prefix, e))?
                }
                Err(e) => return Err(self.resolve_error(shown, &prefix, e)),
            };
        }
        Ok(cur)
    }

    fn keep_parent(&mut self, path: &CleanPath, dir: Dir) -> Result<()> {
        self.cached_parent = Some((path.parent().join("/"), dir));
        Ok(())
    }

    fn resolve_error(&self, shown: &str, rel: &str, e: io::Error) -> Error {
        if e.raw_os_error() == Some(libc::EXDEV) {
            self.hostile(shown, format!("{rel:?} resolves outside the layer root through a symlink"))
        } else {
            self.io(shown, &format!("resolve {rel:?}"), e)
        }
    }

    /// Remove what is at `name` so a new entry can take its place (tar semantics: last wins).
    fn replace(&mut self, parent: &Dir, name: &str, shown: &str) -> Result<()> {
        if parent.lstat(name).map_err(|e| self.io(shown, "stat", e))?.is_some() {
            self.cached_parent = None;
            parent.remove(name).map_err(|e| self.io(shown, "replace existing entry", e))?;
        }
        Ok(())
    }

    fn write_file<R: Read>(&mut self, parent: &Dir, base: &str, entry: &mut R, meta: &Meta, shown: &str) -> Result<()> {
        let mut file = parent.create_file(base).map_err(|e| self.io(shown, "create file", e))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io(shown, "read file data", e)),
            };
            file.write_all(&self.buf[..n]).map_err(|e| self.io(shown, "write file", e))?;
        }
        fsops::set_file_meta(&file, self.owner(meta), meta.mode).map_err(|e| self.io(shown, "set owner and mode", e))?;
        for (k, v) in &meta.xattrs {
            self.xattr_result(fsops::fsetxattr(file.as_raw_fd(), k, v), shown, k, false)?;
        }
        fsops::set_file_times(&file, meta.atime, meta.mtime).map_err(|e| self.io(shown, "set times", e))
    }

    fn make_dir(&mut self, parent: &Dir, path: &CleanPath, meta: &Meta, shown: &str) -> Result<()> {
        let base = path.base();
        if let Some(st) = parent.lstat(base).map_err(|e| self.io(shown, "stat", e))? {
            if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                self.replace(parent, base, shown)?;
            }
        }
        parent.mkdir(base, 0o700).map_err(|e| self.io(shown, "create directory", e))?;
        let dir = parent.open_child_dir(base).map_err(|e| self.io(shown, "open directory", e))?;
        self.dir_meta(&dir, meta, shown)?;
        self.dir_times.push((path.clone(), meta.atime, meta.mtime));
        Ok(())
    }

    fn apply_root(&mut self, meta: &Meta, shown: &str) -> Result<()> {
        let root = self.root.open_dir_in("", self.opts.policy).map_err(|e| self.io(shown, "open root", e))?;
        self.dir_meta(&root, meta, shown)?;
        let root_path = path::clean(b".", self.opts.policy).map_err(|r| self.hostile(shown, r))?;
        self.dir_times.push((root_path, meta.atime, meta.mtime));
        Ok(())
    }

    fn dir_meta(&self, dir: &Dir, meta: &Meta, shown: &str) -> Result<()> {
        if let Some((uid, gid)) = self.owner(meta) {
            dir.chown("", uid, gid).map_err(|e| self.io(shown, "chown directory", e))?;
        }
        dir.chmod("", meta.mode).map_err(|e| self.io(shown, "chmod directory", e))?;
        for (k, v) in &meta.xattrs {
            self.xattr_result(dir.set_xattr(k, v), shown, k, false)?;
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks), xattrs and times of an object we hold no fd for.
    fn special_meta(&self, parent: &Dir, base: &str, meta: &Meta, shown: &str, chmod: bool) -> Result<()> {
        if let Some((uid, gid)) = self.owner(meta) {
            parent.chown(base, uid, gid).map_err(|e| self.io(shown, "chown", e))?;
        }
        if chmod {
            parent.chmod(base, meta.mode).map_err(|e| self.io(shown, "chmod", e))?;
        }
        for (k, v) in &meta.xattrs {
            self.xattr_result(parent.lsetxattr(base, k, v), shown, k, !chmod)?;
        }
        parent.set_times(base, meta.atime, meta.mtime).map_err(|e| self.io(shown, "set times", e))
    }

    /// A file system without xattr support (or a symlink refusing user.*) loses the xattr with
    /// a warning rather than failing the layer; any other failure is an error.
    fn xattr_result(&self, r: io::Result<()>, shown: &str, key: &str, on_symlink: bool) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) || (on_symlink && e.raw_os_error() == Some(libc::EPERM)) => {
                tracing::warn!(layer = %self.layer, entry = %shown, xattr = %key, error = %e, "xattr not kept");
                Ok(())
            }
            Err(e) => Err(self.io(shown, &format!("set xattr {key}"), e)),
        }
    }

    fn hardlink<R: Read>(&mut self, parent: &Dir, base: &str, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<()> {
        let target = entry.link_name_bytes().ok_or_else(|| self.hostile(shown, "hardlink without a target"))?;
        let target = path::clean(&target, self.opts.policy).map_err(|r| self.hostile(shown, format!("hardlink target: {r}")))?;
        if target.is_root() {
            return Err(self.hostile(shown, "hardlink to the layer root"));
        }
        let tkey = target.parent().join("/");
        let tdir = self.root.open_dir_in(&tkey, self.opts.policy).map_err(|e| self.resolve_error(shown, &tkey, e))?;
        match tdir.lstat(target.base()).map_err(|e| self.io(shown, "stat hardlink target", e))? {
            None => return Err(self.hostile(shown, format!("hardlink target {:?} is not in the layer", target.joined()))),
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(self.hostile(shown, "hardlink to a directory"));
            }
            Some(_) => {}
        }
        if target == path::clean(entry.path_bytes().as_ref(), self.opts.policy).map_err(|r| self.hostile(shown, r))? {
            return Ok(()); // A link to itself: nothing to do.
        }
        self.replace(parent, base, shown)?;
        parent.link_from(&tdir, target.base(), base).map_err(|e| self.io(shown, "create hardlink", e))
    }

    fn finish_dir_times(&mut self) -> Result<()> {
        self.cached_parent = None;
        for (path, atime, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let shown = path.joined();
            let res = if path.is_root() {
                self.root.set_times("", atime, mtime)
            } else {
                match self.root.open_dir_in(&path.parent().join("/"), self.opts.policy) {
                    Ok(dir) => dir.set_times(path.base(), atime, mtime),
                    Err(e) => Err(e),
                }
            };
            match res {
                Ok(()) => {}
                // Replaced or removed by a later entry.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(self.io(&shown, "set directory times", e)),
            }
        }
        Ok(())
    }
}

/// A PAX time: decimal seconds with an optional fraction.
fn parse_pax_time(s: &str) -> Option<Time> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)? as u8) * 10i64.pow(8 - i as u32);
    }
    Some(if secs < 0 && nanos > 0 { (secs - 1, 1_000_000_000 - nanos) } else { (secs, nanos) })
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn pax_times_keep_nanoseconds() {
        assert_eq!(parse_pax_time("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
