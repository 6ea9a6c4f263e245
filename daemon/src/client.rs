//! The blocking client of the daemon, used by `status`, `generate --socket`, `demo`, `bench`,
//! `doctor` and the integration tests.
//!
//! Exists so everything that talks to a daemon goes through the real socket and the real
//! protocol, exactly like a plugin, with one copy of the socket code: [`Connection`] is a framed
//! connection with every read and write bounded by a timeout (tests also use it before, or
//! instead of, the handshake), [`DaemonClient`] one past the `Hello` with the usual requests on
//! top. Only the protocol crate and std are used here.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::prelude::*;
use interprocess::local_socket::{GenericFilePath, Stream};
use livefill_protocol::{
    ClientHello, ClientMessage, DEFAULT_MAX_PAYLOAD, DaemonHello, DaemonMessage, DaemonStatus,
    ErrorReply, FrameError, GenerateRequest, GenerateResult, ModelInfo, read_daemon_frame,
    write_frame,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad socket path {}: {source}", socket.display())]
    BadSocketPath {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// Nothing listens at the socket (no file, or a stale one).
    #[error(
        "no daemon on {}: start it with `livefill serve` (a daemon on another machine: start \
         the ssh tunnel to it)",
        socket.display()
    )]
    NoDaemon {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the livefill daemon at {}", socket.display())]
    Connect {
        socket: PathBuf,
        source: std::io::Error,
    },
    /// The socket accepted the connection but closed it before any answer: what an ssh-forwarded
    /// socket does when the daemon at the other end is not running.
    #[error(
        "{} accepted the connection but closed it before the daemon's hello: an ssh-forwarded \
         socket whose remote daemon is not running, or a daemon refusing another user (see \
         the daemon's log)",
        socket.display()
    )]
    ClosedBeforeHello { socket: PathBuf },
    #[error("setting the socket timeout: {0}")]
    Timeout(std::io::Error),
    #[error("sending to the daemon: {0}")]
    Send(FrameError),
    #[error("reading from the daemon: {0}")]
    Receive(FrameError),
    #[error("the daemon closed the connection")]
    Closed,
    #[error("the daemon refused the connection: {0}")]
    Refused(ErrorReply),
    #[error("expected the daemon's {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the daemon failed the request: {0}")]
    Failed(ErrorReply),
    #[error("request superseded by {by_request_id}")]
    Superseded { by_request_id: u64 },
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// A framed connection to a daemon, with or without the handshake done.
pub struct Connection {
    stream: Stream,
    socket: PathBuf,
}

impl Connection {
    /// Connects to `socket`; every later read and write waits at most `timeout`.
    pub fn open(socket: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let name = socket.to_fs_name::<GenericFilePath>().map_err(|source| {
            ClientError::BadSocketPath {
                socket: socket.to_path_buf(),
                source,
            }
        })?;
        let stream = Stream::connect(name).map_err(|source| connect_error(socket, source))?;
        let connection = Self {
            stream,
            socket: socket.to_path_buf(),
        };
        connection.set_timeout(timeout)?;
        Ok(connection)
    }

