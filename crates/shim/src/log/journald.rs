//! The journald driver: systemd's native journal protocol, one datagram per entry on the journal
//! socket, with the fields Docker's driver writes (`CONTAINER_ID`, `CONTAINER_ID_FULL`,
//! `CONTAINER_NAME`, `CONTAINER_TAG`, `IMAGE_NAME`, `SYSLOG_IDENTIFIER`, `PRIORITY`,
//! `CONTAINER_PARTIAL_MESSAGE`) and the `labels`/`env` attributes as fields of their own.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use berth_runtime::shim::ShimConfig;

pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

pub struct Journald {
    sock: Option<UnixDatagram>,
    path: PathBuf,
    /// The fields every entry carries.
    fields: Vec<(String, String)>,
    /// Entries the journal refused (not running, full): reported once.
    lost: u64,
}

/// A journal field name from an attribute key, as Docker's driver makes them: upper case, only
/// A–Z, 0–9 and `_`, no leading `_` (those are the journal's own).
fn field_name(k: &str) -> String {
    let up: String = k.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    up.trim_start_matches('_').to_string()
}

/// One field in the native format: `KEY=value\n`, or the binary form for a value with a newline.
fn put(buf: &mut Vec<u8>, key: &str, value: &[u8]) {
    buf.extend_from_slice(key.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

impl Journald {
    pub fn new(cfg: &ShimConfig) -> Journald {
        let path = cfg.journal_socket.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        let short: String = cfg.id.chars().take(12).collect();
        let mut fields = vec![
            ("CONTAINER_ID".to_string(), short),
            ("CONTAINER_ID_FULL".to_string(), cfg.id.clone()),
            ("CONTAINER_NAME".to_string(), cfg.name.clone()),
            ("CONTAINER_TAG".to_string(), cfg.log_tag.clone()),
            ("IMAGE_NAME".to_string(), cfg.image.clone()),
            ("SYSLOG_IDENTIFIER".to_string(), cfg.log_tag.clone()),
        ];
        for (k, v) in &cfg.log_attrs {
            let name = field_name(k);
            if !name.is_empty() {
                fields.push((name, v.clone()));
            }
        }
        Journald { sock: UnixDatagram::unbound().ok(), path, fields, lost: 0 }
    }

    pub fn entry(&mut self, stream: usize, message: &[u8], partial: bool) {
        let mut buf = Vec::with_capacity(message.len() + 256);
        put(&mut buf, "MESSAGE", message);
        // syslog severities: info for stdout, err for stderr.
        put(&mut buf, "PRIORITY", if stream == 0 { b"6" } else { b"3" });
        if partial {
            put(&mut buf, "CONTAINER_PARTIAL_MESSAGE", b"true");
        }
        for (k, v) in &self.fields {
            put(&mut buf, k, v.as_bytes());
        }
        let sent = self.sock.as_ref().map(|s| s.send_to(&buf, &self.path));
        if !matches!(sent, Some(Ok(_))) {
            if self.lost == 0 {
                eprintln!("berth-shim: journald at {}: {:?}", self.path.display(), sent.map(|r| r.err()));
            }
            self.lost += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn native_format() {
        let mut b = Vec::new();
        super::put(&mut b, "MESSAGE", b"hi");
        super::put(&mut b, "X", b"a\nb");
        assert_eq!(b, b"MESSAGE=hi\nX\n\x03\0\0\0\0\0\0\0a\nb\n");
        assert_eq!(super::field_name("com.example.team"), "COM_EXAMPLE_TEAM");
        assert_eq!(super::field_name("_x"), "X");
    }
}
