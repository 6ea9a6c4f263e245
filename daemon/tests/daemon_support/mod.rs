//! Shared helpers of the `daemon_*` integration tests: start the real `livefill serve` binary on
//! a tiny fixture model and a socket in a private temp folder, and talk to it through the crate's
//! blocking client (`livefill::client::Connection`), with panicking helpers on top. CPU only,
//! local sockets only, and every wait is bounded.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use livefill::client::{ClientError, Connection};
use livefill_protocol::{
    ClientMessage, DaemonHello, DaemonMessage, DaemonStatus, ErrorCode, ErrorReply,
    GenerateRequest, Mask, Mode, Priority, RgbaImage,
};

/// Longest wait for any single reply.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a daemon to come up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// Copies the folder `from` (recursively) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh private folder for one test (short, so socket paths stay well under 108 bytes).
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "lf-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `livefill` binary with the test environment: the ONNX Runtime from `ORT_DYLIB_PATH` (or
/// the repo's `.cache/ort` copy when that is unset), logs at info without colours, no inherited
/// `LIVEFILL_SOCKET`.
pub fn livefill_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_livefill"));
    cmd.env("LIVEFILL_LOG", "info,ort=warn")
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .env_remove("LIVEFILL_SOCKET")
        .stdin(Stdio::null());
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        let cached = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../.cache/ort/libonnxruntime.so.{}",
            livefill::onnx::runtime::ORT_VERSION
        ));
        if cached.is_file() {
            cmd.env("ORT_DYLIB_PATH", cached);
        }
    }
    cmd
}

/// `livefill serve` on `model` and `socket`, CPU only, one ONNX Runtime thread.
pub fn serve_command(model: &Path, socket: &Path, extra: &[&str]) -> Command {
    let mut cmd = livefill_command();
    cmd.arg("serve")
        .arg("--model")
        .arg(model)
        .arg("--socket")
        .arg(socket)
        .args(["--device", "cpu", "--threads", "1"])
        .args(extra);
    // No models from the user's own config file.
    if let Some(dir) = socket.parent() {
        cmd.env("XDG_CONFIG_HOME", dir.join("no-config"));
    }
    cmd
}

/// A running `livefill serve` child; killed and cleaned up on drop.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts a daemon on fixture `model` (e.g. "tiny-sd") and waits until it answers.
    pub fn start(model: &str) -> Daemon {
        Self::start_with(model, &[])
    }

    pub fn start_with(model: &str, extra: &[&str]) -> Daemon {
        let dir = temp_dir(model);
        let socket = dir.join("run").join("livefill.sock");
        Self::start_at(&fixture(model), dir, socket, extra)
    }

    /// Starts a daemon on `socket` (whose folder may not exist yet) and waits until it answers.
    pub fn start_at(model: &Path, dir: PathBuf, socket: PathBuf, extra: &[&str]) -> Daemon {
        let log = dir.join(format!(
            "daemon-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = serve_command(model, &socket, extra)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn livefill serve");
        let mut daemon = Daemon {
            child: Some(child),
            dir,
            socket,
            log,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "livefill serve exited ({status}) before it was ready:\n{}",
                    self.log_text()
                );
            }
            if let Ok(mut client) = Client::try_connect(&self.socket)
                && client.try_hello("ready-probe").is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "livefill serve did not become ready:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A connected client past the handshake.
    pub fn client(&self, name: &str) -> (Client, DaemonHello) {
        let mut client = Client::connect(&self.socket);
        let hello = client.hello(name);
        (client, hello)
    }

    /// A raw connection with no handshake.
    pub fn raw(&self) -> Client {
        Client::connect(&self.socket)
    }

    pub fn status(&self) -> DaemonStatus {
        let (mut client, _) = self.client("status-probe");
        client.status()
    }

    /// Waits for the daemon to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not exit in time:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts the daemon process is still running.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("daemon died ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("daemon log kept at {}", self.log.display());
        }
    }
}

/// The crate's blocking connection with read timeouts, panicking on anything unexpected.
pub struct Client {
    pub connection: Connection,
}

