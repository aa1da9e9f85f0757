//! Image archives: copying images between the store and OCI layouts (`oci:`), OCI layouts
//! in a tar (`oci-archive:`) and `docker save` tars (`docker-archive:`).
//!
//! Loading streams every blob from its place in the archive into the store, verified by
//! digest (docker-archive layers by the config's diff_ids), and tags the images only once all
//! blobs of all of them are in: a tampered archive is rejected with nothing tagged, and the
//! blobs it had already added are removed again. Saving verifies each blob as it streams out
//! and writes archive files under a temporary name renamed into place at the end.

pub mod convert;
pub mod docker_archive;
pub mod image;
pub mod oci_archive;
pub mod oci_layout;
pub mod tar_index;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

pub use image::{LoadedImage, StoredImage};

use crate::error::IoContext;
use crate::reference::Reference;
use crate::store::Store;
use crate::transport::{ArchiveSelector, Transport};
use crate::unpack::Compression;
use crate::{Error, Result};
use tar_index::TarIndex;

/// The archive formats of `save --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// A `docker save` tar.
    DockerArchive,
    /// An OCI layout in a tar.
    OciArchive,
    /// An OCI layout directory.
    OciDir,
}

impl ArchiveFormat {
    /// Parse podman's `--format` names (`docker-archive`, `oci-archive`, `oci-dir`).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "docker-archive" => Ok(Self::DockerArchive),
            "oci-archive" => Ok(Self::OciArchive),
            "oci-dir" | "oci" => Ok(Self::OciDir),
            other => Err(Error::Format {
                what: format!("archive format {other:?}"),
                message: "expected docker-archive, oci-archive or oci-dir".into(),
            }),
        }
    }

    /// The transport for this format at `path`.
    pub fn transport(self, path: PathBuf) -> Transport {
        match self {
            Self::DockerArchive => Transport::DockerArchive { path, selector: None },
            Self::OciArchive => Transport::OciArchive { path, tag: None },
            Self::OciDir => Transport::OciDir { path, tag: None },
        }
    }
}

/// Copy the image(s) that `source` names into the store; `name` overrides their names.
pub fn load(store: &Store, source: &Transport, name: Option<&Reference>) -> Result<Vec<LoadedImage>> {
    match source {
        Transport::OciDir { path, tag } => oci_layout::load(store, &oci_layout::DirSource::new(path), tag.as_deref(), name),
        Transport::OciArchive { path, tag } => oci_archive::load(store, &TarIndex::open(path)?, tag.as_deref(), name),
        Transport::DockerArchive { path, selector } => docker_archive::load(store, &TarIndex::open(path)?, selector.as_ref(), name),
        Transport::Docker(r) => {
            Err(Error::Format { what: format!("docker://{r}"), message: "a registry image is pulled, not loaded".into() })
        }
    }
}

/// Load a directory or archive file whose format is detected (`berth load`): an OCI layout
/// directory, a docker-archive (`manifest.json`) or an oci-archive (`index.json`), possibly
/// gzip- or zstd-compressed (decompressed first into a temp file in `tmp_dir`).
pub fn load_path(store: &Store, path: &Path, tmp_dir: &Path) -> Result<(ArchiveFormat, Vec<LoadedImage>)> {
    let meta = std::fs::metadata(path).io_context(|| format!("load {}", path.display()))?;
    if meta.is_dir() {
        let images = oci_layout::load(store, &oci_layout::DirSource::new(path), None, None)?;
        return Ok((ArchiveFormat::OciDir, images));
    }
    let mut file = File::open(path).io_context(|| format!("open {}", path.display()))?;
    let mut prefix = [0u8; 4];
    let got = read_prefix(&mut file, &mut prefix).io_context(|| format!("read {}", path.display()))?;
    let compression = Compression::detect(&prefix[..got]);
    let archive = if compression == Compression::None {
        TarIndex::open(path)?
    } else {
        let mut tmp = temp_file(tmp_dir)?;
        let file = File::open(path).io_context(|| format!("open {}", path.display()))?;
        let mut plain: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file))),
            _ => Box::new(zstd::stream::read::Decoder::new(file).io_context(|| format!("decompress {}", path.display()))?),
        };
        io::copy(&mut plain, &mut io::BufWriter::new(&mut tmp)).io_context(|| format!("decompress {}", path.display()))?;
        TarIndex::from_file(tmp, path)?
    };
    if archive.contains("manifest.json") {
        Ok((ArchiveFormat::DockerArchive, docker_archive::load(store, &archive, None, None)?))
    } else if archive.contains("index.json") && archive.contains("oci-layout") {
        Ok((ArchiveFormat::OciArchive, oci_archive::load(store, &archive, None, None)?))
    } else {
        Err(Error::Format {
            what: format!("archive {}", path.display()),
            message: "neither a docker-archive (no manifest.json) nor an oci-archive (no index.json and oci-layout)".into(),
        })
    }
}

