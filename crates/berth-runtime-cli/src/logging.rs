//! Error and debug output in runc's shapes: `--log-format json` writes one JSON object per
//! line (`{"level":"error","msg":…,"time":…}`), which containerd's shim reads back.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where and how to write log lines.
pub struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    /// Set up logging; `--debug` enables tracing's debug output on the same destination.
    pub fn new(file: Option<&Path>, format: &str, debug: bool) -> Self {
        if debug || std::env::var_os("BERTH_LOG").is_some() {
            let filter =
                tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("debug"));
            let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
            if format == "json" {
                let _ = builder.json().try_init();
            } else {
                let _ = builder.try_init();
            }
        }
        Logger { file: file.map(Path::to_path_buf), json: format == "json" }
    }

    /// Report a fatal error: to the log file if one is set, and always to stderr.
    pub fn error(&self, msg: &str) {
        let time = berth_runtime::time::now_rfc3339();
        let line = if self.json {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        } else {
            format!("time={time:?} level=error msg={msg:?}")
        };
        if let Some(path) = &self.file {
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }
        eprintln!("berth-runtime: {msg}");
    }
}
