//! The blocking face of an async client: a current-thread tokio runtime owned by one
//! target, and [`Blocking::run`], which drives one operation to completion on it within a
//! time limit. The [`Target`](super::Target), [`Upload`](super::Upload) and `Read` calls of
//! the smb and nfs transports go through it, so no runtime leaks out of a target module and
//! every timeout becomes the same [`TargetError::Timeout`]: the target's URL, the
//! operation, and the configured `timeout_secs`.

use std::future::Future;
use std::time::Duration;

use super::{Retry, TargetError};

/// A target's runtime, its URL (for errors), its network timeout, and the limit of one
/// operation (by default the timeout).
pub(crate) struct Blocking {
    rt: tokio::runtime::Runtime,
    url: String,
    timeout: Duration,
    limit: Duration,
}

impl Blocking {
    /// Starts the runtime of the target `url` (`client` names it in an error, e.g. "SMB");
    /// `timeout` is the target's configured network timeout.
    pub fn new(url: &str, client: &str, timeout: Duration) -> Result<Blocking, TargetError> {
        Self::build(
            url,
            client,
            timeout,
            tokio::runtime::Builder::new_current_thread(),
        )
    }

    /// As [`Blocking::new`], with one worker thread that keeps the client's own tasks
    /// (sending queued requests, reading answers) going between the blocking calls.
    #[cfg_attr(not(feature = "target-ssh"), allow(dead_code))]
    pub fn with_worker(
        url: &str,
        client: &str,
        timeout: Duration,
    ) -> Result<Blocking, TargetError> {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(1).thread_name("offbox-net");
        Self::build(url, client, timeout, b)
    }

    fn build(
        url: &str,
        client: &str,
        timeout: Duration,
        mut builder: tokio::runtime::Builder,
    ) -> Result<Blocking, TargetError> {
        let rt = builder
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| TargetError::Io {
                target: url.to_string(),
                op: format!("starting the {client} client runtime"),
                detail: e.to_string(),
                retry: Retry::Temporary,
            })?;
        Ok(Blocking {
            rt,
            url: url.to_string(),
            timeout,
            limit: timeout,
        })
    }

    /// Bounds each [`Blocking::run`] by `limit` instead of the timeout, for a client that
    /// times out each request itself (an operation may take a few requests).
    pub(crate) fn with_limit(mut self, limit: Duration) -> Blocking {
        self.limit = limit;
        self
    }

    /// The configured network timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The target URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `fut` to completion within the operation limit; see [`Blocking::run_for`].
    pub fn run<T>(
        &self,
        op: &str,
        fut: impl Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        self.run_for(op, self.limit, fut)
    }

    /// Runs `fut` to completion, for at most `limit`; past it, the operation `op` fails
    /// with [`TargetError::Timeout`] naming the configured timeout.
    pub(crate) fn run_for<T>(
        &self,
        op: &str,
        limit: Duration,
        fut: impl Future<Output = Result<T, TargetError>>,
    ) -> Result<T, TargetError> {
        // Timers need the runtime in context even before `block_on` polls them.
        let _g = self.rt.enter();
        match self.rt.block_on(tokio::time::timeout(limit, fut)) {
            Ok(r) => r,
            Err(_) => Err(TargetError::Timeout {
                target: self.url.clone(),
                op: op.to_string(),
                secs: self.timeout.as_secs(),
            }),
        }
    }

    /// Runs `fut` to completion with no limit of its own (its steps carry their own
    /// timeouts, as [`super::net::connect_async`] does).
    pub(crate) fn block_on<T>(&self, fut: impl Future<Output = T>) -> T {
        let _g = self.rt.enter();
        self.rt.block_on(fut)
    }

    /// Enters the runtime, for code that drops handles whose `Drop` spawns a task.
    pub(crate) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.rt.enter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_operation_is_a_timeout_error() {
        let b = Blocking::new("nfs://h/e", "test", Duration::from_secs(7)).unwrap();
        let e = b
            .run_for("READ", Duration::from_millis(20), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(())
            })
            .unwrap_err();
        assert!(
            matches!(&e, TargetError::Timeout { op, secs: 7, .. } if op == "READ"),
            "{e}"
        );
        assert_eq!(e.retry(), Retry::Temporary);
        assert_eq!(b.run("x", async { Ok(5) }).unwrap(), 5);
        let b = b.with_limit(Duration::from_millis(10));
        let e = b
            .run("WRITE", std::future::pending::<Result<(), TargetError>>())
            .unwrap_err();
        assert!(e.to_string().contains("WRITE timed out after 7s"), "{e}");
        assert_eq!(b.block_on(async { 6 }), 6);
    }
}
