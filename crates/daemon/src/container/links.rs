//! Legacy container links (`--link name:alias`, `HostConfig.Links`, compose `links:`), as Docker
//! keeps them.
//!
//! On the default bridge a link gives the linking container an /etc/hosts line for the target
//! (alias, hostname and name) and the `ALIAS_NAME`, `ALIAS_PORT_*` and `ALIAS_ENV_*` variables;
//! the target must run when the linking container starts, and a restarted target's new address
//! reaches its linkers' /etc/hosts. On user-defined networks links are endpoint `Links`: the alias
//! resolves, from the linking container only, through the embedded DNS. Stored as Docker shows
//! them: `/target:/container/alias`.

use berth_api::container::HostConfig;
use berth_types::{Error, Result};

use super::record::ContainerRecord;
use super::ContainerService;

/// One link: the target container's name and the alias it has in the linking container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    pub target: String,
    pub alias: String,
}

/// `db`, `db:alias`, or the stored `/db:/web/alias`.
pub(super) fn parse(s: &str) -> Result<Link> {
    let (t, a) = s.split_once(':').unwrap_or((s, s));
    let target = t.trim_start_matches('/');
    let alias = a.rsplit('/').next().unwrap_or(a);
    if target.is_empty() || alias.is_empty() {
        return Err(Error::invalid(format!("invalid link {s:?}: use NAME or NAME:ALIAS")));
    }
    Ok(Link { target: target.to_string(), alias: alias.to_string() })
}

/// A container's links (`HostConfig.Links`), as stored.
pub(super) fn of(hc: &HostConfig) -> Vec<Link> {
    hc.link_list().iter().filter_map(|s| parse(s).ok()).collect()
}

fn upper(alias: &str) -> String {
    alias.to_ascii_uppercase().replace('-', "_")
}

/// Docker's link variables for one target at `ip`: `ALIAS_PORT` (its lowest port),
/// `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]` (runs of three or more consecutive ports as
/// `_START`/`_END`), `ALIAS_NAME`, and `ALIAS_ENV_<var>` for its environment but HOME and PATH.
pub(super) fn env_for(link_name: &str, alias: &str, ip: &str, target: &berth_api::container::Config) -> Vec<String> {
    let a = upper(alias);
    let mut ports: Vec<(u16, String)> = target
        .exposed_ports
        .iter()
        .flat_map(|m| m.keys())
        .filter_map(|k| {
            let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            Some((p.parse().ok()?, proto.to_string()))
        })
        .collect();
    ports.sort_by(|x, y| x.0.cmp(&y.0).then_with(|| (x.1 != "tcp").cmp(&(y.1 != "tcp"))));
    let mut env = Vec::new();
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{a}_PORT={proto}://{ip}:{p}"));
    }
    let mut i = 0;
    while i < ports.len() {
        let (p, proto) = &ports[i];
        let mut j = i;
        while j + 1 < ports.len() && ports[j + 1].0 == ports[j].0 + 1 && ports[j + 1].1 == *proto {
            j += 1;
        }
        let key = format!("{a}_PORT_{p}_{}", proto.to_ascii_uppercase());
        if j >= i + 2 {
            let (q, qproto) = &ports[j];
            env.push(format!("{key}_START={proto}://{ip}:{p}"));
            env.push(format!("{key}_ADDR={ip}"));
            env.push(format!("{key}_PROTO={proto}"));
            env.push(format!("{key}_PORT_START={p}"));
            env.push(format!("{key}_END={qproto}://{ip}:{q}"));
            env.push(format!("{key}_PORT_END={q}"));
            i = j + 1;
            continue;
        }
        env.push(format!("{key}={proto}://{ip}:{p}"));
        env.push(format!("{key}_ADDR={ip}"));
        env.push(format!("{key}_PORT={p}"));
        env.push(format!("{key}_PROTO={proto}"));
        i += 1;
    }
    env.push(format!("{a}_NAME={link_name}"));
    for v in &target.env {
        if let Some((k, val)) = v.split_once('=') {
            if k != "HOME" && k != "PATH" {
                env.push(format!("{a}_ENV_{k}={val}"));
            }
        }
    }
    env
}

/// `base` with `over` laid on it: a variable of `over` replaces the one of the same name.
pub(super) fn overlay_env(base: Vec<String>, over: &[String]) -> Vec<String> {
    let key = |v: &str| v.split_once('=').map(|x| x.0).unwrap_or(v).to_string();
    let mut out = base;
    for v in over {
        match out.iter().position(|o| key(o) == key(v)) {
            Some(i) => out[i] = v.clone(),
            None => out.push(v.clone()),
        }
    }
    out
}

fn bridge_ip(r: &ContainerRecord) -> Option<std::net::Ipv4Addr> {
    r.endpoints.iter().find(|e| e.network_name == "bridge").and_then(|e| e.ip)
}

impl ContainerService {
    /// At create: checks and stores `HostConfig.Links` as Docker shows them. Links need a network
    /// namespace of the container's own; their targets must exist.
    pub(super) fn check_links(&self, hc: &mut HostConfig, name: &str) -> Result<()> {
        let raw = hc.link_list().to_vec();
        if raw.is_empty() {
            return Ok(());
        }
        let mode = hc.network_mode.as_str();
        if mode == "host" {
            return Err(Error::invalid(
                "conflicting options: host type networking can't be used with links. This would result in undefined behavior",
            ));
        }
        if mode.starts_with("container:") {
            return Err(Error::invalid(
                "conflicting options: container type network can't be used with links. This would result in undefined behavior",
            ));
        }
        let mut stored = Vec::new();
        for s in &raw {
            let l = parse(s)?;
            // A 400, as Docker's: a 404 would make the CLI look for the image (moby#39823).
            let target = self.get(&l.target).map_err(|_| {
                Error::invalid(format!("could not get container for {}: No such container: {}", l.target, l.target))
            })?;
            let target_name = target.record().name;
            stored.push(format!("/{target_name}:/{name}/{}", l.alias));
        }
        hc.links = Some(stored);
        Ok(())
    }

