//! Defragmentation: moving live allocations so that mostly empty blocks empty out and go back
//! to the driver, while the application runs.
//!
//! Programs that stream free and allocate for hours end up with blocks that are mostly free
//! but pinned by a few live allocations. A defragmentation moves such allocations into other
//! blocks, so that those blocks empty and their memory objects are freed.
//!
//! # How it goes
//!
//! 1. [`GenericMemoryAllocator::defragmentation`](crate::GenericMemoryAllocator::defragmentation)
//!    (or [`MemoryPool::defragmentation`](crate::MemoryPool::defragmentation) for a custom
//!    pool) starts one. The application [`add`](Defragmentation::add)s the
//!    allocations that may move, and only those: an allocation is never changed behind its
//!    owner's back, and the allocation hot path pays nothing when no defragmentation runs.
//! 2. [`next_pass`](Defragmentation::next_pass) plans a pass, bounded by
//!    [`max_bytes_per_pass`](DefragmentationInfo::max_bytes_per_pass) and
//!    [`max_moves_per_pass`](DefragmentationInfo::max_moves_per_pass) (see the
//!    [planner](plan) for the algorithms), and returns its [`Move`]s: for each, where the
//!    allocation is and a new allocation (the destination) where it should go. The blocks
//!    the pass empties or drains are out of every search from then on: allocations made
//!    meanwhile, by any thread, never land in them. With limits, one plan decides the passes
//!    to come too (see [planning ahead](plan#planning-ahead)): once a pass is full, the
//!    blocks it would empty next are drained ahead, their destinations held and the blocks
//!    set aside, and the next passes hand them out in turn without planning again, until
//!    the drains run out or the application changed one (it freed some of a drain waiting
//!    for its turn: that drain is given up, its destinations let go).
//! 3. For each move the application creates the new buffer or image, binds it to the
//!    [destination](Move::destination), and records the copy from the old resource (see
//!    [`record_buffer_copies`] for buffers; images need layout transitions, shown in
//!    `examples/defragment.rs`), submits and waits.
//! 4. It then settles each move: [`complete`](DefragmentationPass::complete) swaps its
//!    allocation (its `&mut MemoryAlloc`, checked to be the very allocation that was added,
//!    by its identity) for the destination, which carries the allocation's name and user data
//!    as they are then, and frees the source; [`skip`](DefragmentationPass::skip) frees the
//!    destination and leaves the source as it was (the copy failed, or the resource was
//!    destroyed instead), and that allocation is not planned again. A settled move is gone
//!    from the pass. [`end`](DefragmentationPass::end) skips the moves left and puts
//!    the blocks back into the search, except those being [drained](plan#passes-and-draining)
//!    over several passes, which stay set aside until they empty. Dropping a pass abandons it
//!    the same way. A block being drained holds the destinations found for the rest of its
//!    allocations between passes (its *reservations*: allocations of the defragmentation,
//!    counted in the [statistics](crate::MemoryAllocator::statistics) like any other), so
//!    that neither a later pass nor the application takes that room; the pass that moves an
//!    allocation hands its reservation out as the destination, and a reservation not used
//!    is freed when its drain ends.
//! 5. Passes go on until `next_pass` has nothing left to move, which comes after a bounded
//!    number of passes whatever the application does between them (see
//!    [termination](self#termination)). Then, or when the defragmentation is
//!    [`finish`](Defragmentation::finish)ed or dropped, it ends: every block still set aside
//!    goes back into the search, and the blocks it emptied go back to the driver.
//!
//! # Which empty blocks stay
//!
//! While blocks of a vector are left draining, each pass's end keeps at most one empty block
//! of it beyond its minimum block count, the *smallest* (the allocation path keeps the
//! largest: the next allocation likely fits it; a defragmentation wants memory back), so that
//! the application allocating between passes does not make a block right after one was
//! freed. Planning never moves anything into an empty block, so the block kept is not filled
//! again by the next pass.
//!
//! Once a vector in which the defragmentation emptied (or drained) blocks has no drain left
//! (at the end of the pass that finished its last drain, or of a pass with none, and when the
//! defragmentation ends), every empty block of it goes back, as long as the minimum block
//! count stays: the empty block the allocation path kept before the defragmentation started
//! as well. The room the moves gathered is in the blocks that stay, and a defragmentation is
//! asked for to give memory back: VMA's likewise ends with no empty block. A vector the
//! defragmentation emptied nothing in keeps its empty blocks.
//!
//! # Identity, not place
//!
//! A registration refers to *the allocation* that was [`add`](Defragmentation::add)ed,
//! through an identity it is given then and keeps for life, never through its place alone
//! (memory object and offset): once the application frees it, another allocation can be made
//! at the same place, and taking that one for it would move the wrong bytes and resize the
//! wrong allocation. The identity travels with the allocation (its metadata record, which
//! its block keeps by offset, and which a completed move carries to the destination), so a
//! registration is *live* exactly while its block holds an allocation of that identity at
//! the registered offset. A walk over a block checks that before an entry becomes a
//! candidate, and an entry found dead leaves the defragmentation;
//! [`complete`](DefragmentationPass::complete) checks the identity of the allocation it is
//! given. Adding an allocation twice registers it once.
//!
//! Nor is a block taken for another through its memory handle: drivers give a freed memory
//! object's handle to the next one they make, so a block released while its registrations
//! wait for a walk can be followed by a new block with the same handle. What is known of a
//! block's registrations is keyed by its handle *and* its count of removed metadata records,
//! which no two blocks ever share (each block's count starts far from every other's), and
//! [`add`](Defragmentation::add) takes an allocation for one of its blocks only while the
//! block it saw with that handle is alive.
//!
//! # Termination
//!
//! Every move a pass hands out uses up part of its allocation's allowance: a completed move
//! counts towards [`MAX_MOVES_PER_ALLOCATION`], after which the allocation is *pinned*; a
//! move skipped, or left open when its pass ends, pins its allocation at once (the
//! application cannot move it: VMA likewise stops planning an ignored move); a pinned
//! allocation is never planned again, and a freed one leaves. Each pass hands out at least
//! one move, each to a different allocation, so whatever the application does between passes
//! (completing, skipping, freeing, allocating anew), a defragmentation with `R`
//! registrations hands out at most `(MAX_MOVES_PER_ALLOCATION + 1) × R` passes before
//! [`next_pass`](Defragmentation::next_pass) returns `None`.
//!
//! # Invariants
//!
//! Each lives in one place, with a test that names it:
//! - a registration is the allocation itself, not its place; an allocation freed leaves, and
//!   [`complete`](DefragmentationPass::complete) takes no other allocation
//!   ([identity](self#identity-not-place); `tests/defrag_trust.rs`);
//! - the passes end within `(MAX_MOVES_PER_ALLOCATION + 1) × registrations`
//!   ([termination](self#termination); on the driver
//!   `passes_end_within_the_bound_whatever_the_application_does`, on the planner's model
//!   `passes_end_within_the_bound_whatever_the_caller_does`);
//! - a settled move is gone from its pass ([`DefragmentationPass::moves`];
//!   `settled_moves_are_gone_from_their_pass`);
//! - every block a pool owns, set aside or not, counts towards its maximum
//!   (`a_pool_never_holds_more_than_its_maximum_of_blocks_during_a_defragmentation`);
//! - the planner's own ([plan#invariants]; its property tests).
//!
//! Also: no pass allocates device memory; a block being emptied or drained receives
//! no allocation, neither from a move nor from the application; between passes at most one
//! empty block stays per vector beyond its minimum (the smallest), and none once the vector
//! has no drain left and the defragmentation emptied some of its blocks; after the end no
//! block stays empty beyond the minimum in a vector the defragmentation emptied blocks in.
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

