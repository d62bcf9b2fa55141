//! The one way the broker takes its mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering from poisoning: a panic while holding one of the broker's
/// locks would be a bug in bookkeeping that leaves the state structurally valid, so later
/// sessions keep working rather than all panicking in turn.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
