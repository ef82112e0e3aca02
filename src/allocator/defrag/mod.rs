//! Defragmentation: moving live allocations so that mostly empty blocks empty out and go back
//! to the driver, while the application runs.
//!
//! Programs that stream free and allocate for hours end up with blocks that are mostly free
//! but pinned by a few live allocations. A defragmentation moves such allocations into other
//! blocks, so that those blocks empty and their memory objects are freed.
//!
//! # How it goes
//!
//! 1. [`GenericMemoryAllocator::defragmentation`](crate::GenericMemoryAllocator::defragmentation) (or [`MemoryPool::defragmentation`](crate::MemoryPool::defragmentation) for a
//!    custom pool) starts one. The application [`add`](Defragmentation::add)s the
//!    allocations that may move, and only those: an allocation is never changed behind its
//!    owner's back, and the allocation hot path pays nothing when no defragmentation runs.
//! 2. [`next_pass`](Defragmentation::next_pass) plans a pass, bounded by
//!    [`max_bytes_per_pass`](DefragmentationInfo::max_bytes_per_pass) and
//!    [`max_moves_per_pass`](DefragmentationInfo::max_moves_per_pass) (see the
//!    [planner](plan) for the algorithms), and returns its [`Move`]s: for each, where the
//!    allocation is and a new allocation (the destination) where it should go. The blocks
//!    the pass empties or drains are out of every search from then on: allocations made
//!    meanwhile, by any thread, never land in them.
//! 3. For each move the application creates the new buffer or image, binds it to the
//!    [destination](Move::destination), and records the copy from the old resource (see
//!    [`record_buffer_copies`] for buffers; images need layout transitions, shown in
//!    `examples/defragment.rs`), submits and waits.
//! 4. It then settles each move: [`complete`](DefragmentationPass::complete) swaps its
//!    allocation (its `&mut MemoryAlloc`, checked to be the move's source) for the
//!    destination and frees the source; [`skip`](DefragmentationPass::skip) frees the
//!    destination and leaves the source as it was (the copy failed, or the resource was
//!    destroyed instead). [`end`](DefragmentationPass::end) skips the moves left and puts
//!    the blocks back into the search, except those being [drained](plan#passes-and-draining)
//!    over several passes, which stay set aside until they empty. Dropping a pass abandons it
//!    the same way. A block being drained holds the destinations found for the rest of its
//!    allocations between passes (its *reservations*: allocations of the defragmentation,
//!    counted in the [statistics](crate::MemoryAllocator::statistics) like any other), so
//!    that neither a later pass nor the application takes that room; the pass that moves an
//!    allocation hands its reservation out as the destination, and a reservation not used
//!    is freed when its drain ends.
//! 5. Passes go on until `next_pass` has nothing left to move. Then, or when the
//!    defragmentation is [`finish`](Defragmentation::finish)ed or dropped, it ends: every
//!    block still set aside goes back into the search, and the blocks it emptied go back to
//!    the driver.
//!
//! # Which empty blocks stay
//!
//! Between passes, each block vector keeps at most one empty block beyond its minimum block
//! count, the *smallest* (the allocation path keeps the largest: the next allocation likely
//! fits it; a defragmentation wants memory back), so that the application allocating between
//! passes does not make a block right after one was freed. Planning never moves anything
//! into an empty block, so the block kept is not filled again by the next pass. When the
//! defragmentation ends, the blocks it emptied (or drained) that are still empty are
//! released as well, as long as the minimum block count stays: a defragmentation gives back
//! every block it emptied. An empty block that was there before it started is the
//! allocation path's: it stays, unless a pass released it for a smaller one.
//!
//! Invariants: no pass allocates device memory; a block being emptied or drained receives
//! no allocation, neither from a move nor from the application; between passes at most one
//! empty block stays per vector beyond its minimum (the smallest); after the end no block
//! that the defragmentation emptied stays empty in it beyond the minimum.
//!
//! Destinations are suballocated in existing blocks only: a pass never calls
//! `vkAllocateMemory`, so it cannot fail for lack of device memory, and it never increases
//! the memory reserved from the driver.
//!
//! # Which suballocators
//!
//! All of them: moves use `allocate` and `deallocate` only. A [`BumpAllocator`](crate::BumpAllocator)
//! or [`RingAllocator`](crate::RingAllocator) block only gets its room back once every
//! allocation in it is gone, so moving part of its allocations out frees nothing there; with
//! them, [`Algorithm::Fast`] (whole blocks) is the one that helps.

pub mod plan;

pub use self::plan::{Algorithm, DefragmentationAlgorithm};
use self::plan::{BlockState, Candidate, DrainPart, Limits};
use super::block_vec::{Arena, Block, WeakBlock};
use super::execute::{self, Made, TypeBlocks};
use super::placement::TypeFacts;
use crate::allocation::{AllocationMeta, MemoryAlloc};
use crate::device_memory::DeviceMemory;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::buddy::OffsetHasher;
use crate::suballocator::{AllocationType, RangeInfo, RangeKind, Suballocator};
use ash::vk;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// Maps keyed by memory handles (a `u64` each).
type HandleMap<V> = HashMap<vk::DeviceMemory, V, BuildHasherDefault<OffsetHasher>>;

/// Sets of memory handles.
type HandleSet = HashSet<vk::DeviceMemory, BuildHasherDefault<OffsetHasher>>;

/// Maps keyed by the ids of registered allocations.
type IdMap<V> = HashMap<MoveId, V, BuildHasherDefault<OffsetHasher>>;

/// How a defragmentation goes.
///
/// Build it with `..Default::default()`: new fields may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragmentationInfo {
    /// Which moves to make (see the [planner](plan#algorithms)). The default value is
    /// [`Algorithm::Fast`].
    pub algorithm: DefragmentationAlgorithm,
    /// The most bytes one pass moves. The default value is `DeviceSize::MAX`.
    pub max_bytes_per_pass: DeviceSize,
    /// The most moves one pass makes. The default value is `usize::MAX`.
    pub max_moves_per_pass: usize,
    #[doc(hidden)]
    pub _ne: crate::NonExhaustive,
}

