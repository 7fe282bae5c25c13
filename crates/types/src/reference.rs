//! Docker image references: `[domain/]path[:tag][@digest]`, normalised the way the Docker CLI and
//! daemon normalise them, so that `busybox`, `library/busybox` and `docker.io/library/busybox:latest`
//! are one image.

use std::fmt;

use crate::{Digest, Error, Result};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";

/// A fully normalised reference. `repo` always carries its domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

fn is_path_component(c: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn is_domain(d: &str) -> bool {
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']'))
}

impl Reference {
    /// Parses and normalises a reference as `docker pull`/`docker tag` would.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = || Error::invalid("invalid reference format");
        // Bounds the work only; Docker's own limit (on the normalised name) is checked below.
        if s.is_empty() || s.len() > 4096 {
            return Err(bad());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| bad())?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !is_tag(t) {
                    return Err(bad());
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.to_lowercase() != first =>
            {
                if !is_domain(first) {
                    return Err(bad());
                }
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == "index.docker.io" { DEFAULT_DOMAIN.to_string() } else { domain };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("library/{path}") } else { path };
        if path.to_lowercase() != path {
            return Err(Error::invalid(format!(
                "invalid reference format: repository name ({path}) must be lowercase"
            )));
        }
        if !path.split('/').all(is_path_component) {
            return Err(bad());
        }
        // As distribution/reference: the normalised name, domain included, at most 255 characters
        // (so that whatever parses prints as a reference that parses again).
        if domain.len() + 1 + path.len() > 255 {
            return Err(Error::invalid("repository name must not be more than 255 characters"));
        }
        Ok(Reference { domain, path, tag, digest })
    }

    /// Like `parse`, then adds `:latest` when neither tag nor digest is given.
    pub fn parse_tagged(s: &str) -> Result<Reference> {
        let mut r = Self::parse(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    pub fn with_tag(mut self, tag: &str) -> Result<Reference> {
        if !is_tag(tag) {
            return Err(Error::invalid("invalid reference format"));
        }
        self.tag = Some(tag.to_string());
        Ok(self)
    }

    /// `repo@digest`: the same repository pinned to a manifest digest, without a tag.
    pub fn digested(&self, digest: Digest) -> Reference {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: Some(digest) }
    }

    /// The bare repository, without tag or digest.
    pub fn name_only(&self) -> Reference {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: None }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `docker.io/library/busybox`
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `busybox`, as the CLI shows repositories.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix("library/").unwrap_or(&self.path).to_string()
        } else {
            self.repository()
        }
    }

    /// `busybox:latest` or `busybox@sha256:...`: the form shown in RepoTags and messages.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

impl fmt::Display for Reference {
    /// The canonical, fully qualified form used as a store key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse_tagged("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse_tagged("index.docker.io/library/busybox:1.36").unwrap();
        assert_eq!(r.familiar(), "busybox:1.36");
        let r = Reference::parse_tagged("localhost:5000/a/b").unwrap();
        assert_eq!(r.to_string(), "localhost:5000/a/b:latest");
        assert_eq!(r.familiar(), "localhost:5000/a/b:latest");
        let r = Reference::parse("user/app:v1").unwrap();
        assert_eq!(r.repository(), "docker.io/user/app");
        assert_eq!(r.familiar(), "user/app:v1");
        let r = Reference::parse("127.0.0.1:5000/x").unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
    }

    /// Found by the fuzzer: a short name under 455 bytes parsed, but its normalised form (with
    /// `docker.io/library/`) did not parse again. Docker limits the normalised name to 255.
    #[test]
    fn name_limit_is_on_the_normalised_name() {
        let name = "a".repeat(255 - "docker.io/library/".len());
        let r = Reference::parse(&name).unwrap();
        assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        let e = Reference::parse(&format!("{name}a")).unwrap_err();
        assert_eq!(e.message, "repository name must not be more than 255 characters");
        assert!(Reference::parse(&format!("{name}:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Busybox", "a:b:c", "a/:x", "a@sha256:12", "-a", "a..b", "a:-x", "a b"] {
            assert!(Reference::parse(bad).is_err(), "{bad} accepted");
        }
        assert!(Reference::parse("Busybox").unwrap_err().message.contains("must be lowercase"));
    }
}
