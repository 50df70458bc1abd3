//! The SLA sweeper: every `[tickets] sla_sweep_secs` it reads the tickets whose timers are
//! neither met nor already announced, computes their SLA view with the business-hours rules of
//! `tickets.rs` (pauses while pending included), and for each timer now late sets its breach
//! mark and publishes `ticket.sla_breached` (which the notifier turns into webhooks and mail).
//!
//! The mark is a conditional update, so a breach is announced once even with several nodes
//! sweeping the same database or a sweep repeated after a restart. Due times are a pure
//! function of the stored row, the group's calendar and `now`, so nothing is scheduled per
//! ticket: a sweep finds what is late.

use super::tickets::{self, GroupSpec};
use super::Crm;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use switchboard_storage::{ConfigKind, SlaTimer, StorageError, Ticket};

/// Tickets read per page.
const PAGE: i64 = 500;

/// The timers of `t` that are late at `now` and not yet announced, with their due times.
pub fn due_breaches(t: &Ticket, group: &GroupSpec, now_ms: i64) -> Vec<(SlaTimer, i64)> {
    if t.status == "closed" {
        return Vec::new();
    }
    let hours = match group.hours() {
        Ok(h) => h,
        Err(_) => return Vec::new(),
    };
    let view = tickets::sla(t, group, &hours, now_ms);
    let mut out = Vec::new();
    if let Some(fr) = &view.first_response {
        let open = t.first_response_at_ms.is_none() && t.status != "solved";
        if open && t.breach_first_response_at_ms.is_none() && fr.breached {
            if let Some(due) = fr.due_at_ms {
                out.push((SlaTimer::FirstResponse, due));
            }
        }
    }
    if let Some(r) = &view.resolution {
        if t.solved_at_ms.is_none() && t.breach_resolution_at_ms.is_none() && r.breached {
            if let Some(due) = r.due_at_ms {
                out.push((SlaTimer::Resolution, due));
            }
        }
    }
    out
}

/// One sweep at `now`: marks and announces every late timer. Returns how many.
pub async fn sweep(crm: &Crm, now_ms: i64) -> Result<usize, StorageError> {
    let mut groups: HashMap<String, GroupSpec> = HashMap::new();
    let mut after = 0;
    let mut announced = 0;
    loop {
        let page = crm.storage().tickets_for_sla_sweep(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for t in &page {
            let Some(name) = &t.group_name else { continue };
            if !groups.contains_key(name) {
                let spec = crm
                    .storage()
                    .crm_config(ConfigKind::Group, name)
                    .await?
                    .and_then(|row| serde_json::from_str::<GroupSpec>(&row.config).ok())
                    .unwrap_or_default();
                groups.insert(name.clone(), spec);
            }
            let Some(group) = groups.get(name) else {
                continue;
            };
            for (timer, due) in due_breaches(t, group, now_ms) {
                if crm.storage().mark_sla_breach(t.id, timer, now_ms).await? {
                    announced += 1;
                    tracing::info!(ticket = t.id, timer = timer.name(), "ticket SLA breached");
                    crm.publish(
                        "ticket.sla_breached",
                        json!({
                            "ticket_id": t.id, "timer": timer.name(), "due_at_ms": due,
                            "status": t.status, "group": t.group_name, "assignee": t.assignee,
                        }),
                    );
                }
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(announced)
}

/// Sweeps every `every` on the current actix arbiter, for the life of the process.
pub fn start(crm: Crm, every: Duration) {
    actix_rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = sweep(&crm, switchboard_storage::now_ms()).await {
                tracing::warn!(error = %e, "SLA sweep failed; retrying at the next tick");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn late_timers_are_found_once() {
        let g = GroupSpec {
            first_response_mins: Some(10),
            resolution_mins: Some(60),
            ..GroupSpec::default()
        };
        let mut t = Ticket {
            status: "new".into(),
            created_at_ms: 0,
            group_name: Some("g".into()),
            ..Ticket::default()
        };
        assert!(due_breaches(&t, &g, 10 * MIN).is_empty(), "due, not late");
        assert_eq!(
            due_breaches(&t, &g, 11 * MIN),
            [(SlaTimer::FirstResponse, 10 * MIN)]
        );
        t.breach_first_response_at_ms = Some(11 * MIN);
        assert!(
            due_breaches(&t, &g, 30 * MIN).is_empty(),
            "announced already"
        );
        assert_eq!(
            due_breaches(&t, &g, 61 * MIN),
            [(SlaTimer::Resolution, 60 * MIN)]
        );
        // Pending since minute 5: the clock stopped before either target.
        let mut p = Ticket {
            status: "pending".into(),
            paused_since_ms: Some(5 * MIN),
            ..t.clone()
        };
        p.breach_first_response_at_ms = None;
        assert!(due_breaches(&p, &g, 600 * MIN).is_empty());
        // Met in time: nothing; closed: nothing.
        let mut met = t.clone();
        met.first_response_at_ms = Some(MIN);
        met.breach_first_response_at_ms = None;
        met.solved_at_ms = Some(2 * MIN);
        met.status = "solved".into();
        assert!(due_breaches(&met, &g, 600 * MIN).is_empty());
        let closed = Ticket {
            status: "closed".into(),
            ..Ticket::default()
        };
        assert!(due_breaches(&closed, &g, 600 * MIN).is_empty());
    }
}
