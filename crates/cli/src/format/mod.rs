//! The subset of Go's text/template that docker's `--format` users rely on, over JSON values.
//!
//! Actions: `{{.A.B}}`, `{{.}}`, `{{$}}`, variables (`$x := …`, `range $i, $e := …`), pipelines
//! (`a | b`), parenthesised pipelines, `if`/`else if`/`else`, `range`/`else`, `with`/`else`, comments and
//! `{{-`/`-}}` trimming. Functions: docker's (`json join split lower upper title pad truncate println`)
//! and Go's builtins (`index len eq ne lt le gt ge and or not print printf`). Values print as Go's `%v`
//! prints decoded JSON: `[a b]` for lists, `map[k:v]` for objects, `<no value>` for a missing key.

mod funcs;

use anyhow::{anyhow, bail, Result};
use funcs::call;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    If { cond: Pipeline, then: Vec<Node>, els: Vec<Node> },
    Range { pipe: Pipeline, body: Vec<Node>, els: Vec<Node> },
    With { pipe: Pipeline, body: Vec<Node>, els: Vec<Node> },
}

#[derive(Debug, Clone)]
struct Pipeline {
    /// Variables declared (`:=`) or assigned (`=`) by this pipeline.
    vars: Vec<String>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    /// `.`, or `.A.B` (an empty chain is the dot itself)
    Field(Vec<String>),
    /// `$x.A.B`
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    Sub(Box<Pipeline>, Vec<String>),
}

/// Marks a key absent from its object, which Go prints as `<no value>` (a present `null` is `<nil>`).
const MISSING: &str = "\u{0}missing";

pub(crate) fn missing() -> Value {
    json!({ MISSING: true })
}

pub(crate) fn is_missing(v: &Value) -> bool {
    v.get(MISSING).is_some()
}

/// A JSON `null` read through a field: docker runs inspect templates over its Go structs, where a
/// null list prints `[]`, a null map `map[]` and a null pointer `<nil>`. The field name tells which.
const NULL_OF: &str = "\u{0}null";

fn typed_null(field: &str) -> Value {
    json!({ NULL_OF: field })
}

pub(crate) fn null_field(v: &Value) -> Option<&str> {
    v.get(NULL_OF).and_then(|f| f.as_str())
}

fn go_nil(field: &str) -> &'static str {
    const MAPS: &[&str] = &[
        "Labels",
        "Volumes",
        "ExposedPorts",
        "Options",
        "DriverOpts",
        "Sysctls",
        "Tmpfs",
        "StorageOpt",
        "PortBindings",
        "Ports",
        "Networks",
        "Data",
        "Annotations",
        "Status",
        "LogConfig",
    ];
    const POINTERS: &[&str] =
        &["Health", "Healthcheck", "IPAMConfig", "Init", "PidsLimit", "MemorySwappiness", "Platform"];
    if MAPS.contains(&field) {
        "map[]"
    } else if POINTERS.contains(&field) {
        "<nil>"
    } else {
        "[]"
    }
}

impl Template {
    pub fn parse(src: &str) -> Result<Template> {
        let toks = split_actions(src)?;
        let mut it = toks.into_iter().peekable();
        let (nodes, end) = parse_list(&mut it)?;
        if let Some(e) = end {
            bail!("template: unexpected {{{{{e}}}}}");
        }
        Ok(Template { nodes })
    }

    pub fn render(&self, dot: &Value) -> Result<String> {
        let mut out = String::new();
        let mut vars = vec![("$".to_string(), dot.clone())];
        exec(&self.nodes, dot, &mut vars, &mut out)?;
        Ok(out)
    }
}

enum Tok {
    Text(String),
    Action(String),
}

/// Splits source text into text and action bodies, applying `{{-` / `-}}` trimming.
fn split_actions(src: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[i + 2..];
        let (left_trim, after) = match after.strip_prefix("- ") {
            Some(a) => (true, a),
            None => (false, after),
        };
        if left_trim {
            text = text.trim_end();
        }
        if !text.is_empty() {
            out.push(Tok::Text(text.to_string()));
        }
        let close = find_close(after).ok_or_else(|| anyhow!("template: unclosed action"))?;
        let mut body = &after[..close];
        trim_next = false;
        if let Some(b) = body.strip_suffix(" -") {
            body = b;
            trim_next = true;
        }
        let body = body.trim();
        if !(body.starts_with("/*") && body.ends_with("*/")) {
            out.push(Tok::Action(body.to_string()));
        }
        rest = &after[close + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Tok::Text(text.to_string()));
    }
    Ok(out)
}