mod copies;
mod drain;
mod handles;
mod known;
mod pass;
mod picture;
pub mod plan;
mod registry;
mod settling;

pub use self::copies::{record_buffer_copies, BufferMove};
use self::drain::{ContinuedDrains, Found, Reservation, WalkRecord};
use self::handles::Handles;
use self::known::KnownWalk;
pub use self::pass::{DefragmentationPass, Move, PassReport};
pub use self::plan::{Algorithm, DefragmentationAlgorithm};
use self::plan::{BlockState, Candidate, Limits};
use self::registry::Registry;
pub use self::registry::MAX_MOVES_PER_ALLOCATION;
use self::settling::Settling;
use super::block_memory::DeviceBlockVec;
use super::block_vec::{Block, WeakBlock};
use super::placement::TypeFacts;
use crate::allocation::MemoryAlloc;
use crate::device_memory::MemoryObject;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::buddy::OffsetHasher;
use crate::suballocator::Suballocator;
use ash::vk;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

/// Maps keyed by memory handles (a `u64` each).
type HandleMap<V> = HashMap<vk::DeviceMemory, V, BuildHasherDefault<OffsetHasher>>;

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
    pub _ne: crate::non_exhaustive::NonExhaustive,
}

impl Default for DefragmentationInfo {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Fast,
            max_bytes_per_pass: DeviceSize::MAX,
            max_moves_per_pass: usize::MAX,
            _ne: crate::non_exhaustive::NonExhaustive(()),
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
    /// The allocation given to [`complete`](DefragmentationPass::complete) is not the one the
    /// move's id stands for (another allocation, or one made where a freed one was).
    #[error("the allocation is not the source of this move")]
    NotTheSource,
    /// A move of this index was settled already, or there is none.
    #[error("no open move {0}")]
    NoSuchMove(usize),
}

