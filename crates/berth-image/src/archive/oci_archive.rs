//! `oci-archive:` — an OCI image layout in a tar. Reading indexes the tar and streams blobs
//! by position ([`TarIndex`]); writing streams blobs straight into the tar, verified.

use std::collections::HashSet;
use std::io::{Read, Write};

use serde_json::{json, Value};

use super::oci_layout::{self, blob_name, LayoutSink, OCI_LAYOUT_FILE};
use super::tar_index::TarIndex;
use crate::error::IoContext;
use crate::store::digest::Digest;
use crate::{Error, Result};

/// A tar being written: regular files and directories with fixed owner and mtime.
pub struct TarOut<W: Write> {
    builder: tar::Builder<W>,
    dirs: HashSet<String>,
    what: String,
}

impl<W: Write> TarOut<W> {
    /// Write a tar to `out`; `what` names the output in errors.
    pub fn new(out: W, what: String) -> Self {
        Self { builder: tar::Builder::new(out), dirs: HashSet::new(), what }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    /// Add the directories leading to `name` once each.
    fn parents(&mut self, name: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            prefix.push_str(part);
            prefix.push('/');
            if self.dirs.insert(prefix.clone()) {
                let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
                self.builder.append_data(&mut h, &prefix, std::io::empty()).io_context(|| format!("write {}", self.what))?;
            }
        }
        Ok(())
    }

    /// Add a regular file of exactly `size` bytes streamed from `reader`.
    pub fn file(&mut self, name: &str, size: u64, reader: &mut dyn Read) -> Result<()> {
        self.parents(name)?;
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        self.builder
            .append_data(&mut h, name, reader)
            .map_err(|e| Error::Io { context: format!("write {name} to {}", self.what), source: e })
    }

    /// Add a small file from memory.
    pub fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.file(name, bytes.len() as u64, &mut &bytes[..])
    }

    /// Write the end-of-archive blocks and return the output.
    pub fn finish(self) -> Result<W> {
        let what = self.what.clone();
        self.builder.into_inner().io_context(|| format!("finish {what}"))
    }
}

/// An OCI layout written into a tar.
pub struct TarSink<W: Write> {
    tar: Option<TarOut<W>>,
    written: HashSet<Digest>,
}

impl<W: Write> TarSink<W> {
    /// Write the layout as a tar to `out`.
    pub fn new(out: W, what: String) -> Self {
        Self { tar: Some(TarOut::new(out, what)), written: HashSet::new() }
    }

    fn tar(&mut self) -> Result<&mut TarOut<W>> {
        self.tar.as_mut().ok_or_else(|| Error::Format { what: "oci-archive".into(), message: "already finished".into() })
    }

    /// The output, once [`LayoutSink::finish`] ran.
    pub fn into_inner(mut self) -> Result<W> {
        let tar = self.tar.take().ok_or_else(|| Error::Format { what: "oci-archive".into(), message: "already finished".into() })?;
        tar.finish()
    }
}

impl<W: Write> LayoutSink for TarSink<W> {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    fn put_blob(&mut self, digest: &Digest, size: u64, reader: &mut dyn Read) -> Result<()> {
        let name = blob_name(digest)?;
        self.tar()?.file(&name, size, reader)?;
        self.written.insert(digest.clone());
        Ok(())
    }

    fn finish(&mut self, entries: Vec<Value>) -> Result<()> {
        let index = json!({ "schemaVersion": 2, "mediaType": super::convert::OCI_INDEX, "manifests": entries });
        let bytes = serde_json::to_vec(&index).map_err(|e| Error::Format { what: "index.json".into(), message: e.to_string() })?;
        let tar = self.tar()?;
        tar.bytes("index.json", &bytes)?;
        tar.bytes("oci-layout", OCI_LAYOUT_FILE.as_bytes())
    }
}

/// Load an OCI archive that was already indexed.
pub fn load(
    store: &crate::store::Store,
    archive: &TarIndex,
    tag: Option<&str>,
    name: Option<&crate::reference::Reference>,
) -> Result<Vec<super::LoadedImage>> {
    oci_layout::load(store, archive, tag, name)
}
