//! A global allocator that aborts on any single allocation above [`MAX_ALLOCATION`].
//!
//! Exists because "a length field claiming 4 GB must be refused before allocating" has to be
//! checked where no sanitizer runs (the stable replay test, `cargo fuzz run -s none`): fuzz
//! inputs are at most a few megabytes, so a larger single request for memory can only come from
//! trusting a length read from the input. The abort is what libFuzzer reports as a crash, with
//! the input saved; under `cargo test` it ends the test binary with the message below.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// The largest single allocation any target may make.
pub const MAX_ALLOCATION: usize = 64 << 20;

struct CappedAllocator;

#[global_allocator]
static ALLOCATOR: CappedAllocator = CappedAllocator;

fn check(size: usize) {
    if size > MAX_ALLOCATION {
        // No formatting into a String here: that would allocate inside the allocator.
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = size;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut err = std::io::stderr();
        let _ = err.write_all(b"livefill-fuzz: allocation of ");
        let _ = err.write_all(&digits[i..]);
        let _ = err.write_all(b" bytes exceeds the fuzzing cap (an unchecked length field?)\n");
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, after a size check that aborts.
unsafe impl GlobalAlloc for CappedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}
