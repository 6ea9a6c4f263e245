//! One client connection: frames in, messages out.
//!
//! Exists to keep per-client protocol handling in one place: the handshake (`Hello` first, same
//! protocol version or `UnsupportedVersion` and close), request checks before anything is queued,
//! frame errors (a payload that does not decode is answered and the connection goes on; a broken
//! header is answered with `request_id: None` and the connection is closed, since the stream
//! position is lost), and the split between a reader (this task) and a writer task that drains
//! the connection's outbox, which the job queue and worker also write into. When the connection
//! ends for any reason its jobs are cancelled.

use std::sync::Arc;
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use livefill_protocol::{
    Capabilities, ClientHello, ClientMessage, DaemonHello, DaemonMessage, ErrorCode, ErrorReply,
    FrameError, GenerateRequest, PROTOCOL_VERSION, encode_error_for_version,
    read_client_frame_async, write_frame_async,
};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::Context;
use super::shutdown::Shutdown;
use crate::jobs::{ConnectionId, Job, JobKey, Outbox, OutboxReceiver};
use crate::request;

/// How long a connection closed for a protocol error keeps reading (and discarding) what the
/// peer still sends, so that the peer reads our error reply instead of a reset.
const LINGER: Duration = Duration::from_millis(500);

/// What to do after a message.
enum Flow {
    Continue,
    Close,
}

/// Serves one connection until the peer leaves, a fatal protocol error, or `closing` is raised.
pub(super) async fn serve_connection(
    ctx: Arc<Context>,
    id: ConnectionId,
    stream: Stream,
    closing: Shutdown,
) {
    let span = tracing::info_span!("connection", id);
    run(ctx, id, stream, closing).instrument(span).await;
}

async fn run(ctx: Arc<Context>, id: ConnectionId, stream: Stream, closing: Shutdown) {
    let stream = Arc::new(stream);
    let (outbox, inbox) = Outbox::channel();
    let (close_writer, writer_closed) = oneshot::channel();
    let writer = tokio::spawn(write_loop(stream.clone(), inbox, writer_closed).in_current_span());
    ctx.register(id, outbox.clone());
    tracing::debug!("connected");

    let mut conn = Connection {
        id,
        ctx: ctx.clone(),
        outbox,
        client: None,
        counted: false,
    };
    let mut reader = BufReader::new(&*stream);
    // An outdated client's "update the plugin" error, framed in its own version; written after
    // the writer task has finished.
    let mut outdated: Option<Vec<u8>> = None;
    let fatal = loop {
        let frame = tokio::select! {
            biased;
            () = closing.wait() => break false,
            frame = conn.next_frame(&mut reader) => frame,
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(stop) => {
                tracing::warn!(reason = %stop, "closing the connection");
                if let Stop::Report(reply) = stop {
                    conn.send(DaemonMessage::Error(reply));
                }
                break true;
            }
        };
        match frame {
            Ok(Some(msg)) => {
                if let Flow::Close = conn.handle(msg) {
                    break true;
                }
            }
            Ok(None) => break false,
            Err(FrameError::Io(e)) => {
                tracing::debug!(error = %e, "read failed");
                break false;
            }
            Err(FrameError::UnsupportedVersion { got, .. })
                if encode_error_for_version(&update_the_plugin(got), got).is_some() =>
            {
                tracing::warn!(version = got, "client speaks an older protocol version");
                outdated = encode_error_for_version(&update_the_plugin(got), got);
                break true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad frame");
                conn.send(DaemonMessage::Error(e.to_error_reply()));
                if !e.is_recoverable() {
                    break true;
                }
            }
        }
    };

    ctx.queue.disconnect(id);
    ctx.unregister(id);
    if conn.counted {
        ctx.leave();
    }
    let _ = close_writer.send(());
    drop(conn);
    let _ = writer.await;
    if let Some(frame) = outdated {
        let mut out = &*stream;
        let _ = out.write_all(&frame).await;
        let _ = out.flush().await;
    }
    if fatal {
        linger(&mut reader).await;
    }
    tracing::debug!("disconnected");
}

