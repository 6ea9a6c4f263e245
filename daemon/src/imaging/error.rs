//! Errors of the imaging functions, plus the buffer checks that produce them.
//!
//! Exists because every function in `imaging` takes caller-supplied buffers whose sizes must
//! agree with their declared dimensions and with each other; a mismatch is a bad request or a
//! bug and must come back as a value the daemon can report, never as a panic in a worker.

use livefill_protocol::{Mask, RgbaImage};

use super::rect::Rect;

/// Why an imaging function refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagingError {
    #[error("{what}: {width}x{height} needs {expected} bytes, buffer holds {actual}")]
    BufferLength {
        what: &'static str,
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("{what} has zero width or height")]
    Empty { what: &'static str },
    #[error(
        "{what} is {actual_width}x{actual_height}, expected {expected_width}x{expected_height}"
    )]
    SizeMismatch {
        what: &'static str,
        expected_width: u32,
        expected_height: u32,
        actual_width: u32,
        actual_height: u32,
    },
    #[error("rectangle {rect:?} is not inside the {width}x{height} image")]
    RectOutside { rect: Rect, width: u32, height: u32 },
    #[error("{what}: {width}x{height} is too large")]
    TooLarge {
        what: &'static str,
        width: u64,
        height: u64,
    },
    #[error("tensor of shape {shape:?} is not [batch >= 1, channels >= 3, height, width]")]
    TensorShape { shape: Vec<usize> },
}

/// Largest side any imaging function produces; keeps every byte count far from overflow.
pub const MAX_SIDE: u32 = 1 << 16;

/// Checks that `len` bytes hold a `width` x `height` buffer of `channels` bytes per pixel.
pub(crate) fn check_buffer(
    what: &'static str,
    width: u32,
    height: u32,
    channels: usize,
    len: usize,
) -> Result<(), ImagingError> {
    if width == 0 || height == 0 {
        return Err(ImagingError::Empty { what });
    }
    check_side(what, width.into(), height.into())?;
    let expected = width as usize * height as usize * channels;
    if expected != len {
        return Err(ImagingError::BufferLength {
            what,
            width,
            height,
            expected,
            actual: len,
        });
    }
    Ok(())
}

/// Checks that a size the caller asks for is non-empty and not absurdly large.
pub(crate) fn check_side(what: &'static str, width: u64, height: u64) -> Result<(), ImagingError> {
    if width == 0 || height == 0 {
        return Err(ImagingError::Empty { what });
    }
    if width > MAX_SIDE.into() || height > MAX_SIDE.into() {
        return Err(ImagingError::TooLarge {
            what,
            width,
            height,
        });
    }
    Ok(())
}

/// Checks an RGBA image: non-empty, `width * height * 4` bytes.
pub fn validate_rgba(image: &RgbaImage, what: &'static str) -> Result<(), ImagingError> {
    check_buffer(what, image.width, image.height, 4, image.pixels.len())
}

/// Checks a mask: non-empty, `width * height` bytes.
pub fn validate_mask(mask: &Mask, what: &'static str) -> Result<(), ImagingError> {
    check_buffer(what, mask.width, mask.height, 1, mask.pixels.len())
}

/// Checks that a buffer has the dimensions another one dictates.
pub(crate) fn check_size(
    what: &'static str,
    expected: (u32, u32),
    actual: (u32, u32),
) -> Result<(), ImagingError> {
    if expected == actual {
        return Ok(());
    }
    Err(ImagingError::SizeMismatch {
        what,
        expected_width: expected.0,
        expected_height: expected.1,
        actual_width: actual.0,
        actual_height: actual.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_matching_buffers() {
        let image = RgbaImage {
            width: 3,
            height: 2,
            pixels: vec![0; 24],
        };
        assert!(validate_rgba(&image, "image").is_ok());
        let mask = Mask {
            width: 3,
            height: 2,
            pixels: vec![0; 6],
        };
        assert!(validate_mask(&mask, "mask").is_ok());
    }

    #[test]
    fn rejects_bad_lengths_and_empty_images() {
        let short = RgbaImage {
            width: 3,
            height: 2,
            pixels: vec![0; 23],
        };
        assert!(matches!(
            validate_rgba(&short, "image"),
            Err(ImagingError::BufferLength { expected: 24, .. })
        ));
        let empty = Mask {
            width: 0,
            height: 2,
            pixels: vec![],
        };
        assert!(matches!(
            validate_mask(&empty, "mask"),
            Err(ImagingError::Empty { .. })
        ));
        assert!(check_side("x", u64::from(MAX_SIDE) + 1, 1).is_err());
    }

    #[test]
    fn size_check_reports_both_sizes() {
        assert!(check_size("alpha", (4, 4), (4, 4)).is_ok());
        let err = check_size("alpha", (4, 4), (4, 5)).unwrap_err();
        assert!(err.to_string().contains("4x5"));
    }
}
