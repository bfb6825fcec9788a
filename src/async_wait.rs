//! `.await` on a [`Future`] from any async runtime (SPEC B4, Python's
//! `asyncio.wrap_future`).
//!
//! Polling registers the task's waker as one more waiter of the future;
//! no runtime is assumed and no thread is blocked.

use std::future::IntoFuture;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Error;
use crate::future::Future;
use crate::waiter::AsyncWaiter;
use std::sync::Arc;

/// The awaitable of `&Future<T>`: resolves to the same `Result<&T, Error>`
/// as [`Future::result`].
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let f = pool.submit(|| 6 * 7).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let answer = rt.block_on(async { *(&f).await.unwrap() });
/// assert_eq!(answer, 42);
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Wait<'a, T> {
    future: &'a Future<T>,
    waiter: Option<Arc<AsyncWaiter>>,
}

/// The awaitable of `Future<T>`: resolves to the value itself, as
/// [`Future::into_result`] gives it.
///
/// # Examples
///
/// ```
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(1).unwrap();
/// let f = pool.submit(|| String::from("hi")).unwrap();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert_eq!(rt.block_on(async { f.await }).unwrap(), "hi");
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct WaitOwned<T> {
    future: Option<Future<T>>,
    waiter: Option<Arc<AsyncWaiter>>,
}

/// Readiness shared by both awaitables: `true` once `future` is done,
/// otherwise the task's waker is registered (or refreshed).
fn poll_done<T>(
    future: &Future<T>,
    waiter: &mut Option<Arc<AsyncWaiter>>,
    cx: &Context<'_>,
) -> bool {
    if future.done() {
        return true;
    }
    match waiter {
        Some(w) => w.update(cx.waker()),
        None => {
            let w = Arc::new(AsyncWaiter::new(cx.waker().clone()));
            if !future.register_async(&w) {
                return true;
            }
            *waiter = Some(w);
        }
    }
    // A completion between the `done` check and the waker update took the
    // old waker; the state it published is visible now.
    future.done()
}

impl<'a, T> std::future::Future for Wait<'a, T> {
    type Output = Result<&'a T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if poll_done(this.future, &mut this.waiter, cx) {
            Poll::Ready(this.future.result())
        } else {
            Poll::Pending
        }
    }
}

impl<T: Clone> std::future::Future for WaitOwned<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(future) = this.future.as_ref() else {
            return Poll::Ready(Err(Error::Cancelled));
        };
        if poll_done(future, &mut this.waiter, cx) {
            let future = this.future.take();
            Poll::Ready(future.map_or(Err(Error::Cancelled), Future::into_result))
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Wait<'_, T> {
    fn drop(&mut self) {
        if let Some(w) = &self.waiter {
            w.close();
        }
    }
}

impl<T> Drop for WaitOwned<T> {
    fn drop(&mut self) {
        if let Some(w) = &self.waiter {
            w.close();
        }
    }
}

// `WaitOwned` holds no self-references.
impl<T> Unpin for WaitOwned<T> {}

impl<'a, T> IntoFuture for &'a Future<T> {
    type Output = Result<&'a T, Error>;
    type IntoFuture = Wait<'a, T>;

    fn into_future(self) -> Wait<'a, T> {
        Wait {
            future: self,
            waiter: None,
        }
    }
}

impl<T: Clone> IntoFuture for Future<T> {
    type Output = Result<T, Error>;
    type IntoFuture = WaitOwned<T>;

    fn into_future(self) -> WaitOwned<T> {
        WaitOwned {
            future: Some(self),
            waiter: None,
        }
    }
}
