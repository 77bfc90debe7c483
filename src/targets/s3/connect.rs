//! The guarded TCP connector of the S3 client: the first link of ureq's connector chain
//! (TLS, ureq's rustls connector, comes after it).
//!
//! ureq hands it the addresses that the resolver returned, and the resolver is the guard
//! ([`super::client`]); this connector dials them through [`net::connect_addrs`], which
//! checks the connected socket's peer again, as every other transport does. So a
//! connection whose peer is this appliance is closed before a byte of HTTP is sent,
//! whatever a resolver said. The socket is then a plain ureq [`Transport`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};

use crate::guard::SelfIdentity;
use crate::targets::net;

/// Connects through the guard, then checks the peer.
#[derive(Debug)]
pub(super) struct GuardedTcp {
    pub(super) me: SelfIdentity,
    /// The target URL, for messages.
    pub(super) target: String,
    /// Connection timeout per address.
    pub(super) timeout: Duration,
}

impl Connector<()> for GuardedTcp {
    type Out = GuardedStream;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _: Option<()>,
    ) -> Result<Option<GuardedStream>, ureq::Error> {
        let addrs: Vec<SocketAddr> = details.addrs.iter().copied().collect();
        let stream = net::connect_addrs(&self.me, &self.target, &addrs, self.timeout)
            .map_err(|e| ureq::Error::Io(e.into_io()))?;
        stream.set_nodelay(true).ok();
        let config = details.config;
        let out = GuardedStream {
            stream: Arc::new(Shared(stream)),
            buffers: LazyBuffers::new(config.input_buffer_size(), config.output_buffer_size()),
            read_timeout: None,
            write_timeout: None,
        };
        let handle: Weak<dyn ShutdownHandle> = Arc::downgrade(&out.stream) as _;
        (details.register_shutdown)(handle)?;
        Ok(Some(out))
    }
}

/// The socket, shared with ureq's shutdown handle.
#[derive(Debug)]
struct Shared(TcpStream);

impl ShutdownHandle for Shared {
    fn shutdown(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// A connected, guarded socket as a ureq transport.
#[derive(Debug)]
pub(super) struct GuardedStream {
    stream: Arc<Shared>,
    buffers: LazyBuffers,
    /// The timeouts last set on the socket (set again only when they change).
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// ureq's timeout for this step: the error once it is spent, else what to set.
fn budget(t: NextTimeout) -> Result<Option<Duration>, ureq::Error> {
    if t.after.is_zero() {
        return Err(ureq::Error::Timeout(t.reason));
    }
    Ok(t.not_zero().map(|d| *d))
}

/// An I/O error, with a timed-out socket as ureq's timeout.
fn io_error(e: io::Error, t: NextTimeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(t.reason),
        _ => ureq::Error::Io(e),
    }
}

impl Transport for GuardedStream {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let t = timeout.for_write();
        let d = budget(t)?;
        let s = &self.stream.0;
        if d != self.write_timeout {
            s.set_write_timeout(d)?;
            self.write_timeout = d;
        }
        let out = &self.buffers.output()[..amount];
        (&*s).write_all(out).map_err(|e| io_error(e, t))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let t = timeout.for_read();
        let d = budget(t)?;
        let s = &self.stream.0;
        if d != self.read_timeout {
            s.set_read_timeout(d)?;
            self.read_timeout = d;
        }
        let buf = self.buffers.input_append_buf();
        let n = loop {
            match (&*s).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| io_error(e, t))?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        // Open: nothing to read without blocking (a pooled connection the server closed
        // reads as end of file, or an error).
        let s = &self.stream.0;
        if s.set_nonblocking(true).is_err() {
            return false;
        }
        let mut one = [0u8; 1];
        let open = matches!((&*s).read(&mut one), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).is_ok() && open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::TargetError;
    use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};

    /// A resolver that answers with one fixed address, unchecked: a DNS answer that
    /// changed between the guard's check and the connection.
    #[derive(Debug)]
    struct Lying(SocketAddr);

    impl Resolver for Lying {
        fn resolve(
            &self,
            _: &ureq::http::Uri,
            _: &ureq::config::Config,
            _: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            let mut v = self.empty();
            v.push(self.0);
            Ok(v)
        }
    }

    #[test]
    fn a_peer_that_is_this_appliance_gets_no_request() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let got = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            buf.len()
        });
        let connector = GuardedTcp {
            me: SelfIdentity::load(),
            target: "s3://bkt".into(),
            timeout: Duration::from_secs(5),
        };
        let agent = ureq::Agent::with_parts(
            ureq::Agent::config_builder().proxy(None).build(),
            connector,
            Lying(addr),
        );
        let e = agent
            .get("http://s3.example.invalid/bkt/")
            .call()
            .unwrap_err();
        let ureq::Error::Io(io) = e else {
            panic!("{e}")
        };
        let t = TargetError::find(&io).expect("the guard's refusal");
        assert!(matches!(t, TargetError::Refused(_)), "{t}");
        assert!(t.to_string().contains("connected peer 127.0.0.1"), "{t}");
        assert_eq!(got.join().unwrap(), 0, "no byte of HTTP was sent");
    }
}
