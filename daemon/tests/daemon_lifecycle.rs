//! `livefill serve` as a process: the socket's permissions, one daemon per socket, stale socket
//! replacement, the handshake and queries, and both ways of shutting down. Runs the real binary
//! on the tiny fixture model, CPU only.

#![cfg(unix)]

mod daemon_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use daemon_support::*;
use livefill_protocol::{
    ClientHello, ClientMessage, DaemonMessage, ErrorCode, Mode, PROTOCOL_VERSION,
};

#[test]
fn socket_is_private_and_hello_describes_the_model() {
    let daemon = Daemon::start("tiny-sd");
    let socket_mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(socket_mode & 0o777, 0o600, "socket mode {socket_mode:o}");
    let dir_mode = std::fs::metadata(daemon.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700, "socket folder mode {dir_mode:o}");

    let (mut client, hello) = daemon.client("lifecycle-test");
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.model, "tiny-sd");
    assert_eq!(hello.device, "cpu");
    assert_eq!(hello.execution_provider, "CPUExecutionProvider");
    assert_eq!((hello.native_width, hello.native_height), (64, 64));
    assert_eq!(hello.capabilities.max_image_side, 8192);
    assert_eq!(
        hello.capabilities.max_frame_bytes,
        u64::from(livefill_protocol::DEFAULT_MAX_PAYLOAD)
    );
    assert!(hello.capabilities.modes.contains(&Mode::Inpaint));
    assert!(!hello.capabilities.inpainting_unet);

    client.send(&ClientMessage::ListModels);
    match client.recv() {
        DaemonMessage::Models(models) => {
            assert_eq!(models.len(), 1);
            assert_eq!(models[0].name, "tiny-sd");
            assert_eq!(models[0].unet_in_channels, 4);
            assert!(models[0].loaded);
            assert_eq!(models[0].dtype, "fp32");
        }
        other => panic!("expected Models, got {other:?}"),
    }

    let status = client.status();
    assert_eq!(status.model, "tiny-sd");
    assert_eq!(status.device, "cpu");
    assert_eq!(status.queued_jobs, 0);
    assert_eq!(status.running_request, None);
    assert!(status.connected_clients >= 1);
}

#[test]
fn inpainting_model_is_reported() {
    let daemon = Daemon::start("tiny-sd-inpaint");
    let (mut client, hello) = daemon.client("inpaint-model");
    assert!(hello.capabilities.inpainting_unet);
    client.send(&ClientMessage::Generate(inpaint(1, 96, 80)));
    let mut others = Vec::new();
    let msgs = client.until_final(1, &mut others);
    match msgs.last().unwrap() {
        DaemonMessage::Result(r) => {
            assert_eq!(r.seed, 7);
            assert!(r.image.is_well_formed());
        }
        other => panic!("expected a result, got {other:?}"),
    }
}

