//! `docker ps --filter`: every filter Docker's container list takes, applied (none stored and
//! ignored). Built once per request from the query; `matches` is then a pure test per record.

use berth_api::filters::Filters;
use berth_types::{Error, Result};

use super::record::ContainerRecord;

/// A port or range with its protocol, as `publish=`/`expose=` take them (`80`, `80/udp`, `8000-8080/tcp`).
#[derive(Debug, Clone, PartialEq)]
struct PortRange {
    start: u16,
    end: u16,
    proto: String,
}

impl PortRange {
    fn parse(s: &str) -> Result<PortRange> {
        let bad = || Error::invalid(format!("invalid port filter {s:?}"));
        let (ports, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let (a, b) = ports.split_once('-').unwrap_or((ports, ports));
        let (start, end): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if start > end || !matches!(proto, "tcp" | "udp" | "sctp") {
            return Err(bad());
        }
        Ok(PortRange { start, end, proto: proto.to_string() })
    }

    /// `spec` is a container port key (`80/tcp`).
    fn holds(&self, spec: &str) -> bool {
        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        port.parse::<u16>().is_ok_and(|p| p >= self.start && p <= self.end) && proto == self.proto
    }
}

pub(super) struct ListFilter {
    filters: Filters,
    names: Vec<regex::Regex>,
    before: Option<String>,
    since: Option<String>,
    publish: Vec<PortRange>,
    expose: Vec<PortRange>,
}

impl ListFilter {
    /// `created_of` finds the creation time of the container `before=`/`since=` name.
    pub(super) fn new(filters: &Filters, created_of: &dyn Fn(&str) -> Option<String>) -> Result<ListFilter> {
        let names = filters
            .get("name")
            .iter()
            .map(|n| regex::Regex::new(n).map_err(|e| Error::invalid(format!("invalid name filter {n:?}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let anchor = |key: &str| -> Result<Option<String>> {
            match filters.get(key).first() {
                None => Ok(None),
                Some(c) => created_of(c).map(Some).ok_or_else(|| Error::not_found(format!("No such container: {c}"))),
            }
        };
        let ports = |key: &str| filters.get(key).iter().map(|p| PortRange::parse(p)).collect::<Result<Vec<_>>>();
        Ok(ListFilter {
            filters: filters.clone(),
            names,
            before: anchor("before")?,
            since: anchor("since")?,
            publish: ports("publish")?,
            expose: ports("expose")?,
        })
    }

    pub(super) fn matches(&self, r: &ContainerRecord) -> bool {
        let any = |key: &str, pred: &dyn Fn(&str) -> bool| {
            let v = self.filters.get(key);
            v.is_empty() || v.iter().any(|x| pred(x))
        };
        // Docker matches the name with its leading slash, as a regular expression.
        let slashed = format!("/{}", r.name);
        // Exposed: the image's and the create's ports, and every published one.
        let mut exposed =
            r.config.exposed_ports.iter().flatten().map(|(k, _)| k).chain(r.host_config.port_bindings.keys());
        (self.names.is_empty() || self.names.iter().any(|re| re.is_match(&slashed)))
            && any("id", &|id| r.id.starts_with(id))
            && any("status", &|s| r.state.shown() == s)
            && any("health", &|h| r.state.health.as_ref().map(|x| x.status.as_str()).unwrap_or("none") == h)
            && any("exited", &|c| r.state.shown() == "exited" && c.parse() == Ok(r.state.exit_code))
            && any("ancestor", &|a| r.config.image == a || r.image_id.as_str() == a || r.image_id.hex().starts_with(a))
            && any("network", &|n| r.endpoints.iter().any(|e| e.network_name == n || e.network_id.starts_with(n)))
            && any("volume", &|v| r.mounts.iter().any(|m| (!m.name.is_empty() && m.name == v) || m.destination == v))
            // No swarm here: no container is a task.
            && any("is-task", &|t| matches!(t, "false" | "0"))
            && self.before.as_ref().is_none_or(|t| r.created < *t)
            && self.since.as_ref().is_none_or(|t| r.created > *t)
            && (self.publish.is_empty()
                || self.publish.iter().any(|p| r.host_config.port_bindings.keys().any(|k| p.holds(k))))
            && (self.expose.is_empty() || exposed.any(|k| self.expose.iter().any(|p| p.holds(k))))
            && self.filters.match_labels(&r.config.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::PortRange;

    #[test]
    fn port_filters_parse_as_docker() {
        let p = PortRange::parse("8000-8080/udp").unwrap();
        assert!(p.holds("8001/udp") && !p.holds("8001/tcp") && !p.holds("9000/udp"));
        assert!(PortRange::parse("80").unwrap().holds("80/tcp"));
        assert!(
            PortRange::parse("80/xyz").is_err() && PortRange::parse("90-80").is_err() && PortRange::parse("a").is_err()
        );
    }
}
