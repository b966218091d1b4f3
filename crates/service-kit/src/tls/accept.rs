//! Accepting gRPC connections: plaintext, or TLS handshakes run concurrently off the accept
//! loop (a slow or hostile client cannot hold up the others), each bounded in time, in number
//! and in number per peer address; the accept loop itself never waits for a handshake.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::either::Either;
use tonic::transport::server::Connected;

use super::{HANDSHAKE_TIMEOUT, ServerTls, cert_identity};
use crate::connections::{Counted, counted};

/// Handshakes in progress at once over every peer. A connection beyond it is closed at once:
/// the accept loop never waits, so sockets that never send a ClientHello cannot hold up the
/// connections behind them in the kernel's queue.
const MAX_HANDSHAKES: usize = 1024;

/// Handshakes in progress at once from one peer address: one host cannot take the whole pool.
const MAX_HANDSHAKES_PER_PEER: usize = 16;

/// Handshakes in progress, in all and by peer address.
#[derive(Default)]
struct Handshakes {
    total: usize,
    by_peer: std::collections::HashMap<std::net::IpAddr, usize>,
}

/// A handshake's place in [`Handshakes`], given back when dropped.
struct Slot {
    table: Arc<std::sync::Mutex<Handshakes>>,
    peer: Option<std::net::IpAddr>,
}

impl Slot {
    /// A place for a handshake from `peer`, unless the pool or the peer's share is full.
    fn take(
        table: &Arc<std::sync::Mutex<Handshakes>>,
        peer: Option<std::net::IpAddr>,
    ) -> Option<Self> {
        let mut t = table.lock().expect("handshakes lock");
        if t.total >= MAX_HANDSHAKES {
            return None;
        }
        if let Some(ip) = peer {
            let mine = t.by_peer.entry(ip).or_default();
            if *mine >= MAX_HANDSHAKES_PER_PEER {
                return None;
            }
            *mine += 1;
        }
        t.total += 1;
        Some(Self {
            table: table.clone(),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock().expect("handshakes lock");
        t.total -= 1;
        if let Some(ip) = self.peer
            && let Some(n) = t.by_peer.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                t.by_peer.remove(&ip);
            }
        }
    }
}

/// What the service knows about a connection's peer (a request extension).
#[derive(Debug, Clone, Default)]
pub struct PeerInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The identity named by a verified client certificate (mutual TLS).
    pub cert_identity: Option<Arc<str>>,
    /// Whether the peer presented a verified client certificate, whether or not it names an
    /// identity: one that names none is not an anonymous caller.
    pub client_certificate: bool,
}

/// An accepted connection, plaintext or TLS.
pub struct Conn {
    io: Either<Counted, Box<TlsStream<Counted>>>,
    info: PeerInfo,
}

/// The stream of connections to serve: plaintext when `tls` is `None`.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
) -> Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>> {
    let plain = counted(TcpListenerStream::new(listener));
    let Some(tls) = tls else {
        return Box::pin(plain.map(|conn| {
            conn.map(|io| {
                let info = PeerInfo {
                    remote_addr: io.peer_addr(),
                    cert_identity: None,
                    client_certificate: false,
                };
                Conn {
                    io: Either::Left(io),
                    info,
                }
            })
        }));
    };
    let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
    let handshakes = Arc::new(std::sync::Mutex::new(Handshakes::default()));
    tokio::spawn(async move {
        let mut plain = Box::pin(plain);
        while let Some(conn) = plain.next().await {
            let io = match conn {
                Ok(io) => io,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            };
            let remote_addr = io.peer_addr();
            let Some(slot) = Slot::take(&handshakes, remote_addr.map(|a| a.ip())) else {
                handshake_failed(
                    "too many handshakes in progress (from this peer or in all); connection closed",
                );
                continue;
            };
            let acceptor = TlsAcceptor::from(tls.config());
            let tx = tx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(stream)) => {
                        let leaf = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first());
                        let client_certificate = leaf.is_some();
                        let cert_identity = leaf.and_then(cert_identity);
                        let conn = Conn {
                            io: Either::Right(Box::new(stream)),
                            info: PeerInfo {
                                remote_addr,
                                cert_identity,
                                client_certificate,
                            },
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => handshake_failed(&e.to_string()),
                    Err(_) => handshake_failed("timed out"),
                }
            });
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

fn handshake_failed(why: &str) {
    metrics::counter!("grpc_tls_handshake_failures_total").increment(1);
    tracing::debug!(error = why, "tls handshake failed");
}

impl Conn {
    /// The peer's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.info.remote_addr
    }
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