#[test]
fn status_command_prints_the_daemon_state() {
    let daemon = Daemon::start("tiny-sd");
    let out = livefill_command()
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "model:           tiny-sd",
        "device:          cpu",
        "CPUExecutionProvider",
        "queued jobs:     0",
        "running job:     none",
        "jobs done:       0",
        "uptime:",
        "clients:",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn second_daemon_on_the_same_socket_refuses_to_start() {
    let mut daemon = Daemon::start("tiny-sd");
    let out = serve_command(&fixture("tiny-sd"), &daemon.socket, &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second serve succeeded:\n{stderr}");
    assert!(
        stderr.contains(&format!(
            "livefill is already running on {}",
            daemon.socket.display()
        )),
        "{stderr}"
    );
    // The first one is untouched.
    daemon.assert_alive();
    assert!(daemon.socket.exists());
    let status = daemon.status();
    assert_eq!(status.model, "tiny-sd");
}

#[test]
fn stale_socket_is_replaced() {
    let dir = temp_dir("stale");
    let socket = dir.join("livefill.sock");
    // A socket file nobody listens on, as a crashed daemon leaves it.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    assert!(Client::try_connect(&socket).is_err());

    let daemon = Daemon::start_at(&fixture("tiny-sd"), dir, socket.clone(), &[]);
    let status = daemon.status();
    assert_eq!(status.model, "tiny-sd");
    assert!(daemon.log_text().contains("stale socket"));
}

#[test]
fn a_file_that_is_not_a_socket_is_never_removed() {
    let dir = temp_dir("notsock");
    let socket = dir.join("livefill.sock");
    std::fs::write(&socket, b"precious").unwrap();
    let out = serve_command(&fixture("tiny-sd"), &socket, &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&socket).unwrap(), b"precious");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn shutdown_message_tells_every_client_and_removes_the_socket() {
    let mut daemon = Daemon::start("tiny-sd");
    let (mut watcher, _) = daemon.client("watcher");
    let (mut busy, _) = daemon.client("busy");
    // A long job running and one queued behind it: both must end with ShuttingDown errors.
    busy.send(&ClientMessage::Generate(txt2img(1, 512, 50)));
    busy.send(&ClientMessage::Generate(txt2img(2, 64, 1)));
    let mut others = Vec::new();
    loop {
        // Wait until job 1 is really running.
        if let DaemonMessage::Progress { request_id: 1, .. } = busy.recv() {
            break;
        }
    }
    let (mut killer, _) = daemon.client("killer");
    killer.send(&ClientMessage::Shutdown);

    let mut finals = Vec::new();
    let mut got_shutting_down = false;
    while let Some(msg) = busy.recv_or_eof() {
        match msg {
            DaemonMessage::ShuttingDown => {
                got_shutting_down = true;
            }
            msg if is_final(&msg) => {
                assert!(!got_shutting_down, "job errors come before ShuttingDown");
                finals.push(msg);
            }
            msg => others.push(msg),
        }
    }
    assert!(got_shutting_down);
    assert_eq!(finals.len(), 2, "{finals:?}");
    for msg in &finals {
        assert_eq!(error_code(msg), Some(ErrorCode::ShuttingDown), "{msg:?}");
    }
    for client in [&mut watcher, &mut killer] {
        let mut seen = false;
        while let Some(msg) = client.recv_or_eof() {
            seen |= matches!(msg, DaemonMessage::ShuttingDown);
        }
        assert!(seen, "every client is told");
    }
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists(), "socket file removed");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("sigterm");
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(daemon.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let mut seen = false;
    while let Some(msg) = client.recv_or_eof() {
        seen |= matches!(msg, DaemonMessage::ShuttingDown);
    }
    assert!(seen);
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    assert!(!daemon.socket.exists());
}

#[test]
fn handshake_rules() {
    let mut daemon = Daemon::start("tiny-sd");
    // Anything before Hello is refused, and the connection stays usable.
    let mut client = daemon.raw();
    client.send(&ClientMessage::Status);
    let e = client.expect_error();
    assert_eq!((e.request_id, e.code), (None, ErrorCode::InvalidRequest));
    client.hello("late-hello");
    assert_eq!(client.status().model, "tiny-sd");

    // A hello in another protocol version: UnsupportedVersion, then the daemon closes.
    let mut old = daemon.raw();
    old.send(&ClientMessage::Hello(ClientHello {
        client_name: "from the future".into(),
        protocol_version: PROTOCOL_VERSION + 1,
    }));
    let e = old.expect_error();
    assert_eq!(
        (e.request_id, e.code),
        (None, ErrorCode::UnsupportedVersion)
    );
    assert!(old.recv_or_eof().is_none(), "connection closed");
    daemon.assert_alive();
}

#[test]
fn socket_folder_writable_by_others_is_refused() {
    let dir = temp_dir("unsafe");
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = serve_command(&fixture("tiny-sd"), &shared.join("livefill.sock"), &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not using the socket folder"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn peers_running_as_another_user_are_refused() {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let mut daemon = Daemon::start("tiny-sd");
    // Open the file permissions wide, so only the daemon's peer check stands in the way.
    let run_dir = daemon.socket.parent().unwrap();
    for (path, mode) in [(&daemon.dir, 0o711), (&run_dir.to_path_buf(), 0o711)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The other user runs a copy of the binary beside the socket: the checkout itself may sit
    // below a folder only its owner can enter.
    let client = daemon.dir.join("livefill-client");
    std::fs::copy(env!("CARGO_BIN_EXE_livefill"), &client).unwrap();
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut foreign = std::process::Command::new(&client);
    for (key, value) in livefill_command().get_envs() {
        match value {
            Some(value) => foreign.env(key, value),
            None => foreign.env_remove(key),
        };
    }
    let out = match foreign
        .args(["status", "--socket"])
        .arg(&daemon.socket)
        .uid(65534)
        .gid(65534)
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "skipped: uid 65534 cannot reach {} ({e}): a folder above the temporary \
                 directory is closed to other users; set TMPDIR to a world-traversable folder",
                client.display()
            );
            return;
        }
        other => other.unwrap(),
    };
    assert!(
        !out.status.success(),
        "a foreign user got an answer: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        eventually(Duration::from_secs(5), || daemon
            .log_text()
            .contains("peer runs as uid 65534")),
        "{}",
        daemon.log_text()
    );
    daemon.assert_alive();
    assert_eq!(daemon.status().model, "tiny-sd");
}
