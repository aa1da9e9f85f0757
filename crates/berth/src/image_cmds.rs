//! Image commands: pull, push, images, rmi, tag, image inspect, history, image prune.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use berth_image::images::{self, NamedImage};
use berth_image::pull::{self, PullOptions};
use berth_image::push::{self, PushOptions, PushProgress};
use berth_image::registry::{BlobPushOutcome, Platform, UploadMethod};
use berth_image::store::digest::Digest;
use clap::Args;
use serde_json::json;

use crate::context::Context;
use crate::format::{human_age, human_size, print_table};
use crate::progress::{short, PullDisplay};

/// `berth pull`
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Print nothing but the image id.
    #[arg(short, long)]
    quiet: bool,
    /// The platform to pull from an index: os/arch[/variant].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 4, hide = true)]
    jobs: usize,
    /// The image: NAME[:TAG] or NAME@DIGEST.
    image: String,
}

/// `berth push`
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Print nothing but the manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Upload blobs in chunks of this many bytes instead of in one request.
    #[arg(long, value_name = "BYTES")]
    chunk_size: Option<usize>,
    /// The stored image.
    image: String,
    /// Where to push it (default: its own name).
    destination: Option<String>,
}

/// `berth images`
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format: `table` (default) or `json`.
    #[arg(long, default_value = "table")]
    format: String,
    /// Show the digests.
    #[arg(long)]
    digests: bool,
    /// Print image ids only.
    #[arg(short, long)]
    quiet: bool,
}

/// `berth rmi`
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Remove even when in use or named several times.
    #[arg(short, long)]
    force: bool,
    /// Images: names or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

/// `berth tag`
#[derive(Args, Debug)]
pub struct TagArgs {
    /// The stored image (name or id).
    source: String,
    /// The new name.
    target: String,
}

/// `berth image inspect`
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Images: names or ids.
    #[arg(required = true)]
    images: Vec<String>,
}

/// `berth history`
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Show full commands.
    #[arg(long)]
    no_trunc: bool,
    /// The image (name or id).
    image: String,
}

/// `berth image prune`
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not ask (berth never asks; accepted for compatibility).
    #[arg(short, long)]
    force: bool,
}

/// An image argument as `images::find` takes it: ids unchanged, names qualified.
pub(crate) fn image_arg(ctx: &Context, text: &str) -> anyhow::Result<String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.len() >= 3 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Ok(text.to_string());
    }
    Ok(ctx.reference(text)?.to_string())
}

/// `pull`: progress on stderr, the image id on stdout.
/// Whether `text` names a non-registry transport (`oci:`, `oci-archive:`, `docker-archive:`).
fn local_transport(text: &str) -> Option<anyhow::Result<berth_image::transport::Transport>> {
    ["oci:", "oci-archive:", "docker-archive:"]
        .iter()
        .any(|p| text.starts_with(p))
        .then(|| berth_image::transport::Transport::parse(text).map_err(anyhow::Error::from))
}

pub fn pull(ctx: &Context, args: PullArgs) -> anyhow::Result<()> {
    // `pull oci:DIR[:tag]` and the archive transports copy into the store like `load`.
    if let Some(transport) = local_transport(&args.image) {
        let transport = transport?;
        let store = ctx.store()?;
        let loaded = berth_image::archive::load(&store, &transport, None)?;
        for image in &loaded {
            crate::archive_cmds::unpack_image(ctx, &store, image)?;
            for name in &image.names {
                eprintln!("Loaded image: {name}");
            }
        }
        return Ok(());
    }
    let conf = ctx.registries()?;
    let reference = conf.qualify(&args.image)?;
    let platform = match &args.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = ctx.store()?;
    let display = PullDisplay::choose(args.quiet);
    display.line(&format!("Trying to pull {reference}..."));
    let opts = PullOptions { registries: conf.registry_config(), workers: args.jobs.max(1), ..Default::default() };
    let pulled = pull::pull(&store, &ctx.snapshots_dir(), &reference, &platform, &opts, &display)?;
    display.line(&format!("Writing manifest {} for {}", pulled.manifest.digest(), pulled.name));
    println!("{}", pulled.config.digest());
    Ok(())
}

