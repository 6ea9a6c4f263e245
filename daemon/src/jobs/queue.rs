//! The job queue shared by every connection and the worker thread.
//!
//! Exists to hold the scheduling rules in one place, behind one lock:
//!
//! * jobs run one at a time in arrival order (final jobs are never dropped or reordered);
//! * live previews are coalesced per connection: a newer live request takes the place of that
//!   connection's pending live request (which is answered `Superseded`) and cancels its running
//!   live request at the next step boundary (answered `Superseded` by the worker);
//! * `Cancel` removes a pending job at once (answered `Error{Cancelled}`) or cancels the running
//!   one at the next step;
//! * a connection that goes away has its jobs dropped (pending) or cancelled (running);
//! * shutdown fails everything with `Error{ShuttingDown}` and stops the worker.
//!
//! Every reply that must precede the job's later messages (`Accepted`, `Superseded`) is pushed
//! into the outbox while the lock is held, so the worker can never overtake it.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use livefill_protocol::{DaemonMessage, ErrorCode, Priority};

use super::{ConnectionId, Job, JobKey};
use crate::generator::CancelToken;

/// Final jobs one connection may have waiting (not counting its running one); the next is
/// refused with `QueueFull`. Live previews are coalesced to one waiting per connection.
pub const MAX_QUEUED_FINAL_PER_CLIENT: usize = 16;

/// Why a generate request was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    #[error("request id {0} is already in use by an unfinished request on this connection")]
    DuplicateRequest(u64),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error(
        "this client already has {0} jobs waiting (the most the daemon queues for one client): \
         wait for one to finish, or cancel one"
    )]
    QueueFull(usize),
}

impl SubmitError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SubmitError::DuplicateRequest(_) => ErrorCode::InvalidRequest,
            SubmitError::ShuttingDown => ErrorCode::ShuttingDown,
            SubmitError::QueueFull(_) => ErrorCode::QueueFull,
        }
    }
}

/// Counters for `DaemonStatus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStatus {
    /// Jobs waiting (not counting the running one).
    pub queued: u32,
    /// Request id of the job on the device, if any.
    pub running_request: Option<u64>,
    /// Jobs that ended with a result.
    pub completed: u64,
}

/// How a running job's end is to be reported when the engine returns `Cancelled`, decided by
/// whoever cancelled it. The first reason wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Superseded { by_request_id: u64 },
    Cancelled,
    Disconnected,
    ShuttingDown,
}

struct Pending {
    job: Job,
    cancel: CancelToken,
}

struct Running {
    key: JobKey,
    priority: Priority,
    cancel: CancelToken,
    stop: Option<StopReason>,
}

impl Running {
    fn stop(&mut self, reason: StopReason) {
        if self.stop.is_none() {
            self.stop = Some(reason);
        }
        self.cancel.cancel();
    }
}

#[derive(Default)]
struct State {
    pending: VecDeque<Pending>,
    running: Option<Running>,
    completed: u64,
    shutting_down: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// Cheap to clone: every clone is the same queue.
#[derive(Clone)]
pub struct JobQueue {
    shared: Arc<Shared>,
}

impl Default for JobQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl JobQueue {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (jobs run outside it), but do not let a
        // poisoned lock take the daemon down regardless.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `job`, sends it `Accepted{queue_position}` (0 = runs next) and applies live-preview
    /// coalescing. Returns the queue position.
    pub fn submit(&self, job: Job) -> Result<u32, SubmitError> {
        let mut state = self.lock();
        if state.shutting_down {
            return Err(SubmitError::ShuttingDown);
        }
        let key = job.key;
        let in_use = state.running.as_ref().is_some_and(|r| r.key == key)
            || state.pending.iter().any(|p| p.job.key == key);
        if in_use {
            return Err(SubmitError::DuplicateRequest(key.request_id));
        }
        let live = job.request.priority == Priority::LivePreview;
        if !live {
            let waiting = state
                .pending
                .iter()
                .filter(|p| {
                    p.job.key.connection == key.connection
                        && p.job.request.priority == Priority::Final
                })
                .count();
            if waiting >= MAX_QUEUED_FINAL_PER_CLIENT {
                return Err(SubmitError::QueueFull(waiting));
            }
        }
        let entry = Pending {
            job,
            cancel: CancelToken::new(),
        };
        let replaced_at = if live {
            state.pending.iter().position(|p| {
                p.job.key.connection == key.connection
                    && p.job.request.priority == Priority::LivePreview
            })
        } else {
            None
        };
        let position = match replaced_at {
            // The newer live request takes the older one's place in line.
            Some(index) => {
                let old = std::mem::replace(&mut state.pending[index], entry);
                accept(&state.pending[index].job, index);
                tracing::debug!(
                    request_id = old.job.key.request_id,
                    by = key.request_id,
                    "pending live preview superseded"
                );
                old.job.send(DaemonMessage::Superseded {
                    request_id: old.job.key.request_id,
                    by_request_id: key.request_id,
                });
                index
            }
            None => {
                state.pending.push_back(entry);
                let index = state.pending.len() - 1;
                accept(&state.pending[index].job, index);
                index
            }
        };
        if live
            && let Some(running) = state.running.as_mut()
            && running.key.connection == key.connection
            && running.priority == Priority::LivePreview
        {
            tracing::debug!(
                request_id = running.key.request_id,
                by = key.request_id,
                "running live preview superseded"
            );
            running.stop(StopReason::Superseded {
                by_request_id: key.request_id,
            });
        }
        drop(state);
        self.shared.wake.notify_all();
        Ok(position as u32)
    }