/// Handles of blocks.
type Blocks<S> = Vec<Block<S, MemoryObject>>;

/// An allocation added to a defragmentation, in the order of [`add`](Defragmentation::add).
pub type MoveId = usize;

/// One block vector a defragmentation works on, and how destinations are made in it.
pub(crate) struct DefragVec<S> {
    pub facts: TypeFacts,
    pub blocks: Arc<DeviceBlockVec<S>>,
    pub granularity: DeviceAlignment,
    /// Debug margins of the allocator (0 for none).
    pub margin: DeviceSize,
    /// How destinations choose among free ranges (a custom pool's strategy).
    pub strategy: crate::suballocator::AllocationStrategy,
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
/// on alive until it is dropped (or [`finish`](Self::finish)ed), and the leak check of its
/// allocator or custom pool waits for it: the destinations it holds between passes are
/// allocations, but not the application's, so the allocator (or pool) may be dropped first.
pub struct Defragmentation<S> {
    info: DefragmentationInfo,
    vecs: Vec<DefragVec<S>>,
    registry: Registry,
    stats: DefragmentationStats,
    /// The blocks of the vectors by their memory, as last seen ([`add`](Self::add)'s cache:
    /// a miss looks again). A block no longer alive is a miss too: the driver may have given
    /// its handle to another memory object since, of another pool or vector.
    ours: HandleMap<WeakBlock<S, MemoryObject>>,
    /// For each vector, the blocks the last pass left draining, in the order of their passes:
    /// set aside until a pass empties them or the defragmentation ends.
    draining: Vec<Blocks<S>>,
    /// `(vec, block)` of the blocks set aside to empty or drain since the defragmentation
    /// started: released at its end if empty.
    emptied: Vec<(usize, WeakBlock<S, MemoryObject>)>,
    /// The blocks that moves went into (or that hold reservations for moves to come), by
    /// their memory (a block with the handle of one released since is not one): the plans'
    /// [receivers](plan#receivers).
    receivers: HandleMap<WeakBlock<S, MemoryObject>>,
    /// For each block an earlier pass walked: its live bytes then and its largest movable
    /// allocation (the planner's [hint](BlockState::largest)).
    largest: HandleMap<(DeviceSize, DeviceSize)>,
    /// What the last walk found in each block left draining, and the destinations held for
    /// its allocations that later passes move (see [drains](drain)).
    walks: HandleMap<WalkRecord>,
    /// What the walks of earlier passes found, for the blocks that still show it (see
    /// [`KnownWalk`]).
    known: HandleMap<KnownWalk<S>>,
    /// The handles of each vector's blocks, from the last plan (see [`Handles`]).
    handles: Vec<Handles<S>>,
    /// Whether `S` gives a freed allocation's room back at once (see
    /// [`undo_gives_room_back`](picture::undo_gives_room_back)).
    undo_gives_room_back: bool,
    /// For each vector, the sources its last plan found exhausted (see [`Settling`]).
    settling: Vec<Settling<S>>,
    /// Room for what a pass's walks find, kept from pass to pass (a pass would otherwise
    /// allocate it anew each time).
    found_scratch: Vec<Found>,
    held_scratch: Vec<Option<Reservation>>,
    candidate_scratch: Vec<Candidate>,
    state_scratch: Vec<BlockState>,
    plan_scratch: plan::Scratch,
    dead_scratch: Vec<MoveId>,
    /// The moves of a pass, given back when it ends (a pass's plan would otherwise allocate
    /// and copy them anew).
    move_scratch: Vec<Option<Move>>,
    alive_scratch: Vec<bool>,
    walked_scratch: Vec<known::FreshWalk>,
    /// A drain's allocations left, and the memory of each destination it hands out.
    left_scratch: Vec<usize>,
    destination_scratch: Vec<vk::DeviceMemory>,
    /// Ends the defragmentation ([`end`](Self::end)): called on drop, through a pointer so
    /// that `Drop` needs no bounds on `S`.
    on_drop: fn(&mut Self),
    /// What runs the leak check of the blocks' owner (a custom pool's shared state, or the
    /// allocator's observer), kept alive until the defragmentation is dropped: the check runs
    /// only once the destinations held here are gone, so that it never reports them as the
    /// application's.
    _owner: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl<S> std::fmt::Debug for Defragmentation<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Defragmentation")
            .field("info", &self.info)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    pub(crate) fn new(info: DefragmentationInfo, vecs: Vec<DefragVec<S>>) -> Self {
        let handles = vecs.iter().map(|_| Handles::default()).collect();
        let settling = vecs.iter().map(|_| Settling::default()).collect();
        let draining = vecs.iter().map(|_| Vec::new()).collect();
        let mut defrag = Self {
            info,
            vecs,
            registry: Registry::default(),
            stats: DefragmentationStats::default(),
            ours: HandleMap::default(),
            draining,
            emptied: Vec::new(),
            receivers: HandleMap::default(),
            found_scratch: Vec::new(),
            held_scratch: Vec::new(),
            candidate_scratch: Vec::new(),
            state_scratch: Vec::new(),
            plan_scratch: plan::Scratch::default(),
            dead_scratch: Vec::new(),
            move_scratch: Vec::new(),
            alive_scratch: Vec::new(),
            left_scratch: Vec::new(),
            destination_scratch: Vec::new(),
            largest: HandleMap::default(),
            walks: HandleMap::default(),
            known: HandleMap::default(),
            handles,
            undo_gives_room_back: picture::undo_gives_room_back::<S>(),
            settling,
            walked_scratch: Vec::new(),
            on_drop: Self::end,
            _owner: None,
        };
        defrag.index_blocks();
        defrag
    }