/// Pull `image` (already qualified) for `run --pull`: progress on stderr, nothing on stdout.
pub(crate) fn pull_for_run(ctx: &Context, image: &str, platform: Option<&str>) -> anyhow::Result<()> {
    let conf = ctx.registries()?;
    let reference = conf.qualify(image)?;
    let platform = match platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let store = ctx.store()?;
    let display = PullDisplay::choose(false);
    display.line(&format!("Trying to pull {reference}..."));
    let opts = PullOptions { registries: conf.registry_config(), workers: 4, ..Default::default() };
    pull::pull(&store, &ctx.snapshots_dir(), &reference, &platform, &opts, &display)?;
    Ok(())
}

/// Whether the store holds `image`.
pub(crate) fn image_present(ctx: &Context, image: &str) -> anyhow::Result<bool> {
    Ok(!images::find(&ctx.store()?, image)?.is_empty())
}

struct PushLines {
    quiet: bool,
}

impl PushProgress for PushLines {
    fn blob(&self, digest: &Digest, outcome: BlobPushOutcome) {
        if !self.quiet {
            let what = match outcome {
                BlobPushOutcome::Existed => "skipped: already exists",
                BlobPushOutcome::Mounted => "mounted",
                BlobPushOutcome::Uploaded => "done",
            };
            eprintln!("Copying blob {} {what}", short(digest));
        }
    }
}

/// `push`: the manifest digest on stdout.
pub fn push(ctx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let conf = ctx.registries()?;
    let source = conf.qualify(&args.image)?;
    // `push IMAGE oci:DIR[:tag]` and the archive transports write like `save`.
    if let Some(transport) = args.destination.as_deref().and_then(local_transport) {
        let store = ctx.store()?;
        berth_image::archive::save(&store, &[source], &transport?)?;
        return Ok(());
    }
    let dest = match &args.destination {
        Some(d) => conf.qualify(d.strip_prefix("docker://").unwrap_or(d))?,
        None => source.clone(),
    };
    let store = ctx.store()?;
    let method = args.chunk_size.map_or(UploadMethod::Monolithic, |chunk_size| UploadMethod::Chunked { chunk_size });
    let opts = PushOptions { registries: conf.registry_config(), method, ..Default::default() };
    if !args.quiet {
        eprintln!("Pushing {source} to {dest}");
    }
    let report = push::push(&store, &source, &dest, &opts, &PushLines { quiet: args.quiet })?;
    if let Some(digest) = report.digest {
        println!("{digest}");
    }
    Ok(())
}

