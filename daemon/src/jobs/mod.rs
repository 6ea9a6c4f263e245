//! Generation jobs: who asked for what, on which model, in which order the GPU runs them, and
//! who gets told.
//!
//! Exists because each engine is one stateful object that must run one job at a time on one OS
//! thread, while any number of connections submit, cancel and abandon jobs concurrently. The
//! connection side talks to a [`JobQueue`] (`queue`: ordering, per-client coalescing of
//! live previews, cancellation, status counters) and resolves each request's model in the
//! [`ModelSet`] (`models`: the catalog, residency within a [`MemoryBudget`] (`budget`), loading on
//! first use on a thread of its own); a single worker thread (`worker`) takes the first job whose
//! model is resident and drives that model's [`crate::generator::ImageGenerator`]. Replies go
//! straight from the queue, the loader or the worker into the submitting connection's [`Outbox`].

mod budget;
mod models;
mod outbox;
mod queue;
mod worker;

use livefill_protocol::{DaemonMessage, ErrorCode, ErrorReply, GenerateRequest};

use crate::noise::random_seed;

pub use budget::{BudgetParseError, MemoryBudget, MemoryDevice, free_device_memory};
pub use models::{Catalog, ChoiceError, ModelEntry, ModelSet, Residency, role_of};
pub use outbox::{Outbox, OutboxReceiver, PREVIEW_DROP_BYTES, Written};
pub use queue::{JobQueue, MAX_QUEUED_FINAL_PER_CLIENT, QueueStatus, SubmitError};
pub use worker::{WorkerHandle, spawn_worker};

/// Identifies one client connection for the lifetime of the daemon.
pub type ConnectionId = u64;

/// Request ids are chosen by clients and unique only per connection, so jobs are keyed by both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobKey {
    pub connection: ConnectionId,
    pub request_id: u64,
}

/// One accepted generate request, ready to queue.
#[derive(Debug)]
pub struct Job {
    pub key: JobKey,
    /// The client's name from its hello, for logs.
    pub client: String,
    pub request: GenerateRequest,
    /// The model it runs on (resolved before queueing: the request's, or its role's).
    pub model: String,
    /// Resolved before queueing (`request.seed` or a random one) and reported in the result.
    pub seed: u64,
    pub outbox: Outbox,
}

impl Job {
    pub fn new(
        connection: ConnectionId,
        client: impl Into<String>,
        request: GenerateRequest,
        model: impl Into<String>,
        outbox: Outbox,
    ) -> Self {
        let seed = request.seed.unwrap_or_else(random_seed);
        Self {
            key: JobKey {
                connection,
                request_id: request.request_id,
            },
            client: client.into(),
            request,
            model: model.into(),
            seed,
            outbox,
        }
    }

    /// Sends `msg` to the job's client; a client that has gone away is not an error.
    fn send(&self, msg: DaemonMessage) {
        let _ = self.outbox.send(msg);
    }

    fn send_error(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(DaemonMessage::Error(ErrorReply::for_request(
            self.key.request_id,
            code,
            message,
        )));
    }
}