impl Default for DefragmentationInfo {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Fast,
            max_bytes_per_pass: DeviceSize::MAX,
            max_moves_per_pass: usize::MAX,
            _ne: crate::NonExhaustive(()),
        }
    }
}

/// Why an allocation cannot take part, or a move cannot be completed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DefragmentationError {
    /// Dedicated allocations have a memory object of their own: there is nothing to gain by
    /// moving them.
    #[error("a dedicated allocation cannot move")]
    Dedicated,
    /// The allocation is not in the blocks this defragmentation works on (another allocator,
    /// or a custom pool: pools defragment on their own).
    #[error("the allocation is not in the blocks this defragmentation works on")]
    NotHere,
    /// The allocation given to [`complete`](DefragmentationPass::complete) is not the move's
    /// source.
    #[error("the allocation is not the source of this move")]
    NotTheSource,
    /// A move of this index was settled already, or there is none.
    #[error("no open move {0}")]
    NoSuchMove(usize),
}

/// Handles of blocks.
type Blocks<S> = Vec<Block<S, DeviceMemory>>;

/// An allocation added to a defragmentation, in the order of [`add`](Defragmentation::add).
pub type MoveId = usize;

/// Where a registered allocation is now.
#[derive(Clone, Debug)]
struct Registered {
    memory: vk::DeviceMemory,
    offset: DeviceSize,
    layout: DeviceLayout,
    allocation_type: AllocationType,
    meta: Option<Arc<AllocationMeta>>,
}

/// A registered allocation in [`by_memory`](Defragmentation::by_memory): where it is and what
/// a destination of it needs, so that planning finds all it needs here, without looking up
/// the allocation's registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Indexed {
    offset: DeviceSize,
    id: MoveId,
    /// What its resource requires (a destination's layout; its size is a candidate's `need`,
    /// and the bytes its move copies).
    layout: DeviceLayout,
    allocation_type: AllocationType,
    /// Whether its registration carries a name or user data for its destination.
    has_meta: bool,
}

impl Indexed {
    /// Its place in its memory's list: by offset (then id).
    fn key(&self) -> (DeviceSize, MoveId) {
        (self.offset, self.id)
    }
}

/// The registered allocations of one memory object.
#[derive(Debug, Default)]
struct Listed {
    /// Sorted by offset.
    entries: Vec<Indexed>,
    /// The most bytes one of them needs: a lower bound on the largest allocation of the block
    /// (for the planner's [hint](BlockState::largest), without a walk), while the entries are
    /// all live.
    largest_need: DeviceSize,
}

/// One registered allocation a walk found in a block: what a candidate stands for, and what its
/// move says of its source.
#[derive(Clone, Copy, Debug)]
struct Found {
    /// Its entry in the index (offset, id, what a destination needs).
    indexed: Indexed,
    memory: vk::DeviceMemory,
    /// The bytes it holds in the block (its range, padding included: a candidate's `size`).
    size: DeviceSize,
    /// Its entry in its block's [`WalkRecord`], when a record gave it ([`NO_SLOT`]: a walk).
    slot: u32,
}

impl Found {
    fn id(&self) -> MoveId {
        self.indexed.id
    }

    /// Its layout's size (a candidate's `need`, and the bytes its move copies).
    fn need(&self) -> DeviceSize {
        self.indexed.layout.size()
    }
}

/// [`Found::slot`] of an allocation a walk found.
const NO_SLOT: u32 = u32::MAX;

/// A destination held for an allocation of a draining block that a later pass moves (see
/// [draining](plan#passes-and-draining)): the memory it is in, and the allocation.
type Reservation = (vk::DeviceMemory, MemoryAlloc);

/// One allocation of a [`WalkRecord`].
struct Entry {
    found: Found,
    /// Its move was completed: it is in another block now.
    gone: bool,
    /// Its destination, held until a pass moves it.
    reservation: Option<Reservation>,
}

/// What a walk over a block found, kept while the block drains. A block being drained is set
/// aside: nothing is allocated in it, so its ranges can only go, through the moves completed
/// (their allocations' registered memory is another block's now) or through the application
/// freeing. When its live bytes and allocation count are what the record says less what the
/// completed moves took, the application freed nothing, and the record less the moved
/// allocations is the block as a walk would find it.
///
/// The record also holds the drain's reservations, each beside its allocation, and learns of
/// the completed moves from [`complete`](DefragmentationPass::complete): a pass reads it in
/// one sweep, without looking the allocations up.
struct WalkRecord {
    live: DeviceSize,
    count: usize,
    /// The registered allocations in the block: those with reservations largest first, then
    /// the others.
    entries: Vec<Entry>,
    /// Bytes (held in the block) and number of the entries [`gone`](Entry::gone).
    gone_bytes: DeviceSize,
    gone: usize,
}

impl WalkRecord {
    /// Notes that allocation `id` left the block (its move was completed).
    fn left(&mut self, id: MoveId) {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.found.id() == id && !e.gone)
        {
            e.gone = true;
            self.gone_bytes += e.found.size;
            self.gone += 1;
        }
    }
}

/// One block vector a defragmentation works on, and how destinations are made in it.
pub(crate) struct VecTarget<S> {
    pub facts: TypeFacts,
    pub blocks: Arc<TypeBlocks<S>>,
    pub granularity: DeviceAlignment,
    /// Debug margins of the allocator (0 for none).
    pub margin: DeviceSize,
}

/// A drain's part handed out without a plan ([`Defragmentation::continue_drain`]).
struct ContinuedDrain<S> {
    moves: Vec<Move>,
    /// The memory object of each move's destination.
    destinations: Vec<vk::DeviceMemory>,
    /// Bytes the moves hold in the block (a candidate's size).
    bytes: DeviceSize,
    /// Every allocation left moves: the block empties in this pass.
    ended: bool,
    block: Block<S, DeviceMemory>,
}

