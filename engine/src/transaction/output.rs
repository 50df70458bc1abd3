//! What the layer hands back: messages to send ([`Transmit`]), events for the transaction
//! user ([`TuEvent`]) and errors ([`TxError`]).

use super::key::TxKey;
use super::peer::Peer;
use crate::sip::{Message, Request, Response};
use std::collections::VecDeque;

/// A message for the I/O shell to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it. For a server transaction's response this is the peer the request
    /// came from; the shell applies RFC 3261 §18.2.2 (received / rport / maddr) itself.
    pub dest: Peer,
    /// The message.
    pub message: Message,
}

/// Something the transaction user (the dialog / call layer) must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TuEvent {
    /// A new server transaction was created by `req`. The TU answers it with
    /// [`send_response`](super::TransactionLayer::send_response).
    Request {
        /// The new server transaction.
        tx: TxKey,
        /// The request.
        req: Request,
        /// Where it came from.
        source: Peer,
        /// For a CANCEL: the INVITE server transaction it targets (RFC 3261 §9.2), if one is
        /// live. The TU answers the CANCEL itself (200, or 481 when this is `None`) and then
        /// the INVITE with 487.
        cancels: Option<TxKey>,
    },
    /// An ACK that no INVITE server transaction absorbed: the ACK for a 2xx (a transaction
    /// of its own, RFC 3261 §17.1.1.3), or one arriving while the INVITE server transaction
    /// is in the RFC 6026 Accepted state.
    AckFor2xx {
        /// The ACK.
        req: Request,
        /// Where it came from.
        source: Peer,
    },
    /// A response for a client transaction. For an INVITE, every 2xx (first and
    /// retransmitted) is passed up so the TU can (re)send its ACK; retransmitted non-2xx
    /// finals are absorbed and ACKed by the transaction.
    Response {
        /// The client transaction.
        tx: TxKey,
        /// The response.
        resp: Response,
    },
    /// The transaction failed on a timer: timer B or F (no final response), timer H (no ACK
    /// for a non-2xx final), or a bound on how long a transaction may wait (see
    /// [`LayerConfig`](super::LayerConfig)). A [`TuEvent::Terminated`] follows.
    Timeout {
        /// The transaction.
        tx: TxKey,
    },
    /// The transaction is gone; its key will match nothing from now on.
    Terminated {
        /// The transaction.
        tx: TxKey,
    },
    /// A response that matches no client transaction (RFC 3261 §17.1.3, §18.1.2): a proxy may
    /// forward it statelessly, a UA drops it.
    StrayResponse {
        /// The response.
        resp: Response,
        /// Where it came from.
        source: Peer,
    },
}

/// Why a call into the layer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// `max_transactions` are live: answer the request with 503 statelessly.
    #[error("too many live transactions")]
    Overloaded,
    /// The message lacks what a transaction needs (Via, CSeq, a magic-cookie branch…).
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// No live transaction has this key (it may have terminated).
    #[error("no such transaction")]
    UnknownTransaction,
    /// The call does not fit the transaction's kind or state.
    #[error("invalid in this transaction state: {0}")]
    InvalidState(&'static str),
    /// A client transaction with this branch and method already exists.
    #[error("a client transaction with this branch and method already exists")]
    DuplicateBranch,
}

/// The layer's output queues, shared with the state machines while they run.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<TuEvent>,
}

impl Outbox {
    pub(crate) fn send(&mut self, dest: Peer, message: Message) {
        self.transmits.push_back(Transmit { dest, message });
    }

    pub(crate) fn event(&mut self, ev: TuEvent) {
        self.events.push_back(ev);
    }
}

/// What a state machine gets when it runs: the time, the configuration, its own key and the
/// output queues.
pub(crate) struct Ctx<'a> {
    pub(crate) now: std::time::Instant,
    pub(crate) cfg: &'a super::layer::LayerConfig,
    pub(crate) key: TxKey,
    pub(crate) out: &'a mut Outbox,
}
