//! The shared anonymous mapping that holds a table.

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::error::TableError;

/// An `mmap(MAP_SHARED | MAP_ANONYMOUS)` region. A forked child inherits the same pages, so
/// all processes forked after the mapping see one table. Each process unmaps its own view
/// when its `Table` is dropped; the pages go away with the last view.
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// The mapping is only ever read and written through atomics (see `words`), so handing it
// to or sharing it between threads is as safe as sharing the atomics themselves.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` zeroed bytes. `len` is a multiple of 8 and greater than zero.
    pub fn new(len: usize) -> Result<Mapping, TableError> {
        // SAFETY: an anonymous mapping at an address of the kernel's choice touches no
        // existing memory; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let reason = std::io::Error::last_os_error().to_string();
            return Err(TableError::Map { bytes: len, reason });
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole mapping as 64-bit atomics. The mapping is page-aligned, zero-filled (a valid
    /// bit pattern for atomics) and lives as long as `self`.
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: see above; AtomicU64 has the size and alignment of u64, and every access
        // to the region, from any process, goes through atomics.
        unsafe { std::slice::from_raw_parts(self.base.cast::<AtomicU64>(), self.len / 8) }
    }

    /// `count` 32-bit atomics from word `word` on, for a part of the mapping that is only
    /// ever used this way.
    pub(crate) fn halves(&self, word: usize, count: usize) -> &[AtomicU32] {
        assert!(word * 8 + count * 4 <= self.len, "halves past the mapping");
        // SAFETY: in bounds (checked), 8-byte aligned, zero-filled like the rest, and every
        // access to this part goes through these atomics.
        unsafe { std::slice::from_raw_parts(self.base.add(word * 8).cast::<AtomicU32>(), count) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: base/len are exactly what mmap returned, and no borrow of `words()` can
        // outlive `self`.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}
