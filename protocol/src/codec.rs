//! Payload encoding: message <-> bytes with bincode 2 in its `legacy` configuration.
//!
//! Exists to pin down the one serde configuration both sides use (fixed-width little-endian
//! integers, u64 lengths, u32 enum variant indices, u8 option tags) and to make decoding of
//! untrusted bytes safe: every declared length is checked against the payload before anything is
//! allocated, and bytes left over after the message are an error, not ignored.

use bincode::config::{self, Config};
use bincode::enc::write::{SizeWriter, Writer};
use bincode::error::{DecodeError, EncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::FrameError;
use crate::message::{ClientMessage, DaemonMessage};

/// A top-level message type that travels in a frame: [`ClientMessage`] or [`DaemonMessage`].
pub trait WireMessage: Serialize + DeserializeOwned + sealed::Sealed {}

impl WireMessage for ClientMessage {}
impl WireMessage for DaemonMessage {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::message::ClientMessage {}
    impl Sealed for crate::message::DaemonMessage {}
}

/// The configuration of every payload.
fn wire_config() -> impl Config {
    config::legacy()
}

/// Appends bincode output to a `Vec` without going through `std::io`.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Exact payload size of `msg` in bytes.
pub fn payload_len<M: WireMessage>(msg: &M) -> usize {
    let mut size = SizeWriter::default();
    bincode::serde::encode_into_writer(msg, &mut size, wire_config())
        .expect("the message types only use serde features bincode supports");
    size.bytes_written
}

/// Appends the payload of `msg` to `out`.
pub fn encode_payload_into<M: WireMessage>(msg: &M, out: &mut Vec<u8>) {
    bincode::serde::encode_into_writer(msg, VecWriter(out), wire_config())
        .expect("the message types only use serde features bincode supports");
}

/// The payload of `msg` (no header).
pub fn encode_payload<M: WireMessage>(msg: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_len(msg));
    encode_payload_into(msg, &mut out);
    out
}

/// Decodes a whole payload (no header); fails on trailing bytes.
pub fn decode_payload<M: WireMessage>(payload: &[u8]) -> Result<M, FrameError> {
    // bincode allocates a `String` before checking that its bytes are present, unless a byte
    // limit is configured. The limit is a const generic, so pick the smallest of a few tiers that
    // is >= the payload: a valid message never reads more than the payload, and a lying length
    // can make us reserve at most 16x the payload (or 64 KiB), never gigabytes.
    let len = payload.len();
    let result = if len <= 1 << 16 {
        decode_limited::<M, { 1 << 16 }>(payload)
    } else if len <= 1 << 20 {
        decode_limited::<M, { 1 << 20 }>(payload)
    } else if len <= 1 << 24 {
        decode_limited::<M, { 1 << 24 }>(payload)
    } else if len <= 1 << 28 {
        decode_limited::<M, { 1 << 28 }>(payload)
    } else {
        decode_limited::<M, { u32::MAX as usize }>(payload)
    };
    let (msg, used) = result.map_err(|e| describe_decode_error(e, len))?;
    if used != len {
        return Err(FrameError::Decode(format!(
            "{} trailing bytes after the message ({used} of {len} payload bytes used)",
            len - used
        )));
    }
    Ok(msg)
}

fn decode_limited<M: WireMessage, const LIMIT: usize>(
    payload: &[u8],
) -> Result<(M, usize), DecodeError> {
    bincode::serde::borrow_decode_from_slice(payload, config::legacy().with_limit::<LIMIT>())
}

fn describe_decode_error(e: DecodeError, len: usize) -> FrameError {
    FrameError::Decode(match e {
        DecodeError::UnexpectedEnd { additional } => {
            format!("payload of {len} bytes ends early: at least {additional} more bytes needed")
        }
        DecodeError::LimitExceeded => {
            format!("a length field inside the payload exceeds the payload size ({len} bytes)")
        }
        other => other.to_string(),
    })
}

/// Decodes a [`ClientMessage`] payload (no header); fails on trailing bytes.
pub fn decode_client_payload(payload: &[u8]) -> Result<ClientMessage, FrameError> {
    decode_payload(payload)
}

/// Decodes a [`DaemonMessage`] payload (no header); fails on trailing bytes.
pub fn decode_daemon_payload(payload: &[u8]) -> Result<DaemonMessage, FrameError> {
    decode_payload(payload)
}
