//! Small identities for the live thread pools, so that a future can say in
//! 16 bits which pool may run its task inline (SPEC B7).
//!
//! A pool's future carries its pool's id beside its state byte: a wider
//! id (the pool's address, before) made every future 8 bytes larger, and
//! so one allocator size class larger (issue 10, row 6b). An id is taken
//! when a pool is built and given back when its last reference is gone,
//! by which time its workers have exited and none of its tasks is left
//! to run inline.

use parking_lot::Mutex;

/// A thread pool's identity among the pools alive now.
#[derive(Debug)]
pub(crate) struct PoolId(u16);

/// No pool: a thread that is not a pool's worker, a future no pool runs.
pub(crate) const NO_POOL: u16 = 0;

/// Shared by every pool built while all others are taken (65,534 pools
/// alive at once): their threads are workers, but their tasks never run
/// inline, since the id does not say which of them a task belongs to.
pub(crate) const MANY_POOLS: u16 = u16::MAX;

struct Ids {
    /// The lowest id never handed out.
    next: u16,
    /// Ids given back, reused first.
    free: Vec<u16>,
}

static IDS: Mutex<Ids> = Mutex::new(Ids {
    next: 1,
    free: Vec::new(),
});

impl Ids {
    fn take(&mut self) -> u16 {
        if let Some(id) = self.free.pop() {
            return id;
        }
        if self.next == MANY_POOLS {
            return MANY_POOLS;
        }
        self.next += 1;
        self.next - 1
    }

    fn give_back(&mut self, id: u16) {
        if id != MANY_POOLS {
            self.free.push(id);
        }
    }
}

impl PoolId {
    pub(crate) fn new() -> PoolId {
        PoolId(IDS.lock().take())
    }

    pub(crate) fn get(&self) -> u16 {
        self.0
    }

    /// Whether a worker of pool `worker` may run a task of pool `origin`.
    pub(crate) fn runs_inline(worker: u16, origin: u16) -> bool {
        origin != NO_POOL && origin != MANY_POOLS && origin == worker
    }
}

impl Drop for PoolId {
    fn drop(&mut self) {
        IDS.lock().give_back(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b7_live_pools_have_distinct_ids_and_a_dropped_pools_id_is_reused() {
        let mut ids = Ids {
            next: 1,
            free: Vec::new(),
        };
        let (a, b) = (ids.take(), ids.take());
        assert_eq!((a, b), (1, 2));
        ids.give_back(a);
        assert_eq!(ids.take(), a);
        assert_eq!(ids.take(), 3);
    }

    #[test]
    fn b7_pools_beyond_the_ids_share_one_that_never_runs_inline() {
        let mut ids = Ids {
            next: MANY_POOLS - 1,
            free: Vec::new(),
        };
        assert_eq!(ids.take(), MANY_POOLS - 1);
        assert_eq!(ids.take(), MANY_POOLS);
        assert_eq!(ids.take(), MANY_POOLS);
        ids.give_back(MANY_POOLS);
        assert!(ids.free.is_empty());
        ids.give_back(MANY_POOLS - 1);
        assert_eq!(ids.take(), MANY_POOLS - 1);
    }

    #[test]
    fn b7_tasks_run_inline_only_on_their_own_pools_workers() {
        assert!(PoolId::runs_inline(3, 3));
        assert!(!PoolId::runs_inline(3, 4));
        assert!(!PoolId::runs_inline(NO_POOL, NO_POOL));
        assert!(!PoolId::runs_inline(MANY_POOLS, MANY_POOLS));
    }
}
