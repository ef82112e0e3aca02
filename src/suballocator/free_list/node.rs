//! The nodes of the free list: one per range of the region, free, allocated or recycled,
//! with the node's state kept in a link that only free nodes use (see [`Node`]).

use super::AllocationType;
use crate::layout::DeviceSize;

/// "No node": the end of a list.
pub(super) const NONE: u32 = u32::MAX;
/// The state of a node that is not free, kept where a free node keeps its `prev_free` link
/// (see [`Node`]): node indices stay below `FIRST_TAG`.
const TAG_RECYCLED: u32 = u32::MAX - 1;
const TAG_USED_UNKNOWN: u32 = TAG_RECYCLED - 1;
const TAG_USED_LINEAR: u32 = TAG_USED_UNKNOWN - 1;
const TAG_USED_NON_LINEAR: u32 = TAG_USED_LINEAR - 1;
pub(super) const FIRST_TAG: u32 = TAG_USED_NON_LINEAR;
/// An allocated node's `next_free`: its absorbed padding in the low half, its slack in the
/// high half.
const PADDING_MASK: u32 = 0xFFFF;
const SLACK_SHIFT: u32 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Free,
    Used(AllocationType),
    /// On the recycled list; not part of the region.
    Recycled,
}

impl State {
    /// What `Node::prev_free` holds for a node in this state (a free node not yet in a
    /// bucket list: `NONE`).
    #[inline]
    pub(super) fn tag(self) -> u32 {
        match self {
            State::Free => NONE,
            State::Recycled => TAG_RECYCLED,
            State::Used(AllocationType::Unknown) => TAG_USED_UNKNOWN,
            State::Used(AllocationType::Linear) => TAG_USED_LINEAR,
            State::Used(AllocationType::NonLinear) => TAG_USED_NON_LINEAR,
        }
    }
}

/// One range of the region, 32 bytes: two nodes per cache line when the node vector starts on
/// a 32-byte boundary. The heap decides that (a vector large enough to be mapped on its own
/// starts 16 bytes into a page, and then every other node straddles two lines). Aligning the
/// node to 32 bytes (2026-12-08) took the first-level misses of reading a freed node on
/// `tiny` from 1.47 to 1.0 per free, but its neighbours' reads missed more instead (the
/// second line had often brought one in), 2 % fewer misses in all, and no time measurably.
#[derive(Clone, Copy, Debug)]
pub(super) struct Node {
    pub(super) offset: DeviceSize,
    pub(super) size: DeviceSize,
    /// Physical neighbours.
    pub(super) prev: u32,
    pub(super) next: u32,
    /// A free node's previous node in its bucket list (or `NONE`); for any other node, its
    /// state as a tag (`TAG_*`), which no node index reaches. Only free nodes need the link,
    /// so the state costs no room of its own.
    pub(super) prev_free: u32,
    /// A free node's next node in its bucket list; a recycled node's next recycled node; for
    /// an allocated node, in the low half its absorbed padding, the free bytes before its
    /// allocation starts (always 0 in the node after a free node), and in the high half its
    /// slack, the free bytes after its allocation ends (both below
    /// [`MIN_SPLIT_PADDING`](super::MIN_SPLIT_PADDING) and one more request's padding).
    pub(super) next_free: u32,
}

impl Node {
    #[inline]
    pub(super) fn end(&self) -> DeviceSize {
        self.offset + self.size
    }

    /// Where the allocation of an allocated node starts (after its absorbed padding).
    #[inline]
    pub(super) fn allocation_start(&self) -> DeviceSize {
        debug_assert!(matches!(self.state(), State::Used(_)));
        self.offset + DeviceSize::from(self.next_free & PADDING_MASK)
    }

    /// The free bytes an allocated node holds after its allocation (its *slack*, below
    /// [`MIN_SPLIT_PADDING`](super::MIN_SPLIT_PADDING)).
    #[inline]
    pub(super) fn slack(&self) -> DeviceSize {
        debug_assert!(matches!(self.state(), State::Used(_)));
        DeviceSize::from(self.next_free >> SLACK_SHIFT)
    }

    /// Where the allocation of an allocated node ends (before its slack).
    #[inline]
    pub(super) fn allocation_end(&self) -> DeviceSize {
        self.end() - self.slack()
    }

    /// Whether an allocated node holds absorbed padding in front of its allocation.
    #[cfg(test)]
    pub(super) fn has_padding(&self) -> bool {
        self.next_free & PADDING_MASK != 0
    }

    /// Gives the absorbed padding of an allocated node (none, or some) to the range before
    /// it: the node then starts where its allocation does. Returns the padding's length.
    #[inline(always)]
    pub(super) fn give_up_padding(&mut self) -> DeviceSize {
        let padding = DeviceSize::from(self.next_free & PADDING_MASK);
        self.offset += padding;
        self.size -= padding;
        self.next_free &= !PADDING_MASK;
        padding
    }

    /// What `next_free` holds for an allocated node with `padding` bytes before its
    /// allocation and `slack` after it.
    #[inline]
    pub(super) fn used_extra(padding: DeviceSize, slack: DeviceSize) -> u32 {
        debug_assert!(padding <= DeviceSize::from(PADDING_MASK));
        debug_assert!(slack <= DeviceSize::from(PADDING_MASK));
        padding as u32 | (slack as u32) << SLACK_SHIFT
    }

    #[inline]
    pub(super) fn state(&self) -> State {
        match self.prev_free {
            TAG_RECYCLED => State::Recycled,
            TAG_USED_UNKNOWN => State::Used(AllocationType::Unknown),
            TAG_USED_LINEAR => State::Used(AllocationType::Linear),
            TAG_USED_NON_LINEAR => State::Used(AllocationType::NonLinear),
            _ => State::Free,
        }
    }

    /// Sets the state; a node made free is unlinked until it is inserted into a bucket.
    #[inline]
    pub(super) fn set_state(&mut self, state: State) {
        self.prev_free = state.tag();
    }
}