    /// Bounds every later read and write by `timeout`.
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), ClientError> {
        self.stream
            .set_recv_timeout(Some(timeout))
            .and_then(|()| self.stream.set_send_timeout(Some(timeout)))
            .map_err(ClientError::Timeout)
    }

    pub fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        write_frame(&mut self.stream, msg).map_err(ClientError::Send)
    }

    /// Writes `bytes` as they are (a test's broken or partial frame).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream
            .write_all(bytes)
            .map_err(|e| ClientError::Send(FrameError::Io(e)))
    }

    /// Everything the daemon sends until it closes the connection, unparsed (for peers that
    /// speak another protocol version, whose frames `recv` refuses).
    pub fn read_to_end(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut self.stream, &mut out)?;
        Ok(out)
    }

    /// Half-closes the connection: the daemon reads the end of the stream, replies can still
    /// come back.
    #[cfg(unix)]
    pub fn close_sending(&self) -> std::io::Result<()> {
        let Stream::UdSocket(stream) = &self.stream;
        stream.inner().shutdown(std::net::Shutdown::Write)
    }

    /// A second handle on the same socket (a test writing from one thread while another reads).
    #[cfg(unix)]
    pub fn try_clone_stream(&self) -> std::io::Result<std::os::unix::net::UnixStream> {
        let Stream::UdSocket(stream) = &self.stream;
        stream.inner().try_clone()
    }

    /// The next message; the daemon closing the connection is an error here.
    pub fn recv(&mut self) -> Result<DaemonMessage, ClientError> {
        self.recv_or_eof()?.ok_or(ClientError::Closed)
    }

    /// The next message, or `None` when the daemon closed (or reset) the connection.
    pub fn recv_or_eof(&mut self) -> Result<Option<DaemonMessage>, ClientError> {
        match read_daemon_frame(&mut self.stream, DEFAULT_MAX_PAYLOAD) {
            Ok(msg) => Ok(msg),
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(ClientError::Receive(e)),
        }
    }

    /// Says hello as `client_name` and returns the daemon's answer.
    pub fn hello(&mut self, client_name: &str) -> Result<DaemonHello, ClientError> {
        let closed = |socket: &Path| ClientError::ClosedBeforeHello {
            socket: socket.to_path_buf(),
        };
        match self.send(&ClientMessage::Hello(ClientHello::new(client_name))) {
            Err(ClientError::Send(FrameError::Io(e))) if is_closed(&e) => {
                return Err(closed(&self.socket));
            }
            other => other?,
        }
        match self.recv_or_eof()? {
            None => Err(closed(&self.socket)),
            Some(DaemonMessage::Hello(hello)) => Ok(hello),
            Some(DaemonMessage::Error(e)) => Err(ClientError::Refused(e)),
            Some(other) => Err(ClientError::Unexpected {
                expected: "Hello",
                got: other.kind(),
            }),
        }
    }
}

/// The peer closed the connection (a write found it gone).
fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// `NoDaemon` when nothing listens at `socket`, else `Connect`.
fn connect_error(socket: &Path, source: std::io::Error) -> ClientError {
    let socket = socket.to_path_buf();
    match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NoDaemon { socket, source }
        }
        _ => ClientError::Connect { socket, source },
    }
}

/// What the daemon reports about a request before its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobUpdate<'a> {
    /// The request's model is being loaded: `component` now, `step` of `total_steps` done.
    ModelLoading {
        model: &'a str,
        step: u32,
        total_steps: u32,
        component: &'a str,
    },
    /// Denoising step `step` of `total_steps` finished.
    Step { step: u32, total_steps: u32 },
}

/// One connection to a daemon, past the handshake.
pub struct DaemonClient {
    connection: Connection,
    pub hello: DaemonHello,
}

impl DaemonClient {
    /// Connects to `socket` and says hello; every later read waits at most `timeout`.
    pub fn connect(
        socket: &Path,
        client_name: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let mut connection = Connection::open(socket, timeout)?;
        let hello = connection.hello(client_name)?;
        Ok(Self { connection, hello })
    }

    pub fn send(&mut self, msg: &ClientMessage) -> Result<(), ClientError> {
        self.connection.send(msg)
    }

    /// The next message; the daemon closing the connection is an error here.
    pub fn recv(&mut self) -> Result<DaemonMessage, ClientError> {
        self.connection.recv()
    }

    pub fn status(&mut self) -> Result<DaemonStatus, ClientError> {
        self.ask(&ClientMessage::Status, |msg| match msg {
            DaemonMessage::Status(status) => Some(status),
            _ => None,
        })
    }

    /// The models the daemon serves (`ListModels`).
    pub fn list_models(&mut self) -> Result<Vec<ModelInfo>, ClientError> {
        self.ask(&ClientMessage::ListModels, |msg| match msg {
            DaemonMessage::Models(models) => Some(models),
            _ => None,
        })
    }

