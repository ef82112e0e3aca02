//! Sizes and alignments of device memory.
//!
//! # Alignment
//!
//! Every Vulkan resource states, through `vkGet*MemoryRequirements`, how large a range of
//! memory it needs and at which alignment that range must start. An alignment is always a
//! power of two, and an offset is aligned to it when the offset is a multiple of it. An
//! allocator that hands out sub-ranges of a larger `VkDeviceMemory` block must round the start
//! of each range *up* to the requested alignment; the bytes skipped that way are called
//! *padding* and are wasted until the range is freed again.
//!
//! [`DeviceAlignment`] is a power of two by construction, so code that holds one never has to
//! check it again, and [`DeviceLayout`] pairs a non-zero size with such an alignment. Both are
//! built through checked constructors that return a [`LayoutError`] instead of panicking, so a
//! bad value coming from user input is reported, never trusted.
//!
//! # Pages and buffer-image granularity
//!
//! Some GPUs track how memory is laid out (linear, row by row, as for buffers and
//! linear-tiling images, or in an implementation-defined tiled order, as for optimal-tiling
//! images) per *page* of memory. The page size is the device limit `bufferImageGranularity`.
//! When a linear and a non-linear resource share one such page, the two may alias each other's
//! data, so the specification forbids it. It is not an alignment requirement for any single
//! resource: two buffers may share a page, and so may two optimal images. It only constrains
//! *neighbours of different kinds*. A suballocator therefore looks at the ranges before and
//! after a candidate range and, when a neighbour of the other kind ends (or starts) on the same
//! page, moves the candidate to the next page boundary (or rejects it).
//!
//! On desktop GPUs from AMD the granularity is 1 (no constraint); NVIDIA reports 1 KiB or
//! 64 KiB; software drivers commonly report a small value. Pages here are always
//! [`DeviceAlignment`]s, so the page containing an offset is found by [`align_down`].
//!
//! # Limits
//!
//! Vulkan sizes are `u64`. To keep every rounding operation free of overflow, a layout's size
//! is at most [`DeviceLayout::MAX_SIZE`] (2<sup>63</sup> − 1) *after* being padded to its own
//! alignment; no real device gets close to that.

#![deny(unsafe_code)]

use std::num::NonZeroU64;

/// A size or offset in device memory, in bytes (Vulkan's `VkDeviceSize`).
pub type DeviceSize = u64;

/// Why a [`DeviceAlignment`] or [`DeviceLayout`] could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The size was zero. Vulkan has no zero-sized allocations.
    #[error("the size of a memory layout must not be zero")]
    ZeroSize,
    /// The alignment was not a power of two (zero included).
    #[error("alignment {0} is not a power of two")]
    AlignmentNotPowerOfTwo(DeviceSize),
    /// The size, padded to the alignment, would exceed [`DeviceLayout::MAX_SIZE`], or an
    /// arithmetic operation on layouts overflowed.
    #[error("size {size} with alignment {alignment} exceeds the largest layout ({max} bytes)", max = DeviceLayout::MAX_SIZE)]
    SizeTooLarge {
        /// The requested size.
        size: DeviceSize,
        /// The requested alignment.
        alignment: DeviceSize,
    },
}

/// A power of two between 1 and 2<sup>63</sup>, used as the alignment of device memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceAlignment(NonZeroU64);

impl DeviceAlignment {
    /// The smallest alignment, 1 byte.
    pub const MIN: Self = Self(NonZeroU64::MIN);
    /// The largest alignment, 2<sup>63</sup> bytes.
    pub const MAX: Self = Self(match NonZeroU64::new(1 << 63) {
        Some(v) => v,
        None => unreachable!(),
    });

    /// Returns the alignment `value`, or `None` if it is not a power of two.
    #[inline]
    pub const fn new(value: DeviceSize) -> Option<Self> {
        if value.is_power_of_two() {
            match NonZeroU64::new(value) {
                Some(v) => Some(Self(v)),
                None => None,
            }
        } else {
            None
        }
    }

    /// Like [`new`](Self::new), with an error value naming the bad alignment.
    #[inline]
    pub const fn try_new(value: DeviceSize) -> Result<Self, LayoutError> {
        match Self::new(value) {
            Some(a) => Ok(a),
            None => Err(LayoutError::AlignmentNotPowerOfTwo(value)),
        }
    }

    /// Returns `2^exponent`, or `None` if `exponent` is larger than 63.
    #[inline]
    pub const fn from_log2(exponent: u32) -> Option<Self> {
        if exponent < 64 {
            Self::new(1 << exponent)
        } else {
            None
        }
    }