/// What a client speaking an older protocol `version` is told (in a frame of its version).
fn update_the_plugin(version: u16) -> ErrorReply {
    ErrorReply::connection(
        ErrorCode::UnsupportedVersion,
        format!(
            "this plugin speaks livefill protocol version {version}, the daemon (livefill {}) \
             speaks version {PROTOCOL_VERSION}: update the plugin: livefill install-plugin krita \
             (or: livefill install-plugin gimp), then restart the editor",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

/// Drains the outbox into the socket, in order, until told to close (then flushes what is left)
/// or the peer is gone. Each message counts as written (for the outbox's byte count) once its
/// frame is written.
async fn write_loop(
    stream: Arc<Stream>,
    mut inbox: OutboxReceiver,
    mut closed: oneshot::Receiver<()>,
) {
    let mut writer = &*stream;
    let mut closing = false;
    loop {
        let (msg, _written) = if closing {
            match inbox.try_recv() {
                Some(msg) => msg,
                None => break,
            }
        } else {
            tokio::select! {
                biased;
                msg = inbox.recv() => match msg {
                    Some(msg) => msg,
                    None => break,
                },
                _ = &mut closed => {
                    closing = true;
                    continue;
                }
            }
        };
        if let Err(e) = write_frame_async(&mut writer, &msg).await {
            tracing::debug!(error = %e, "write failed; peer gone");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Reads and discards input for a short while, until the peer closes or `LINGER` passes.
async fn linger(reader: &mut (impl AsyncRead + Unpin)) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0usize;
        while let Ok(n) = reader.read(&mut sink).await {
            total += n;
            if n == 0 || total > (64 << 20) {
                break;
            }
        }
    })
    .await;
}

struct Connection {
    id: ConnectionId,
    ctx: Arc<Context>,
    outbox: Outbox,
    /// The client's name, once it said hello.
    client: Option<String>,
    /// Counted against the daemon's client limit (said hello and was let in).
    counted: bool,
}

/// Why a connection is closed before its next frame.
#[derive(Debug, thiserror::Error)]
enum Stop {
    /// Told to the client (if it still listens) before closing.
    #[error("{0}")]
    Report(ErrorReply),
    /// The client does not read its replies: nothing can be told.
    #[error("the client left {0} bytes of replies unread for {1:?}")]
    NotReading(usize, Duration),
}

impl Connection {
    /// The next frame: waits (without limit after the hello, `hello_timeout` before it) for its
    /// first byte, then allows `frame_timeout` for the rest; first, while more than
    /// `unread_high_water` bytes of replies wait to be written, reads nothing (backpressure) for
    /// at most `unread_timeout`.
    async fn next_frame<R: AsyncBufRead + AsyncRead + Unpin>(
        &self,
        reader: &mut R,
    ) -> Result<Result<Option<ClientMessage>, FrameError>, Stop> {
        let limits = self.ctx.limits;
        let high_water = limits.unread_high_water;
        if self.outbox.pending_bytes() > high_water {
            tracing::debug!(
                unread = self.outbox.pending_bytes(),
                "client slow to read: backpressure"
            );
            if tokio::time::timeout(
                limits.unread_timeout,
                self.outbox.drained_below(high_water / 2),
            )
            .await
            .is_err()
            {
                return Err(Stop::NotReading(
                    self.outbox.pending_bytes(),
                    limits.unread_timeout,
                ));
            }
        }
        let first_byte = reader.fill_buf();
        let started = if self.client.is_none() {
            match tokio::time::timeout(limits.hello_timeout, first_byte).await {
                Ok(r) => r.map(|b| !b.is_empty()),
                Err(_) => {
                    return Err(Stop::Report(ErrorReply::connection(
                        ErrorCode::InvalidRequest,
                        format!("no Hello within {:?} of connecting", limits.hello_timeout),
                    )));
                }
            }
        } else {
            first_byte.await.map(|b| !b.is_empty())
        };
        match started {
            Ok(false) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(FrameError::Io(e))),
            Ok(true) => {}
        }
        tokio::time::timeout(
            limits.frame_timeout,
            read_client_frame_async(reader, self.ctx.max_frame_bytes),
        )
        .await
        .map_err(|_| {
            Stop::Report(ErrorReply::connection(
                ErrorCode::BadFrame,
                format!(
                    "incomplete frame: the rest did not arrive within {:?} of its first byte",
                    limits.frame_timeout
                ),
            ))
        })
    }

    fn send(&self, msg: DaemonMessage) {
        let _ = self.outbox.send(msg);
    }

    fn handle(&mut self, msg: ClientMessage) -> Flow {
        tracing::trace!(kind = msg.kind(), "message");
        match msg {
            ClientMessage::Hello(hello) => return self.hello(hello),
            _ if self.client.is_none() => self.send(DaemonMessage::Error(ErrorReply::connection(
                ErrorCode::InvalidRequest,
                format!("send Hello before {}", msg.kind()),
            ))),
            ClientMessage::Generate(request) => self.generate(request),
            ClientMessage::Cancel { request_id } => {
                let found = self.ctx.queue.cancel(JobKey {
                    connection: self.id,
                    request_id,
                });
                tracing::debug!(request_id, found, "cancel");
            }
            ClientMessage::Status => self.send(DaemonMessage::Status(self.ctx.status())),
            ClientMessage::ListModels => {
                self.send(DaemonMessage::Models(self.ctx.models.list()));
            }
            ClientMessage::Shutdown => {
                tracing::info!(client = self.client.as_deref(), "shutdown requested");
                self.ctx.shutdown.trigger();
            }
        }
        Flow::Continue
    }

    fn hello(&mut self, hello: ClientHello) -> Flow {
        if hello.protocol_version != PROTOCOL_VERSION {
            tracing::warn!(
                client = %hello.client_name,
                version = hello.protocol_version,
                "client speaks another protocol version"
            );
            let reply = if hello.protocol_version < PROTOCOL_VERSION {
                update_the_plugin(hello.protocol_version)
            } else {
                ErrorReply::connection(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "client speaks protocol version {}, this daemon speaks version \
                         {PROTOCOL_VERSION}: update livefill",
                        hello.protocol_version
                    ),
                )
            };
            self.send(DaemonMessage::Error(reply));
            return Flow::Close;
        }
        if !self.counted && !self.ctx.join() {
            tracing::warn!(client = %hello.client_name, "too many clients: refused");
            self.send(DaemonMessage::Error(ErrorReply::connection(
                ErrorCode::TooManyConnections,
                format!(
                    "the daemon already serves {} clients (its --max-connections): close another \
                     editor window or plugin, or restart the daemon with a higher limit",
                    self.ctx.limits.max_clients
                ),
            )));
            return Flow::Close;
        }
        self.counted = true;
        tracing::info!(client = %hello.client_name, "hello");
        self.client = Some(hello.client_name);
        let info = &self.ctx.info;
        self.send(DaemonMessage::Hello(DaemonHello {
            daemon_version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: PROTOCOL_VERSION,
            device: info.device.clone(),
            execution_provider: info.execution_provider.clone(),
            model: info.model.clone(),
            native_width: info.native_width,
            native_height: info.native_height,
            capabilities: Capabilities {
                modes: info.modes.clone(),
                inpainting_unet: info.inpainting_unet,
                taesd_previews: info.taesd_previews,
                max_image_side: self.ctx.max_image_side,
                max_frame_bytes: u64::from(self.ctx.max_frame_bytes),
                default_sampler: info.sampling.choice.sampler,
                default_spacing: info.sampling.choice.spacing,
                default_steps: info.sampling.steps,
                default_guidance: info.sampling.guidance,
            },
        }));
        Flow::Continue
    }

    fn generate(&mut self, request: GenerateRequest) {
        let request_id = request.request_id;
        let model = match self.check(&request) {
            Ok(model) => model,
            Err((code, message)) => {
                tracing::info!(request_id, %code, %message, "request refused");
                self.send(DaemonMessage::Error(ErrorReply::for_request(
                    request_id, code, message,
                )));
                return;
            }
        };
        let client = self.client.clone().unwrap_or_default();
        let job = Job::new(self.id, client, request, model, self.outbox.clone());
        let (mode, priority, seed) = (job.request.mode, job.request.priority, job.seed);
        let model = job.model.clone();
        match self.ctx.queue.submit(job) {
            Ok(position) => tracing::info!(
                request_id,
                client = self.client.as_deref(),
                ?mode,
                ?priority,
                seed,
                %model,
                position,
                "queued"
            ),
            Err(e) => self.send(DaemonMessage::Error(ErrorReply::for_request(
                request_id,
                e.code(),
                e.to_string(),
            ))),
        }
    }

    /// Everything that can be refused before queueing: the model (named, or the one for the
    /// request's role), then the same checks the engine makes against that model. Returns the
    /// model's name.
    fn check(&self, request: &GenerateRequest) -> Result<String, (ErrorCode, String)> {
        let (model, info) = self
            .ctx
            .models
            .resolve(request)
            .map_err(|e| (e.code(), e.to_string()))?;
        request::validate(request, &info, self.ctx.max_image_side)
            .map_err(|e| (e.code(), e.to_string()))?;
        Ok(model)
    }
}