    /// Sends `msg` and reads until `answer` picks the reply (or the daemon sends an error).
    fn ask<T>(
        &mut self,
        msg: &ClientMessage,
        answer: impl Fn(DaemonMessage) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.send(msg)?;
        loop {
            match self.recv()? {
                DaemonMessage::Error(e) => return Err(ClientError::Failed(e)),
                other => {
                    if let Some(reply) = answer(other) {
                        return Ok(reply);
                    }
                }
            }
        }
    }

    /// Runs one request to its end; `on_update` sees its model loading and each step.
    pub fn generate(
        &mut self,
        request: &GenerateRequest,
        mut on_update: impl FnMut(JobUpdate<'_>),
    ) -> Result<GenerateResult, ClientError> {
        let id = request.request_id;
        self.send(&ClientMessage::Generate(request.clone()))?;
        loop {
            match self.recv()? {
                DaemonMessage::ModelLoading {
                    request_id,
                    model,
                    step,
                    total_steps,
                    component,
                } if request_id == id => on_update(JobUpdate::ModelLoading {
                    model: &model,
                    step,
                    total_steps,
                    component: &component,
                }),
                DaemonMessage::Progress {
                    request_id,
                    step,
                    total_steps,
                    ..
                } if request_id == id => on_update(JobUpdate::Step { step, total_steps }),
                DaemonMessage::Result(result) if result.request_id == id => return Ok(result),
                DaemonMessage::Error(e) if e.request_id.is_none_or(|r| r == id) => {
                    return Err(ClientError::Failed(e));
                }
                DaemonMessage::Superseded {
                    request_id,
                    by_request_id,
                } if request_id == id => return Err(ClientError::Superseded { by_request_id }),
                DaemonMessage::ShuttingDown => return Err(ClientError::ShuttingDown),
                _ => continue,
            }
        }
    }

    /// Asks the daemon to exit and waits until it says so (or closes).
    pub fn shutdown(mut self) -> Result<(), ClientError> {
        self.send(&ClientMessage::Shutdown)?;
        loop {
            match self.connection.recv_or_eof()? {
                Some(DaemonMessage::ShuttingDown) | None => return Ok(()),
                Some(_) => continue,
            }
        }
    }
}

/// Wire values for unit tests of the daemon's clients (this module and `cli/`).
#[cfg(test)]
pub(crate) mod test_samples {
    use livefill_protocol::{Capabilities, DaemonHello, Mode, ModelInfo, Sampler};

    /// A daemon's hello for `model`: LCM defaults, 3 steps, guidance 1.5.
    pub fn hello(model: &str) -> DaemonHello {
        DaemonHello {
            daemon_version: "0".into(),
            protocol_version: livefill_protocol::PROTOCOL_VERSION,
            device: "cpu".into(),
            execution_provider: "CPUExecutionProvider".into(),
            model: model.into(),
            native_width: 64,
            native_height: 64,
            capabilities: Capabilities {
                modes: vec![Mode::Txt2Img, Mode::Inpaint],
                inpainting_unet: false,
                taesd_previews: false,
                max_image_side: 8192,
                max_frame_bytes: 1 << 20,
                default_sampler: Sampler::Lcm,
                default_spacing: None,
                default_steps: 3,
                default_guidance: 1.5,
            },
        }
    }

