//! Where messages for one connection wait to be written, and how many bytes they hold.
//!
//! Exists so a client that sends requests and never reads its replies cannot grow the daemon's
//! memory: every message put in an [`Outbox`] is counted (by its pixel payload, the only large
//! part) until the connection's writer has written it. The connection stops reading new frames
//! while its unwritten replies exceed a high-water mark (backpressure: the client's own writes
//! then block) and gives up on a client that does not drain them; step previews are dropped —
//! the step message itself still goes — once a hard limit is passed, so the final messages (one
//! per job, never dropped) are what is left to hold.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use livefill_protocol::DaemonMessage;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Unwritten bytes beyond which step previews are no longer queued for a connection.
pub const PREVIEW_DROP_BYTES: usize = 64 << 20;

#[derive(Default, Debug)]
struct Pending {
    bytes: AtomicUsize,
    drained: Notify,
}

/// The sending side; cheap to clone (the queue, the worker and the connection all hold one).
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: UnboundedSender<(DaemonMessage, usize)>,
    pending: Arc<Pending>,
}

/// The connection an outbox belongs to has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionGone;

/// The connection writer's side.
pub struct OutboxReceiver {
    rx: UnboundedReceiver<(DaemonMessage, usize)>,
    pending: Arc<Pending>,
}

/// A message's share of memory: its pixels plus a small constant.
fn approx_size(msg: &DaemonMessage) -> usize {
    const BASE: usize = 256;
    BASE + match msg {
        DaemonMessage::Result(r) => r.image.pixels.len(),
        DaemonMessage::Progress {
            preview: Some(p), ..
        } => p.pixels.len(),
        DaemonMessage::Models(models) => models.len() * BASE,
        _ => 0,
    }
}

impl Outbox {
    /// A new outbox and the receiver its writer drains.
    pub fn channel() -> (Outbox, OutboxReceiver) {
        let (tx, rx) = unbounded_channel();
        let pending = Arc::new(Pending::default());
        (
            Outbox {
                tx,
                pending: pending.clone(),
            },
            OutboxReceiver { rx, pending },
        )
    }

    /// Queues `msg` for the connection; `Err` when the connection is gone (not an error for a
    /// sender: nobody is left to tell). Past [`PREVIEW_DROP_BYTES`] a step's preview is left out.
    pub fn send(&self, mut msg: DaemonMessage) -> Result<(), ConnectionGone> {
        if let DaemonMessage::Progress { preview, .. } = &mut msg
            && preview.is_some()
            && self.pending_bytes() > PREVIEW_DROP_BYTES
        {
            *preview = None;
        }
        let size = approx_size(&msg);
        self.pending.bytes.fetch_add(size, Ordering::SeqCst);
        self.tx.send((msg, size)).map_err(|_| {
            self.pending.bytes.fetch_sub(size, Ordering::SeqCst);
            ConnectionGone
        })
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending.bytes.load(Ordering::SeqCst)
    }

    /// Waits until at most `limit` bytes are unwritten.
    pub async fn drained_below(&self, limit: usize) {
        loop {
            let drained = self.pending.drained.notified();
            if self.pending_bytes() <= limit {
                return;
            }
            drained.await;
        }
    }
}

impl OutboxReceiver {
    /// The next message, and a ticket to hand back once it is written.
    pub async fn recv(&mut self) -> Option<(DaemonMessage, Written)> {
        let (msg, size) = self.rx.recv().await?;
        Some((msg, self.ticket(size)))
    }

    /// The next message if one is waiting.
    pub fn try_recv(&mut self) -> Option<(DaemonMessage, Written)> {
        let (msg, size) = self.rx.try_recv().ok()?;
        Some((msg, self.ticket(size)))
    }

    /// The next message if one is waiting, counted as written at once (tests).
    pub fn try_recv_message(&mut self) -> Option<DaemonMessage> {
        self.try_recv().map(|(msg, _)| msg)
    }

    /// Blocks for the next message, counted as written at once (tests; not from async code).
    pub fn blocking_recv_message(&mut self) -> Option<DaemonMessage> {
        let (msg, size) = self.rx.blocking_recv()?;
        drop(self.ticket(size));
        Some(msg)
    }

    fn ticket(&self, size: usize) -> Written {
        Written {
            pending: self.pending.clone(),
            size,
        }
    }
}

/// Counts a message as written when dropped (written or abandoned alike).
pub struct Written {
    pending: Arc<Pending>,
    size: usize,
}

impl Drop for Written {
    fn drop(&mut self) {
        self.pending.bytes.fetch_sub(self.size, Ordering::SeqCst);
        self.pending.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livefill_protocol::RgbaImage;

    fn progress(preview_bytes: usize) -> DaemonMessage {
        DaemonMessage::Progress {
            request_id: 1,
            step: 1,
            total_steps: 2,
            preview: Some(RgbaImage::new(1, 1, vec![0; preview_bytes])),
        }
    }

    #[tokio::test]
    async fn counts_until_written_and_drops_previews_past_the_limit() {
        let (outbox, mut rx) = Outbox::channel();
        outbox.send(progress(PREVIEW_DROP_BYTES)).unwrap();
        assert!(outbox.pending_bytes() > PREVIEW_DROP_BYTES);
        // Over the limit: the next step goes without its preview.
        outbox.send(progress(1000)).unwrap();
        let (_, first) = rx.recv().await.unwrap();
        let (second, second_ticket) = rx.recv().await.unwrap();
        assert!(matches!(
            second,
            DaemonMessage::Progress { preview: None, .. }
        ));
        drop(first);
        assert!(outbox.pending_bytes() < 1000);
        let waiter = {
            let outbox = outbox.clone();
            tokio::spawn(async move { outbox.drained_below(0).await })
        };
        drop(second_ticket);
        waiter.await.unwrap();
        assert_eq!(outbox.pending_bytes(), 0);
    }
}
