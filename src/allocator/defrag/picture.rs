//! The picture of one block vector's blocks, as the [planner](super::plan) works through it:
//! each block's size and live bytes up front, which of its ranges hold registered (and live)
//! allocations only when the planner first looks at it as a source (a *walk*: the bulk of
//! planning, and most blocks are never tried), and destinations suballocated in the blocks
//! the planner picks.
//!
//! A walk takes a block's candidates from its drain's [record](super::drain::WalkRecord) when
//! that still holds, and otherwise walks its ranges beside the registrations of its memory,
//! keeping those whose allocation is still there (see
//! [identity](super#identity-not-place)) and may still move. Destinations are held
//! beside the candidates (a reservation lent by its record, or what `place` made): the
//! planner passes candidate indices around, not destinations.

use super::drain::{Entry, Found, Reservation, WalkRecord, NO_SLOT};
use super::known::{FreshWalk, KnownWalk};
use super::plan::{self, BlockState, Candidate, Limits, Picture};
use super::registry::{Indexed, Registry};
use super::{Blocks, DefragVec, Defragmentation, HandleMap, IdMap, Move, MoveId};
use crate::allocation::MemoryAlloc;
use crate::device_memory::MemoryObject;
use crate::layout::DeviceSize;
use crate::suballocator::{AllocationStrategy, RangeInfo, RangeKind, Suballocator};
use ash::vk;
use std::ops::Range;

use super::super::block_vec::{Arena, Block};
use super::super::execute::{self, Made};

/// One block vector's blocks while a plan is made (see the [module docs](self)).
struct VecPicture<'a, S> {
    target: &'a DefragVec<S>,
    blocks: &'a [Block<S, MemoryObject>],
    states: &'a [BlockState],
    registry: &'a Registry,
    /// The block each reservation of this vector's drains is in, by its memory (only
    /// blocks draining have reservations, and only they have records).
    block_of: HandleMap<usize>,
    walks: &'a mut HandleMap<WalkRecord>,
    /// For each block walked: its live bytes then and its largest movable allocation.
    largest: &'a mut HandleMap<(DeviceSize, DeviceSize)>,
    /// The reservations of a draining block walked afresh (its record no longer held), by
    /// allocation, until the walk finds the allocation again.
    orphans: IdMap<Reservation>,
    /// What each candidate stands for, and the destination it holds (indexed as the
    /// candidates).
    found: Vec<Found>,
    held: Vec<Option<Reservation>>,
    /// For each block walked afresh and found all movable: its live bytes and allocation
    /// count then, and its candidates (contiguous: a walk pushes them in a row), from which a
    /// block left draining gets its record after the plan.
    fresh: Vec<(usize, DeviceSize, usize, Range<usize>)>,
    /// Registrations whose allocation a walk found gone: they leave the registry after the
    /// plan.
    dead: Vec<MoveId>,
    /// Whether each registration of the block being walked is live.
    alive: Vec<bool>,
    /// The blocks whose registrations a walk checked, with their count of removed records
    /// then: verified after the plan, once the dead have left.
    checked: Vec<(vk::DeviceMemory, u64)>,
    /// The walks of earlier passes, by memory (see [`KnownWalk`]).
    known: &'a HandleMap<KnownWalk<S>>,
    /// For each block walked afresh, what it showed (live bytes, allocation count, removed
    /// records), whether all of it may move and its candidates: kept after the plan.
    walked_now: Vec<FreshWalk>,
    /// For each candidate given a destination by `place`: the bytes the destination's range
    /// holds in its block (0: a reservation claimed, not measured), what a completed move's
    /// destination walk [follows](super::known::follow_move).
    ranges: Vec<DeviceSize>,
    /// What [`undo_gives_room_back`] said of the vector's suballocator.
    undo_gives_room_back: bool,
}

/// Pushes a candidate of block `bi` standing for `f`, holding `r`; returns its index.
fn push(
    candidates: &mut Vec<Candidate>,
    found: &mut Vec<Found>,
    held: &mut Vec<Option<Reservation>>,
    block_of: &HandleMap<usize>,
    bi: usize,
    f: Found,
    r: Option<Reservation>,
) -> usize {
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
}

