//! Progress bars for long `map` and `as_completed` runs (SPEC B6), behind
//! the `progress` cargo feature, drawn by [indicatif].

pub use indicatif::{ProgressBar, ProgressStyle};

/// Adds [`progress`](ProgressExt::progress) to every iterator, meant for
/// the iterators of `map` and `as_completed`.
///
/// # Examples
///
/// ```
/// use concurrent_futures::progress::ProgressExt;
/// use concurrent_futures::ThreadPoolExecutor;
///
/// let pool = ThreadPoolExecutor::new(2).unwrap();
/// let sum: u64 = pool
///     .map(|x: u64| x * 2, 0..100)
///     .progress()
///     .map(Result::unwrap)
///     .sum();
/// assert_eq!(sum, 9900);
/// ```
pub trait ProgressExt: Iterator + Sized {
    /// Wraps the iterator in a progress bar whose length is the iterator's
    /// known length (a spinner when unknown).
    fn progress(self) -> Progress<Self> {
        let bar = match self.size_hint() {
            (_, Some(n)) => ProgressBar::new(n as u64),
            (_, None) => ProgressBar::new_spinner(),
        };
        self.progress_with(bar)
    }

    /// Wraps the iterator in `bar`, e.g. a hidden one in tests or one
    /// with a custom style.
    fn progress_with(self, bar: ProgressBar) -> Progress<Self> {
        Progress { iter: self, bar }
    }
}

impl<I: Iterator> ProgressExt for I {}

/// An iterator that advances a progress bar as it yields.
#[derive(Debug)]
pub struct Progress<I> {
    iter: I,
    bar: ProgressBar,
}

impl<I> Progress<I> {
    /// The bar, e.g. to read its position.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl<I: Iterator> Iterator for Progress<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let item = self.iter.next();
        match item {
            Some(_) => self.bar.inc(1),
            None => self.bar.finish(),
        }
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.iter.size_hint()
    }
}
