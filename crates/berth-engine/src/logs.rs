//! Container logs: the monitor writes the container's output as docker's `json-file` or
//! podman's `k8s-file` format, size-capped with one rotated file; `berth logs` reads them.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoContext, Result};
use crate::settings::LogDriver;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1 (and a terminal's output).
    Stdout,
    /// fd 2.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A partial line is written once this long, so one endless line cannot exhaust memory.
const MAX_LINE: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct JsonRecord {
    log: String,
    stream: String,
    time: String,
}

/// Appends a container's output to its log file.
pub struct LogWriter {
    driver: LogDriver,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_size: u64,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Open (appending) the log at `path`; nothing is written with the `none` driver.
    pub fn open(driver: LogDriver, path: &Path, max_size: u64) -> Result<LogWriter> {
        let file = match driver {
            LogDriver::None => None,
            _ => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .io_context(|| format!("open the log {}", path.display()))?,
            ),
        };
        let size = file.as_ref().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter { driver, path: path.to_path_buf(), file, size, max_size, pending: [Vec::new(), Vec::new()] })
    }

    /// Log a chunk of output: complete lines now, the rest once its line ends.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        if self.file.is_none() {
            return;
        }
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            self.record(stream, &buf[start..start + nl + 1], false);
            start += nl + 1;
        }
        let rest = &buf[start..];
        if rest.len() >= MAX_LINE {
            self.record(stream, rest, true);
        } else {
            self.pending[idx] = rest.to_vec();
        }
    }

    /// Write what is left of unfinished lines (the container exited).
    pub fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, &rest, true);
            }
        }
    }

    fn record(&mut self, stream: Stream, text: &[u8], partial: bool) {
        let time = berth_runtime::time::now_rfc3339();
        let text = String::from_utf8_lossy(text);
        let line = match self.driver {
            LogDriver::JsonFile => {
                let rec = JsonRecord { log: text.into_owned(), stream: stream.name().into(), time };
                serde_json::to_string(&rec).unwrap_or_default() + "\n"
            }
            LogDriver::K8sFile => {
                let body = text.strip_suffix('\n').unwrap_or(&text);
                format!("{time} {} {} {body}\n", stream.name(), if partial { "P" } else { "F" })
            }
            LogDriver::None => return,
        };
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate();
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk loses log lines, never the container.
            if f.write_all(line.as_bytes()).is_ok() {
                self.size += line.len() as u64;
            }
        }
    }

    fn rotate(&mut self) {
        let old = rotated(&self.path);
        if std::fs::rename(&self.path, &old).is_ok() {
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
                self.file = Some(f);
                self.size = 0;
            }
        }
    }
}

/// The rotated (older) log file next to `path`.
pub fn rotated(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// One logged chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// RFC 3339 time it was written.
    pub time: String,
    /// Its stream.
    pub stream: Stream,
    /// The text, with its newline when the line was complete.
    pub text: String,
}

fn parse(driver: LogDriver, line: &str) -> Option<LogEntry> {
    match driver {
        LogDriver::JsonFile => {
            let r: JsonRecord = serde_json::from_str(line).ok()?;
            let stream = if r.stream == "stderr" { Stream::Stderr } else { Stream::Stdout };
            Some(LogEntry { time: r.time, stream, text: r.log })
        }
        LogDriver::K8sFile => {
            let mut parts = line.splitn(4, ' ');
            let time = parts.next()?.to_string();
            let stream = if parts.next()? == "stderr" { Stream::Stderr } else { Stream::Stdout };
            let full = parts.next()? == "F";
            let body = parts.next().unwrap_or("");
            Some(LogEntry { time, stream, text: if full { format!("{body}\n") } else { body.to_string() } })
        }
        LogDriver::None => None,
    }
}