impl<S: Suballocator + Send + 'static> Picture for VecPicture<'_, S> {
    /// The candidate whose destination [`held`](VecPicture::held) keeps.
    type Made = usize;

    fn place(&mut self, c: usize, b: usize) -> (Option<usize>, DeviceSize) {
        let block = &self.blocks[b];
        let memory = block.memory().handle();
        // Its reservation when the planner claims it; a reservation elsewhere is let go: the
        // allocation goes where the planner says.
        if self.ranges.len() <= c {
            self.ranges.resize(c + 1, 0);
        }
        self.ranges[c] = 0;
        match &self.held[c] {
            Some(r) if r.0 == memory => return (Some(c), block.largest_free_hint()),
            Some(_) => self.held[c] = None,
            None => {}
        }
        // Measured only where a known walk could follow the move (the block's free bytes
        // cost a look at each of its arenas).
        let free = self.known.contains_key(&memory).then(|| block.free_size());
        let made = make_destination(self.target, block, &self.found[c].indexed).map(|d| {
            self.held[c] = Some((memory, d));
            if let Some(free) = free {
                self.ranges[c] = free.saturating_sub(block.free_size());
            }
            c
        });
        (made, block.largest_free_hint())
    }

    fn undo(&mut self, c: usize) {
        self.held[c] = None;
    }

    fn undo_gives_room_back(&self) -> bool {
        self.undo_gives_room_back
    }

    fn set_aside(&mut self, b: usize, on: bool) -> bool {
        if on {
            let keep_order = self.target.strategy == AllocationStrategy::MinOffset;
            self.target.blocks.set_aside(&self.blocks[b], keep_order)
        } else {
            self.target.blocks.put_back(&self.blocks[b]);
            true
        }
    }

    fn index(&mut self, bi: usize, needs: &mut Vec<DeviceSize>) -> Option<bool> {
        let entries = self.indexed(bi)?;
        needs.clear();
        needs.reserve(entries.len());
        needs.extend(
            entries
                .iter()
                .filter(|e| !e.pinned)
                .map(|e| e.layout.size()),
        );
        // Each registration live is an allocation of its own: all of them, when as many.
        Some(self.blocks[bi].allocation_count() == needs.len())
    }

    fn walk_index(
        &mut self,
        bi: usize,
        most: DeviceSize,
        candidates: &mut Vec<Candidate>,
    ) -> Vec<usize> {
        let memory = self.blocks[bi].memory().handle();
        let Some(entries) = self.indexed(bi) else {
            return Vec::new();
        };
        let mut mine = Vec::with_capacity(entries.len());
        for &indexed in entries {
            if indexed.pinned || indexed.layout.size() > most {
                continue;
            }
            let f = Found {
                indexed,
                memory,
                size: indexed.layout.size(),
                slot: NO_SLOT,
            };
            mine.push(push(
                candidates,
                &mut self.found,
                &mut self.held,
                &self.block_of,
                bi,
                f,
                None,
            ));
        }
        mine
    }

