//! Docker's stdcopy framing for non-TTY attach and logs: `[stream,0,0,0,len_be32]` then the payload.

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const SYSTEM: u8 = 3;

/// Frames `payload` for `stream`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a buffer of frames into (stream, payload) pairs; returns what is left incomplete.
pub fn parse(mut buf: &[u8]) -> (Vec<(u8, Vec<u8>)>, &[u8]) {
    let mut frames = Vec::new();
    while buf.len() >= 8 {
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if buf.len() < 8 + len {
            break;
        }
        frames.push((buf[0], buf[8..8 + len].to_vec()));
        buf = &buf[8 + len..];
    }
    (frames, buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let mut b = super::frame(1, b"hello\n");
        b.extend(super::frame(2, b"err"));
        b.extend_from_slice(&[1, 0, 0]);
        let (frames, rest) = super::parse(&b);
        assert_eq!(frames, vec![(1, b"hello\n".to_vec()), (2, b"err".to_vec())]);
        assert_eq!(rest, &[1, 0, 0]);
    }
}
