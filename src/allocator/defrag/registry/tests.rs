//! The registry against a model: whatever order registrations join, move, are pinned and
//! leave in, and whether a memory's list takes each change at once (short lists) or notes it
//! for the next settle (long ones), the lists a plan reads after a settle are exactly the live
//! registrations of each memory, by offset, with exact bounds; and the verified marks follow
//! the rule they had when every change was made at once.

use super::{Registry, SHORT_LIST};
use crate::allocation::Identity;
use crate::layout::{DeviceAlignment, DeviceLayout, DeviceSize};
use crate::suballocator::testing::cases;
use crate::suballocator::AllocationType;
use ash::vk::{self, Handle};
use proptest::prelude::*;
use std::collections::HashMap;

const MEMORIES: u64 = 2;

fn memory(m: u64) -> vk::DeviceMemory {
    vk::DeviceMemory::from_raw(m + 1)
}

#[derive(Clone, Debug)]
enum Op {
    /// A new allocation joins memory `memory` at `offset`, needing `size`.
    Add { memory: u64, offset: u64, size: u64 },
    /// The `pick`th live registration is added again, where it is (keeps its id).
    AddAgain { pick: usize },
    /// The `pick`th live registration moves to `offset` of `memory`.
    Move {
        pick: usize,
        memory: u64,
        offset: u64,
    },
    /// The `pick`th live registration is pinned.
    Pin { pick: usize },
    /// The `pick`th live registration leaves.
    Remove { pick: usize },
    /// A plan reads: everything is checked.
    Settle,
    /// A memory's count of removed records goes up (an allocation there was freed).
    Removal { memory: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Many adds to one memory, in any order, so that lists grow past `SHORT_LIST`.
        16 => (0..MEMORIES, 0..4_000u64, 1..64u64)
            .prop_map(|(memory, offset, size)| Op::Add { memory, offset: offset * 16, size: size * 16 }),
        1 => any::<usize>().prop_map(|pick| Op::AddAgain { pick }),
        4 => (any::<usize>(), 0..MEMORIES, 0..4_000u64)
            .prop_map(|(pick, memory, offset)| Op::Move { pick, memory, offset: offset * 16 }),
        2 => any::<usize>().prop_map(|pick| Op::Pin { pick }),
        3 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
        1 => Just(Op::Settle),
        1 => (0..MEMORIES).prop_map(|memory| Op::Removal { memory }),
    ]
}

/// One live registration, as the model keeps it.
#[derive(Clone, Copy, Debug)]
struct Live {
    memory: u64,
    offset: DeviceSize,
    size: DeviceSize,
    identity: Identity,
    pinned: bool,
    moves: usize,
}

#[derive(Default)]
struct Model {
    live: HashMap<usize, Live>,
    /// Each memory's count of removed records.
    removals: [u64; MEMORIES as usize],
    /// The verified marks, by the rule: a joiner keeps a memory verified if it was, or if the
    /// memory had no registration.
    verified: HashMap<u64, u64>,
}

impl Model {
    fn count(&self, memory: u64) -> usize {
        self.live.values().filter(|l| l.memory == memory).count()
    }

    fn joined(&mut self, memory: u64) {
        let removals = self.removals[memory as usize];
        if self.count(memory) == 0 || self.verified.get(&memory) == Some(&removals) {
            self.verified.insert(memory, removals);
        }
    }

    /// The `pick`th live id, in id order.
    fn pick(&self, pick: usize) -> Option<usize> {
        let mut ids: Vec<usize> = self.live.keys().copied().collect();
        ids.sort_unstable();
        (!ids.is_empty()).then(|| ids[pick % ids.len()])
    }
}

fn layout(size: DeviceSize) -> DeviceLayout {
    DeviceLayout::new(size, DeviceAlignment::MIN).unwrap()
}

fn check(registry: &Registry, model: &Model) {
    for m in 0..MEMORIES {
        let mut expected: Vec<(DeviceSize, usize, DeviceSize, bool)> = model
            .live
            .iter()
            .filter(|(_, l)| l.memory == m)
            .map(|(&id, l)| (l.offset, id, l.size, l.pinned))
            .collect();
        expected.sort_unstable();
        let got: Vec<_> = registry
            .entries(memory(m))
            .iter()
            .map(|e| (e.offset, e.id, e.layout.size(), e.pinned))
            .collect();
        assert_eq!(got, expected, "memory {m}'s list");
        match registry.listed(memory(m)) {
            None => assert!(expected.is_empty(), "memory {m} listed"),
            Some(listed) => {
                let sizes = expected.iter().map(|e| e.2);
                assert_eq!(listed.largest_need, sizes.clone().max().unwrap(), "largest");
                assert_eq!(listed.smallest_need, sizes.min().unwrap(), "smallest");
            }
        }
    }
}

