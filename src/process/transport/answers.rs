//! The answers one message from a worker brings, kept as they arrived:
//! the items' encoded outcomes back to back in one buffer, with each one's
//! length.
//!
//! Splitting the buffer into a `Bytes` per item cost two atomic reference
//! count changes and an entry in a list per item (about 100 instructions
//! of a chunked `map`'s 1,100 per item); a sink that decodes its items
//! where they lie ([`Delivered::bytes`]) needs none of it, and one that
//! keeps them gets its own `Bytes` only when it asks
//! ([`Delivered::to_bytes`]).

use std::ops::Range;

use bytes::Bytes;
use smallvec::SmallVec;

use super::lengths::Lengths;

/// How some consecutive items of one call ended.
#[cfg_attr(feature = "cluster", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Answers {
    /// The outcomes that arrived, back to back.
    bytes: Bytes,
    /// Each answer's length in `bytes` (0 for a lost one).
    lens: Lengths,
    /// Which answers (by position, ascending) are failures rather than
    /// results.
    failed: SmallVec<[u32; 1]>,
    /// Which answers (by position, ascending) ended but could not be
    /// received, and why.
    lost: Vec<(u32, String)>,
}

/// One answer, made by hand (the engine's tests).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Its result, as the codec encoded it.
    Value(Bytes),
    /// Its failure, as the codec encoded it.
    Failure(Bytes),
    /// It ended, but its answer could not be received, for this reason
    /// (say, too large for this process's memory).
    Lost(String),
}

/// One item's answer, where it lies in its message's buffer.
///
/// # Examples
///
/// ```
/// # use bytes::Bytes;
/// # use concurrent_futures::process::engine::Delivered;
/// let buffer = Bytes::from_static(b"okbad");
/// let failure = Delivered::new(&buffer, 2..5, true).unwrap();
/// assert_eq!(failure.outcome(), Err(&b"bad"[..]));
/// assert_eq!(failure.to_bytes(), Err(Bytes::from_static(b"bad")));
/// assert!(Delivered::new(&buffer, 2..6, false).is_none(), "past the end");
/// ```
#[derive(Debug, Clone)]
pub struct Delivered<'a> {
    buffer: &'a Bytes,
    range: Range<usize>,
    failed: bool,
}

impl<'a> Delivered<'a> {
    /// The answer at `range` of `buffer`: a failure if `failed`, else a
    /// result; `None` if `range` does not lie within `buffer`.
    pub fn new(buffer: &'a Bytes, range: Range<usize>, failed: bool) -> Option<Self> {
        (range.start <= range.end && range.end <= buffer.len()).then_some(Delivered {
            buffer,
            range,
            failed,
        })
    }

    /// Its encoded result, or its encoded failure.
    #[inline]
    pub fn outcome(&self) -> Result<&'a [u8], &'a [u8]> {
        let bytes = &self.buffer[self.range.clone()];
        if self.failed { Err(bytes) } else { Ok(bytes) }
    }

    /// [`outcome`](Self::outcome) as `Bytes` that share the message's
    /// buffer (no copy).
    pub fn to_bytes(&self) -> Result<Bytes, Bytes> {
        let bytes = self.buffer.slice(self.range.clone());
        if self.failed { Err(bytes) } else { Ok(bytes) }
    }
}

/// One answer of [`Answers::iter`].
#[derive(Debug, Clone)]
pub(crate) enum AnswerView<'a> {
    Delivered(Delivered<'a>),
    Lost(&'a str),
}

impl Answers {
    /// Answers whose outcomes lie back to back in `bytes`, `lens` long
    /// each; `failed`: which of them are failures. `None` if the lengths
    /// do not add up to the bytes.
    pub(crate) fn new(bytes: Bytes, lens: Lengths, failed: SmallVec<[u32; 1]>) -> Option<Self> {
        (total_len(&lens)? == bytes.len() as u64).then_some(Answers {
            bytes,
            lens,
            failed,
            lost: Vec::new(),
        })
    }

    /// `count` answers, all lost for the same reason.
    pub(crate) fn all_lost(count: usize, why: &str) -> Self {
        Answers {
            lens: std::iter::repeat_n(0, count).collect(),
            lost: (0..count).map(|at| (at as u32, why.to_owned())).collect(),
            ..Answers::default()
        }
    }

    /// How many answers there are.
    pub(crate) fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether every answer arrived whole: none lost, and (for answers
    /// read from a network link, not made by [`Answers::new`]) each lies
    /// within the bytes.
    pub(crate) fn all_delivered(&self) -> bool {
        self.lost.is_empty()
            && total_len(&self.lens).is_some_and(|total| total <= self.bytes.len() as u64)
    }

    /// Drops the answers after the first `len` (a worker's error: more
    /// answers than its call had items).
    pub(crate) fn truncate(&mut self, len: usize) {
        if len >= self.lens.len() {
            return;
        }
        self.lens.truncate(len);
        self.failed.retain(|at| (*at as usize) < len);
        self.lost.retain(|(at, _)| (*at as usize) < len);
    }

    /// The answers, in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            answers: self,
            at: 0,
            start: 0,
            failed: &self.failed,
            lost: &self.lost,
        }
    }
}

