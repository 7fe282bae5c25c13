//! Glob matching as Go's `filepath.Match` (COPY sources) plus `**` (`.dockerignore`), and the
//! `.dockerignore` rules of moby's patternmatcher: the last matching line wins, `!` re-includes, and
//! a path is excluded when it or any of its parent directories matches.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Star,
    /// `**`: anything, separators included.
    Deep,
    /// `**/`: zero or more whole directories.
    DeepDir,
    Class(Vec<(char, char)>, bool),
}

fn compile(pat: &str, deep: bool) -> Option<Vec<Tok>> {
    let cs: Vec<char> = pat.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        match cs[i] {
            '*' if deep && cs.get(i + 1) == Some(&'*') => {
                i += 2;
                while cs.get(i) == Some(&'*') {
                    i += 1;
                }
                if cs.get(i) == Some(&'/') {
                    i += 1;
                    out.push(Tok::DeepDir);
                } else {
                    out.push(Tok::Deep);
                }
                continue;
            }
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::One),
            '\\' => {
                i += 1;
                out.push(Tok::Lit(*cs.get(i)?));
            }
            '[' => {
                i += 1;
                let neg = matches!(cs.get(i), Some('^') | Some('!'));
                if neg {
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let c = *cs.get(i)?;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        i += 1;
                        *cs.get(i)?
                    } else {
                        c
                    };
                    i += 1;
                    if cs.get(i) == Some(&'-') && cs.get(i + 1).is_some_and(|&c| c != ']') {
                        let mut hi = cs[i + 1];
                        i += 2;
                        if hi == '\\' {
                            hi = *cs.get(i)?;
                            i += 1;
                        }
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                out.push(Tok::Class(ranges, neg));
            }
            c => out.push(Tok::Lit(c)),
        }
        i += 1;
    }
    Some(out)
}

fn run(toks: &[Tok], name: &[char], sep: Option<char>) -> bool {
    let n = name.len();
    // next[j]: toks[i+1..] matches name[j..]; cur[j]: toks[i..] matches name[j..].
    let mut next = vec![false; n + 1];
    next[n] = true;
    for tok in toks.iter().rev() {
        let mut cur = vec![false; n + 1];
        let not_sep = |c: char| Some(c) != sep;
        let mut any_dir = false;
        for j in (0..=n).rev() {
            let c = name.get(j).copied();
            cur[j] = match tok {
                Tok::Lit(l) => c == Some(*l) && next[j + 1],
                Tok::One => c.is_some_and(not_sep) && next[j + 1],
                Tok::Class(ranges, neg) => {
                    c.is_some_and(|c| not_sep(c) && (ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg))
                        && next[j + 1]
                }
                Tok::Star => next[j] || (c.is_some_and(not_sep) && cur[j + 1]),
                Tok::Deep => next[j] || (c.is_some() && cur[j + 1]),
                Tok::DeepDir => {
                    any_dir |= c == Some('/') && next[j + 1];
                    next[j] || any_dir
                }
            };
        }
        next = cur;
    }
    next[0]
}

/// Go's `filepath.Match` on whole strings; with `path`, `*` and `?` do not cross `/`. A malformed
/// pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str, path: bool) -> bool {
    let Some(toks) = compile(pattern, false) else { return false };
    let name: Vec<char> = name.chars().collect();
    run(&toks, &name, path.then_some('/'))
}

/// Whether a COPY source is a pattern rather than a plain path.
pub fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[derive(Debug, Clone)]
struct Rule {
    toks: Vec<Tok>,
    exclusion: bool,
}

/// A `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
}

/// `filepath.Clean` for slash paths, without a leading `/`.
pub fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pat = clean(pat);
            if let Some(toks) = compile(&pat, true) {
                rules.push(Rule { toks, exclusion });
            }
        }
        Ignore { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a path relative to the context root (slash separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path);
        let chars: Vec<char> = path.chars().collect();
        // The path itself and each of its parent directories.
        let mut prefixes: Vec<usize> = chars.iter().enumerate().filter(|(_, &c)| c == '/').map(|(i, _)| i).collect();
        prefixes.push(chars.len());
        let mut excluded = false;
        for r in &self.rules {
            if r.exclusion != excluded {
                continue;
            }
            if prefixes.iter().any(|&end| run(&r.toks, &chars[..end], Some('/'))) {
                excluded = !r.exclusion;
            }
        }
        excluded
    }

    /// Whether a directory must be walked even though it is excluded: a `!` rule may re-include
    /// something below it.
    pub fn has_exclusions(&self) -> bool {
        self.rules.iter().any(|r| r.exclusion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_match() {
        assert!(glob_match("*.txt", "a.txt", true));
        assert!(!glob_match("*.txt", "d/a.txt", true));
        assert!(glob_match("d/*.txt", "d/a.txt", true));
        assert!(glob_match("a?c", "abc", true));
        assert!(!glob_match("a?c", "a/c", true));
        assert!(glob_match("[a-c]x", "bx", true));
        assert!(!glob_match("[^a-c]x", "bx", true));
        assert!(glob_match("[!a-c]x", "dx", true));
        assert!(glob_match("\\*", "*", true));
        assert!(!glob_match("[a-", "a", true));
        assert!(glob_match("*", "a/b", false));
    }

    #[test]
    fn dockerignore_rules() {
        let ig = Ignore::parse("# comment\n*.log\n!keep.log\nbuild/\n**/tmp\n/abs\n  \nsecret*/**\n");
        assert!(ig.excludes("a.log"));
        assert!(!ig.excludes("keep.log"));
        assert!(!ig.excludes("d/a.log"));
        assert!(ig.excludes("build"));
        assert!(ig.excludes("build/x/y"));
        assert!(ig.excludes("tmp"));
        assert!(ig.excludes("x/y/tmp/z"));
        assert!(ig.excludes("abs"));
        assert!(ig.excludes("secrets/a/b"));
        assert!(!ig.excludes("src/main.rs"));
        let ig = Ignore::parse("*\n!src\n");
        assert!(ig.excludes("Dockerfile"));
        assert!(!ig.excludes("src"));
        assert!(!ig.excludes("src/a"));
        assert!(ig.has_exclusions());
        let ig = Ignore::parse("**/*.o\n");
        assert!(ig.excludes("a.o"));
        assert!(ig.excludes("x/y/a.o"));
    }
}