fn read_prefix(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    while have < buf.len() {
        match file.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(have)
}

/// An unnamed temporary file in `dir` (O_TMPFILE, or created and unlinked at once).
pub fn temp_file(dir: &Path) -> Result<File> {
    docker_archive::temp_file(dir)
}

/// Copy store images to `dest` (several only for docker-archive and untagged oci targets).
pub fn save(store: &Store, images: &[Reference], dest: &Transport) -> Result<()> {
    let stored = resolve_all(store, images)?;
    match dest {
        Transport::OciDir { path, tag } => {
            let names = ref_names(&stored, tag.as_deref(), dest)?;
            oci_layout::save(store, &stored, &names, &mut oci_layout::DirSink::create(path)?)
        }
        Transport::OciArchive { path, .. } | Transport::DockerArchive { path, .. } => {
            let out = OutputFile::create(path)?;
            let tmp_dir = out.dir.clone();
            let file = save_to_writer(store, &stored, dest, io::BufWriter::new(out.file()?), &tmp_dir)?;
            file.into_inner().map_err(|e| Error::Io { context: format!("write {}", path.display()), source: e.into_error() })?;
            out.commit()
        }
        Transport::Docker(r) => {
            Err(Error::Format { what: format!("docker://{r}"), message: "a registry image is pushed, not saved".into() })
        }
    }
}

/// Write store images as an archive to `out` (a file or stdout); `dest` gives the format and
/// the tag or reference to write; its path is only used in messages.
pub fn save_to_writer<W: Write>(store: &Store, images: &[StoredImage], dest: &Transport, out: W, tmp_dir: &Path) -> Result<W> {
    let what = dest.to_string();
    match dest {
        Transport::OciArchive { tag, .. } => {
            let names = ref_names(images, tag.as_deref(), dest)?;
            let mut sink = oci_archive::TarSink::new(out, what);
            oci_layout::save(store, images, &names, &mut sink)?;
            sink.into_inner()
        }
        Transport::DockerArchive { selector, .. } => {
            let tags: Vec<Vec<Reference>> = match selector {
                Some(ArchiveSelector::Reference(r)) if images.len() == 1 => vec![vec![r.clone()]],
                Some(_) => return Err(Error::Format { what, message: "a docker-archive reference names one image".into() }),
                None => images.iter().map(|i| if i.name.tag().is_some() { vec![i.name.clone()] } else { Vec::new() }).collect(),
            };
            docker_archive::save(store, images, &tags, out, what, tmp_dir)
        }
        other => Err(Error::Format { what, message: format!("{other} is not an archive file") }),
    }
}

/// Resolve each name to the host platform's manifest.
pub fn resolve_all(store: &Store, images: &[Reference]) -> Result<Vec<StoredImage>> {
    if images.is_empty() {
        return Err(Error::Format { what: "save".into(), message: "no image given".into() });
    }
    images.iter().map(|r| StoredImage::resolve(store, r)).collect()
}

/// The `org.opencontainers.image.ref.name` of each image: the transport's tag, or the full name.
fn ref_names(images: &[StoredImage], tag: Option<&str>, dest: &Transport) -> Result<Vec<String>> {
    match tag {
        Some(_) if images.len() > 1 => Err(Error::Format { what: dest.to_string(), message: "one tag cannot name several images".into() }),
        Some(t) => Ok(vec![t.to_string()]),
        None => Ok(images.iter().map(|i| i.name.to_string()).collect()),
    }
}

/// A file written under a temporary name next to `dest`, renamed over it on commit.
struct OutputFile {
    tmp: PathBuf,
    dest: PathBuf,
    dir: PathBuf,
    committed: bool,
}

impl OutputFile {
    fn create(dest: &Path) -> Result<Self> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "archive".into());
        let tmp = dir.join(format!(".{base}.tmp-{}", crate::store::random_suffix()));
        File::options().write(true).create_new(true).open(&tmp).io_context(|| format!("create {}", tmp.display()))?;
        Ok(Self { tmp, dest: dest.to_path_buf(), dir, committed: false })
    }

    fn file(&self) -> Result<File> {
        File::options().write(true).open(&self.tmp).io_context(|| format!("open {}", self.tmp.display()))
    }

    fn commit(mut self) -> Result<()> {
        let f = self.file()?;
        f.sync_all().io_context(|| format!("fsync {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.dest).io_context(|| format!("rename {} to {}", self.tmp.display(), self.dest.display()))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
