//! A Dockerfile parser on BuildKit's grammar. [`parse`] gives the stages with typed instructions; the
//! arguments stay unexpanded because expansion depends on build state (ARG, ENV) only the builder has.

pub mod duration;
mod lines;
pub mod pattern;
pub mod shell;

pub use lines::{words, Heredoc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub fn new(line: usize, message: impl Into<String>) -> ParseError {
        ParseError { line, message: message.into() }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            return f.write_str(&self.message);
        }
        write!(f, "dockerfile parse error on line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// RUN, CMD and ENTRYPOINT: `["exec", "form"]` or a shell string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// `name[=default]` of an ARG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// Unexpanded.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Command,
    pub flags: Vec<(String, Option<String>)>,
}

/// COPY and ADD. Sources and destination are unexpanded; heredoc sources are named by their delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub sources: Vec<String>,
    pub dest: String,
    /// The JSON form: words are not split, and quotes in them are literal.
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Run {
        cmd: Command,
        heredocs: Vec<Heredoc>,
    },
    Cmd(Command),
    Entrypoint(Command),
    Shell(Vec<String>),
    /// Unexpanded `(key, value)` pairs, quotes still in place.
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Expose(Vec<String>),
    Workdir(String),
    User(String),
    Volume {
        paths: Vec<String>,
        json: bool,
    },
    Copy(CopySpec),
    Add(CopySpec),
    /// The trigger instruction as written.
    Onbuild(String),
    Stopsignal(String),
    /// `HEALTHCHECK NONE` is `None`.
    Healthcheck(Option<Healthcheck>),
    Maintainer(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub line: usize,
    /// As written, for `Step N/M : ...`.
    pub original: String,
    pub flags: Vec<(String, Option<String>)>,
    pub kind: Kind,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        flag(&self.flags, name)
    }
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == name)
    }
}

fn flag<'a>(flags: &'a [(String, Option<String>)], name: &str) -> Option<&'a str> {
    flags.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_deref().unwrap_or("true"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// Unexpanded base image (or `scratch`, or a previous stage's name).
    pub base: String,
    pub platform: Option<String>,
    pub line: usize,
    pub original: String,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Vec<(String, String)>,
    pub escape: char,
    /// ARGs before the first FROM: usable in FROM lines and re-declarable inside stages.
    pub meta_args: Vec<ArgDecl>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Index of the stage called `name` (case-insensitive) or with that number.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages.iter().position(|s| s.name.as_deref() == Some(lower.as_str())).or_else(|| {
            let n: usize = name.parse().ok()?;
            (n < self.stages.len()).then_some(n)
        })
    }
}

const ALLOWED_FLAGS: &[(&str, &[&str])] = &[
    ("from", &["platform"]),
    ("run", &["mount", "network", "security"]),
    ("copy", &["from", "chown", "chmod", "link", "parents", "exclude"]),
    ("add", &["chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"]),
    ("healthcheck", &["interval", "timeout", "start-period", "start-interval", "retries"]),
];

/// JSON array of strings, or `None` for the shell form.
fn json_array(rest: &str) -> Option<Vec<String>> {
    if !rest.trim_start().starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(rest.trim()).ok()
}

fn command(rest: &str) -> Command {
    match json_array(rest) {
        Some(v) => Command::Exec(v),
        None => Command::Shell(rest.to_string()),
    }
}

/// ENV and LABEL: `k=v k2="v 2"`, or the legacy `ENV k v w` (one pair, the rest is the value).
fn name_values(rest: &str, escape: char, what: &str, line: usize) -> Result<Vec<(String, String)>, ParseError> {
    let ws = words(rest, escape);
    if ws.is_empty() {
        return Err(ParseError::new(line, format!("{what} requires at least one argument")));
    }
    if !ws[0].contains('=') {
        let mut parts = rest.trim().splitn(2, char::is_whitespace);
        let key = parts.next().unwrap_or_default().to_string();
        let value = parts.next().map(str::trim_start).unwrap_or_default();
        if value.is_empty() {
            return Err(ParseError::new(line, format!("{what} must have two arguments")));
        }
        return Ok(vec![(key, value.to_string())]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(ParseError::new(
                line,
                format!("Syntax error - can't find = in \"{w}\". Must be of the form: name=value"),
            )),
        })
        .collect()
}

