//! Docker's default seccomp profile, and Docker's rules for turning a profile into the OCI
//! `linux.seccomp` of one container (arch, capability and kernel conditions resolved).
//!
//! `data/seccomp-default.json` is moby's profile (Apache-2.0, `data/seccomp-default.LICENSE`).

use berth_types::{Error, Result};
use serde_json::{json, Value};

pub const DEFAULT_PROFILE: &str = include_str!("../data/seccomp-default.json");

/// The libseccomp name of the architecture this daemon runs on.
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "arm" => "SCMP_ARCH_ARM",
        _ => "SCMP_ARCH_NATIVE",
    }
}

fn kernel_at_least(min: &str) -> bool {
    let u = rustix::system::uname();
    let rel = u.release().to_string_lossy().into_owned();
    let parse = |s: &str| -> (u32, u32) {
        let mut it = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    parse(&rel) >= parse(min)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default()
}

/// Resolves a Docker seccomp profile for a container with capabilities `caps` (moby's
/// `setupSeccomp`): rules whose includes are not met, or whose excludes are, are dropped.
pub fn to_oci(profile: &Value, caps: &[String]) -> Result<Value> {
    let arch = native_arch();
    let default =
        profile["defaultAction"].as_str().ok_or_else(|| Error::invalid("seccomp profile has no defaultAction"))?;
    let mut arches: Vec<String> = Vec::new();
    for m in profile["archMap"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if m["architecture"] == arch {
            arches.push(arch.to_string());
            arches.extend(strings(&m["subArchitectures"]).into_iter().map(String::from));
        }
    }
    if arches.is_empty() {
        arches.extend(strings(&profile["architectures"]).into_iter().map(String::from));
    }
    let has = |c: &str| caps.iter().any(|x| x == c);
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let inc = &rule["includes"];
        let exc = &rule["excludes"];
        if !strings(&inc["caps"]).iter().all(|c| has(c)) {
            continue;
        }
        let inc_arches = strings(&inc["arches"]);
        if !inc_arches.is_empty()
            && !inc_arches.iter().any(|a| arches.iter().any(|x| x == a) || *a == "amd64" && arch == "SCMP_ARCH_X86_64")
        {
            continue;
        }
        if let Some(k) = inc["minKernel"].as_str() {
            if !kernel_at_least(k) {
                continue;
            }
        }
        if strings(&exc["caps"]).iter().any(|c| has(c)) {
            continue;
        }
        let exc_arches = strings(&exc["arches"]);
        if exc_arches.iter().any(|a| arches.iter().any(|x| x == a) || *a == "amd64" && arch == "SCMP_ARCH_X86_64") {
            continue;
        }
        let mut names = strings(&rule["names"]);
        if let Some(n) = rule["name"].as_str() {
            names.push(n);
        }
        let mut s = json!({"names": names, "action": rule["action"]});
        if let Some(e) = rule["errnoRet"].as_u64() {
            s["errnoRet"] = json!(e);
        }
        if let Some(args) = rule["args"].as_array().filter(|a| !a.is_empty()) {
            s["args"] = json!(args
                .iter()
                .map(|a| json!({"index": a["index"], "value": a["value"], "valueTwo": a["valueTwo"].as_u64().unwrap_or(0), "op": a["op"]}))
                .collect::<Vec<_>>());
        }
        syscalls.push(s);
    }
    let mut out = json!({"defaultAction": default, "architectures": arches, "syscalls": syscalls});
    if let Some(e) = profile["defaultErrnoRet"].as_u64() {
        out["defaultErrnoRet"] = json!(e);
    }
    Ok(out)
}

/// What `--security-opt` asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SecurityOpts {
    /// None: the default profile; Some(None): unconfined; Some(Some(p)): this profile.
    pub seccomp: Option<Option<Value>>,
    pub no_new_privileges: bool,
}

/// Parses HostConfig.SecurityOpt as Docker does (`seccomp=unconfined|<profile JSON>`,
/// `no-new-privileges[:true|=true]`, `apparmor=`/`label=` accepted and ignored here).
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for o in opts {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "seccomp" if v == "unconfined" => out.seccomp = Some(None),
            "seccomp" => {
                let p: Value = serde_json::from_str(v)
                    .map_err(|e| Error::invalid(format!("decoding seccomp profile failed: {e}")))?;
                out.seccomp = Some(Some(p));
            }
            "no-new-privileges" => out.no_new_privileges = v.is_empty() || v == "true",
            "apparmor" | "label" | "systempaths" => {}
            _ => return Err(Error::invalid(format!("invalid --security-opt: {o:?}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profile_resolves_by_capability() {
        let p: Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        let plain = to_oci(&p, &["CAP_CHOWN".into()]).unwrap();
        let admin = to_oci(&p, &["CAP_SYS_ADMIN".into()]).unwrap();
        let allowed = |v: &Value, name: &str| {
            v["syscalls"].as_array().unwrap().iter().any(|s| {
                s["action"] == "SCMP_ACT_ALLOW"
                    && s["names"].as_array().unwrap().iter().any(|n| n == name)
                    && s.get("args").is_none()
            })
        };
        assert_eq!(plain["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(allowed(&plain, "read"));
        assert!(!allowed(&plain, "unshare"), "unshare needs CAP_SYS_ADMIN");
        assert!(allowed(&admin, "unshare"));
        assert!(!allowed(&plain, "reboot"));
        if native_arch() == "SCMP_ARCH_X86_64" {
            assert_eq!(plain["architectures"], json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]));
        }
    }

    #[test]
    fn security_opts() {
        let o = parse_security_opts(&["seccomp=unconfined".into(), "no-new-privileges".into()]).unwrap();
        assert_eq!(o.seccomp, Some(None));
        assert!(o.no_new_privileges);
        let o = parse_security_opts(&[
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#.into(),
            "no-new-privileges:false".into(),
        ])
        .unwrap();
        assert!(matches!(o.seccomp, Some(Some(_))));
        assert!(!o.no_new_privileges);
        assert!(parse_security_opts(&["seccomp={bad".into()]).is_err());
        assert!(parse_security_opts(&["bogus".into()]).is_err());
    }
}