/// The `}}` closing an action, skipping any inside string literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None => {
                if b[i] == b'"' || b[i] == b'`' {
                    quote = Some(b[i]);
                } else if b[i] == b'}' && b.get(i + 1) == Some(&b'}') {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

type Toks = std::iter::Peekable<std::vec::IntoIter<Tok>>;

/// Parses nodes until `end`/`else`; returns them with the keyword (and its rest) that stopped them.
fn parse_list(it: &mut Toks) -> Result<(Vec<Node>, Option<String>)> {
    let mut nodes = Vec::new();
    while let Some(t) = it.next() {
        match t {
            Tok::Text(s) => nodes.push(Node::Text(s)),
            Tok::Action(a) => {
                let (kw, rest) = match a.split_once(char::is_whitespace) {
                    Some((k, r)) => (k, r.trim()),
                    None => (a.as_str(), ""),
                };
                match kw {
                    "end" | "else" => return Ok((nodes, Some(a.clone()))),
                    "if" => nodes.push(parse_if(rest, it)?),
                    "range" | "with" => {
                        let pipe = parse_pipeline(rest)?;
                        let (body, els) = parse_body(it, kw)?;
                        nodes.push(if kw == "range" {
                            Node::Range { pipe, body, els }
                        } else {
                            Node::With { pipe, body, els }
                        });
                    }
                    "define" | "template" | "block" => bail!("template: {kw} is not supported"),
                    _ => nodes.push(Node::Print(parse_pipeline(&a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_if(cond: &str, it: &mut Toks) -> Result<Node> {
    let cond = parse_pipeline(cond)?;
    let (then, end) = parse_list(it)?;
    let els = match end.as_deref() {
        Some("end") => Vec::new(),
        Some("else") => expect_end(it, "if")?,
        Some(e) if e.starts_with("else if ") => vec![parse_if(&e["else if ".len()..], it)?],
        _ => bail!("template: unexpected EOF in if"),
    };
    Ok(Node::If { cond, then, els })
}

fn parse_body(it: &mut Toks, kw: &str) -> Result<(Vec<Node>, Vec<Node>)> {
    let (body, end) = parse_list(it)?;
    match end.as_deref() {
        Some("end") => Ok((body, Vec::new())),
        Some("else") => Ok((body, expect_end(it, kw)?)),
        _ => bail!("template: unexpected EOF in {kw}"),
    }
}

fn expect_end(it: &mut Toks, kw: &str) -> Result<Vec<Node>> {
    let (els, end) = parse_list(it)?;
    if end.as_deref() != Some("end") {
        bail!("template: expected end of {kw}");
    }
    Ok(els)
}

#[derive(Debug, Clone, PartialEq)]
enum Lex {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(Value),
    Ident(String),
    Open,
    Close(Vec<String>),
    Pipe,
    Declare,
    Assign,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Lex>> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let fields = |c: &[char], i: &mut usize| -> Vec<String> {
        let mut f = Vec::new();
        while *i < c.len() && c[*i] == '.' {
            *i += 1;
            let st = *i;
            while *i < c.len() && (c[*i].is_alphanumeric() || c[*i] == '_') {
                *i += 1;
            }
            if *i > st {
                f.push(c[st..*i].iter().collect());
            }
        }
        f
    };
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '.' => out.push(Lex::Dot(fields(&c, &mut i))),
            '$' => {
                let st = i;
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                let name: String = c[st..i].iter().collect();
                out.push(Lex::Var(name, fields(&c, &mut i)));
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                while i < c.len() && c[i] != '"' {
                    if c[i] == '\\' && i + 1 < c.len() {
                        i += 1;
                        s.push(match c[i] {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            o => o,
                        });
                    } else {
                        s.push(c[i]);
                    }
                    i += 1;
                }
                if i >= c.len() {
                    bail!("template: unterminated quoted string");
                }
                i += 1;
                out.push(Lex::Str(s));
            }
            '`' => {
                let st = i + 1;
                i = st;
                while i < c.len() && c[i] != '`' {
                    i += 1;
                }
                out.push(Lex::Str(c[st..i].iter().collect()));
                i += 1;
            }
            '(' => {
                out.push(Lex::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                out.push(Lex::Close(fields(&c, &mut i)));
            }
            '|' => {
                out.push(Lex::Pipe);
                i += 1;
            }
            ',' => {
                out.push(Lex::Comma);
                i += 1;
            }
            ':' if c.get(i + 1) == Some(&'=') => {
                out.push(Lex::Declare);
                i += 2;
            }
            '=' => {
                out.push(Lex::Assign);
                i += 1;
            }
            '-' | '0'..='9' => {
                let st = i;
                i += 1;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
                let t: String = c[st..i].iter().collect();
                let v = if let Ok(n) = t.parse::<i64>() {
                    json!(n)
                } else {
                    json!(t.parse::<f64>().map_err(|_| anyhow!("template: bad number syntax: {t:?}"))?)
                };
                out.push(Lex::Num(v));
            }
            c0 if c0.is_alphabetic() || c0 == '_' => {
                let st = i;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                out.push(Lex::Ident(c[st..i].iter().collect()));
            }
            o => bail!("template: unexpected {o:?} in command"),
        }
    }
    Ok(out)
}

fn parse_pipeline(s: &str) -> Result<Pipeline> {
    let toks = lex(s)?;
    let mut pos = 0;
    let p = pipeline(&toks, &mut pos)?;
    if pos != toks.len() {
        bail!("template: unexpected {:?} in operand", toks[pos]);
    }
    Ok(p)
}

fn pipeline(t: &[Lex], pos: &mut usize) -> Result<Pipeline> {
    let mut vars = Vec::new();
    // `$a := …`, `$a, $b := …`, `$a = …`
    let mut look = *pos;
    let mut names = Vec::new();
    while let Some(Lex::Var(n, f)) = t.get(look) {
        if !f.is_empty() {
            break;
        }
        names.push(n.clone());
        look += 1;
        match t.get(look) {
            Some(Lex::Comma) => look += 1,
            Some(Lex::Declare) | Some(Lex::Assign) => {
                vars = names.clone();
                *pos = look + 1;
                break;
            }
            _ => break,
        }
    }
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    while *pos < t.len() {
        match &t[*pos] {
            Lex::Close(_) => break,
            Lex::Pipe => {
                if cur.is_empty() {
                    bail!("template: missing command");
                }
                cmds.push(std::mem::take(&mut cur));
                *pos += 1;
            }
            Lex::Open => {
                *pos += 1;
                let sub = pipeline(t, pos)?;
                match t.get(*pos) {
                    Some(Lex::Close(f)) => cur.push(Arg::Sub(Box::new(sub), f.clone())),
                    _ => bail!("template: unclosed left paren"),
                }
                *pos += 1;
            }
            Lex::Dot(f) => {
                cur.push(Arg::Field(f.clone()));
                *pos += 1;
            }
            Lex::Var(n, f) => {
                cur.push(Arg::Var(n.clone(), f.clone()));
                *pos += 1;
            }
            Lex::Str(s) => {
                cur.push(Arg::Lit(json!(s)));
                *pos += 1;
            }
            Lex::Num(n) => {
                cur.push(Arg::Lit(n.clone()));
                *pos += 1;
            }
            Lex::Ident(id) => {
                cur.push(match id.as_str() {
                    "true" => Arg::Lit(json!(true)),
                    "false" => Arg::Lit(json!(false)),
                    "nil" => Arg::Lit(Value::Null),
                    _ => Arg::Func(id.clone()),
                });
                *pos += 1;
            }
            other => bail!("template: unexpected {other:?}"),
        }
    }
    if !cur.is_empty() {
        cmds.push(cur);
    }
    if cmds.is_empty() {
        bail!("template: missing value for command");
    }
    Ok(Pipeline { vars, cmds })
}

type Vars = Vec<(String, Value)>;

fn exec(nodes: &[Node], dot: &Value, vars: &mut Vars, out: &mut String) -> Result<()> {
    for n in nodes {
        match n {
            Node::Text(s) => out.push_str(s),
            Node::Print(p) => {
                let v = eval_pipeline(p, dot, vars)?;
                if p.vars.is_empty() {
                    out.push_str(&to_text(&v));
                }
            }
            Node::If { cond, then, els } => {
                let mark = vars.len();
                let c = eval_pipeline(cond, dot, vars)?;
                exec(if truth(&c) { then } else { els }, dot, vars, out)?;
                vars.truncate(mark);
            }
            Node::With { pipe, body, els } => {
                let mark = vars.len();
                let v = eval_pipeline(pipe, dot, vars)?;
                if truth(&v) {
                    exec(body, &v, vars, out)?;
                } else {
                    exec(els, dot, vars, out)?;
                }
                vars.truncate(mark);
            }
            Node::Range { pipe, body, els } => {
                let mark = vars.len();
                let bare = Pipeline { vars: Vec::new(), cmds: pipe.cmds.clone() };
                let v = eval_pipeline(&bare, dot, vars)?;
                let items: Vec<(Value, Value)> = match &v {
                    Value::Array(a) => a.iter().enumerate().map(|(i, e)| (json!(i), e.clone())).collect(),
                    o if null_field(o).is_some() => Vec::new(),
                    Value::Object(m) if !is_missing(&v) => m.iter().map(|(k, e)| (json!(k), e.clone())).collect(),
                    Value::Null => Vec::new(),
                    o if is_missing(o) => Vec::new(),
                    Value::Number(n) => (0..n.as_i64().unwrap_or(0)).map(|i| (json!(i), json!(i))).collect(),
                    o => bail!("range can't iterate over {}", to_text(o)),
                };
                if items.is_empty() {
                    exec(els, dot, vars, out)?;
                }
                for (k, e) in items {
                    let inner = vars.len();
                    match pipe.vars.as_slice() {
                        [] => {}
                        [v] => vars.push((v.clone(), e.clone())),
                        [kv, ev, ..] => {
                            vars.push((kv.clone(), k));
                            vars.push((ev.clone(), e.clone()));
                        }
                    }
                    exec(body, &e, vars, out)?;
                    vars.truncate(inner);
                }
                vars.truncate(mark);
            }
        }
    }
    Ok(())
}

fn eval_pipeline(p: &Pipeline, dot: &Value, vars: &mut Vars) -> Result<Value> {
    let mut last: Option<Value> = None;
    for cmd in &p.cmds {
        last = Some(eval_cmd(cmd, dot, vars, last)?);
    }
    let v = last.unwrap_or(Value::Null);
    // Declaring and assigning both shadow: a template's variables live until the end of its block.
    for name in &p.vars {
        vars.push((name.clone(), v.clone()));
    }
    Ok(v)
}

fn eval_cmd(cmd: &[Arg], dot: &Value, vars: &Vars, piped: Option<Value>) -> Result<Value> {
    if let Arg::Func(name) = &cmd[0] {
        let mut args = Vec::new();
        for a in &cmd[1..] {
            args.push(eval_arg(a, dot, vars)?);
        }
        if let Some(p) = piped {
            args.push(p);
        }
        return call(name, &args);
    }
    // `.Label "key"`: the one method of docker's formatter contexts that takes an argument.
    if let (Arg::Field(path), [key]) = (&cmd[0], &cmd[1..]) {
        if path.last().map(String::as_str) == Some("Label") {
            let owner = walk(dot, &path[..path.len() - 1]);
            let key = to_text(&eval_arg(key, dot, vars)?);
            return Ok(label(&owner, &key));
        }
    }
    if cmd.len() > 1 || piped.is_some() {
        bail!("template: can't give argument to non-function {:?}", cmd[0]);
    }
    eval_arg(&cmd[0], dot, vars)
}

/// A label of a row: from a `Labels` object, or from docker's `k=v,k2=v2` column text.
fn label(owner: &Value, key: &str) -> Value {
    match &owner["Labels"] {
        Value::Object(m) => m.get(key).cloned().unwrap_or_else(|| json!("")),
        Value::String(s) => json!(s
            .split(',')
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()))
            .unwrap_or_default()),
        _ => json!(""),
    }
}

fn eval_arg(a: &Arg, dot: &Value, vars: &Vars) -> Result<Value> {
    match a {
        Arg::Field(f) => Ok(walk(dot, f)),
        Arg::Var(name, f) => {
            let v = vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| anyhow!("template: undefined variable: {name}"))?;
            Ok(walk(v, f))
        }
        Arg::Lit(v) => Ok(v.clone()),
        Arg::Func(name) => call(name, &[]),
        Arg::Sub(p, f) => {
            let mut scratch = vars.clone();
            Ok(walk(&eval_pipeline(p, dot, &mut scratch)?, f))
        }
    }
}

fn walk(v: &Value, fields: &[String]) -> Value {
    let mut cur = v.clone();
    for f in fields {
        cur = match &cur {
            Value::Object(m) if !is_missing(&cur) && null_field(&cur).is_none() => match m.get(f) {
                Some(Value::Null) => typed_null(f),
                Some(x) => x.clone(),
                None => missing(),
            },
            _ => missing(),
        };
    }
    cur
}

pub(crate) fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty() && !is_missing(v) && null_field(v).is_none(),
    }
}

/// Go's `%v` of a decoded JSON value.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(_) if is_missing(v) => "<no value>".into(),
        Value::Object(_) if null_field(v).is_some() => go_nil(null_field(v).unwrap_or_default()).into(),
        Value::Object(m) => {
            format!("map[{}]", m.iter().map(|(k, v)| format!("{k}:{}", to_text(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, v: Value) -> String {
        Template::parse(t).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_and_go_printing() {
        let v = json!({"State": {"Status": "running", "Pid": 42}, "Env": ["A=1", "B=2"], "L": {"b": 1, "a": "x"}, "N": null});
        assert_eq!(r("{{.State.Status}} {{.State.Pid}}", v.clone()), "running 42");
        assert_eq!(r("{{.Env}}|{{.L}}|{{.N}}|{{.Nope}}", v.clone()), "[A=1 B=2]|map[a:x b:1]|[]|<no value>");
        let nulls = json!({"Cmd": null, "Labels": null, "Health": null});
        assert_eq!(
            r("{{.Cmd}} {{.Labels}} {{.Health}} {{json .Cmd}} {{if .Cmd}}x{{end}}", nulls),
            "[] map[] <nil> null "
        );
        assert_eq!(r("{{json .L}}", v.clone()), r#"{"a":"x","b":1}"#);
        assert_eq!(r("{{index .Env 1}} {{index .L \"a\"}}", v.clone()), "B=2 x");
        assert_eq!(r("{{join .Env \",\"}} {{len .Env}}", v.clone()), "A=1,B=2 2");
        assert_eq!(r("{{.State.Status | upper}}", v), "RUNNING");
        assert_eq!(r("{{.Label \"tier\"}}|{{.Label \"x\"}}", json!({"Labels": "a=1,tier=web"})), "web|");
    }

    #[test]
    fn control_flow_and_variables() {
        let v = json!({"Ports": {"80/tcp": [{"HostPort": "8080"}]}, "Names": ["a", "b"], "On": true});
        assert_eq!(r("{{range .Names}}<{{.}}>{{end}}", v.clone()), "<a><b>");
        assert_eq!(r("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", v.clone()), "0=a 1=b ");
        assert_eq!(r("{{range $p, $b := .Ports}}{{$p}}->{{(index $b 0).HostPort}}{{end}}", v.clone()), "80/tcp->8080");
        assert_eq!(r("{{if .On}}yes{{else}}no{{end}}", v.clone()), "yes");
        assert_eq!(r("{{if not .On}}a{{else if eq .Names 1}}b{{else}}c{{end}}", v.clone()), "c");
        assert_eq!(r("{{with .Missing}}x{{else}}none{{end}}", v.clone()), "none");
        assert_eq!(r("{{$x := .On}}{{$x}}", v.clone()), "true");
        assert_eq!(r("a  {{- .On -}}  b", v.clone()), "atrueb");
        assert_eq!(r("{{/* c */}}{{printf \"%-4s|%d\" \"ab\" 7}}", v.clone()), "ab  |7");
        assert_eq!(r("{{range .Names}}{{$.On}}{{end}}", v), "truetrue");
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse("{{.A").is_err());
        assert!(Template::parse("{{if .A}}x").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{nosuch .A}}").unwrap().render(&json!({})).is_err());
    }
}
