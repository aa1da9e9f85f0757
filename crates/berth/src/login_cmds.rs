//! `login` and `logout`: credentials checked against the registry, then kept in an auth file.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use berth_image::login;
use berth_image::registry::Credentials;
use clap::Args;

use crate::context::Context;

/// `berth login`
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// Use docker's ~/.docker/config.json instead of $XDG_RUNTIME_DIR/containers/auth.json.
    #[arg(long)]
    docker_config: bool,
    /// Auth file to write (overrides the defaults).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry (host[:port]).
    registry: String,
}

/// `berth logout`
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Use docker's ~/.docker/config.json.
    #[arg(long)]
    docker_config: bool,
    /// Auth file to edit (overrides the defaults).
    #[arg(long, value_name = "FILE")]
    authfile: Option<PathBuf>,
    /// The registry (host[:port]).
    registry: String,
}

fn auth_file(explicit: Option<PathBuf>, docker_config: bool) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(f) => Ok(f),
        None => Ok(login::auth_file(docker_config)?),
    }
}

/// `login`
pub fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<()> {
    let Some(username) = args.username.filter(|u| !u.is_empty()) else {
        bail!("login to {}: a user name is required (-u)", args.registry);
    };
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("read the password from stdin")?;
            text.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("login to {}: a password is required (-p or --password-stdin)", args.registry),
    };
    if password.is_empty() {
        bail!("login to {}: the password is empty", args.registry);
    }
    let file = auth_file(args.authfile, args.docker_config)?;
    let conf = ctx.registries()?;
    login::login(&args.registry, &Credentials::new(username, password), &conf.registry_config(), &file)?;
    println!("Login Succeeded!");
    Ok(())
}

/// `logout`
pub fn logout(_ctx: &Context, args: LogoutArgs) -> anyhow::Result<()> {
    let file = auth_file(args.authfile, args.docker_config)?;
    if !login::logout(&args.registry, &file)? {
        bail!("not logged into {} (no entry in {})", args.registry, file.display());
    }
    println!("Removed login credentials for {}", args.registry);
    Ok(())
}
