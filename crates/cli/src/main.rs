//! berth: a docker-compatible command line for berthd (and any Docker Engine).

use anyhow::Result;
use berth_cli::client::{enc, ApiError, Client};
use berth_cli::commands::{self, RunOptions};
use berth_cli::registry;
use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::Value;

#[derive(Parser)]
#[command(name = "berth", version, about = "A docker-compatible client for the Berth engine")]
struct Cli {
    /// Daemon socket to connect to (default: $BERTH_HOST, $DOCKER_HOST, unix:///run/berth/berth.sock)
    #[arg(short = 'H', long = "host", global = true)]
    host: Option<String>,
    /// Name of the context to use (default: $BERTH_CONTEXT, $DOCKER_CONTEXT, the current context)
    #[arg(long = "context", global = true)]
    context: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show the client and server versions
    Version,
    /// Display system-wide information
    Info,
    /// Import a rootfs tarball to create an image
    Import {
        file: String,
        reference: Option<String>,
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        #[arg(short = 'm', long = "message", default_value = "")]
        message: String,
    },
    /// List images
    Images {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove one or more images
    Rmi {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run {
        /// Print help (`-h` is --hostname, as in docker)
        #[arg(long, action = clap::ArgAction::Help)]
        help: Option<bool>,
        #[arg(short, long)]
        detach: bool,
        #[arg(long)]
        rm: bool,
        #[arg(short, long)]
        interactive: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(short, long = "env")]
        env: Vec<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(short, long)]
        user: Option<String>,
        #[arg(short = 'h', long)]
        hostname: Option<String>,
        #[arg(long)]
        entrypoint: Option<String>,
        #[arg(short, long = "label")]
        label: Vec<String>,
        #[arg(long)]
        network: Option<String>,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// List containers
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        #[arg(short = 'n', long)]
        last: Option<i64>,
    },
    /// Fetch the logs of a container
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(short, long)]
        timestamps: bool,
        #[arg(short = 'n', long, default_value = "all")]
        tail: String,
        #[arg(long)]
        since: Option<String>,
        container: String,
    },
    /// Start one or more stopped containers
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop one or more running containers
    Stop {
        #[arg(short, long)]
        time: Option<i64>,
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Kill one or more running containers
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove one or more containers
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Download an image from a registry
    Pull {
        #[arg(short, long = "all-tags")]
        all_tags: bool,
        #[arg(long)]
        platform: Option<String>,
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
    /// Upload an image to a registry
    Push {
        #[arg(short, long = "all-tags")]
        all_tags: bool,
        #[arg(short, long)]
        quiet: bool,
        image: String,
    },
    /// Manage contexts (named daemons), shared with the docker CLI's
    #[command(subcommand)]
    Context(ContextCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Build an image from a Dockerfile
    Build {
        #[arg(short = 't', long = "tag")]
        tag: Vec<String>,
        #[arg(short = 'f', long = "file")]
        file: Option<String>,
        #[arg(long = "build-arg")]
        build_arg: Vec<String>,
        #[arg(long = "label")]
        label: Vec<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long = "no-cache")]
        no_cache: bool,
        #[arg(long)]
        pull: bool,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        rm: bool,
        #[arg(long = "force-rm")]
        force_rm: bool,
        #[arg(long)]
        network: Option<String>,
        #[arg(long = "add-host")]
        add_host: Vec<String>,
        #[arg(long = "cache-from")]
        cache_from: Vec<String>,
        #[arg(long)]
        platform: Option<String>,
        /// The build context folder (its id must not clash with the global --context)
        #[arg(value_name = "PATH")]
        path: String,
    },
    /// Log in to a registry (the daemon checks the credentials)
    Login {
        #[arg(short, long)]
        username: Option<String>,
        #[arg(short, long)]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        server: Option<String>,
    },
    /// Log out from a registry
    Logout { server: Option<String> },
    /// Create a tag TARGET that refers to SOURCE
    Tag { source: String, target: String },
    /// Return low-level information on a container or image
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network
    Create {
        name: String,
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        #[arg(long)]
        subnet: Vec<String>,
        #[arg(long)]
        gateway: Vec<String>,
        #[arg(long = "ip-range")]
        ip_range: Vec<String>,
        #[arg(long)]
        internal: bool,
        #[arg(long)]
        attachable: bool,
        #[arg(long)]
        label: Vec<String>,
        #[arg(short, long = "opt")]
        opt: Vec<String>,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more networks
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum VolumeCmd {
    /// Create a volume
    Create {
        name: Option<String>,
        #[arg(long = "name")]
        name_flag: Option<String>,
        #[arg(short, long, default_value = "local")]
        driver: String,
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        #[arg(long)]
        label: Vec<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ContextCmd {
    /// Create a context
    Create {
        name: String,
        /// Endpoint, as docker: host=unix:///path or host=tcp://host:port
        #[arg(long, default_value = "")]
        docker: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List contexts
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Set the current context
    Use { name: String },
    /// Remove one or more contexts
    #[command(alias = "remove")]
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more contexts
    Inspect { names: Vec<String> },
    /// Print the name of the current context
    Show,
}

fn context_cmd(cmd: ContextCmd) -> Result<i32> {
    use berth_cli::context;
    match cmd {
        ContextCmd::Create { name, docker, description } => {
            context::create(&name, &docker, &description)?;
            println!("{name}");
            eprintln!("Successfully created context \"{name}\"");
        }
        ContextCmd::Ls { quiet } => {
            let cur = context::current();
            let all = context::list()?;
            if quiet {
                all.iter().for_each(|c| println!("{}", c.name));
                return Ok(0);
            }
            let rows: Vec<[String; 3]> = all
                .iter()
                .map(|c| {
                    let name = if c.name == cur { format!("{} *", c.name) } else { c.name.clone() };
                    [name, c.description.clone(), c.host.clone()]
                })
                .collect();
            let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(4) + 3;
            let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(11) + 3;
            println!("{:w0$}{:w1$}DOCKER ENDPOINT", "NAME", "DESCRIPTION");
            for r in rows {
                println!("{:w0$}{:w1$}{}", r[0], r[1], r[2]);
            }
        }
        ContextCmd::Use { name } => {
            context::use_ctx(&name)?;
            println!("{name}");
            eprintln!("Current context is now \"{name}\"");
        }
        ContextCmd::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                match context::remove(&n, force) {
                    Ok(()) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 1;
                    }
                }
            }
            return Ok(code);
        }
        ContextCmd::Inspect { names } => {
            let names = if names.is_empty() { vec![context::current()] } else { names };
            let mut out = Vec::new();
            for n in names {
                out.push(context::inspect_json(&context::get(&n)?));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ContextCmd::Show => println!("{}", context::current()),
    }
    Ok(0)
}

fn main() {
    let cli = Cli::parse();
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

/// Runs `f` on each name like docker: print the name on success, the error on failure, exit 1 if any failed.
async fn each<F, Fut>(names: &[String], f: F) -> i32
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut code = 0;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e:#}");
                code = 1;
            }
        }
    }
    code
}

async fn run(cli: Cli) -> Result<i32> {
    if let Cmd::Context(cmd) = cli.cmd {
        return context_cmd(cmd);
    }
    let c = Client::new(&berth_cli::context::resolve_host(cli.host.as_deref(), cli.context.as_deref())?)?;
    match cli.cmd {
        Cmd::Context(_) => unreachable!("handled before connecting"),
        Cmd::Network(n) => {
            use berth_cli::objects;
            match n {
                NetworkCmd::Create { name, driver, subnet, gateway, ip_range, internal, attachable, label, opt } => {
                    let nc = objects::NetworkCreate {
                        name,
                        driver,
                        subnet,
                        gateway,
                        ip_range,
                        internal,
                        attachable,
                        labels: label,
                        opts: opt,
                    };
                    print!("{}", objects::network_create(&c, &nc).await?);
                    Ok(0)
                }
                NetworkCmd::Ls { quiet } => {
                    print!("{}", objects::network_ls(&c, quiet).await?);
                    Ok(0)
                }
                NetworkCmd::Rm { names } => Ok(objects::remove_each(&c, "networks", &names, false).await),
                NetworkCmd::Inspect { names } => {
                    let (s, code) = objects::inspect_each(&c, "networks", &names).await?;
                    print!("{s}");
                    Ok(code)
                }
            }
        }
        Cmd::Volume(v) => {
            use berth_cli::objects;
            match v {
                VolumeCmd::Create { name, name_flag, driver, opt, label } => {
                    let name = name_flag.or(name);
                    print!("{}", objects::volume_create(&c, name.as_deref(), &driver, &opt, &label).await?);
                    Ok(0)
                }
                VolumeCmd::Ls { quiet } => {
                    print!("{}", objects::volume_ls(&c, quiet).await?);
                    Ok(0)
                }
                VolumeCmd::Rm { force, names } => Ok(objects::remove_each(&c, "volumes", &names, force).await),
                VolumeCmd::Inspect { names } => {
                    let (s, code) = objects::inspect_each(&c, "volumes", &names).await?;
                    print!("{s}");
                    Ok(code)
                }
            }
        }
        Cmd::Version => {
            let v: Value = c.get("/version").await?;
            println!("Client:\n Version:    {}\n API version: {}", env!("CARGO_PKG_VERSION"), berth_api::API_VERSION);
            println!("\nServer: {}", v["Platform"]["Name"].as_str().unwrap_or(""));
            println!(" Engine:\n  Version:    {}\n  API version: {} (minimum version {})\n  OS/Arch:    {}/{}\n  Kernel:     {}",
                v["Version"].as_str().unwrap_or(""), v["ApiVersion"].as_str().unwrap_or(""), v["MinAPIVersion"].as_str().unwrap_or(""),
                v["Os"].as_str().unwrap_or(""), v["Arch"].as_str().unwrap_or(""), v["KernelVersion"].as_str().unwrap_or(""));
            Ok(0)
        }
        Cmd::Info => {
            let i: Value = c.get("/info").await?;
            println!("Server:");
            println!(
                " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}",
                i["Containers"], i["ContainersRunning"], i["ContainersPaused"], i["ContainersStopped"]
            );
            println!(
                " Images: {}\n Server Version: {}\n Storage Driver: {}",
                i["Images"],
                i["ServerVersion"].as_str().unwrap_or(""),
                i["Driver"].as_str().unwrap_or("")
            );
            println!(
                " Cgroup Driver: {}\n Cgroup Version: {}",
                i["CgroupDriver"].as_str().unwrap_or(""),
                i["CgroupVersion"].as_str().unwrap_or("")
            );
            println!(
                " Kernel Version: {}\n Operating System: {}\n CPUs: {}\n Total Memory: {}\n Docker Root Dir: {}",
                i["KernelVersion"].as_str().unwrap_or(""),
                i["OperatingSystem"].as_str().unwrap_or(""),
                i["NCPU"],
                commands::human_size(i["MemTotal"].as_f64().unwrap_or(0.0)),
                i["DockerRootDir"].as_str().unwrap_or("")
            );
            Ok(0)
        }
        Cmd::Import { file, reference, change, message } => {
            print!("{}", commands::import(&c, &file, reference.as_deref(), &change, &message).await?);
            Ok(0)
        }
        Cmd::Images { all, quiet } => {
            print!("{}", commands::images(&c, all, quiet).await?);
            Ok(0)
        }
        Cmd::Rmi { force, images } => {
            let mut code = 0;
            for i in images {
                match c.call(Method::DELETE, &format!("/images/{i}?force={}", force as u8), None).await {
                    Ok(Value::Array(items)) => {
                        for it in items {
                            if let Some(t) = it["Untagged"].as_str() {
                                println!("Untagged: {t}");
                            }
                            if let Some(d) = it["Deleted"].as_str() {
                                println!("Deleted: {d}");
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{e:#}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Run {
            help: _,
            detach,
            rm,
            interactive,
            name,
            env,
            workdir,
            user,
            hostname,
            entrypoint,
            label,
            network,
            image,
            cmd,
        } => {
            let o = RunOptions {
                image,
                cmd,
                name,
                detach,
                rm,
                interactive,
                env,
                workdir,
                user,
                hostname,
                entrypoint,
                labels: label,
                network,
            };
            match commands::run(&c, o).await {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("berth: {e:#}");
                    Ok(125)
                }
            }
        }
        Cmd::Ps { all, quiet, filter, last } => {
            print!("{}", commands::ps(&c, all, quiet, &filter, last).await?);
            Ok(0)
        }
        Cmd::Logs { follow, timestamps, tail, since, container } => {
            commands::logs(&c, &container, follow, timestamps, &tail, since.as_deref()).await?;
            Ok(0)
        }
        Cmd::Start { containers } => Ok(each(&containers, |n| {
            let c = c.clone();
            async move { c.call(Method::POST, &format!("/containers/{}/start", enc(&n)), None).await.map(|_| ()) }
        })
        .await),
        Cmd::Stop { time, signal, containers } => Ok(each(&containers, |n| {
            let c = c.clone();
            let mut q = String::new();
            if let Some(t) = time {
                q.push_str(&format!("t={t}&"));
            }
            if let Some(s) = &signal {
                q.push_str(&format!("signal={}", enc(s)));
            }
            async move { c.call(Method::POST, &format!("/containers/{}/stop?{q}", enc(&n)), None).await.map(|_| ()) }
        })
        .await),
        Cmd::Kill { signal, containers } => {
            Ok(each(&containers, |n| {
                let c = c.clone();
                let s = enc(&signal);
                async move {
                    c.call(Method::POST, &format!("/containers/{}/kill?signal={s}", enc(&n)), None).await.map(|_| ())
                }
            })
            .await)
        }
        Cmd::Rm { force, containers } => Ok(each(&containers, |n| {
            let c = c.clone();
            async move {
                c.call(Method::DELETE, &format!("/containers/{}?force={}", enc(&n), force as u8), None)
                    .await
                    .map(|_| ())
            }
        })
        .await),
        Cmd::Build {
            tag,
            file,
            build_arg,
            label,
            target,
            no_cache,
            pull,
            quiet,
            rm,
            force_rm,
            network,
            add_host,
            cache_from,
            platform,
            path,
        } => {
            let a = berth_cli::build::BuildArgs {
                context: path,
                tags: tag,
                file,
                build_args: build_arg,
                labels: label,
                target,
                no_cache,
                pull,
                quiet,
                rm,
                force_rm,
                network,
                add_hosts: add_host,
                cache_from,
                platform,
            };
            berth_cli::build::build(&c, &a).await
        }
        Cmd::Pull { all_tags, platform, quiet, image } => {
            registry::pull(&c, &image, all_tags, platform.as_deref(), quiet).await?;
            Ok(0)
        }
        Cmd::Push { all_tags, quiet, image } => {
            registry::push(&c, &image, all_tags, quiet).await?;
            Ok(0)
        }
        Cmd::Login { username, password, password_stdin, server } => {
            let user = match username {
                Some(u) => u,
                None => anyhow::bail!("Error: cannot perform an interactive login without a terminal: use -u"),
            };
            let password = match (password, password_stdin) {
                (Some(p), false) => p,
                (None, true) => {
                    let mut p = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut p)?;
                    p.trim_end_matches(['\n', '\r']).to_string()
                }
                (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
                (None, false) => anyhow::bail!("Error: a password is required: use -p or --password-stdin"),
            };
            registry::login(&c, server.as_deref(), &user, &password).await?;
            Ok(0)
        }
        Cmd::Logout { server } => {
            registry::logout(server.as_deref())?;
            Ok(0)
        }
        Cmd::Tag { source, target } => {
            let (repo, tag) = match target.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                Some((r, t)) => (r.to_string(), t.to_string()),
                None => (target.clone(), "latest".to_string()),
            };
            c.call(Method::POST, &format!("/images/{source}/tag?repo={}&tag={}", enc(&repo), enc(&tag)), None).await?;
            Ok(0)
        }
        Cmd::Inspect { names } => {
            let mut out = Vec::new();
            let mut code = 0;
            for n in names {
                match c.get::<Value>(&format!("/containers/{}/json", enc(&n))).await {
                    Ok(v) => out.push(v),
                    Err(_) => match c.get::<Value>(&format!("/images/{n}/json")).await {
                        Ok(v) => out.push(v),
                        Err(_) => {
                            eprintln!("Error: No such object: {n}");
                            code = 1;
                        }
                    },
                }
            }
            println!("{}", serde_json::to_string_pretty(&Value::Array(out))?);
            Ok(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