    /// At start, on the default bridge: the variables of every link (their targets must run).
    pub(super) fn link_env(&self, rec: &ContainerRecord) -> Result<Vec<String>> {
        if !rec.endpoints.iter().any(|e| e.network_name == "bridge") {
            return Ok(Vec::new());
        }
        let mut env = Vec::new();
        for l in of(&rec.host_config) {
            let link_name = format!("/{}/{}", rec.name, l.alias);
            let t = self.get(&l.target).map(|e| e.record()).map_err(|_| {
                Error::invalid(format!("Cannot link to a non running container: /{} AS {link_name}", l.target))
            })?;
            if !t.state.running() {
                return Err(Error::invalid(format!(
                    "Cannot link to a non running container: /{} AS {link_name}",
                    t.name
                )));
            }
            let ip = bridge_ip(&t)
                .ok_or_else(|| Error::invalid(format!("container {} not attached to default bridge network", t.id)))?;
            env.extend(env_for(&link_name, &l.alias, &ip.to_string(), &t.config));
        }
        Ok(env)
    }

    /// /etc/hosts lines of `rec`'s links on the default bridge: `ip alias hostname [name]`.
    pub(super) fn link_hosts(&self, rec: &ContainerRecord) -> String {
        let mut s = String::new();
        if !rec.endpoints.iter().any(|e| e.network_name == "bridge") {
            return s;
        }
        for l in of(&rec.host_config) {
            // A target has its address from before its start is recorded: that is when its
            // linkers' hosts are refreshed.
            let Some(t) = self.get(&l.target).ok().map(|e| e.record()) else { continue };
            let Some(ip) = bridge_ip(&t) else { continue };
            let mut names = format!("{} {}", l.alias, t.config.hostname);
            if l.alias != t.name {
                names.push(' ');
                names.push_str(&t.name);
            }
            s.push_str(&format!("{ip}\t{names}\n"));
        }
        s
    }

    /// Whether `r` links to the container `target` (by its name).
    pub(super) fn links_to(r: &ContainerRecord, target: &ContainerRecord) -> bool {
        of(&r.host_config).iter().any(|l| l.target == target.name)
    }

    /// `DELETE /containers/{parent}/{alias}?link=1` (`docker rm --link /parent/alias`).
    pub async fn remove_link(&self, link_name: &str) -> Result<()> {
        let name = format!("/{}", link_name.trim_start_matches('/'));
        let (parent, alias) = name.rsplit_once('/').unwrap_or(("", &name));
        if parent.is_empty() {
            return Err(Error::conflict("Conflict, cannot remove the default link name of the container"));
        }
        let e = self
            .get(parent)
            .map_err(|_| Error::not_found(format!("Cannot get parent {parent} for link name {name}")))?;
        let links = of(&e.record().host_config);
        if !links.iter().any(|l| l.alias == alias) {
            return Err(Error::not_found(format!("No such container: {}", name.trim_start_matches('/'))));
        }
        let pname = e.record().name;
        let rec = e.update(|r| {
            let kept: Vec<String> = links
                .iter()
                .filter(|l| l.alias != alias)
                .map(|l| format!("/{}:/{pname}/{}", l.target, l.alias))
                .collect();
            r.host_config.links = Some(kept);
        });
        self.persist(&rec).await?;
        if rec.state.running() {
            self.refresh_hosts(&rec).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_forms() {
        assert_eq!(parse("db").unwrap(), Link { target: "db".into(), alias: "db".into() });
        assert_eq!(parse("db:d").unwrap(), Link { target: "db".into(), alias: "d".into() });
        assert_eq!(parse("/db:/web/d").unwrap(), Link { target: "db".into(), alias: "d".into() });
        assert!(parse(":x").is_err());
    }

    #[test]
    fn variables_as_docker() {
        let t = berth_api::container::Config {
            env: vec!["PATH=/bin".into(), "PASSWORD=x=y".into(), "HOME=/root".into()],
            exposed_ports: Some(
                ["6379/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp"]
                    .iter()
                    .map(|k| (k.to_string(), serde_json::json!({})))
                    .collect(),
            ),
            ..Default::default()
        };
        let env = env_for("/web/my-db", "my-db", "10.0.0.2", &t);
        assert_eq!(env[0], "MY_DB_PORT=udp://10.0.0.2:53");
        for want in [
            "MY_DB_PORT_6379_TCP=tcp://10.0.0.2:6379",
            "MY_DB_PORT_6379_TCP_ADDR=10.0.0.2",
            "MY_DB_PORT_6379_TCP_PORT=6379",
            "MY_DB_PORT_6379_TCP_PROTO=tcp",
            "MY_DB_PORT_8000_TCP_START=tcp://10.0.0.2:8000",
            "MY_DB_PORT_8000_TCP_END=tcp://10.0.0.2:8002",
            "MY_DB_PORT_8000_TCP_PORT_END=8002",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_PASSWORD=x=y",
        ] {
            assert!(env.contains(&want.to_string()), "{want} in {env:?}");
        }
        assert!(!env.iter().any(|v| v.starts_with("MY_DB_ENV_PATH") || v.starts_with("MY_DB_ENV_HOME")));
        assert_eq!(overlay_env(vec!["A=1".into(), "B=2".into()], &["B=3".into(), "C=4".into()]), ["A=1", "B=3", "C=4"]);
    }
}