    fn walk(&mut self, bi: usize, candidates: &mut Vec<Candidate>) -> (bool, Vec<usize>) {
        let block = &self.blocks[bi];
        let memory = block.memory().handle();
        let registry = self.registry;
        let mine: &[Indexed] = registry.entries(memory);
        // At most one candidate per registered allocation in the block: room was made for all
        // of them up front.
        let mut mine_in_block = Vec::with_capacity(mine.len());
        // A block draining since the last pass: from its record, if it still holds and none of
        // its allocations was pinned since. The reservations move to `held` for the plan;
        // those it does not use go back.
        if self.states[bi].draining {
            if let Some(record) = self.walks.get_mut(&memory) {
                if record.holds(block, self.states[bi].live)
                    && !record
                        .entries
                        .iter()
                        .any(|e| !e.gone && registry.is_pinned(e.found.id()))
                {
                    for (k, e) in record.entries.iter_mut().enumerate() {
                        if !e.gone {
                            let f = Found {
                                slot: k as u32,
                                ..e.found
                            };
                            let r = e.reservation.take();
                            mine_in_block.push(push(
                                candidates,
                                &mut self.found,
                                &mut self.held,
                                &self.block_of,
                                bi,
                                f,
                                r,
                            ));
                        }
                    }
                    return (true, mine_in_block);
                }
            }
            // The application freed some of it, or an allocation of it may no longer move:
            // walked afresh below, its reservations kept by allocation.
            if let Some(record) = self.walks.remove(&memory) {
                for e in record.entries {
                    if let (false, Some(r)) = (e.gone, e.reservation) {
                        self.orphans.insert(e.found.id(), r);
                    }
                }
            }
        }
        // What an earlier pass's walk found, while the block shows it still holds (a block
        // draining has its record, and its walk afresh keeps its reservations).
        if let (false, Some(known)) = (self.states[bi].draining, self.known.get(&memory)) {
            if known.holds(block, self.states[bi].live, registry) {
                for &f in &known.found {
                    mine_in_block.push(push(
                        candidates,
                        &mut self.found,
                        &mut self.held,
                        &self.block_of,
                        bi,
                        f,
                        None,
                    ));
                }
                if let (true, Some(&first)) = (known.all_movable, mine_in_block.first()) {
                    let count = block.allocation_count();
                    self.fresh.push((
                        bi,
                        self.states[bi].live,
                        count,
                        first..first + mine_in_block.len(),
                    ));
                }
                return (known.all_movable, mine_in_block);
            }
        }
        // Which registrations still hold their allocation (an allocation freed and another
        // made in its place is not the registered one): all of them, when the block has lost
        // no metadata record since they were last known live.
        let mut alive = std::mem::take(&mut self.alive);
        let removals = block.removals();
        if registry.verified(memory, removals) {
            alive.clear();
            alive.resize(mine.len(), true);
        } else {
            block.with_metas(|metas| Registry::live_in(mine, metas, &mut alive));
            self.dead.extend(
                mine.iter()
                    .zip(&alive)
                    .filter(|(_, &a)| !a)
                    .map(|(e, _)| e.id),
            );
            self.checked.push((memory, removals));
        }
        let mut all_movable = true;
        let mut live = 0;
        // Ranges come in offset order, so the registered allocations are walked alongside
        // them; a range behind the cursor searches.
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
                // Every entry of the memory's list was added for an allocation of this vector
                // (its memory's), and moves stay in their vector.
                let mut any = false;
                for k in cursor..mine.len() {
                    // Looked at in place; copied only for a candidate.
                    let indexed = &mine[k];
                    if indexed.offset >= end {
                        break;
                    }
                    if !alive[k] || indexed.pinned {
                        continue;
                    }
                    let indexed = *indexed;
                    // A range holding several allocations (a bump block's): its bytes are
                    // counted once.
                    let size = if any { 0 } else { r.size };
                    any = true;
                    let f = Found {
                        indexed,
                        memory,
                        size,
                        slot: NO_SLOT,
                    };
                    let r = if self.orphans.is_empty() {
                        None
                    } else {
                        self.orphans.remove(&indexed.id)
                    };
                    mine_in_block.push(push(
                        candidates,
                        &mut self.found,
                        &mut self.held,
                        &self.block_of,
                        bi,
                        f,
                        r,
                    ));
                }
                if !any {
                    all_movable = false;
                }
            }
        });
        self.alive = alive;
        if let Some(l) = mine_in_block.iter().map(|&c| candidates[c].need).max() {
            self.largest.insert(memory, (live, l));
        }
        // The block changed since its live bytes were read (an allocation or a free of another
        // thread): it is not emptied in this pass, and the walk is not kept.
        let same = live == self.states[bi].live;
        let all_movable = all_movable && same;
        let count = block.allocation_count();
        if let (true, Some(&first)) = (all_movable, mine_in_block.first()) {
            self.fresh
                .push((bi, live, count, first..first + mine_in_block.len()));
        }
        if same && !self.states[bi].draining {
            let first = mine_in_block.first().copied().unwrap_or(candidates.len());
            self.walked_now.push((
                bi,
                (live, count, removals),
                all_movable,
                first..first + mine_in_block.len(),
            ));
        }
        (all_movable, mine_in_block)
    }
}

