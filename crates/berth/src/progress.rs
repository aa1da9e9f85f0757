//! How `pull` reports progress: bars per layer on a terminal, plain lines otherwise, nothing
//! with `-q`. Everything goes to stderr; stdout carries only the result.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use berth_image::pull::PullProgress;
use berth_image::store::digest::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display chosen for this run.
pub enum PullDisplay {
    /// `-q`: nothing.
    Quiet,
    /// Not a terminal: one line per finished layer.
    Plain,
    /// A terminal: a bar per layer with bytes and speed.
    Bars(Bars),
}

impl PullDisplay {
    /// Bars when stderr is a terminal, plain lines otherwise, nothing when `quiet`.
    pub fn choose(quiet: bool) -> Self {
        if quiet {
            PullDisplay::Quiet
        } else if std::io::stderr().is_terminal() {
            PullDisplay::Bars(Bars::default())
        } else {
            PullDisplay::Plain
        }
    }

    /// Print a line above the bars (or plainly); silent when quiet.
    pub fn line(&self, text: &str) {
        match self {
            PullDisplay::Quiet => {}
            PullDisplay::Plain => eprintln!("{text}"),
            PullDisplay::Bars(bars) => {
                let _ = bars.multi.println(text);
            }
        }
    }
}

/// The terminal bars.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Self { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()), bars: Mutex::new(HashMap::new()) }
    }
}

impl Bars {
    fn with_bar(&self, digest: &Digest, f: impl FnOnce(&ProgressBar)) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.get(digest) {
            f(bar);
        }
    }
}

/// `sha256:0123456789ab` — the short form in progress lines.
pub fn short(digest: &Digest) -> String {
    let hex = digest.digest();
    hex[..hex.len().min(12)].to_string()
}

impl PullProgress for PullDisplay {
    fn resolved(&self, manifest: &Digest, layers: &[berth_image::store::Descriptor]) {
        self.line(&format!("Resolved manifest {manifest} ({} layers)", layers.len()));
    }

    fn layer_started(&self, digest: &Digest, size: u64) {
        if let PullDisplay::Bars(bars) = self {
            let style =
                ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            let bar = bars.multi.add(ProgressBar::new(size).with_style(style).with_prefix(format!("Copying blob {}", short(digest))));
            bar.enable_steady_tick(Duration::from_millis(200));
            bars.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.clone(), bar);
        }
    }

    fn layer_bytes(&self, digest: &Digest, bytes: u64) {
        if let PullDisplay::Bars(bars) = self {
            bars.with_bar(digest, |bar| bar.inc(bytes));
        }
    }

    fn layer_done(&self, digest: &Digest) {
        match self {
            PullDisplay::Bars(bars) => bars.with_bar(digest, |bar| bar.finish_with_message("done")),
            _ => self.line(&format!("Copying blob {} done", short(digest))),
        }
    }

    fn layer_skipped(&self, digest: &Digest) {
        match self {
            PullDisplay::Bars(bars) => bars.with_bar(digest, |bar| {
                bar.set_position(bar.length().unwrap_or(0));
                bar.finish_with_message("already exists")
            }),
            _ => self.line(&format!("Copying blob {} skipped: already exists", short(digest))),
        }
    }
}
