//! [`TransactionLayer`]: owns every transaction, matches incoming messages to them, runs their
//! timers and queues what they send and report.

use super::client_invite::ClientInvite;
use super::client_non_invite::ClientNonInvite;
use super::key::{client_key_of_request, client_key_of_response, MatchKey, RequestId, TxKind};
use super::output::{Ctx, Outbox, Transmit, TuEvent, TxError};
use super::peer::Peer;
use super::server_invite::{AckOutcome, ServerInvite};
use super::server_non_invite::ServerNonInvite;
use super::timers::{TimerConfig, TimerQueue};
use super::TxKey;
use crate::sip::{Message, Method, Request, Response, SipHeaders};
use std::collections::HashMap;

/// The maps' hasher: foldhash, seeded per process (keys come from the network, so not an
/// unseeded hash), several times cheaper than SipHash on these short keys.
type Hasher = foldhash::fast::RandomState;
use std::time::{Duration, Instant};

/// The layer's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerConfig {
    /// T1, T2, T4.
    pub timers: TimerConfig,
    /// Most live transactions (client and server together). Beyond it `handle_request` and
    /// `send_request` return [`TxError::Overloaded`]; retransmissions and ACKs of existing
    /// transactions are still handled.
    pub max_transactions: usize,
    /// How long an INVITE server transaction waits for the TU before it sends 100 (Trying)
    /// itself (RFC 3261 §17.2.1: 200 ms). Zero sends it at once, when the INVITE arrives.
    pub trying_delay: Duration,
    /// How long an INVITE transaction may stay in Proceeding without a final response: the
    /// client side counts from the latest provisional received, the server side from the
    /// latest provisional the TU sent. Then the TU gets [`TuEvent::Timeout`] and the
    /// transaction ends. Not an RFC 3261 transaction timer but a bound in the spirit of Timer C
    /// (§16.6: more than 3 minutes); it only matters when a TU forgets to answer or cancel.
    pub invite_proceeding_limit: Duration,
}

impl Default for LayerConfig {
    fn default() -> LayerConfig {
        LayerConfig {
            timers: TimerConfig::default(),
            max_transactions: 1_000_000,
            trying_delay: Duration::from_millis(200),
            invite_proceeding_limit: Duration::from_secs(300),
        }
    }
}

/// Counters for metrics. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Server transactions created.
    pub server_created: u64,
    /// Client transactions created.
    pub client_created: u64,
    /// Retransmitted requests absorbed by a server transaction.
    pub retransmissions_absorbed: u64,
    /// ACKs absorbed by an INVITE server transaction (ACKs for non-2xx finals).
    pub acks_absorbed: u64,
    /// Responses that matched no client transaction.
    pub stray_responses: u64,
    /// Requests and sends refused with [`TxError::Overloaded`].
    pub overloaded: u64,
    /// Transactions ended by a timeout.
    pub timeouts: u64,
}