impl<'a, S: Suballocator + Send + 'static> VecPicture<'a, S> {
    /// The registrations of block `bi`, when the index alone can tell which of its
    /// allocations may move: every registration of the block known live (none of their
    /// records removed since they were last checked), and the block not draining (its record
    /// and reservations are the walk's). Those not pinned may move.
    fn indexed(&self, bi: usize) -> Option<&'a [Indexed]> {
        let block = &self.blocks[bi];
        let memory = block.memory().handle();
        if self.states[bi].draining || !self.registry.verified(memory, block.removals()) {
            return None;
        }
        Some(self.registry.entries(memory))
    }
}

/// Whether a suballocator of type `S` gives a freed allocation's room back at once, as an
/// undone destination of the planner (the newest in its block) is freed: a fresh region's
/// newer of two allocations is freed, and its free bytes must rise. A bump allocator gets
/// the room back only once all of its region is freed (then the planner makes no try it may
/// have to undo beyond those of the plain search); a free list, buddy, slot or ring
/// allocator gets it back. `true` when the probe cannot tell (an allocation of it fails).
pub(super) fn undo_gives_room_back<S: Suballocator>() -> bool {
    let Ok(layout) = crate::layout::DeviceLayout::from_size_alignment(256, 1) else {
        return true;
    };
    let mut probe = S::new(64 * 1024);
    let granularity = crate::layout::DeviceAlignment::MIN;
    let linear = crate::suballocator::AllocationType::Linear;
    let (Ok(_older), Ok(newer)) = (
        probe.allocate(layout, linear, granularity),
        probe.allocate(layout, linear, granularity),
    ) else {
        return true;
    };
    let before = probe.free_size();
    // SAFETY: `newer` was made by `probe` just above, unchanged, and is freed once.
    unsafe { probe.deallocate(newer) };
    probe.free_size() > before
}

/// A destination in `block` for the allocation `indexed` stands for: allocated like a new
/// allocation, margins and all. Its name and user data come with the source when the move
/// completes ([`MemoryAlloc::carry_over`]).
fn make_destination<S: Suballocator + Send + 'static>(
    target: &DefragVec<S>,
    block: &Block<S, MemoryObject>,
    indexed: &Indexed,
) -> Option<MemoryAlloc> {
    let request = super::super::placement::Request {
        layout: indexed.layout,
        preference: super::super::MemoryAllocatePreference::Auto,
        prefers_dedicated: false,
        requires_dedicated: false,
    };
    let (request, guard) = execute::guarded(&request, target.margin)?;
    let layout = target.facts.block_layout(request.layout)?;
    let fit = super::super::block_vec::Fit {
        layout,
        allocation_type: indexed.allocation_type,
        granularity: target.granularity,
        best_fit: false,
        strategy: target.strategy,
    };
    let made = Made { meta: &None, guard };
    let wrap = |arena: &std::sync::Arc<Arena<S, MemoryObject>>, placed| {
        execute::wrap_block(arena, placed, made)
    };
    target.blocks.allocate_in(block, &fit, &wrap)
}

