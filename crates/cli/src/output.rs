//! How listings print: docker's table, `--format json`, or a Go template (a `table` one aligned by
//! a tabwriter as docker's), over rows shaped like docker's formatter contexts.

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};

use crate::format::Template;

/// How a listing command prints: docker's table, `--format json`, or a template (maybe a table one).
pub enum Format {
    Table,
    Json,
    Template { tmpl: Template, table: bool },
}

impl Format {
    /// Interprets `--format` as docker does: `table`, `table <tmpl>`, `json`, else a template, with
    /// literal `\t` and `\n` turned into tabs and newlines.
    pub fn parse(spec: Option<&str>) -> Result<Format> {
        let Some(spec) = spec.filter(|s| !s.is_empty()) else { return Ok(Format::Table) };
        if spec == "table" {
            return Ok(Format::Table);
        }
        if spec == "json" {
            return Ok(Format::Json);
        }
        let (table, body) = match spec.strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest),
            _ => (false, spec),
        };
        let body = body.trim_matches(' ').replace("\\t", "\t").replace("\\n", "\n");
        let tmpl = Template::parse(&body).map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(Format::Template { tmpl, table })
    }

    /// Renders `rows` (each the JSON object of docker's formatter context for one item). `header`
    /// maps each field name to its column title; `default` is docker's default table template.
    pub fn render(&self, rows: &[Value], header: &[(&str, &str)], default: &str) -> Result<String> {
        match self {
            Format::Json => {
                let mut out = String::new();
                for r in rows {
                    out.push_str(&go_marshal(r)?);
                    out.push('\n');
                }
                Ok(out)
            }
            Format::Table => Format::parse(Some(default))?.render(rows, header, default),
            Format::Template { tmpl, table } => {
                let mut out = String::new();
                if *table {
                    let h: Map<String, Value> = header.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                    out.push_str(&tmpl.render(&Value::Object(h))?);
                    out.push('\n');
                }
                for r in rows {
                    out.push_str(&tmpl.render(r)?);
                    out.push('\n');
                }
                Ok(if *table { tabwrite(&out, 10, 3) } else { out })
            }
        }
    }
}

/// Go's `json.Marshal`, which escapes `<`, `>` and `&` (what `--format json` prints).
pub fn go_marshal(v: &Value) -> Result<String> {
    Ok(serde_json::to_string(v)?.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026"))
}

/// Go's text/tabwriter as docker configures it (minwidth, padding, ' ' fill): tab-terminated cells
/// are aligned column by column; a line's last cell is not padded.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split_terminator('\n').map(|l| l.split('\t').collect()).collect();
    let cols = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut width = vec![0usize; cols];
    for l in &lines {
        for (i, c) in l.iter().enumerate().take(l.len().saturating_sub(1)) {
            width[i] = width[i].max(unicode_len(c));
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut s = String::new();
        for (i, c) in l.iter().enumerate() {
            s.push_str(c);
            if i + 1 < l.len() {
                let w = (width[i] + padding).max(minwidth);
                s.push_str(&" ".repeat(w.saturating_sub(unicode_len(c))));
            }
        }
        out.push_str(s.trim_end_matches(' '));
        out.push('\n');
    }
    out
}

fn unicode_len(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_formats_align_like_tabwriter() {
        let f = Format::parse(Some("table {{.ID}}\\t{{.Name}}")).unwrap();
        let rows = vec![json!({"ID": "abc", "Name": "one"}), json!({"ID": "abcdefghijklm", "Name": "two"})];
        let out = f.render(&rows, &[("ID", "CONTAINER ID"), ("Name", "NAME")], "").unwrap();
        assert_eq!(out, "CONTAINER ID    NAME\nabc             one\nabcdefghijklm   two\n");
        let out = Format::parse(Some("json")).unwrap().render(&rows[..1], &[], "").unwrap();
        assert_eq!(out, "{\"ID\":\"abc\",\"Name\":\"one\"}\n");
    }
}