    /// The largest power of two that divides `value`, which is the natural alignment of an
    /// offset; `None` for 0 (every alignment divides 0).
    #[inline]
    pub const fn of_offset(value: DeviceSize) -> Option<Self> {
        if value == 0 {
            None
        } else {
            Self::new(1 << value.trailing_zeros())
        }
    }

    /// The alignment as a number of bytes.
    #[inline]
    pub const fn as_devicesize(self) -> DeviceSize {
        self.0.get()
    }

    /// The alignment as a non-zero number of bytes.
    #[inline]
    pub const fn as_nonzero(self) -> NonZeroU64 {
        self.0
    }

    /// The base-2 logarithm of the alignment.
    #[inline]
    pub const fn log2(self) -> u32 {
        self.0.trailing_zeros()
    }

    /// The larger of two alignments.
    #[inline]
    pub const fn max(self, other: Self) -> Self {
        if self.0.get() >= other.0.get() {
            self
        } else {
            other
        }
    }

    /// Whether `offset` is a multiple of this alignment.
    #[inline]
    pub const fn is_aligned(self, offset: DeviceSize) -> bool {
        offset & (self.0.get() - 1) == 0
    }
}

impl Default for DeviceAlignment {
    /// 1 byte, no constraint.
    #[inline]
    fn default() -> Self {
        Self::MIN
    }
}

impl std::fmt::Debug for DeviceAlignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} (1 << {:?})", self.0, self.log2())
    }
}

impl TryFrom<DeviceSize> for DeviceAlignment {
    type Error = LayoutError;

    fn try_from(value: DeviceSize) -> Result<Self, Self::Error> {
        Self::try_new(value)
    }
}

impl From<DeviceAlignment> for DeviceSize {
    fn from(value: DeviceAlignment) -> Self {
        value.as_devicesize()
    }
}

/// Rounds `value` up to the next multiple of `alignment`, or `None` on overflow.
#[inline]
pub const fn align_up(value: DeviceSize, alignment: DeviceAlignment) -> Option<DeviceSize> {
    let mask = alignment.as_devicesize() - 1;
    match value.checked_add(mask) {
        Some(v) => Some(v & !mask),
        None => None,
    }
}

/// Rounds `value` down to the previous multiple of `alignment`.
#[inline]
pub const fn align_down(value: DeviceSize, alignment: DeviceAlignment) -> DeviceSize {
    value & !(alignment.as_devicesize() - 1)
}

/// The number of bytes to add to `value` to make it a multiple of `alignment`.
#[inline]
pub const fn padding_needed(value: DeviceSize, alignment: DeviceAlignment) -> DeviceSize {
    value.wrapping_neg() & (alignment.as_devicesize() - 1)
}

/// Whether the bytes at offsets `a` and `b` lie on the same page of `page_size` bytes: the
/// buffer-image granularity test (see [pages](self#pages-and-buffer-image-granularity)). To
/// ask whether a range ending at `end` (exclusive) shares a page with one starting at
/// `start`, pass `end - 1` and `start`.
#[inline]
pub const fn on_same_page(a: DeviceSize, b: DeviceSize, page_size: DeviceAlignment) -> bool {
    align_down(a, page_size) == align_down(b, page_size)
}

/// The range `[offset, offset + size)` widened to whole atoms of `atom` bytes and clamped to
/// an object of `object_size` bytes, as `(start, end)`: what `vkFlushMappedMemoryRanges` and
/// `vkInvalidateMappedMemoryRanges` accept for non-coherent memory (`nonCoherentAtomSize`).
/// `start` is a multiple of `atom` (or `end`, when no byte of the range is inside the
/// object); `end` is a multiple of it or `object_size`.
#[inline]
pub const fn atom_range(
    offset: DeviceSize,
    size: DeviceSize,
    atom: DeviceAlignment,
    object_size: DeviceSize,
) -> (DeviceSize, DeviceSize) {
    let start = align_down(offset, atom);
    // An end past the object rounds up past it too, and is clamped below.
    let end = match align_up(offset.saturating_add(size), atom) {
        Some(e) if e < object_size => e,
        _ => object_size,
    };
    let start = if start > end { end } else { start };
    (start, end)
}

/// The whole atoms of `atom` bytes inside `[offset, offset + size)`, of an object of
/// `object_size` bytes, as `(start, end)`: the largest range that
/// `vkInvalidateMappedMemoryRanges` accepts without touching a byte outside the given one
/// (the counterpart of [`atom_range`], which widens). A range that reaches the end of the
/// object may end there, in the middle of an atom. Empty (`start == end`) when no whole atom
/// fits.
#[inline]
pub(crate) const fn atoms_inside(
    offset: DeviceSize,
    size: DeviceSize,
    atom: DeviceAlignment,
    object_size: DeviceSize,
) -> (DeviceSize, DeviceSize) {
    let last = match offset.checked_add(size) {
        Some(last) if last < object_size => last,
        _ => object_size,
    };
    let end = if last == object_size {
        object_size
    } else {
        align_down(last, atom)
    };
    let start = match align_up(offset, atom) {
        Some(start) if start < end => start,
        _ => end,
    };
    (start, end)
}