    /// Cancels a pending job at once (answering `Error{Cancelled}`) or a running one at its
    /// next step boundary (the worker answers). Unknown or finished requests are ignored;
    /// returns whether the request was found.
    pub fn cancel(&self, key: JobKey) -> bool {
        let mut state = self.lock();
        if let Some(index) = state.pending.iter().position(|p| p.job.key == key) {
            let removed = state.pending.remove(index).expect("index is in range");
            removed.cancel.cancel();
            removed
                .job
                .send_error(ErrorCode::Cancelled, "cancelled by the client");
            return true;
        }
        match state.running.as_mut() {
            Some(running) if running.key == key => {
                running.stop(StopReason::Cancelled);
                true
            }
            _ => false,
        }
    }

    /// The connection is gone: drop its pending jobs and cancel its running one. Nothing is sent
    /// (there is nobody to send to).
    pub fn disconnect(&self, connection: ConnectionId) {
        let mut state = self.lock();
        let before = state.pending.len();
        state.pending.retain(|p| p.job.key.connection != connection);
        let dropped = before - state.pending.len();
        if let Some(running) = state.running.as_mut()
            && running.key.connection == connection
        {
            running.stop(StopReason::Disconnected);
        }
        if dropped > 0 {
            tracing::debug!(
                connection,
                dropped,
                "dropped the jobs of a closed connection"
            );
        }
    }

    /// Fails every pending job with `Error{ShuttingDown}`, cancels the running one and tells the
    /// worker to exit once it is done. Later submissions are refused.
    pub fn shutdown(&self) {
        let mut state = self.lock();
        state.shutting_down = true;
        for pending in state.pending.drain(..) {
            pending
                .job
                .send_error(ErrorCode::ShuttingDown, "the daemon is shutting down");
        }
        if let Some(running) = state.running.as_mut() {
            running.stop(StopReason::ShuttingDown);
        }
        drop(state);
        self.shared.wake.notify_all();
    }

    pub fn status(&self) -> QueueStatus {
        let state = self.lock();
        QueueStatus {
            queued: state.pending.len() as u32,
            running_request: state.running.as_ref().map(|r| r.key.request_id),
            completed: state.completed,
        }
    }