/// Every entry of one log file.
pub fn read_file(driver: LogDriver, path: &Path) -> Vec<LogEntry> {
    match File::open(path) {
        Ok(f) => BufReader::new(f).lines().map_while(|l| l.ok()).filter_map(|l| parse(driver, &l)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Every entry of a container's log, oldest first (the rotated file, then the current).
pub fn read_all(driver: LogDriver, path: &Path) -> Vec<LogEntry> {
    let mut out = read_file(driver, &rotated(path));
    out.extend(read_file(driver, path));
    out
}

/// Follows a log file from its current end, across rotations.
pub struct LogFollower {
    driver: LogDriver,
    path: PathBuf,
    reader: Option<BufReader<File>>,
    inode: u64,
    partial: String,
}

impl LogFollower {
    /// Start at the end of what [`read_all`] returned (`offset` = the current file's size then).
    pub fn new(driver: LogDriver, path: &Path, offset: u64) -> LogFollower {
        let mut f = LogFollower { driver, path: path.to_path_buf(), reader: None, inode: 0, partial: String::new() };
        if let Ok(mut file) = File::open(path) {
            f.inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(offset));
            f.reader = Some(BufReader::new(file));
        }
        f
    }

    /// The size of the current log file (where a follower starts after `read_all`).
    pub fn current_size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// New entries since the last call.
    pub fn poll(&mut self) -> Vec<LogEntry> {
        let mut out = Vec::new();
        self.drain(&mut out);
        // Rotated: finish the old file (done above), continue with the new one from its start.
        let ino = std::fs::metadata(&self.path).map(|m| m.ino()).unwrap_or(0);
        if ino != 0 && ino != self.inode {
            if let Ok(file) = File::open(&self.path) {
                self.inode = ino;
                self.reader = Some(BufReader::new(file));
                self.partial.clear();
                self.drain(&mut out);
            }
        }
        out
    }

    fn drain(&mut self, out: &mut Vec<LogEntry>) {
        let Some(r) = self.reader.as_mut() else { return };
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line) {
            if n == 0 {
                break;
            }
            if !line.ends_with('\n') {
                // The writer is mid-line: keep it for the next poll.
                self.partial.push_str(&line);
                line.clear();
                continue;
            }
            let full = std::mem::take(&mut self.partial) + &line;
            if let Some(e) = parse(self.driver, full.trim_end_matches('\n')) {
                out.push(e);
            }
            line.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_round_trip_lines_partials_and_streams() {
        for driver in [LogDriver::JsonFile, LogDriver::K8sFile] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("ctr.log");
            let mut w = LogWriter::open(driver, &p, 0).unwrap();
            w.write(Stream::Stdout, b"hello\nwor");
            w.write(Stream::Stderr, b"oops\n");
            w.write(Stream::Stdout, b"ld\nend");
            w.flush();
            let texts: Vec<(Stream, String)> = read_all(driver, &p).into_iter().map(|e| (e.stream, e.text)).collect();
            assert_eq!(
                texts,
                [
                    (Stream::Stdout, "hello\n".to_string()),
                    (Stream::Stderr, "oops\n".to_string()),
                    (Stream::Stdout, "world\n".to_string()),
                    (Stream::Stdout, "end".to_string())
                ],
                "{driver:?}"
            );
        }
    }

    #[test]
    fn the_log_rotates_at_its_size_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(LogDriver::JsonFile, &p, 1000).unwrap();
        for i in 0..100 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        assert!(std::fs::metadata(&p).unwrap().len() <= 1000);
        let all = read_all(LogDriver::JsonFile, &p);
        assert_eq!(all.last().unwrap().text, "line 99\n");
        assert!(all.len() < 100 && all.len() > 10);
    }

    #[test]
    fn a_follower_sees_new_lines_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctr.log");
        let mut w = LogWriter::open(LogDriver::JsonFile, &p, 200).unwrap();
        w.write(Stream::Stdout, b"first\n");
        let mut f = LogFollower::new(LogDriver::JsonFile, &p, LogFollower::current_size(&p));
        assert!(f.poll().is_empty());
        let mut seen = Vec::new();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("n{i}\n").as_bytes());
            seen.extend(f.poll().into_iter().map(|e| e.text));
        }
        assert_eq!(seen, (0..10).map(|i| format!("n{i}\n")).collect::<Vec<_>>());
    }
}
