//! Detach keys (`ctrl-p,ctrl-q` by default): the sequence on an attached TTY's stdin that ends the
//! attach and leaves the container running.

/// Docker's default.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// Parses Docker's notation: comma-separated single characters and `ctrl-<a-z @ [ \ ] ^ _>`.
pub fn parse(spec: &str) -> Result<Vec<u8>, String> {
    let spec = if spec.is_empty() { DEFAULT } else { spec };
    let bad = || format!("Invalid detach keys ({spec}) provided");
    spec.split(',')
        .map(|k| {
            let k = k.trim();
            if let Some(c) = k.strip_prefix("ctrl-") {
                let c = c.as_bytes();
                if c.len() != 1 {
                    return Err(bad());
                }
                match c[0].to_ascii_lowercase() {
                    b @ b'a'..=b'z' => Ok(b - b'a' + 1),
                    b'@' => Ok(0),
                    b'[' => Ok(27),
                    b'\\' => Ok(28),
                    b']' => Ok(29),
                    b'^' => Ok(30),
                    b'_' => Ok(31),
                    _ => Err(bad()),
                }
            } else if k.len() == 1 {
                Ok(k.as_bytes()[0])
            } else {
                Err(bad())
            }
        })
        .collect()
}

/// Finds the sequence across chunks. Bytes that might begin it are held back until it is clear
/// whether they do (then dropped) or not (then passed on), as Docker's escape proxy does.
#[derive(Debug, Clone)]
pub struct Scanner {
    keys: Vec<u8>,
    matched: usize,
}

/// What to do with a chunk of stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Forward these bytes.
    Forward(Vec<u8>),
    /// The sequence was typed: forward these bytes (what came before it) and detach.
    Detach(Vec<u8>),
}

impl Scanner {
    pub fn new(keys: Vec<u8>) -> Scanner {
        Scanner { keys, matched: 0 }
    }

    /// Scans one chunk. After a `Detach` the scanner starts over (a caller may go on feeding the
    /// rest of a pipelined chunk); with no keys it never detaches.
    pub fn feed(&mut self, data: &[u8]) -> Scan {
        let mut out = Vec::with_capacity(data.len());
        if self.keys.is_empty() {
            return Scan::Forward(data.to_vec());
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
                continue;
            }
            // Not the sequence after all: what was held back is input.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return Scan::Detach(out);
                }
            } else {
                out.push(b);
            }
        }
        Scan::Forward(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_notation() {
        assert_eq!(parse("").unwrap(), vec![16, 17]);
        assert_eq!(parse("ctrl-a,x,ctrl-@,ctrl-_").unwrap(), vec![1, b'x', 0, 31]);
        assert!(parse("ctrl-ab").is_err());
        assert!(parse("xy").unwrap_err().contains("Invalid detach keys (xy) provided"));
    }

    #[test]
    fn scans_across_chunks() {
        let mut s = Scanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"ab\x10"), Scan::Forward(b"ab".to_vec()));
        assert_eq!(s.feed(b"c"), Scan::Forward(b"\x10c".to_vec()));
        assert_eq!(s.feed(b"\x10\x10"), Scan::Forward(b"\x10".to_vec()));
        assert_eq!(s.feed(b"\x11rest"), Scan::Detach(vec![]));
        let mut s = Scanner::new(vec![b'q']);
        assert_eq!(s.feed(b"abq"), Scan::Detach(b"ab".to_vec()));
    }

    /// Found by the fuzzer: feeding after a detach indexed past the keys and panicked.
    #[test]
    fn feeds_after_a_detach_start_over() {
        let mut s = Scanner::new(vec![1]);
        assert_eq!(s.feed(b"\x01"), Scan::Detach(vec![]));
        assert_eq!(s.feed(b"x"), Scan::Forward(b"x".to_vec()));
        let mut s = Scanner::new(vec![16, 17]);
        assert_eq!(s.feed(b"\x10\x11"), Scan::Detach(vec![]));
        assert_eq!(s.feed(b"\x10y"), Scan::Forward(b"\x10y".to_vec()));
        assert_eq!(Scanner::new(vec![]).feed(b"z"), Scan::Forward(b"z".to_vec()));
    }
}
