//! Typed access to mapped memory: slices of an allocation's mapping and plain-old-data values.
//!
//! A host-visible allocation is reachable through its block's persistent mapping. Besides the
//! byte copies [`MemoryAlloc::write`] and [`MemoryAlloc::read`], this module offers:
//!
//! - [`MemoryAlloc::mapped_slice`] / [`MemoryAlloc::mapped_slice_mut`]: the whole allocation
//!   as `&[u8]` / `&mut [u8]` (gpu-allocator's methods of the same names);
//! - [`MemoryAlloc::mapped_slice_of`] / [`MemoryAlloc::mapped_slice_of_mut`]: the same as a
//!   slice of a plain-old-data type `T` (vertices, indices, uniforms), when the allocation's
//!   address suits `T`'s alignment;
//! - [`MemoryAlloc::write_slice`] / [`MemoryAlloc::read_slice`] and
//!   [`MemoryAlloc::write_value`] / [`MemoryAlloc::read_value`]: copies of `T` values at any
//!   byte offset (no alignment needed), flushed or invalidated like `write` and `read`.
//!
//! `T` must implement [`Pod`], a marker trait whose `unsafe` contract says that `T` is plain
//! bytes (see there). It is implemented for the integer and float primitives and arrays of
//! them; implement it for your own `#[repr(C)]` vertex types.
//!
//! # Why this is sound
//!
//! - **Exclusive borrow.** The slices borrow the allocation: `mapped_slice_mut` takes
//!   `&mut self`, so while the `&mut [u8]` lives no other host code can reach these bytes
//!   through this allocation, and no other allocation overlaps its range. Dropping (freeing)
//!   the allocation ends the borrow, so a slice never outlives the memory.
//! - **Every byte pattern is a valid `T`.** That is the [`Pod`] contract; it is why reading
//!   bytes the GPU (or nobody) wrote as `T` is not undefined behaviour.
//! - **The GPU is not writing meanwhile.** This is the one rule the borrow checker cannot see,
//!   the same as for every host access to mapped memory (Vulkan's host-access
//!   synchronization): while a slice lives, or while a copy runs, no command that writes
//!   these bytes may be executing on the device, and a `&mut` slice must not be written while
//!   the device reads them. Wait for the fence of the submission (or a timeline value) first.
//!
//! # Non-coherent memory
//!
//! On a memory type that is `HOST_VISIBLE` but not `HOST_COHERENT`, the host's writes become
//! visible to the device only when flushed, and the device's writes to the host only when
//! invalidated:
//!
//! - `write_slice` and `write_value` flush the written bytes, and `read_slice` and
//!   `read_value` invalidate the read bytes first, like `write` and `read`;
//! - the slices do neither: after writing through `mapped_slice_mut` or
//!   `mapped_slice_of_mut`, call [`MemoryAlloc::flush`] for the written range; before reading
//!   the device's results through `mapped_slice` or `mapped_slice_of`, call
//!   [`MemoryAlloc::invalidate`] (while no slice of the allocation lives). On coherent memory
//!   both are no-ops, so code that always calls them is correct everywhere.
//!
//! Flushes and invalidates are widened to whole `nonCoherentAtomSize` atoms, which never
//! reach another allocation (see the [allocator's docs](crate::allocator#non-coherent-memory)).
//!
//! ```no_run
//! # fn demo(alloc: &mut ash_memory::MemoryAlloc) -> Result<(), ash_memory::MemoryAccessError> {
//! use ash_memory::Pod;
//!
//! #[derive(Clone, Copy)]
//! #[repr(C)]
//! struct Vertex {
//!     position: [f32; 3],
//!     color: [f32; 4],
//! }
//! // SAFETY: `repr(C)`, only `f32` fields and no padding (7 × 4 bytes, alignment 4).
//! unsafe impl Pod for Vertex {}
//!
//! let vertices = [Vertex { position: [0.0; 3], color: [1.0; 4] }; 3];
//! alloc.write_slice(0, &vertices)?; // copies, and flushes if needed
//! let first: Vertex = alloc.read_value(0)?;
//! assert_eq!(first.color, [1.0; 4]);
//!
//! // Or in place, gpu-allocator style:
//! let slice = alloc.mapped_slice_of_mut::<Vertex>()?;
//! slice[1].position = [1.0, 2.0, 3.0];
//! alloc.flush(0, alloc.size())?;
//! # Ok(()) }
//! ```

