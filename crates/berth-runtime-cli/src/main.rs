//! berth-runtime: a runc-compatible command line over the berth-runtime library.

mod exec_cmd;
mod logging;
mod manage_cmds;

use berth_runtime::signals;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use berth_runtime::{CreateOptions, Runtime};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-runtime", version, about = "A runc-compatible OCI runtime", disable_help_subcommand = true)]
struct Cli {
    /// Root directory for container state [default: /run/berth-runtime, or
    /// $XDG_RUNTIME_DIR/berth-runtime when not root].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported yet).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    /// Path to criu (accepted for compatibility; checkpoint/restore is not supported).
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (move the root and chroot instead).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: i32,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container.
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process.
        #[arg(short, long)]
        detach: bool,
        /// Do not delete the container after it exits.
        #[arg(long)]
        keep: bool,
    },
    /// Output the state of a container.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to the container's init (default SIGTERM).
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
        /// Send the signal to every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container.
    Delete {
        /// Container id.
        id: String,
        /// Kill the container first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// List containers.
    #[command(alias = "ls")]
    List {
        /// table or json.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Create a new config.json.
    Spec {
        /// Where to write config.json (`--rootless` makes a rootless spec).
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features the runtime implements (runtime-spec features.md).
    Features,
    /// Run a process in a running container.
    Exec(exec_cmd::ExecArgs),
    /// Suspend every process of the container.
    Pause(manage_cmds::IdArgs),
    /// Resume a paused container.
    Resume(manage_cmds::IdArgs),
    /// List the processes of a container.
    Ps(manage_cmds::PsArgs),
    /// Print the container's stats and OOM events.
    Events(manage_cmds::EventsArgs),
    /// Change the resource limits of a running container.
    Update(manage_cmds::UpdateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = logging::Logger::new(cli.log.as_deref(), &cli.log_format, cli.debug);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            log.error(&e.to_string());
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    if cli.systemd_cgroup {
        return Err("--systemd-cgroup is not supported yet: use the cgroupfs driver".into());
    }
    tracing::debug!("berth-runtime: arguments parsed");
    let rootless = berth_runtime::rootless::resolve(cli.rootless.as_deref())?;
    let root = match &cli.root {
        Some(root) => root.clone(),
        // `spec` and `features` keep no state: no root needed.
        None if matches!(cli.command, Command::Spec { .. } | Command::Features) => PathBuf::new(),
        None => berth_runtime::rootless::default_root()?,
    };
    tracing::debug!(rootless, root = %root.display(), "runtime root");
    let runtime = Runtime::new(root);
    match &cli.command {
        Command::Create(a) => {
            berth_runtime::exe_seal::ensure_sealed()?;
            runtime.create(&a.id, &create_options(a, rootless))?;
        }
        Command::Start { id } => runtime.start(id)?,
        Command::Run { create, detach, keep } => {
            berth_runtime::exe_seal::ensure_sealed()?;
            return run_container(&runtime, create, *detach, *keep, rootless);
        }
        Command::State { id } => {
            let state = runtime.state(id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        Command::Kill { id, signal, all } => {
            let sig = signals::parse(signal.as_deref().unwrap_or("SIGTERM"))?;
            runtime.kill(id, sig, *all)?;
        }
        Command::Delete { id, force } => match runtime.delete(id, *force) {
            // runc: deleting a container that does not exist with --force is not an error.
            Err(berth_runtime::Error::NotFound(_)) if *force => {}
            r => r?,
        },
        Command::List { format, quiet } => list(&runtime, format, *quiet)?,
        Command::Spec { bundle } => {
            let rootless = cli.rootless.as_deref() == Some("true");
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(format!("File {} exists. Remove it first", path.display()).into());
            }
            let spec = berth_runtime::spec::default_spec(rootless);
            std::fs::write(&path, serde_json::to_string_pretty(&spec)? + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
        }
        Command::Exec(a) => {
            berth_runtime::exe_seal::ensure_sealed()?;
            return exec_cmd::exec(&runtime, a);
        }
        Command::Pause(a) => manage_cmds::pause(&runtime, a)?,
        Command::Resume(a) => manage_cmds::resume(&runtime, a)?,
        Command::Ps(a) => manage_cmds::ps(&runtime, a)?,
        Command::Events(a) => manage_cmds::events(&runtime, a)?,
        Command::Update(a) => manage_cmds::update(&runtime, a)?,
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&berth_runtime::spec::features())?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create_options(a: &CreateArgs, rootless: bool) -> CreateOptions {
    CreateOptions {
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        rootless,
        own_console: None,
    }
}

/// `run`: create, start, and unless detached wait for the init, forwarding signals, then
/// delete (unless `--keep`) and exit with the container's status.
fn run_container(
    runtime: &Runtime,
    a: &CreateArgs,
    detach: bool,
    keep: bool,
    rootless: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // In the foreground without --console-socket, a terminal is relayed by this process.
    let own_console = if !detach && a.console_socket.is_none() { Some(std::os::unix::net::UnixStream::pair()?) } else { None };
    let mut opts = create_options(a, rootless);
    opts.own_console = own_console.as_ref().map(|(_, theirs)| std::os::fd::AsRawFd::as_raw_fd(theirs));
    let pid = runtime.create(&a.id, &opts)?;
    let master = match own_console {
        Some((ours, theirs)) => {
            drop(theirs);
            // Sent before create returned, or never (then every other end is closed: EOF).
            let master = berth_runtime::console::recv_master(&ours).ok();
            if let Some(m) = &master {
                let _ = berth_runtime::tty_relay::copy_window_size(0, std::os::fd::AsFd::as_fd(m));
            }
            master
        }
        None => None,
    };
    // Blocked before start so no signal meant for the container is lost.
    let forwarder = if detach { None } else { Some(signals::Forwarder::block()?) };
    if let Err(e) = runtime.start(&a.id) {
        let _ = runtime.delete(&a.id, true);
        return Err(e.into());
    }
    let Some(forwarder) = forwarder else {
        return Ok(ExitCode::SUCCESS);
    };
    tracing::debug!("started");
    let status = match master {
        Some(m) => berth_runtime::tty_relay::relay_until_exit(m, &forwarder, pid)?,
        None => forwarder.forward_until_exit(pid)?,
    };
    tracing::debug!("exited");
    if !keep {
        runtime.delete(&a.id, true)?;
    }
    let _ = std::io::stdout().flush();
    Ok(ExitCode::from(status as u8))
}

fn list(runtime: &Runtime, format: &str, quiet: bool) -> Result<(), Box<dyn std::error::Error>> {
    let states = runtime.list()?;
    if quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    if format == "json" {
        println!("{}", serde_json::to_string(&states)?);
        return Ok(());
    }
    let mut rows = vec![["ID".to_string(), "PID".into(), "STATUS".into(), "BUNDLE".into(), "CREATED".into(), "OWNER".into()]];
    for s in states {
        rows.push([s.id, s.pid.to_string(), s.status.to_string(), s.bundle.display().to_string(), s.created, s.owner]);
    }
    let widths: Vec<usize> = (0..6).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", line.join("   ").trim_end());
    }
    Ok(())
}