/// What a defragmentation has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragmentationStats {
    /// Passes run.
    pub passes: usize,
    /// Moves completed.
    pub moves: usize,
    /// Bytes of the moves completed.
    pub bytes_moved: DeviceSize,
    /// Memory objects (blocks) released: at the end of each pass, and of the
    /// defragmentation.
    pub memory_objects_freed: usize,
}

/// A defragmentation in progress (see the [module docs](self)). It keeps the blocks it works
/// on alive until it is dropped (or [`finish`](Self::finish)ed).
pub struct Defragmentation<S> {
    info: DefragmentationInfo,
    vecs: Vec<VecTarget<S>>,
    registered: Vec<Option<Registered>>,
    /// The registered allocations by memory object, sorted by offset (kept so by `add` and
    /// `complete`, so that planning finds them in order).
    by_memory: HandleMap<Listed>,
    stats: DefragmentationStats,
    /// The memory of the blocks of the vectors, as last seen ([`add`](Self::add)'s cache: a
    /// miss looks again).
    ours: HandleSet,
    /// `(vec, block)` of the blocks the last pass left draining: set aside until a pass
    /// empties them or the defragmentation ends.
    draining: Vec<(usize, Block<S, DeviceMemory>)>,
    /// `(vec, block)` of the blocks set aside to empty or drain since the defragmentation
    /// started: released at its end if empty.
    emptied: Vec<(usize, WeakBlock<S, DeviceMemory>)>,
    /// For each block an earlier pass walked: its live bytes then and its largest movable
    /// allocation (the planner's [hint](BlockState::largest)).
    largest: HandleMap<(DeviceSize, DeviceSize)>,
    /// What the last walk found in each block left draining, and the destinations held for
    /// its allocations that later passes move: the next pass takes its candidates from here
    /// instead of walking the block again, when the block shows that nothing but the moves
    /// completed since has left it (see [`WalkRecord`]).
    walks: HandleMap<WalkRecord>,
    /// Room for what a pass's walks find, kept from pass to pass (a pass would otherwise
    /// allocate it anew each time).
    found_scratch: Vec<Found>,
    held_scratch: Vec<Option<Reservation>>,
    candidate_scratch: Vec<Candidate>,
    /// The picture of the blocks and the moves of a pass, kept likewise (the moves come back
    /// when the pass ends).
    state_scratch: Vec<BlockState>,
    move_scratch: Vec<Move>,
    plan_scratch: plan::Scratch,
    /// A drain's allocations left, and the memory of each destination it hands out.
    left_scratch: Vec<usize>,
    destination_scratch: Vec<vk::DeviceMemory>,
    /// Ends the defragmentation ([`end`](Self::end)): called on drop, through a pointer so
    /// that `Drop` needs no bounds on `S`.
    on_drop: fn(&mut Self),
}

