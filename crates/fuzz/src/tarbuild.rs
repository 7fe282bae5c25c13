//! Structure-aware tar streams from fuzz bytes: the bytes choose entries (kind, name, link target,
//! mode, owner, xattrs, long names) from small hostile vocabularies, so that mutations explore
//! archive structure instead of dying at the header checksum.
//!
//! Every name and target stays within a vocabulary whose escape would be visible and harmless
//! (`/a`, `/b`, … at the host's root or the sandbox's parent): the oracle in `lib.rs` looks there.

/// Reads choices off the input; runs out into zeros.
pub struct Choices<'a>(&'a [u8]);

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Choices<'a> {
        Choices(data)
    }

    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn pick<'v, T>(&mut self, v: &'v [T]) -> &'v T {
        &v[self.byte() as usize % v.len()]
    }

    pub fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Names an escape would leave at the host's `/` or beside the sandbox (the oracle checks both).
pub const CANARIES: &[&str] = &["a", "b", "c", "d"];
const COMPONENTS: &[&str] = &["a", "b", "c", "d", "..", ".", "", ".wh.a", ".wh..wh..opq", ".wh.b", "a b", "\u{e9}"];
const TARGETS: &[&str] =
    &["/", "..", "../..", "../../..", "a", "/a", "../a", "a/b", "/a/b", "/proc/self/cwd", "/proc/self/root", "."];
const XATTRS: &[&str] = &[
    "user.x",
    "security.capability",
    "trusted.overlay.opaque",
    "trusted.overlay.redirect",
    "security.selinux",
    "system.posix_acl_access",
    "user.",
];

fn name(c: &mut Choices, max: usize) -> String {
    let n = 1 + c.byte() as usize % max;
    let parts: Vec<&str> = (0..n).map(|_| *c.pick(COMPONENTS)).collect();
    let mut s = parts.join("/");
    match c.byte() % 6 {
        0 => s.insert(0, '/'),
        1 => s.push('/'),
        2 => s.insert_str(0, "./"),
        _ => {}
    }
    s
}

fn pax(records: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        // "<len> <key>=<value>\n", where len counts itself.
        let body = k.len() + v.len() + 3;
        let mut len = body + body.to_string().len();
        if len.to_string().len() != body.to_string().len() {
            len += 1;
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn raw_header(kind: tar::EntryType, name: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h
}

/// A tar archive chosen by `data`; sometimes cut short, as a hostile client would.
pub fn archive(data: &[u8]) -> Vec<u8> {
    let mut c = Choices::new(data);
    let mut b = tar::Builder::new(Vec::new());
    let entries = 1 + c.byte() as usize % 12;
    for _ in 0..entries {
        if c.done() {
            break;
        }
        let kind = c.byte() % 10;
        let path = name(&mut c, 4);
        if c.byte().is_multiple_of(8) {
            let xs: Vec<(String, Vec<u8>)> = (0..1 + c.byte() % 3)
                .map(|_| (format!("SCHILY.xattr.{}", c.pick(XATTRS)), vec![c.byte(); 1 + c.byte() as usize % 24]))
                .collect();
            let body = pax(&xs);
            let _ = b.append(&raw_header(tar::EntryType::XHeader, b"././@PaxHeader", body.len() as u64), &body[..]);
        }
        let mut long = path.clone().into_bytes();
        if c.byte().is_multiple_of(10) {
            // A GNU long name: deep or wide, past the 100-byte header field.
            long = format!("{}/{}", "a".repeat(1 + c.byte() as usize * 2), path).into_bytes();
            let mut body = long.clone();
            body.push(0);
            let _ = b.append(&raw_header(tar::EntryType::GNULongName, b"././@LongLink", body.len() as u64), &body[..]);
        }
        let (ty, body): (tar::EntryType, Vec<u8>) = match kind {
            0..=2 => (tar::EntryType::Regular, vec![b'x'; c.byte() as usize]),
            3 | 4 => (tar::EntryType::Directory, Vec::new()),
            5 => (tar::EntryType::Symlink, Vec::new()),
            6 => (tar::EntryType::Link, Vec::new()),
            7 => (tar::EntryType::Char, Vec::new()),
            8 => (tar::EntryType::Fifo, Vec::new()),
            _ => (tar::EntryType::new(c.byte()), vec![b'y'; c.byte() as usize % 16]),
        };
        let mut h = raw_header(ty, &long, body.len() as u64);
        if matches!(ty, tar::EntryType::Symlink | tar::EntryType::Link) {
            let t = if ty == tar::EntryType::Link { name(&mut c, 3) } else { c.pick(TARGETS).to_string() };
            let t = t.as_bytes();
            let n = t.len().min(100);
            h.as_old_mut().linkname[..n].copy_from_slice(&t[..n]);
        }
        if ty == tar::EntryType::Char {
            let _ = h.set_device_major(1);
            let _ = h.set_device_minor(3);
        }
        let modes = [0o644, 0o755, 0o4755, 0o2755, 0o1777, 0o000, 0o7777, 0o200];
        h.set_mode(*c.pick(&modes));
        h.set_uid(*c.pick(&[0u64, 1000, 65534, 4_000_000_000]));
        h.set_gid(*c.pick(&[0u64, 1000, 65534]));
        h.set_mtime(*c.pick(&[0u64, 1_700_000_000, u32::MAX as u64]));
        h.set_cksum();
        let _ = b.append(&h, &body[..]);
    }
    let mut out = b.into_inner().unwrap_or_default();
    if c.byte().is_multiple_of(7) {
        let keep = out.len() * c.byte() as usize / 256;
        out.truncate(keep);
    }
    out
}