use crate::allocation::{MemoryAccessError, MemoryAlloc};
use crate::layout::DeviceSize;
use std::mem::{align_of, size_of};

/// Plain old data: a type whose values are nothing but their bytes.
///
/// The typed accessors of [`MemoryAlloc`] ([module docs](self)) copy `T`s into mapped memory
/// byte for byte and read whatever bytes are there back as `T`s, so `T` must be safe to treat
/// that way.
///
/// # Safety
///
/// Implement it only for a type that
///
/// - is `Copy` and has no `Drop` (guaranteed by the `Copy` bound),
/// - has no padding bytes (every byte of a value is initialized, so copying one to the device
///   exposes no uninitialized memory): e.g. `#[repr(C)]` with fields whose sizes and
///   alignments leave no gap, or `#[repr(transparent)]` over a `Pod`,
/// - accepts every bit pattern as a valid value (no `bool`, `char`, enums, references,
///   `NonZero*` or `NonNull`),
/// - has no interior mutability (`Cell`, atomics) and no pointers that the program relies on.
///
/// This is the contract of `bytemuck::Pod`; the crate defines its own to add no dependency.
pub unsafe trait Pod: Copy + 'static {}

macro_rules! impl_pod {
    ($($t:ty),* $(,)?) => {
        // SAFETY: primitive integers and floats have no padding, no invalid bit patterns and no
        // interior mutability.
        $(unsafe impl Pod for $t {})*
    };
}

