//! `berth`: the engine's command line. Thin: it parses arguments, calls the libraries, formats
//! output and maps failures to docker's exit codes (125: the engine failed).

mod archive_cmds;
mod attach;
mod container_cmds;
mod context;
mod cp_cmd;
mod format;
mod image_cmds;
mod inspect_cmds;
mod login_cmds;
mod logs_cmd;
mod network_cmds;
mod progress;
mod run_flags;
mod system_cmds;
mod volume_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use context::Context;

/// Exit code for an error of the engine itself (docker's and podman's 125).
const EXIT_ENGINE_ERROR: u8 = 125;

/// berth: containers and images.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about = "berth: a container engine", disable_version_flag = true)]
struct Cli {
    /// Storage root (default /var/lib/berth; rootless: $XDG_DATA_HOME/berth).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state (default /run/berth; rootless: $XDG_RUNTIME_DIR/berth).
    #[arg(long, global = true, value_name = "DIR")]
    runroot: Option<PathBuf>,
    /// Registries config file (default /etc/berth/registries.toml; rootless: $XDG_CONFIG_HOME/berth/registries.toml).
    #[arg(long = "registries-conf", global = true, value_name = "FILE")]
    registries_conf: Option<PathBuf>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long = "log-level", global = true, default_value = "warn", value_name = "LEVEL")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