/// The answers' lengths added up; `None` past `u64` (a corrupt header).
fn total_len(lens: &[u64]) -> Option<u64> {
    lens.iter().try_fold(0u64, |sum, &len| sum.checked_add(len))
}

/// [`Answers::iter`]: a loop of its own rather than adapters, since it
/// runs once per item of every chunk.
#[derive(Debug, Clone)]
pub(crate) struct Iter<'a> {
    answers: &'a Answers,
    /// The next answer's position, and where its bytes start.
    at: usize,
    start: usize,
    /// The failures and losses not yet reached.
    failed: &'a [u32],
    lost: &'a [(u32, String)],
}

impl<'a> Iterator for Iter<'a> {
    type Item = AnswerView<'a>;

    #[inline]
    fn next(&mut self) -> Option<AnswerView<'a>> {
        let &len = self.answers.lens.get(self.at)?;
        let at = self.at as u32;
        self.at += 1;
        let is_failure = match self.failed {
            [first, rest @ ..] if *first == at => {
                self.failed = rest;
                true
            }
            _ => false,
        };
        if let [(first, why), rest @ ..] = self.lost
            && *first == at
        {
            self.lost = rest;
            return Some(AnswerView::Lost(why));
        }
        // `new` checks that the lengths add up to the bytes; answers read
        // from a network link were not made by `new`.
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| self.start.checked_add(len))
            .filter(|&end| end <= self.answers.bytes.len())
        else {
            return Some(AnswerView::Lost("the answer lies outside its message"));
        };
        let range = self.start..end;
        self.start = end;
        Some(AnswerView::Delivered(Delivered {
            buffer: &self.answers.bytes,
            range,
            failed: is_failure,
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.answers.lens.len() - self.at;
        (left, Some(left))
    }
}

#[cfg(test)]
impl FromIterator<Answer> for Answers {
    /// Packs answers made one by one (the in-memory transport's, the
    /// tests') into one buffer, copying their bytes.
    fn from_iter<I: IntoIterator<Item = Answer>>(answers: I) -> Self {
        let mut packed = Answers::default();
        let mut bytes = Vec::new();
        for (at, answer) in answers.into_iter().enumerate() {
            let at = at as u32;
            let part = match answer {
                Answer::Value(part) => part,
                Answer::Failure(part) => {
                    packed.failed.push(at);
                    part
                }
                Answer::Lost(why) => {
                    packed.lost.push((at, why));
                    Bytes::new()
                }
            };
            bytes.extend_from_slice(&part);
            packed.lens.push(part.len() as u64);
        }
        packed.bytes = Bytes::from(bytes);
        packed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(answers: &Answers) -> Vec<Answer> {
        answers
            .iter()
            .map(|view| match view {
                AnswerView::Delivered(d) => match d.to_bytes() {
                    Ok(v) => Answer::Value(v),
                    Err(f) => Answer::Failure(f),
                },
                AnswerView::Lost(why) => Answer::Lost(why.to_owned()),
            })
            .collect()
    }

    #[test]
    fn miri_answers_read_back_in_order_with_their_kinds() {
        let made = vec![
            Answer::Value(Bytes::from_static(b"ok")),
            Answer::Lost("too large".into()),
            Answer::Failure(Bytes::from_static(b"bad")),
            Answer::Value(Bytes::new()),
            Answer::Value(Bytes::from_static(b"!")),
        ];
        let mut answers: Answers = made.iter().cloned().collect();
        assert_eq!(answers.len(), 5);
        assert!(!answers.all_delivered());
        assert_eq!(views(&answers), made);
        answers.truncate(3);
        assert_eq!(views(&answers), made[..3]);
        answers.truncate(1);
        assert!(answers.all_delivered());
        assert_eq!(views(&answers), made[..1]);
    }

    #[test]
    fn miri_lengths_that_disagree_with_the_bytes_are_refused() {
        let bytes = Bytes::from_static(b"abc");
        assert!(Answers::new(bytes.clone(), smallvec::smallvec![1, 1], SmallVec::new()).is_none());
        assert!(
            Answers::new(
                bytes.clone(),
                smallvec::smallvec![u64::MAX, 4],
                SmallVec::new()
            )
            .is_none()
        );
        let answers =
            Answers::new(bytes, smallvec::smallvec![1, 2], smallvec::smallvec![1]).unwrap();
        let outcomes: Vec<_> = answers
            .iter()
            .map(|view| match view {
                AnswerView::Delivered(d) => d.outcome(),
                AnswerView::Lost(_) => unreachable!("none is lost"),
            })
            .collect();
        assert_eq!(outcomes, [Ok(&b"a"[..]), Err(&b"bc"[..])]);
        // As a network link could bring them: an answer past the bytes.
        let torn = Answers {
            bytes: Bytes::from_static(b"ab"),
            lens: smallvec::smallvec![1, 5],
            ..Answers::default()
        };
        assert!(!torn.all_delivered());
        let views: Vec<_> = torn.iter().collect();
        assert!(matches!(&views[0], AnswerView::Delivered(d) if d.outcome() == Ok(&b"a"[..])));
        assert!(matches!(views[1], AnswerView::Lost(_)));
        let lost = Answers::all_lost(2, "gone");
        assert!(lost.iter().all(|v| matches!(v, AnswerView::Lost("gone"))));
    }
}