impl<S: Suballocator + Send + 'static> Defragmentation<S> {
    /// Plans the moves of block vector `v` within `limits` from a picture of its blocks (see
    /// [`plan_vec`](Self::plan_vec)), with its drains going on `drains` (set aside by earlier
    /// passes), counting the blocks in `received` as having received allocations already.
    /// Returns the moves, the blocks set aside (emptied or draining) and those of them
    /// draining, in the order of their passes.
    pub(super) fn plan_picture(
        &mut self,
        v: usize,
        limits: Limits,
        drains: &[Block<S, MemoryObject>],
        received: &[vk::DeviceMemory],
        moves: &mut Vec<Option<Move>>,
    ) -> (Blocks<S>, Blocks<S>) {
        // The registrations' changes since the last plan, applied before anything reads them.
        self.registry.settle();
        let target = &self.vecs[v];
        let handles = &mut self.handles[v];
        // (The handles of blocks gone from the list are let go here, out of its lock.)
        drop(target.blocks.with_blocks(|list| handles.refresh(list)));
        let facts = &handles.facts;
        let mut blocks = std::mem::take(&mut handles.blocks);
        let searched = blocks.len();
        // The blocks an earlier pass left draining come after those of the search.
        blocks.extend_from_slice(drains);
        let registry = &self.registry;
        let largest = &self.largest;
        let known = &self.known;
        let receivers = &self.receivers;
        let max_bytes = self.info.max_bytes_per_pass;
        let mut states = std::mem::take(&mut self.state_scratch);
        states.clear();
        // Room for every registered allocation of the vector's blocks, made once below (a
        // walk's pushes would grow the vectors by copies).
        let mut room = 0;
        states.extend(blocks.iter().enumerate().map(|(bi, b)| {
            let (memory, size) = match facts.get(bi) {
                Some(&f) => f,
                None => (b.memory().handle(), b.memory().size()),
            };
            let live = size.saturating_sub(b.free_size());
            let listed = registry.listed(memory);
            room += listed.map_or(0, |l| l.entries.len());
            BlockState {
                size,
                live,
                largest_free: b.largest_free_hint(),
                // What an earlier walk found, while it holds; else what the registry says each
                // allocation needs, when that is within a pass's limits (an allocation the
                // application freed, not yet found gone by a walk, would otherwise keep the
                // block out of every pass, not only of the rest of one).
                largest: largest
                    .get(&memory)
                    .filter(|l| l.0 == live)
                    .map(|l| l.1)
                    .or_else(|| listed.map(|l| l.largest_need).filter(|&l| l <= max_bytes)),
                // What an earlier walk found, while it holds; else a lower bound: the least
                // any registration in the block needs (its allocations that may move are
                // among them; none registered, none may move).
                smallest: known
                    .get(&memory)
                    .and_then(|k| k.smallest_if_holds(b, live, registry))
                    .or(Some(listed.map_or(DeviceSize::MAX, |l| l.smallest_need))),
                all_movable: false,
                candidates: Vec::new(),
                draining: bi >= searched,
                received: received.contains(&memory),
                receiver: receivers.get(&memory).is_some_and(|r| r.is(b)),
                walked: false,
                exhausted: false,
                unchanged: false,
            }
        }));
        if self.info.algorithm == plan::Algorithm::Full {
            self.settling[v].mark(&blocks, &mut states, known, registry);
        }
        let mut found = std::mem::take(&mut self.found_scratch);
        found.clear();
        found.reserve(room);
        let mut held = std::mem::take(&mut self.held_scratch);
        held.clear();
        held.reserve(room);
        let mut candidates = std::mem::take(&mut self.candidate_scratch);
        candidates.clear();
        candidates.reserve(room);
        let block_of: HandleMap<usize> = if self.walks.is_empty() {
            HandleMap::default()
        } else {
            (0..blocks.len())
                .map(|b| (blocks[b].memory().handle(), b))
                .collect()
        };
        let mut picture = VecPicture {
            target,
            blocks: &blocks,
            states: &states,
            registry,
            block_of,
            walks: &mut self.walks,
            largest: &mut self.largest,
            orphans: IdMap::default(),
            found,
            held,
            fresh: Vec::new(),
            dead: std::mem::take(&mut self.dead_scratch),
            alive: std::mem::take(&mut self.alive_scratch),
            checked: Vec::new(),
            known: &self.known,
            walked_now: std::mem::take(&mut self.walked_scratch),
            ranges: Vec::new(),
            undo_gives_room_back: self.undo_gives_room_back,
        };
        let mut scratch = std::mem::take(&mut self.plan_scratch);
        let plan = plan::plan_moves(
            &states,
            &mut candidates,
            self.info.algorithm,
            limits,
            &mut picture,
            &mut scratch,
        );
        self.plan_scratch = scratch;
        if self.info.algorithm == plan::Algorithm::Full {
            let aside = |b: usize| plan.emptied.contains(&b) || plan.draining.contains(&b);
            let found = (&plan.exhausted[..], &plan.live[..]);
            self.settling[v].keep(&blocks, found, aside, &self.registry);
        }
        let VecPicture {
            found,
            mut held,
            fresh,
            mut dead,
            alive,
            checked,
            mut walked_now,
            ranges,
            ..
        } = picture;
        for id in dead.drain(..) {
            self.registry.remove(id);
        }
        for (memory, removals) in checked {
            self.registry.verify(memory, removals);
        }
        // The walks made afresh are kept, as the registrations are now (the dead left), but
        // those of the blocks that moves empty or drain (they change).
        for (bi, (live, count, removals), all_movable, range) in walked_now.drain(..) {
            if plan.emptied.contains(&bi) || plan.draining.contains(&bi) {
                continue;
            }
            let block = &blocks[bi];
            let memory = block.memory().handle();
            let shown = (live, count, removals, self.registry.changed(memory));
            let old = self.known.remove(&memory);
            let known = KnownWalk::new(block, shown, all_movable, &found[range], old);
            self.known.insert(memory, known);
        }
        self.walked_scratch = walked_now;
        self.dead_scratch = dead;
        self.alive_scratch = alive;
        let draining: Vec<vk::DeviceMemory> = plan
            .draining
            .iter()
            .map(|&b| blocks[b].memory().handle())
            .collect();
        // The blocks receiving, now or from a later pass's reservations, are kept for the
        // rest of the defragmentation.
        for &(_, b, _) in plan.moves.iter().chain(&plan.reserved) {
            let block = &blocks[b];
            let memory = block.memory().handle();
            if !self.receivers.get(&memory).is_some_and(|r| r.is(block)) {
                self.receivers.insert(memory, block.downgrade());
            }
        }
        let from = moves.len();
        moves.extend(plan.moves.iter().filter_map(|&(c, _, _)| {
            let range = ranges.get(c).copied().unwrap_or(0);
            Some(Some(found[c].to(held[c].take()?.1, range)))
        }));
        debug_assert_eq!(
            moves.len() - from,
            plan.moves.len(),
            "a move without a destination"
        );
        // Records (and the reservations they hold) are kept for the blocks left draining only
        // (and those of other vectors); a block walked afresh and left draining gets a new
        // one, with the reservations it holds now.
        self.walks.retain(|m, _| {
            draining.contains(m) || !blocks.iter().any(|b| b.memory().handle() == *m)
        });
        // The reservations a record lent to this plan and that no move used go back to it.
        for (c, f) in found.iter().enumerate() {
            if f.slot != NO_SLOT && held[c].is_some() {
                if let Some(record) = self.walks.get_mut(&f.memory) {
                    record.entries[f.slot as usize].reservation = held[c].take();
                }
            }
        }
        // Each block's reservations: a run of the plan's, in the order it placed them.
        let mut reserved_of = vec![0..0; if fresh.is_empty() { 0 } else { blocks.len() }];
        let mut i = 0;
        while i < plan.reserved.len() && !reserved_of.is_empty() {
            let b = candidates[plan.reserved[i].0].block;
            let start = i;
            while i < plan.reserved.len() && candidates[plan.reserved[i].0].block == b {
                i += 1;
            }
            reserved_of[b] = start..i;
        }
        for (bi, live, count, range) in fresh {
            if !plan.draining.contains(&bi) {
                continue;
            }
            let block = &blocks[bi];
            let reserved = &plan.reserved[reserved_of[bi].clone()];
            let shown = (live, count, block.removals());
            let record = new_record(&found, &mut held, reserved, shown, range);
            self.walks.insert(block.memory().handle(), record);
        }
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
        // The handles of the search's blocks serve the next plan.
        blocks.truncate(searched);
        self.handles[v].blocks = blocks;
        (aside, draining)
    }
}

