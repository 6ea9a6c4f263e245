//! The one OS thread that runs jobs on the resident models.
//!
//! Exists because an engine (ONNX Runtime sessions, caches) runs one job at a time, and the device
//! runs one job at a time anyway. The worker takes the first job whose model is resident from
//! the [`JobQueue`] (pinning that model in the [`ModelSet`] so it is not unloaded under the job),
//! forwards per-step progress, turns the outcome into the job's final message (`Result`, `Error`
//! or `Superseded`), and survives a panicking job: the panic is caught and reported as
//! `Error{Internal}`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use livefill_protocol::{DaemonMessage, ErrorCode, GenerateResult};

use super::queue::StopReason;
use super::{Job, JobQueue, ModelSet};
use crate::generator::{CancelToken, GenerateError, GenerateOutput, ImageGenerator, StepProgress};

/// The running worker thread.
pub struct WorkerHandle {
    thread: JoinHandle<()>,
}

impl WorkerHandle {
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits (blocking) for the thread to exit; the queue must have been shut down first.
    pub fn join(self) {
        if self.thread.join().is_err() {
            tracing::error!("the job worker thread panicked");
        }
    }

    /// Polls for up to `timeout` for the thread to exit; returns whether it did.
    pub fn join_timeout(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.join();
        true
    }
}

/// Starts the worker thread: it runs jobs from `queue` on the models of `models` until the queue
/// is shut down.
pub fn spawn_worker(models: ModelSet, queue: JobQueue) -> std::io::Result<WorkerHandle> {
    let thread = std::thread::Builder::new()
        .name("livefill-worker".into())
        .spawn(move || {
            while let Some((job, cancel)) = queue.next_job(&|model| models.acquire(model)) {
                let model = job.model.clone();
                match models.generator(&model) {
                    Some(generator) => {
                        let mut generator = generator.lock().unwrap_or_else(|p| p.into_inner());
                        run_job(generator.as_mut(), &queue, job, &cancel);
                    }
                    None => {
                        queue.finish(job.key, false);
                        job.send_error(ErrorCode::Internal, format!("model {model} is gone"));
                    }
                }
                models.release(&model);
            }
            tracing::debug!("job worker stopped");
        })?;
    Ok(WorkerHandle { thread })
}

/// Run one job inside its span (the only span a job gets: the engine logs within it), and tell
/// its client how it ended. Work that was cancelled or superseded is routine: logged at debug.
fn run_job(generator: &mut dyn ImageGenerator, queue: &JobQueue, job: Job, cancel: &CancelToken) {
    let request = &job.request;
    let span = tracing::info_span!(
        "job",
        request_id = request.request_id,
        model = %job.model,
        client = %job.client,
        mode = ?request.mode,
        priority = ?request.priority,
        seed = job.seed,
    );
    let _entered = span.enter();
    let start = Instant::now();
    let outcome = if cancel.is_cancelled() {
        Ok(Err(GenerateError::Cancelled))
    } else {
        let request_id = request.request_id;
        let previews = request.stream_previews;
        let outbox = job.outbox.clone();
        let mut on_step = |p: StepProgress| {
            let _ = outbox.send(DaemonMessage::Progress {
                request_id,
                step: p.step,
                total_steps: p.total_steps,
                preview: if previews { p.preview } else { None },
            });
        };
        catch_unwind(AssertUnwindSafe(|| {
            generator.generate(request, job.seed, cancel, &mut on_step)
        }))
    };
    let succeeded = matches!(outcome, Ok(Ok(_)));
    let stop = queue.finish(job.key, succeeded);
    let millis = start.elapsed().as_millis() as u64;
    match outcome {
        Ok(Ok(output)) => {
            tracing::info!(ms = millis, "job done");
            job.send(result_message(job.key.request_id, output));
        }
        Ok(Err(GenerateError::Cancelled)) => match stop {
            Some(StopReason::Superseded { by_request_id }) => {
                tracing::debug!(ms = millis, by_request_id, "job superseded");
                job.send(DaemonMessage::Superseded {
                    request_id: job.key.request_id,
                    by_request_id,
                });
            }
            Some(StopReason::ShuttingDown) => {
                tracing::info!(ms = millis, "job stopped for shutdown");
                job.send_error(ErrorCode::ShuttingDown, "the daemon is shutting down");
            }
            Some(StopReason::Disconnected) => {
                tracing::debug!(ms = millis, "job cancelled: client disconnected");
            }
            Some(StopReason::Cancelled) | None => {
                tracing::debug!(ms = millis, "job cancelled");
                job.send_error(ErrorCode::Cancelled, "cancelled by the client");
            }
        },
        Ok(Err(error)) => {
            tracing::warn!(ms = millis, %error, "job failed");
            job.send_error(error.code(), error.to_string());
        }
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            tracing::error!(ms = millis, panic = %what, "job panicked; the daemon keeps serving");
            job.send_error(ErrorCode::Internal, format!("internal error: {what}"));
        }
    }
}

