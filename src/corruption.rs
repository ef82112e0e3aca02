//! Debug aids: margins that catch writes past an allocation, fill patterns that expose reads
//! of uninitialized or freed memory, and the allocation log.
//!
//! All of them are off by default and cost nothing then; turn them on with
//! [`DebugOptions`](crate::DebugOptions) in the allocator's create info (custom pools take the
//! allocator's).
//!
//! # Margins
//!
//! With a margin of *M* bytes, every suballocation is laid out as
//! `[front margin][the allocation][back margin]`: at least *M* bytes before it (rounded up to
//! its alignment) and at least *M* after it (more when the memory's `nonCoherentAtomSize`
//! rounds the whole up), all held by the allocation and freed with it. So a margin lies after
//! every allocation and before every allocation, the first one in a block included. In
//! host-visible memory the margins are filled with the magic words [`MARGIN_MAGIC`] when the
//! allocation is made; a shader or an unsafe write that runs past either end of the
//! allocation overwrites them. The margins are checked
//!
//! - when the allocation is freed: damage is logged at the `error` level (target
//!   [`LOG_TARGET`]), naming the allocation, and the free goes on (no panic);
//! - on request, for every live allocation:
//!   [`GenericMemoryAllocator::check_corruption`](crate::GenericMemoryAllocator::check_corruption)
//!   returns a [`CorruptionError`] naming the memory type, block, offset and allocation of
//!   every damaged margin, and says which memory types it skipped because they are not
//!   host-visible (their margins are laid out but cannot be read).
//!
//! Dedicated allocations have no margins: they are memory objects of their own. So a request
//! that fits its heap but not with its margins (a size close to the heap's, or an alignment so
//! large that the front margin alone is more than the heap) is served as a dedicated
//! allocation where a request larger than a block would be, and refused with
//! [`BlockSizeExceeded`](crate::AllocationError::BlockSizeExceeded) where that would be
//! (`NeverAllocate`, a custom pool without a dedicated preference); it is never placed in a
//! block without its margins.
//!
//! A margin is published for checks (put in its block's record of allocations) only once it
//! holds its pattern, so a check on another thread never reads a margin that is still being
//! filled and never reports damage that nobody caused.
//!
//! # Non-coherent memory
//!
//! In memory that is `HOST_VISIBLE` but not `HOST_COHERENT`, the host and the device may
//! see different bytes until a flush or an invalidate, and both act on whole atoms of
//! `nonCoherentAtomSize` bytes. An allocation's margins usually share an atom with the
//! allocation itself (a 16-byte margin and a 128-byte atom, say), and an invalidate of that
//! atom would throw away the allocation's host writes that are not flushed yet. A check
//! never discards a byte the application owns, so it reads each margin
//!
//! 1. as the host sees it, with no invalidate: this finds host writes past either end, and
//!    device writes the application has already invalidated to read them;
//! 2. then, if that found nothing, after invalidating only the atoms that lie wholly inside
//!    the margin: this finds device writes there.
//!
//! Device writes into an atom shared with the allocation thus show once the application
//! invalidates its own range (as it must to read what the device wrote), and always when the
//! allocation is freed: the check at the free invalidates the margins widened to whole
//! atoms, which then hold no byte anyone still owns (a suballocation in such memory starts
//! and ends on atoms).
//!
//! The other way out, margins of whole atoms, was not taken: it would make every margin at
//! least an atom (up to 256 bytes on common GPUs) and align every allocation in such memory
//! to the atom, which changes the layout that the margins are meant to check, and it would
//! still leave the bytes between the allocation's end and the next atom, where a small
//! overrun lands, readable only as the host sees them. (VMA avoids the question by checking
//! margins in host-coherent memory only.)
//!
//! # Fill patterns
//!
//! With [`fill_patterns`](crate::DebugOptions::fill_patterns), new allocations in host-visible
//! memory are filled with [`NEW_BYTE`] and freed ones with [`FREED_BYTE`], so that data read
//! before it was written, or after it was freed, stands out.
//!
//! # Logging and backtraces
//!
//! With [`log_allocations`](crate::DebugOptions::log_allocations), every allocation and free is
//! logged at the `trace` level (target [`ALLOCATIONS_LOG_TARGET`]) with its size, memory type,
//! memory object, offset and name. With
//! [`capture_backtraces`](crate::DebugOptions::capture_backtraces), each allocation captures
//! a [`Backtrace`](std::backtrace::Backtrace) of where it was made, which the leak report
//! prints.