fn run(ops: &[Op]) -> usize {
    let mut registry = Registry::default();
    let mut model = Model::default();
    let mut longest = 0;
    for op in ops {
        match *op {
            Op::Add {
                memory: m,
                offset,
                size,
            } => {
                let identity = Identity::new();
                let removals = model.removals[m as usize];
                let id = registry.add(
                    memory(m),
                    offset,
                    layout(size),
                    AllocationType::Linear,
                    identity,
                    removals,
                );
                assert!(
                    !model.live.contains_key(&id),
                    "a new registration has a new id"
                );
                model.joined(m);
                let live = Live {
                    memory: m,
                    offset,
                    size,
                    identity,
                    pinned: false,
                    moves: 0,
                };
                model.live.insert(id, live);
            }
            Op::AddAgain { pick } => {
                let Some(id) = model.pick(pick) else { continue };
                let l = model.live[&id];
                let again = registry.add(
                    memory(l.memory),
                    l.offset,
                    layout(l.size),
                    AllocationType::Linear,
                    l.identity,
                    model.removals[l.memory as usize],
                );
                assert_eq!(again, id, "an allocation added again keeps its id");
            }
            Op::Move {
                pick,
                memory: m,
                offset,
            } => {
                let Some(id) = model.pick(pick) else { continue };
                registry.moved(id, memory(m), offset, model.removals[m as usize]);
                let mut l = model.live.remove(&id).unwrap();
                model.joined(m);
                l.memory = m;
                l.offset = offset;
                l.moves += 1;
                l.pinned |= l.moves >= super::MAX_MOVES_PER_ALLOCATION;
                model.live.insert(id, l);
            }
            Op::Pin { pick } => {
                let Some(id) = model.pick(pick) else { continue };
                registry.pin(id);
                model.live.get_mut(&id).unwrap().pinned = true;
            }
            Op::Remove { pick } => {
                let Some(id) = model.pick(pick) else { continue };
                registry.remove(id);
                model.live.remove(&id);
                assert!(registry.get(id).is_none(), "a removed registration is gone");
            }
            Op::Settle => {
                registry.settle();
                check(&registry, &model);
            }
            Op::Removal { memory: m } => model.removals[m as usize] += 1,
        }
        // What does not read the lists is right at every step.
        for (&id, l) in &model.live {
            let (m, e) = registry.get(id).expect("a live registration");
            assert_eq!(
                (m, e.offset, e.pinned),
                (memory(l.memory), l.offset, l.pinned)
            );
            assert_eq!(registry.is_pinned(id), l.pinned);
        }
        for m in 0..MEMORIES {
            let removals = model.removals[m as usize];
            let expected = model.verified.get(&m) == Some(&removals);
            assert_eq!(
                registry.verified(memory(m), removals),
                expected,
                "memory {m} verified"
            );
            longest = longest.max(model.count(m));
        }
    }
    registry.settle();
    check(&registry, &model);
    longest
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(48)))]

    /// Lists stay short or grow long (past `SHORT_LIST`), so both ways of making a change are
    /// taken, and a memory goes from one to the other and back.
    #[test]
    fn settled_lists_are_the_live_registrations_by_offset(ops in prop::collection::vec(op(), 1..3_000)) {
        run(&ops);
    }
}

/// The random sequences above reach lists longer than `SHORT_LIST` (the changes noted, not
/// made at once), not only short ones.
#[test]
fn random_sequences_reach_long_lists() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec(op(), 3_000);
    let longest = (0..4)
        .map(|_| run(&strategy.new_tree(&mut runner).unwrap().current()))
        .max();
    assert!(longest > Some(SHORT_LIST), "longest list: {longest:?}");
}

/// A list that grows past `SHORT_LIST` by registrations in descending order (each one goes
/// before all the others), then loses every other entry and has the rest moved within it:
/// the settled list is the model's, and every change before it was noted, not made.
#[test]
fn a_long_list_registered_backwards_settles_in_order() {
    let n = SHORT_LIST as u64 * 3;
    let mut ops: Vec<Op> = (0..n)
        .rev()
        .map(|i| Op::Add {
            memory: 0,
            offset: i * 256,
            size: 16 + (i % 7) * 16,
        })
        .collect();
    ops.push(Op::Settle);
    ops.extend((0..n as usize / 2).map(|k| Op::Remove { pick: k }));
    ops.push(Op::Settle);
    ops.extend((0..n as usize / 4).map(|k| Op::Move {
        pick: k * 2,
        memory: 0,
        offset: k as u64 * 256 + 128,
    }));
    ops.extend((0..50).map(|k| Op::Pin { pick: k * 3 }));
    ops.push(Op::Settle);
    assert_eq!(run(&ops), n as usize);
}

/// The bounds of a long list shrink when the entries that held them leave (noted, then
/// settled): every entry needs a different size, so no other entry holds the same bound.
#[test]
fn a_long_list_counts_its_bounds_again_when_their_entries_leave() {
    let n = SHORT_LIST as u64 + 40;
    let mut ops: Vec<Op> = (0..n)
        .map(|i| Op::Add {
            memory: 0,
            offset: (n - i) * 64,
            size: (i + 1) * 16,
        })
        .collect();
    ops.push(Op::Settle);
    // The smallest (the first id), then the largest (the last id of those left).
    ops.push(Op::Remove { pick: 0 });
    ops.push(Op::Remove {
        pick: n as usize - 2,
    });
    ops.push(Op::Settle);
    // A joiner widens the bounds again, with no entry leaving.
    ops.push(Op::Add {
        memory: 0,
        offset: 8,
        size: 8,
    });
    ops.push(Op::Settle);
    run(&ops);
}
