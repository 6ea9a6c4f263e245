//! Malformed input: every kind of broken frame gives a clear error, never a panic or a huge
//! allocation.
//!
//! Exists because the daemon reads frames from any local process. Covers each `FrameError` case
//! explicitly, then feeds a few thousand deterministic random and mutated frames to the reader and
//! the payload decoders.

mod samples;

use livefill_protocol::*;
use samples::samples;

fn header(magic: &[u8; 4], version: u16, flags: u16, len: u32) -> Vec<u8> {
    let mut h = magic.to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h
}

fn read(bytes: &[u8]) -> Result<Option<ClientMessage>, FrameError> {
    read_client_frame(&mut &bytes[..], DEFAULT_MAX_PAYLOAD)
}

fn status_frame() -> Vec<u8> {
    encode_client(&ClientMessage::Status)
}

#[test]
fn wrong_magic() {
    let mut f = status_frame();
    f[..4].copy_from_slice(b"HTTP");
    let e = read(&f).unwrap_err();
    assert!(
        matches!(e, FrameError::BadMagic { found } if &found == b"HTTP"),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::BadFrame);
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn wrong_version_is_refused_before_the_payload() {
    for v in [0, PROTOCOL_VERSION + 1, u16::MAX] {
        // The payload is garbage on purpose: it must not even be looked at.
        let mut f = header(&MAGIC, v, 0, 3);
        f.extend_from_slice(&[0xff, 0xff, 0xff]);
        let e = read(&f).unwrap_err();
        assert!(
            matches!(e, FrameError::UnsupportedVersion { got, supported } if got == v && supported == PROTOCOL_VERSION),
            "{e}"
        );
        assert_eq!(e.code(), ErrorCode::UnsupportedVersion);
        let reply = e.to_error_reply();
        assert_eq!(reply.request_id, None);
        assert!(reply.message.contains(&v.to_string()));
    }
}

/// An outdated peer gets the error in its own version's frame, with the version-1 layout of
/// `DaemonMessage::Error` (variant 4, `ErrorReply`), which it can decode; newer or unknown
/// versions get nothing of the kind.
#[test]
fn an_old_peer_gets_an_error_frame_in_its_own_version() {
    let reply = ErrorReply::connection(ErrorCode::UnsupportedVersion, "update the plugin");
    let old = encode_error_for_version(&reply, OLDEST_READABLE_VERSION).expect("old version");
    assert_eq!(&old[4..6], &OLDEST_READABLE_VERSION.to_le_bytes());
    let current = encode_daemon(&DaemonMessage::Error(reply.clone()));
    assert_eq!(old[..4], current[..4]);
    assert_eq!(
        old[6..],
        current[6..],
        "same payload, only the version differs"
    );
    // Version 1's layout of Error(ErrorReply { None, UnsupportedVersion, message }).
    let mut v1 = vec![4, 0, 0, 0, 0, 1, 0, 0, 0];
    v1.extend_from_slice(&(reply.message.len() as u64).to_le_bytes());
    v1.extend_from_slice(reply.message.as_bytes());
    assert_eq!(&old[HEADER_LEN..], v1.as_slice());
    assert!(encode_error_for_version(&reply, PROTOCOL_VERSION).is_none());
    assert!(encode_error_for_version(&reply, PROTOCOL_VERSION + 1).is_none());
    assert!(encode_error_for_version(&reply, 0).is_none());
}

#[test]
fn nonzero_flags() {
    let mut f = header(&MAGIC, PROTOCOL_VERSION, 1, 4);
    f.extend_from_slice(&3u32.to_le_bytes());
    let e = read(&f).unwrap_err();
    assert!(matches!(e, FrameError::BadFlags { flags: 1 }), "{e}");
    assert_eq!(e.code(), ErrorCode::BadFrame);
}

#[test]
fn oversize_length_is_refused_without_allocating() {
    // 0xFFFF_FFFF with nothing behind it: must fail on the header alone.
    let f = header(&MAGIC, PROTOCOL_VERSION, 0, u32::MAX);
    let e = read(&f).unwrap_err();
    assert!(
        matches!(e, FrameError::TooLarge { len, max } if len == u64::from(u32::MAX) && max == u64::from(DEFAULT_MAX_PAYLOAD)),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    // A caller's own, smaller maximum.
    let f = encode_client(&ClientMessage::Hello(ClientHello::new("x".repeat(100))));
    let e = read_client_frame(&mut &f[..], 16).unwrap_err();
    assert!(matches!(e, FrameError::TooLarge { max: 16, .. }), "{e}");
}

#[test]
fn header_parse_checks_in_order() {
    let h: [u8; HEADER_LEN] = header(b"LVFX", 99, 1, u32::MAX).try_into().unwrap();
    assert!(matches!(
        FrameHeader::parse(&h, 10),
        Err(FrameError::BadMagic { .. })
    ));
    let h: [u8; HEADER_LEN] = header(&MAGIC, 99, 1, u32::MAX).try_into().unwrap();
    assert!(matches!(
        FrameHeader::parse(&h, 10),
        Err(FrameError::UnsupportedVersion { .. })
    ));
    let h: [u8; HEADER_LEN] = header(&MAGIC, PROTOCOL_VERSION, 0, 10).try_into().unwrap();
    assert_eq!(FrameHeader::parse(&h, 10).unwrap(), FrameHeader::new(10));
    assert_eq!(FrameHeader::new(10).to_bytes(), h);
}

#[test]
fn truncated_header_and_body() {
    let f = status_frame();
    let e = read(&f[..5]).unwrap_err();
    assert!(
        matches!(
            e,
            FrameError::Truncated {
                expected: HEADER_LEN,
                got: 5
            }
        ),
        "{e}"
    );
    let f = encode_client(&ClientMessage::Cancel { request_id: 7 });
    let e = read(&f[..f.len() - 3]).unwrap_err();
    assert!(
        matches!(
            e,
            FrameError::Truncated {
                expected: 12,
                got: 9
            }
        ),
        "{e}"
    );
    assert_eq!(e.code(), ErrorCode::BadFrame);
    // Clean end of stream before any frame is not an error.
    assert!(read(&[]).unwrap().is_none());
}

#[test]
fn length_larger_than_the_data_sent() {
    // Announces 100 MB, sends 4 bytes: Truncated, and memory only grows with what arrived.
    let mut f = header(&MAGIC, PROTOCOL_VERSION, 0, 100_000_000);
    f.extend_from_slice(&[1, 2, 3, 4]);
    let e = read(&f).unwrap_err();
    assert!(
        matches!(
            e,
            FrameError::Truncated {
                expected: 100_000_000,
                got: 4
            }
        ),
        "{e}"
    );
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut payload = encode_payload(&ClientMessage::Cancel { request_id: 7 });
    payload.push(0);
    let e = decode_client_payload(&payload).unwrap_err();
    assert!(
        matches!(&e, FrameError::Decode(m) if m.contains("trailing")),
        "{e}"
    );
    // Same through a whole frame.
    let mut f = header(&MAGIC, PROTOCOL_VERSION, 0, payload.len() as u32);
    f.extend_from_slice(&payload);
    let e = read(&f).unwrap_err();
    assert!(e.is_recoverable(), "{e}");
    assert_eq!(e.code(), ErrorCode::BadFrame);
}

#[test]
fn garbage_payloads() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],                                                           // no variant index
        vec![0xff, 0xff, 0xff, 0xff],                                     // unknown variant
        6u32.to_le_bytes().to_vec(), // one past the last client variant
        vec![0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // 2^63 string length
        vec![0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xc3], // invalid UTF-8
        vec![2, 0, 0, 0, 1],         // Cancel with a short u64
    ];
    for p in cases {
        let e = decode_client_payload(&p).unwrap_err();
        assert!(matches!(e, FrameError::Decode(_)), "{p:?}: {e}");
        assert!(!e.to_string().is_empty());
    }
    // A bool that is neither 0 nor 1, and an option tag that is neither 0 nor 1.
    let hello = samples()
        .into_iter()
        .find_map(|(_, s)| match s {
            samples::Sample::Daemon(m @ DaemonMessage::Hello(_)) => Some(m),
            _ => None,
        })
        .unwrap();
    let mut p = encode_payload(&hello);
    // Layout tail: taesd_previews u8, max_image_side u32, max_frame_bytes u64.
    let taesd = p.len() - 8 - 4 - 1;
    p[taesd] = 7;
    assert!(decode_daemon_payload(&p).is_err());
    let mut p = encode_payload(&DaemonMessage::Progress {
        request_id: 1,
        step: 1,
        total_steps: 1,
        preview: None,
    });
    *p.last_mut().unwrap() = 2;
    assert!(decode_daemon_payload(&p).is_err());
}