impl<S> std::fmt::Debug for Defragmentation<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defragmentation")
            .field("info", &self.info)
            .field("registered", &self.registered.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// One planned move.
#[derive(Debug)]
pub struct Move {
    id: MoveId,
    source_memory: vk::DeviceMemory,
    source_offset: DeviceSize,
    size: DeviceSize,
    destination: Option<MemoryAlloc>,
}

impl Move {
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
    ///
    /// # Panics
    ///
    /// Never for a move of an open pass (a settled move is gone from the pass).
    pub fn destination(&self) -> &MemoryAlloc {
        match &self.destination {
            Some(d) => d,
            None => unreachable!("the moves of a pass keep their destinations until settled"),
        }
    }
}

/// One pass of a defragmentation, open until [`end`](Self::end)ed or dropped.
pub struct DefragmentationPass<'a, S: Suballocator + Send + 'static> {
    defrag: &'a mut Defragmentation<S>,
    moves: Vec<Move>,
    /// `(vec, block)` of the blocks this pass set aside.
    aside: Vec<(usize, Block<S, DeviceMemory>)>,
    states: Vec<Settled>,
    ended: bool,
}

/// How a move of a pass stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settled {
    Open,
    Completed,
    Skipped,
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

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    pub(crate) fn new(info: DefragmentationInfo, vecs: Vec<VecTarget<S>>) -> Self {
        let mut defrag = Self {
            info,
            vecs,
            registered: Vec::new(),
            by_memory: HandleMap::default(),
            stats: DefragmentationStats::default(),
            ours: HandleSet::default(),
            draining: Vec::new(),
            emptied: Vec::new(),
            found_scratch: Vec::new(),
            held_scratch: Vec::new(),
            candidate_scratch: Vec::new(),
            state_scratch: Vec::new(),
            move_scratch: Vec::new(),
            plan_scratch: plan::Scratch::default(),
            left_scratch: Vec::new(),
            destination_scratch: Vec::new(),
            largest: HandleMap::default(),
            walks: HandleMap::default(),
            on_drop: Self::end,
        };
        defrag.index_blocks();
        defrag
    }

    /// Rebuilds the set of the memory objects of the vectors' blocks.
    fn index_blocks(&mut self) {
        self.ours.clear();
        for target in &self.vecs {
            target.blocks.for_each_block(|b| {
                self.ours.insert(b.memory().handle());
            });
        }
    }

    /// Lets `alloc` move, when a pass finds it worth it; `alignment` is what its resource
    /// requires (from its memory requirements), kept by every destination. Returns the id its
    /// moves will carry.
    pub fn add(
        &mut self,
        alloc: &MemoryAlloc,
        alignment: DeviceAlignment,
    ) -> Result<MoveId, DefragmentationError> {
        if alloc.is_dedicated() {
            return Err(DefragmentationError::Dedicated);
        }
        let memory = alloc.memory();
        if !self.ours.contains(&memory) {
            // A block made since the map was built (or not ours: then still a miss).
            self.index_blocks();
            if !self.ours.contains(&memory) {
                return Err(DefragmentationError::NotHere);
            }
        }
        let layout = DeviceLayout::new(alloc.size(), alignment)
            .map_err(|_| DefragmentationError::NotHere)?;
        let meta = alloc.meta().map(|m| {
            Arc::new(AllocationMeta {
                guard: None,
                ..(**m).clone()
            })
        });
        let id = self.registered.len();
        self.registered.push(Some(Registered {
            memory,
            offset: alloc.offset(),
            layout,
            allocation_type: alloc.allocation_type(),
            meta,
        }));
        let entry = Indexed {
            offset: alloc.offset(),
            id,
            layout,
            allocation_type: alloc.allocation_type(),
            has_meta: self.registered[id]
                .as_ref()
                .is_some_and(|r| r.meta.is_some()),
        };
        self.index(memory, entry, true);
        Ok(id)
    }

    /// Adds (`on`) or removes `entry` in `memory` to or from [`by_memory`](Self::by_memory),
    /// keeping its order.
    fn index(&mut self, memory: vk::DeviceMemory, entry: Indexed, on: bool) {
        let list = self.by_memory.entry(memory).or_default();
        let need = entry.layout.size();
        let at = list.entries.partition_point(|e| e.key() < entry.key());
        if on {
            list.entries.insert(at, entry);
            list.largest_need = list.largest_need.max(need);
        } else if list.entries.get(at) == Some(&entry) {
            list.entries.remove(at);
            if list.entries.is_empty() {
                self.by_memory.remove(&memory);
            } else if need == list.largest_need {
                list.largest_need = list
                    .entries
                    .iter()
                    .map(|e| e.layout.size())
                    .max()
                    .unwrap_or(0);
            }
        }
    }

    /// What the defragmentation has done so far.
    pub fn stats(&self) -> DefragmentationStats {
        self.stats
    }

    /// Plans the next pass and makes its destinations; `None` when there is nothing left
    /// worth moving (the defragmentation has then ended, see the [module docs](self)).
    pub fn next_pass(&mut self) -> Option<DefragmentationPass<'_, S>> {
        let limits = Limits {
            bytes: self.info.max_bytes_per_pass,
            moves: self.info.max_moves_per_pass,
        };
        let mut moves = Vec::new();
        let mut aside = Vec::new();
        let mut draining = Vec::new();
        let mut budget = limits;
        for v in 0..self.vecs.len() {
            let (m, a, d) = self.plan_vec(v, budget);
            let bytes: DeviceSize = m.iter().map(|m: &Move| m.size).sum();
            budget.moves -= m.len().min(budget.moves);
            budget.bytes = budget.bytes.saturating_sub(bytes);
            if moves.is_empty() {
                // The usual case, one vector: its moves as they are, not copied.
                moves = m;
            } else {
                moves.extend(m);
            }
            aside.extend(a.into_iter().map(|b| (v, b)));
            draining.extend(d.into_iter().map(|b| (v, b)));
        }
        for (v, b) in &aside {
            if !self.emptied.iter().any(|(w, e)| w == v && e.is(b)) {
                self.emptied.push((*v, b.downgrade()));
            }
        }
        self.draining = draining;
        if moves.is_empty() {
            self.end();
            return None;
        }
        self.stats.passes += 1;
        let states = vec![Settled::Open; moves.len()];
        Some(DefragmentationPass {
            defrag: self,
            moves,
            aside,
            states,
            ended: false,
        })
    }

    /// Plans the moves of block vector `v` within `limits`: makes the destinations and sets
    /// aside the blocks being emptied or drained. Returns the moves, the blocks set aside
    /// (emptied or draining) and those of them draining.
    ///
    /// A drain going on hands out its part first, from its record, without a plan (see
    /// [`continue_drain`](Self::continue_drain)); when that ends the drain, the rest of the
    /// pass is planned as usual.
    fn plan_vec(&mut self, v: usize, limits: Limits) -> (Vec<Move>, Blocks<S>, Blocks<S>) {
        let Some(drain) = self.continue_drain(v, limits) else {
            return self.plan_picture(v, limits, None, &[]);
        };
        let ContinuedDrain {
            mut moves,
            destinations,
            bytes,
            ended,
            block,
        } = drain;
        if !ended {
            self.destination_scratch = destinations;
            // As a plan would: the pass moves the drain's part, and nothing else.
            return (moves, vec![block.clone()], vec![block]);
        }
        let left = Limits {
            bytes: limits.bytes.saturating_sub(bytes),
            moves: limits.moves.saturating_sub(moves.len()),
        };
        let (more, mut aside, draining) = if left.bytes == 0 || left.moves == 0 {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            self.plan_picture(v, left, Some(&block), &destinations)
        };
        self.destination_scratch = destinations;
        moves.extend(more);
        aside.push(block);
        (moves, aside, draining)
    }

    /// The next part of the drain going on in block vector `v`, handed out from the drain's
    /// [record](WalkRecord) within `limits` by the planner's rule ([`plan::drain_part`]), or
    /// `None` when a plan must decide: no drain or several, the block changed since its walk
    /// (the application freed some of it), or an allocation left without its reservation
    /// (its move was skipped). Each allocation left holds its destination already, in a
    /// block that cannot be emptied while it does, so nothing but the limits is left to
    /// decide.
    fn continue_drain(&mut self, v: usize, limits: Limits) -> Option<ContinuedDrain<S>> {
        let mut mine = self.draining.iter().filter(|(w, _)| *w == v);
        let (_, block) = mine.next()?;
        if mine.next().is_some() {
            return None;
        }
        let memory = block.memory().handle();
        let record = self.walks.get_mut(&memory)?;
        let live = block.memory().size().saturating_sub(block.free_size());
        if record.live.checked_sub(record.gone_bytes) != Some(live)
            || record.count.checked_sub(record.gone) != Some(block.allocation_count())
        {
            return None;
        }
        // The allocations left, in the record's order: the reservations largest first.
        let mut left = std::mem::take(&mut self.left_scratch);
        left.clear();
        left.extend((0..record.entries.len()).filter(|&k| !record.entries[k].gone));
        let size = |i: usize| record.entries[left[i]].found.size;
        if left
            .iter()
            .any(|&k| record.entries[k].reservation.is_none())
            || (1..left.len()).any(|i| size(i - 1) < size(i))
        {
            self.left_scratch = left;
            return None;
        }
        let part = plan::drain_part(left.len(), size, limits);
        let mut moves = std::mem::take(&mut self.move_scratch);
        moves.clear();
        let mut destinations = std::mem::take(&mut self.destination_scratch);
        destinations.clear();
        let mut bytes = 0;
        let mut hand_out = |k: usize| {
            let e = &mut record.entries[k];
            if let Some((destination, alloc)) = e.reservation.take() {
                bytes += e.found.size;
                destinations.push(destination);
                moves.push(Move {
                    id: e.found.id(),
                    source_memory: e.found.memory,
                    source_offset: e.found.indexed.offset,
                    size: e.found.need(),
                    destination: Some(alloc),
                });
            }
        };
        let ended = match part {
            DrainPart::Whole => {
                left.iter().for_each(|&k| hand_out(k));
                true
            }
            DrainPart::Part(part) => {
                part.iter().for_each(|&i| hand_out(left[i]));
                false
            }
            DrainPart::Waits => false,
        };
        self.left_scratch = left;
        let drain = ContinuedDrain {
            moves,
            destinations,
            bytes,
            ended,
            block: block.clone(),
        };
        if ended {
            // Nothing of it is left to hold.
            self.walks.remove(&memory);
        }
        Some(drain)
    }

    /// Plans the moves of block vector `v` within `limits` from a picture of its blocks (see
    /// [`plan_vec`](Self::plan_vec)), leaving out the block `skip` (a drain that ended in this
    /// pass) and counting the blocks in `received` as having received allocations already.
    fn plan_picture(
        &mut self,
        v: usize,
        limits: Limits,
        skip: Option<&Block<S, DeviceMemory>>,
        received: &[vk::DeviceMemory],
    ) -> (Vec<Move>, Blocks<S>, Blocks<S>) {
        let target = &self.vecs[v];
        let draining_here = self.draining.iter().filter(|(w, _)| *w == v).count();
        let mut blocks = target.blocks.blocks_with_room(draining_here);
        let searched = blocks.len();
        // The blocks an earlier pass left draining come after those of the search.
        blocks.extend(
            self.draining
                .iter()
                .filter(|(w, b)| *w == v && !skip.is_some_and(|s| s.same_as(b)))
                .map(|(_, b)| b.clone()),
        );
        let largest = std::cell::RefCell::new(std::mem::take(&mut self.largest));
        let walks = std::cell::RefCell::new(std::mem::take(&mut self.walks));
        // The block each reservation of this vector's drains is in, by its memory (only
        // blocks draining have reservations, and only they have records).
        let block_of: HandleMap<usize> = if walks.borrow().is_empty() {
            HandleMap::default()
        } else {
            (0..blocks.len())
                .map(|b| (blocks[b].memory().handle(), b))
                .collect()
        };
        // The reservations of a draining block walked afresh (its record no longer held), by
        // allocation, until the walk finds the allocation again.
        let orphans = std::cell::RefCell::new(IdMap::<Reservation>::default());
        let registered = &self.registered;
        let by_memory = &self.by_memory;
        // The picture: each block's size and live bytes (its size less its free bytes) up
        // front; which of its allocated ranges hold registered allocations only when the
        // planner first looks at it as a source (`walk`): that walk over its ranges is the
        // bulk of planning, and most blocks are never tried.
        let mut states = std::mem::take(&mut self.state_scratch);
        states.clear();
        states.extend(blocks.iter().enumerate().map(|(bi, b)| {
            let size = b.memory().size();
            let live = size.saturating_sub(b.free_size());
            BlockState {
                size,
                live,
                largest_free: b.largest_free_hint(),
                // What an earlier walk found, while it holds; else what the index says
                // each allocation needs, when that is within a pass's limits (an
                // allocation the application freed without telling would otherwise keep
                // the block out of every pass, not only of the rest of one).
                largest: largest
                    .borrow()
                    .get(&b.memory().handle())
                    .filter(|l| l.0 == live)
                    .map(|l| l.1)
                    .or_else(|| {
                        by_memory
                            .get(&b.memory().handle())
                            .map(|l| l.largest_need)
                            .filter(|&l| l <= self.info.max_bytes_per_pass)
                    }),
                all_movable: false,
                candidates: Vec::new(),
                draining: bi >= searched,
                received: received.contains(&b.memory().handle()),
                walked: false,
            }
        }));
        // Walks push onto the candidates, onto what each stands for (`found`) and onto the
        // destination each holds (`held`: its reservation, then what `place` made for it),
        // all indexed as the candidates and kept from pass to pass. The planner passes
        // candidate indices around, not destinations.
        // Room for every registered allocation of the vector's blocks, made once (a walk's
        // reserve would grow them by copies).
        let room: usize = blocks
            .iter()
            .map(|b| {
                by_memory
                    .get(&b.memory().handle())
                    .map_or(0, |l| l.entries.len())
            })
            .sum();
        let mut found = std::mem::take(&mut self.found_scratch);
        found.clear();
        found.reserve(room);
        let found = std::cell::RefCell::new(found);
        let mut held = std::mem::take(&mut self.held_scratch);
        held.clear();
        held.reserve(room);
        let held = std::cell::RefCell::new(held);
        let mut candidates = std::mem::take(&mut self.candidate_scratch);
        candidates.clear();
        candidates.reserve(room);
        // For each block walked afresh and found all movable: its live bytes and allocation
        // count then, and its candidates (contiguous: a walk pushes them in a row), from
        // which a block left draining gets its record after the plan.
        let fresh = std::cell::RefCell::new(Vec::new());
        let walk = |bi: usize, candidates: &mut Vec<Candidate>| {
            let block = &blocks[bi];
            let memory = block.memory().handle();
            let mine: &[Indexed] = by_memory.get(&memory).map_or(&[], |l| &l.entries);
            let mut found = found.borrow_mut();
            let mut held = held.borrow_mut();
            // At most one candidate per registered allocation in the block: room was made
            // for all of them up front.
            let mut mine_in_block = Vec::with_capacity(mine.len());
            let draining = states[bi].draining;
            // One candidate of block `bi`, with its reservation; returns its index.
            let mut push = |candidates: &mut Vec<Candidate>, f: Found, r: Option<Reservation>| {
                candidates.push(Candidate {
                    block: bi,
                    size: f.size,
                    need: f.need(),
                    reserved: r.as_ref().and_then(|r| block_of.get(&r.0).copied()),
                });
                found.push(f);
                held.push(r);
                debug_assert_eq!(
                    found.len(),
                    candidates.len(),
                    "found and candidates in step"
                );
                candidates.len() - 1
            };
            // A block draining since the last pass: from its record, if it still holds. The
            // reservations move to `held` for the plan; those it does not use go back.
            if draining {
                let mut walks = walks.borrow_mut();
                if let Some(record) = walks.get_mut(&memory) {
                    if record.live.checked_sub(record.gone_bytes) == Some(states[bi].live)
                        && record.count.checked_sub(record.gone) == Some(block.allocation_count())
                    {
                        for (k, e) in record.entries.iter_mut().enumerate() {
                            if !e.gone {
                                let f = Found {
                                    slot: k as u32,
                                    ..e.found
                                };
                                mine_in_block.push(push(candidates, f, e.reservation.take()));
                            }
                        }
                        return (true, mine_in_block);
                    }
                }
                // The application freed some of it: walked afresh below, its reservations
                // kept by allocation.
                if let Some(record) = walks.remove(&memory) {
                    let mut orphans = orphans.borrow_mut();
                    for e in record.entries {
                        if let (false, Some(r)) = (e.gone, e.reservation) {
                            orphans.insert(e.found.id(), r);
                        }
                    }
                }
            }
            let mut orphans = orphans.borrow_mut();
            let mut all_movable = true;
            let mut live = 0;
            // Ranges come in offset order, so the registered allocations are walked
            // alongside them; a range behind the cursor searches.
            let mut cursor = 0;
            block.for_each_range(|r: RangeInfo| {
                if let RangeKind::Allocated(_) = r.kind {
                    live += r.size;
                    let end = r.offset + r.size;
                    if cursor > 0 && mine[cursor - 1].offset >= r.offset {
                        cursor = mine.partition_point(|e| e.offset < r.offset);
                    }
                    while cursor < mine.len() && mine[cursor].offset < r.offset {
                        cursor += 1;
                    }
                    // Every entry of the memory's list was added for an allocation of this
                    // vector (its memory's), and moves stay in their vector.
                    let inside = mine[cursor..].iter().take_while(|e| e.offset < end);
                    let mut any = false;
                    for &indexed in inside {
                        // A range holding several allocations (a bump block's): its bytes
                        // are counted once.
                        let size = if any { 0 } else { r.size };
                        any = true;
                        let f = Found {
                            indexed,
                            memory,
                            size,
                            slot: NO_SLOT,
                        };
                        let r = if orphans.is_empty() {
                            None
                        } else {
                            orphans.remove(&indexed.id)
                        };
                        mine_in_block.push(push(candidates, f, r));
                    }
                    if !any {
                        all_movable = false;
                    }
                }
            });
            if let Some(l) = mine_in_block.iter().map(|&c| candidates[c].size).max() {
                largest.borrow_mut().insert(memory, (live, l));
            }
            // The block changed since its live bytes were read (an allocation or a free of
            // another thread): it is not emptied in this pass.
            let all_movable = all_movable && live == states[bi].live;
            if let (true, Some(&first)) = (all_movable, mine_in_block.first()) {
                let count = block.allocation_count();
                fresh
                    .borrow_mut()
                    .push((bi, live, count, first..first + mine_in_block.len()));
            }
            (all_movable, mine_in_block)
        };
        let mut plan_scratch = std::mem::take(&mut self.plan_scratch);
        let plan = plan::plan(
            &states,
            &mut candidates,
            self.info.algorithm,
            limits,
            |c, b| {
                let block = &blocks[b];
                let memory = block.memory().handle();
                let mut held = held.borrow_mut();
                // Its reservation when the planner claims it; a reservation elsewhere is let
                // go: the allocation goes where the planner says.
                match &held[c] {
                    Some(r) if r.0 == memory => return (Some(c), block.largest_free_hint()),
                    Some(_) => held[c] = None,
                    None => {}
                }
                let indexed = found.borrow()[c].indexed;
                // Only an allocation with a name or user data has its registration read.
                let no_meta = None;
                let meta = match indexed.has_meta {
                    true => registered[indexed.id]
                        .as_ref()
                        .map_or(&no_meta, |r| &r.meta),
                    false => &no_meta,
                };
                let made = make_destination(target, block, &indexed, meta).map(|d| {
                    held[c] = Some((memory, d));
                    c
                });
                (made, block.largest_free_hint())
            },
            |c| held.borrow_mut()[c] = None,
            |b, on| {
                if on {
                    target.blocks.set_aside(&blocks[b])
                } else {
                    target.blocks.put_back(&blocks[b]);
                    true
                }
            },
            walk,
            &mut plan_scratch,
        );
        self.plan_scratch = plan_scratch;
        let found = found.into_inner();
        let mut held = held.into_inner();
        drop(orphans);
        let draining: Vec<vk::DeviceMemory> = plan
            .draining
            .iter()
            .map(|&b| blocks[b].memory().handle())
            .collect();
        // Into a vector of its own size (collecting in place would grow the planner's).
        let mut moves = std::mem::take(&mut self.move_scratch);
        moves.clear();
        moves.reserve(plan.moves.len());
        moves.extend(plan.moves.iter().filter_map(|&(c, _, _)| {
            let f = found[c];
            Some(Move {
                id: f.id(),
                source_memory: f.memory,
                source_offset: f.indexed.offset,
                size: f.need(),
                destination: Some(held[c].take()?.1),
            })
        }));
        debug_assert_eq!(
            moves.len(),
            plan.moves.len(),
            "a move without a destination"
        );
        // Records (and the reservations they hold) are kept for the blocks left draining only
        // (and those of other vectors); a block walked afresh and left draining gets a new
        // one, with the reservations it holds now.
        let mut walks = walks.into_inner();
        walks.retain(|m, _| {
            draining.contains(m) || !blocks.iter().any(|b| b.memory().handle() == *m)
        });
        // The reservations a record lent to this plan and that no move used go back to it.
        for (c, f) in found.iter().enumerate() {
            if f.slot != NO_SLOT && held[c].is_some() {
                if let Some(record) = walks.get_mut(&f.memory) {
                    record.entries[f.slot as usize].reservation = held[c].take();
                }
            }
        }
        for (bi, live, count, range) in fresh.into_inner() {
            if !plan.draining.contains(&bi) {
                continue;
            }
            let (start, len) = (range.start, range.len());
            // The reservations this plan made first, in the order it placed them (largest
            // first, as the planner sorts a block's candidates: the next pass finds them
            // sorted), then the rest, as the walk found them.
            let mut entries: Vec<Entry> = Vec::with_capacity(len);
            let mut taken = vec![false; len];
            for &(c, _, _) in plan.reserved.iter().filter(|m| range.contains(&m.0)) {
                taken[c - start] = true;
                entries.push(Entry {
                    found: found[c],
                    gone: false,
                    reservation: held[c].take(),
                });
            }
            for c in range.filter(|&c| !taken[c - start]) {
                entries.push(Entry {
                    found: found[c],
                    gone: false,
                    reservation: held[c].take(),
                });
            }
            let record = WalkRecord {
                live,
                count,
                entries,
                gone_bytes: 0,
                gone: 0,
            };
            walks.insert(blocks[bi].memory().handle(), record);
        }
        self.walks = walks;
        self.largest = largest.into_inner();
        // What no move, record or reservation took is let go here.
        held.clear();
        self.held_scratch = held;
        self.found_scratch = found;
        self.candidate_scratch = candidates;
        self.state_scratch = states;
        let aside = plan
            .emptied
            .iter()
            .chain(&plan.draining)
            .map(|&b| blocks[b].clone())
            .collect();
        let draining = plan.draining.iter().map(|&b| blocks[b].clone()).collect();
        (moves, aside, draining)
    }

    /// Ends the defragmentation: what it did (see [how it goes](self#how-it-goes), step 5).
    pub fn finish(mut self) -> DefragmentationStats {
        self.end();
        self.stats
    }

    /// Ends the defragmentation: puts the blocks still draining back into the search and
    /// releases the blocks it emptied that are still empty (see the
    /// [module docs](self#which-empty-blocks-stay)). Nothing to do a second time.
    fn end(&mut self) {
        // The room held for drains goes back first.
        self.walks.clear();
        self.largest.clear();
        let draining = std::mem::take(&mut self.draining);
        for (v, target) in self.vecs.iter().enumerate() {
            let mine: Vec<_> = draining
                .iter()
                .filter(|(w, _)| *w == v)
                .map(|(_, b)| b.clone())
                .collect();
            if !mine.is_empty() {
                self.stats.memory_objects_freed += target.blocks.restore_aside(&mine);
            }
        }
        drop(draining);
        let emptied = std::mem::take(&mut self.emptied);
        for (v, target) in self.vecs.iter().enumerate() {
            if emptied.iter().any(|(w, _)| *w == v) {
                self.stats.memory_objects_freed += target
                    .blocks
                    .release_empty_among(|b| emptied.iter().any(|(w, e)| *w == v && e.is(b)));
            }
        }
    }
}

