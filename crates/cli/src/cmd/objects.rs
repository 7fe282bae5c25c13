//! `berth network …`, `berth volume …` and `berth context …`: docker's subcommands and flags.

use anyhow::Result;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::json;

use super::{confirm, filters_query, prune_report, FormatArg};
use crate::client::{enc, Client};
use crate::objects;

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// Connect a container to a network
    Connect(NetConnectArgs),
    /// Create a network
    Create(NetCreateArgs),
    /// Disconnect a container from a network
    Disconnect(NetDisconnectArgs),
    /// Display detailed information on one or more networks
    Inspect(ObjInspectArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(ObjLsArgs),
    /// Remove all unused networks
    Prune(ObjPruneArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(ObjRmArgs),
}

#[derive(Args, Debug)]
pub struct NetCreateArgs {
    pub name: String,
    /// Driver to manage the Network
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Enable or disable IPv6 address assignment
    #[arg(long)]
    pub ipv6: bool,
}

#[derive(Args, Debug)]
pub struct NetConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    pub ip: Option<String>,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct NetDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    pub network: String,
    pub container: String,
}

#[derive(Args, Debug)]
pub struct ObjLsArgs {
    /// Provide filter values
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub format: FormatArg,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display IDs or names
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ObjInspectArgs {
    #[command(flatten)]
    pub format: super::InspectFormat,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ObjRmArgs {
    /// Force the removal
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ObjPruneArgs {
    /// Remove all unused volumes, not just anonymous ones (volumes only)
    #[arg(short, long)]
    pub all: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolCreateArgs),
    /// Display detailed information on one or more volumes
    Inspect(ObjInspectArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(ObjLsArgs),
    /// Remove unused local volumes
    Prune(ObjPruneArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(ObjRmArgs),
}

#[derive(Args, Debug)]
pub struct VolCreateArgs {
    pub name: Option<String>,
    /// Specify volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    /// Specify volume driver name
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// Set driver specific options
    #[arg(short, long = "opt")]
    pub opt: Vec<String>,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
}

pub async fn network(c: &Client, cmd: NetworkCmd) -> Result<i32> {
    match cmd {
        NetworkCmd::Connect(a) => {
            let mut ep = json!({"Aliases": a.alias});
            if let Some(ip) = &a.ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            let body = json!({"Container": a.container, "EndpointConfig": ep});
            c.call(Method::POST, &format!("/networks/{}/connect", enc(&a.network)), Some(&body)).await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = json!({"Container": a.container, "Force": a.force});
            c.call(Method::POST, &format!("/networks/{}/disconnect", enc(&a.network)), Some(&body)).await?;
            Ok(0)
        }
        NetworkCmd::Create(n) => {
            let nc = objects::NetworkCreate {
                name: n.name,
                driver: n.driver,
                subnet: n.subnet,
                gateway: n.gateway,
                ip_range: n.ip_range,
                internal: n.internal,
                attachable: n.attachable,
                labels: n.label,
                opts: n.opt,
                ipv6: n.ipv6,
            };
            print!("{}", objects::network_create(c, &nc).await?);
            Ok(0)
        }
        NetworkCmd::Inspect(a) => objects::inspect_each(c, "networks", &a.names, a.format.format.as_deref()).await,
        NetworkCmd::Ls(a) => {
            print!("{}", objects::network_ls(c, a.quiet, &a.filter, a.format.format.as_deref(), a.no_trunc).await?);
            Ok(0)
        }
        NetworkCmd::Prune(a) => {
            if !a.force
                && !confirm("WARNING! This will remove all custom networks not used by at least one container.")?
            {
                return Ok(0);
            }
            let v = c.call(Method::POST, &format!("/networks/prune?{}", filters_query(&a.filter)), None).await?;
            let mut v = v;
            if let Some(o) = v.as_object_mut() {
                o.remove("SpaceReclaimed");
            }
            print!("{}", prune_report(&v, "NetworksDeleted", "Deleted Networks:"));
            Ok(0)
        }
        NetworkCmd::Rm(a) => Ok(objects::remove_each(c, "networks", &a.names, false).await),
    }
}

pub async fn volume(c: &Client, cmd: VolumeCmd) -> Result<i32> {
    match cmd {
        VolumeCmd::Create(v) => {
            let name = v.name_flag.or(v.name);
            print!("{}", objects::volume_create(c, name.as_deref(), &v.driver, &v.opt, &v.label).await?);
            Ok(0)
        }
        VolumeCmd::Inspect(a) => objects::inspect_each(c, "volumes", &a.names, a.format.format.as_deref()).await,
        VolumeCmd::Ls(a) => {
            print!("{}", objects::volume_ls(c, a.quiet, &a.filter, a.format.format.as_deref()).await?);
            Ok(0)
        }
        VolumeCmd::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !confirm(warning)? {
                return Ok(0);
            }
            let mut f = a.filter.clone();
            if a.all {
                f.push("all=true".into());
            }
            let v = c.call(Method::POST, &format!("/volumes/prune?{}", filters_query(&f)), None).await?;
            print!("{}", prune_report(&v, "VolumesDeleted", "Deleted Volumes:"));
            Ok(0)
        }
        VolumeCmd::Rm(a) => Ok(objects::remove_each(c, "volumes", &a.names, a.force).await),
    }
}

#[derive(Subcommand, Debug)]
pub enum ContextCmd {
    /// Create a context
    Create {
        name: String,
        /// Endpoint, as docker: host=unix:///path|tcp://host:port|ssh://user@host,ca=,cert=,key=,skip-tls-verify=
        #[arg(long, default_value = "")]
        docker: String,
        /// Description of the context
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List contexts
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        format: FormatArg,
        /// Only show context names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Update a context
    Update {
        name: String,
        /// Endpoint, as for create (replaces the current one)
        #[arg(long)]
        docker: Option<String>,
        /// Description of the context
        #[arg(long)]
        description: Option<String>,
    },
    /// Set the current context
    Use { name: String },
    /// Remove one or more contexts
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of a context in use
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Display detailed information on one or more contexts
    Inspect {
        #[command(flatten)]
        format: super::InspectFormat,
        names: Vec<String>,
    },
    /// Print the name of the current context
    Show,
}

pub const CONTEXT_HEADERS: &[(&str, &str)] = &[
    ("Name", "NAME"),
    ("Description", "DESCRIPTION"),
    ("DockerEndpoint", "DOCKER ENDPOINT"),
    ("Current", "CURRENT"),
    ("Error", "ERROR"),
];

pub fn context(cmd: ContextCmd) -> Result<i32> {
    use crate::context;
    match cmd {
        ContextCmd::Create { name, docker, description } => {
            context::create(&name, &docker, &description)?;
            println!("{name}");
            eprintln!("Successfully created context \"{name}\"");
        }
        ContextCmd::Ls { format, quiet } => {
            let cur = context::current();
            let all = context::list()?;
            if quiet {
                all.iter().for_each(|c| println!("{}", c.name));
                return Ok(0);
            }
            let rows: Vec<serde_json::Value> = all
                .iter()
                .map(|c| {
                    let current = c.name == cur;
                    // The table marks the current context after its name; templates get the plain name.
                    json!({
                        "Name": c.name, "Description": c.description, "DockerEndpoint": c.host,
                        "Current": current, "Error": "",
                        "NameMarked": if current { format!("{} *", c.name) } else { c.name.clone() },
                    })
                })
                .collect();
            let fmt = crate::output::Format::parse(format.format.as_deref())?;
            let default = "table {{.NameMarked}}\\t{{.Description}}\\t{{.DockerEndpoint}}";
            let mut headers = CONTEXT_HEADERS.to_vec();
            headers.push(("NameMarked", "NAME"));
            print!("{}", fmt.render(&rows, &headers, default)?);
        }
        ContextCmd::Update { name, docker, description } => {
            context::update(&name, docker.as_deref(), description.as_deref())?;
            println!("{name}");
            eprintln!("Successfully updated context \"{name}\"");
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
        ContextCmd::Inspect { format, names } => {
            let names = if names.is_empty() { vec![context::current()] } else { names };
            let mut out = Vec::new();
            for n in names {
                out.push(context::inspect_json(&context::get(&n)?));
            }
            super::print_inspect(&out, format.format.as_deref())?;
        }
        ContextCmd::Show => println!("{}", context::current()),
    }
    Ok(0)
}