/// Every `berth` command. `save`, `load` and `import` live in `archive_cmds.rs`.
#[derive(Subcommand, Debug)]
enum Command {
    /// Pull an image from a registry.
    Pull(image_cmds::PullArgs),
    /// Push an image to a registry.
    Push(image_cmds::PushArgs),
    /// List images.
    Images(image_cmds::ImagesArgs),
    /// Remove images.
    Rmi(image_cmds::RmiArgs),
    /// Give an image another name.
    Tag(image_cmds::TagArgs),
    /// Show an image's history.
    History(image_cmds::HistoryArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Log in to a registry.
    Login(login_cmds::LoginArgs),
    /// Log out of a registry.
    Logout(login_cmds::LogoutArgs),
    /// Save images to an archive (docker-archive by default).
    Save(archive_cmds::SaveArgs),
    /// Load images from an archive or OCI layout.
    Load(archive_cmds::LoadArgs),
    /// Create a one-layer image from a rootfs tarball.
    Import(archive_cmds::ImportArgs),
    /// Show the client's and the engine's versions.
    Version(system_cmds::VersionArgs),
    /// Run a command in a new container.
    Run(container_cmds::RunArgs),
    /// Create a container without starting it.
    Create(container_cmds::RunArgs),
    /// Start containers.
    Start(container_cmds::StartArgs),
    /// Stop containers: their stop signal, then SIGKILL after the timeout.
    Stop(container_cmds::StopArgs),
    /// Restart containers.
    Restart(container_cmds::StopArgs),
    /// Send a signal to containers.
    Kill(container_cmds::KillArgs),
    /// Wait for containers to stop and print their exit codes.
    Wait(container_cmds::ContainersArgs),
    /// Freeze containers.
    Pause(container_cmds::ContainersArgs),
    /// Thaw containers.
    Unpause(container_cmds::ContainersArgs),
    /// Rename a container.
    Rename(container_cmds::RenameArgs),
    /// List containers.
    Ps(container_cmds::PsArgs),
    /// Remove containers.
    Rm(container_cmds::RmArgs),
    /// Show a container's output.
    Logs(logs_cmd::LogsArgs),
    /// Run a command in a running container.
    Exec(inspect_cmds::ExecArgs),
    /// Show containers' details as JSON.
    Inspect(inspect_cmds::InspectArgs),
    /// Show a container's processes.
    Top(inspect_cmds::TopArgs),
    /// Show containers' resource usage.
    Stats(inspect_cmds::StatsArgs),
    /// Copy files between a container and the host (CONTAINER:PATH; - is a tar stream).
    Cp(cp_cmd::CpArgs),
    /// The detached monitor of a container (started by run -d and start).
    #[command(name = "__monitor", hide = true)]
    Monitor {
        /// The container id.
        id: String,
    },
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volume_cmds::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(network_cmds::NetworkCommand),
    /// List a container's published ports.
    Port(network_cmds::PortArgs),
    /// Manage the engine: info, prune.
    #[command(subcommand)]
    System(system_cmds::SystemCommand),
    /// Show the host, the engine's state and the runtime's features (system info).
    Info(system_cmds::InfoArgs),
}

/// `berth image …`
#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Show an image's config, rootfs and history as JSON.
    Inspect(image_cmds::InspectArgs),
    /// Remove what no image needs (dangling blobs, snapshots, leftovers of killed pulls).
    Prune(image_cmds::PruneArgs),
    /// List images.
    #[command(alias = "list")]
    Ls(image_cmds::ImagesArgs),
    /// Remove images.
    Rm(image_cmds::RmiArgs),
    /// Pull an image.
    Pull(image_cmds::PullArgs),
    /// Push an image.
    Push(image_cmds::PushArgs),
    /// Tag an image.
    Tag(image_cmds::TagArgs),
    /// Show an image's history.
    History(image_cmds::HistoryArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ENGINE_ERROR } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.log_level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(EXIT_ENGINE_ERROR)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "warn,berth={level},berth_image={level},berth_engine={level},berth_net={level},netlink_packet_route=error"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context::new(cli.root, cli.registries_conf).with_runroot(cli.runroot);
    match cli.command {
        Command::Pull(args) | Command::Image(ImageCommand::Pull(args)) => image_cmds::pull(&ctx, args),
        Command::Push(args) | Command::Image(ImageCommand::Push(args)) => image_cmds::push(&ctx, args),
        Command::Images(args) | Command::Image(ImageCommand::Ls(args)) => image_cmds::images(&ctx, args),
        Command::Rmi(args) | Command::Image(ImageCommand::Rm(args)) => image_cmds::rmi(&ctx, args),
        Command::Tag(args) | Command::Image(ImageCommand::Tag(args)) => image_cmds::tag(&ctx, args),
        Command::History(args) | Command::Image(ImageCommand::History(args)) => image_cmds::history(&ctx, args),
        Command::Image(ImageCommand::Inspect(args)) => image_cmds::inspect(&ctx, args),
        Command::Image(ImageCommand::Prune(args)) => image_cmds::prune(&ctx, args),
        Command::Login(args) => login_cmds::login(&ctx, args),
        Command::Logout(args) => login_cmds::logout(&ctx, args),
        Command::Save(args) => archive_cmds::save(&ctx, args),
        Command::Load(args) => archive_cmds::load(&ctx, args),
        Command::Import(args) => archive_cmds::import(&ctx, args),
        // The container's status is the command's, as with docker and podman.
        Command::Run(args) => std::process::exit(container_cmds::run(&ctx, args)?),
        Command::Start(args) => std::process::exit(container_cmds::start(&ctx, args)?),
        Command::Exec(args) => std::process::exit(inspect_cmds::exec(&ctx, args)?),
        Command::Create(args) => container_cmds::create(&ctx, args),
        Command::Stop(args) => container_cmds::stop(&ctx, args),
        Command::Restart(args) => container_cmds::restart(&ctx, args),
        Command::Kill(args) => container_cmds::kill(&ctx, args),
        Command::Wait(args) => container_cmds::wait(&ctx, args),
        Command::Pause(args) => container_cmds::pause(&ctx, args),
        Command::Unpause(args) => container_cmds::unpause(&ctx, args),
        Command::Rename(args) => container_cmds::rename(&ctx, args),
        Command::Logs(args) => logs_cmd::logs(&ctx, args),
        Command::Monitor { id } => {
            berth_engine::seal_binary()?;
            std::process::exit(container_cmds::engine(&ctx)?.monitor_main(&id))
        }
        Command::Inspect(args) => inspect_cmds::inspect(&ctx, args),
        Command::Top(args) => inspect_cmds::top(&ctx, args),
        Command::Stats(args) => inspect_cmds::stats(&ctx, args),
        Command::Cp(args) => cp_cmd::cp(&ctx, args),
        Command::Ps(args) => container_cmds::ps(&ctx, args),
        Command::Rm(args) => container_cmds::rm(&ctx, args),
        Command::Volume(cmd) => volume_cmds::volume(&ctx, cmd),
        Command::Network(cmd) => network_cmds::network(&ctx, cmd),
        Command::Port(args) => network_cmds::port(&ctx, args),
        Command::Version(args) => system_cmds::version(args),
        Command::System(cmd) => system_cmds::system(&ctx, cmd),
        Command::Info(args) => system_cmds::info(&ctx, args),
    }
}
