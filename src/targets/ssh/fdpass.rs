//! Handing a connected socket to OpenSSH's `ssh` (`ProxyUseFdpass`), so that offbox dials
//! every connection itself, through the guard, and `ssh` only speaks SSH over it.
//!
//! `ssh` closes every inherited descriptor above stderr when it starts, so the socket
//! travels over a Unix socket instead: offbox listens in a directory of its own (mode 0700)
//! and starts `ssh` with `ProxyCommand` = `offbox ssh-fdpass SOCKET`. That helper (run by
//! `ssh`, its standard output a socket pair) connects, receives the descriptor
//! (SCM_RIGHTS), and passes it on to `ssh` over its standard output, as `ProxyUseFdpass`
//! expects. offbox accepts only a peer of its own user, one connection, before a deadline.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    getsockopt, recvmsg, sendmsg, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr,
};

/// The listening end, in a private directory removed on drop.
pub(super) struct Handoff {
    dir: PathBuf,
    socket: PathBuf,
    listener: UnixListener,
}

impl Handoff {
    /// A fresh private directory under the temporary directory, and the socket in it.
    ///
    /// Its name is unpredictable (so that no other user can take it first) but no secret,
    /// so it comes from the kernel's generator: the first draw from the crypto provider's
    /// generator seeds it from CPU jitter, tens of milliseconds that would delay the start
    /// of `ssh` (the main thread pays them meanwhile, while `ssh` connects).
    pub(super) fn new() -> io::Result<Handoff> {
        let mut r = [0u8; 8];
        let mut got = 0;
        while got < r.len() {
            got += rustix::rand::getrandom(&mut r[got..], rustix::rand::GetRandomFlags::empty())?;
        }
        let dir =
            std::env::temp_dir().join(format!("offbox-ssh.{}", data_encoding::HEXLOWER.encode(&r)));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let socket = dir.join("fd");
        let listener = UnixListener::bind(&socket).inspect_err(|_| {
            let _ = std::fs::remove_dir(&dir);
        })?;
        listener.set_nonblocking(true)?;
        Ok(Handoff {
            dir,
            socket,
            listener,
        })
    }

    /// The socket the helper connects to.
    pub(super) fn socket(&self) -> &Path {
        &self.socket
    }

    /// Waits (until `deadline`, or until `gone` says the `ssh` process ended) for the
    /// helper, checks that it runs as this user, and sends it `tcp`'s descriptor.
    pub(super) fn give(
        &self,
        tcp: &TcpStream,
        deadline: Instant,
        mut gone: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let peer = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if gone() {
                        return Err(io::Error::other("ssh ended before it took the connection"));
                    }
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "ssh did not take the connection in time",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(e),
            }
        };
        peer.set_nonblocking(false)?;
        let cred = getsockopt(&peer, sockopt::PeerCredentials).map_err(io::Error::from)?;
        if cred.uid() != nix::unistd::geteuid().as_raw() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "a process of user {} connected to offbox's hand-off socket",
                    cred.uid()
                ),
            ));
        }
        send_fd(peer.as_raw_fd(), tcp.as_raw_fd())
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Sends `fd` over the Unix socket `over`, with one byte of data.
fn send_fd(over: RawFd, fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let iov = [IoSlice::new(b"\0")];
    sendmsg::<UnixAddr>(
        over,
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}

/// Receives one descriptor sent by [`send_fd`] over the Unix socket `over`.
fn recv_fd(over: RawFd) -> io::Result<RawFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<UnixAddr>(over, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut got = None;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            got = fds.first().copied();
        }
    }
    got.ok_or_else(|| io::Error::other("offbox sent no connection"))
}

/// The helper (`offbox ssh-fdpass SOCKET`, started by `ssh` as its `ProxyCommand`):
/// receives the connected socket from offbox and passes it to `ssh` on standard output.
pub fn relay(socket: &Path) -> io::Result<()> {
    let s = UnixStream::connect(socket)?;
    let fd = recv_fd(s.as_raw_fd())?;
    // The descriptor stays open until this process exits, right after.
    send_fd(io::stdout().as_raw_fd(), fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_socket_travels_to_the_helper_and_on() {
        let h = Handoff::new().unwrap();
        let tcp_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(tcp_l.local_addr().unwrap()).unwrap();
        let (mut server, _) = tcp_l.accept().unwrap();
        // The helper's side, with a socket pair as its "standard output": receive, then
        // pass on as `relay` does.
        let path = h.socket().to_path_buf();
        let (ours, theirs) = UnixStream::pair().unwrap();
        let helper = std::thread::spawn(move || {
            let s = UnixStream::connect(&path).unwrap();
            let fd = recv_fd(s.as_raw_fd()).unwrap();
            send_fd(theirs.as_raw_fd(), fd).unwrap();
        });
        h.give(&tcp, Instant::now() + Duration::from_secs(5), || false)
            .unwrap();
        helper.join().unwrap();
        // What arrives at "ssh" is the connection.
        let fd = recv_fd(ours.as_raw_fd()).unwrap();
        // It is the same socket as offbox's connection (same inode), still open here.
        let ino = |fd: RawFd| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        assert_eq!(ino(fd), ino(tcp.as_raw_fd()));
        assert_ne!(fd, tcp.as_raw_fd());
        // offbox's own copy closes; the connection lives on in the passed descriptor.
        drop(tcp);
        server.write_all(b"x").unwrap();
        drop(h);
    }

    #[test]
    fn no_helper_is_a_timeout_and_the_directory_goes() {
        let h = Handoff::new().unwrap();
        let dir = h.dir.clone();
        let tcp_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(tcp_l.local_addr().unwrap()).unwrap();
        let e = h
            .give(&tcp, Instant::now() + Duration::from_millis(50), || false)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = h
            .give(&tcp, Instant::now() + Duration::from_secs(5), || true)
            .unwrap_err();
        assert!(e.to_string().contains("ssh ended"), "{e}");
        drop(h);
        assert!(!dir.exists());
    }
}