impl<S> Drop for Defragmentation<S> {
    /// Ends the defragmentation, as [`finish`](Self::finish).
    fn drop(&mut self) {
        (self.on_drop)(self);
    }
}

/// A destination in `block` for the allocation `indexed` stands for: allocated like a new
/// allocation (margins and all), with the source's name and user data (`meta`).
fn make_destination<S: Suballocator + Send + 'static>(
    target: &VecTarget<S>,
    block: &Block<S, DeviceMemory>,
    indexed: &Indexed,
    meta: &Option<Arc<AllocationMeta>>,
) -> Option<MemoryAlloc> {
    let request = super::placement::Request {
        layout: indexed.layout,
        preference: super::MemoryAllocatePreference::Auto,
        prefers_dedicated: false,
        requires_dedicated: false,
    };
    let (request, guard) = execute::guarded(&request, target.margin);
    let layout = target.facts.block_layout(request.layout)?;
    let fit = super::block_vec::Fit {
        layout,
        allocation_type: indexed.allocation_type,
        granularity: target.granularity,
        best_fit: false,
    };
    let made = Made { meta, guard };
    let wrap =
        |arena: &Arc<Arena<S, DeviceMemory>>, placed| execute::wrap_block(arena, placed, made);
    target.blocks.allocate_in(block, &fit, &wrap)
}

