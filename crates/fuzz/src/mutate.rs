//! A small deterministic mutator for the stable runner: no coverage feedback, but every CI run
//! explores the same few thousand neighbours of the corpus, and a seed reproduces a failure.

/// xorshift64*: fast, deterministic, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Bytes that change how a parser branches: JSON and path punctuation, limits, escapes.
const INTERESTING: &[u8] = b"\0\x7f\xff\"\\{}[]:,/.*?$%=&+-_ \n\r\t'`#!~";

/// Tokens spliced in whole: the dictionary every target shares.
const TOKENS: &[&str] = &[
    "null",
    "true",
    "-1",
    "0",
    "1e999",
    "9223372036854775808",
    "-9223372036854775809",
    "\"\"",
    "{}",
    "[]",
    "\\u0000",
    "\\ud800",
    "..",
    "../",
    "/..",
    "//",
    "/etc/passwd",
    "sha256:",
    "@sha256:",
    ":latest",
    "${",
    "$",
    "\\",
    "\"HostConfig\":",
    "\"Binds\":",
    "\"Mounts\":",
    "\"Cmd\":",
    "\"Env\":",
    "\"label\":",
    "%00",
    "%ff",
    "%2e%2e",
    "\u{202e}",
    "é",
    "*",
    "**",
    "[a-",
    "\\\n",
    "FROM ",
    "RUN ",
    "COPY ",
    "ARG ",
    "ONBUILD ",
    "# escape=`\n",
    "mediaType",
    "manifests",
    "schemaVersion",
];

/// One mutation of `data`, possibly splicing from `other`.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = rng.below(len + 1);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
            data.splice(i..i, t.iter().copied());
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(32));
            data.drain(i..i + n);
        }
        4 if len > 0 => {
            // Repeat a run: deep nesting, long names.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            let run: Vec<u8> = data[i..i + n].to_vec();
            for _ in 0..1 + rng.below(64) {
                data.splice(i..i, run.iter().copied());
            }
        }
        5 if !other.is_empty() => {
            let (a, b) = (rng.below(other.len()), rng.below(other.len()));
            let (a, b) = (a.min(b), a.max(b));
            let i = rng.below(len + 1);
            data.splice(i..i, other[a..b].iter().copied());
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        _ => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            data.splice(i..i, bytes);
        }
    }
    // Keep inputs bounded: the targets are about structure, not volume.
    data.truncate(64 << 10);
}