impl_pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: an array of `Pod` elements has no padding between elements (size is a multiple of
// alignment) and no bit pattern of its own beyond the elements'.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

impl MemoryAlloc {
    /// The allocation's mapped bytes, `size()` of them, or `None` when the memory is not
    /// host-visible (gpu-allocator's `mapped_slice`).
    ///
    /// Does not invalidate: on non-coherent memory, call [`invalidate`](Self::invalidate)
    /// before taking the slice to see what the device wrote. The device must not write these
    /// bytes while the slice lives ([module docs](crate::mapped)).
    pub fn mapped_slice(&self) -> Option<&[u8]> {
        let ptr = self.checked_range(0, self.byte_len().ok()?).ok()?;
        // SAFETY: `[ptr, ptr + size)` is this allocation's part of a live mapping, which no
        // other allocation overlaps, valid while `self` is borrowed (dropping `self` frees it);
        // host writes to it need `&mut self`, which this borrow excludes; every byte is a valid
        // `u8`.
        Some(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.size() as usize) })
    }

    /// The allocation's mapped bytes, mutable, or `None` when the memory is not host-visible
    /// (gpu-allocator's `mapped_slice_mut`).
    ///
    /// Does not flush: on non-coherent memory, call [`flush`](Self::flush) for what you wrote
    /// after the slice's last use. The device must not access these bytes while the slice
    /// lives ([module docs](crate::mapped)).
    pub fn mapped_slice_mut(&mut self) -> Option<&mut [u8]> {
        let ptr = self.checked_range(0, self.byte_len().ok()?).ok()?;
        // SAFETY: as in `mapped_slice`, and `&mut self` makes this the only host access to the
        // range while the slice lives.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.size() as usize) })
    }

    /// The allocation's mapped memory as `size() / size_of::<T>()` values of `T` (trailing
    /// bytes that make no whole `T` are left out).
    ///
    /// Fails with [`NotHostVisible`](MemoryAccessError::NotHostVisible), or with
    /// [`Misaligned`](MemoryAccessError::Misaligned) when the allocation's address is not a
    /// multiple of `align_of::<T>()` (allocate with at least that alignment; the mapping itself
    /// is aligned to `minMemoryMapAlignment`, at least 64). No invalidate, as for
    /// [`mapped_slice`](Self::mapped_slice).
    pub fn mapped_slice_of<T: Pod>(&self) -> Result<&[T], MemoryAccessError> {
        let (ptr, len) = self.typed_range::<T>()?;
        // SAFETY: as in `mapped_slice`; `ptr` is aligned for `T` and `len` whole `T`s fit in
        // the range; every byte pattern is a valid `T` (`Pod`).
        Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
    }

    /// As [`mapped_slice_of`](Self::mapped_slice_of), mutable. No flush, as for
    /// [`mapped_slice_mut`](Self::mapped_slice_mut).
    pub fn mapped_slice_of_mut<T: Pod>(&mut self) -> Result<&mut [T], MemoryAccessError> {
        let (ptr, len) = self.typed_range::<T>()?;
        // SAFETY: as in `mapped_slice_of`, and `&mut self` makes this the only host access.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
    }

    /// Copies `values` into the allocation at byte `offset` (any offset: no alignment is
    /// needed), then flushes the written bytes if the memory is not host-coherent.
    pub fn write_slice<T: Pod>(
        &mut self,
        offset: DeviceSize,
        values: &[T],
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: `values` is `size_of_val(values)` initialized bytes (`Pod`: no padding), live
        // for this borrow, and `u8` has no alignment.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        self.write(offset, bytes)
    }

    /// Invalidates the bytes if the memory is not host-coherent, then copies `out.len()`
    /// values from the allocation at byte `offset` (any offset) into `out`.
    pub fn read_slice<T: Pod>(
        &self,
        offset: DeviceSize,
        out: &mut [T],
    ) -> Result<(), MemoryAccessError> {
        // SAFETY: `out` is `size_of_val(out)` writable bytes, exclusively borrowed; any bytes
        // written there make valid `T`s (`Pod`), and `u8` has no alignment.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                out.as_mut_ptr().cast::<u8>(),
                std::mem::size_of_val(out),
            )
        };
        self.read(offset, bytes)
    }

    /// Writes one value at byte `offset` (any offset), flushing like
    /// [`write_slice`](Self::write_slice).
    pub fn write_value<T: Pod>(
        &mut self,
        offset: DeviceSize,
        value: T,
    ) -> Result<(), MemoryAccessError> {
        self.write_slice(offset, std::slice::from_ref(&value))
    }

    /// Reads one value at byte `offset` (any offset), invalidating like
    /// [`read_slice`](Self::read_slice).
    pub fn read_value<T: Pod>(&self, offset: DeviceSize) -> Result<T, MemoryAccessError> {
        // SAFETY: all-zero bytes are a valid `T` (`Pod`: every bit pattern is).
        let mut value: T = unsafe { std::mem::zeroed() };
        self.read_slice(offset, std::slice::from_mut(&mut value))?;
        Ok(value)
    }

    /// The allocation's size as a host length, or the error of a range that cannot be mapped
    /// on this host (larger than the address space).
    fn byte_len(&self) -> Result<usize, MemoryAccessError> {
        usize::try_from(self.size()).map_err(|_| MemoryAccessError::OutOfBounds {
            offset: 0,
            len: self.size(),
            size: self.size(),
        })
    }

    /// The start of the mapped range as a `*mut T` and how many whole `T`s it holds.
    fn typed_range<T: Pod>(&self) -> Result<(*mut T, usize), MemoryAccessError> {
        let ptr = self.checked_range(0, self.byte_len()?)?.as_ptr();
        if (ptr as usize) % align_of::<T>() != 0 {
            return Err(MemoryAccessError::Misaligned {
                address: ptr as usize,
                alignment: align_of::<T>(),
            });
        }
        let len = match size_of::<T>() {
            0 => 0,
            n => self.size() as usize / n,
        };
        Ok((ptr.cast::<T>(), len))
    }
}