impl<S: Suballocator + Send + 'static> std::fmt::Debug for DefragmentationPass<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DefragmentationPass")
            .field("moves", &self.moves)
            .field("blocks_set_aside", &self.aside.len())
            .finish_non_exhaustive()
    }
}

impl<S: Suballocator + Send + 'static> DefragmentationPass<'_, S> {
    /// The moves of the pass, in the order their destinations were made.
    pub fn moves(&self) -> &[Move] {
        &self.moves
    }

    /// The blocks this pass empties or drains: no allocation lands in them while it is open.
    pub fn emptying(&self) -> Vec<vk::DeviceMemory> {
        self.aside
            .iter()
            .map(|(_, b)| b.memory().handle())
            .collect()
    }

    /// Completes move `index`: `source` (the allocation the move's id stands for, checked by
    /// its memory and offset) becomes the destination, and the source's memory is freed. The
    /// resource bound to the source must be done with (destroyed, or no longer used) and the
    /// data copied.
    pub fn complete(
        &mut self,
        index: usize,
        source: &mut MemoryAlloc,
    ) -> Result<(), DefragmentationError> {
        let m = self.open_move(index)?;
        if source.memory() != m.source_memory || source.offset() != m.source_offset {
            return Err(DefragmentationError::NotTheSource);
        }
        let (id, size, from) = (m.id, m.size, m.source_memory);
        let Some(destination) = self.moves[index].destination.take() else {
            return Err(DefragmentationError::NoSuchMove(index));
        };
        self.states[index] = Settled::Completed;
        if let Some(record) = self.defrag.walks.get_mut(&from) {
            record.left(id);
        }
        if let Some(Some(r)) = self.defrag.registered.get_mut(id) {
            let memory = r.memory;
            let entry = Indexed {
                offset: r.offset,
                id,
                layout: r.layout,
                allocation_type: r.allocation_type,
                has_meta: r.meta.is_some(),
            };
            r.memory = destination.memory();
            r.offset = destination.offset();
            self.defrag.index(memory, entry, false);
            let moved = Indexed {
                offset: destination.offset(),
                ..entry
            };
            self.defrag.index(destination.memory(), moved, true);
        }
        // The old allocation is dropped here: its range goes back to its block.
        drop(std::mem::replace(source, destination));
        self.defrag.stats.moves += 1;
        self.defrag.stats.bytes_moved += size;
        Ok(())
    }

