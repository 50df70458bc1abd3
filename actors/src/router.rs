//! The shard router: the transaction user of each SIP shard. It answers what the engine answers
//! on its own, hands REGISTER to the registrar, starts a call actor for each new INVITE (on the
//! shard's own arbiter, so the call shares a thread with its transactions), and routes every
//! later message of a call (by Call-ID and by transaction) to that actor.

use crate::call::{CallActor, CallMsg, CallSetup, Side, TxTag};
use crate::registrar::{Register, Registrar};
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_engine::core::answer;
use switchboard_engine::inspect::inspect;
use switchboard_engine::server::{ShardCx, Shared, TransactionUser, TuFactory};
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{Message, Method, Request, Response, SipHeaders};
use switchboard_engine::transaction::{Peer, TuEvent, TxKey};
use tokio::sync::mpsc::UnboundedSender;

/// What call actors and the registrar post back to their shard.
pub enum Command {
    /// Answer a server transaction.
    Respond {
        /// The transaction.
        tx: TxKey,
        /// The answer.
        resp: Response,
    },
    /// Start a client transaction whose responses go to `owner`.
    Send {
        /// The request (with our Via and a fresh branch).
        req: Request,
        /// Where to send it.
        dest: Peer,
        /// The call its responses go to (`None`: nobody cares, e.g. a CANCEL).
        owner: Option<Recipient<CallMsg>>,
        /// What the call calls it.
        tag: TxTag,
    },
    /// Send a message outside any transaction (ACK for 2xx, 2xx retransmissions).
    Stateless {
        /// The message.
        msg: Message,
        /// Where to.
        dest: Peer,
    },
    /// Route a Call-ID to a call actor.
    Route {
        /// The Call-ID.
        call_id: String,
        /// The actor.
        to: Recipient<CallMsg>,
        /// Which side of the call it is.
        side: Side,
    },
    /// Start a client transaction for engine work outside calls (trunk registration, OPTIONS
    /// probes): its responses and timeout go to `reply` with `tag`.
    Request {
        /// The request (with our Via and a fresh branch; its Call-ID maps to this shard).
        req: Request,
        /// Where to send it.
        dest: Peer,
        /// Where the outcome goes.
        reply: UnboundedSender<ClientReply>,
        /// The sender's name for the request.
        tag: u64,
    },
    /// A call has ended: forget its Call-IDs (those still pointing at `owner`).
    Forget {
        /// The Call-IDs.
        ids: Vec<String>,
        /// The call that owned them (a new call may already reuse a Call-ID, e.g. after 407).
        owner: Option<Recipient<CallMsg>>,
    },
}

/// The outcome of a [`Command::Request`]: each response (provisional ones too), or `None` when
/// the transaction timed out or could not be sent.
pub struct ClientReply {
    /// The tag of the request.
    pub tag: u64,
    /// The response; `None` for a timeout.
    pub response: Option<Response>,
}

/// Handle a call actor keeps to its shard.
#[derive(Clone)]
pub struct ShardHandle {
    /// The shard's command channel.
    pub cmd: UnboundedSender<Command>,
    /// The shard index (for new Call-IDs).
    pub shard: usize,
    /// Engine-wide state.
    pub shared: Arc<Shared>,
}

impl ShardHandle {
    /// Posts a command (the shard outlives its calls; a send error means shutdown).
    pub fn post(&self, c: Command) {
        let _ = self.cmd.send(c);
    }
}

/// Engine-wide services the router needs, shared by all shards.
#[derive(Clone)]
pub struct Services {
    /// The registrar.
    pub registrar: Addr<Registrar>,
    /// Trusted source networks (no digest auth for calls from them).
    pub trusted: Arc<Vec<(std::net::IpAddr, u8)>>,
    /// The database.
    pub storage: switchboard_storage::Storage,
    /// The CDR writer.
    pub cdrs: crate::cdr::CdrSink,
    /// The event bus (`call.*`, `registration.*`, … events).
    pub events: crate::events::Events,
    /// Digest authentication of callers (407).
    pub auth: Arc<switchboard_engine::auth::Authenticator>,
    /// The media runtime and RTP ports.
    pub media: Media,
    /// The dialplan and the IVR's media resources (prompts, TTS, ASR, recordings).
    pub ivr: Arc<crate::call::IvrTools>,
    /// The contact-centre router (queues and agents), when running.
    pub contact: Option<crate::contact::ContactCentre>,
    /// SIP trunks (inbound identification and admission, outbound gateways).
    pub trunks: Arc<crate::trunk::Trunks>,
    /// The live-call directory of the call-control API.
    pub calls: crate::calls_api::CallDirectory,
}