#![deny(unsafe_code)]

use crate::layout::{align_up, DeviceLayout, DeviceSize};
use std::sync::Arc;

/// The word that fills margins (VMA uses the same value).
pub const MARGIN_MAGIC: u32 = 0x7F84_E666;

/// The byte that fills new allocations with [fill patterns](self#fill-patterns).
pub const NEW_BYTE: u8 = 0xDC;

/// The byte that fills freed allocations with [fill patterns](self#fill-patterns).
pub const FREED_BYTE: u8 = 0xEF;

/// The `log` target of damaged margins found when an allocation is freed.
pub const LOG_TARGET: &str = "ash_memory::corruption";

/// The `log` target of the allocation log.
pub const ALLOCATIONS_LOG_TARGET: &str = "ash_memory::allocations";

/// Where an allocation with margins lies in its suballocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Guard {
    /// Bytes of front margin: the allocation starts this far into its suballocation.
    pub front: DeviceSize,
    /// The allocation's own size.
    pub size: DeviceSize,
    /// The whole suballocation: front margin, allocation, back margin.
    pub held: DeviceSize,
}

impl Guard {
    /// The margins of the allocation at `offset`: `(start, end)` ranges, before and after.
    pub(crate) fn margins(self, offset: DeviceSize) -> [(DeviceSize, DeviceSize); 2] {
        let start = offset - self.front;
        [(start, offset), (offset + self.size, start + self.held)]
    }
}

/// The layout of a suballocation that holds `layout` between margins of `margin` bytes, and
/// its front margin: `margin` rounded up to the alignment, so that the allocation stays
/// aligned. `None` when that overflows.
pub(crate) fn guarded_layout(
    layout: DeviceLayout,
    margin: DeviceSize,
) -> Option<(DeviceLayout, DeviceSize)> {
    let front = align_up(margin, layout.alignment())?;
    let size = front.checked_add(layout.size())?.checked_add(margin)?;
    Some((DeviceLayout::new(size, layout.alignment()).ok()?, front))
}

/// [`MARGIN_MAGIC`] repeated, little-endian: margins are filled and compared a chunk at a
/// time (a copy and a `memcmp` rather than a loop over bytes).
const PATTERN: [u8; 64] = {
    let word = MARGIN_MAGIC.to_le_bytes();
    let mut out = [0u8; 64];
    let mut i = 0;
    while i < out.len() {
        out[i] = word[i % 4];
        i += 1;
    }
    out
};

/// How many bytes of a margin are compared at a time; a multiple of 4, so that every chunk
/// starts at the same phase of the magic word.
pub(crate) const CHUNK: usize = PATTERN.len();

/// Fills `bytes` (a margin) with [`MARGIN_MAGIC`]; a tail of fewer than 4 bytes gets the
/// first bytes of the word.
pub(crate) fn fill_margin(bytes: &mut [u8]) {
    for chunk in bytes.chunks_mut(CHUNK) {
        chunk.copy_from_slice(&PATTERN[..chunk.len()]);
    }
}

/// The index of the first byte of `bytes` (a margin, or a piece of one that starts at a
/// multiple of 4 bytes into it) that is not the magic pattern.
pub(crate) fn first_damage(bytes: &[u8]) -> Option<usize> {
    bytes.chunks(CHUNK).enumerate().find_map(|(k, chunk)| {
        if chunk == &PATTERN[..chunk.len()] {
            return None;
        }
        let i = chunk.iter().zip(PATTERN).position(|(&a, b)| a != b)?;
        Some(k * CHUNK + i)
    })
}

/// One damaged margin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedMargin {
    /// The memory type of the block.
    pub memory_type_index: u32,
    /// The raw `VkDeviceMemory` handle of the block.
    pub memory: u64,
    /// The offset in the block of the first damaged byte.
    pub offset: DeviceSize,
    /// Whether the damage is after the allocation (an overrun) or before it (an underrun).
    pub after: bool,
    /// The damaged allocation's offset in the block.
    pub allocation_offset: DeviceSize,
    /// The damaged allocation's size.
    pub allocation_size: DeviceSize,
    /// The damaged allocation's name, if it has one.
    pub name: Option<Arc<str>>,
    /// The custom pool the block belongs to, if any.
    pub pool: Option<Arc<str>>,
}