    /// Worker side: blocks until a job whose model `acquire` pins is available and marks it
    /// running; `None` once the queue is shut down. Jobs are taken in order among those whose
    /// model is resident: a job waiting for its model to load does not hold up the others.
    /// `acquire` is asked about each waiting job's model (it starts loading those that are not
    /// resident) and is called with the queue's lock held.
    pub(super) fn next_job(&self, acquire: &dyn Fn(&str) -> bool) -> Option<(Job, CancelToken)> {
        let mut state = self.lock();
        loop {
            if state.shutting_down {
                return None;
            }
            let mut asked: Vec<&str> = Vec::new();
            let mut runnable = None;
            for (i, pending) in state.pending.iter().enumerate() {
                let model = pending.job.model.as_str();
                if asked.contains(&model) {
                    continue;
                }
                if acquire(model) {
                    runnable = Some(i);
                    break;
                }
                asked.push(model);
            }
            let taken = runnable.and_then(|i| state.pending.remove(i));
            if let Some(Pending { job, cancel }) = taken {
                state.running = Some(Running {
                    key: job.key,
                    priority: job.request.priority,
                    cancel: cancel.clone(),
                    stop: None,
                });
                return Some((job, cancel));
            }
            state = self
                .shared
                .wake
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Wakes the worker to look at the waiting jobs again (a model became resident).
    pub fn wake(&self) {
        // Taking the lock orders this after a worker that is between `acquire` and its wait.
        drop(self.lock());
        self.shared.wake.notify_all();
    }

    /// Sends `message(request_id)` to every job waiting for `model`.
    pub fn notify_pending(&self, model: &str, message: impl Fn(u64) -> DaemonMessage) {
        let state = self.lock();
        for pending in state.pending.iter().filter(|p| p.job.model == model) {
            pending.job.send(message(pending.job.key.request_id));
        }
    }

    /// Fails every job waiting for `model` with `code` and `message` (its load failed).
    pub fn fail_model(&self, model: &str, code: ErrorCode, message: &str) {
        let mut state = self.lock();
        let (failed, kept): (VecDeque<Pending>, VecDeque<Pending>) =
            state.pending.drain(..).partition(|p| p.job.model == model);
        state.pending = kept;
        drop(state);
        for pending in failed {
            pending.job.send_error(code, message);
        }
        self.shared.wake.notify_all();
    }

    /// Worker side: the running job ended (`succeeded` = with a result). Returns why it was
    /// stopped, if anyone stopped it.
    pub(super) fn finish(&self, key: JobKey, succeeded: bool) -> Option<StopReason> {
        let mut state = self.lock();
        if succeeded {
            state.completed += 1;
        }
        match state.running.take() {
            Some(running) if running.key == key => running.stop,
            other => {
                state.running = other;
                None
            }
        }
    }
}

fn accept(job: &Job, position: usize) {
    job.send(DaemonMessage::Accepted {
        request_id: job.key.request_id,
        queue_position: position as u32,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Outbox, OutboxReceiver};
    use crate::request::default_request;
    use livefill_protocol::Mode;

    fn job(connection: ConnectionId, id: u64, priority: Priority) -> (Job, OutboxReceiver) {
        let (tx, rx) = Outbox::channel();
        let mut request = default_request(Mode::Txt2Img);
        request.request_id = id;
        request.priority = priority;
        (Job::new(connection, "test", request, "m", tx), rx)
    }

    fn drain(rx: &mut OutboxReceiver) -> Vec<DaemonMessage> {
        let mut out = Vec::new();
        while let Some(msg) = rx.try_recv_message() {
            out.push(msg);
        }
        out
    }

    #[test]
    fn final_jobs_are_fifo_with_positions() {
        let q = JobQueue::new();
        let (a, mut ra) = job(1, 10, Priority::Final);
        let (b, mut rb) = job(2, 10, Priority::Final);
        assert_eq!(q.submit(a), Ok(0));
        assert_eq!(q.submit(b), Ok(1));
        assert_eq!(
            drain(&mut ra),
            vec![DaemonMessage::Accepted {
                request_id: 10,
                queue_position: 0
            }]
        );
        assert_eq!(
            drain(&mut rb),
            vec![DaemonMessage::Accepted {
                request_id: 10,
                queue_position: 1
            }]
        );
        let (first, _) = q.next_job(&|_| true).unwrap();
        assert_eq!(first.key.connection, 1);
        assert_eq!(q.status().running_request, Some(10));
        assert_eq!(q.status().queued, 1);
        assert_eq!(q.finish(first.key, true), None);
        let (second, _) = q.next_job(&|_| true).unwrap();
        assert_eq!(second.key.connection, 2);
        q.finish(second.key, true);
        assert_eq!(q.status().completed, 2);
    }

    #[test]
    fn duplicate_ids_are_refused_per_connection() {
        let q = JobQueue::new();
        let (a, _ra) = job(1, 5, Priority::Final);
        let (b, _rb) = job(1, 5, Priority::Final);
        let (c, _rc) = job(2, 5, Priority::Final);
        q.submit(a).unwrap();
        assert_eq!(q.submit(b), Err(SubmitError::DuplicateRequest(5)));
        assert_eq!(q.submit(c), Ok(1));
    }

    #[test]
    fn live_requests_coalesce_per_connection() {
        let q = JobQueue::new();
        let (f, _rf) = job(1, 1, Priority::Final);
        q.submit(f).unwrap();
        let (l2, mut r2) = job(1, 2, Priority::LivePreview);
        let (other, mut ro) = job(2, 2, Priority::LivePreview);
        let (l3, mut r3) = job(1, 3, Priority::LivePreview);
        assert_eq!(q.submit(l2), Ok(1));
        assert_eq!(q.submit(other), Ok(2));
        // Takes l2's place.
        assert_eq!(q.submit(l3), Ok(1));
        assert_eq!(
            drain(&mut r2),
            vec![
                DaemonMessage::Accepted {
                    request_id: 2,
                    queue_position: 1
                },
                DaemonMessage::Superseded {
                    request_id: 2,
                    by_request_id: 3
                }
            ]
        );
        assert_eq!(
            drain(&mut ro).len(),
            1,
            "another client's live job is untouched"
        );
        assert_eq!(drain(&mut r3).len(), 1);
        assert_eq!(q.status().queued, 3);
    }

    #[test]
    fn live_request_cancels_running_live_of_same_connection() {
        let q = JobQueue::new();
        let (l1, _r1) = job(1, 1, Priority::LivePreview);
        q.submit(l1).unwrap();
        let (running, cancel) = q.next_job(&|_| true).unwrap();
        let (l2, _r2) = job(1, 2, Priority::LivePreview);
        q.submit(l2).unwrap();
        assert!(cancel.is_cancelled());
        assert_eq!(
            q.finish(running.key, false),
            Some(StopReason::Superseded { by_request_id: 2 })
        );
    }

    #[test]
    fn live_request_leaves_running_final_alone() {
        let q = JobQueue::new();
        let (f, _rf) = job(1, 1, Priority::Final);
        q.submit(f).unwrap();
        let (_running, cancel) = q.next_job(&|_| true).unwrap();
        let (l2, _r2) = job(1, 2, Priority::LivePreview);
        q.submit(l2).unwrap();
        assert!(!cancel.is_cancelled());
    }

    #[test]
    fn cancel_pending_and_running() {
        let q = JobQueue::new();
        let (a, _ra) = job(1, 1, Priority::Final);
        let (b, mut rb) = job(1, 2, Priority::Final);
        q.submit(a).unwrap();
        q.submit(b).unwrap();
        let (running, cancel) = q.next_job(&|_| true).unwrap();
        assert!(q.cancel(JobKey {
            connection: 1,
            request_id: 2
        }));
        let msgs = drain(&mut rb);
        assert!(matches!(
            msgs.last(),
            Some(DaemonMessage::Error(e)) if e.code == ErrorCode::Cancelled && e.request_id == Some(2)
        ));
        assert!(q.cancel(running.key));
        assert!(cancel.is_cancelled());
        assert!(!q.cancel(JobKey {
            connection: 1,
            request_id: 99
        }));
        assert_eq!(q.finish(running.key, false), Some(StopReason::Cancelled));
        assert_eq!(q.status(), QueueStatus::default());
    }

    #[test]
    fn disconnect_drops_and_cancels() {
        let q = JobQueue::new();
        let (a, _ra) = job(1, 1, Priority::Final);
        let (b, _rb) = job(1, 2, Priority::Final);
        let (c, _rc) = job(2, 1, Priority::Final);
        q.submit(a).unwrap();
        q.submit(b).unwrap();
        q.submit(c).unwrap();
        let (_running, cancel) = q.next_job(&|_| true).unwrap();
        q.disconnect(1);
        assert!(cancel.is_cancelled());
        assert_eq!(q.status().queued, 1);
    }

    #[test]
    fn shutdown_fails_pending_and_stops_worker() {
        let q = JobQueue::new();
        let (a, _ra) = job(1, 1, Priority::Final);
        let (b, mut rb) = job(1, 2, Priority::Final);
        q.submit(a).unwrap();
        q.submit(b).unwrap();
        let (running, cancel) = q.next_job(&|_| true).unwrap();
        q.shutdown();
        assert!(cancel.is_cancelled());
        assert!(matches!(
            drain(&mut rb).last(),
            Some(DaemonMessage::Error(e)) if e.code == ErrorCode::ShuttingDown
        ));
        assert_eq!(q.finish(running.key, false), Some(StopReason::ShuttingDown));
        assert!(q.next_job(&|_| true).is_none());
        let (c, _rc) = job(1, 3, Priority::Final);
        assert_eq!(q.submit(c), Err(SubmitError::ShuttingDown));
    }
}
