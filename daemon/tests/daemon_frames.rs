//! Malformed input on the wire never brings the daemon down: every bad frame gets an error
//! (`request_id: None`), an undecodable payload in an intact frame leaves the connection usable,
//! and a broken header closes it. Runs the real `livefill serve` binary, CPU only.

#![cfg(unix)]

mod daemon_support;

use std::time::Duration;

use daemon_support::*;
use livefill_protocol::{
    ClientHello, ClientMessage, DaemonMessage, ErrorCode, FrameHeader, HEADER_LEN, MAGIC,
    OLDEST_READABLE_VERSION, PROTOCOL_VERSION, decode_daemon_payload, encode_client,
};

fn header(magic: [u8; 4], version: u16, flags: u16, len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out
}

/// Sends `bytes` on a fresh connection (after a hello when `greet`), expects one connection-level
/// error with `code`, then the daemon closing the connection.
fn expect_fatal(daemon: &Daemon, greet: bool, bytes: &[u8], code: ErrorCode) {
    let mut client = daemon.raw();
    if greet {
        client.hello("fatal-frames");
    }
    client.send_raw(bytes);
    let e = client.expect_error();
    assert_eq!((e.request_id, e.code), (None, code), "{e}");
    assert!(
        client.recv_or_eof().is_none(),
        "the daemon closes after {code}"
    );
}

fn assert_still_serving(daemon: &mut Daemon) {
    daemon.assert_alive();
    let (mut client, _) = daemon.client("after-abuse");
    assert_eq!(client.status().model, "tiny-sd");
}

#[test]
fn broken_headers_get_an_error_then_close() {
    let mut daemon = Daemon::start("tiny-sd");
    // Bad magic, before and after the handshake.
    expect_fatal(
        &daemon,
        false,
        b"GET / HTTP/1.1\r\n\r\n",
        ErrorCode::BadFrame,
    );
    expect_fatal(
        &daemon,
        true,
        &header(*b"XXXX", PROTOCOL_VERSION, 0, 4),
        ErrorCode::BadFrame,
    );
    // A newer protocol version in the frame header.
    let mut newer = header(MAGIC, PROTOCOL_VERSION + 1, 0, 4);
    newer.extend_from_slice(&[3, 0, 0, 0]);
    expect_fatal(&daemon, false, &newer, ErrorCode::UnsupportedVersion);
    // Reserved flags.
    expect_fatal(
        &daemon,
        true,
        &header(MAGIC, PROTOCOL_VERSION, 1, 4),
        ErrorCode::BadFrame,
    );
    // Announced length far beyond the limit: refused from the header alone.
    expect_fatal(
        &daemon,
        true,
        &header(MAGIC, PROTOCOL_VERSION, 0, 0xFFFF_FFFF),
        ErrorCode::FrameTooLarge,
    );
    assert_still_serving(&mut daemon);
}

