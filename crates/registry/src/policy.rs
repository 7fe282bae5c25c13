//! Per-repository access control: who may pull, push and delete where.
//!
//! A TOML file (`--policy`, config `auth.policy`), reloaded when it changes or on SIGHUP:
//!
//! ```toml
//! [groups]
//! team-a = ["alice", "carol"]
//! [[rules]]
//! repositories = ["team-a/*"]          # globs over repository names; exact names too
//! principals = ["group:team-a"]        # user:NAME, group:NAME, authenticated, anonymous
//! actions = ["pull", "push", "delete"]
//! ```
//!
//! Rules only grant; what no rule grants is denied. In a glob `*` matches any run of characters
//! (slashes too: `team-a/*` covers every repository under `team-a/`) and `?` one character.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

/// The actions a rule can grant.
pub const ACTIONS: [&str; 3] = ["pull", "push", "delete"];

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    User(String),
}

impl Caller {
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "",
            Caller::User(u) => u,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    groups: HashMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    quotas: Vec<Quota>,
}

/// `[[quotas]]`: each repository matching a glob may hold at most `bytes` of blobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Quota {
    repositories: Vec<String>,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    repositories: Vec<String>,
    principals: Vec<String>,
    actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Principal {
    User(String),
    Group(String),
    Authenticated,
    Anonymous,
}

#[derive(Debug, Clone)]
struct Rule {
    repositories: Vec<String>,
    principals: Vec<Principal>,
    actions: HashSet<String>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    groups: HashMap<String, HashSet<String>>,
    rules: Vec<Rule>,
    quotas: Vec<Quota>,
}

