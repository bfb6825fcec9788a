//! The answers of one worker message as a sink takes them: each with the
//! index of the item it is for, read where it lies in the message.

use std::ops::Range;

use smallvec::SmallVec;

use super::Item;
use crate::process::small_vec_of;
use crate::process::transport::{AnswerIter, AnswerView, Answers, Delivered};

/// The items that a message's answers are for, in order: a range when
/// they follow one another, as a chunk's do unless one of its arguments
/// could not be encoded, so that a chunk's answers need no list of
/// indices beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Indices {
    Range(Range<usize>),
    List(SmallVec<[usize; 1]>),
}

impl Indices {
    /// The indices of `items`.
    pub(crate) fn of(items: &[Item]) -> Indices {
        let first = items.first().map_or(0, |item| item.index);
        let follow = items
            .iter()
            .enumerate()
            .all(|(k, item)| first.checked_add(k) == Some(item.index));
        match first.checked_add(items.len()) {
            Some(end) if follow => Indices::Range(first..end),
            // Out of order, or ending at `usize::MAX`, where no range ends.
            _ => Indices::List(small_vec_of(items.iter().map(|item| item.index))),
        }
    }

    pub(crate) fn iter(&self) -> IndexIter<'_> {
        match self {
            Indices::Range(range) => IndexIter::Range(range.clone()),
            Indices::List(list) => IndexIter::List(list.iter()),
        }
    }
}

/// [`Indices::iter`].
#[derive(Debug, Clone)]
pub(crate) enum IndexIter<'a> {
    Range(Range<usize>),
    List(std::slice::Iter<'a, usize>),
}

impl Iterator for IndexIter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        match self {
            IndexIter::Range(range) => range.next(),
            IndexIter::List(list) => list.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            IndexIter::Range(range) => range.size_hint(),
            IndexIter::List(list) => list.size_hint(),
        }
    }
}

/// The answers one message from a worker brought, each with the index of
/// the item it is for, in order: what [`Sink::answer_all`] takes. A type
/// of its own rather than a `dyn Iterator`, so that a sink's loop over a
/// chunk's items is compiled with it instead of calling through a vtable
/// for every item.
///
/// [`Sink::answer_all`]: super::Sink::answer_all
///
/// # Examples
///
/// A sink that counts the answers of each message:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
/// use bytes::Bytes;
/// use concurrent_futures::{Error, WorkerId};
/// use concurrent_futures::process::engine::{AnswerBatch, Sink};
///
/// #[derive(Default)]
/// struct Count(AtomicUsize);
///
/// impl Sink for Count {
///     fn start(&self) -> bool {
///         true
///     }
///     fn answer(&self, _: usize, _: &WorkerId, _: Result<Bytes, Bytes>) {
///         self.0.fetch_add(1, Relaxed);
///     }
///     fn answer_all(&self, _: &WorkerId, answers: AnswerBatch<'_>) {
///         // Each answer is read where it lies: `delivered.outcome()`.
///         let n = answers.filter(|(_, delivered)| delivered.outcome().is_ok()).count();
///         self.0.fetch_add(n, Relaxed);
///     }
///     fn fail(&self, _: usize, _: Error) {}
///     fn cancel(&self, _: usize) {}
///     fn position(&self, _: usize) -> Option<usize> {
///         None
///     }
/// }
///
/// let count = Count::default();
/// count.answer(0, &WorkerId::process(1), Ok(Bytes::from_static(b"7")));
/// assert_eq!(count.0.load(Relaxed), 1);
/// ```
#[derive(Debug, Clone)]
pub struct AnswerBatch<'a> {
    answers: AnswerIter<'a>,
    indices: IndexIter<'a>,
}

impl<'a> AnswerBatch<'a> {
    /// `answers`, each for the item at its place in `indices`; an answer
    /// that was lost is skipped (the engine fails its item instead).
    pub(crate) fn new(answers: &'a Answers, indices: &'a Indices) -> Self {
        AnswerBatch {
            answers: answers.iter(),
            indices: indices.iter(),
        }
    }
}

