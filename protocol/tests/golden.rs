//! Golden frames: the byte layout is frozen in files that both languages must reproduce.
//!
//! Exists to catch any accidental change of the wire format (a reordered field, a changed
//! bincode config) and any disagreement between the Rust and Python codecs.
//! `tests/golden/rust/*.bin` are written by this test when `LIVEFILL_BLESS=1` and compared byte
//! for byte otherwise; `tests/golden/python/*.bin` are written by `python/make_golden.py` and
//! must decode here to exactly the Rust sample values (and, being the same values, to the same
//! bytes).

mod samples;

use std::path::PathBuf;

use livefill_protocol::*;
use samples::{Sample, samples};

fn golden_dir(side: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(side)
}

fn blessing() -> bool {
    std::env::var_os("LIVEFILL_BLESS").is_some_and(|v| v == "1")
}

fn split_frame(frame: &[u8]) -> (FrameHeader, &[u8]) {
    let header: &[u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
    let header = FrameHeader::parse(header, DEFAULT_MAX_PAYLOAD).unwrap();
    let payload = &frame[HEADER_LEN..];
    assert_eq!(header.payload_len as usize, payload.len());
    (header, payload)
}

#[test]
fn rust_frames_match_golden_files() {
    let dir = golden_dir("rust");
    let mut failures = Vec::new();
    for (name, sample) in samples() {
        let frame = sample.frame();
        let path = dir.join(format!("{name}.bin"));
        if blessing() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &frame).unwrap();
            continue;
        }
        match std::fs::read(&path) {
            Ok(golden) if golden == frame => {}
            Ok(_) => failures.push(format!("{name}: encoding differs from {}", path.display())),
            Err(e) => failures.push(format!("{name}: cannot read {}: {e}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatch (rerun with LIVEFILL_BLESS=1 only if the change is intended and \
         PROTOCOL_VERSION was bumped):\n{}",
        failures.join("\n")
    );
}

#[test]
fn no_stale_golden_files() {
    let names: Vec<String> = samples().iter().map(|(n, _)| format!("{n}.bin")).collect();
    for side in ["rust", "python"] {
        let Ok(entries) = std::fs::read_dir(golden_dir(side)) else {
            continue;
        };
        for entry in entries {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(names.contains(&file), "stale golden file {side}/{file}");
        }
    }
}

#[test]
fn every_sample_round_trips() {
    for (name, sample) in samples() {
        let frame = sample.frame();
        let (header, payload) = split_frame(&frame);
        assert_eq!(header, FrameHeader::new(payload.len() as u32), "{name}");
        match sample {
            Sample::Client(m) => {
                assert_eq!(decode_client_payload(payload).unwrap(), m, "{name}");
                let read = read_client_frame(&mut &frame[..], DEFAULT_MAX_PAYLOAD).unwrap();
                assert_eq!(read, Some(m), "{name}");
            }
            Sample::Daemon(m) => {
                assert_eq!(decode_daemon_payload(payload).unwrap(), m, "{name}");
                let read = read_daemon_frame(&mut &frame[..], DEFAULT_MAX_PAYLOAD).unwrap();
                assert_eq!(read, Some(m), "{name}");
            }
        }
    }
}

#[test]
fn python_frames_decode_to_the_rust_values() {
    let dir = golden_dir("python");
    for (name, sample) in samples() {
        let path = dir.join(format!("{name}.bin"));
        let frame = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `python3 protocol/python/make_golden.py`)",
                path.display()
            )
        });
        let (_, payload) = split_frame(&frame);
        match &sample {
            Sample::Client(m) => assert_eq!(&decode_client_payload(payload).unwrap(), m, "{name}"),
            Sample::Daemon(m) => assert_eq!(&decode_daemon_payload(payload).unwrap(), m, "{name}"),
        }
        assert_eq!(
            frame,
            sample.frame(),
            "{name}: Python bytes differ from Rust bytes"
        );
    }
}

#[test]
fn stream_of_frames_then_clean_eof() {
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (_, sample) in samples() {
        if let Sample::Daemon(m) = sample {
            write_frame(&mut stream, &m).unwrap();
            expected.push(m);
        }
    }
    let mut r = &stream[..];
    for m in expected {
        assert_eq!(
            read_daemon_frame(&mut r, DEFAULT_MAX_PAYLOAD).unwrap(),
            Some(m)
        );
    }
    assert_eq!(
        read_daemon_frame(&mut r, DEFAULT_MAX_PAYLOAD).unwrap(),
        None
    );
}

#[test]
fn large_image_round_trips() {
    let side = 1024u32;
    let pixels: Vec<u8> = (0..side * side * 4).map(|i| (i % 251) as u8).collect();
    let msg = DaemonMessage::Result(GenerateResult {
        request_id: 1,
        image: RgbaImage::new(side, side, pixels),
        offset_x: 0,
        offset_y: 0,
        seed: 9,
        timings: Vec::new(),
        model: "tiny".into(),
    });
    let frame = encode_daemon(&msg);
    assert_eq!(frame.len(), HEADER_LEN + payload_len_of(&msg));
    let decoded = read_daemon_frame(&mut &frame[..], DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(decoded, Some(msg));
}

fn payload_len_of(msg: &DaemonMessage) -> usize {
    livefill_protocol::codec::payload_len(msg)
}
