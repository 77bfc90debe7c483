//! The TCP connection that `targets::net` dialled and guarded, handed to the `smb` crate as
//! its transport, so that the crate never resolves or dials by itself.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use smb::transport::{SmbTransport, SmbTransportRead, SmbTransportWrite, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The TCP connection the guard made and vetted, as the crate's transport.
pub(super) struct GuardedTcp {
    reader: Option<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
    peer: SocketAddr,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn lost(e: io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::NotConnected => TransportError::NotConnected,
        _ => TransportError::IoError(e),
    }
}

impl SmbTransport for GuardedTcp {
    fn connect<'a>(
        &'a mut self,
        _server_name: &'a str,
        _address: SocketAddr,
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        // Connected by the guard before the crate saw it.
        Box::pin(async { Err(TransportError::AlreadyConnected) })
    }

    fn default_port(&self) -> u16 {
        445
    }

    fn split(
        self: Box<Self>,
    ) -> smb::transport::error::Result<(Box<dyn SmbTransportRead>, Box<dyn SmbTransportWrite>)>
    {
        let peer = self.peer;
        Ok((
            Box::new(GuardedTcp {
                reader: self.reader,
                writer: None,
                peer,
            }),
            Box::new(GuardedTcp {
                reader: None,
                writer: self.writer,
                peer,
            }),
        ))
    }

    fn remote_address(&self) -> smb::transport::error::Result<SocketAddr> {
        Ok(self.peer)
    }
}

impl SmbTransportRead for GuardedTcp {
    fn receive_exact<'a>(
        &'a mut self,
        out: &'a mut [u8],
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        Box::pin(async move {
            let r = self.reader.as_mut().ok_or(TransportError::NotConnected)?;
            r.read_exact(out).await.map(|_| ()).map_err(lost)
        })
    }
}

impl SmbTransportWrite for GuardedTcp {
    fn send_raw<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> BoxFuture<'a, smb::transport::error::Result<()>> {
        Box::pin(async move {
            let w = self.writer.as_mut().ok_or(TransportError::NotConnected)?;
            w.write_all(buf).await.map_err(lost)
        })
    }
}

impl GuardedTcp {
    /// Wraps a connected, guarded stream.
    pub(super) fn new(tcp: tokio::net::TcpStream) -> io::Result<GuardedTcp> {
        let peer = tcp.peer_addr()?;
        let (r, w) = tcp.into_split();
        Ok(GuardedTcp {
            reader: Some(r),
            writer: Some(w),
            peer,
        })
    }
}