    /// Skips move `index`: its destination is freed and the source stays as it is.
    pub fn skip(&mut self, index: usize) -> Result<(), DefragmentationError> {
        self.open_move(index)?;
        self.states[index] = Settled::Skipped;
        self.moves[index].destination = None;
        Ok(())
    }

    fn open_move(&self, index: usize) -> Result<&Move, DefragmentationError> {
        match (self.moves.get(index), self.states.get(index)) {
            (Some(m), Some(Settled::Open)) => Ok(m),
            _ => Err(DefragmentationError::NoSuchMove(index)),
        }
    }

    /// Ends the pass: skips the moves still open, puts the blocks set aside back into the
    /// search (but those draining) and releases the empty blocks but the smallest.
    pub fn end(mut self) -> PassReport {
        self.settle()
    }

    fn settle(&mut self) -> PassReport {
        if self.ended {
            return PassReport::default();
        }
        self.ended = true;
        let mut report = PassReport::default();
        for (m, state) in self.moves.iter_mut().zip(&self.states) {
            match state {
                Settled::Completed => {
                    report.moves += 1;
                    report.bytes_moved += m.size;
                }
                Settled::Open | Settled::Skipped => {
                    // Frees the destination, if still there.
                    m.destination = None;
                    report.skipped += 1;
                }
            }
        }
        // The blocks set aside go back, but those left draining.
        let aside = std::mem::take(&mut self.aside);
        let mut vecs: Vec<usize> = aside.iter().map(|(v, _)| *v).collect();
        vecs.sort_unstable();
        vecs.dedup();
        for v in vecs {
            let back: Vec<_> = aside
                .iter()
                .filter(|(w, b)| {
                    *w == v
                        && !self
                            .defrag
                            .draining
                            .iter()
                            .any(|(x, d)| x == w && d.same_as(b))
                })
                .map(|(_, b)| b.clone())
                .collect();
            report.memory_objects_freed += self.defrag.vecs[v].blocks.restore_aside(&back);
        }
        drop(aside);
        self.defrag.stats.memory_objects_freed += report.memory_objects_freed;
        // Every destination is settled: the vector serves the next pass.
        let mut moves = std::mem::take(&mut self.moves);
        moves.clear();
        self.defrag.move_scratch = moves;
        report
    }
}