/// The record of a block walked afresh and left draining: the reservations the plan made
/// first, in the order it placed them (largest first, as the planner sorts a block's
/// candidates: the next pass finds them sorted), then the rest, as the walk found them.
fn new_record(
    found: &[Found],
    held: &mut [Option<Reservation>],
    reserved: &[(usize, usize, usize)],
    (live, count, removals): (DeviceSize, usize, u64),
    range: Range<usize>,
) -> WalkRecord {
    let (start, len) = (range.start, range.len());
    let mut entries: Vec<Entry> = Vec::with_capacity(len);
    let mut taken = vec![false; len];
    let entry = |c: usize, held: &mut [Option<Reservation>]| Entry {
        found: found[c],
        gone: false,
        reservation: held[c].take(),
    };
    for &(c, _, _) in reserved.iter().filter(|m| range.contains(&m.0)) {
        taken[c - start] = true;
        entries.push(entry(c, held));
    }
    for c in range.filter(|&c| !taken[c - start]) {
        entries.push(entry(c, held));
    }
    WalkRecord {
        live,
        count,
        entries,
        slots: None,
        gone_bytes: 0,
        gone: 0,
        removals,
    }
}

#[cfg(test)]
mod tests {
    use super::undo_gives_room_back;
    use crate::suballocator::{
        BuddyAllocator, BumpAllocator, FreeListAllocator, RingAllocator, SlotAllocator,
    };