impl<'a> Iterator for AnswerBatch<'a> {
    type Item = (usize, Delivered<'a>);

    // Inlined into the sinks' loops, which are compiled in the crates
    // that name their types: a call per item kept the state in memory.
    #[inline(always)]
    fn next(&mut self) -> Option<(usize, Delivered<'a>)> {
        loop {
            let answer = self.answers.next()?;
            let index = self.indices.next()?;
            if let AnswerView::Delivered(delivered) = answer {
                return Some((index, delivered));
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Lost answers are skipped, so only the upper bound is known.
        let (_, answers) = self.answers.size_hint();
        let (_, indices) = self.indices.size_hint();
        (0, answers.zip(indices).map(|(a, i)| a.min(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::transport::Answer;
    use bytes::Bytes;

    fn item(index: usize) -> Item {
        Item {
            index,
            start: 0,
            end: 0,
        }
    }

    /// An item's index and its result or failure, copied out.
    type Owned = (usize, Result<Vec<u8>, Vec<u8>>);

    fn outcomes(batch: AnswerBatch<'_>) -> Vec<Owned> {
        batch
            .map(|(index, d)| {
                (
                    index,
                    d.outcome().map(<[u8]>::to_vec).map_err(<[u8]>::to_vec),
                )
            })
            .collect()
    }

    #[test]
    fn items_that_follow_one_another_are_a_range() {
        assert_eq!(
            Indices::of(&[item(3), item(4), item(5)]),
            Indices::Range(3..6)
        );
        assert_eq!(Indices::of(&[item(9)]), Indices::Range(9..10));
        assert_eq!(Indices::of(&[]), Indices::Range(0..0));
    }

    #[test]
    fn items_with_a_gap_or_out_of_order_are_a_list() {
        let gap = Indices::of(&[item(0), item(2), item(3)]);
        assert_eq!(gap, Indices::List(smallvec::smallvec![0, 2, 3]));
        let backwards = Indices::of(&[item(1), item(0)]);
        assert_eq!(backwards, Indices::List(smallvec::smallvec![1, 0]));
        let last = Indices::of(&[item(usize::MAX), item(0)]);
        assert_eq!(last, Indices::List(smallvec::smallvec![usize::MAX, 0]));
        // In order, but no range can end past the last index.
        let at_the_end = Indices::of(&[item(usize::MAX - 1), item(usize::MAX)]);
        let expected = smallvec::smallvec![usize::MAX - 1, usize::MAX];
        assert_eq!(at_the_end, Indices::List(expected));
        assert_eq!(
            at_the_end.iter().collect::<Vec<_>>(),
            [usize::MAX - 1, usize::MAX]
        );
    }

    #[test]
    fn a_batch_pairs_each_answer_with_its_item_either_way() {
        let answers: Answers = [
            Answer::Value(Bytes::from_static(b"a")),
            Answer::Failure(Bytes::from_static(b"bb")),
            Answer::Value(Bytes::from_static(b"")),
        ]
        .into_iter()
        .collect();
        let expected = |i: [usize; 3]| {
            vec![
                (i[0], Ok(b"a".to_vec())),
                (i[1], Err(b"bb".to_vec())),
                (i[2], Ok(Vec::new())),
            ]
        };
        let range = Indices::Range(4..7);
        assert_eq!(
            outcomes(AnswerBatch::new(&answers, &range)),
            expected([4, 5, 6])
        );
        let list = Indices::List(smallvec::smallvec![8, 1, 5]);
        assert_eq!(
            outcomes(AnswerBatch::new(&answers, &list)),
            expected([8, 1, 5])
        );
        assert_eq!(AnswerBatch::new(&answers, &list).size_hint(), (0, Some(3)));
    }

    #[test]
    fn a_lost_answer_is_skipped_and_the_shorter_side_ends_the_batch() {
        let answers: Answers = [
            Answer::Value(Bytes::from_static(b"x")),
            Answer::Lost("too large".to_owned()),
            Answer::Value(Bytes::from_static(b"z")),
        ]
        .into_iter()
        .collect();
        let indices = Indices::Range(0..3);
        let got = outcomes(AnswerBatch::new(&answers, &indices));
        assert_eq!(got, vec![(0, Ok(b"x".to_vec())), (2, Ok(b"z".to_vec()))]);
        let fewer = Indices::Range(0..1);
        assert_eq!(outcomes(AnswerBatch::new(&answers, &fewer)).len(), 1);
    }
}
