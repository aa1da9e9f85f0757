//! Archive commands: `save`, `load`, `import` (podman's flags and output).

use std::io::{IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use berth_image::archive::{self, ArchiveFormat, LoadedImage, StoredImage};
use berth_image::images;
use berth_image::reference::Reference;
use berth_image::store::digest::parse_digest;
use berth_image::store::Store;
use berth_image::unpack::import::{import_rootfs, ImportOptions};
use berth_image::unpack::{PathPolicy, Snapshots, UnpackOptions};
use clap::Args;

use crate::context::Context;

/// `berth save`
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to this file (or directory for oci-dir) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// docker-archive (default), oci-archive or oci-dir.
    #[arg(long, default_value = "docker-archive")]
    format: String,
    /// The images (several only for docker-archive and oci-archive).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `berth load`
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from this archive or OCI layout directory instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Print nothing.
    #[arg(short, long)]
    quiet: bool,
}

/// `berth import`
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Commit message stored in the image's history.
    #[arg(short, long)]
    message: Option<String>,
    /// The rootfs tarball (plain, gzip or zstd), or `-` for stdin.
    rootfs: PathBuf,
    /// The name of the new image.
    name: String,
}

/// `berth save`: images of the store into an archive.
pub fn save(ctx: &Context, args: SaveArgs) -> anyhow::Result<()> {
    let format = ArchiveFormat::parse(&args.format)?;
    let store = ctx.store()?;
    let names = args.images.iter().map(|i| stored_name(&store, i)).collect::<anyhow::Result<Vec<_>>>()?;
    match (&args.output, format) {
        (Some(path), _) => archive::save(&store, &names, &format.transport(path.clone()))
            .with_context(|| format!("save {} to {}", args.images.join(", "), path.display()))?,
        (None, ArchiveFormat::OciDir) => bail!("save --format oci-dir needs -o DIR"),
        (None, _) => {
            let stdout = std::io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let images: Vec<StoredImage> = archive::resolve_all(&store, &names)?;
            let dest = format.transport(PathBuf::from("-"));
            let mut out = archive::save_to_writer(&store, &images, &dest, std::io::BufWriter::new(stdout.lock()), &std::env::temp_dir())?;
            out.flush().context("write the archive to stdout")?;
        }
    }
    Ok(())
}

/// The stored name of what the user typed (a name or an image id).
fn stored_name(store: &Store, text: &str) -> anyhow::Result<Reference> {
    let found = images::find(store, text).with_context(|| format!("image {text:?}"))?;
    found.into_iter().find_map(|n| n.name).ok_or_else(|| anyhow!("image {text:?} has no name to save it under"))
}

/// `berth load`: an archive (format detected) into the store, its layers unpacked.
pub fn load(ctx: &Context, args: LoadArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let tmp_dir = store.root().to_path_buf();
    let loaded = match &args.input {
        Some(path) => archive::load_path(&store, path, &tmp_dir).with_context(|| format!("load {}", path.display()))?.1,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("no archive on stdin: use -i FILE or redirect stdin");
            }
            // The formats need random access (manifest.json may come last): spool stdin to disk.
            let mut spool = archive::temp_file(&tmp_dir)?;
            std::io::copy(&mut stdin.lock(), &mut spool).context("read the archive from stdin")?;
            spool.rewind().context("rewind the spooled archive")?;
            let path = proc_fd_path(&spool);
            archive::load_path(&store, &path, &tmp_dir).context("load the archive from stdin")?.1
        }
    };
    for image in &loaded {
        unpack_image(ctx, &store, image)?;
    }
    if !args.quiet {
        for image in &loaded {
            for name in &image.names {
                println!("Loaded image: {name}");
            }
        }
    }
    Ok(())
}

/// A path that opens the (possibly unnamed) file again.
fn proc_fd_path(file: &std::fs::File) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// `berth import`: a rootfs tarball becomes a one-layer image; prints its id.
pub fn import(ctx: &Context, args: ImportArgs) -> anyhow::Result<()> {
    let name = ctx.reference(&args.name)?;
    let store = ctx.store()?;
    let opts = ImportOptions { comment: args.message.clone(), ..Default::default() };
    let reader: Box<dyn Read> = if args.rootfs == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.rootfs).with_context(|| format!("open {}", args.rootfs.display()))?)
    };
    let imported = import_rootfs(&store, std::io::BufReader::with_capacity(1 << 20, reader), &name, &opts)
        .with_context(|| format!("import {} as {name}", args.rootfs.display()))?;
    let image = LoadedImage {
        names: vec![name],
        manifest: imported.manifest.clone(),
        config: imported.config.digest.clone(),
        layers: vec![imported.layer.descriptor(berth_image::store::MediaType::ImageLayerGzip)],
    };
    unpack_image(ctx, &store, &image)?;
    println!("{}", imported.config.digest.digest());
    Ok(())
}

/// Unpack each layer of a stored image into its snapshot (those that exist are kept).
pub(crate) fn unpack_image(ctx: &Context, store: &Store, image: &LoadedImage) -> anyhow::Result<()> {
    let snapshots = Snapshots::open(ctx.snapshots_dir())?;
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&image.config)?)
        .with_context(|| format!("config {} of image {}", image.config, describe(image)))?;
    let diff_ids = config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let mut parent: Option<berth_image::store::digest::Digest> = None;
    for (layer, diff_id) in image.layers.iter().zip(&diff_ids) {
        let diff_id = parse_digest(diff_id.as_str().unwrap_or_default())?;
        let chain = match &parent {
            None => diff_id.clone(),
            Some(p) => berth_image::unpack::chain_id(&[p.clone(), diff_id.clone()]).unwrap_or_else(|| diff_id.clone()),
        };
        if !snapshots.exists(&chain) {
            let opts = UnpackOptions {
                expected_digest: Some(layer.digest().clone()),
                expected_size: Some(layer.size()),
                expected_diff_id: Some(diff_id.clone()),
                policy: PathPolicy::Strict,
                same_owner: root,
            };
            snapshots
                .unpack(store.open_blob(layer.digest())?, parent.as_ref(), &opts)
                .with_context(|| format!("unpack layer {} of image {}", layer.digest(), describe(image)))?;
        }
        parent = Some(chain);
    }
    Ok(())
}

fn describe(image: &LoadedImage) -> String {
    image.names.first().map_or_else(|| image.config.to_string(), ToString::to_string)
}