impl Client {
    pub fn try_connect(socket: &Path) -> Result<Client, ClientError> {
        let connection = Connection::open(socket, READ_TIMEOUT)?;
        Ok(Client { connection })
    }

    pub fn connect(socket: &Path) -> Client {
        Self::try_connect(socket).expect("connect to the daemon")
    }

    pub fn set_timeout(&self, timeout: Duration) {
        self.connection.set_timeout(timeout).unwrap();
    }

    pub fn send(&mut self, msg: &ClientMessage) {
        self.connection.send(msg).expect("send frame");
    }

    /// A second handle on the socket, for writing from another thread.
    pub fn raw_stream(&self) -> std::os::unix::net::UnixStream {
        self.connection
            .try_clone_stream()
            .expect("clone the socket")
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.connection.send_bytes(bytes).expect("send raw bytes");
    }

    /// The next message (panics on timeout, close or a bad frame).
    pub fn recv(&mut self) -> DaemonMessage {
        self.recv_or_eof()
            .unwrap_or_else(|| panic!("daemon closed the connection"))
    }

    /// The next message, or `None` when the daemon closed the connection.
    pub fn recv_or_eof(&mut self) -> Option<DaemonMessage> {
        self.connection
            .recv_or_eof()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_hello(&mut self, name: &str) -> Result<DaemonHello, String> {
        self.connection.hello(name).map_err(|e| e.to_string())
    }

    pub fn hello(&mut self, name: &str) -> DaemonHello {
        self.try_hello(name).expect("daemon hello")
    }

    pub fn status(&mut self) -> DaemonStatus {
        self.send(&ClientMessage::Status);
        loop {
            if let DaemonMessage::Status(status) = self.recv() {
                return status;
            }
        }
    }

    /// Expects a connection-level or request error next.
    pub fn expect_error(&mut self) -> ErrorReply {
        match self.recv() {
            DaemonMessage::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Reads until the final message of request `id` (`Result`, `Error` or `Superseded`),
    /// returning every message about `id` on the way (other requests' messages are kept in
    /// `others`).
    pub fn until_final(&mut self, id: u64, others: &mut Vec<DaemonMessage>) -> Vec<DaemonMessage> {
        let mut mine = Vec::new();
        loop {
            let msg = self.recv();
            if msg.request_id() != Some(id) {
                others.push(msg);
                continue;
            }
            let last = is_final(&msg);
            mine.push(msg);
            if last {
                return mine;
            }
        }
    }
}

pub fn is_final(msg: &DaemonMessage) -> bool {
    matches!(
        msg,
        DaemonMessage::Result(_) | DaemonMessage::Error(_) | DaemonMessage::Superseded { .. }
    )
}

pub fn error_code(msg: &DaemonMessage) -> Option<ErrorCode> {
    match msg {
        DaemonMessage::Error(e) => Some(e.code),
        _ => None,
    }
}

/// A txt2img request with a fixed seed.
pub fn txt2img(id: u64, size: u32, steps: u32) -> GenerateRequest {
    let mut r = livefill::request::default_request(Mode::Txt2Img);
    r.request_id = id;
    r.prompt = format!("test picture {id}");
    r.width = size;
    r.height = size;
    r.steps = steps;
    r.seed = Some(1000 + id);
    r
}

/// An inpaint request on a small gradient picture with a centred square mask.
pub fn inpaint(id: u64, w: u32, h: u32) -> GenerateRequest {
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    let mut mask = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            pixels.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, 128, 255]);
            let inside = x >= w / 4 && x < 3 * w / 4 && y >= h / 4 && y < 3 * h / 4;
            mask.push(if inside { 255 } else { 0 });
        }
    }
    let mut r = livefill::request::default_request(Mode::Inpaint);
    r.request_id = id;
    r.prompt = "a stone wall".into();
    r.steps = 2;
    r.seed = Some(7);
    r.image = Some(RgbaImage::new(w, h, pixels));
    r.mask = Some(Mask::new(w, h, mask));
    r
}

/// A live-preview variant of `request`.
pub fn live(mut request: GenerateRequest) -> GenerateRequest {
    request.priority = Priority::LivePreview;
    request
}

/// Polls `check` until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    check()
}
