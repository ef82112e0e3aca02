//! The passes end whatever the caller does between them, on the model: the registry's rule
//! ([termination](crate::allocator::defrag#termination): a skipped or abandoned
//! move pins its allocation, and an allocation moves at most
//! [`MAX_MOVES_PER_ALLOCATION`] times) applied to the model's allocations, with random
//! completes, skips, frees and new allocations between passes. The driver test of the same
//! name runs the allocator's own registry.

use super::*;
use crate::allocator::defrag::MAX_MOVES_PER_ALLOCATION;

/// The caller's choices, drawn from a seed.
pub(super) struct Caller(pub u64);

impl Caller {
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// Settles a plan's moves as the caller chooses: a completed move moves its allocation (which
/// stays movable until it has moved `MAX_MOVES_PER_ALLOCATION` times), a skipped one pins
/// its source. `moved` counts the moves of each allocation, by block and offset.
pub(super) fn settle(
    model: &mut Model,
    plan: MovePlan<Suballocation>,
    caller: &mut Caller,
    moved: &mut HashMap<(usize, DeviceSize), usize>,
) {
    let mut numbered = Vec::new();
    for (b, block) in model.blocks.iter().enumerate() {
        for (i, l) in block.live.iter().enumerate() {
            if l.2 {
                numbered.push((b, i));
            }
        }
    }
    let mut leaving = Vec::new();
    for &(c, b, s) in &plan.moves {
        let (from, i) = numbered[c];
        let (s, _) = untagged(s);
        if caller.below(3) == 0 {
            // Skipped (or left open): the destination goes, the source may move no more.
            model.blocks[from].live[i].2 = false;
            // SAFETY: a destination made by this block's model allocator, freed once.
            #[allow(unsafe_code)]
            unsafe {
                model.blocks[b].sub.deallocate(s)
            };
            continue;
        }
        let (source, alignment, _) = model.blocks[from].live[i];
        let count = moved.remove(&(from, source.offset)).unwrap_or(0) + 1;
        moved.insert((b, s.offset), count);
        model.blocks[b]
            .live
            .push((s, alignment, count < MAX_MOVES_PER_ALLOCATION));
        leaving.push((from, i));
    }
    leaving.sort_unstable_by(|a, b| b.cmp(a));
    for (from, i) in leaving {
        let (s, _, _) = model.blocks[from].live.remove(i);
        // SAFETY: a live allocation of this block's model allocator, freed once.
        #[allow(unsafe_code)]
        unsafe {
            model.blocks[from].sub.deallocate(s)
        };
    }
    model.draining = (0..model.blocks.len())
        .map(|b| plan.draining.contains(&b))
        .collect();
}

/// Between passes: frees some allocations, and makes some new ones (movable ones count as
/// new registrations) in blocks not set aside. Returns how many movable ones it made.
pub(super) fn churn(
    model: &mut Model,
    caller: &mut Caller,
    moved: &mut HashMap<(usize, DeviceSize), usize>,
) -> usize {
    for b in 0..model.blocks.len() {
        let mut i = 0;
        while i < model.blocks[b].live.len() {
            let at = model.blocks[b].live[i].0;
            if caller.below(10) == 0 && !model.reserved.contains_key(&(b, at.offset)) {
                let (s, _, _) = model.blocks[b].live.remove(i);
                moved.remove(&(b, s.offset));
                // SAFETY: a live allocation of this block's model allocator, freed once.
                #[allow(unsafe_code)]
                unsafe {
                    model.blocks[b].sub.deallocate(s)
                };
            } else {
                i += 1;
            }
        }
    }
    let mut registered = 0;
    for _ in 0..caller.below(6) {
        let b = caller.below(model.blocks.len() as u64) as usize;
        if model.draining[b] {
            continue;
        }
        let alignment = DeviceAlignment::from_log2(caller.below(8) as u32).unwrap();
        let layout = DeviceLayout::new(1 + caller.below(16 * KIB), alignment).unwrap();
        let granularity = model.granularity;
        if let Ok(s) = model.blocks[b]
            .sub
            .allocate(layout, AllocationType::Linear, granularity)
        {
            let movable = caller.below(2) == 0;
            registered += usize::from(movable);
            model.blocks[b].live.push((s, alignment, movable));
        }
    }
    registered
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::suballocator::testing::cases(200)))]

    #[test]
    fn passes_end_within_the_bound_whatever_the_caller_does(
        setup in setups(granularities(), pass_moves(), pass_bytes()),
        seed in any::<u64>(),
    ) {
        let Setup { algorithm, limits, .. } = setup;
        let mut model = setup.model();
        let mut caller = Caller(seed);
        let mut moved = HashMap::new();
        let mut registered: usize = model
            .blocks
            .iter()
            .map(|b| b.live.iter().filter(|l| l.2).count())
            .sum();
        let mut passes = 0;
        loop {
            let (plan, blocks, candidates) = run(&mut model, algorithm, limits);
            check(&model, &plan, &blocks, &candidates, algorithm, limits);
            if plan.moves.is_empty() {
                break;
            }
            passes += 1;
            let bound = (MAX_MOVES_PER_ALLOCATION + 1) * registered;
            prop_assert!(passes <= bound, "{passes} passes, bound {bound}");
            settle(&mut model, plan, &mut caller, &mut moved);
            registered += churn(&mut model, &mut caller, &mut moved);
        }
    }
}
