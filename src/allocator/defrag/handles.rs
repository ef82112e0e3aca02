//! The handles of a block vector's blocks, kept from one plan to the next.
//!
//! A plan works on handles of the blocks (a picture of them, with each block's memory and
//! size), taken from the vector's list. Taking a handle costs an atomic increment for the
//! block and one for each of its arenas, and giving it back as many decrements: with a
//! hundred blocks and a pass moving a dozen allocations, that was a good part of a bounded
//! pass's planning, and most of its first-level cache misses. Between passes the list
//! changes little (a pass releases the blocks it emptied, and setting a block aside moves the
//! last block into its place), so a plan takes the handles it held in the last one again, in
//! the list's order, and makes new handles only of the blocks it holds none of.
//!
//! When a pass ends and the blocks it emptied are released, the handles are matched with the
//! list again, so that those blocks' memory is freed then (with their last handle), as it
//! would be without the handles kept. A block that the allocator releases between passes on
//! its own (the application freed its last allocation) keeps its memory until the next plan
//! lets its handle go, or the defragmentation ends: a defragmentation keeps the blocks it
//! works on alive.

use super::Blocks;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use ash::vk;

use super::super::block_vec::Block;

/// A block's handle with its memory and size (read once, when the handle is taken).
type Held<S> = (Block<S, MemoryObject>, vk::DeviceMemory, DeviceSize);

/// The handles of one vector's blocks, in the list's order as last seen.
pub(super) struct Handles<S> {
    /// The handles.
    pub blocks: Blocks<S>,
    /// Each block's memory and size (indexed as `blocks`).
    pub facts: Vec<(vk::DeviceMemory, DeviceSize)>,
    /// Room for the handles of the last plan while they are matched.
    old: Vec<Option<Held<S>>>,
}

impl<S> Default for Handles<S> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            facts: Vec::new(),
            old: Vec::new(),
        }
    }
}

impl<S: Suballocator + Send + 'static> Handles<S> {
    /// Makes `blocks` the handles of `list`, in its order: a handle held already is taken
    /// again when it comes where it was, or one place later (a block before it left the
    /// list); any other is made anew. The handles no longer in the list are let go.
    pub fn refresh(&mut self, list: &[Block<S, MemoryObject>]) {
        let mut old = std::mem::take(&mut self.old);
        old.clear();
        old.extend(
            self.blocks
                .drain(..)
                .zip(self.facts.drain(..))
                .map(|(b, (memory, size))| Some((b, memory, size))),
        );
        let mut next = 0;
        for block in list {
            let same = |k: usize| {
                old.get(k)
                    .and_then(Option::as_ref)
                    .is_some_and(|(b, _, _)| b.same_as(block))
            };
            let at = [next, next + 1].into_iter().find(|&k| same(k));
            let held = at.and_then(|k| {
                next = k + 1;
                old[k].take()
            });
            let (b, memory, size) = held.unwrap_or_else(|| {
                let memory = block.memory();
                (block.clone(), memory.handle(), memory.size())
            });
            self.blocks.push(b);
            self.facts.push((memory, size));
        }
        // The handles of blocks gone from the list are let go here.
        old.clear();
        self.old = old;
    }

    /// Lets go of every handle.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.facts.clear();
    }
}
