//! The line level of the grammar: parser directives, comments, continuations and heredocs, giving
//! one [`Node`] per instruction with its flags split off.

use crate::ParseError;

/// A heredoc body attached to an instruction (`RUN <<EOF`, `COPY <<EOF /file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// False when the delimiter was quoted: the body is taken as is.
    pub expand: bool,
    pub chomp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based line of the instruction's first line.
    pub line: usize,
    /// Lower case.
    pub cmd: String,
    /// `--name[=value]` words before the arguments.
    pub flags: Vec<(String, Option<String>)>,
    /// The arguments, continuation characters removed.
    pub rest: String,
    /// The instruction as written (continuations joined), for `Step N/M : ...`.
    pub original: String,
    pub heredocs: Vec<Heredoc>,
}

pub struct Lines {
    pub directives: Vec<(String, String)>,
    pub escape: char,
    pub nodes: Vec<Node>,
}

fn is_comment(l: &str) -> bool {
    l.trim_start().starts_with('#')
}

/// Strips a trailing escape character (and the blanks after it); true when the line continues.
fn continues(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    match t.strip_suffix(escape) {
        Some(s) => (s.to_string(), true),
        None => (line.to_string(), false),
    }
}

fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?.trim();
    let (k, v) = body.split_once('=')?;
    let k = k.trim();
    if k.is_empty()
        || !k.chars().all(|c| c.is_ascii_alphanumeric())
        || !k.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return None;
    }
    Some((k.to_ascii_lowercase(), v.trim().to_string()))
}

/// `--flag[=value]` words at the start of the arguments.
fn split_flags(mut rest: &str) -> (Vec<(String, Option<String>)>, &str) {
    let mut flags = Vec::new();
    loop {
        let r = rest.trim_start();
        let Some(f) = r.strip_prefix("--") else { return (flags, r) };
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let word = &f[..end];
        if word.is_empty() {
            // A lone `--` ends the flags.
            return (flags, &f[end..]);
        }
        match word.split_once('=') {
            Some((k, v)) => flags.push((k.to_string(), Some(v.to_string()))),
            None => flags.push((word.to_string(), None)),
        }
        rest = &f[end..];
    }
}

/// The heredoc delimiters named in an instruction's arguments, in order: (name, quoted, chomp).
pub(crate) fn heredoc_names(args: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = args.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
            i += 1;
            continue;
        }
        let word_start = i == 0 || b[i - 1].is_ascii_whitespace();
        if c == b'<' && b[i + 1] == b'<' && word_start && b.get(i + 2) != Some(&b'<') {
            let mut j = i + 2;
            let chomp = b.get(j) == Some(&b'-');
            if chomp {
                j += 1;
            }
            let q = match b.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    j += 1;
                    Some(q)
                }
                _ => None,
            };
            let s = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'-' || b[j] == b'.') {
                j += 1;
            }
            if j > s {
                let closed = match q {
                    Some(q) => b.get(j) == Some(&q),
                    None => true,
                };
                if closed {
                    out.push((args[s..j].to_string(), q.is_some(), chomp));
                    i = j + usize::from(q.is_some());
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

pub fn split(text: &str) -> Result<Lines, ParseError> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut i = 0;
    let mut directives = Vec::new();
    let mut escape = '\\';
    // Directives come first; any other line (an empty one included) ends them.
    while i < lines.len() {
        let Some((k, v)) = directive(lines[i]) else { break };
        if directives.iter().any(|(dk, _)| *dk == k) {
            return Err(ParseError::new(i + 1, format!("only one {k} parser directive can be used")));
        }
        if k == "escape" {
            escape = match v.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::new(
                        i + 1,
                        format!("invalid escape token '{other}' does not match ` or \\"),
                    ))
                }
            };
        }
        directives.push((k, v));
        i += 1;
    }
    if i == 0 && text.starts_with('\u{feff}') {
        // A byte order mark is not part of the first instruction.
    }
    let mut nodes = Vec::new();
    while i < lines.len() {
        let first = lines[i].trim_start_matches('\u{feff}');
        let start = i + 1;
        i += 1;
        if first.trim().is_empty() || is_comment(first) {
            continue;
        }
        let (mut line, mut more) = continues(first.trim_start(), escape);
        while more && i < lines.len() {
            let l = lines[i];
            i += 1;
            if is_comment(l) || l.trim().is_empty() {
                continue;
            }
            let (piece, m) = continues(l, escape);
            line.push_str(&piece);
            more = m;
        }
        let line = line.trim_end().to_string();
        let (cmd, args) = match line.find(char::is_whitespace) {
            Some(p) => (&line[..p], line[p..].trim_start()),
            None => (line.as_str(), ""),
        };
        let cmd = cmd.to_ascii_lowercase();
        let (flags, rest) = split_flags(args);
        let mut heredocs = Vec::new();
        if matches!(cmd.as_str(), "run" | "copy" | "add") {
            for (name, quoted, chomp) in heredoc_names(rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if chomp { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !closed {
                    return Err(ParseError::new(start, format!("unterminated heredoc {name}")));
                }
                heredocs.push(Heredoc { name, content, expand: !quoted, chomp });
            }
        }
        nodes.push(Node {
            line: start,
            cmd,
            flags,
            rest: rest.trim_end().to_string(),
            original: line.clone(),
            heredocs,
        });
    }
    Ok(Lines { directives, escape, nodes })
}

/// Splits on whitespace outside quotes, keeping quotes and escapes (BuildKit's `parseWords`): the
/// expansion step removes them later.
pub fn words(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if quote.is_none() && c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        cur.push(c);
        if c == escape {
            if let Some(n) = it.next() {
                cur.push(n);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_directives() {
        let l =
            split("# syntax=docker/dockerfile:1\n# escape=`\n\nFROM a\nRUN echo a `\n# inner comment\n\n  && echo b\n")
                .unwrap();
        assert_eq!(l.escape, '`');
        assert_eq!(l.directives.len(), 2);
        assert_eq!(l.nodes.len(), 2);
        assert_eq!(l.nodes[1].rest, "echo a   && echo b");
        assert_eq!(l.nodes[1].line, 5);
    }

    #[test]
    fn directive_after_instruction_is_a_comment() {
        let l = split("FROM a\n# escape=`\nRUN x \\\n y").unwrap();
        assert_eq!(l.escape, '\\');
        assert_eq!(l.nodes[1].rest, "x  y");
    }

    #[test]
    fn heredocs() {
        let l = split("RUN <<EOF bash\necho hi\nEOF\nCOPY <<-\"A\" <<B /d/\n\tone $X\n\tA\ntwo\nB\n").unwrap();
        assert_eq!(l.nodes[0].heredocs[0].content, "echo hi\n");
        assert_eq!(l.nodes[1].heredocs.len(), 2);
        assert!(!l.nodes[1].heredocs[0].expand);
        assert_eq!(l.nodes[1].heredocs[0].content, "one $X\n");
        assert_eq!(l.nodes[1].heredocs[1].content, "two\n");
        assert!(split("RUN <<EOF\nno end\n").is_err());
    }

    #[test]
    fn flags_and_words() {
        let l = split("COPY --from=build --chown=1:1 --link a b").unwrap();
        assert_eq!(l.nodes[0].flags.len(), 3);
        assert_eq!(l.nodes[0].flags[2], ("link".into(), None));
        assert_eq!(l.nodes[0].rest, "a b");
        assert_eq!(words("A=\"x y\" B='z' C=a\\ b", '\\'), vec!["A=\"x y\"", "B='z'", "C=a\\ b"]);
    }
}
