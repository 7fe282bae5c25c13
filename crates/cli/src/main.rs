//! berth: a docker-compatible command line for berthd (and any Docker Engine).

use std::path::PathBuf;

use anyhow::Result;
use berth_cli::client::{ApiError, Client};
use berth_cli::cmd::container::{self, ContainerCmd};
use berth_cli::cmd::image::{self, ImageCmd};
use berth_cli::cmd::objects::{self, ContextCmd, NetworkCmd, VolumeCmd};
use berth_cli::cmd::system::{self, InspectAnyArgs, SystemCmd, VersionArgs};
use berth_cli::cmd::FormatArg;
use berth_cli::{context, registry};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A docker-compatible client for the Berth engine",
    disable_help_subcommand = true
)]
struct Cli {
    /// Daemon socket to connect to (default: $BERTH_HOST, $DOCKER_HOST, the context's, unix:///run/berth/berth.sock)
    #[arg(short = 'H', long = "host")]
    host: Option<String>,
    /// Name of the context to use (default: $BERTH_CONTEXT, $DOCKER_CONTEXT, the current context)
    #[arg(short = 'c', long = "context")]
    context: Option<String>,
    /// Use TLS; implied by --tlsverify
    #[arg(long)]
    tls: bool,
    /// Use TLS and verify the remote
    #[arg(long)]
    tlsverify: bool,
    /// Trust certs signed only by this CA
    #[arg(long)]
    tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file
    #[arg(long)]
    tlscert: Option<PathBuf>,
    /// Path to TLS key file
    #[arg(long)]
    tlskey: Option<PathBuf>,
    /// Location of client config files
    #[arg(long)]
    config: Option<PathBuf>,
    /// Set the logging level (accepted for compatibility)
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Enable debug mode (accepted for compatibility)
    #[arg(short = 'D', long)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    // Management commands.
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage contexts (named daemons), shared with the docker CLI's
    #[command(subcommand)]
    Context(ContextCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage Docker
    #[command(subcommand)]
    System(SystemCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage builds
    #[command(subcommand)]
    Builder(BuilderCmd),

    // Common commands: the docker shortcuts.
    Run(berth_cli::cmd::run::RunArgs),
    Exec(berth_cli::cmd::run::ExecArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Build an image from a Dockerfile
    Build(berth_cli::build::BuildArgs),
    /// Download an image from a registry
    Pull(image::PullArgs),
    /// Upload an image to a registry
    Push(image::PushArgs),
    /// List images
    Images(image::ImagesArgs),
    /// Log in to a registry (the daemon checks the credentials)
    Login(LoginArgs),
    /// Log out from a registry
    Logout {
        server: Option<String>,
    },
    /// Show the Docker version information
    Version(VersionArgs),
    /// Display system-wide information
    Info(FormatArg),

    // The remaining shortcuts.
    Attach(berth_cli::cmd::run::AttachArgs),
    /// Create a new image from a container's changes
    Commit(container::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(container::CpArgs),
    Create(berth_cli::cmd::run::CreateArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(container::OneContainer),
    /// Get real time events from the server
    Events(system::EventsArgs),
    /// Export a container's filesystem as a tar archive
    Export(container::ExportArgs),
    /// Show the history of an image
    History(image::HistoryArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(image::ImportArgs),
    /// Return low-level information on Docker objects
    Inspect(InspectAnyArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Load an image from a tar archive or STDIN
    Load(image::LoadArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Pause all processes within one or more containers
    Pause(container::Containers),
    /// List port mappings or a specific mapping for the container
    Port(container::PortArgs),
    /// Rename a container
    Rename(container::RenameArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(image::SaveArgs),
    /// Start one or more stopped containers
    Start(berth_cli::cmd::run::StartArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(container::StatsArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(image::TagArgs),
    /// Display the running processes of a container
    Top(container::TopArgs),
    /// Unpause all processes within one or more containers
    Unpause(container::Containers),
    /// Update configuration of one or more containers
    Update(container::UpdateArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::Containers),
    /// Generate the shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        shell: clap_complete::Shell,
    },
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum BuilderCmd {
    /// Build an image from a Dockerfile
    Build(berth_cli::build::BuildArgs),
    /// Remove build cache
    Prune {
        /// Remove all unused build cache, not just dangling ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(clap::Args)]
struct LoginArgs {
    /// Username
    #[arg(short, long)]
    username: Option<String>,
    /// Password
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    server: Option<String>,
}

/// Prints a command-line error as the docker CLI does and returns its exit code: 125 for a bad
/// flag or value, 1 for a missing argument or an unknown command.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let args: Vec<String> = std::env::args().collect();
    let path = command_path(&args);
    let usage = match e.get(ContextKind::Usage) {
        Some(ContextValue::StyledStr(s)) => s.to_string().replacen("Usage: ", "Usage:  ", 1),
        _ => format!("Usage:  {path} [OPTIONS]"),
    };
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            0
        }
        ErrorKind::InvalidSubcommand => {
            let bad = match e.get(ContextKind::InvalidSubcommand) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            eprintln!("berth: unknown command: {path} {bad}\n\nRun '{path} --help' for more information");
            1
        }
        ErrorKind::MissingRequiredArgument | ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues => {
            eprintln!(
                "berth: '{path}' requires at least 1 argument\n\n{usage}\n\nSee '{path} --help' for more information"
            );
            1
        }
        ErrorKind::UnknownArgument => {
            let flag = arg.split_once('=').map(|(f, _)| f.to_string()).unwrap_or(arg);
            let flag = if flag.starts_with('-') { flag } else { format!("--{flag}") };
            eprintln!("unknown flag: {flag}\n\n{usage}\n\nRun '{path} --help' for more information");
            125
        }
        _ => {
            let msg = e.render().to_string();
            let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            eprintln!("{first}\n\n{usage}\n\nRun '{path} --help' for more information");
            125
        }
    }
}

/// `berth container ls` from argv: the subcommand names, skipping flags and their values.
fn command_path(args: &[String]) -> String {
    let mut cmd = Cli::command();
    let mut path = vec!["berth".to_string()];
    let mut it = args.iter().skip(1);
    let takes_value =
        ["-H", "--host", "-c", "--context", "--tlscacert", "--tlscert", "--tlskey", "--config", "-l", "--log-level"];
    while let Some(a) = it.next() {
        if a.starts_with('-') {
            if takes_value.contains(&a.as_str()) {
                it.next();
            }
            continue;
        }
        match cmd.find_subcommand(a) {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                cmd = sub.clone();
            }
            None => break,
        }
    }
    path.join(" ")
}

fn main() {
    // `--print-manpage` (for packaging): the man page, generated from these very flags.
    if std::env::args().nth(1).as_deref() == Some("--print-manpage") {
        let _ = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout());
        return;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => std::process::exit(usage_error(e)),
    };
    if let Some(dir) = &cli.config {
        std::env::set_var("BERTH_CONFIG", dir);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let code = rt.block_on(async {
        match run(cli).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("{e:#}");
                if e.downcast_ref::<ApiError>().is_some() {
                    1
                } else {
                    125
                }
            }
        }
    });
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<i32> {
    let tls = context::TlsFlags {
        tls: cli.tls,
        verify: cli.tlsverify,
        ca: cli.tlscacert.clone(),
        cert: cli.tlscert.clone(),
        key: cli.tlskey.clone(),
    };
    let ctx_name = cli.context.clone().unwrap_or_else(context::current);
    let endpoint = || context::resolve(cli.host.as_deref(), cli.context.as_deref(), &tls);
    let cmd = match cli.cmd {
        Cmd::Context(cmd) => return objects::context(cmd),
        Cmd::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            return Ok(0);
        }
        Cmd::Logout { server } => {
            registry::logout(server.as_deref())?;
            return Ok(0);
        }
        Cmd::System(SystemCmd::DialStdio) => {
            berth_cli::transport::dial_stdio(&endpoint()?).await?;
            return Ok(0);
        }
        other => other,
    };
    let c = Client::connect_to(&endpoint()?)?;
    match cmd {
        Cmd::Container(cmd) => container::run(&c, cmd).await,
        Cmd::Image(cmd) => image::run(&c, cmd).await,
        Cmd::Network(cmd) => objects::network(&c, cmd).await,
        Cmd::Volume(cmd) => objects::volume(&c, cmd).await,
        Cmd::System(cmd) => system::run(&c, cmd, &ctx_name).await,
        Cmd::Builder(BuilderCmd::Build(a)) => image::run(&c, ImageCmd::Build(a)).await,
        Cmd::Builder(BuilderCmd::Prune { all, force }) => {
            if !force && !berth_cli::cmd::confirm("WARNING! This will remove all dangling build cache.")? {
                return Ok(0);
            }
            let v = c.call(hyper::Method::POST, &format!("/build/prune?all={}", all as u8), None).await?;
            print!("{}", berth_cli::cmd::prune_report(&v, "CachesDeleted", "Deleted build cache objects:"));
            Ok(0)
        }
        Cmd::Run(a) => container::run(&c, ContainerCmd::Run(a)).await,
        Cmd::Exec(a) => container::run(&c, ContainerCmd::Exec(a)).await,
        Cmd::Ps(a) => container::run(&c, ContainerCmd::Ls(a)).await,
        Cmd::Build(a) => image::run(&c, ImageCmd::Build(a)).await,
        Cmd::Pull(a) => image::run(&c, ImageCmd::Pull(a)).await,
        Cmd::Push(a) => image::run(&c, ImageCmd::Push(a)).await,
        Cmd::Images(a) => image::run(&c, ImageCmd::Ls(a)).await,
        Cmd::Login(a) => login(&c, a).await,
        Cmd::Version(a) => system::version(&c, a, &ctx_name).await,
        Cmd::Info(f) => system::run(&c, SystemCmd::Info(f), &ctx_name).await,
        Cmd::Attach(a) => container::run(&c, ContainerCmd::Attach(a)).await,
        Cmd::Commit(a) => container::run(&c, ContainerCmd::Commit(a)).await,
        Cmd::Cp(a) => container::run(&c, ContainerCmd::Cp(a)).await,
        Cmd::Create(a) => container::run(&c, ContainerCmd::Create(a)).await,
        Cmd::Diff(a) => container::run(&c, ContainerCmd::Diff(a)).await,
        Cmd::Events(a) => system::run(&c, SystemCmd::Events(a), &ctx_name).await,
        Cmd::Export(a) => container::run(&c, ContainerCmd::Export(a)).await,
        Cmd::History(a) => image::run(&c, ImageCmd::History(a)).await,
        Cmd::Import(a) => image::run(&c, ImageCmd::Import(a)).await,
        Cmd::Inspect(a) => system::inspect_any(&c, a).await,
        Cmd::Kill(a) => container::run(&c, ContainerCmd::Kill(a)).await,
        Cmd::Load(a) => image::run(&c, ImageCmd::Load(a)).await,
        Cmd::Logs(a) => container::run(&c, ContainerCmd::Logs(a)).await,
        Cmd::Pause(a) => container::run(&c, ContainerCmd::Pause(a)).await,
        Cmd::Port(a) => container::run(&c, ContainerCmd::Port(a)).await,
        Cmd::Rename(a) => container::run(&c, ContainerCmd::Rename(a)).await,
        Cmd::Restart(a) => container::run(&c, ContainerCmd::Restart(a)).await,
        Cmd::Rm(a) => container::run(&c, ContainerCmd::Rm(a)).await,
        Cmd::Rmi(a) => image::run(&c, ImageCmd::Rm(a)).await,
        Cmd::Save(a) => image::run(&c, ImageCmd::Save(a)).await,
        Cmd::Start(a) => container::run(&c, ContainerCmd::Start(a)).await,
        Cmd::Stats(a) => container::run(&c, ContainerCmd::Stats(a)).await,
        Cmd::Stop(a) => container::run(&c, ContainerCmd::Stop(a)).await,
        Cmd::Tag(a) => image::run(&c, ImageCmd::Tag(a)).await,
        Cmd::Top(a) => container::run(&c, ContainerCmd::Top(a)).await,
        Cmd::Unpause(a) => container::run(&c, ContainerCmd::Unpause(a)).await,
        Cmd::Update(a) => container::run(&c, ContainerCmd::Update(a)).await,
        Cmd::Wait(a) => container::run(&c, ContainerCmd::Wait(a)).await,
        Cmd::Context(_) | Cmd::Completion { .. } | Cmd::Logout { .. } => unreachable!("handled before connecting"),
    }
}

async fn login(c: &Client, a: LoginArgs) -> Result<i32> {
    let tty = berth_cli::tty::stdin_is_tty();
    let user = match a.username {
        Some(u) => u,
        None if tty && !a.password_stdin => berth_cli::tty::prompt_line("Username: ", false)?,
        None => anyhow::bail!("Error: Cannot perform an interactive login from a non TTY device"),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(p), false) => p,
        (None, false) if tty => berth_cli::tty::prompt_line("Password: ", true)?,
        (None, true) => {
            let mut p = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)?;
            p.trim_end_matches(['\n', '\r']).to_string()
        }
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (None, false) => anyhow::bail!("Error: Cannot perform an interactive login from a non TTY device"),
    };
    registry::login(c, a.server.as_deref(), &user, &password).await?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn management_forms_and_shortcuts_parse_alike() {
        for argv in [
            vec!["berth", "container", "ls", "-a"],
            vec!["berth", "container", "ps", "-a"],
            vec!["berth", "ps", "-a"],
            vec!["berth", "image", "rm", "x"],
            vec!["berth", "image", "rmi", "x"],
            vec!["berth", "run", "-it", "--rm", "-h", "host", "busybox", "sh", "-c", "echo -n"],
            vec!["berth", "-H", "unix:///x", "exec", "-it", "c", "ls", "-l"],
        ] {
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
    }
}
