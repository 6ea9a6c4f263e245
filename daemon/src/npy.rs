//! Minimal reader/writer for NumPy `.npy` float32 arrays.
//!
//! Exists for `livefill generate --noise` (noise shared with diffusers for parity) and for the
//! reference fixtures; only little-endian float32 C-order arrays are supported.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a float32 little-endian C-order .npy file ({reason})")]
    Format { path: PathBuf, reason: String },
}

/// A float32 array: shape and data in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Read a `.npy` file holding `<f4` data.
pub fn read_f32(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_f32(&bytes).map_err(|reason| NpyError::Format {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parse the bytes of a `.npy` file holding `<f4` data; the error is the reason it is refused.
pub fn parse_f32(bytes: &[u8]) -> Result<NpyArray, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("bad magic".into());
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported version {v}")),
    };
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    if !header.contains("'descr': '<f4'") {
        return Err(format!("dtype is not <f4: {header}"));
    }
    if header.contains("'fortran_order': True") {
        return Err("fortran order".into());
    }
    let shape = parse_shape(header)?;
    // The shape is the file's word: its product (and bytes) must not overflow.
    let data_len = shape
        .iter()
        .try_fold(4usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    let body = &bytes[header_start + header_len..];
    if body.len() != data_len {
        return Err(format!(
            "expected {data_len} data bytes, found {}",
            body.len()
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyArray { shape, data })
}

fn parse_shape(header: &str) -> Result<Vec<usize>, String> {
    let start = header.find("'shape': (").ok_or("no shape")? + "'shape': (".len();
    let end = start + header[start..].find(')').ok_or("unterminated shape")?;
    header[start..end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| format!("bad shape entry {s:?}")))
        .collect()
}

/// Write a float32 array as `.npy` (version 1.0).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("livefill-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        write_f32(&path, &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, -6.5]).unwrap();
        let a = read_f32(&path).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data[5], -6.5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_f32(b"not numpy at all").is_err());
    }

    /// Found by the `npy` fuzz target: a shape whose byte count overflows was a panic (debug)
    /// or, wrapped, a tiny body accepted for a shape claiming 2^62 values (release).
    #[test]
    fn a_shape_too_large_to_count_is_refused() {
        let fuzzed = b"\x93NUMPY\x03\x00t\x00\x00\x00{'descr': '<f4', 'fortranalse, 'shape': \
            (015532559262904483838, 1,,)0    _order': False, 'e': (2, 1, 2), }          ";
        let err = parse_f32(fuzzed).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let wraps_to_4 = format!("{{'descr': '<f4', 'shape': ({},), }}", (1usize << 62) + 1);
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(wraps_to_4.len() as u16).to_le_bytes());
        bytes.extend_from_slice(wraps_to_4.as_bytes());
        bytes.extend_from_slice(&1f32.to_le_bytes());
        assert!(parse_f32(&bytes).unwrap_err().contains("too large"));
    }
}
