//! How an allocation's [`AllocationStrategy`] reaches the block search.
//!
//! A custom pool's strategy ([`PoolCreateInfo::strategy`](super::PoolCreateInfo::strategy))
//! is its block vector's own. An allocation's
//! ([`AllocationCreateInfo::strategy`](super::AllocationCreateInfo::strategy)) is set for the
//! duration of the allocating call on the calling thread, and the block vector reads it there
//! (it wins over the pool's): the search runs on the same thread, inside the call, so no
//! other request sees it. A scope restores the previous value when it ends, so nested calls
//! (a callback that allocates elsewhere is not allowed, but a fallback is) stay right.

use crate::suballocator::AllocationStrategy;
use std::cell::Cell;

thread_local! {
    static CURRENT: Cell<AllocationStrategy> = const { Cell::new(AllocationStrategy::Default) };
}

/// The strategy of the allocating call running on this thread, `Default` when none is set.
#[inline]
pub(crate) fn current() -> AllocationStrategy {
    CURRENT.with(Cell::get)
}

/// Sets the calling thread's strategy until the returned scope is dropped; `None` (nothing
/// set, nothing to restore) for `Default`.
#[inline]
pub(crate) fn enter(strategy: AllocationStrategy) -> Option<Scope> {
    (strategy != AllocationStrategy::Default).then(|| Scope(CURRENT.with(|c| c.replace(strategy))))
}

/// Restores the previous strategy when dropped.
pub(crate) struct Scope(AllocationStrategy);

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// A strategy as a byte, for a block vector's atomic.
pub(crate) fn to_u8(s: AllocationStrategy) -> u8 {
    match s {
        AllocationStrategy::Default => 0,
        AllocationStrategy::MinMemory => 1,
        AllocationStrategy::MinTime => 2,
        AllocationStrategy::MinOffset => 3,
    }
}

/// The strategy of a byte of [`to_u8`].
pub(crate) fn from_u8(b: u8) -> AllocationStrategy {
    match b {
        1 => AllocationStrategy::MinMemory,
        2 => AllocationStrategy::MinTime,
        3 => AllocationStrategy::MinOffset,
        _ => AllocationStrategy::Default,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        assert_eq!(current(), AllocationStrategy::Default);
        assert!(enter(AllocationStrategy::Default).is_none());
        {
            let _a = enter(AllocationStrategy::MinOffset);
            assert_eq!(current(), AllocationStrategy::MinOffset);
            {
                let _b = enter(AllocationStrategy::MinMemory);
                assert_eq!(current(), AllocationStrategy::MinMemory);
            }
            assert_eq!(current(), AllocationStrategy::MinOffset);
            // Another thread sees none.
            std::thread::spawn(|| assert_eq!(current(), AllocationStrategy::Default))
                .join()
                .unwrap();
        }
        assert_eq!(current(), AllocationStrategy::Default);
        for s in [
            AllocationStrategy::Default,
            AllocationStrategy::MinMemory,
            AllocationStrategy::MinTime,
            AllocationStrategy::MinOffset,
        ] {
            assert_eq!(from_u8(to_u8(s)), s);
        }
    }
}
