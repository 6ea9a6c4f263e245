//! Why a frame could not be read, written or decoded, and what to tell the peer.
//!
//! Exists apart from `frame` and `codec` because both produce these errors: the framing (bad
//! header, truncation, I/O) and the payload decoding. Keeping it here lets the arrows point one
//! way: `frame` → `codec` → `error`.

use std::io;

use crate::message::{ErrorCode, ErrorReply};

/// Why a frame could not be read or decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a livefill frame: bad magic {found:02x?} (expected \"LVFL\")")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported protocol version {got} (this side speaks version {supported})")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("reserved header flags must be 0, got {flags:#06x}")]
    BadFlags { flags: u16 },
    #[error("frame payload of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    #[error("truncated frame: expected {expected} bytes, got {got} before end of stream")]
    Truncated { expected: usize, got: usize },
    #[error("undecodable payload: {0}")]
    Decode(String),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// The wire code to report this problem with. I/O errors map to `BadFrame`, although usually
    /// there is nobody left to tell.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::BadMagic { .. }
            | FrameError::BadFlags { .. }
            | FrameError::Truncated { .. }
            | FrameError::Decode(_)
            | FrameError::Io(_) => ErrorCode::BadFrame,
        }
    }

    /// A connection-level [`ErrorReply`] (`request_id: None`) describing this error.
    pub fn to_error_reply(&self) -> ErrorReply {
        ErrorReply::connection(self.code(), self.to_string())
    }

    /// Whether the stream can still be used after this error. Only a fully read frame whose
    /// payload did not decode leaves the stream at a frame boundary; after anything else the
    /// connection should be closed (after sending [`FrameError::to_error_reply`] where possible).
    pub fn is_recoverable(&self) -> bool {
        matches!(self, FrameError::Decode(_))
    }
}