impl<S: Suballocator + Send + 'static> Drop for DefragmentationPass<'_, S> {
    /// Abandons the pass: as [`end`](Self::end).
    fn drop(&mut self) {
        self.settle();
    }
}

/// One buffer move for [`record_buffer_copies`]: the old buffer (bound to the move's source)
/// and the new one (bound to its destination), and how many bytes to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferMove {
    /// The buffer bound to the source.
    pub src: vk::Buffer,
    /// The buffer bound to the destination.
    pub dst: vk::Buffer,
    /// Bytes to copy.
    pub size: DeviceSize,
}

/// Records the copies of a pass's buffer moves into `cmd`, followed by a barrier that makes
/// them visible to every later transfer, shader and host access. Submit it, wait, then
/// [`complete`](DefragmentationPass::complete) the moves.
///
/// # Safety
///
/// `cmd` is a command buffer of `device` in the recording state; every buffer is valid,
/// bound to its move's source or destination, at least `size` bytes long, with
/// `TRANSFER_SRC` or `TRANSFER_DST` usage; nothing else accesses them until the commands
/// are done.
pub unsafe fn record_buffer_copies(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    moves: &[BufferMove],
) {
    for m in moves {
        let region = vk::BufferCopy {
            src_offset: 0,
            dst_offset: 0,
            size: m.size,
        };
        // SAFETY: the caller's contract.
        unsafe { device.cmd_copy_buffer(cmd, m.src, m.dst, &[region]) };
    }
    let barrier = vk::MemoryBarrier::default()
        .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
        .dst_access_mask(vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE);
    // SAFETY: the caller's contract.
    unsafe {
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::ALL_COMMANDS | vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[barrier],
            &[],
            &[],
        )
    };
}