/// A plugin of an older protocol version (its hello in its own frame version) reads, in a frame
/// of that version, an `UnsupportedVersion` error telling it to update the plugin; then the
/// daemon closes. The daemon keeps serving.
#[test]
fn an_old_plugin_is_told_to_update_in_its_own_frame_version() {
    let mut daemon = Daemon::start("tiny-sd");
    let old = OLDEST_READABLE_VERSION;
    let mut hello = encode_client(&ClientMessage::Hello(ClientHello {
        client_name: "krita-livefill 0.1".into(),
        protocol_version: old,
    }));
    hello[4..6].copy_from_slice(&old.to_le_bytes());
    let mut client = daemon.raw();
    client.send_raw(&hello);
    let bytes = client.connection.read_to_end().expect("read until close");
    assert!(bytes.len() > HEADER_LEN, "{bytes:?}");
    assert_eq!(&bytes[..4], &MAGIC);
    assert_eq!(u16::from_le_bytes([bytes[4], bytes[5]]), old);
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), HEADER_LEN + len, "one frame, then the close");
    match decode_daemon_payload(&bytes[HEADER_LEN..]).expect("a version-1 reader decodes it") {
        DaemonMessage::Error(e) => {
            assert_eq!(
                (e.request_id, e.code),
                (None, ErrorCode::UnsupportedVersion)
            );
            assert!(
                e.message
                    .contains("update the plugin: livefill install-plugin krita"),
                "{e}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_still_serving(&mut daemon);
}

#[test]
fn undecodable_payloads_keep_the_connection_usable() {
    let mut daemon = Daemon::start("tiny-sd");
    let (mut client, _) = daemon.client("garbage");
    let garbage: [&[u8]; 5] = [
        &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
        // Unknown variant index.
        &[99, 0, 0, 0],
        // Status with trailing bytes.
        &[3, 0, 0, 0, 0],
        // Cancel cut short.
        &[2, 0, 0, 0, 1],
        // Hello whose string length runs past the payload.
        &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0],
    ];
    for payload in garbage {
        let mut frame = FrameHeader::new(payload.len() as u32).to_bytes().to_vec();
        frame.extend_from_slice(payload);
        client.send_raw(&frame);
        let e = client.expect_error();
        assert_eq!((e.request_id, e.code), (None, ErrorCode::BadFrame), "{e}");
        // Same connection, next frame: still answered.
        assert_eq!(client.status().model, "tiny-sd");
    }
    // Empty payload.
    client.send_raw(&FrameHeader::new(0).to_bytes());
    assert_eq!(client.expect_error().code, ErrorCode::BadFrame);
    client.send(&ClientMessage::Generate(txt2img(1, 64, 1)));
    let mut others = Vec::new();
    let msgs = client.until_final(1, &mut others);
    assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
    assert_still_serving(&mut daemon);
}

#[test]
fn truncated_frames_and_abrupt_closes_are_harmless() {
    let mut daemon = Daemon::start("tiny-sd");
    // Half a header, then gone.
    {
        let mut client = daemon.raw();
        client.send_raw(&MAGIC);
    }
    // A header announcing 1000 bytes, 10 sent, then the write side closed.
    {
        let mut client = daemon.raw();
        client.hello("truncated");
        client.send_raw(&header(MAGIC, PROTOCOL_VERSION, 0, 1000));
        client.send_raw(&[0; 10]);
        client.connection.close_sending().unwrap();
        let e = client.expect_error();
        assert_eq!(e.code, ErrorCode::BadFrame);
    }
    // A frame cut in the middle of a generate request with a job running elsewhere.
    {
        let (mut busy, _) = daemon.client("busy");
        busy.send(&ClientMessage::Generate(txt2img(1, 128, 8)));
        let mut client = daemon.raw();
        client.hello("cut");
        let frame = encode_client(&ClientMessage::Generate(inpaint(1, 128, 128)));
        client.send_raw(&frame[..frame.len() / 2]);
        drop(client);
        let mut others = Vec::new();
        let msgs = busy.until_final(1, &mut others);
        assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
    }
    assert_still_serving(&mut daemon);
}

#[test]
fn configured_frame_limit_is_enforced_before_reading_the_payload() {
    let mut daemon = Daemon::start_with("tiny-sd", &["--max-frame-bytes", "100000"]);
    let (mut client, hello) = daemon.client("limit");
    assert_eq!(hello.capabilities.max_frame_bytes, 100_000);
    let frame = encode_client(&ClientMessage::Generate(inpaint(1, 200, 200)));
    assert!(frame.len() > 100_000);
    // Only the header goes out; the daemon must answer without waiting for the payload.
    client.send_raw(&frame[..HEADER_LEN]);
    client.set_timeout(Duration::from_secs(10));
    let e = client.expect_error();
    assert_eq!((e.request_id, e.code), (None, ErrorCode::FrameTooLarge));
    // The rest of the frame is not read as frames: the connection is closed.
    let _ = client.connection.send_bytes(&frame[HEADER_LEN..]);
    assert!(client.recv_or_eof().is_none());
    // Requests under the limit work.
    let (mut ok, _) = daemon.client("small");
    ok.send(&ClientMessage::Generate(inpaint(1, 64, 64)));
    let mut others = Vec::new();
    let msgs = ok.until_final(1, &mut others);
    assert!(matches!(msgs.last(), Some(DaemonMessage::Result(_))));
    assert_still_serving(&mut daemon);
}

#[test]
fn many_abusive_connections_at_once() {
    let mut daemon = Daemon::start("tiny-sd");
    let socket = daemon.socket.clone();
    let threads: Vec<_> = (0..16u8)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&socket);
                let bytes: Vec<u8> = (0..64u8)
                    .map(|b| b.wrapping_mul(31).wrapping_add(i))
                    .collect();
                let _ = client.connection.send_bytes(&bytes);
                // Whatever comes back, the daemon must not die; read until it closes.
                while client.recv_or_eof().is_some() {}
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_still_serving(&mut daemon);
}
