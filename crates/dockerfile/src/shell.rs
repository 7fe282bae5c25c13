//! Shell-word expansion as BuildKit applies it to FROM, COPY, ENV, WORKDIR and the other instructions
//! the builder expands (never RUN, CMD or ENTRYPOINT: a shell does that at run time).
//!
//! Quotes are removed, `$VAR` and `${VAR}` substituted with the `:-`, `-`, `:+`, `+`, `:?`, `?`, `#`,
//! `%` and `/` modifiers; the escape character protects the next character outside quotes and only
//! `"`, `$` and itself inside double quotes, as BuildKit's lexer does.

use std::iter::Peekable;
use std::str::Chars;

/// Where the words get their variables from.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandError(pub String);

impl std::fmt::Display for ExpandError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

type R<T> = Result<T, ExpandError>;

/// One word, quotes processed and variables substituted.
pub fn expand_word(word: &str, escape: char, env: &dyn Env) -> R<String> {
    let mut lx = Lexer { it: word.chars().peekable(), escape, env };
    let words = lx.words(false, None)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Like [`expand_word`] but splits on unquoted whitespace (EXPOSE, VOLUME's shell form, ONBUILD args).
pub fn expand_words(word: &str, escape: char, env: &dyn Env) -> R<Vec<String>> {
    let mut lx = Lexer { it: word.chars().peekable(), escape, env };
    lx.words(true, None)
}

struct Lexer<'a> {
    it: Peekable<Chars<'a>>,
    escape: char,
    env: &'a dyn Env,
}

impl Lexer<'_> {
    /// Reads until `stop` (consumed) or the end; with `split`, unquoted whitespace separates words.
    fn words(&mut self, split: bool, stop: Option<char>) -> R<Vec<String>> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        loop {
            let Some(c) = self.it.next() else {
                if let Some(s) = stop {
                    return Err(ExpandError(format!("missing '{s}'")));
                }
                break;
            };
            if Some(c) == stop {
                break;
            }
            if split && c.is_whitespace() {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                continue;
            }
            in_word = true;
            match c {
                '\'' => self.single_quoted(&mut cur)?,
                '"' => self.double_quoted(&mut cur)?,
                '$' => cur.push_str(&self.dollar()?),
                c if c == self.escape => {
                    if let Some(n) = self.it.next() {
                        cur.push(n);
                    }
                }
                c => cur.push(c),
            }
        }
        if in_word || !split {
            words.push(cur);
        }
        Ok(words)
    }

    fn single_quoted(&mut self, out: &mut String) -> R<()> {
        for c in self.it.by_ref() {
            if c == '\'' {
                return Ok(());
            }
            out.push(c);
        }
        Err(ExpandError("unexpected end of statement while looking for matching single-quote".into()))
    }

    fn double_quoted(&mut self, out: &mut String) -> R<()> {
        while let Some(c) = self.it.next() {
            match c {
                '"' => return Ok(()),
                '$' => out.push_str(&self.dollar()?),
                c if c == self.escape => match self.it.peek() {
                    Some(&n) if n == '"' || n == '$' || n == self.escape => {
                        out.push(n);
                        self.it.next();
                    }
                    _ => out.push(c),
                },
                c => out.push(c),
            }
        }
        Err(ExpandError("unexpected end of statement while looking for matching double-quote".into()))
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        // Positional and special parameters are a single character.
        if let Some(&c) = self.it.peek() {
            if c.is_ascii_digit() || "@*#?$!-".contains(c) {
                self.it.next();
                return c.to_string();
            }
        }
        while let Some(&c) = self.it.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.it.next();
            } else {
                break;
            }
        }
        name
    }

    fn dollar(&mut self) -> R<String> {
        match self.it.peek() {
            None => return Ok("$".into()),
            Some('{') => {
                self.it.next();
            }
            Some(_) => {
                let name = self.name();
                if name.is_empty() {
                    return Ok("$".into());
                }
                return Ok(self.env.get(&name).unwrap_or_default());
            }
        }
        let name = self.name();
        if name.is_empty() {
            return Err(ExpandError("bad substitution".into()));
        }
        let value = self.env.get(&name);
        let Some(op) = self.it.next() else {
            return Err(ExpandError("syntax error: missing '}'".into()));
        };
        if op == '}' {
            return Ok(value.unwrap_or_default());
        }
        let colon = op == ':';
        let op =
            if colon { self.it.next().ok_or_else(|| ExpandError("syntax error: missing '}'".into()))? } else { op };
        let unset = if colon { value.as_deref().is_none_or(str::is_empty) } else { value.is_none() };
        match op {
            '-' => {
                let word = self.nested()?;
                Ok(if unset { word } else { value.unwrap_or_default() })
            }
            '+' => {
                let word = self.nested()?;
                Ok(if unset { String::new() } else { word })
            }
            '?' => {
                let word = self.nested()?;
                if unset {
                    let msg = if word.is_empty() { "is not allowed to be unset".to_string() } else { word };
                    return Err(ExpandError(format!("{name}: {msg}")));
                }
                Ok(value.unwrap_or_default())
            }
            '#' | '%' if !colon => {
                let longest = self.it.peek() == Some(&op);
                if longest {
                    self.it.next();
                }
                let pat = self.nested()?;
                let v = value.unwrap_or_default();
                Ok(trim_pattern(&v, &pat, op == '#', longest))
            }
            '/' if !colon => {
                let all = self.it.peek() == Some(&'/');
                if all {
                    self.it.next();
                }
                let (pat, repl) = self.pattern_and_replacement()?;
                Ok(replace_pattern(&value.unwrap_or_default(), &pat, &repl, all))
            }
            other => Err(ExpandError(format!("unsupported modifier ({other}) in substitution"))),
        }
    }

    /// The word after a modifier, itself expanded, up to the closing brace.
    fn nested(&mut self) -> R<String> {
        Ok(self.words(false, Some('}'))?.concat())
    }

    fn pattern_and_replacement(&mut self) -> R<(String, String)> {
        let mut pat = String::new();
        loop {
            match self.it.next() {
                None => return Err(ExpandError("syntax error: missing '}'".into())),
                Some('/') => break,
                Some('}') => return Ok((pat, String::new())),
                Some('$') => pat.push_str(&self.dollar()?),
                Some(c) => pat.push(c),
            }
        }
        Ok((pat, self.nested()?))
    }
}