/// Where RTP relays run: a dedicated multi-thread tokio runtime (not an actor mailbox) and the
/// RTP port range.
#[derive(Clone)]
pub struct Media {
    /// The media runtime.
    pub handle: tokio::runtime::Handle,
    /// RTP/RTCP port pairs.
    pub ports: Arc<switchboard_media::PortAllocator>,
    /// The address written in SDP.
    pub sdp_ip: std::net::IpAddr,
}

/// The per-shard router.
pub struct Router {
    shard: ShardHandle,
    services: Services,
    calls: HashMap<String, (Recipient<CallMsg>, Side)>,
    client_tx: HashMap<TxKey, (Recipient<CallMsg>, TxTag)>,
    invite_tx: HashMap<TxKey, Recipient<CallMsg>>,
    engine_tx: HashMap<TxKey, (UnboundedSender<ClientReply>, u64)>,
}

/// Builds the factory the SIP server uses to create each shard's router.
pub fn factory(services: Services) -> TuFactory<Router> {
    Arc::new(move |shard, cmd, shared| {
        let handle = ShardHandle { cmd, shard, shared };
        if shard == 0 {
            // API-originated calls run on this (the first) shard's arbiter: the factory runs
            // on it.
            services.calls.set_origin(crate::calls_api::OriginEnv {
                env: crate::call::CallbackEnv {
                    services: services.clone(),
                    shard: handle.clone(),
                },
                arbiter: actix_rt::Arbiter::current(),
            });
            if let Some(cc) = &services.contact {
                // Callbacks place their calls through the first shard.
                cc.set_callback_env(crate::call::CallbackEnv {
                    services: services.clone(),
                    shard: handle.clone(),
                });
            }
        }
        services.trunks.attach_shard(handle.clone());
        Router {
            shard: handle,
            services: services.clone(),
            calls: HashMap::new(),
            client_tx: HashMap::new(),
            invite_tx: HashMap::new(),
            engine_tx: HashMap::new(),
        }
    })
}

impl Router {
    fn new_request(
        &mut self,
        cx: &mut ShardCx<'_, Command>,
        tx: TxKey,
        req: Request,
        source: Peer,
        cancels: Option<TxKey>,
    ) {
        if let Some(resp) = inspect(&req, &cx.shared.local) {
            return respond(cx, &tx, resp);
        }
        let call_id = req.call_id().unwrap_or_default().to_string();
        if req.method == Method::Cancel {
            match cancels.and_then(|t| self.invite_tx.get(&t)) {
                Some(actor) => actor.do_send(CallMsg::Request {
                    tx,
                    req,
                    source,
                    side: Side::A,
                }),
                None => respond(cx, &tx, response(&req, 481)),
            }
            return;
        }
        if let Some((actor, side)) = self.calls.get(&call_id) {
            if req.in_dialog() || req.method != Method::Invite {
                actor.do_send(CallMsg::Request {
                    tx,
                    req,
                    source,
                    side: *side,
                });
                return;
            }
        }
        if matches!(req.method, Method::Invite | Method::Register)
            && !req.in_dialog()
            && self.services.trunks.banned(source.addr.ip(), cx.now)
        {
            let r = switchboard_engine::sip::build::response_with_reason(
                &req,
                403,
                "Forbidden (banned after failed authentications)",
            );
            return respond(cx, &tx, r);
        }
        match req.method {
            Method::Invite if req.in_dialog() => respond(cx, &tx, response(&req, 481)),
            Method::Invite => {
                // Carrier calls: identified by source or registered Contact, admitted under
                // the trunk's limits (503 + Retry-After here, before any actor exists).
                let mut trunk = None;
                if !self.services.trunks.is_empty() {
                    if let Some(t) = self.services.trunks.identify(source.addr.ip(), &req.uri) {
                        match t.admit(cx.now, true) {
                            Ok(lease) => trunk = Some(lease),
                            Err(why) => {
                                let mut r = switchboard_engine::sip::build::response_with_reason(
                                    &req,
                                    503,
                                    why.reason(),
                                );
                                r.headers.push(
                                    switchboard_engine::sip::HeaderName::RetryAfter,
                                    self.services.trunks.retry_after(why).to_string(),
                                );
                                tracing::debug!(trunk = %t.name, ?why, "trunk call refused");
                                return respond(cx, &tx, r);
                            }
                        }
                    }
                }
                let setup = CallSetup {
                    tx,
                    invite: req,
                    source,
                    shard: self.shard.clone(),
                    services: self.services.clone(),
                    trunk,
                };
                let actor = CallActor::new(setup).start().recipient();
                self.invite_tx.insert(tx, actor.clone());
                self.calls.insert(call_id, (actor, Side::A));
            }
            Method::Register => {
                let reply = self.shard.cmd.clone();
                let trunks = self.services.trunks.clone();
                let ip = source.addr.ip();
                let fut = self.services.registrar.send(Register { req, source });
                actix_rt::spawn(async move {
                    if let Ok(resp) = fut.await {
                        if resp.status == 403 {
                            trunks.auth_failed(ip, std::time::Instant::now());
                        }
                        let _ = reply.send(Command::Respond { tx, resp });
                    }
                });
            }
            _ => respond(cx, &tx, answer(&req, false)),
        }
    }
}

