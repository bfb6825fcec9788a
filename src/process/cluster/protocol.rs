//! What clients and agents say to each other over NATS: subjects, the
//! messages, and the envelope every message travels in (authenticated,
//! ordered, chunked).
//!
//! Subjects, for pool `P` (agent `A`, client `C`, worker `W`):
//!
//! | subject | from → to | carries |
//! |---|---|---|
//! | `cf.P.agents` | agents → clients | [`Announce`]: an agent's free slots |
//! | `cf.P.roll` | client → agents | "announce yourselves" |
//! | `cf.P.a.A.start` | client → agent (request) | [`StartRequest`] → [`StartReply`] |
//! | `cf.P.a.A.ping` | client → agent (request) | liveness: no responders = the agent is gone |
//! | `cf.P.a.A.w.C.W` | client → agent | [`ToAgent`], in order |
//! | `cf.P.c.C.w.W` | agent → client | [`ToClient`], in order |
//! | `cf.P.c.C.ping` | agent → client (request) | liveness: an agent kills the workers of a client that is gone |
//!
//! Functions cross by reference into the executable image, so whoever can
//! publish a call can run any function of the program: every message is
//! authenticated with HMAC-SHA256 under the pool's secret, over its
//! subject, its place in its stream and its bytes, so a message cannot be
//! forged, replayed, reordered or moved to another worker.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ExitCause;
use crate::process::transport::{FromWorker, StopHow, ToWorker};

/// The length of a message's authentication tag.
const TAG_BYTES: usize = 32;
/// Flag byte, then the tag, before each chunk's bytes.
const ENVELOPE_BYTES: usize = 1 + TAG_BYTES;
/// What a NATS message needs beyond its payload (subject, reply, framing),
/// kept free below the server's payload limit.
const SLACK_BYTES: usize = 512;

/// The flag byte: more chunks of this message follow.
const MORE: u8 = 1;
/// The flag byte: this chunk ends its message.
const LAST: u8 = 0;

pub(crate) fn agents(pool: &str) -> String {
    format!("cf.{pool}.agents")
}

pub(crate) fn roll(pool: &str) -> String {
    format!("cf.{pool}.roll")
}

pub(crate) fn agent_root(pool: &str, agent: &str) -> String {
    format!("cf.{pool}.a.{agent}")
}

pub(crate) fn start(pool: &str, agent: &str) -> String {
    format!("cf.{pool}.a.{agent}.start")
}

pub(crate) fn agent_ping(pool: &str, agent: &str) -> String {
    format!("cf.{pool}.a.{agent}.ping")
}

pub(crate) fn to_agent(pool: &str, agent: &str, client: &str, worker: u64) -> String {
    format!("cf.{pool}.a.{agent}.w.{client}.{worker}")
}

pub(crate) fn client_root(pool: &str, client: &str) -> String {
    format!("cf.{pool}.c.{client}")
}

pub(crate) fn to_client(pool: &str, client: &str, worker: u64) -> String {
    format!("cf.{pool}.c.{client}.w.{worker}")
}

pub(crate) fn client_ping(pool: &str, client: &str) -> String {
    format!("cf.{pool}.c.{client}.ping")
}

/// A subject token made of the characters NATS allows in one, from any
/// name (a host name may hold dots).
pub(crate) fn token(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// An agent's offer: who it is, which executable it runs, how many
/// workers it may still start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Announce {
    pub(crate) agent: String,
    pub(crate) image: [u8; 32],
    pub(crate) free: u32,
}

/// A client asks an agent for a worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StartRequest {
    pub(crate) client: String,
    pub(crate) worker: u64,
    pub(crate) image: [u8; 32],
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum StartReply {
    /// The worker runs, as this process of the agent's machine.
    Started { pid: u32, host: String },
    /// It could not, and why (no free slot, another executable...).
    Refused(String),
}

/// What a client tells one remote worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToAgent {
    Message(ToWorker),
    /// Several messages in order, from one flush: one NATS message for a
    /// burst of calls.
    Batch(Vec<ToWorker>),
    /// No more messages (the worker's loop ends once it read what came).
    Close,
    Stop(StopHow),
}

