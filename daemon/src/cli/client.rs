//! A small blocking client of the daemon, for the commands that talk to one (`status`, `demo`).
//!
//! Exists so those commands go through the real socket and the real protocol, exactly like a
//! plugin: connect, `Hello`, then requests, every read bounded by a timeout.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
use livefill_protocol::{
    ClientHello, ClientMessage, DEFAULT_MAX_PAYLOAD, DaemonHello, DaemonMessage, DaemonStatus,
    GenerateRequest, GenerateResult, read_daemon_frame, write_frame,
};

/// One connection to a daemon, past the handshake.
pub struct DaemonClient {
    stream: Stream,
    pub hello: DaemonHello,
}

impl DaemonClient {
    /// Connects to `socket` and says hello; every later read waits at most `timeout`.
    pub fn connect(socket: &Path, client_name: &str, timeout: Duration) -> anyhow::Result<Self> {
        let name = socket
            .to_fs_name::<GenericFilePath>()
            .with_context(|| format!("bad socket path {}", socket.display()))?;
        let mut stream = Stream::connect(name).with_context(|| {
            format!(
                "cannot connect to the livefill daemon at {} (is `livefill serve` running?)",
                socket.display()
            )
        })?;
        stream.set_recv_timeout(Some(timeout))?;
        stream.set_send_timeout(Some(timeout))?;
        write_frame(
            &mut stream,
            &ClientMessage::Hello(ClientHello::new(client_name)),
        )?;
        let hello = match recv_from(&mut stream)? {
            DaemonMessage::Hello(hello) => hello,
            DaemonMessage::Error(e) => bail!("the daemon refused the connection: {e}"),
            other => bail!("expected the daemon's Hello, got {}", other.kind()),
        };
        Ok(Self { stream, hello })
    }

    pub fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        write_frame(&mut self.stream, msg).context("sending to the daemon")
    }

    /// The next message; the daemon closing the connection is an error here.
    pub fn recv(&mut self) -> anyhow::Result<DaemonMessage> {
        recv_from(&mut self.stream)
    }

    pub fn status(&mut self) -> anyhow::Result<DaemonStatus> {
        self.send(&ClientMessage::Status)?;
        loop {
            match self.recv()? {
                DaemonMessage::Status(status) => return Ok(status),
                DaemonMessage::Error(e) => bail!("status failed: {e}"),
                _ => continue,
            }
        }
    }

    /// Runs one request to its end; `on_progress(step, total)` is called for each step.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        mut on_progress: impl FnMut(u32, u32),
    ) -> anyhow::Result<GenerateResult> {
        let id = request.request_id;
        self.send(&ClientMessage::Generate(request.clone()))?;
        loop {
            match self.recv()? {
                DaemonMessage::Progress {
                    request_id,
                    step,
                    total_steps,
                    ..
                } if request_id == id => on_progress(step, total_steps),
                DaemonMessage::Result(result) if result.request_id == id => return Ok(result),
                DaemonMessage::Error(e) if e.request_id.is_none_or(|r| r == id) => {
                    bail!("the daemon failed the request: {e}")
                }
                DaemonMessage::Superseded {
                    request_id,
                    by_request_id,
                } if request_id == id => bail!("request superseded by {by_request_id}"),
                DaemonMessage::ShuttingDown => bail!("the daemon is shutting down"),
                _ => continue,
            }
        }
    }

    /// Asks the daemon to exit and waits until it says so (or closes).
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.send(&ClientMessage::Shutdown)?;
        loop {
            match read_daemon_frame(&mut self.stream, DEFAULT_MAX_PAYLOAD) {
                Ok(Some(DaemonMessage::ShuttingDown)) | Ok(None) => return Ok(()),
                Ok(Some(_)) => continue,
                Err(e) => return Err(e).context("waiting for the daemon to shut down"),
            }
        }
    }
}

fn recv_from(stream: &mut Stream) -> anyhow::Result<DaemonMessage> {
    match read_daemon_frame(stream, DEFAULT_MAX_PAYLOAD).context("reading from the daemon")? {
        Some(msg) => Ok(msg),
        None => bail!("the daemon closed the connection"),
    }
}
