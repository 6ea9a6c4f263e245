//! Framing: how one message travels on a byte stream.
//!
//! Exists so that both ends can find message boundaries, refuse a peer speaking another protocol
//! version before misreading a single payload byte, and bound memory: a frame is a fixed 12-byte
//! header (magic `LVFL`, version u16 LE, flags u16 LE, payload length u32 LE) followed by the
//! payload (see [`crate::codec`]). The length is checked against a maximum before anything is
//! allocated, and the payload buffer then only grows as bytes really arrive.

use std::io::{self, Read, Write};

use crate::codec::{WireMessage, decode_payload, encode_payload_into, payload_len};
pub use crate::error::FrameError;
use crate::message::{
    ClientMessage, DaemonMessage, ErrorReply, OLDEST_READABLE_VERSION, PROTOCOL_VERSION,
};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"LVFL";

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 12;

/// Default bound on a frame's payload: an 8192x8192 RGBA image plus its mask (5 bytes per pixel)
/// plus 1 MiB for everything else.
pub const DEFAULT_MAX_PAYLOAD: u32 = 8192 * 8192 * 5 + (1 << 20);

/// How much of a payload buffer is reserved up front; beyond that it grows with the data received,
/// so a peer announcing a large frame and sending nothing does not cost memory.
const INITIAL_RESERVE: usize = 1 << 20;

/// A parsed, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub flags: u16,
    pub payload_len: u32,
}

impl FrameHeader {
    /// A header for a payload of `payload_len` bytes in this crate's protocol version.
    pub fn new(payload_len: u32) -> Self {
        Self {
            version: PROTOCOL_VERSION,
            flags: 0,
            payload_len,
        }
    }

    /// Parses and validates a header: magic, version, flags, then length against `max_payload`,
    /// in that order.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_payload: u32) -> Result<Self, FrameError> {
        let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if found != MAGIC {
            return Err(FrameError::BadMagic { found });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion {
                got: version,
                supported: PROTOCOL_VERSION,
            });
        }
        let flags = u16::from_le_bytes([bytes[6], bytes[7]]);
        if flags != 0 {
            return Err(FrameError::BadFlags { flags });
        }
        let payload_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if payload_len > max_payload {
            return Err(FrameError::TooLarge {
                len: payload_len.into(),
                max: max_payload.into(),
            });
        }
        Ok(Self {
            version,
            flags,
            payload_len,
        })
    }

    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[6..8].copy_from_slice(&self.flags.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out
    }
}

/// Encodes `msg` as a complete frame (header + payload), or `TooLarge` if its payload does not
/// fit in a u32 length.
pub fn try_encode_frame<M: WireMessage>(msg: &M) -> Result<Vec<u8>, FrameError> {
    let len = payload_len(msg);
    let wire_len = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len: len as u64,
        max: u32::MAX.into(),
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&FrameHeader::new(wire_len).to_bytes());
    encode_payload_into(msg, &mut out);
    debug_assert_eq!(out.len(), HEADER_LEN + len);
    Ok(out)
}

/// `DaemonMessage::Error(reply)` framed in an older protocol `version` that a peer speaking it
/// can still read (the `ErrorReply` layout has not changed since [`OLDEST_READABLE_VERSION`]),
/// so that an outdated client shows the reason instead of a decode failure. `None` for versions
/// outside `OLDEST_READABLE_VERSION..PROTOCOL_VERSION`.
pub fn encode_error_for_version(reply: &ErrorReply, version: u16) -> Option<Vec<u8>> {
    if !(OLDEST_READABLE_VERSION..PROTOCOL_VERSION).contains(&version) {
        return None;
    }
    let mut frame = try_encode_frame(&DaemonMessage::Error(reply.clone())).ok()?;
    frame[4..6].copy_from_slice(&version.to_le_bytes());
    Some(frame)
}

/// Encodes a client message as a complete frame.
///
/// # Panics
/// If the payload exceeds 4 GiB (impossible for images within [`DEFAULT_MAX_PAYLOAD`]); use
/// [`try_encode_frame`] to get an error instead.
pub fn encode_client(msg: &ClientMessage) -> Vec<u8> {
    try_encode_frame(msg).expect("client message payload exceeds 4 GiB")
}

/// Encodes a daemon message as a complete frame.
///
/// # Panics
/// If the payload exceeds 4 GiB; use [`try_encode_frame`] to get an error instead.
pub fn encode_daemon(msg: &DaemonMessage) -> Vec<u8> {
    try_encode_frame(msg).expect("daemon message payload exceeds 4 GiB")
}

/// Writes `msg` as one frame and flushes.
pub fn write_frame<W: Write, M: WireMessage>(w: &mut W, msg: &M) -> Result<(), FrameError> {
    let frame = try_encode_frame(msg)?;
    w.write_all(&frame)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's payload. `Ok(None)` when the stream ends cleanly before a new frame.
pub fn read_frame_payload<R: Read>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let got = read_full(r, &mut header)?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER_LEN {
        return Err(FrameError::Truncated {
            expected: HEADER_LEN,
            got,
        });
    }
    let header = FrameHeader::parse(&header, max_payload)?;
    let len = header.payload_len as usize;
    let mut payload = Vec::with_capacity(len.min(INITIAL_RESERVE));
    let got = r.take(len as u64).read_to_end(&mut payload)?;
    if got < len {
        return Err(FrameError::Truncated { expected: len, got });
    }
    Ok(Some(payload))
}

/// Reads and decodes one frame. `Ok(None)` when the stream ends cleanly before a new frame.
pub fn read_frame<R: Read, M: WireMessage>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<M>, FrameError> {
    match read_frame_payload(r, max_payload)? {
        Some(payload) => decode_payload(&payload).map(Some),
        None => Ok(None),
    }
}

/// Reads one client message (daemon side). `Ok(None)` on a clean end of stream.
pub fn read_client_frame<R: Read>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<ClientMessage>, FrameError> {
    read_frame(r, max_payload)
}

/// Reads one daemon message (client side). `Ok(None)` on a clean end of stream.
pub fn read_daemon_frame<R: Read>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<DaemonMessage>, FrameError> {
    read_frame(r, max_payload)
}

/// Fills `buf` as far as the stream allows; returns how many bytes were read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
