//! A custom pool's name, shared by the pool and what reports on it (statistics snapshots, the
//! JSON dumps, the leak report), and changeable after the pool is made (VMA's
//! `vmaSetPoolName`).

use parking_lot::RwLock;
use std::sync::Arc;

/// A custom pool's name (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct PoolName(RwLock<Arc<str>>);

impl PoolName {
    pub(crate) fn new(name: Arc<str>) -> Arc<Self> {
        Arc::new(Self(RwLock::new(name)))
    }

    /// The name now.
    pub(crate) fn get(&self) -> Arc<str> {
        self.0.read().clone()
    }

    /// Renames the pool: what reports on it from now on shows `name`.
    pub(crate) fn set(&self, name: Arc<str>) {
        *self.0.write() = name;
    }
}