    /// Keeps `owner` (what runs the leak check of the blocks' owner) alive until the
    /// defragmentation is dropped.
    pub(crate) fn keeping(mut self, owner: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        self._owner = Some(owner);
        self
    }

    /// Rebuilds the map of the vectors' blocks by memory.
    fn index_blocks(&mut self) {
        self.ours.clear();
        for target in &self.vecs {
            target.blocks.for_each_block(|b| {
                self.ours.insert(b.memory().handle(), b.downgrade());
            });
        }
    }

    /// Whether `memory` is the memory of one of the vectors' blocks, as last seen: that
    /// block is alive, so no other memory object has its handle.
    fn is_ours(&self, memory: vk::DeviceMemory) -> bool {
        self.ours.get(&memory).is_some_and(WeakBlock::is_alive)
    }

    /// Lets `alloc` move, when a pass finds it worth it; `alignment` is what its resource
    /// requires (from its memory requirements), kept by every destination. Returns the id its
    /// moves will carry. Adding an allocation that was added already returns its id again,
    /// and its destinations keep the alignment it was first added with.
    ///
    /// Errors: [`Dedicated`](DefragmentationError::Dedicated) for a dedicated allocation;
    /// [`NotHere`](DefragmentationError::NotHere) for one outside the blocks this
    /// defragmentation works on, or whose size `alignment` cannot pad.
    ///
    /// The registration is the allocation itself (`alloc` is given an identity it keeps for
    /// life, hence `&mut`): once the application frees it, it leaves the defragmentation,
    /// and no allocation made later in its place is taken for it.
    pub fn add(
        &mut self,
        alloc: &mut MemoryAlloc,
        alignment: DeviceAlignment,
    ) -> Result<MoveId, DefragmentationError> {
        if alloc.is_dedicated() {
            return Err(DefragmentationError::Dedicated);
        }
        let memory = alloc.memory();
        if !self.is_ours(memory) {
            // A block made since the map was built, or one of a handle seen for a block
            // released since (or not ours: then still a miss).
            self.index_blocks();
            if !self.is_ours(memory) {
                return Err(DefragmentationError::NotHere);
            }
        }
        let layout = DeviceLayout::new(alloc.size(), alignment)
            .map_err(|_| DefragmentationError::NotHere)?;
        let identity = alloc.identity();
        let removals = alloc.block_removals().unwrap_or(0);
        Ok(self.registry.add(
            memory,
            alloc.offset(),
            layout,
            alloc.allocation_type(),
            identity,
            removals,
        ))
    }

    /// What the defragmentation has done so far.
    pub fn stats(&self) -> DefragmentationStats {
        self.stats
    }

