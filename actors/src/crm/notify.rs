//! Ticket notifications, the I/O shell: a consumer of the event bus (`ticket.*`, from the head
//! at start, like the event webhooks) turns each event into notices (`notice.rs`), reads the
//! ticket and its requester, and
//!
//! * queues a signed webhook per matching `[[tickets.notifications.webhooks]]`: one lane per
//!   (webhook, ticket), delivered strictly in order, each POST retried with back-off
//!   (0.5 s doubling, at most 30 s, [`ATTEMPTS`] tries) before it is dropped with an error;
//!   lanes of other tickets go on meanwhile, so one failing ticket never holds up another;
//! * sends the e-mail of every matching `[[tickets.notifications.email]]` rule, one message per
//!   recipient, each in a task of its own.
//!
//! Nothing here runs in an API request: a failure is logged and counted
//! (`switchboard_ticket_notifications_total{channel, result}`), never returned to a caller.
//! Also starts the SLA sweeper (`sla.rs`), whose `ticket.sla_breached` events come back here.

use super::email::Mailer;
use super::notice::{self, Notice, TicketView};
use super::Crm;
use crate::events::{Event, Events, Filter, Next, Subscription};
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;
use switchboard_engine::tickets_config::{NotificationsConfig, TicketsConfig};

/// Delivery attempts of one webhook notice.
pub const ATTEMPTS: u32 = 6;
/// Wait before the first retry (doubles each time).
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Notices one lane may hold; beyond that the oldest is dropped (and counted).
const LANE_CAPACITY: usize = 1_000;

/// Starts the notifier (when webhooks or e-mail rules are configured) and the SLA sweeper
/// (when `sla_sweep_secs` > 0) on the current actix arbiter. Errors name the config key.
pub fn start(
    crm: Crm,
    events: &Events,
    config: &TicketsConfig,
    registry: &Registry,
) -> Result<(), String> {
    let n = &config.notifications;
    let mailer = match (&n.smtp, n.email.is_empty()) {
        (Some(smtp), false) => Some(Mailer::new(smtp)?),
        _ => None,
    };
    let counter = IntCounterVec::new(
        Opts::new(
            "switchboard_ticket_notifications_total",
            "Ticket notifications by channel (webhook, email) and result (sent, retried, failed, dropped)",
        ),
        &["channel", "result"],
    )
    .map_err(|e| e.to_string())?;
    if let Err(e) = registry.register(Box::new(counter.clone())) {
        tracing::warn!(error = %e, "ticket notification metrics not registered");
    }
    if !n.webhooks.is_empty() || mailer.is_some() {
        let filter = Filter::from_patterns(["ticket.*"])
            .map_err(|e| format!("ticket notifications: {e}"))?;
        let sub = events.subscribe(events.head(), filter, events.consumer_buffer());
        let ctx = Rc::new(Ctx {
            crm: crm.clone(),
            config: n.clone(),
            mailer,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(10))
                .finish(),
            lanes: RefCell::default(),
            counter,
        });
        actix_rt::spawn(run(sub, ctx));
        tracing::info!(
            webhooks = n.webhooks.len(),
            email_rules = n.email.len(),
            "ticket notifications started"
        );
    }
    if config.sla_sweep_secs > 0 {
        super::sla::start(crm, Duration::from_secs(config.sla_sweep_secs));
    }
    Ok(())
}

struct Ctx {
    crm: Crm,
    config: NotificationsConfig,
    mailer: Option<Mailer>,
    client: awc::Client,
    /// Queued webhook bodies per (webhook index, ticket); a key is present while its lane's
    /// task runs.
    lanes: RefCell<HashMap<(usize, i64), VecDeque<String>>>,
    counter: IntCounterVec,
}

impl Ctx {
    fn count(&self, channel: &str, result: &str) {
        self.counter.with_label_values(&[channel, result]).inc();
    }
}

async fn run(mut sub: Subscription, ctx: Rc<Ctx>) {
    loop {
        match sub.next().await {
            Next::Event(e) => handle(&ctx, &e).await,
            Next::Cut => sub.resume(),
            Next::Failed(why) => {
                tracing::warn!(error = %why, "ticket notifications cannot replay");
                actix_rt::time::sleep(Duration::from_secs(5)).await;
                sub.resume();
            }
        }
    }
}