impl Policy {
    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("read policy {}: {e}", path.display()))?;
        Policy::parse(&text).map_err(|e| anyhow::anyhow!("policy {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        let f: File = toml::from_str(text)?;
        let mut rules = Vec::new();
        for (i, r) in f.rules.into_iter().enumerate() {
            let principals = r
                .principals
                .iter()
                .map(|p| match p.split_once(':') {
                    Some(("user", n)) if !n.is_empty() => Ok(Principal::User(n.into())),
                    Some(("group", g)) if f.groups.contains_key(g) => Ok(Principal::Group(g.into())),
                    Some(("group", g)) => anyhow::bail!("rule {}: unknown group {g:?}", i + 1),
                    None if p == "authenticated" => Ok(Principal::Authenticated),
                    None if p == "anonymous" => Ok(Principal::Anonymous),
                    _ => anyhow::bail!(
                        "rule {}: principal {p:?} is not user:NAME, group:NAME, authenticated or anonymous",
                        i + 1
                    ),
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            for a in &r.actions {
                if !ACTIONS.contains(&a.as_str()) {
                    anyhow::bail!("rule {}: action {a:?} is not pull, push or delete", i + 1);
                }
            }
            if r.repositories.is_empty() {
                anyhow::bail!("rule {}: no repositories", i + 1);
            }
            rules.push(Rule { repositories: r.repositories, principals, actions: r.actions.into_iter().collect() });
        }
        let groups = f.groups.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
        Ok(Policy { groups, rules, quotas: f.quotas })
    }

    fn matches(&self, p: &Principal, caller: &Caller) -> bool {
        match (p, caller) {
            (Principal::Anonymous, Caller::Anonymous) => true,
            (Principal::Authenticated, Caller::User(_)) => true,
            (Principal::User(n), Caller::User(u)) => n == u,
            (Principal::Group(g), Caller::User(u)) => self.groups.get(g).is_some_and(|m| m.contains(u)),
            _ => false,
        }
    }

    /// Whether some rule grants `action` on `repo` to `caller`.
    pub fn allows(&self, caller: &Caller, repo: &str, action: &str) -> bool {
        self.rules.iter().any(|r| {
            r.actions.contains(action)
                && r.repositories.iter().any(|g| glob(g, repo))
                && r.principals.iter().any(|p| self.matches(p, caller))
        })
    }

    /// The bytes a repository may hold: the smallest quota whose globs match it.
    pub fn quota(&self, repo: &str) -> Option<u64> {
        self.quotas.iter().filter(|q| q.repositories.iter().any(|g| glob(g, repo))).map(|q| q.bytes).min()
    }

    /// Whether anything at all is granted to anonymous callers (then `/v2/` answers them).
    pub fn grants_anonymous(&self) -> bool {
        self.rules.iter().any(|r| r.principals.contains(&Principal::Anonymous))
    }
}

/// `*` any run of characters, `?` one; linear in practice (one backtrack point, as in
/// Docker's reference filter), so hostile patterns cannot tie a worker.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            back = Some((pi, si));
            pi += 1;
        } else if let Some((bp, bs)) = back {
            pi = bp + 1;
            si = bs + 1;
            back = Some((bp, bs + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[groups]
team-a = ["alice", "carol"]
team-b = ["bob"]

[[rules]]
repositories = ["team-a/*"]
principals = ["group:team-a"]
actions = ["pull", "push", "delete"]

[[rules]]
repositories = ["team-b/*"]
principals = ["group:team-b"]
actions = ["pull", "push"]

[[rules]]
repositories = ["public/*", "library/busybox"]
principals = ["anonymous", "authenticated"]
actions = ["pull"]

[[rules]]
repositories = ["ci/*"]
principals = ["user:ci-bot"]
actions = ["push"]
"#;

    fn user(u: &str) -> Caller {
        Caller::User(u.into())
    }

    #[test]
    fn rules_grant_and_nothing_else() {
        let p = Policy::parse(POLICY).unwrap();
        assert!(p.allows(&user("alice"), "team-a/app", "push"));
        assert!(p.allows(&user("carol"), "team-a/deep/app", "delete"));
        assert!(!p.allows(&user("alice"), "team-b/app", "pull"), "team A reads nothing of team B");
        assert!(!p.allows(&user("bob"), "team-a/app", "pull"));
        assert!(!p.allows(&user("bob"), "team-b/app", "delete"), "not granted to team B");
        assert!(!p.allows(&user("alice"), "team-a", "pull"), "the glob needs the slash");
        assert!(p.allows(&Caller::Anonymous, "public/x", "pull"));
        assert!(!p.allows(&Caller::Anonymous, "public/x", "push"));
        assert!(p.allows(&user("bob"), "library/busybox", "pull"));
        assert!(!p.allows(&user("bob"), "library/busybox2", "pull"), "exact names are exact");
        assert!(p.allows(&user("ci-bot"), "ci/app", "push") && !p.allows(&user("ci-bot"), "ci/app", "pull"));
        assert!(p.grants_anonymous());
        let q = Policy::parse(
            "[[quotas]]\nrepositories = [\"a/*\"]\nbytes = 100\n[[quotas]]\nrepositories = [\"a/small\"]\nbytes = 10\n",
        )
        .unwrap();
        assert_eq!((q.quota("a/x"), q.quota("a/small"), q.quota("b/x")), (Some(100), Some(10), None));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Policy::parse("[[rules]]\nrepositories=[\"a\"]\nprincipals=[\"group:nope\"]\nactions=[\"pull\"]\n")
            .is_err());
        assert!(Policy::parse("[[rules]]\nrepositories=[\"a\"]\nprincipals=[\"root\"]\nactions=[\"pull\"]\n").is_err());
        assert!(
            Policy::parse("[[rules]]\nrepositories=[\"a\"]\nprincipals=[\"anonymous\"]\nactions=[\"*\"]\n").is_err()
        );
        assert!(Policy::parse("[[rules]]\nrepositories=[]\nprincipals=[\"anonymous\"]\nactions=[\"pull\"]\n").is_err());
        assert!(Policy::parse("bogus = 1\n").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("*", "a/b/c"));
        assert!(glob("team-?/app", "team-x/app"));
        assert!(!glob("team-?/app", "team-xy/app"));
        assert!(glob("a*b*c", "a/x/b/y/c"));
        assert!(!glob("a*b*c", "a/x/b/y/d"));
        // A hostile pattern stays fast.
        let p = "*a".repeat(30) + "b";
        assert!(!glob(&p, &"a".repeat(5000)));
    }
}