/// What an agent tells a client about one worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToClient {
    /// The agent has relayed everything the worker sent so far.
    CaughtUp,
    /// What the worker sent since the last batch, in order, then (when
    /// `caught_up`) `CaughtUp`: one NATS message for a whole read of the
    /// worker's pipe, where one message per answer cost the server and
    /// both ends about as much CPU as the call itself.
    Batch {
        messages: Vec<FromWorker>,
        caught_up: bool,
    },
    /// The worker is gone; nothing follows.
    Ended(Cause),
}

/// [`ExitCause`] on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum Cause {
    Signal(i32),
    Code(i32),
    Lost,
}

impl From<ExitCause> for Cause {
    fn from(cause: ExitCause) -> Cause {
        match cause {
            ExitCause::Signal(s) => Cause::Signal(s),
            ExitCause::Code(c) => Cause::Code(c),
            _ => Cause::Lost,
        }
    }
}

impl From<Cause> for ExitCause {
    fn from(cause: Cause) -> ExitCause {
        match cause {
            Cause::Signal(s) => ExitCause::Signal(s),
            Cause::Code(c) => ExitCause::Code(c),
            Cause::Lost => ExitCause::Lost,
        }
    }
}

pub(crate) fn encode<M: Serialize>(message: &M) -> Vec<u8> {
    // Our own types, with no map keys or foreign serde impls: encoding
    // them cannot fail short of running out of memory.
    postcard::to_allocvec(message).unwrap_or_default()
}

pub(crate) fn decode<'a, M: Deserialize<'a>>(bytes: &'a [u8]) -> Option<M> {
    postcard::from_bytes(bytes).ok()
}

/// The SHA-256 of this process's executable image: agents only run
/// workers for clients of the same build, since functions cross as
/// offsets into it.
pub(crate) fn image_hash() -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open("/proc/self/exe")?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().into())
}

type HmacSha256 = Hmac<Sha256>;

/// The pool's secret, as a key.
#[derive(Clone)]
pub(crate) struct Key(HmacSha256);

impl Key {
    pub(crate) fn new(secret: &[u8]) -> Key {
        // HMAC takes a key of any length.
        Key(HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
    }

    /// The MAC of a chunk: over its subject, its place in its stream, its
    /// flag and its bytes.
    fn mac(&self, subject: &str, seq: u64, flag: u8, bytes: &[u8]) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(&(subject.len() as u64).to_le_bytes());
        mac.update(subject.as_bytes());
        mac.update(&seq.to_le_bytes());
        mac.update(&[flag]);
        mac.update(bytes);
        mac
    }

    fn tag(&self, subject: &str, seq: u64, flag: u8, bytes: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(subject, seq, flag, bytes)
            .finalize()
            .into_bytes()
            .into()
    }

    fn verify(&self, subject: &str, seq: u64, flag: u8, bytes: &[u8], tag: &[u8]) -> bool {
        // In constant time.
        self.mac(subject, seq, flag, bytes)
            .verify_slice(tag)
            .is_ok()
    }

    /// One message that is not part of a stream (a start request): sealed
    /// at place 0 of its own subject.
    pub(crate) fn seal_one(&self, subject: &str, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENVELOPE_BYTES + message.len());
        out.push(LAST);
        out.extend_from_slice(&self.tag(subject, 0, LAST, message));
        out.extend_from_slice(message);
        out
    }

    pub(crate) fn open_one<'a>(&self, subject: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let (flag, tag, bytes) = split(sealed)?;
        (flag == LAST && self.verify(subject, 0, flag, bytes, tag)).then_some(bytes)
    }
}

fn split(sealed: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    if sealed.len() < ENVELOPE_BYTES {
        return None;
    }
    Some((
        sealed[0],
        &sealed[1..ENVELOPE_BYTES],
        &sealed[ENVELOPE_BYTES..],
    ))
}

/// Several sealed chunks of one stream in one NATS message, each behind
/// its length (u32, little-endian): a burst costs the server, and both
/// ends, one message instead of many.
pub(crate) fn bundle(parts: &[bytes::Bytes]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    bytes::Bytes::from(out)
}

