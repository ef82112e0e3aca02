//! What the block vector's searches hand a suballocation to: the caller's [`Wrap`], which
//! turns the arena and the suballocation made in it into what the caller keeps (an allocation,
//! a test's record).
//!
//! Any closure of the right shape is a `Wrap`. The hot path passes a type of its own instead,
//! whose method is inlined always: a function or closure is called through a call shim that
//! the compiler may leave out of line where it is called from a large caller, and the result
//! then comes back through memory, to be copied once more (see
//! [`PlainWrap`](crate::allocator::execute::PlainWrap)).

use super::{Arena, BlockMemory, Placed};
use std::sync::Arc;

/// Turns a suballocation made in `arena` into what the caller keeps.
pub(crate) trait Wrap<S, M: BlockMemory> {
    /// What the caller keeps.
    type Out;
    /// Wraps `placed`, made in `arena`.
    fn wrap(&self, arena: &Arc<Arena<S, M>>, placed: Placed) -> Self::Out;
}

impl<S, M: BlockMemory, T, F: Fn(&Arc<Arena<S, M>>, Placed) -> T> Wrap<S, M> for F {
    type Out = T;
    #[inline(always)]
    fn wrap(&self, arena: &Arc<Arena<S, M>>, placed: Placed) -> T {
        self(arena, placed)
    }
}
