//! Counts live gRPC connections: each accepted socket raises a gauge until it is dropped.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Idle time before the kernel probes an accepted connection.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(60);
/// Time between keepalive probes.
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// Unanswered probes after which the connection is closed.
const KEEPALIVE_RETRIES: u32 = 3;

/// A socket that is counted in `grpc_connections` while it lives.
pub struct Counted(TcpStream);

/// Wraps accepted sockets so the gauge follows them.
pub fn counted(
    incoming: impl Stream<Item = io::Result<TcpStream>>,
) -> impl Stream<Item = io::Result<Counted>> {
    incoming.map(|conn| {
        conn.map(|stream| {
            let _ = stream.set_nodelay(true);
            // A caller that vanishes without a FIN or RST (a client host gone, a NAT entry
            // dropped) is found by the kernel instead of holding its connection for hours.
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(
                &socket2::TcpKeepalive::new()
                    .with_time(KEEPALIVE_IDLE)
                    .with_interval(KEEPALIVE_INTERVAL)
                    .with_retries(KEEPALIVE_RETRIES),
            );
            metrics::gauge!("grpc_connections").increment(1.0);
            Counted(stream)
        })
    })
}

impl Counted {
    /// The peer's address, if the socket still knows it.
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.peer_addr().ok()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("grpc_connections").decrement(1.0);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
