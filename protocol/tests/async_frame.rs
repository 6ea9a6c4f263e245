//! The tokio reader and writer agree with the sync ones (feature `tokio`).
//!
//! Exists because the daemon uses only the async path; run with
//! `cargo test -p livefill-protocol --features tokio`.

#![cfg(feature = "tokio")]

mod samples;

use livefill_protocol::*;
use samples::{Sample, samples};

#[tokio::test]
async fn async_round_trip_over_a_duplex_pipe() {
    let (mut a, mut b) = tokio::io::duplex(1 << 16);
    let writer = tokio::spawn(async move {
        for (_, s) in samples() {
            if let Sample::Client(m) = s {
                write_frame_async(&mut a, &m).await.unwrap();
            }
        }
    });
    for (_, s) in samples() {
        if let Sample::Client(m) = s {
            let got = read_client_frame_async(&mut b, DEFAULT_MAX_PAYLOAD)
                .await
                .unwrap();
            assert_eq!(got, Some(m));
        }
    }
    writer.await.unwrap();
    assert_eq!(
        read_client_frame_async(&mut b, DEFAULT_MAX_PAYLOAD)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn async_reader_refuses_bad_headers() {
    let mut f = encode_daemon(&DaemonMessage::ShuttingDown);
    let other = PROTOCOL_VERSION + 1;
    f[4..6].copy_from_slice(&other.to_le_bytes());
    let e = read_daemon_frame_async(&mut &f[..], DEFAULT_MAX_PAYLOAD)
        .await
        .unwrap_err();
    assert!(
        matches!(e, FrameError::UnsupportedVersion { got, .. } if got == other),
        "{e}"
    );

    let mut f = FrameHeader::new(u32::MAX).to_bytes().to_vec();
    f.push(0);
    let e = read_daemon_frame_async(&mut &f[..], DEFAULT_MAX_PAYLOAD)
        .await
        .unwrap_err();
    assert!(matches!(e, FrameError::TooLarge { .. }), "{e}");

    let f = encode_daemon(&DaemonMessage::ShuttingDown);
    let e = read_daemon_frame_async(&mut &f[..f.len() - 1], DEFAULT_MAX_PAYLOAD)
        .await
        .unwrap_err();
    assert!(matches!(e, FrameError::Truncated { .. }), "{e}");
}