/// The size and alignment of a range of device memory: a non-zero size that, padded to its
/// alignment, is at most [`DeviceLayout::MAX_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceLayout {
    size: NonZeroU64,
    alignment: DeviceAlignment,
}

impl DeviceLayout {
    /// The largest size a layout may have once padded to its alignment: 2<sup>63</sup> − 1.
    pub const MAX_SIZE: DeviceSize = DeviceAlignment::MAX.as_devicesize() - 1;

    /// Builds a layout, checking that `size` is not zero and that, padded to `alignment`, it
    /// does not exceed [`MAX_SIZE`](Self::MAX_SIZE).
    #[inline]
    pub const fn new(size: DeviceSize, alignment: DeviceAlignment) -> Result<Self, LayoutError> {
        let Some(nonzero) = NonZeroU64::new(size) else {
            return Err(LayoutError::ZeroSize);
        };
        match align_up(size, alignment) {
            Some(padded) if padded <= Self::MAX_SIZE => Ok(Self {
                size: nonzero,
                alignment,
            }),
            _ => Err(LayoutError::SizeTooLarge {
                size,
                alignment: alignment.as_devicesize(),
            }),
        }
    }

    /// Builds a layout from a raw size and alignment as Vulkan reports them (for example in
    /// `VkMemoryRequirements`), checking both.
    #[inline]
    pub const fn from_size_alignment(
        size: DeviceSize,
        alignment: DeviceSize,
    ) -> Result<Self, LayoutError> {
        match DeviceAlignment::try_new(alignment) {
            Ok(alignment) => Self::new(size, alignment),
            Err(e) => Err(e),
        }
    }

    /// The size in bytes, never zero.
    #[inline]
    pub const fn size(&self) -> DeviceSize {
        self.size.get()
    }

    /// The alignment.
    #[inline]
    pub const fn alignment(&self) -> DeviceAlignment {
        self.alignment
    }

    /// The number of padding bytes needed after `offset` so that a range with this layout can
    /// start at an aligned offset.
    #[inline]
    pub const fn padding_needed_for(&self, offset: DeviceSize) -> DeviceSize {
        padding_needed(offset, self.alignment)
    }

    /// This layout with its size rounded up to a multiple of its alignment (always possible,
    /// by the invariant of the type).
    #[inline]
    pub const fn pad_to_alignment(&self) -> Self {
        let padded = self.size.get() + padding_needed(self.size.get(), self.alignment);
        match NonZeroU64::new(padded) {
            Some(size) => Self {
                size,
                alignment: self.alignment,
            },
            None => unreachable!(),
        }
    }

    /// This layout with its alignment raised to at least `alignment`.
    #[inline]
    pub const fn align_to(&self, alignment: DeviceAlignment) -> Result<Self, LayoutError> {
        Self::new(self.size.get(), self.alignment.max(alignment))
    }

    /// The layout of this range followed by `next`, placed at its first aligned offset after
    /// the end of this one. Returns the combined layout (with the larger alignment) and the
    /// offset of `next` within it.
    #[inline]
    pub const fn extend(&self, next: Self) -> Result<(Self, DeviceSize), LayoutError> {
        let alignment = self.alignment.max(next.alignment);
        let Some(offset) = align_up(self.size.get(), next.alignment) else {
            return Err(self.overflow());
        };
        let Some(size) = offset.checked_add(next.size.get()) else {
            return Err(self.overflow());
        };
        match Self::new(size, alignment) {
            Ok(layout) => Ok((layout, offset)),
            Err(e) => Err(e),
        }
    }

    /// The layout of `n` copies of this one, each starting at a multiple of the alignment.
    /// Returns the array's layout and the stride between elements. `n` must not be zero.
    #[inline]
    pub const fn repeat(&self, n: NonZeroU64) -> Result<(Self, DeviceSize), LayoutError> {
        let stride = self.pad_to_alignment().size();
        let Some(size) = stride.checked_mul(n.get()) else {
            return Err(self.overflow());
        };
        match Self::new(size, self.alignment) {
            Ok(layout) => Ok((layout, stride)),
            Err(e) => Err(e),
        }
    }

    const fn overflow(&self) -> LayoutError {
        LayoutError::SizeTooLarge {
            size: DeviceSize::MAX,
            alignment: self.alignment.as_devicesize(),
        }
    }
}

#[cfg(test)]
mod tests;
