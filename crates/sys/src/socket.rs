//! Socket queries that std and tokio do not offer.

use std::os::fd::AsRawFd;

/// Bytes this end wrote that the peer has not read yet (`SIOCOUTQ`). On a UNIX stream socket a
/// sent buffer is charged to the sender until the receiving process reads it, so 0 means the peer
/// has read everything sent so far. (On TCP it counts unacknowledged bytes instead.)
pub fn unread_by_peer(s: &impl AsRawFd) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at `n`.
    if unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_until_the_peer_reads() {
        use std::io::{Read, Write};
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(super::unread_by_peer(&a).unwrap(), 0);
        a.write_all(b"head").unwrap();
        assert!(super::unread_by_peer(&a).unwrap() > 0);
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(super::unread_by_peer(&a).unwrap(), 0);
    }
}
