//! One pass of a defragmentation and its moves: what the application copies, then completes
//! or skips.
//!
//! A move is *open* from the moment its pass is handed out until it is settled:
//! [`complete`](DefragmentationPass::complete)d, [`skip`](DefragmentationPass::skip)ped, or
//! left open when the pass ends (which skips it). A settled move is gone from the pass:
//! [`moves`](DefragmentationPass::moves) lists the open moves only, and
//! [`get`](DefragmentationPass::get) finds none at a settled index. A skipped move pins its
//! allocation (see [termination](super#termination)).

use super::known::{follow_move, Completed};
use super::{Block, Defragmentation, DefragmentationError, MoveId};
use crate::allocation::MemoryAlloc;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::Suballocator;
use ash::vk;

/// One planned move.
#[derive(Debug)]
pub struct Move {
    pub(super) index: usize,
    pub(super) id: MoveId,
    pub(super) source_memory: vk::DeviceMemory,
    pub(super) source_offset: DeviceSize,
    pub(super) size: DeviceSize,
    pub(super) destination: MemoryAlloc,
    /// The bytes the destination's range holds in its block, as the plan that made it
    /// measured (0: not known): what the destination block's known walk follows.
    pub(super) range: DeviceSize,
}

impl Move {
    /// Its index in its pass: what [`complete`](DefragmentationPass::complete) and
    /// [`skip`](DefragmentationPass::skip) take.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The allocation moving, as [`add`](Defragmentation::add) numbered it.
    pub fn id(&self) -> MoveId {
        self.id
    }

    /// The memory object the allocation is in now.
    pub fn source_memory(&self) -> vk::DeviceMemory {
        self.source_memory
    }

    /// Its offset there.
    pub fn source_offset(&self) -> DeviceSize {
        self.source_offset
    }

    /// The bytes to copy (the allocation's size).
    pub fn size(&self) -> DeviceSize {
        self.size
    }

    /// Where it goes: bind the new resource here.
    pub fn destination(&self) -> &MemoryAlloc {
        &self.destination
    }
}

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Moves completed.
    pub moves: usize,
    /// Bytes of those moves.
    pub bytes_moved: DeviceSize,
    /// Moves skipped (explicitly or left open at the end).
    pub skipped: usize,
    /// Blocks released at the end of the pass (empty blocks beyond the smallest one, which
    /// stays until the next pass or the end of the defragmentation).
    pub memory_objects_freed: usize,
}

/// One pass of a defragmentation, open until [`end`](Self::end)ed or dropped.
pub struct DefragmentationPass<'a, S: Suballocator + Send + 'static> {
    pub(super) defrag: &'a mut Defragmentation<S>,
    /// The moves by index; `None` once settled.
    pub(super) moves: Vec<Option<Move>>,
    /// `(vec, block)` of the blocks this pass set aside.
    pub(super) aside: Vec<(usize, Block<S, MemoryObject>)>,
    pub(super) report: PassReport,
    pub(super) ended: bool,
}

impl<S: Suballocator + Send + 'static> std::fmt::Debug for DefragmentationPass<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefragmentationPass")
            .field("open_moves", &self.moves().count())
            .field("blocks_set_aside", &self.aside.len())
            .finish_non_exhaustive()
    }
}

