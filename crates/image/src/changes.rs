//! `--change` instructions for import and commit: the Dockerfile subset Docker accepts there.

use std::collections::BTreeMap;

use berth_api::container::Config;
use berth_types::{Error, Result};

/// Applies each `INSTRUCTION args` line to `config`.
pub fn apply(config: &mut Config, changes: &[String]) -> Result<()> {
    for line in changes {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (ins, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match ins.to_ascii_uppercase().as_str() {
            "CMD" => config.cmd = Some(exec_or_shell(rest)),
            "ENTRYPOINT" => config.entrypoint = Some(exec_or_shell(rest)),
            "ENV" => {
                for (k, v) in pairs(rest, true)? {
                    config.env.retain(|e| e.split_once('=').map(|x| x.0) != Some(&k));
                    config.env.push(format!("{k}={v}"));
                }
            }
            "LABEL" => {
                for (k, v) in pairs(rest, false)? {
                    config.labels.insert(k, v);
                }
            }
            "EXPOSE" => {
                let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in rest.split_whitespace() {
                    let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    ports.insert(p, serde_json::json!({}));
                }
            }
            "VOLUME" => {
                let vols = config.volumes.get_or_insert_with(BTreeMap::new);
                let list = if rest.starts_with('[') { json_array(rest)? } else { words(rest) };
                for v in list {
                    vols.insert(v, serde_json::json!({}));
                }
            }
            "USER" => config.user = rest.to_string(),
            "WORKDIR" => config.working_dir = rest.to_string(),
            "STOPSIGNAL" => config.stop_signal = Some(rest.to_string()),
            other => {
                return Err(Error::invalid(format!("{other} is not a valid change command")));
            }
        }
    }
    Ok(())
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn json_array(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| Error::invalid(format!("invalid JSON array {s:?}: {e}")))
}

fn exec_or_shell(s: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(s) {
        Ok(v) => v,
        Err(_) => vec!["/bin/sh".into(), "-c".into(), s.into()],
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && (s.starts_with('"') && s.ends_with('"') || s.starts_with('\'') && s.ends_with('\'')) {
        s[1..s.len() - 1].to_string()
    } else {
        s.to_string()
    }
}

/// `K=V K2="v 2"`, or the legacy `K V` form where `legacy` allows it.
fn pairs(s: &str, legacy: bool) -> Result<Vec<(String, String)>> {
    if !s.contains('=') {
        return match s.split_once(char::is_whitespace) {
            Some((k, v)) if legacy => Ok(vec![(k.to_string(), v.trim().to_string())]),
            _ => Err(Error::invalid(format!("invalid change {s:?}: expected KEY=VALUE"))),
        };
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut tokens = Vec::new();
    for c in s.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                cur.push(c)
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c)
            }
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    for t in tokens {
        let (k, v) =
            t.split_once('=').ok_or_else(|| Error::invalid(format!("invalid change {t:?}: expected KEY=VALUE")))?;
        out.push((unquote(k), unquote(v)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes() {
        let mut c = Config::default();
        apply(
            &mut c,
            &[
                "CMD [\"sh\",\"-c\",\"echo hi\"]".into(),
                "ENV A=1 B=\"two words\"".into(),
                "ENV A=3".into(),
                "EXPOSE 80 53/udp".into(),
                "WORKDIR /srv".into(),
                "LABEL x=y".into(),
                "ENTRYPOINT /bin/app".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.cmd.unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(c.env, ["B=two words", "A=3"]);
        assert!(c.exposed_ports.unwrap().contains_key("53/udp"));
        assert_eq!(c.working_dir, "/srv");
        assert_eq!(c.labels["x"], "y");
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/bin/app"]);
        assert!(apply(&mut Config::default(), &["RUN x".into()]).is_err());
    }
}