    #[test]
    fn only_a_bump_allocator_keeps_the_room_of_an_undone_destination() {
        assert!(undo_gives_room_back::<FreeListAllocator>());
        assert!(undo_gives_room_back::<BuddyAllocator>());
        assert!(undo_gives_room_back::<RingAllocator>());
        assert!(undo_gives_room_back::<SlotAllocator<256>>());
        assert!(!undo_gives_room_back::<BumpAllocator>());
    }

    /// A record learns each completed move by the allocation's id, whatever its place in the
    /// record (reserved ones first, then the rest): that entry and no other is gone, once.
    /// Short records are scanned, long ones looked up by id.
    #[test]
    fn a_record_learns_each_completed_move_of_its_block() {
        use super::super::drain::{Found, NO_SLOT};
        use super::super::registry::Indexed;
        use super::new_record;
        use crate::allocation::Identity;
        use crate::layout::{DeviceAlignment, DeviceLayout};
        use crate::suballocator::AllocationType;
        use ash::vk::{self, Handle};
        for n in [6u64, 200] {
            let found: Vec<Found> = (0..n)
                .map(|i| Found {
                    indexed: Indexed {
                        offset: i * 1024,
                        id: 100 + i as usize * 3,
                        layout: DeviceLayout::new(256 + i * 16, DeviceAlignment::MIN).unwrap(),
                        allocation_type: AllocationType::Linear,
                        identity: Identity::new(),
                        pinned: false,
                    },
                    memory: vk::DeviceMemory::from_raw(7),
                    size: 512 + i,
                    slot: NO_SLOT,
                })
                .collect();
            let mut held: Vec<_> = found.iter().map(|_| None).collect();
            // Candidates 4 and 1 hold reservations: they come first in the record.
            let reserved = [(4, 0, 0), (1, 0, 0)];
            let shown = (9_000, n as usize, 0);
            let mut record = new_record(&found, &mut held, &reserved, shown, 0..n as usize);
            let order: Vec<_> = record
                .entries
                .iter()
                .take(6)
                .map(|e| e.found.id())
                .collect();
            assert_eq!(order, [112, 103, 100, 106, 109, 115]);
            for (step, id) in [115, 100, 112].into_iter().enumerate() {
                record.left(id);
                record.left(id); // A second notice of the same move changes nothing.
                let gone = record.entries.iter().filter(|e| e.gone);
                let gone: Vec<_> = gone.map(|e| e.found.id()).collect();
                assert_eq!((gone.len(), record.gone), (step + 1, step + 1), "{gone:?}");
                assert!(gone.contains(&id));
            }
            let bytes = found[5].size + found[0].size + found[4].size;
            assert_eq!(record.gone_bytes, bytes);
            record.left(99_999); // Not in the block: nothing.
            assert_eq!(record.gone, 3);
        }
    }
}
