//! An index of a tar file's entries, so that each member can be streamed by offset.
//!
//! Archives are read twice at most by position, never into memory: one pass over the headers
//! (seeking over contents) records where every regular file's data starts; a member is then
//! read with `pread` from that range. Symlinks and hardlinks inside the archive (old `docker
//! save` links repeated layers) are followed within the archive, never on the host.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::error::IoContext;
use crate::store::MAX_JSON_SIZE;
use crate::{Error, Result};

/// Link hops followed before a member is declared a loop.
const MAX_LINK_HOPS: usize = 16;

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Symlink(String),
    Hardlink(String),
}

/// A tar file and where its members are.
#[derive(Debug)]
pub struct TarIndex {
    file: File,
    path: PathBuf,
    members: HashMap<String, Member>,
}

/// A member's bytes, read by position from the archive.
pub struct MemberReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = loop {
            match self.file.read_at(&mut buf[..want], self.pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive member is truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl TarIndex {
    /// Read every header of the tar file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).io_context(|| format!("open archive {}", path.display()))?;
        Self::from_file(file, path)
    }

    /// Read every header of an open tar file; `path` names it in messages.
    pub fn from_file(file: File, path: &Path) -> Result<Self> {
        let ctx = || format!("archive {}", path.display());
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive.entries_with_seek().io_context(ctx)?;
            for entry in entries {
                let entry = entry.map_err(|e| Error::Format { what: ctx(), message: format!("not a valid tar: {e}") })?;
                let raw_name = entry.path().io_context(ctx)?.into_owned();
                let Some(name) = clean(&raw_name) else { continue };
                let link = || -> Result<String> {
                    let target = entry.link_name().io_context(ctx)?.unwrap_or_default();
                    Ok(target.to_string_lossy().into_owned())
                };
                let member = match entry.header().entry_type() {
                    EntryType::Regular | EntryType::Continuous => Member::File { offset: entry.raw_file_position(), size: entry.size() },
                    EntryType::Symlink => Member::Symlink(link()?),
                    EntryType::Link => Member::Hardlink(link()?),
                    _ => continue,
                };
                members.insert(name, member);
            }
        }
        Ok(Self { file, path: path.to_path_buf(), members })
    }

    /// The archive's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the archive has a member `name` (after following links).
    pub fn contains(&self, name: &str) -> bool {
        self.locate(name).is_ok()
    }

    /// Offset and size of the regular file `name`, following links inside the archive.
    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let missing = || Error::NotFound(format!("{name:?} in archive {}", self.path.display()));
        let mut current = clean(Path::new(name)).ok_or_else(missing)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.members.get(&current).ok_or_else(missing)? {
                Member::File { offset, size } => return Ok((*offset, *size)),
                Member::Hardlink(target) => current = clean(Path::new(target)).ok_or_else(missing)?,
                Member::Symlink(target) => {
                    let parent = Path::new(&current).parent().unwrap_or(Path::new(""));
                    current = clean(&parent.join(target)).ok_or_else(missing)?;
                }
            }
        }
        Err(Error::Format { what: format!("archive {}", self.path.display()), message: format!("{name:?}: too many links") })
    }

    /// Stream the member `name` and return its size.
    pub fn open_member(&self, name: &str) -> Result<(MemberReader<'_>, u64)> {
        let (offset, size) = self.locate(name)?;
        Ok((MemberReader { file: &self.file, pos: offset, end: offset + size }, size))
    }

    /// Read a JSON member (manifest.json, index.json, a config) into memory, bounded.
    pub fn read_small(&self, name: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open_member(name)?;
        if size > MAX_JSON_SIZE {
            return Err(Error::Format {
                what: format!("{name} in archive {}", self.path.display()),
                message: format!("{size} bytes is larger than the 16 MiB allowed for a JSON document"),
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        reader.take(size).read_to_end(&mut buf).io_context(|| format!("read {name} in archive {}", self.path.display()))?;
        Ok(buf)
    }
}

/// An archive-relative name without `.`, leading `/` or `./`; `None` if it climbs above the root.
pub fn clean(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            b.append_data(&mut h, name, *data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    #[test]
    fn members_are_read_by_position_and_links_followed_inside() {
        let f = tar_with(&[
            ("./a/layer.tar", EntryType::Regular, b"layer-bytes", None),
            ("b/layer.tar", EntryType::Symlink, b"", Some("../a/layer.tar")),
            ("c", EntryType::Link, b"", Some("a/layer.tar")),
            ("loop", EntryType::Symlink, b"", Some("loop")),
            ("escape", EntryType::Symlink, b"", Some("../../etc/passwd")),
        ]);
        let idx = TarIndex::open(f.path()).unwrap();
        for name in ["a/layer.tar", "b/layer.tar", "c", "/a/layer.tar"] {
            let (mut r, size) = idx.open_member(name).unwrap();
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            assert_eq!((s.as_str(), size), ("layer-bytes", 11), "{name}");
        }
        assert!(idx.open_member("loop").is_err());
        assert!(matches!(idx.open_member("escape"), Err(Error::NotFound(_))));
        assert!(!idx.contains("missing"));
    }

    #[test]
    fn clean_refuses_names_above_the_root() {
        assert_eq!(clean(Path::new("./x/../y")).as_deref(), Some("y"));
        assert_eq!(clean(Path::new("../y")), None);
    }
}