fn arg_decls(rest: &str, escape: char, line: usize) -> Result<Vec<ArgDecl>, ParseError> {
    let ws = words(rest, escape);
    if ws.is_empty() {
        return Err(ParseError::new(line, "ARG requires at least one argument"));
    }
    ws.into_iter()
        .map(|w| {
            let (name, default) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            };
            if name.is_empty() {
                return Err(ParseError::new(line, "ARG names can not be blank"));
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

fn copy_spec(n: &lines::Node, escape: char) -> Result<CopySpec, ParseError> {
    let (mut words, json) = match json_array(&n.rest) {
        Some(v) => (v, true),
        None => (words(&n.rest, escape), false),
    };
    if words.len() < 2 {
        let what = n.cmd.to_ascii_uppercase();
        return Err(ParseError::new(
            n.line,
            format!(
                "{what} requires at least two arguments, but only one was provided. Destination could not be determined"
            ),
        ));
    }
    let dest = words.pop().expect("two or more");
    // Heredoc sources are named `<<EOF` in the words; keep just the name.
    let sources = words
        .into_iter()
        .map(|w| match n.heredocs.iter().find(|h| lines::heredoc_names(&w).first().is_some_and(|x| x.0 == h.name)) {
            Some(h) => format!("<<{}", h.name),
            None => w,
        })
        .collect();
    Ok(CopySpec { sources, dest, json, heredocs: n.heredocs.clone() })
}

fn healthcheck(n: &lines::Node) -> Result<Option<Healthcheck>, ParseError> {
    let rest = n.rest.trim();
    let mut parts = rest.splitn(2, char::is_whitespace);
    let first = parts.next().unwrap_or_default();
    let tail = parts.next().unwrap_or_default().trim_start();
    match first.to_ascii_uppercase().as_str() {
        "NONE" if tail.is_empty() && n.flags.is_empty() => Ok(None),
        "NONE" => Err(ParseError::new(n.line, "HEALTHCHECK NONE takes no arguments")),
        "CMD" if !tail.is_empty() => Ok(Some(Healthcheck { test: command(tail), flags: n.flags.clone() })),
        "CMD" => Err(ParseError::new(n.line, "Missing command after HEALTHCHECK CMD")),
        other => Err(ParseError::new(n.line, format!("Unknown type \"{other}\" in HEALTHCHECK (try CMD)"))),
    }
}

fn instruction(n: &lines::Node, escape: char) -> Result<Instruction, ParseError> {
    let line = n.line;
    let need = |what: &str| -> Result<(), ParseError> {
        if n.rest.trim().is_empty() && n.heredocs.is_empty() {
            return Err(ParseError::new(line, format!("{what} requires at least one argument")));
        }
        Ok(())
    };
    let kind = match n.cmd.as_str() {
        "run" => {
            need("RUN")?;
            Kind::Run { cmd: command(&n.rest), heredocs: n.heredocs.clone() }
        }
        "cmd" => Kind::Cmd(command(&n.rest)),
        "entrypoint" => Kind::Entrypoint(command(&n.rest)),
        "shell" => match json_array(&n.rest) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            _ => return Err(ParseError::new(line, "SHELL requires the arguments to be in JSON form")),
        },
        "env" => Kind::Env(name_values(&n.rest, escape, "ENV", line)?),
        "label" => Kind::Label(name_values(&n.rest, escape, "LABEL", line)?),
        "arg" => Kind::Arg(arg_decls(&n.rest, escape, line)?),
        "expose" => {
            need("EXPOSE")?;
            Kind::Expose(words(&n.rest, escape))
        }
        "workdir" => {
            need("WORKDIR")?;
            Kind::Workdir(n.rest.clone())
        }
        "user" => {
            need("USER")?;
            Kind::User(n.rest.clone())
        }
        "volume" => {
            let (paths, json) = match json_array(&n.rest) {
                Some(v) => (v, true),
                None => (words(&n.rest, escape), false),
            };
            if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
                return Err(ParseError::new(line, "VOLUME specified can not be an empty string"));
            }
            Kind::Volume { paths, json }
        }
        "copy" => Kind::Copy(copy_spec(n, escape)?),
        "add" => Kind::Add(copy_spec(n, escape)?),
        "onbuild" => {
            need("ONBUILD")?;
            let trigger = n.rest.trim().to_string();
            let first = trigger.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
            match first.as_str() {
                "ONBUILD" => return Err(ParseError::new(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                "FROM" | "MAINTAINER" => {
                    return Err(ParseError::new(line, format!("{first} isn't allowed as an ONBUILD trigger")))
                }
                _ => {}
            }
            // The trigger must itself be a valid instruction.
            let sub = lines::split(&trigger).map_err(|e| ParseError::new(line, e.message))?;
            if let Some(sn) = sub.nodes.first() {
                instruction(sn, escape).map_err(|e| ParseError::new(line, e.message))?;
            }
            Kind::Onbuild(trigger)
        }
        "stopsignal" => {
            need("STOPSIGNAL")?;
            Kind::Stopsignal(n.rest.trim().to_string())
        }
        "healthcheck" => Kind::Healthcheck(healthcheck(n)?),
        "maintainer" => {
            need("MAINTAINER")?;
            Kind::Maintainer(n.rest.clone())
        }
        other => return Err(ParseError::new(line, format!("unknown instruction: {}", other.to_ascii_uppercase()))),
    };
    check_flags(n)?;
    Ok(Instruction { line, original: n.original.clone(), flags: n.flags.clone(), kind })
}

fn check_flags(n: &lines::Node) -> Result<(), ParseError> {
    let allowed = ALLOWED_FLAGS.iter().find(|(c, _)| *c == n.cmd).map(|(_, f)| *f).unwrap_or(&[]);
    for (k, _) in &n.flags {
        if !allowed.contains(&k.as_str()) {
            return Err(ParseError::new(n.line, format!("unknown flag: {k}")));
        }
    }
    Ok(())
}

fn valid_stage_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let l = lines::split(text)?;
    let mut meta_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for n in &l.nodes {
        if n.cmd == "from" {
            check_flags(n)?;
            let ws = words(&n.rest, l.escape);
            let (base, name) = match ws.as_slice() {
                [b] => (b.clone(), None),
                [b, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let name = name.to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(ParseError::new(n.line, format!("invalid name for build stage: \"{name}\", name can't start with a number or contain symbols")));
                    }
                    if stages.iter().any(|s| s.name.as_deref() == Some(name.as_str())) {
                        return Err(ParseError::new(n.line, format!("duplicate stage name \"{name}\"")));
                    }
                    (b.clone(), Some(name))
                }
                _ => return Err(ParseError::new(n.line, "FROM requires either one or three arguments")),
            };
            stages.push(Stage {
                name,
                base,
                platform: flag(&n.flags, "platform").map(str::to_string),
                line: n.line,
                original: n.original.clone(),
                instructions: Vec::new(),
            });
            continue;
        }
        let ins = instruction(n, l.escape)?;
        match stages.last_mut() {
            Some(s) => s.instructions.push(ins),
            None => match ins.kind {
                Kind::Arg(decls) => meta_args.extend(decls),
                _ => return Err(ParseError::new(n.line, "no build stage in current context")),
            },
        }
    }
    if stages.is_empty() {
        return Err(ParseError::new(0, "the Dockerfile cannot be empty"));
    }
    Ok(Dockerfile { directives: l.directives, escape: l.escape, meta_args, stages })
}

/// One instruction on its own, as an ONBUILD trigger is stored.
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let l = lines::split(text)?;
    let n = l.nodes.first().ok_or_else(|| ParseError::new(0, "empty instruction"))?;
    if n.cmd == "from" {
        return Err(ParseError::new(n.line, "FROM isn't allowed as an ONBUILD trigger"));
    }
    instruction(n, escape)
}

#[cfg(test)]
mod tests;