    /// A 4-channel fp32 model with nothing reported: not resident, no roles, no sizes.
    pub fn model_info(name: &str) -> ModelInfo {
        ModelInfo {
            unet_in_channels: 4,
            dtype: "fp32".into(),
            ..ModelInfo::new(name, format!("/models/{name}"))
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    use livefill_protocol::{ErrorCode, Mode, RgbaImage, read_client_frame};

    use super::test_samples::hello;
    use super::*;

    /// A fresh socket path in a private temp folder.
    fn socket_path(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lf-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("d.sock")
    }

    /// A one-connection stand-in daemon: answers the hello, then plays `script` — for each
    /// Generate it reads, the next list of messages.
    fn stand_in(socket: &Path, script: Vec<Vec<DaemonMessage>>) -> std::thread::JoinHandle<()> {
        let listener = UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let hello_frame = read_client_frame(&mut stream, DEFAULT_MAX_PAYLOAD).unwrap();
            assert!(matches!(hello_frame, Some(ClientMessage::Hello(_))));
            write_frame(&mut stream, &DaemonMessage::Hello(hello("m"))).unwrap();
            for replies in script {
                let request = read_client_frame(&mut stream, DEFAULT_MAX_PAYLOAD).unwrap();
                assert!(matches!(request, Some(ClientMessage::Generate(_))));
                for reply in replies {
                    write_frame(&mut stream, &reply).unwrap();
                }
            }
        })
    }

    fn loading(request_id: u64, step: u32, component: &str) -> DaemonMessage {
        DaemonMessage::ModelLoading {
            request_id,
            model: "big".into(),
            step,
            total_steps: 2,
            component: component.into(),
        }
    }

    fn request(id: u64) -> GenerateRequest {
        let mut request = crate::request::default_request(Mode::Txt2Img);
        request.request_id = id;
        request
    }

    #[test]
    fn generate_reports_model_loading_and_steps_then_the_result() {
        let socket = socket_path("updates");
        let result = GenerateResult {
            request_id: 1,
            image: RgbaImage::new(1, 1, vec![1, 2, 3, 4]),
            offset_x: 0,
            offset_y: 0,
            seed: 9,
            timings: Vec::new(),
            model: "big".into(),
        };
        let failed =
            ErrorReply::for_request(2, ErrorCode::ModelLoadFailed, "unet/model.onnx: gone");
        let daemon = stand_in(
            &socket,
            vec![
                vec![
                    loading(1, 0, "text_encoder"),
                    loading(7, 0, "someone else's"),
                    loading(1, 1, "unet"),
                    DaemonMessage::Progress {
                        request_id: 1,
                        step: 1,
                        total_steps: 1,
                        preview: None,
                    },
                    DaemonMessage::Result(result.clone()),
                ],
                vec![loading(2, 0, "unet"), DaemonMessage::Error(failed)],
            ],
        );
        let mut client = DaemonClient::connect(&socket, "test", Duration::from_secs(10)).unwrap();
        let mut seen = Vec::new();
        let got = client
            .generate(&request(1), |u| seen.push(crate::cli::describe_update(&u)))
            .unwrap();
        assert_eq!(got, result);
        assert_eq!(
            seen,
            [
                "loading model big: text_encoder (0/2)",
                "loading model big: unet (1/2)",
                "step 1/1",
            ]
        );
        let err = client.generate(&request(2), |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("model_load_failed: unet/model.onnx: gone"),
            "{text}"
        );
        daemon.join().unwrap();
        let _ = std::fs::remove_dir_all(socket.parent().unwrap());
    }

    #[test]
    fn a_socket_that_closes_before_the_hello_and_a_missing_one_say_so() {
        let socket = socket_path("closed");
        let listener = UnixListener::bind(&socket).unwrap();
        let closer = std::thread::spawn(move || drop(listener.accept().unwrap()));
        let err = DaemonClient::connect(&socket, "test", Duration::from_secs(10))
            .err()
            .unwrap();
        assert!(
            matches!(err, ClientError::ClosedBeforeHello { .. }),
            "{err}"
        );
        closer.join().unwrap();
        let missing = socket.with_file_name("none.sock");
        let err = DaemonClient::connect(&missing, "test", Duration::from_secs(10))
            .err()
            .unwrap();
        assert!(matches!(err, ClientError::NoDaemon { .. }), "{err}");
        let _ = std::fs::remove_dir_all(socket.parent().unwrap());
    }
}