/// The sans-IO SIP transaction layer (RFC 3261 §17 with RFC 6026): no sockets, no clocks;
/// every input carries the current time.
///
/// # Driving it
///
/// The I/O shell owns one layer and, in a loop:
///
/// 1. feeds what happened: [`handle_request`](Self::handle_request) /
///    [`handle_response`](Self::handle_response) for each parsed message from the network,
///    [`handle_timeout`](Self::handle_timeout) when the instant last returned by
///    [`poll_timeout`](Self::poll_timeout) has passed, and the TU's own calls
///    ([`send_request`](Self::send_request), [`send_response`](Self::send_response),
///    [`send_stateless`](Self::send_stateless));
/// 2. then drains [`poll_transmit`](Self::poll_transmit) until `None` and sends each message;
/// 3. then drains [`poll_event`](Self::poll_event) until `None` and hands each event to the
///    TU (which may call back into step 1's `send_*` methods: loop to 2 afterwards);
/// 4. finally calls [`poll_timeout`](Self::poll_timeout) and arms its one timer for that
///    instant.
///
/// The output queues are only emptied by the `poll_*` calls, so a shell that skips step 2
/// or 3 grows them. [`poll_timeout`](Self::poll_timeout) may return an instant at which
/// nothing turns out to be due (timers are deleted lazily); `handle_timeout` is then a no-op.
///
/// # Matching
///
/// Requests match server transactions by RFC 3261 §17.2.3 (top Via branch with magic cookie,
/// sent-by, method; ACK looks for the INVITE), or, when the branch lacks the cookie (a bare
/// `z9hG4bK` counts as none), by the RFC 2543 rule (Request-URI, To tag, From tag, Call-ID,
/// CSeq, top Via). Responses match client transactions by top Via branch and CSeq method
/// (§17.1.3). A CANCEL is a transaction of its own; the event that reports it names the
/// INVITE server transaction it targets.
///
/// # Architecture invariant
///
/// Nothing here panics on network input, sleeps, reads a clock or does I/O; the state is
/// bounded by `max_transactions` live transactions, a timer queue holding a few entries per
/// transaction, and the output queues the shell drains.
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: LayerConfig,
    next_id: u64,
    txs: HashMap<u64, Entry, Hasher>,
    index: HashMap<MatchKey, u64, Hasher>,
    /// Scratch space the matching key of each message is encoded into (reused).
    key_buf: Vec<u8>,
    timers: TimerQueue,
    due: Vec<(Instant, u64)>,
    out: Outbox,
    stats: LayerStats,
}

/// One live transaction.
#[derive(Debug)]
struct Entry {
    kind: TxKind,
    /// The key it is indexed under (shared with the index, not copied).
    match_key: MatchKey,
    /// The deadline of its current entry in the timer queue.
    scheduled: Option<Instant>,
    machine: Machine,
}

