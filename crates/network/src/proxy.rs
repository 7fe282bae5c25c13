//! Port publishing through a userland proxy, as docker-proxy does: a listener on the host address
//! that forwards each TCP connection (or UDP datagram flow) to the container's address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use berth_types::{Error, Result};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops listening.
pub struct Proxy {
    task: JoinHandle<()>,
    pub host: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Docker's words for a host port that cannot be had; the start wraps them with the endpoint.
fn bind_err(addr: SocketAddr, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        return Error::internal(format!("Bind for {addr} failed: port is already allocated"));
    }
    Error::internal(format!("Bind for {addr} failed: {e}"))
}

/// Listens on `host` (port 0: an ephemeral one) and forwards to `target`.
pub async fn publish(proto: &str, host: SocketAddr, target: SocketAddr) -> Result<Proxy> {
    match proto {
        "tcp" | "" => {
            let l = TcpListener::bind(host).await.map_err(|e| bind_err(host, e))?;
            let host = l.local_addr()?;
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = l.accept().await else { continue };
                    tokio::spawn(async move {
                        if let Ok(mut out) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                }
            });
            Ok(Proxy { task, host })
        }
        "udp" => {
            let sock = Arc::new(UdpSocket::bind(host).await.map_err(|e| bind_err(host, e))?);
            let host = sock.local_addr()?;
            let task = tokio::spawn(udp_loop(sock, target));
            Ok(Proxy { task, host })
        }
        other => Err(Error::invalid(format!("invalid protocol {other:?}: use tcp or udp"))),
    }
}

/// One upstream socket per client address; replies go back to that client.
async fn udp_loop(sock: Arc<UdpSocket>, target: SocketAddr) {
    let mut flows: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, client)) = sock.recv_from(&mut buf).await else { continue };
        let up = match flows.get(&client) {
            Some(u) => u.clone(),
            None => {
                let Ok(u) = UdpSocket::bind("0.0.0.0:0").await else { continue };
                if u.connect(target).await.is_err() {
                    continue;
                }
                let u = Arc::new(u);
                let (back, reply) = (sock.clone(), u.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(90), reply.recv(&mut b)).await {
                        let _ = back.send_to(&b[..n], client).await;
                    }
                });
                flows.insert(client, u.clone());
                u
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_tcp_on_loopback() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).await.unwrap();
            s.write_all(&b).await.unwrap();
        });
        let p = publish("tcp", "127.0.0.1:0".parse().unwrap(), target).await.unwrap();
        let mut c = TcpStream::connect(p.host).await.unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"hello");
        let addr = p.host;
        drop(p);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(addr).await.is_err(), "dropping the proxy stops it");
    }
}
