//! The blocks a vector leaves behind: when a custom pool is dropped while allocations in its
//! blocks live on, the vector goes, and each such block lives on until its last allocation is
//! freed (see [`BlockRef`](crate::allocation::BlockRef)). A [`LeftBlock`] keeps weak handles of
//! the block and its arenas, so that the allocator's statistics, snapshots, leak report and
//! corruption checks still see those allocations, without keeping the memory alive a moment
//! longer than they do.

use super::block::{Arena, SharedRef, WeakShared};
use super::{Block, BlockMemory};
use crate::allocation::MetaMap;
use crate::layout::DeviceSize;
use crate::suballocator::{RangeInfo, RangeKind, Suballocator};
use std::sync::{Arc, Weak};

/// A block whose vector is gone, held weakly (see the [module docs](self)).
pub(crate) struct LeftBlock<S, M: BlockMemory> {
    shared: WeakShared<S, M>,
    /// An arena is dropped as soon as its last allocation is freed, and is then all free.
    arenas: Vec<Part<Weak<Arena<S, M>>>>,
}

/// An arena held for a moment.
type ArenaRef<S, M> = Arc<Arena<S, M>>;

/// An arena (held as `A`) and its place in the block.
struct Part<A> {
    arena: A,
    base: DeviceSize,
    size: DeviceSize,
}

/// A [`LeftBlock`] read for a moment: it keeps the block alive while it is held.
pub(crate) struct LeftView<S, M: BlockMemory> {
    shared: SharedRef<S, M>,
    /// `None`: the arena is gone, all free.
    arenas: Vec<Part<Option<ArenaRef<S, M>>>>,
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> LeftBlock<S, M> {
    /// Weak handles of `block`.
    pub(crate) fn of(block: &Block<S, M>) -> Self {
        let (shared, weak_arenas) = block.weak_parts();
        let arenas = block
            .arenas()
            .iter()
            .zip(weak_arenas)
            .map(|(a, arena)| {
                let (base, size) = a.extent();
                Part { arena, base, size }
            })
            .collect();
        Self { shared, arenas }
    }

    /// Whether the block's memory is freed (its last allocation was).
    pub(crate) fn is_gone(&self) -> bool {
        self.shared.is_dead()
    }

    /// The block as it is now, `None` once it is freed.
    pub(crate) fn view(&self) -> Option<LeftView<S, M>> {
        let shared = self.shared.upgrade()?;
        let arenas = self
            .arenas
            .iter()
            .map(|p| Part {
                arena: p.arena.upgrade(),
                base: p.base,
                size: p.size,
            })
            .collect();
        Some(LeftView { shared, arenas })
    }
}

impl<S: Suballocator + Send + 'static, M: BlockMemory> LeftView<S, M> {
    /// The block's memory.
    pub(crate) fn memory(&self) -> &M {
        self.shared.memory()
    }

    /// Calls `f` for every range in offset order, as [`Block::for_each_range`] does; an
    /// arena that is gone is one free range. Returns the live allocations, counted under the
    /// locks the ranges were read under.
    pub(crate) fn for_each_range(&self, mut f: impl FnMut(RangeInfo)) -> usize {
        let mut live = 0;
        for p in &self.arenas {
            match &p.arena {
                Some(a) => live += a.for_each_range(&mut f),
                None => f(RangeInfo {
                    offset: p.base,
                    size: p.size,
                    kind: RangeKind::Free,
                }),
            }
        }
        live
    }

    /// Runs `f` with the metadata records of the block's allocations.
    pub(crate) fn with_metas<R>(&self, f: impl FnOnce(&MetaMap) -> R) -> R {
        self.shared.with_metas(f)
    }
}