/// The chunks of a [`bundle`]; `Err` at the first malformed length.
pub(crate) fn unbundle(mut payload: &[u8]) -> impl Iterator<Item = Result<&[u8], Tampered>> {
    std::iter::from_fn(move || {
        if payload.is_empty() {
            return None;
        }
        let Some((len, rest)) = payload.split_first_chunk::<4>() else {
            payload = &[];
            return Some(Err(Tampered));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            payload = &[];
            return Some(Err(Tampered));
        }
        let (part, rest) = rest.split_at(len);
        payload = rest;
        Some(Ok(part))
    })
}

/// The sending end of one ordered stream of messages on one subject.
pub(crate) struct Sealer {
    key: Key,
    subject: String,
    next: u64,
    chunk_bytes: usize,
}

impl Sealer {
    /// `max_payload`: the server's limit on one NATS message.
    pub(crate) fn new(key: Key, subject: String, max_payload: usize) -> Sealer {
        let chunk_bytes = max_payload
            .saturating_sub(ENVELOPE_BYTES + SLACK_BYTES)
            .max(1024);
        Sealer {
            key,
            subject,
            next: 0,
            chunk_bytes,
        }
    }

    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// `message` as the NATS payloads that carry it, in order.
    pub(crate) fn seal(&mut self, message: &[u8]) -> Vec<bytes::Bytes> {
        let mut chunks: Vec<&[u8]> = message.chunks(self.chunk_bytes).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let flag = if i == last { LAST } else { MORE };
                let mut out = Vec::with_capacity(ENVELOPE_BYTES + chunk.len());
                out.push(flag);
                out.extend_from_slice(&self.key.tag(&self.subject, self.next, flag, chunk));
                out.extend_from_slice(chunk);
                self.next += 1;
                bytes::Bytes::from(out)
            })
            .collect()
    }
}

/// The receiving end of one stream: checks each chunk and puts messages
/// back together.
pub(crate) struct Opener {
    key: Key,
    subject: String,
    next: u64,
    partial: Vec<u8>,
}

/// A chunk that fails its check: forged, replayed, reordered or lost on
/// the way. The stream cannot be trusted after it.
#[derive(Debug)]
pub(crate) struct Tampered;

impl Opener {
    pub(crate) fn new(key: Key, subject: String) -> Opener {
        Opener {
            key,
            subject,
            next: 0,
            partial: Vec::new(),
        }
    }

    /// The message this chunk completes, if it does.
    pub(crate) fn open(&mut self, sealed: &[u8]) -> Result<Option<Vec<u8>>, Tampered> {
        let (flag, tag, bytes) = split(sealed).ok_or(Tampered)?;
        if !self.key.verify(&self.subject, self.next, flag, bytes, tag) {
            return Err(Tampered);
        }
        self.next += 1;
        self.partial.extend_from_slice(bytes);
        if flag == MORE {
            Ok(None)
        } else {
            Ok(Some(std::mem::take(&mut self.partial)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_crosses_in_chunks_and_a_replayed_chunk_is_refused() {
        let key = Key::new(b"secret");
        let mut sealer = Sealer::new(key.clone(), "s".into(), 4096);
        let message: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let chunks = sealer.seal(&message);
        assert!(chunks.len() > 1);
        let mut opener = Opener::new(key.clone(), "s".into());
        let mut whole = None;
        for chunk in &chunks {
            whole = opener.open(chunk).expect("authentic");
        }
        assert_eq!(whole.as_deref(), Some(&message[..]));
        assert!(opener.open(&chunks[0]).is_err(), "a replay fails its check");
        let mut other = Opener::new(key, "t".into());
        assert!(
            other.open(&chunks[0]).is_err(),
            "so does a chunk moved to another subject"
        );
        let mut wrong_key = Opener::new(Key::new(b"guess"), "s".into());
        assert!(wrong_key.open(&chunks[0]).is_err());
    }

    #[test]
    fn a_bundle_gives_back_its_parts_and_a_cut_one_is_refused() {
        let parts = [
            bytes::Bytes::from_static(b"one"),
            bytes::Bytes::new(),
            bytes::Bytes::from_static(b"three"),
        ];
        let bundled = bundle(&parts);
        let back: Vec<&[u8]> = unbundle(&bundled).map(|p| p.expect("whole")).collect();
        assert_eq!(back, [&b"one"[..], b"", b"three"]);
        let cut = &bundled[..bundled.len() - 1];
        assert!(unbundle(cut).any(|p| p.is_err()));
    }
}
