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

/// The handles of one vector's blocks, in the list's order as last seen.
pub(super) struct Handles<S> {
    /// The handles.
    pub blocks: Blocks<S>,
    /// Each block's memory and size (indexed as `blocks`).
    pub facts: Vec<(vk::DeviceMemory, DeviceSize)>,
}

impl<S> Default for Handles<S> {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            facts: Vec::new(),
        }
    }
}

impl<S: Suballocator + Send + 'static> Handles<S> {
    /// Makes `blocks` the handles of `list`, in its order: the handles held already are
    /// moved to where the list has their block (found by a scan from there: the list changes
    /// little from one plan to the next, so there are few); a block the list has and no
    /// handle held is taken anew. Returns the handles no longer in the list, for the caller
    /// to let go once it no longer holds the list's lock (the last handle of a released
    /// block frees its memory).
    #[must_use]
    pub fn refresh(&mut self, list: &[Block<S, MemoryObject>]) -> Blocks<S> {
        for (j, block) in list.iter().enumerate() {
            if self.blocks.get(j).is_some_and(|b| b.same_as(block)) {
                continue;
            }
            match self.blocks[j.min(self.blocks.len())..]
                .iter()
                .position(|b| b.same_as(block))
            {
                Some(k) => {
                    self.blocks.swap(j, j + k);
                    self.facts.swap(j, j + k);
                }
                None => {
                    let memory = block.memory();
                    self.blocks.push(block.clone());
                    self.facts.push((memory.handle(), memory.size()));
                    let last = self.blocks.len() - 1;
                    self.blocks.swap(j, last);
                    self.facts.swap(j, last);
                }
            }
        }
        self.facts.truncate(list.len());
        self.blocks.split_off(list.len())
    }

    /// Lets go of every handle.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.facts.clear();
    }
}