fn respond(cx: &mut ShardCx<'_, Command>, tx: &TxKey, resp: Response) {
    if let Err(e) = cx.layer.send_response(cx.now, tx, resp) {
        tracing::debug!(error = %e, "answer not sent");
    }
}

impl TransactionUser for Router {
    type Command = Command;

    fn on_event(&mut self, cx: &mut ShardCx<'_, Command>, ev: TuEvent) {
        match ev {
            TuEvent::Request {
                tx,
                req,
                source,
                cancels,
            } => self.new_request(cx, tx, req, source, cancels),
            TuEvent::AckFor2xx { req, .. } => {
                if let Some((actor, side)) = req.call_id().and_then(|c| self.calls.get(c)) {
                    actor.do_send(CallMsg::Ack { side: *side });
                }
            }
            TuEvent::Response { tx, resp } => {
                if let Some((actor, tag)) = self.client_tx.get(&tx) {
                    actor.do_send(CallMsg::Response { tag: *tag, resp });
                } else if let Some((reply, tag)) = self.engine_tx.get(&tx) {
                    let _ = reply.send(ClientReply {
                        tag: *tag,
                        response: Some(resp),
                    });
                }
            }
            TuEvent::Timeout { tx } => {
                if let Some((actor, tag)) = self.client_tx.get(&tx) {
                    actor.do_send(CallMsg::Timeout { tag: *tag });
                } else if let Some((reply, tag)) = self.engine_tx.remove(&tx) {
                    let _ = reply.send(ClientReply {
                        tag,
                        response: None,
                    });
                }
            }
            TuEvent::Terminated { tx } => {
                self.engine_tx.remove(&tx);
                self.client_tx.remove(&tx);
                self.invite_tx.remove(&tx);
                switchboard_engine::memory::shrink_sparse(&mut self.client_tx);
                switchboard_engine::memory::shrink_sparse(&mut self.engine_tx);
                switchboard_engine::memory::shrink_sparse(&mut self.invite_tx);
            }
            TuEvent::StrayResponse { resp, source } => {
                tracing::debug!(status = resp.status, peer = %source.addr, "stray response dropped");
            }
        }
    }

    fn on_command(&mut self, cx: &mut ShardCx<'_, Command>, cmd: Command) {
        match cmd {
            Command::Respond { tx, resp } => respond(cx, &tx, resp),
            Command::Send {
                req,
                dest,
                owner,
                tag,
            } => match cx.layer.send_request(cx.now, req, dest) {
                Ok(tx) => {
                    if let Some(owner) = owner {
                        self.client_tx.insert(tx, (owner, tag));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send request");
                    if let Some(owner) = owner {
                        owner.do_send(CallMsg::Timeout { tag });
                    }
                }
            },
            Command::Request {
                req,
                dest,
                reply,
                tag,
            } => match cx.layer.send_request(cx.now, req, dest) {
                Ok(tx) => {
                    self.engine_tx.insert(tx, (reply, tag));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot send request");
                    let _ = reply.send(ClientReply {
                        tag,
                        response: None,
                    });
                }
            },
            Command::Stateless { msg, dest } => cx.layer.send_stateless(msg, dest),
            Command::Route { call_id, to, side } => {
                self.calls.insert(call_id, (to, side));
            }
            Command::Forget { ids, owner } => {
                for id in ids {
                    let same = match (&owner, self.calls.get(&id)) {
                        (Some(o), Some((a, _))) => o == a,
                        (None, _) => true,
                        (_, None) => false,
                    };
                    if same {
                        self.calls.remove(&id);
                    }
                }
                switchboard_engine::memory::shrink_sparse(&mut self.calls);
            }
        }
    }
}