impl std::fmt::Display for DamagedMargin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "allocation {name:?}")?,
            None => f.write_str("an unnamed allocation")?,
        }
        write!(
            f,
            " of {} bytes at offset {}: margin {} it damaged at offset {} of block {:#x} \
             (memory type {}",
            self.allocation_size,
            self.allocation_offset,
            if self.after { "after" } else { "before" },
            self.offset,
            self.memory,
            self.memory_type_index
        )?;
        if let Some(pool) = &self.pool {
            write!(f, ", pool {pool:?}")?;
        }
        f.write_str(")")
    }
}

/// What a corruption check looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Live allocations whose margins were read.
    pub checked_allocations: u64,
    /// Memory types asked for whose margins could not be read because they are not
    /// host-visible.
    pub skipped_memory_types: Vec<u32>,
}

/// Why a corruption check failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionError {
    /// Margins were overwritten; the first is in the message, all in the list.
    #[error("corruption detected: {} damaged margin(s), first: {}", .damaged.len(), .damaged[0])]
    Damaged {
        /// Every damaged margin found.
        damaged: Vec<DamagedMargin>,
        /// What was looked at.
        report: CorruptionReport,
    },
    /// The allocator was made without [debug margins](crate::DebugOptions::margin): there is
    /// nothing to check.
    #[error("corruption detection needs debug margins (DebugOptions::margin)")]
    MarginsOff,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_damaged_byte_of_a_margin_is_found() {
        for len in [1usize, 3, 4, 17, 63, 64, 65, 200] {
            let mut margin = vec![0u8; len];
            fill_margin(&mut margin);
            let word = MARGIN_MAGIC.to_le_bytes();
            assert!(margin.iter().enumerate().all(|(i, &b)| b == word[i % 4]));
            assert_eq!(first_damage(&margin), None);
            for i in 0..len {
                let mut m = margin.clone();
                m[i] ^= 1;
                assert_eq!(first_damage(&m), Some(i), "{len} bytes, byte {i}");
                // Any value but the magic one is damage, zero included.
                m[i] = 0;
                if margin[i] != 0 {
                    assert_eq!(first_damage(&m), Some(i));
                }
            }
        }
        let guard = Guard {
            front: 64,
            size: 100,
            held: 64 + 100 + 70,
        };
        assert_eq!(guard.margins(1064), [(1000, 1064), (1164, 1234)]);
    }

    #[test]
    fn a_damaged_margin_says_where_and_which_side() {
        let mut d = DamagedMargin {
            memory_type_index: 3,
            memory: 0xab,
            offset: 1164,
            after: true,
            allocation_offset: 1064,
            allocation_size: 100,
            name: Some("vertices".into()),
            pool: None,
        };
        assert_eq!(
            d.to_string(),
            "allocation \"vertices\" of 100 bytes at offset 1064: margin after it damaged at \
             offset 1164 of block 0xab (memory type 3)"
        );
        d.after = false;
        d.offset = 1063;
        d.name = None;
        d.pool = Some("staging".into());
        assert_eq!(
            d.to_string(),
            "an unnamed allocation of 100 bytes at offset 1064: margin before it damaged at \
             offset 1063 of block 0xab (memory type 3, pool \"staging\")"
        );
        let error = CorruptionError::Damaged {
            damaged: vec![d.clone(), d],
            report: CorruptionReport::default(),
        };
        assert!(
            error
                .to_string()
                .starts_with("corruption detected: 2 damaged margin(s), first: an unnamed"),
            "{error}"
        );
    }

    #[test]
    fn guarded_layouts_keep_the_alignment() {
        let l = |size, alignment| DeviceLayout::from_size_alignment(size, alignment).unwrap();
        let (g, front) = guarded_layout(l(100, 1), 16).unwrap();
        assert_eq!(
            (g.size(), g.alignment().as_devicesize(), front),
            (132, 1, 16)
        );
        let (g, front) = guarded_layout(l(100, 256), 16).unwrap();
        assert_eq!(
            (g.size(), g.alignment().as_devicesize(), front),
            (372, 256, 256)
        );
        let (g, front) = guarded_layout(l(4096, 4096), 8192).unwrap();
        assert_eq!((g.size(), front), (8192 + 4096 + 8192, 8192));
        assert!(guarded_layout(l(DeviceLayout::MAX_SIZE, 1), 16).is_none());
    }
}