/// The state machine of a transaction; the variants are named after the RFC 3261 kinds.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine {
    fn on_timer(&mut self, ctx: &mut Ctx<'_>) {
        match self {
            Machine::ClientInvite(m) => m.on_timer(ctx),
            Machine::ClientNonInvite(m) => m.on_timer(ctx),
            Machine::ServerInvite(m) => m.on_timer(ctx),
            Machine::ServerNonInvite(m) => m.on_timer(ctx),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match self {
            Machine::ClientInvite(m) => m.deadline(),
            Machine::ClientNonInvite(m) => m.deadline(),
            Machine::ServerInvite(m) => m.deadline(),
            Machine::ServerNonInvite(m) => m.deadline(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::ClientInvite(m) => m.is_terminated(),
            Machine::ClientNonInvite(m) => m.is_terminated(),
            Machine::ServerInvite(m) => m.is_terminated(),
            Machine::ServerNonInvite(m) => m.is_terminated(),
        }
    }
}

impl Default for TransactionLayer {
    fn default() -> TransactionLayer {
        TransactionLayer::with_config(LayerConfig::default())
    }
}

impl TransactionLayer {
    /// An empty layer with these timers and bound, and the other settings at their defaults.
    pub fn new(timers: TimerConfig, max_transactions: usize) -> TransactionLayer {
        TransactionLayer::with_config(LayerConfig {
            timers,
            max_transactions,
            ..LayerConfig::default()
        })
    }

    /// An empty layer.
    pub fn with_config(cfg: LayerConfig) -> TransactionLayer {
        TransactionLayer {
            cfg,
            next_id: 0,
            txs: HashMap::default(),
            index: HashMap::default(),
            key_buf: Vec::new(),
            timers: TimerQueue::default(),
            due: Vec::new(),
            out: Outbox::default(),
            stats: LayerStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LayerConfig {
        &self.cfg
    }

    /// A request from the network. A new request creates a server transaction and a
    /// [`TuEvent::Request`]; a retransmission is absorbed (the latest response is sent
    /// again); an ACK is absorbed by the INVITE transaction it acknowledges or passed up as
    /// [`TuEvent::AckFor2xx`].
    ///
    /// Errors: [`TxError::Overloaded`] when the request would create a transaction beyond
    /// `max_transactions` (answer it with 503 statelessly), [`TxError::Malformed`] when it
    /// lacks a valid Via or CSeq.
    pub fn handle_request(
        &mut self,
        now: Instant,
        req: Request,
        source: Peer,
    ) -> Result<(), TxError> {
        let mut key = std::mem::take(&mut self.key_buf);
        let result = self.handle_request_with(now, req, source, &mut key);
        self.key_buf = key;
        result
    }

    /// [`handle_request`](Self::handle_request) with `key` as scratch space for the keys.
    fn handle_request_with(
        &mut self,
        now: Instant,
        req: Request,
        source: Peer,
        key: &mut Vec<u8>,
    ) -> Result<(), TxError> {
        let id = RequestId::of(&req).map_err(TxError::Malformed)?;
        if req.method == Method::Ack {
            let rfc2543 = !id.is_rfc3261();
            let ack_tag = req.to_tag_ref();
            // RFC 2543 keys carry the INVITE's To tag: the ACK's own (re-INVITE) or none
            // (initial).
            let second = (rfc2543 && ack_tag.is_some()).then_some(None);
            for tag in [Some(ack_tag), second].into_iter().flatten() {
                if id.server_key(&req, &Method::Invite, tag, key).is_err() {
                    break;
                }
                match self.offer_ack(now, key, ack_tag, rfc2543) {
                    Some(AckOutcome::Absorbed) => return Ok(()),
                    Some(AckOutcome::ToTu) => break,
                    Some(AckOutcome::NoMatch) | None => continue,
                }
            }
            self.out.event(TuEvent::AckFor2xx { req, source });
            return Ok(());
        }
        let to_tag = req.to_tag_ref();
        id.server_key(&req, &req.method, to_tag, key)
            .map_err(TxError::Malformed)?;
        if let Some(&txid) = self.index.get(&key[..]) {
            if let Some(entry) = self.txs.get_mut(&txid) {
                let mut ctx = Ctx {
                    now,
                    cfg: &self.cfg,
                    key: TxKey::new(txid, entry.kind),
                    out: &mut self.out,
                };
                match &mut entry.machine {
                    Machine::ServerInvite(m) => m.on_retransmission(&mut ctx),
                    Machine::ServerNonInvite(m) => m.on_retransmission(&mut ctx),
                    Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {}
                }
                self.stats.retransmissions_absorbed += 1;
                self.settle(txid);
                return Ok(());
            }
        }
        if self.txs.len() >= self.cfg.max_transactions {
            self.stats.overloaded += 1;
            return Err(TxError::Overloaded);
        }
        let match_key = MatchKey::from(&key[..]);
        let cancels = if req.method == Method::Cancel {
            id.server_key(&req, &Method::Invite, to_tag, key)
                .ok()
                .and_then(|()| self.index.get(&key[..]).copied())
                .and_then(|txid| self.txs.get(&txid).map(|e| TxKey::new(txid, e.kind)))
                .filter(|k| k.kind() == TxKind::ServerInvite)
        } else {
            None
        };
        let is_invite = req.method == Method::Invite;
        let kind = if is_invite {
            TxKind::ServerInvite
        } else {
            TxKind::ServerNonInvite
        };
        let tx = self.alloc(kind);
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            key: tx,
            out: &mut self.out,
        };
        let machine = if is_invite {
            Machine::ServerInvite(ServerInvite::new(&mut ctx, &req, source))
        } else {
            Machine::ServerNonInvite(ServerNonInvite::new(&mut ctx, source))
        };
        self.stats.server_created += 1;
        self.insert(tx, match_key, machine);
        self.out.event(TuEvent::Request {
            tx,
            req,
            source,
            cancels,
        });
        self.settle(tx.id());
        Ok(())
    }

    /// A response from the network: given to the client transaction it matches, or reported
    /// as [`TuEvent::StrayResponse`].
    pub fn handle_response(&mut self, now: Instant, resp: Response, source: Peer) {
        let txid = if (100..=699).contains(&resp.status)
            && client_key_of_response(&resp, &mut self.key_buf)
        {
            self.index.get(&self.key_buf[..]).copied()
        } else {
            None
        };
        let Some((txid, entry)) = txid.and_then(|id| self.txs.get_mut(&id).map(|e| (id, e))) else {
            self.stats.stray_responses += 1;
            self.out.event(TuEvent::StrayResponse { resp, source });
            return;
        };
        let key = TxKey::new(txid, entry.kind);
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            key,
            out: &mut self.out,
        };
        match &mut entry.machine {
            Machine::ClientInvite(m) => m.on_response(&mut ctx, resp),
            Machine::ClientNonInvite(m) => m.on_response(&mut ctx, resp),
            Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => {}
        }
        self.settle(key.id());
    }

    /// Runs every timer due at `now`. Each transaction fires at most once per call, so a
    /// shell that wakes late sends one retransmission, not a burst.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(e) = self.timers.pop_due(now) {
            due.push(e);
        }
        for &(at, txid) in &due {
            let Some(entry) = self.txs.get_mut(&txid) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue;
            }
            entry.scheduled = None;
            if entry.machine.deadline().is_some_and(|d| d <= now) {
                let mut ctx = Ctx {
                    now,
                    cfg: &self.cfg,
                    key: TxKey::new(txid, entry.kind),
                    out: &mut self.out,
                };
                let before = ctx.out.events.len();
                entry.machine.on_timer(&mut ctx);
                let timed_out = self
                    .out
                    .events
                    .range(before..)
                    .any(|e| matches!(e, TuEvent::Timeout { .. }));
                if timed_out {
                    self.stats.timeouts += 1;
                }
            }
            self.settle(txid);
        }
        due.clear();
        self.due = due;
        crate::memory::shrink_sparse(&mut self.txs);
        crate::memory::shrink_sparse(&mut self.index);
        self.timers.shrink();
    }

    /// The TU answers server transaction `tx`. Errors: [`TxError::UnknownTransaction`] when it
    /// is gone, [`TxError::InvalidState`] when it is a client transaction or already has its
    /// final answer, [`TxError::Malformed`] when the status is not 100-699.
    pub fn send_response(
        &mut self,
        now: Instant,
        tx: &TxKey,
        resp: Response,
    ) -> Result<(), TxError> {
        if !(100..=699).contains(&resp.status) {
            return Err(TxError::Malformed("status code outside 100-699"));
        }
        let entry = self
            .txs
            .get_mut(&tx.id())
            .ok_or(TxError::UnknownTransaction)?;
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            key: *tx,
            out: &mut self.out,
        };
        let result = match &mut entry.machine {
            Machine::ServerInvite(m) => m.send_response(&mut ctx, resp),
            Machine::ServerNonInvite(m) => m.send_response(&mut ctx, resp),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => Err(TxError::InvalidState(
                "responses are sent on server transactions",
            )),
        };
        self.settle(tx.id());
        result
    }

    /// Starts a client transaction for `req` (not ACK: see [`send_stateless`](Self::send_stateless))
    /// towards `dest`. The TU has put a top Via with a fresh branch on it
    /// ([`new_branch`](super::new_branch)); a CANCEL reuses the branch of the INVITE it cancels.
    ///
    /// Errors: [`TxError::Malformed`] (no magic-cookie branch, CSeq method mismatch, or ACK),
    /// [`TxError::DuplicateBranch`], [`TxError::Overloaded`].
    pub fn send_request(
        &mut self,
        now: Instant,
        req: Request,
        dest: Peer,
    ) -> Result<TxKey, TxError> {
        if req.method == Method::Ack {
            return Err(TxError::Malformed(
                "an ACK has no client transaction; use send_stateless",
            ));
        }
        client_key_of_request(&req, &mut self.key_buf).map_err(TxError::Malformed)?;
        if self.index.contains_key(&self.key_buf[..]) {
            return Err(TxError::DuplicateBranch);
        }
        let key = MatchKey::from(&self.key_buf[..]);
        if self.txs.len() >= self.cfg.max_transactions {
            self.stats.overloaded += 1;
            return Err(TxError::Overloaded);
        }
        let is_invite = req.method == Method::Invite;
        let kind = if is_invite {
            TxKind::ClientInvite
        } else {
            TxKind::ClientNonInvite
        };
        let tx = self.alloc(kind);
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            key: tx,
            out: &mut self.out,
        };
        let machine = if is_invite {
            Machine::ClientInvite(ClientInvite::start(&mut ctx, req, dest))
        } else {
            Machine::ClientNonInvite(ClientNonInvite::start(&mut ctx, req, dest))
        };
        self.stats.client_created += 1;
        self.insert(tx, key, machine);
        self.settle(tx.id());
        Ok(tx)
    }

    /// Queues a message outside any transaction: the ACK for a 2xx, a stateless 503 for a
    /// request refused with [`TxError::Overloaded`], a stateless answer to a bad request.
    pub fn send_stateless(&mut self, message: Message, dest: Peer) {
        self.out.send(dest, message);
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU.
    pub fn poll_event(&mut self) -> Option<TuEvent> {
        self.out.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next; `None` when no
    /// transaction is live. May be earlier than needed, never later.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek()
    }

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// The number of entries in the timer queue, stale ones included (for a gauge; it stays
    /// within a small multiple of the transactions started in the last 64·T1).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// The counters.
    pub fn stats(&self) -> LayerStats {
        self.stats
    }

    /// The kind of a live transaction, `None` once it has terminated.
    pub fn kind_of(&self, tx: &TxKey) -> Option<TxKind> {
        self.txs.get(&tx.id()).map(|e| e.kind)
    }

    /// Offers an ACK to the INVITE server transaction under `key`, if there is one.
    fn offer_ack(
        &mut self,
        now: Instant,
        key: &[u8],
        ack_tag: Option<&str>,
        rfc2543: bool,
    ) -> Option<AckOutcome> {
        let txid = *self.index.get(key)?;
        let entry = self.txs.get_mut(&txid)?;
        let Machine::ServerInvite(m) = &mut entry.machine else {
            return None;
        };
        let mut ctx = Ctx {
            now,
            cfg: &self.cfg,
            key: TxKey::new(txid, entry.kind),
            out: &mut self.out,
        };
        let outcome = m.on_ack(&mut ctx, ack_tag, rfc2543);
        if outcome == AckOutcome::Absorbed {
            self.stats.acks_absorbed += 1;
            self.settle(txid);
        }
        Some(outcome)
    }

    fn alloc(&mut self, kind: TxKind) -> TxKey {
        self.next_id += 1;
        TxKey::new(self.next_id, kind)
    }

    fn insert(&mut self, tx: TxKey, match_key: MatchKey, machine: Machine) {
        self.index.insert(match_key.clone(), tx.id());
        self.txs.insert(
            tx.id(),
            Entry {
                kind: tx.kind(),
                match_key,
                scheduled: None,
                machine,
            },
        );
    }

    /// After a transaction ran: removes it if it terminated, else makes sure the timer queue
    /// has an entry no later than its deadline.
    fn settle(&mut self, txid: u64) {
        let Some(entry) = self.txs.get_mut(&txid) else {
            return;
        };
        if entry.machine.is_terminated() {
            let kind = entry.kind;
            if let Some(entry) = self.txs.remove(&txid) {
                if self.index.get(&entry.match_key[..]) == Some(&txid) {
                    self.index.remove(&entry.match_key[..]);
                }
            }
            self.out.event(TuEvent::Terminated {
                tx: TxKey::new(txid, kind),
            });
            return;
        }
        if let Some(d) = entry.machine.deadline() {
            if entry.scheduled.is_none_or(|s| s > d) {
                entry.scheduled = Some(d);
                self.timers.push(d, txid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inline part of a transaction (its slot in the map); the heap part is measured by
    /// `tests/transaction_memory.rs`.
    #[test]
    fn per_transaction_entry_stays_small() {
        assert!(
            std::mem::size_of::<Entry>() <= 256,
            "{}",
            std::mem::size_of::<Entry>()
        );
    }
}