async fn handle(ctx: &Rc<Ctx>, e: &Event) {
    let data: Value = match serde_json::from_str(&e.data) {
        Ok(v) => v,
        Err(_) => return,
    };
    let notices = notice::notices_of(&e.kind, &data);
    let Some(first) = notices.first() else { return };
    let view = match view_of(ctx, first).await {
        Ok(Some(v)) => v,
        Ok(None) => return,
        Err(why) => {
            tracing::warn!(ticket = first.ticket_id, error = %why, "ticket notification skipped");
            ctx.count("all", "failed");
            return;
        }
    };
    for n in &notices {
        let mut view = view.clone();
        if let Some(to) = n.change.get("status_to").and_then(Value::as_str) {
            view.status = to.to_string();
        }
        for (i, hook) in ctx.config.webhooks.iter().enumerate() {
            if notice::wants(&hook.events, n.kind) {
                let body = notice::webhook_body(n, &view, e.seq, e.at_ms);
                enqueue(ctx, i, n.ticket_id, body);
            }
        }
        if let Some(mailer) = &ctx.mailer {
            let vars = notice::vars(n, &view);
            for rule in &ctx.config.email {
                if !notice::wants(&rule.events, n.kind) {
                    continue;
                }
                let subject = notice::subject_line(&notice::render(
                    rule.subject.as_deref().unwrap_or(notice::DEFAULT_SUBJECT),
                    &vars,
                ));
                let body =
                    notice::render(rule.body.as_deref().unwrap_or(notice::DEFAULT_BODY), &vars);
                for to in notice::recipients(&rule.to, n, &view, &ctx.config) {
                    let (mailer, ctx) = (mailer.clone(), ctx.clone());
                    let (subject, body, ticket) = (subject.clone(), body.clone(), n.ticket_id);
                    actix_rt::spawn(async move {
                        match mailer.send(&to, &subject, &body).await {
                            Ok(()) => ctx.count("email", "sent"),
                            Err(why) => {
                                tracing::warn!(ticket, %to, error = %why, "ticket e-mail failed");
                                ctx.count("email", "failed");
                            }
                        }
                    });
                }
            }
        }
    }
}

/// The ticket as messages show it, with its requester's address and, for a public note, the
/// note's text. `None` when the ticket is gone.
async fn view_of(ctx: &Ctx, n: &Notice) -> Result<Option<TicketView>, String> {
    let s = ctx.crm.storage();
    let Some(t) = s.ticket(n.ticket_id).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let requester_email = s
        .contact(t.contact_id)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|c| {
            c.identities
                .into_iter()
                .find(|i| i.kind == "email")
                .map(|i| i.value)
        });
    let public_note = match (n.kind, n.change.get("note_id").and_then(Value::as_i64)) {
        ("note_added", Some(id)) if !n.is_internal() => s
            .ticket_notes(t.id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|x| x.id == id && !x.internal)
            .map(|x| x.body),
        _ => None,
    };
    Ok(Some(TicketView {
        id: t.id,
        subject: t.subject,
        status: t.status,
        group: t.group_name,
        assignee: t.assignee,
        contact_id: t.contact_id,
        requester_email,
        link: notice::link(&ctx.config, n.ticket_id),
        public_note,
    }))
}

/// Queues `body` on the lane of (`hook`, `ticket`), starting the lane's task if idle.
fn enqueue(ctx: &Rc<Ctx>, hook: usize, ticket: i64, body: String) {
    let mut lanes = ctx.lanes.borrow_mut();
    match lanes.get_mut(&(hook, ticket)) {
        Some(q) => {
            if q.len() >= LANE_CAPACITY {
                // Keep the one in flight (the front) and drop the next oldest.
                q.remove(1);
                tracing::error!(ticket, "ticket webhook lane full: oldest notice dropped");
                ctx.count("webhook", "dropped");
            }
            q.push_back(body);
        }
        None => {
            lanes.insert((hook, ticket), VecDeque::from([body]));
            actix_rt::spawn(drain(ctx.clone(), hook, ticket));
        }
    }
}

/// Delivers a lane's notices in order until it is empty, then removes it.
async fn drain(ctx: Rc<Ctx>, hook: usize, ticket: i64) {
    let key = (hook, ticket);
    let Some(h) = ctx.config.webhooks.get(hook).cloned() else {
        ctx.lanes.borrow_mut().remove(&key);
        return;
    };
    loop {
        let next = ctx
            .lanes
            .borrow()
            .get(&key)
            .and_then(|q| q.front().cloned());
        let Some(body) = next else {
            ctx.lanes.borrow_mut().remove(&key);
            return;
        };
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            match crate::signing::post(&ctx.client, &h.url, &h.secret, &body).await {
                Ok(()) => {
                    ctx.count("webhook", "sent");
                    break;
                }
                Err(why) if attempt < ATTEMPTS => {
                    tracing::warn!(url = %h.url, ticket, attempt, error = %why, retry_in_ms = wait.as_millis() as u64, "ticket webhook failed");
                    ctx.count("webhook", "retried");
                    actix_rt::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_RETRY);
                }
                Err(why) => {
                    tracing::error!(url = %h.url, ticket, error = %why, "ticket webhook dropped after retries");
                    ctx.count("webhook", "failed");
                }
            }
        }
        let mut lanes = ctx.lanes.borrow_mut();
        if let Some(q) = lanes.get_mut(&key) {
            q.pop_front();
            if q.is_empty() {
                lanes.remove(&key);
                return;
            }
        }
    }
}