    /// Plans the next pass and makes its destinations; `None` when there is nothing left
    /// worth moving (the defragmentation has then ended, see the [module docs](self)). It
    /// comes within a bounded number of passes (see [termination](self#termination)).
    pub fn next_pass(&mut self) -> Option<DefragmentationPass<'_, S>> {
        let limits = Limits {
            bytes: self.info.max_bytes_per_pass,
            moves: self.info.max_moves_per_pass,
        };
        // The moves go straight into the vector the last pass gave back.
        let mut moves = std::mem::take(&mut self.move_scratch);
        moves.clear();
        let mut aside = Vec::new();
        let mut budget = limits;
        for v in 0..self.vecs.len() {
            // The vector's drains, taken out (not copied) in their order.
            let drains = std::mem::take(&mut self.draining[v]);
            let from = moves.len();
            let (a, d, new) = self.plan_vec(v, budget, drains, &mut moves);
            let bytes: DeviceSize = moves[from..].iter().flatten().map(|m| m.size).sum();
            budget.moves -= (moves.len() - from).min(budget.moves);
            budget.bytes = budget.bytes.saturating_sub(bytes);
            // Only the blocks set aside by a plan are new to the list of those emptied.
            for b in new {
                if !self.emptied.iter().any(|(w, e)| *w == v && e.is(&b)) {
                    self.emptied.push((v, b.downgrade()));
                }
            }
            aside.extend(a.into_iter().map(|b| (v, b)));
            self.draining[v] = d;
        }
        if moves.is_empty() {
            self.move_scratch = moves;
            // What the plan set aside with nothing to move (drains the application emptied
            // between passes) goes back as at the end of a pass, and the end releases it.
            self.put_back(aside);
            self.end();
            return None;
        }
        self.stats.passes += 1;
        for (i, m) in moves.iter_mut().flatten().enumerate() {
            m.index = i;
        }
        Some(DefragmentationPass {
            defrag: self,
            moves,
            aside,
            report: PassReport::default(),
            ended: false,
        })
    }

    /// Plans the moves of block vector `v` within `limits`, its drains going on being
    /// `drains` (in their order): makes the destinations and sets aside the blocks being
    /// emptied or drained. Returns the blocks this pass moves out of (emptied, or moving a
    /// drain's part; those left draining stay set aside after it), the drains left (in
    /// order), and the blocks a plan set aside.
    ///
    /// The drains going on hand out their parts first, from their records, without a plan
    /// (see [`continue_drains`](Self::continue_drains)); when that leaves room in the pass
    /// (no drain is left, or one changed), the rest of the pass is planned as usual.
    fn plan_vec(
        &mut self,
        v: usize,
        limits: Limits,
        drains: Blocks<S>,
        moves: &mut Vec<Option<Move>>,
    ) -> (Blocks<S>, Blocks<S>, Blocks<S>) {
        if drains.is_empty() {
            let (aside, draining) = self.plan_picture(v, limits, &[], &[], moves);
            let new = aside.clone();
            return (aside, draining, new);
        }
        let ContinuedDrains {
            count,
            destinations,
            bytes,
            ended,
            left,
            part,
            full,
        } = self.continue_drains(v, drains, limits, moves);
        if full {
            self.destination_scratch = destinations;
            // As a plan would: the pass moves the drains' parts, and nothing else.
            let mut aside = ended;
            if part {
                aside.push(left[0].clone());
            }
            return (aside, left, Vec::new());
        }
        let rest = Limits {
            bytes: limits.bytes.saturating_sub(bytes),
            moves: limits.moves.saturating_sub(count),
        };
        // The drains left (one changed since its walk) are in the picture, and planned again.
        let (mut aside, draining) = self.plan_picture(v, rest, &left, &destinations, moves);
        self.destination_scratch = destinations;
        let new = aside.clone();
        aside.extend(ended);
        (aside, draining, new)
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
        self.known.clear();
        self.receivers.clear();
        self.largest.clear();
        for h in &mut self.handles {
            h.clear();
        }
        for s in &mut self.settling {
            s.clear();
        }
        for (v, target) in self.vecs.iter().enumerate() {
            let mine = std::mem::take(&mut self.draining[v]);
            if !mine.is_empty() {
                self.stats.memory_objects_freed += target.blocks.restore_aside(&mine);
            }
        }
        for v in 0..self.vecs.len() {
            self.stats.memory_objects_freed += self.release_emptied(v);
        }
        self.emptied.clear();
    }

    /// Releases the empty blocks of vector `v`, as long as the minimum block count stays, when
    /// the defragmentation emptied (or drained) one of its blocks (see
    /// [which empty blocks stay](self#which-empty-blocks-stay)). Returns how many.
    fn release_emptied(&self, v: usize) -> usize {
        if !self.emptied.iter().any(|(w, _)| *w == v) {
            return 0;
        }
        self.vecs[v].blocks.release_empty_among(|_| true)
    }
}

impl<S> Drop for Defragmentation<S> {
    /// Ends the defragmentation, as [`finish`](Self::finish).
    fn drop(&mut self) {
        (self.on_drop)(self);
    }
}
