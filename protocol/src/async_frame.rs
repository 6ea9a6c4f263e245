//! Async (tokio) versions of the frame reader and writer; enabled by the `tokio` feature.
//!
//! Exists because the daemon serves every connection on tokio; the byte layout and all checks are
//! the ones of [`crate::frame`], only the I/O is `AsyncRead`/`AsyncWrite`. The readers are not
//! cancel-safe (a frame may be half-consumed when the future is dropped): run them in a dedicated
//! task per connection rather than directly inside `select!`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{WireMessage, decode_payload};
use crate::frame::{FrameError, FrameHeader, HEADER_LEN, try_encode_frame};
use crate::message::{ClientMessage, DaemonMessage};

const INITIAL_RESERVE: usize = 1 << 20;

/// Writes `msg` as one frame and flushes.
pub async fn write_frame_async<W, M>(w: &mut W, msg: &M) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    M: WireMessage,
{
    let frame = try_encode_frame(msg)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame's payload. `Ok(None)` when the stream ends cleanly before a new frame.
pub async fn read_frame_payload_async<R: AsyncRead + Unpin>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
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
    let got = r.take(len as u64).read_to_end(&mut payload).await?;
    if got < len {
        return Err(FrameError::Truncated { expected: len, got });
    }
    Ok(Some(payload))
}

/// Reads and decodes one frame. `Ok(None)` when the stream ends cleanly before a new frame.
pub async fn read_frame_async<R, M>(r: &mut R, max_payload: u32) -> Result<Option<M>, FrameError>
where
    R: AsyncRead + Unpin,
    M: WireMessage,
{
    match read_frame_payload_async(r, max_payload).await? {
        Some(payload) => decode_payload(&payload).map(Some),
        None => Ok(None),
    }
}

/// Reads one client message (daemon side). `Ok(None)` on a clean end of stream.
pub async fn read_client_frame_async<R: AsyncRead + Unpin>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<ClientMessage>, FrameError> {
    read_frame_async(r, max_payload).await
}

/// Reads one daemon message (client side). `Ok(None)` on a clean end of stream.
pub async fn read_daemon_frame_async<R: AsyncRead + Unpin>(
    r: &mut R,
    max_payload: u32,
) -> Result<Option<DaemonMessage>, FrameError> {
    read_frame_async(r, max_payload).await
}
