//! The frame targets: a byte stream as the daemon reads it from a plugin (`client_frames`) and as
//! a Rust client reads it from the daemon (`daemon_frames`).
//!
//! Exists to drive `livefill_protocol`'s header check and payload decoding the way a connection
//! does (frame after frame until the stream ends or an error that leaves no frame boundary), with
//! two oracles besides "no panic, no huge allocation": the sync reader over a stream that hands
//! out a few bytes at a time (and `Interrupted` now and then) and the tokio reader the daemon uses
//! over the whole slice must agree frame by frame, and every payload that decodes must encode
//! back to the same bytes (the codec has one encoding per message, so nothing is lost or misread).

use std::fmt::Debug;
use std::io::{self, Read};
use std::sync::OnceLock;

use livefill_protocol::{
    ClientMessage, DEFAULT_MAX_PAYLOAD, DaemonMessage, FrameError, WireMessage, decode_payload,
    encode_payload, read_frame_async, read_frame_payload,
};

/// Frames read from one input at most (the stream is cut there, as if the peer went quiet).
const MAX_FRAMES: usize = 64;

pub fn client_frames(data: &[u8]) {
    frame_stream::<ClientMessage>(data);
}

pub fn daemon_frames(data: &[u8]) {
    frame_stream::<DaemonMessage>(data);
}

/// What reading one frame gave: the payload of a message that decoded (re-encoded, for the async
/// side), or the error's text.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Message(Vec<u8>),
    Error(String),
}

fn frame_stream<M: WireMessage + Debug>(data: &[u8]) {
    // The chunk size comes from the length so that seeds are plain frames: 0 = no limit.
    let mut stream = Chunked {
        data,
        chunk: data.len() % 17,
        calls: 0,
    };
    let sync = read_stream(|| {
        let payload = read_frame_payload(&mut stream, DEFAULT_MAX_PAYLOAD)?;
        payload
            .map(|payload| {
                let message: M = decode_payload(&payload)?;
                assert_eq!(
                    encode_payload(&message),
                    payload,
                    "{message:?} does not encode back to the payload it was decoded from"
                );
                Ok(payload)
            })
            .transpose()
    });
    let mut slice = data;
    let asynchronous = read_stream(|| {
        let message: Option<M> =
            runtime().block_on(read_frame_async(&mut slice, DEFAULT_MAX_PAYLOAD))?;
        Ok(message.map(|m| encode_payload(&m)))
    });
    assert_eq!(sync, asynchronous, "the sync and async readers disagree");
}

/// Frames until the end of the stream or an error after which a connection is closed.
fn read_stream(mut next: impl FnMut() -> Result<Option<Vec<u8>>, FrameError>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    while outcomes.len() < MAX_FRAMES {
        match next() {
            Ok(Some(payload)) => outcomes.push(Outcome::Message(payload)),
            Ok(None) => break,
            Err(e) => {
                // What the daemon sends back before closing (or carrying on).
                let reply = e.to_error_reply();
                assert_eq!(reply.code, e.code());
                let recoverable = e.is_recoverable();
                outcomes.push(Outcome::Error(e.to_string()));
                if !recoverable {
                    break;
                }
            }
        }
    }
    outcomes
}

/// A stream that hands out at most `chunk` bytes per read (any number when 0) and, for odd
/// chunk sizes, fails every third read with `Interrupted`, as a signal can.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    calls: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.calls += 1;
        if self.chunk % 2 == 1 && self.calls.is_multiple_of(3) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let limit = if self.chunk == 0 {
            buf.len()
        } else {
            self.chunk
        };
        let n = limit.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// One current-thread tokio runtime for the async reader, built on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread tokio runtime")
    })
}
