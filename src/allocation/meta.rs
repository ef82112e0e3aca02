//! What an allocation carries besides its range (name, user data, backtrace, debug aids, its
//! identity), shared by the allocation and its block.

use crate::corruption::Guard;
use crate::layout::DeviceSize;
use std::any::Any;
use std::backtrace::Backtrace;
use std::fmt::Debug;
use std::sync::Arc;

/// Data of the user's choosing attached to an allocation (see [`MemoryAlloc::set_user_data`](super::MemoryAlloc::set_user_data)).
/// Implemented for every `Debug + Send + Sync + 'static` type; its `Debug` text is what
/// snapshots, the JSON dump, the SVG memory map and the leak report show.
pub trait UserData: Any + Debug + Send + Sync {
    /// The value as [`Any`], to downcast it (see [`MemoryAlloc::user_data_as`](super::MemoryAlloc::user_data_as)).
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Debug + Send + Sync> UserData for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What an allocation carries besides its range: name, user data, backtrace, and the debug
/// aids it was made with. Shared by the allocation and its block (or dedicated-allocation
/// register), for statistics, leak reports and corruption checks. Only allocations with at
/// least one of them have one.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllocationMeta {
    pub(crate) name: Option<Arc<str>>,
    pub(crate) user_data: Option<Arc<dyn UserData>>,
    pub(crate) backtrace: Option<Arc<Backtrace>>,
    /// The margins around the allocation (see [`crate::corruption`]).
    pub(crate) guard: Option<Guard>,
    /// Fill the allocation with patterns when it is made and freed.
    pub(crate) fill: bool,
    /// Log the allocation and its free.
    pub(crate) log: bool,
    /// Who the allocation is, for whoever refers to it later (a defragmentation's
    /// registration): set once, kept when the name or user data change and when a
    /// defragmentation moves the allocation, gone with the allocation.
    pub(crate) identity: Option<Identity>,
}

/// An allocation's identity (see [`AllocationMeta::identity`]): unique in the process, never
/// reused. A place (memory and offset) is not an identity: once an allocation is freed,
/// another can be made there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Identity(std::num::NonZeroU64);

impl Identity {
    /// A new identity.
    pub(crate) fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // 2^64 identities are never handed out: the counter starts at 1 and never wraps.
        Self(std::num::NonZeroU64::new(n).unwrap_or(std::num::NonZeroU64::MIN))
    }
}

impl AllocationMeta {
    /// The shared record for these parts, or `None` when there is nothing to keep.
    pub(crate) fn of(
        name: Option<Arc<str>>,
        user_data: Option<Arc<dyn UserData>>,
        backtrace: Option<Arc<Backtrace>>,
    ) -> Option<Arc<Self>> {
        Self {
            name,
            user_data,
            backtrace,
            ..Self::default()
        }
        .shared()
    }

    /// This record shared, or `None` when it holds nothing.
    pub(crate) fn shared(self) -> Option<Arc<Self>> {
        let empty = self.name.is_none()
            && self.user_data.is_none()
            && self.backtrace.is_none()
            && self.guard.is_none()
            && !self.fill
            && !self.log
            && self.identity.is_none();
        (!empty).then(|| Arc::new(self))
    }

    /// The user data's `Debug` text.
    pub(crate) fn user_data_text(&self) -> Option<Arc<str>> {
        self.user_data.as_ref().map(|d| format!("{d:?}").into())
    }

    /// The backtrace's text.
    pub(crate) fn backtrace_text(&self) -> Option<Arc<str>> {
        self.backtrace.as_ref().map(|b| b.to_string().into())
    }
}

/// `", name \"..\""` for a named allocation's log lines.
pub(super) fn name_suffix(meta: &AllocationMeta) -> String {
    meta.name
        .as_deref()
        .map(|n| format!(", name {n:?}"))
        .unwrap_or_default()
}

/// The metadata records of a block's allocations, by offset in the block.
pub(crate) type MetaMap = std::collections::BTreeMap<DeviceSize, Arc<AllocationMeta>>;
