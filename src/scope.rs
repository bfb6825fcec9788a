//! Scoped submission that may borrow local data (SPEC B5), the pool-level
//! twin of [`std::thread::scope`].
//!
//! A scoped task's closure may borrow anything that outlives the scope.
//! That is sound because [`ThreadPoolExecutor::scope`] does not return
//! (not even by unwinding) until every task submitted through the scope
//! has been run or dropped unrun (cancelled, or failed by a broken pool).
//! Each task carries a guard that counts it down when the closure is
//! consumed or dropped, whichever comes first.

use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, SubmitError};
use crate::future::{Future, Job};
use crate::task_context;
use crate::thread_pool::ThreadPoolExecutor;

/// Submits tasks that may borrow from the enclosing stack frame; see
/// [`ThreadPoolExecutor::scope`].
pub struct Scope<'scope, 'env: 'scope> {
    pool: &'env ThreadPoolExecutor,
    outstanding: Arc<Outstanding>,
    /// Kept so that a scope ending on a worker of its own pool can run its
    /// unstarted tasks inline instead of waiting for itself (SPEC B7).
    jobs: Mutex<Vec<Arc<dyn Job>>>,
    scope: PhantomData<&'scope mut &'scope ()>,
    env: PhantomData<&'env mut &'env ()>,
}

#[derive(Default)]
struct Outstanding {
    count: Mutex<usize>,
    zero: Condvar,
}

/// Counts one task down when its closure is consumed or dropped.
struct TaskGuard(Arc<Outstanding>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count -= 1;
        if *count == 0 {
            self.0.zero.notify_all();
        }
    }
}

impl ThreadPoolExecutor {
    /// Runs `f` with a [`Scope`] whose tasks may borrow local data, and
    /// waits for all of them before returning (SPEC B5).
    ///
    /// If `f` panics, the scope still waits for its tasks, then resumes the
    /// panic. Task panics are not propagated: they are the futures'
    /// failures, as with [`submit`](Self::submit).
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(4).unwrap();
    /// let mut data = vec![1, 2, 3, 4, 5, 6];
    /// let words = ["a", "bb", "ccc"];
    /// let total = pool.scope(|s| {
    ///     let (left, right) = data.split_at_mut(3);
    ///     s.submit(move || left.iter_mut().for_each(|x| *x *= 10)).unwrap();
    ///     s.submit(move || right.iter_mut().for_each(|x| *x += 1)).unwrap();
    ///     let f = s.submit(|| words.iter().map(|w| w.len()).sum::<usize>()).unwrap();
    ///     *f.result().unwrap()
    /// });
    /// assert_eq!(total, 6);
    /// assert_eq!(data, [10, 20, 30, 5, 6, 7]);
    /// ```
    ///
    /// Borrowed data must outlive the scope:
    ///
    /// ```compile_fail
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(1).unwrap();
    /// let leaked = pool.scope(|s| {
    ///     let local = vec![1];
    ///     s.submit(|| local.len()).unwrap()
    /// });
    /// ```
    pub fn scope<'env, F, R>(&'env self, f: F) -> R
    where
        F: for<'scope> FnOnce(&'scope Scope<'scope, 'env>) -> R,
    {
        let scope = Scope {
            pool: self,
            outstanding: Arc::default(),
            jobs: Mutex::new(Vec::new()),
            scope: PhantomData,
            env: PhantomData,
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(&scope)));
        scope.wait_all();
        match result {
            Ok(r) => r,
            Err(payload) => resume_unwind(payload),
        }
    }
}

impl<'scope> Scope<'scope, '_> {
    /// Schedules `task`, which may borrow anything that outlives the scope.
    ///
    /// # Errors
    ///
    /// [`SubmitError`] with the task when the pool is shut down or broken.
    ///
    /// # Examples
    ///
    /// ```
    /// use concurrent_futures::ThreadPoolExecutor;
    ///
    /// let pool = ThreadPoolExecutor::new(2).unwrap();
    /// let text = String::from("borrowed");
    /// let n = pool.scope(|s| *s.submit(|| text.len()).unwrap().result().unwrap());
    /// assert_eq!(n, 8);
    /// ```
    pub fn submit<F, T>(&'scope self, task: F) -> Result<Future<T>, SubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'scope,
        T: Send + Sync + 'static,
    {
        let outstanding = &self.outstanding;
        let queued = self.pool.enqueue(
            task,
            |task| {
                *outstanding.count.lock() += 1;
                let guard = TaskGuard(Arc::clone(outstanding));
                let scoped: Box<dyn FnOnce() -> Result<T, Error> + Send + 'scope> =
                    Box::new(move || {
                        let _guard = guard;
                        Ok(task())
                    });
                // SAFETY: only the lifetime changes. `ThreadPoolExecutor::scope`
                // does not return before `outstanding` is zero, and the guard
                // inside this closure counts down only when the closure has
                // been consumed or dropped. So nothing borrowed for 'scope is
                // used after the scope ends. The result type is 'static, so
                // the future may outlive the scope.
                unsafe {
                    std::mem::transmute::<
                        Box<dyn FnOnce() -> Result<T, Error> + Send + 'scope>,
                        Box<dyn FnOnce() -> Result<T, Error> + Send>,
                    >(scoped)
                }
            },
            true,
        )?;
        self.jobs.lock().extend(queued.job);
        Ok(queued.future)
    }

    fn wait_all(&self) {
        let jobs = std::mem::take(&mut *self.jobs.lock());
        if task_context::works_for(self.pool.key()) {
            // A worker waiting for the scope may be the one its tasks need.
            for job in jobs {
                task_context::on_enough_stack(|| job.run(&|| {}));
            }
        } else {
            drop(jobs);
        }
        let mut count = self.outstanding.count.lock();
        while *count > 0 {
            self.outstanding.zero.wait(&mut count);
        }
    }
}

impl std::fmt::Debug for Scope<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("outstanding", &*self.outstanding.count.lock())
            .finish_non_exhaustive()
    }
}

/// The lifetime erasure above, exercised under Miri
/// (`cargo +nightly miri test --lib miri_`).
#[cfg(test)]
mod tests {
    use crate::{Shutdown, ThreadPoolExecutor};

    #[test]
    fn miri_scoped_tasks_borrow_and_end_before_the_scope() {
        // SPEC B5
        let pool = ThreadPoolExecutor::new(2).unwrap();
        let mut data = vec![1u32, 2, 3, 4];
        let label = String::from("sum");
        let sum = pool.scope(|s| {
            let (a, b) = data.split_at_mut(2);
            s.submit(move || a.iter_mut().for_each(|x| *x *= 2))
                .unwrap();
            s.submit(move || b.iter_mut().for_each(|x| *x += 1))
                .unwrap();
            *s.submit(|| label.len()).unwrap().result().unwrap()
        });
        assert_eq!(sum, 3);
        assert_eq!(data, [2, 4, 4, 5]);
    }

    #[test]
    fn miri_cancelled_scoped_tasks_are_dropped_before_the_scope_ends() {
        // SPEC B5: a task cancelled by shutdown is dropped, not leaked past
        // the scope that it borrows from.
        let pool = ThreadPoolExecutor::new(1).unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let borrowed = String::from("borrowed");
        pool.scope(|s| {
            s.submit(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .unwrap();
            let queued = s.submit(|| borrowed.len()).unwrap();
            started_rx.recv().unwrap();
            pool.shutdown_with(Shutdown::default().wait(false).cancel_futures(true));
            assert!(queued.cancelled());
            release_tx.send(()).unwrap();
        });
        assert_eq!(borrowed, "borrowed");
    }
}
