//! Serde adapter that moves a `Vec<u8>` as one byte string instead of element by element.
//!
//! Exists for speed only: pixel buffers reach hundreds of megabytes, and serde's default `Vec<u8>`
//! path visits every byte. With bincode's legacy config both paths produce the **same bytes**
//! (u64 length, then the raw bytes), so the wire format does not depend on this adapter; it just
//! turns encoding into a `memcpy` and lets decoding check the length against the bytes really
//! present before allocating.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(bytes)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    // `deserialize_bytes`, not `_byte_buf`: bincode's slice decoder then checks that the claimed
    // length is really present before anything is allocated.
    deserializer.deserialize_bytes(ByteBufVisitor)
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    // Self-describing formats (e.g. JSON, used in logs or tests) write bytes as a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}