fn trim_pattern(v: &str, pat: &str, prefix: bool, longest: bool) -> String {
    let cuts: Vec<usize> = v.char_indices().map(|(i, _)| i).chain(std::iter::once(v.len())).collect();
    let matches = |s: &str| crate::pattern::glob_match(pat, s, false);
    if prefix {
        let order: Box<dyn Iterator<Item = &usize>> =
            if longest { Box::new(cuts.iter().rev()) } else { Box::new(cuts.iter()) };
        for &i in order {
            if matches(&v[..i]) {
                return v[i..].to_string();
            }
        }
    } else {
        let order: Box<dyn Iterator<Item = &usize>> =
            if longest { Box::new(cuts.iter()) } else { Box::new(cuts.iter().rev()) };
        for &i in order {
            if matches(&v[i..]) {
                return v[..i].to_string();
            }
        }
    }
    v.to_string()
}

fn replace_pattern(v: &str, pat: &str, repl: &str, all: bool) -> String {
    if pat.is_empty() {
        return v.to_string();
    }
    let mut out = String::new();
    let mut i = 0;
    let bytes_at: Vec<usize> = v.char_indices().map(|(i, _)| i).chain(std::iter::once(v.len())).collect();
    while i < v.len() {
        // The longest match starting here, as the shell does.
        let found = bytes_at
            .iter()
            .rev()
            .filter(|&&j| j > i)
            .find(|&&j| crate::pattern::glob_match(pat, &v[i..j], false))
            .copied();
        match found {
            Some(j) => {
                out.push_str(repl);
                i = j;
                if !all {
                    out.push_str(&v[i..]);
                    return out;
                }
            }
            None => {
                let c = v[i..].chars().next().expect("in bounds");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("apple".into()),
            "E" => Some(String::new()),
            "P" => Some("/usr/local/bin".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        expand_word(s, '\\', &env).unwrap()
    }

    #[test]
    fn substitutions() {
        assert_eq!(w("$A"), "apple");
        assert_eq!(w("${A}x"), "applex");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("${B:-def}"), "def");
        assert_eq!(w("${E:-def}"), "def");
        assert_eq!(w("${E-def}"), "");
        assert_eq!(w("${A:+set}"), "set");
        assert_eq!(w("${B:+set}"), "");
        assert_eq!(w("${E+set}"), "set");
        assert_eq!(w("${B:-${A}}"), "apple");
        assert_eq!(w("${B:-a b}"), "a b");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$"), "a$");
        assert_eq!(w("${P#*/}"), "usr/local/bin");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${P%/*}"), "/usr/local");
        assert_eq!(w("${P%%/l*}"), "/usr");
        assert_eq!(w("${P/local/opt}"), "/usr/opt/bin");
        assert_eq!(w("${A//p/P}"), "aPPle");
        assert!(expand_word("${B:?must be set}", '\\', &env).unwrap_err().0.contains("must be set"));
        assert!(expand_word("${A", '\\', &env).is_err());
        assert!(expand_word("${A:x}", '\\', &env).unwrap_err().0.contains("unsupported modifier"));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "apple b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("\"it's\""), "it's");
        assert_eq!(expand_word("`$A", '`', &env).unwrap(), "$A");
        assert_eq!(expand_word("C:\\dir", '`', &env).unwrap(), "C:\\dir");
        assert!(expand_word("'open", '\\', &env).is_err());
        assert!(expand_word("\"open", '\\', &env).is_err());
    }

    #[test]
    fn words_split_on_unquoted_space() {
        let ws = expand_words("80/tcp  \"a b\" $A c\\ d", '\\', &env).unwrap();
        assert_eq!(ws, vec!["80/tcp", "a b", "apple", "c d"]);
        assert!(expand_words("   ", '\\', &env).unwrap().is_empty());
    }
}
