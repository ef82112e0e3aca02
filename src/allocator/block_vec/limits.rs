//! How many blocks a block vector keeps at least and holds at most, and how much empty
//! memory it keeps for reuse (see [releasing](super#releasing)).

#![deny(unsafe_code)]

use crate::layout::DeviceSize;

/// The empty blocks a default block vector keeps add up to at most this many times the
/// larger of its largest block and its preferred block size, and stay under its high-water
/// mark (see [releasing](super#releasing)); a custom pool's keep one block's worth.
pub(crate) const EMPTY_KEPT_BLOCKS: DeviceSize = 4;

/// Which empty block [`release_empty_blocks`](super::BlockVec::release_empty_blocks) keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The largest, then the next largest while they add up to at most
    /// [`BlockLimits::empty_kept`] times the vector's largest block: the rule of the vectors
    /// without a high-water mark, custom pools' (the next allocations likely fit them).
    Largest,
    /// Only the smallest: a defragmentation's, between passes (it gives back the most memory).
    Smallest,
}

/// How many blocks a vector keeps at least and holds at most, and how much empty memory it
/// keeps for reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockLimits {
    pub min: usize,
    pub max: usize,
    /// Beyond `min`, the empty blocks kept add up to at most this many times the vector's
    /// largest block (or [`preferred_block`](Self::preferred_block), if larger; the largest
    /// empty block always stays): see [releasing](super#releasing).
    pub empty_kept: DeviceSize,
    /// Whether the empty blocks kept must also stay under the recent
    /// [high-water mark](super::high_water) of the memory in use (the default block vectors), and
    /// a new block gives back only as many of them as that needs.
    pub high_water: bool,
    /// The least that one block's worth of kept memory stands for, under the mark and while
    /// the heap is within its budget: the memory type's preferred block size (0: the
    /// vector's largest block alone). Blocks made for sizable requests are a fraction of the
    /// preferred size, and a vector that serves mostly those would otherwise keep only
    /// [`EMPTY_KEPT_BLOCKS`] of them, too few for the next request to find one of its size.
    pub preferred_block: DeviceSize,
}

impl BlockLimits {
    /// A default vector's limits with no preferred block size (tests).
    #[cfg(test)]
    pub(crate) const NONE: Self = Self::default_vector(0);

    /// No minimum, no maximum, a cache of [`EMPTY_KEPT_BLOCKS`] blocks' worth under the
    /// high-water mark, counted in blocks of at least `preferred_block` bytes (see
    /// [`BlockLimits::preferred_block`]): the default block vectors.
    pub(crate) const fn default_vector(preferred_block: DeviceSize) -> Self {
        Self {
            min: 0,
            max: usize::MAX,
            empty_kept: EMPTY_KEPT_BLOCKS,
            high_water: true,
            preferred_block,
        }
    }

    /// A custom pool's: its block counts, and one block's worth of empty memory kept (its
    /// blocks all have one size, so one empty block), with no mark.
    pub(crate) const fn pool(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            empty_kept: 1,
            high_water: false,
            preferred_block: 0,
        }
    }
}