#[test]
fn huge_inner_lengths_do_not_allocate() {
    // A string or pixel length of ~4 GiB inside a tiny payload must fail cleanly and fast.
    for len in [u64::from(u32::MAX), 1 << 40, u64::MAX] {
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(b"abc");
        assert!(decode_client_payload(&p).is_err());

        // Progress { preview: Some(image with a lying pixel length) }
        let mut p = 2u32.to_le_bytes().to_vec();
        p.extend_from_slice(&1u64.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(1);
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        p.extend_from_slice(&len.to_le_bytes());
        p.extend_from_slice(&[1, 2, 3, 4]);
        assert!(decode_daemon_payload(&p).is_err());
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let corpus: Vec<Vec<u8>> = samples().iter().map(|(_, s)| s.frame()).collect();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut decoded_ok = 0;
    for i in 0..4000 {
        let mut f = corpus[rng.below(corpus.len())].clone();
        match i % 6 {
            // Flip a few random bits anywhere.
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(f.len());
                    f[at] ^= 1 << rng.below(8);
                }
            }
            // Overwrite a random byte inside the payload with an extreme value.
            1 => {
                let at = HEADER_LEN + rng.below(f.len() - HEADER_LEN);
                f[at] = [0, 1, 2, 0x7f, 0x80, 0xff][rng.below(6)];
            }
            // Truncate.
            2 => f.truncate(rng.below(f.len())),
            // Insert random bytes into the payload and fix the length.
            3 => {
                let at = HEADER_LEN + rng.below(f.len() - HEADER_LEN + 1);
                for _ in 0..1 + rng.below(9) {
                    f.insert(at, rng.next() as u8);
                }
                let len = (f.len() - HEADER_LEN) as u32;
                f[8..12].copy_from_slice(&len.to_le_bytes());
            }
            // Random length field.
            4 => {
                let len = match rng.below(3) {
                    0 => rng.next() as u32,
                    1 => rng.below(64) as u32,
                    _ => DEFAULT_MAX_PAYLOAD,
                };
                f[8..12].copy_from_slice(&len.to_le_bytes());
            }
            // Pure noise behind a valid header.
            _ => {
                let n = rng.below(200);
                f = FrameHeader::new(n as u32).to_bytes().to_vec();
                f.extend((0..n).map(|_| rng.next() as u8));
            }
        }
        // Both decoders on the same bytes, via the stream reader and directly.
        if read_client_frame(&mut &f[..], DEFAULT_MAX_PAYLOAD).is_ok() {
            decoded_ok += 1;
        }
        let _ = read_daemon_frame(&mut &f[..], DEFAULT_MAX_PAYLOAD);
        if f.len() > HEADER_LEN {
            let _ = decode_client_payload(&f[HEADER_LEN..]);
            let _ = decode_daemon_payload(&f[HEADER_LEN..]);
        }
    }
    // Sanity: the mutations are not all rejected trivially.
    assert!(decoded_ok > 0);
}

/// Found by the `request` fuzz target: sides from the peer whose byte count overflows u64
/// (u32::MAX × u32::MAX × 4) made `expected_len` overflow; such an image is just not well formed.
#[test]
fn sides_too_large_to_count_are_not_well_formed() {
    let image = RgbaImage::new(u32::MAX, u32::MAX, vec![0; 4]);
    assert_eq!(image.expected_len(), u64::MAX);
    assert!(!image.is_well_formed());
    let mask = Mask::new(u32::MAX, u32::MAX, Vec::new());
    assert_eq!(
        mask.expected_len(),
        u64::from(u32::MAX) * u64::from(u32::MAX)
    );
    assert!(!mask.is_well_formed());
}
