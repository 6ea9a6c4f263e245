//! The livefill wire protocol.
//!
//! Exists so the daemon and every client (the Krita and GIMP plugins through the Python codec in
//! `protocol/python/`) agree on one byte layout. `message` holds the types, `frame` the framing
//! (magic, version, flags, length) and the sync stream I/O, `codec` the payload encoding
//! (bincode 2, legacy config), `error` what can go wrong with a frame and the code to report it
//! with, `async_frame` the tokio I/O (feature `tokio`), and `socket_path` the default address. `PROTOCOL.md` beside this crate is the byte-level spec.

mod byte_buf;
pub mod codec;
pub mod error;
pub mod frame;
pub mod message;
pub mod socket_path;

#[cfg(feature = "tokio")]
pub mod async_frame;

#[cfg(feature = "tokio")]
pub use async_frame::{
    read_client_frame_async, read_daemon_frame_async, read_frame_async, read_frame_payload_async,
    write_frame_async,
};
pub use codec::{
    WireMessage, decode_client_payload, decode_daemon_payload, decode_payload, encode_payload,
};
pub use frame::{
    DEFAULT_MAX_PAYLOAD, FrameError, FrameHeader, HEADER_LEN, MAGIC, encode_client, encode_daemon,
    encode_error_for_version, read_client_frame, read_daemon_frame, read_frame, read_frame_payload,
    try_encode_frame, write_frame,
};
pub use message::*;
pub use socket_path::{SOCKET_ENV, default_socket_path};