/// `images`
pub fn images(ctx: &Context, args: ImagesArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let list = images::list(&store)?;
    if args.quiet {
        let mut seen = BTreeSet::new();
        for n in &list {
            if seen.insert(n.image.id.to_string()) {
                println!("{}", n.image.short_id());
            }
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => {
            let rows: Vec<_> = list.iter().map(json_row).collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        "table" => {
            let mut rows = vec![header(args.digests)];
            for n in &list {
                let (repository, tag) = repo_and_tag(n);
                let mut row = vec![repository, tag];
                if args.digests {
                    row.push(n.repo_digest.as_ref().unwrap_or(&n.image.manifest).to_string());
                }
                row.extend([n.image.short_id().to_string(), human_age(n.image.created()), human_size(n.image.size())]);
                rows.push(row);
            }
            print_table(&rows);
        }
        other => bail!("unknown --format {other:?}: expected table or json"),
    }
    Ok(())
}

fn header(digests: bool) -> Vec<String> {
    let mut h = vec!["REPOSITORY", "TAG"];
    if digests {
        h.push("DIGEST");
    }
    h.extend(["IMAGE ID", "CREATED", "SIZE"]);
    h.into_iter().map(String::from).collect()
}

fn repo_and_tag(n: &NamedImage) -> (String, String) {
    match &n.name {
        Some(r) => (r.name(), r.tag().unwrap_or("<none>").to_string()),
        None => ("<none>".into(), "<none>".into()),
    }
}

fn json_row(n: &NamedImage) -> serde_json::Value {
    let (repository, tag) = repo_and_tag(n);
    json!({
        "Id": n.image.id.digest(),
        "Names": n.name.as_ref().map(|r| vec![r.to_string()]).unwrap_or_default(),
        "Repository": repository,
        "Tag": tag,
        "Digest": n.repo_digest.as_ref().unwrap_or(&n.image.manifest).to_string(),
        "Created": n.image.created(),
        "CreatedSince": human_age(n.image.created()),
        "Size": n.image.size(),
    })
}

/// `rmi`: every argument is tried; garbage is collected once at the end.
pub fn rmi(ctx: &Context, args: RmiArgs) -> anyhow::Result<()> {
    let mut texts = Vec::new();
    for text in &args.images {
        texts.push(image_arg(ctx, text)?);
    }
    let store = ctx.store()?;
    let mut failures = 0;
    let (used_images, used_snapshots) = crate::container_cmds::in_use(ctx)?;
    let in_use = |id: &Digest| used_images.contains(&id.to_string());
    for (text, given) in texts.iter().zip(&args.images) {
        match images::remove(&store, text, args.force, &in_use) {
            Ok(outcome) => {
                for name in &outcome.untagged {
                    println!("Untagged: {}", name.familiar());
                }
                if let Some(id) = outcome.deleted {
                    println!("Deleted: {}", id.digest());
                }
            }
            Err(e) => {
                eprintln!("Error: image {given}: {e}");
                failures += 1;
            }
        }
    }
    images::collect_garbage(&store, &ctx.snapshots_dir(), &|chain: &Digest| used_snapshots.contains(&chain.to_string()))?;
    if failures > 0 {
        return Err(anyhow!("{failures} of {} images could not be removed", args.images.len()));
    }
    Ok(())
}

/// `tag`
pub fn tag(ctx: &Context, args: TagArgs) -> anyhow::Result<()> {
    let source = image_arg(ctx, &args.source)?;
    let target = ctx.reference(&args.target)?;
    let store = ctx.store()?;
    images::tag(&store, &source, &target)?;
    Ok(())
}

/// `image inspect`: a JSON array, one object per image.
pub fn inspect(ctx: &Context, args: InspectArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    for text in &args.images {
        out.push(images::inspect(&store, &image_arg(ctx, text)?)?);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `history`
pub fn history(ctx: &Context, args: HistoryArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let text = image_arg(ctx, &args.image)?;
    let found = images::find(&store, &text)?;
    let id = found.first().map(|n| n.image.short_id().to_string()).unwrap_or_default();
    let entries = images::history(&store, &text)?;
    let mut rows = vec![["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from).to_vec()];
    for (i, e) in entries.iter().enumerate() {
        let mut created_by = e.created_by.clone();
        if !args.no_trunc && created_by.chars().count() > 45 {
            created_by = created_by.chars().take(44).collect::<String>() + "…";
        }
        let image = if i == 0 { id.clone() } else { "<missing>".to_string() };
        rows.push(vec![image, human_age(e.created.as_deref()), created_by, human_size(e.size), e.comment.clone()]);
    }
    print_table(&rows);
    Ok(())
}

/// `image prune`
pub fn prune(ctx: &Context, _args: PruneArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, used_snapshots) = crate::container_cmds::in_use(ctx)?;
    let report = images::prune(&store, &ctx.snapshots_dir(), &|chain: &Digest| used_snapshots.contains(&chain.to_string()))?;
    for d in &report.blobs.removed {
        println!("Deleted blob {d}");
    }
    for c in &report.snapshots {
        println!("Deleted snapshot {c}");
    }
    println!("Total reclaimed space: {}", human_size(report.blobs.bytes));
    Ok(())
}
