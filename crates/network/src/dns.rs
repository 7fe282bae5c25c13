//! The embedded DNS server of user-defined networks, as Docker's: it listens on 127.0.0.11:53 inside
//! each container's network namespace (the sockets are opened there, then served from berthd's
//! runtime), answers the names of containers on networks the asking container shares, and forwards
//! everything else to the upstream resolvers from berthd's own namespace, so a host-local resolver
//! (127.0.0.53) works too.
//!
//! The answer depends on who asks, so each container has its own sockets and its own view; the
//! wire format is hickory-proto's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_types::{Error, Result};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Docker's embedded DNS listens here.
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;

/// Container names as one container sees them.
pub trait Names: Send + Sync + 'static {
    /// Addresses (IPv4 and, on dual-stack networks, IPv6) of `name` on the networks `asker`
    /// shares with its owner; `None` when unknown.
    fn lookup(&self, asker: &str, name: &str) -> Option<Vec<IpAddr>>;
    /// The name of the container that has `ip` on a network `asker` is on.
    fn reverse(&self, asker: &str, ip: Ipv4Addr) -> Option<String>;
}

/// A container's DNS server; dropping it stops it.
pub struct DnsHandle {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens the UDP and TCP sockets on 127.0.0.11:53 inside the namespace pinned at `netns`. Blocking.
pub fn bind_in(netns: &std::path::Path) -> Result<(std::net::UdpSocket, std::net::TcpListener)> {
    berth_sys::netns::run_in(netns, || {
        let addr = SocketAddr::from((ADDRESS, 53));
        let udp = std::net::UdpSocket::bind(addr).map_err(|e| Error::internal(format!("dns udp bind: {e}")))?;
        let tcp = std::net::TcpListener::bind(addr).map_err(|e| Error::internal(format!("dns tcp bind: {e}")))?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
}

/// The server state one container's sockets share.
struct Server {
    asker: String,
    names: Arc<dyn Names>,
    upstream: Vec<SocketAddr>,
}

/// Queries answered at once over UDP; more are dropped until some finish.
const MAX_UDP_IN_FLIGHT: usize = 64;
/// TCP connections served at once.
const MAX_TCP_CONNECTIONS: usize = 16;
/// A TCP connection without a query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Serves `asker`'s queries on its sockets until the handle is dropped. Needs a tokio runtime.
pub fn serve(
    asker: String,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    names: Arc<dyn Names>,
    upstream: Vec<SocketAddr>,
) -> Result<DnsHandle> {
    let udp = tokio::net::UdpSocket::from_std(udp)?;
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    let srv = Arc::new(Server { asker, names, upstream });
    let s = srv.clone();
    // A container is hostile: it may send queries without end. Each query in flight holds a task
    // and (when forwarded) a host socket, so they are bounded; a query over the bound is dropped,
    // as a busy resolver drops it, and the client retries.
    let udp_slots = Arc::new(tokio::sync::Semaphore::new(MAX_UDP_IN_FLIGHT));
    let tcp_slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    let u = tokio::spawn(async move {
        let udp = Arc::new(udp);
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else { continue };
            let Ok(permit) = udp_slots.clone().try_acquire_owned() else { continue };
            let (q, s, udp) = (buf[..n].to_vec(), s.clone(), udp.clone());
            tokio::spawn(async move {
                let _permit = permit;
                if let Some(resp) = s.answer(&q).await {
                    let _ = udp.send_to(&resp, peer).await;
                }
            });
        }
    });
    let t = tokio::spawn(async move {
        loop {
            let mut conn = match tcp.accept().await {
                Ok((c, _)) => c,
                Err(_) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = tcp_slots.clone().try_acquire_owned() else { continue };
            let s = srv.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // RFC 1035 4.2.2: each message is prefixed by its length. An idle connection is
                // closed, so it cannot hold its slot.
                loop {
                    let Ok(Ok(len)) = tokio::time::timeout(TCP_IDLE, conn.read_u16()).await else { return };
                    let mut q = vec![0u8; len as usize];
                    if !matches!(tokio::time::timeout(TCP_IDLE, conn.read_exact(&mut q)).await, Ok(Ok(_))) {
                        return;
                    }
                    let Some(resp) = s.answer(&q).await else { return };
                    let Ok(len) = u16::try_from(resp.len()) else { return };
                    if conn.write_u16(len).await.is_err() || conn.write_all(&resp).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(DnsHandle { tasks: vec![u.abort_handle(), t.abort_handle()] })
}

/// `4.3.2.1.in-addr.arpa` → 1.2.3.4.
fn reverse_ip(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets: Vec<u8> = rest.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if octets.len() != 4 {
        return None;
    }
    octets.reverse();
    Some(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
}

impl Server {
    /// The reply to one query message; `None` drops it (unparseable).
    async fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::from_vec(query).ok()?;
        if msg.metadata.message_type != MessageType::Query {
            return None;
        }
        let id = msg.metadata.id;
        let mut resp = Message::response(id, msg.metadata.op_code);
        resp.metadata.recursion_desired = msg.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.queries = msg.queries.clone();
        let (Some(q), OpCode::Query, 1) = (msg.queries.first(), msg.metadata.op_code, msg.queries.len()) else {
            resp.metadata.response_code = ResponseCode::NotImp;
            return resp.to_vec().ok();
        };
        let qname = q.name().to_utf8().trim_end_matches('.').to_ascii_lowercase();
        let local = match q.query_type() {
            RecordType::A | RecordType::AAAA | RecordType::ANY => {
                // A known name without an address of the asked family is NODATA, not NXDOMAIN.
                self.names.lookup(&self.asker, &qname).map(|ips| {
                    ips.into_iter()
                        .filter_map(|ip| match (ip, q.query_type()) {
                            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
                            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
                            _ => None,
                        })
                        .map(|d| Record::from_rdata(q.name().clone(), TTL, d))
                        .collect()
                })
            }
            RecordType::PTR => reverse_ip(&qname).and_then(|ip| self.names.reverse(&self.asker, ip)).and_then(|n| {
                let target = Name::from_ascii(format!("{n}.")).ok()?;
                Some(vec![Record::from_rdata(q.name().clone(), TTL, RData::PTR(PTR(target)))])
            }),
            _ => None,
        };
        if let Some(answers) = local {
            resp.metadata.authoritative = true;
            resp.answers = answers;
            return resp.to_vec().ok();
        }
        match self.forward(query).await {
            Some(r) => Some(r),
            None => {
                resp.metadata.response_code = ResponseCode::ServFail;
                resp.to_vec().ok()
            }
        }
    }

    /// Asks each upstream resolver in turn (UDP, 2 s each); the first answer goes back as is.
    async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        for up in &self.upstream {
            let bind: SocketAddr = match up.ip() {
                IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else { continue };
            if sock.send_to(query, up).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok((n, from))) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
                if from == *up && n >= 2 && buf[..2] == query[..2] {
                    buf.truncate(n);
                    return Some(buf);
                }
            }
        }
        None
    }
}

/// Upstream resolvers from a resolv.conf text (port 53); IPv6 and loopback ones included, since
/// forwarding happens in berthd's namespace.
pub fn upstream_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|ip| ip.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    struct Fixed;
    impl Names for Fixed {
        fn lookup(&self, asker: &str, name: &str) -> Option<Vec<IpAddr>> {
            match (asker, name) {
                ("me", "web") => Some(vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, 2))]),
                ("me", "dual") => Some(vec![IpAddr::V4(Ipv4Addr::new(10, 9, 0, 3)), "fd00::3".parse().unwrap()]),
                _ => None,
            }
        }
        fn reverse(&self, _: &str, ip: Ipv4Addr) -> Option<String> {
            (ip == Ipv4Addr::new(10, 9, 0, 2)).then(|| "web".into())
        }
    }

    fn query(name: &str, t: RecordType, id: u16) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.queries.push(Query::query(Name::from_ascii(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn server(upstream: Vec<SocketAddr>) -> Server {
        Server { asker: "me".into(), names: Arc::new(Fixed), upstream }
    }

    #[tokio::test]
    async fn answers_names_reverse_and_nodata() {
        let s = server(vec![]);
        let r = Message::from_vec(&s.answer(&query("web.", RecordType::A, 7)).await.unwrap()).unwrap();
        assert_eq!(r.metadata.id, 7);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 9, 0, 2))));
        let r = Message::from_vec(&s.answer(&query("WEB.", RecordType::AAAA, 8)).await.unwrap()).unwrap();
        assert_eq!((r.metadata.response_code, r.answers.len()), (ResponseCode::NoError, 0));
        let r = Message::from_vec(&s.answer(&query("dual.", RecordType::AAAA, 11)).await.unwrap()).unwrap();
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].data, RData::AAAA(AAAA("fd00::3".parse().unwrap())));
        let r =
            Message::from_vec(&s.answer(&query("2.0.9.10.in-addr.arpa.", RecordType::PTR, 9)).await.unwrap()).unwrap();
        assert_eq!(r.answers[0].data, RData::PTR(PTR(Name::from_ascii("web.").unwrap())));
        // Unknown, with no upstream: SERVFAIL rather than silence.
        let r = Message::from_vec(&s.answer(&query("example.org.", RecordType::A, 10)).await.unwrap()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert!(s.answer(b"garbage").await.is_none());
    }

    #[tokio::test]
    async fn forwards_to_upstream() {
        // A fake upstream that answers every query with one fixed address.
        let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, peer) = up.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::response(q.metadata.id, OpCode::Query);
            r.queries = q.queries.clone();
            r.answers.push(Record::from_rdata(q.queries[0].name().clone(), 60, RData::A(A(Ipv4Addr::new(1, 2, 3, 4)))));
            up.send_to(&r.to_vec().unwrap(), peer).await.unwrap();
        });
        let s = server(vec![addr]);
        let r = Message::from_vec(&s.answer(&query("example.org.", RecordType::A, 11)).await.unwrap()).unwrap();
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(1, 2, 3, 4))));
        assert_eq!(
            upstream_from_resolv_conf("# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch a\n"),
            vec!["127.0.0.53:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
    }

    /// A container flooding its resolver: at most MAX_UDP_IN_FLIGHT forwards (each a task and a
    /// host socket) at once. The upstream here never answers, so every forward holds its slot for
    /// its 2 s timeout: in the first 1.5 s no more than the bound can reach the upstream (before,
    /// every one of the 200 did).
    #[tokio::test]
    async fn a_query_flood_is_bounded() {
        let up = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let upstream = up.local_addr().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let addr = udp.local_addr().unwrap();
        let _h = serve("me".into(), udp, tcp, Arc::new(Fixed), vec![upstream]).unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..200u16 {
            client.send_to(&query(&format!("n{i}.example.org."), RecordType::A, i), addr).await.unwrap();
        }
        let mut buf = [0u8; 512];
        up.recv_from(&mut buf).await.unwrap();
        let mut seen = 1;
        let window = tokio::time::sleep(Duration::from_millis(1500));
        tokio::pin!(window);
        loop {
            tokio::select! {
                r = up.recv_from(&mut buf) => { r.unwrap(); seen += 1; }
                _ = &mut window => break,
            }
        }
        assert!(seen <= MAX_UDP_IN_FLIGHT, "{seen} forwards in flight at once");
    }
}
