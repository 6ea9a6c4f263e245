//! The daemon's server: accepts plugin connections on a local socket and feeds the job queue.
//!
//! Exists to tie the pieces together and own the daemon's lifecycle: `listener` owns the socket
//! address (permissions, stale sockets, peer checks), `connection` speaks the protocol with one
//! client, `shutdown` is the stop flag, and [`serve`] runs the accept loop and the orderly
//! shutdown (stop accepting and remove the socket, fail or cancel every job, tell every client
//! `ShuttingDown`, close). Generation itself runs on the worker thread of [`crate::jobs`].

mod connection;
mod limits;
mod listener;
mod shutdown;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livefill_protocol::{DaemonMessage, DaemonStatus};
use tokio::task::JoinSet;

pub use limits::{DEFAULT_MAX_CLIENTS, FRAME_TIMEOUT, HELLO_TIMEOUT, ServerLimits};
pub use listener::{BindError, SocketListener};
pub use shutdown::Shutdown;

use crate::generator::GeneratorInfo;
use crate::jobs::{Catalog, ConnectionId, JobQueue, ModelSet, Outbox, spawn_worker};

/// How long shutdown waits for the running job to reach a step boundary.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for connections to flush their last messages.
const CONNECTION_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Server settings that are not the socket or the generator.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest accepted frame payload in bytes (checked from the header, before allocating).
    pub max_frame_bytes: u32,
    /// Largest accepted image side in pixels (announced in the hello, checked per request).
    pub max_image_side: u32,
    pub limits: ServerLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot start the job worker thread: {0}")]
    Worker(#[source] std::io::Error),
    #[error("cannot start the model loader thread: {0}")]
    Loader(#[source] std::io::Error),
}

/// State shared by the accept loop and every connection.
pub(crate) struct Context {
    queue: JobQueue,
    /// The default model's description (the hello; device and provider for status).
    info: GeneratorInfo,
    models: ModelSet,
    max_frame_bytes: u32,
    max_image_side: u32,
    started: Instant,
    clients: Mutex<HashMap<ConnectionId, Outbox>>,
    /// Clients let in past their hello (at most `limits.max_clients`).
    greeted: AtomicU32,
    limits: ServerLimits,
    shutdown: Shutdown,
}

impl Context {
    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Outbox>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, id: ConnectionId, outbox: Outbox) {
        self.clients().insert(id, outbox);
    }

    fn unregister(&self, id: ConnectionId) {
        self.clients().remove(&id);
    }

    /// Lets one more client in, unless the daemon serves `max_clients` already.
    fn join(&self) -> bool {
        let max = self.limits.max_clients;
        self.greeted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// A client let in by [`Context::join`] left.
    fn leave(&self) {
        self.greeted.fetch_sub(1, Ordering::SeqCst);
    }

    fn broadcast(&self, msg: &DaemonMessage) {
        for outbox in self.clients().values() {
            let _ = outbox.send(msg.clone());
        }
    }

    fn status(&self) -> DaemonStatus {
        let queue = self.queue.status();
        let residency = self.models.residency();
        DaemonStatus {
            model: self.info.model.clone(),
            device: self.info.device.clone(),
            execution_provider: self.info.execution_provider.clone(),
            queued_jobs: queue.queued,
            running_request: queue.running_request,
            connected_clients: self.clients().len() as u32,
            jobs_completed: queue.completed,
            uptime_ms: self.started.elapsed().as_millis() as u64,
            resident_bytes: residency.resident_bytes,
            budget_bytes: residency.budget_bytes,
            max_resident_models: residency.max_resident_models,
            loading_model: residency.loading_model,
        }
    }
}

/// Serves `listener` with the models of `catalog` until `shutdown` is raised (by a signal handler the caller
/// installed, or by a client's `Shutdown` message), then shuts down in order and returns. The
/// socket file is gone when this returns.
pub async fn serve(
    listener: SocketListener,
    catalog: Catalog,
    options: ServerOptions,
    shutdown: Shutdown,
) -> Result<(), ServerError> {
    let queue = JobQueue::new();
    let models = ModelSet::start(catalog, queue.clone()).map_err(ServerError::Loader)?;
    let info = models.default_info();
    let worker = spawn_worker(models.clone(), queue.clone()).map_err(ServerError::Worker)?;
    let ctx = Arc::new(Context {
        queue: queue.clone(),
        info,
        models,
        max_frame_bytes: options.max_frame_bytes,
        max_image_side: options.max_image_side,
        started: Instant::now(),
        clients: Mutex::new(HashMap::new()),
        greeted: AtomicU32::new(0),
        limits: options.limits,
        shutdown: shutdown.clone(),
    });
    let closing = Shutdown::new();
    let mut connections = JoinSet::new();
    let mut next_id: ConnectionId = 0;
    tracing::info!(socket = %listener.path().display(), "ready");

    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) if connections.len() >= limits::MAX_OPEN_CONNECTIONS => {
                    tracing::warn!(open = connections.len(), "too many open connections: closing a new one");
                    drop(stream);
                }
                Ok(stream) => {
                    next_id += 1;
                    connections.spawn(connection::serve_connection(
                        ctx.clone(),
                        next_id,
                        stream,
                        closing.clone(),
                    ));
                }
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a connection task failed");
                }
            }
        }
    }

    tracing::info!("shutting down");
    let path = listener.path().to_path_buf();
    // Dropping the listener removes the socket file (interprocess' name reclamation).
    drop(listener);
    queue.shutdown();
    let stopped = tokio::task::spawn_blocking(move || worker.join_timeout(WORKER_STOP_TIMEOUT))
        .await
        .unwrap_or(false);
    if !stopped {
        tracing::warn!("the running job did not stop in time; exiting anyway");
    }
    ctx.broadcast(&DaemonMessage::ShuttingDown);
    closing.trigger();
    let all_closed = tokio::time::timeout(CONNECTION_CLOSE_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if all_closed.is_err() {
        tracing::warn!("some connections did not close in time");
        connections.abort_all();
    }
    tracing::info!(socket = %path.display(), "stopped");
    Ok(())
}
