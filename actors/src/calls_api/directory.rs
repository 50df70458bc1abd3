//! The live-call directory: every call actor lists itself here while it runs (B2BUA and IVR
//! calls, callbacks, API-originated calls) with a snapshot of what the API shows and the
//! [`Recipient`] that controls it.
//!
//! Calls live on many shard arbiters, so the directory is split into [`BUCKETS`] maps, each
//! behind its own short-held mutex; a call always writes to the bucket of its own id, so calls
//! on different shards rarely share a lock, and readers (the HTTP thread) take one bucket at a
//! time. A call holds a [`Listing`]: dropping it (call ended, or the actor dropped after a
//! panic) removes the entry, so the directory never shows a dead call.

use super::control::Control;
use actix::Recipient;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// How many independently locked maps the directory has.
pub const BUCKETS: usize = 16;

/// What kind of call actor a listed call is.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// A B2BUA call from a caller (with or without a dialplan).
    Inbound,
    /// An API-originated call (`POST /api/v1/calls`).
    Originate,
    /// A contact-centre callback.
    Callback,
}

/// One leg of a listed call.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LegInfo {
    /// `a` (the caller, or the first endpoint rung) or `b` (a callee).
    pub leg: &'static str,
    /// The leg's SIP Call-ID.
    pub call_id: String,
    /// The party's URI.
    pub uri: String,
    /// `calling`, `early`, `answered` or `ended`.
    pub state: &'static str,
}

/// The API's view of one live call.
#[derive(Clone, Debug, Serialize)]
pub struct CallInfo {
    /// The directory id (what `/api/v1/calls/{id}` takes).
    pub id: u64,
    /// Which actor runs it.
    pub kind: CallKind,
    /// The caller's SIP Call-ID (the CDR's `call_id`).
    pub call_id: String,
    /// Caller URI.
    pub caller: String,
    /// Called URI.
    pub callee: String,
    /// `ringing` (no answer yet), `answered` (the caller talks to the engine) or `bridged`.
    pub state: &'static str,
    /// Start (ms since the epoch).
    pub start_ms: i64,
    /// When the call was answered.
    pub answer_ms: Option<i64>,
    /// The legs, A first.
    pub legs: Vec<LegInfo>,
    /// Whether a whole-call recording runs.
    pub recording: bool,
}

struct Entry {
    info: CallInfo,
    control: Recipient<Control>,
}

/// Where API-originated calls are placed (set when the first SIP shard starts).
#[derive(Clone)]
pub struct OriginEnv {
    /// Services and the shard the call sends SIP through.
    pub env: crate::call::CallbackEnv,
    /// That shard's arbiter, where the call actor runs.
    pub arbiter: actix_rt::ArbiterHandle,
}

struct Inner {
    buckets: Vec<Mutex<HashMap<u64, Entry>>>,
    next: AtomicU64,
    origin: OnceLock<OriginEnv>,
}

/// The shared directory of live calls (cheap to clone).
#[derive(Clone)]
pub struct CallDirectory {
    inner: Arc<Inner>,
}

impl Default for CallDirectory {
    fn default() -> Self {
        CallDirectory {
            inner: Arc::new(Inner {
                buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
                next: AtomicU64::new(1),
                origin: OnceLock::new(),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a consistent map (entries are replaced whole).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CallDirectory {
    /// Lists a call; the entry lives as long as the returned [`Listing`].
    pub fn list(&self, mut info: CallInfo, control: Recipient<Control>) -> Listing {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        info.id = id;
        lock(self.bucket(id)).insert(id, Entry { info, control });
        Listing {
            dir: self.clone(),
            id,
        }
    }

    fn bucket(&self, id: u64) -> &Mutex<HashMap<u64, Entry>> {
        &self.inner.buckets[(id as usize) % BUCKETS]
    }

    /// Every live call, oldest first.
    pub fn snapshot(&self) -> Vec<CallInfo> {
        let mut all: Vec<CallInfo> = self
            .inner
            .buckets
            .iter()
            .flat_map(|b| lock(b).values().map(|e| e.info.clone()).collect::<Vec<_>>())
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// How many calls are listed.
    pub fn len(&self) -> usize {
        self.inner.buckets.iter().map(|b| lock(b).len()).sum()
    }

    /// Whether no call is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One call's view and its control address.
    pub fn get(&self, id: u64) -> Option<(CallInfo, Recipient<Control>)> {
        lock(self.bucket(id))
            .get(&id)
            .map(|e| (e.info.clone(), e.control.clone()))
    }

    /// Sets where originated calls go (the first call wins; later ones are ignored).
    pub fn set_origin(&self, origin: OriginEnv) {
        let _ = self.inner.origin.set(origin);
    }

    /// Where originated calls go, once SIP runs.
    pub fn origin(&self) -> Option<&OriginEnv> {
        self.inner.origin.get()
    }
}

/// A call's entry in the directory; removed when dropped.
pub struct Listing {
    dir: CallDirectory,
    id: u64,
}

impl Listing {
    /// The call's directory id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Changes the call's view.
    pub fn update(&self, f: impl FnOnce(&mut CallInfo)) {
        if let Some(e) = lock(self.dir.bucket(self.id)).get_mut(&self.id) {
            f(&mut e.info);
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        lock(self.dir.bucket(self.id)).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Control> for Sink {
        type Result = super::super::control::ControlResult;
        fn handle(&mut self, _: Control, _: &mut Context<Self>) -> Self::Result {
            Ok(serde_json::Value::Null)
        }
    }

    fn info() -> CallInfo {
        CallInfo {
            id: 0,
            kind: CallKind::Inbound,
            call_id: "c1".into(),
            caller: "sip:a@x".into(),
            callee: "sip:b@x".into(),
            state: "ringing",
            start_ms: 1,
            answer_ms: None,
            legs: Vec::new(),
            recording: false,
        }
    }

    #[actix_rt::test]
    async fn listing_lives_as_long_as_its_handle() {
        let dir = CallDirectory::default();
        let r = Sink.start().recipient();
        let a = dir.list(info(), r.clone());
        let b = dir.list(info(), r);
        assert_ne!(a.id(), b.id());
        assert_eq!(dir.len(), 2);
        a.update(|i| i.state = "bridged");
        assert_eq!(dir.get(a.id()).map(|(i, _)| i.state), Some("bridged"));
        assert_eq!(
            dir.snapshot().iter().map(|i| i.id).collect::<Vec<_>>(),
            vec![a.id(), b.id()]
        );
        drop(a);
        assert_eq!(dir.len(), 1);
        drop(b);
        assert!(dir.is_empty());
    }
}
