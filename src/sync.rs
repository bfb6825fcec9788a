//! The synchronization primitives the future state machine is built on.
//!
//! Everything the model-checked tests exercise goes through this module, so
//! that `RUSTFLAGS="--cfg concurrent_futures_loom"` swaps the real
//! primitives for loom's and explores every interleaving of the same code.

#[cfg(not(concurrent_futures_loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
    pub(crate) use std::thread::{Thread, current};

    pub(crate) use parking_lot::Mutex;
    pub(crate) use std::thread::yield_now;

    /// A one-byte lock with no data of its own, so the future can keep it
    /// beside its state byte instead of in a `Mutex`'s padded word.
    pub(crate) struct RawLock(parking_lot::RawMutex);

    impl RawLock {
        pub(crate) const fn new() -> Self {
            RawLock(<parking_lot::RawMutex as parking_lot::lock_api::RawMutex>::INIT)
        }

        pub(crate) fn lock(&self) {
            parking_lot::lock_api::RawMutex::lock(&self.0);
        }

        /// # Safety
        ///
        /// The calling thread holds the lock.
        pub(crate) unsafe fn unlock(&self) {
            // SAFETY: forwarded to the caller.
            unsafe { parking_lot::lock_api::RawMutex::unlock(&self.0) };
        }
    }

    /// Parks the current thread until unparked or until `deadline`.
    pub(crate) fn park_until(deadline: Option<std::time::Instant>) {
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = std::time::Instant::now();
                if d > now {
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }

    /// A cell whose accesses are checked under loom and free otherwise.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(concurrent_futures_loom)]
mod imp {
    pub(crate) use loom::cell::UnsafeCell;
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64};
    pub(crate) use loom::thread::{Thread, current, yield_now};

    /// The raw lock as a loom-visible spin lock (loom explores its spins
    /// as yields).
    pub(crate) struct RawLock(loom::sync::atomic::AtomicBool);

    impl RawLock {
        pub(crate) fn new() -> Self {
            RawLock(loom::sync::atomic::AtomicBool::new(false))
        }

        pub(crate) fn lock(&self) {
            use std::sync::atomic::Ordering::{Acquire, Relaxed};
            while self
                .0
                .compare_exchange(false, true, Acquire, Relaxed)
                .is_err()
            {
                loom::thread::yield_now();
            }
        }

        /// # Safety
        ///
        /// The calling thread holds the lock.
        pub(crate) unsafe fn unlock(&self) {
            self.0.store(false, std::sync::atomic::Ordering::Release);
        }
    }

    /// loom's mutex with parking_lot's signature (no poisoning).
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// loom has no timed park; the models never use deadlines.
    pub(crate) fn park_until(_deadline: Option<std::time::Instant>) {
        loom::thread::park();
    }
}

pub(crate) use imp::*;