fn result_message(request_id: u64, output: GenerateOutput) -> DaemonMessage {
    DaemonMessage::Result(GenerateResult {
        request_id,
        image: output.image,
        offset_x: output.offset_x,
        offset_y: output.offset_y,
        seed: output.seed,
        timings: output.timings,
        model: output.model,
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::GeneratorInfo;
    use crate::jobs::{Job, JobKey};
    use crate::jobs::{Outbox, OutboxReceiver};
    use crate::request::default_request;
    use livefill_protocol::{GenerateRequest, Mode, Priority, RgbaImage};

    /// Stand-in generator: `steps` steps of `step_ms` each; prompt "panic" panics; prompt
    /// "gated" holds its first step until the test opens `gate`.
    struct Fake {
        step_ms: u64,
        gate: Gate,
    }

    impl Fake {
        fn new(step_ms: u64) -> Self {
            Self {
                step_ms,
                gate: Gate::default(),
            }
        }
    }

    /// A latch the test opens once.
    #[derive(Clone, Default)]
    struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

    impl Gate {
        fn open(&self) {
            *self.0.0.lock().unwrap() = true;
            self.0.1.notify_all();
        }
        fn wait(&self) {
            let mut open = self.0.0.lock().unwrap();
            while !*open {
                open = self.0.1.wait(open).unwrap();
            }
        }
    }

    impl ImageGenerator for Fake {
        fn info(&self) -> GeneratorInfo {
            GeneratorInfo::stand_in("fake", vec![Mode::Txt2Img], Default::default())
        }

        fn generate(
            &mut self,
            request: &GenerateRequest,
            seed: u64,
            cancel: &CancelToken,
            on_step: &mut dyn FnMut(StepProgress),
        ) -> Result<GenerateOutput, GenerateError> {
            if request.prompt == "panic" {
                panic!("boom");
            }
            for step in 1..=request.steps {
                if cancel.is_cancelled() {
                    return Err(GenerateError::Cancelled);
                }
                if step == 1 && request.prompt == "gated" {
                    self.gate.wait();
                }
                std::thread::sleep(Duration::from_millis(self.step_ms));
                on_step(StepProgress {
                    step,
                    total_steps: request.steps,
                    preview: Some(RgbaImage::new(1, 1, vec![0; 4])),
                });
            }
            Ok(GenerateOutput {
                image: RgbaImage::new(1, 1, vec![1, 2, 3, 4]),
                offset_x: 0,
                offset_y: 0,
                seed,
                timings: Vec::new(),
                model: "fake".into(),
            })
        }
    }

    fn job(
        connection: u64,
        id: u64,
        priority: Priority,
        steps: u32,
        prompt: &str,
    ) -> (Job, OutboxReceiver) {
        let (tx, rx) = Outbox::channel();
        let mut request = default_request(Mode::Txt2Img);
        request.request_id = id;
        request.priority = priority;
        request.steps = steps;
        request.prompt = prompt.into();
        request.seed = Some(7);
        (Job::new(connection, "test", request, "fake", tx), rx)
    }

    /// Collects messages until the final one for `id` (bounded wait).
    fn until_final(rx: &mut OutboxReceiver) -> Vec<DaemonMessage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        loop {
            assert!(Instant::now() < deadline, "no final message; got {out:?}");
            match rx.try_recv_message() {
                Some(msg) => {
                    let last = matches!(
                        msg,
                        DaemonMessage::Result(_)
                            | DaemonMessage::Error(_)
                            | DaemonMessage::Superseded { .. }
                    );
                    out.push(msg);
                    if last {
                        return out;
                    }
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    #[test]
    fn runs_jobs_and_survives_panics() {
        let q = JobQueue::new();
        let worker = spawn_worker(
            ModelSet::single(Box::new(Fake::new(1)), q.clone()).unwrap(),
            q.clone(),
        )
        .unwrap();
        let (a, mut ra) = job(1, 1, Priority::Final, 3, "panic");
        let (b, mut rb) = job(1, 2, Priority::Final, 3, "ok");
        q.submit(a).unwrap();
        q.submit(b).unwrap();
        let msgs = until_final(&mut ra);
        assert!(matches!(
            msgs.last(),
            Some(DaemonMessage::Error(e)) if e.code == ErrorCode::Internal
        ));
        let msgs = until_final(&mut rb);
        let progress = msgs
            .iter()
            .filter(|m| matches!(m, DaemonMessage::Progress { preview: None, .. }))
            .count();
        assert_eq!(progress, 3, "previews stripped unless asked: {msgs:?}");
        assert!(matches!(msgs.last(), Some(DaemonMessage::Result(r)) if r.seed == 7));
        assert_eq!(q.status().completed, 1);
        q.shutdown();
        assert!(worker.join_timeout(Duration::from_secs(5)));
    }

    #[test]
    fn live_storm_is_coalesced_and_answers_everything() {
        let q = JobQueue::new();
        let fake = Fake::new(1);
        let gate = fake.gate.clone();
        let worker = spawn_worker(
            ModelSet::single(Box::new(fake), q.clone()).unwrap(),
            q.clone(),
        )
        .unwrap();
        // Job 0 holds the worker at its first step while 1..=19 arrive: each newer one replaces
        // the pending one and supersedes the running one, so only the last can run to the end.
        let (first, first_rx) = job(1, 0, Priority::LivePreview, 4, "gated");
        q.submit(first).unwrap();
        while q.status().running_request.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut receivers = vec![first_rx];
        for id in 1..20 {
            let (j, rx) = job(1, id, Priority::LivePreview, 4, "live");
            q.submit(j).unwrap();
            let status = q.status();
            assert!(status.queued <= 1, "{status:?}");
            receivers.push(rx);
        }
        gate.open();
        for (id, rx) in receivers.iter_mut().enumerate() {
            let msgs = until_final(rx);
            match msgs.last().unwrap() {
                DaemonMessage::Result(_) => assert_eq!(id, 19, "only the newest runs to the end"),
                DaemonMessage::Superseded { by_request_id, .. } => {
                    assert!(*by_request_id > id as u64)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        q.shutdown();
        assert!(worker.join_timeout(Duration::from_secs(5)));
    }

    #[test]
    fn cancel_running_job() {
        let q = JobQueue::new();
        let worker = spawn_worker(
            ModelSet::single(Box::new(Fake::new(20)), q.clone()).unwrap(),
            q.clone(),
        )
        .unwrap();
        let (a, mut ra) = job(1, 1, Priority::Final, 50, "long");
        q.submit(a).unwrap();
        while q.status().running_request.is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        q.cancel(JobKey {
            connection: 1,
            request_id: 1,
        });
        let msgs = until_final(&mut ra);
        assert!(matches!(
            msgs.last(),
            Some(DaemonMessage::Error(e)) if e.code == ErrorCode::Cancelled
        ));
        q.shutdown();
        assert!(worker.join_timeout(Duration::from_secs(5)));
    }
}
