//! Building layer tarballs in tests, including ones the `tar` crate's safe setters refuse.
#![allow(dead_code)]

use std::io::Write;

use tar::{Builder, EntryType, Header};

/// A tar builder with helpers for every entry kind.
pub struct Layer {
    b: Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

/// A header with the name (and link name) written raw, so `..` and absolute names survive.
pub fn header(kind: EntryType, name: &str, link: Option<&str>, mode: u32, size: u64) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h.set_size(size);
    let old = h.as_old_mut();
    assert!(name.len() <= old.name.len(), "test names must fit the ustar name field");
    old.name.fill(0);
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        old.linkname.fill(0);
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    h
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Self {
        Self { b: Builder::new(Vec::new()) }
    }

    /// Append a prepared header and its data.
    pub fn raw(&mut self, h: &Header, data: &[u8]) -> &mut Self {
        self.b.append(h, data).unwrap();
        self
    }

    /// A regular file with mode, owner and mtime.
    pub fn file_full(&mut self, name: &str, data: &[u8], mode: u32, uid: u64, gid: u64, mtime: u64) -> &mut Self {
        let mut h = header(EntryType::Regular, name, None, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        h.set_cksum();
        self.raw(&h, data)
    }

    /// A regular file, mode 0644, root-owned.
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_full(name, data, 0o644, 0, 0, 1_600_000_000)
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = header(EntryType::Directory, name, None, mode, 0);
        self.raw(&h, &[])
    }

    /// A symlink `name -> target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = header(EntryType::Symlink, name, Some(target), 0o777, 0);
        self.raw(&h, &[])
    }

    /// A hardlink `name` to the earlier entry `target`.
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let h = header(EntryType::Link, name, Some(target), 0o644, 0);
        self.raw(&h, &[])
    }

    /// A device node or fifo.
    pub fn node(&mut self, kind: EntryType, name: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        let mut h = header(kind, name, None, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.raw(&h, &[])
    }

    /// A file preceded by a PAX header carrying `records` (e.g. SCHILY.xattr.user.x).
    pub fn file_with_pax(&mut self, name: &str, data: &[u8], records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            // "%d %s=%s\n" where the length counts itself.
            let rest = k.len() + v.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() != rest.to_string().len() {
                len += 1;
            }
            write!(body, "{len} {k}=").unwrap();
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let pax = header(EntryType::XHeader, "PaxHeader", None, 0o644, body.len() as u64);
        self.raw(&pax, &body);
        self.file(name, data)
    }

    /// A file whose name needs a GNU long-name entry (written by the tar crate itself).
    pub fn long_file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        self.b.append_data(&mut h, name, data).unwrap();
        self
    }

    /// The finished tar bytes.
    pub fn tar(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// gzip `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// zstd `data`.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// Read an xattr without following symlinks.
pub fn lgetxattr(path: &std::path::Path, key: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let k = std::ffi::CString::new(key).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: strings are NUL-terminated and buf has buf.len() writable bytes.
    let n = unsafe { libc::lgetxattr(p.as_ptr(), k.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

/// Every path under `dir` (relative, sorted), for "nothing else was written" checks.
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    fn walk(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
