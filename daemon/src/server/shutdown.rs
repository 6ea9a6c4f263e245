//! A one-way "stop now" flag that any task can raise and any task can await.
//!
//! Exists so that SIGINT, SIGTERM and a client's `Shutdown` message all end the daemon the same
//! way: they raise the flag, the accept loop sees it and runs the orderly shutdown in
//! `server::serve`. The same type is used a second time to tell every connection to close once
//! the job queue has been drained.

use std::sync::Arc;

use tokio::sync::watch;

/// Cheap to clone; every clone sees the same flag. Once raised it stays raised.
#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            flag: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Raises the flag (idempotent).
    pub fn trigger(&self) {
        self.flag.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.flag.borrow()
    }

    /// Resolves once the flag is raised (at once if it already is). Cancel-safe.
    pub async fn wait(&self) {
        let mut rx = self.flag.subscribe();
        // The sender lives in `self`, so this cannot fail.
        let _ = rx.wait_for(|raised| *raised).await;
    }

    /// Raises the flag on SIGINT or SIGTERM (Ctrl+C on Windows). Must be called inside a tokio
    /// runtime.
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        let this = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                tracing::info!(signal = name, "shutting down");
                this.trigger();
            });
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::info!("Ctrl+C: shutting down");
                    this.trigger();
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_after_trigger() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        s.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("wait resolved")
            .unwrap();
        // Already raised: resolves at once.
        s.wait().await;
        assert!(s.is_triggered());
    }
}
