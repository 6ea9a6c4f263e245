//! The livefill wire protocol.
//!
//! Exists so the daemon and every client (the Krita and GIMP plugins through the Python codec in
//! `protocol/python/`) agree on one byte layout. `message` holds the types, `frame` the framing
//! (magic, version, length, payload) and `codec` the payload encoding (bincode 2, legacy config).
//! `PROTOCOL.md` beside this crate is the byte-level spec.

pub mod message;

pub use message::*;