impl<S: Suballocator + Send + 'static> DefragmentationPass<'_, S> {
    /// The open moves of the pass, in the order their destinations were made (by index).
    pub fn moves(&self) -> impl Iterator<Item = &Move> + '_ {
        self.moves.iter().flatten()
    }

    /// The open move `index`, or `None` when it was settled (or there is none).
    pub fn get(&self, index: usize) -> Option<&Move> {
        self.moves.get(index)?.as_ref()
    }

    /// The blocks this pass empties or drains, and those whose drains wait for later passes
    /// (each holding the destinations of its allocations): no allocation lands in them while
    /// the pass is open.
    pub fn emptying(&self) -> Vec<vk::DeviceMemory> {
        let mut memory: Vec<vk::DeviceMemory> = self
            .aside
            .iter()
            .map(|(_, b)| b)
            .chain(self.defrag.draining.iter().flatten())
            .map(|b| b.memory().handle())
            .collect();
        let mut seen = std::collections::HashSet::with_capacity(memory.len());
        memory.retain(|m| seen.insert(*m));
        memory
    }

    /// Completes move `index`: `source`, which must be the very allocation the move's id
    /// stands for (checked by its identity, not only by its place), becomes the destination,
    /// carrying its name and user data as they are now, and the source's memory is freed.
    /// The resource bound to the source must be done with (destroyed, or no longer used) and
    /// the data copied. On error nothing changes.
    pub fn complete(
        &mut self,
        index: usize,
        source: &mut MemoryAlloc,
    ) -> Result<(), DefragmentationError> {
        let m = self
            .get(index)
            .ok_or(DefragmentationError::NoSuchMove(index))?;
        if source.memory() != m.source_memory || source.offset() != m.source_offset {
            return Err(DefragmentationError::NotTheSource);
        }
        self.defrag.registry.check(m.id, source.identity_if_any())?;
        let Some(Move {
            id,
            size,
            source_memory,
            mut destination,
            range,
            ..
        }) = self.moves[index].take()
        else {
            return Err(DefragmentationError::NoSuchMove(index));
        };
        if let Some(record) = self.defrag.walks.get_mut(&source_memory) {
            record.left(id);
        }
        let to = destination.memory();
        let registry = &self.defrag.registry;
        let changed_before = (registry.changed(source_memory), registry.changed(to));
        destination.carry_over(source);
        self.defrag.registry.moved(
            id,
            destination.memory(),
            destination.offset(),
            destination.block_removals().unwrap_or(0),
        );
        let before = source.block_removals().unwrap_or(0);
        // The old allocation is dropped here: its range goes back to its block.
        drop(std::mem::replace(source, destination));
        self.defrag.registry.source_left(source_memory, before);
        let completed = Completed {
            id,
            from: (source_memory, before),
            to: (to, source.block_removals().unwrap_or(0)),
            range,
            before: changed_before,
        };
        follow_move(&mut self.defrag.known, &self.defrag.registry, &completed);
        self.report.moves += 1;
        self.report.bytes_moved += size;
        self.defrag.stats.moves += 1;
        self.defrag.stats.bytes_moved += size;
        Ok(())
    }

    /// Skips move `index`: its destination is freed, the source stays as it is, and the
    /// allocation is not planned again in this defragmentation.
    pub fn skip(&mut self, index: usize) -> Result<(), DefragmentationError> {
        let m = self
            .moves
            .get_mut(index)
            .and_then(Option::take)
            .ok_or(DefragmentationError::NoSuchMove(index))?;
        self.defrag.registry.pin(m.id);
        self.report.skipped += 1;
        Ok(())
    }

    /// Ends the pass: skips the moves still open, puts the blocks set aside back into the
    /// search (but those draining) and releases the empty blocks but the smallest (all of
    /// them once nothing is left draining, see
    /// [which empty blocks stay](super#which-empty-blocks-stay)).
    pub fn end(mut self) -> PassReport {
        self.settle()
    }

    fn settle(&mut self) -> PassReport {
        if self.ended {
            return PassReport::default();
        }
        self.ended = true;
        for m in self.moves.iter_mut().filter_map(Option::take) {
            // Its destination is freed here.
            self.defrag.registry.pin(m.id);
            self.report.skipped += 1;
        }
        // The blocks set aside go back, but those left draining.
        let aside = std::mem::take(&mut self.aside);
        self.report.memory_objects_freed += self.defrag.put_back(aside);
        // Every move is settled: the vector serves the next pass.
        let mut moves = std::mem::take(&mut self.moves);
        moves.clear();
        self.defrag.move_scratch = moves;
        self.report
    }
}

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    /// Puts the blocks `aside` (`(vec, block)`, set aside by a plan) back into the search,
    /// but those left draining, and releases the empty blocks but the smallest of each
    /// vector (all of them, in a vector with no drain left that the defragmentation emptied
    /// blocks in: see [which empty blocks stay](super#which-empty-blocks-stay)): the end of a
    /// pass, and of a plan that found nothing to move. Returns how many blocks were
    /// released.
    pub(super) fn put_back(&mut self, aside: Vec<(usize, Block<S, MemoryObject>)>) -> usize {
        let mut vecs: Vec<usize> = aside.iter().map(|(v, _)| *v).collect();
        vecs.sort_unstable();
        vecs.dedup();
        let mut released = 0;
        for v in vecs {
            let back: Vec<_> = aside
                .iter()
                .filter(|(w, b)| *w == v && !self.draining[v].iter().any(|d| d.same_as(b)))
                .map(|(_, b)| b.clone())
                .collect();
            let blocks = &self.vecs[v].blocks;
            released += blocks.restore_aside(&back);
            // With no drain left, no block waits for its turn: the empty blocks go back now,
            // as at the end.
            if self.draining[v].is_empty() {
                released += self.release_emptied(v);
            }
            let blocks = &self.vecs[v].blocks;
            // The handles the plan took of the blocks released now are let go here (their
            // memory is freed with the last handle), not in the next plan.
            let handles = &mut self.handles[v];
            drop(blocks.with_blocks(|list| handles.refresh(list)));
        }
        drop(aside);
        self.stats.memory_objects_freed += released;
        released
    }
}

impl<S: Suballocator + Send + 'static> Drop for DefragmentationPass<'_, S> {
    /// Abandons the pass: as [`end`](Self::end).
    fn drop(&mut self) {
        self.settle();
    }
}
