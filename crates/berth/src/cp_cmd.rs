//! `cp`: copy files between a container and the host (docker's syntax and rules; the engine's
//! `copy` module does the work and keeps it inside the container's root).

use std::path::Path;

use anyhow::bail;
use berth_engine::CopyOptions;
use clap::Args;

use crate::container_cmds::engine;
use crate::context::Context;

/// Flags of `cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode: keep the source's uid/gid.
    #[arg(short, long)]
    archive: bool,
    /// Follow a symlink given as SRC_PATH.
    #[arg(short = 'L', long = "follow-link")]
    follow_link: bool,
    /// Print nothing (accepted for docker compatibility; berth prints no progress).
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or - (a tar stream on stdin).
    src: String,
    /// CONTAINER:DEST_PATH, a host path, or - (a tar stream on stdout).
    dest: String,
}

/// One side of `cp`, as docker splits it: a path starting with `/` or `.` is the host's;
/// otherwise `NAME:PATH` names a container.
#[derive(Debug, PartialEq, Eq)]
enum Side<'a> {
    Host(&'a str),
    Container(&'a str, &'a str),
}

fn side(arg: &str) -> Side<'_> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => Side::Container(c, p),
        _ => Side::Host(arg),
    }
}

/// `cp`.
pub fn cp(ctx: &Context, a: CpArgs) -> anyhow::Result<()> {
    let opts = CopyOptions { archive: a.archive, follow_link: a.follow_link };
    let _ = a.quiet;
    let engine = engine(ctx)?;
    match (side(&a.src), side(&a.dest)) {
        (Side::Container(..), Side::Container(..)) => bail!("copying between containers is not supported"),
        (Side::Host(_), Side::Host(_)) => bail!("one of the paths must name a container: CONTAINER:PATH"),
        (Side::Container(c, p), Side::Host("-")) => {
            let stdout = std::io::stdout().lock();
            Ok(engine.copy_out_to_stream(c, p, &opts, std::io::BufWriter::with_capacity(256 * 1024, stdout))?)
        }
        (Side::Container(c, p), Side::Host(dest)) => Ok(engine.copy_out(c, p, Path::new(dest), &opts)?),
        (Side::Host("-"), Side::Container(c, p)) => Ok(engine.copy_in_from_stream(c, std::io::stdin().lock(), p, &opts)?),
        (Side::Host(src), Side::Container(c, p)) => Ok(engine.copy_in(c, Path::new(src), p, &opts)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_start_with_a_slash_or_a_dot_and_others_name_a_container() {
        assert_eq!(side("web:/etc/hosts"), Side::Container("web", "/etc/hosts"));
        assert_eq!(side("/tmp/a:b"), Side::Host("/tmp/a:b"));
        assert_eq!(side("./x:y"), Side::Host("./x:y"));
        assert_eq!(side("-"), Side::Host("-"));
        assert_eq!(side("plain"), Side::Host("plain"));
        assert_eq!(side("dir/a:b"), Side::Host("dir/a:b"));
    }
}
