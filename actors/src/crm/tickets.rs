//! Ticket rules, free of I/O: the status flow, custom-field validation against a ticket type,
//! group configuration (business hours and SLA targets) and the SLA view (due times, pause,
//! breach) of a ticket at a given `now`.
//!
//! SLA model: each target (first response, resolution) is an amount of business time from the
//! ticket's creation. Time spent `pending` does not count: on leaving `pending` the business
//! time of the pause is added to `paused_business_ms`, which extends every due time; while
//! pending the timers stand still (a timer that was already late stays breached).

use super::hours::{BusinessHours, HoursSpec};
use super::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use switchboard_storage::Ticket;

/// Every status, in flow order.
pub const STATUSES: [&str; 5] = ["new", "open", "pending", "solved", "closed"];

/// Whether a ticket may go from `from` to `to` (staying put is allowed, except when closed).
pub fn transition_allowed(from: &str, to: &str) -> bool {
    if from == to {
        return from != "closed";
    }
    matches!(
        (from, to),
        ("new", "open" | "pending" | "solved")
            | ("open", "pending" | "solved")
            | ("pending", "open" | "solved")
            | ("solved", "open" | "closed")
    )
}

/// Applies a status change at `now` with the group's calendar: pause bookkeeping and solve
/// time. Refuses an illegal transition with 409 naming `status`.
pub fn change_status(
    t: &mut Ticket,
    to: &str,
    hours: &BusinessHours,
    now_ms: i64,
) -> Result<(), ApiError> {
    if !STATUSES.contains(&to) {
        return Err(ApiError::bad(
            "status",
            "one of new, open, pending, solved, closed",
        ));
    }
    if !transition_allowed(&t.status, to) {
        return Err(ApiError::conflict(
            "status",
            &format!("a ticket cannot go from {} to {to}", t.status),
        ));
    }
    if t.status == to {
        return Ok(());
    }
    if let Some(since) = t.paused_since_ms.take() {
        t.paused_business_ms += hours.between(since, now_ms);
    }
    match to {
        "pending" => t.paused_since_ms = Some(now_ms),
        "solved" => t.solved_at_ms = Some(now_ms),
        "open" => t.solved_at_ms = None,
        _ => {}
    }
    t.status = to.to_string();
    t.updated_at_ms = now_ms;
    Ok(())
}

/// A group (department): its calendar and SLA targets.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// IANA time zone of its business hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Weekly hours, `{"mon": [["09:00","17:00"]], …}`; absent: 24×7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<BTreeMap<String, Vec<[String; 2]>>>,
    /// Closed dates (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holidays: Vec<String>,
    /// First-response target in business minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_response_mins: Option<u32>,
    /// Resolution target in business minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_mins: Option<u32>,
}

impl GroupSpec {
    /// Its calendar; errors name the field.
    pub fn hours(&self) -> Result<BusinessHours, ApiError> {
        BusinessHours::from_spec(&HoursSpec {
            time_zone: self.time_zone.clone(),
            hours: self.hours.clone(),
            holidays: self.holidays.clone(),
        })
        .map_err(|(field, e)| ApiError::bad(&field, &e))
    }
}

/// One SLA timer as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Timer {
    /// Target, business minutes.
    pub target_mins: u32,
    /// When it is due (epoch ms) with the pauses so far; `None` if the calendar never opens.
    pub due_at_ms: Option<i64>,
    /// When it was met, if it was.
    pub met_at_ms: Option<i64>,
    /// Late (met late, or not met and past due).
    pub breached: bool,
}

/// The SLA view of a ticket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlaView {
    /// Timers stand still (the ticket is pending).
    pub paused: bool,
    /// Business time spent pending, ms (including the current pause).
    pub paused_business_ms: i64,
    /// First response timer, if the group sets one.
    pub first_response: Option<Timer>,
    /// Resolution timer, if the group sets one.
    pub resolution: Option<Timer>,
}

/// The SLA view of `t` at `now`.
pub fn sla(t: &Ticket, group: &GroupSpec, hours: &BusinessHours, now_ms: i64) -> SlaView {
    // While pending the clock stopped at the pause; due times move once it resumes.
    let clock = t.paused_since_ms.unwrap_or(now_ms);
    let timer = |mins: Option<u32>, met: Option<i64>| {
        mins.map(|m| {
            let due = hours.add(
                t.created_at_ms,
                i64::from(m) * 60_000 + t.paused_business_ms,
            );
            let at = met.unwrap_or(clock);
            Timer {
                target_mins: m,
                due_at_ms: due,
                met_at_ms: met,
                breached: due.is_some_and(|d| at > d),
            }
        })
    };
    SlaView {
        paused: t.paused_since_ms.is_some(),
        paused_business_ms: t.paused_business_ms
            + t.paused_since_ms.map_or(0, |s| hours.between(s, now_ms)),
        first_response: timer(group.first_response_mins, t.first_response_at_ms),
        resolution: timer(group.resolution_mins, t.solved_at_ms),
    }
}

/// A custom field definition of a ticket type.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    /// `string`, `number`, `integer` or `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Must be present.
    #[serde(default)]
    pub required: bool,
    /// For strings: a regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// For strings: longest accepted value (characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
}

/// A ticket type: its custom fields.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TicketTypeSpec {
    /// Field name → definition.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDef>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl TicketTypeSpec {
    /// Checks the definitions (types known, patterns compile); errors name the field.
    pub fn check(&self) -> Result<(), ApiError> {
        for (name, def) in &self.fields {
            let field = format!("fields.{name}");
            if !valid_name(name) {
                return Err(ApiError::bad(
                    &field,
                    "field names are 1–64 letters, digits, _ or -",
                ));
            }
            if !["string", "number", "integer", "boolean"].contains(&def.kind.as_str()) {
                return Err(ApiError::bad(
                    &format!("{field}.type"),
                    "string, number, integer or boolean",
                ));
            }
            if let Some(p) = &def.pattern {
                if def.kind != "string" {
                    return Err(ApiError::bad(
                        &format!("{field}.pattern"),
                        "a pattern applies to strings only",
                    ));
                }
                regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    ApiError::bad(&format!("{field}.pattern"), &format!("bad pattern: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// Validates ticket field values: unknown fields, missing required ones, wrong types and
    /// pattern mismatches are 400 naming `fields.<name>`.
    pub fn validate(&self, values: &Map<String, Value>) -> Result<(), ApiError> {
        for name in values.keys() {
            if !self.fields.contains_key(name) {
                return Err(ApiError::bad(
                    &format!("fields.{name}"),
                    "not a field of this ticket type",
                ));
            }
        }
        for (name, def) in &self.fields {
            let field = format!("fields.{name}");
            let Some(v) = values.get(name).filter(|v| !v.is_null()) else {
                if def.required {
                    return Err(ApiError::bad(&field, "required"));
                }
                continue;
            };
            let ok = match def.kind.as_str() {
                "string" => v.is_string(),
                "number" => v.is_number(),
                "integer" => v.is_i64() || v.is_u64(),
                "boolean" => v.is_boolean(),
                _ => false,
            };
            if !ok {
                return Err(ApiError::bad(&field, &format!("a {}", def.kind)));
            }
            if let Some(s) = v.as_str() {
                if def.max_length.is_some_and(|m| s.chars().count() > m) {
                    return Err(ApiError::bad(&field, "too long"));
                }
                if let Some(p) = &def.pattern {
                    let re = regex::Regex::new(&format!("^(?:{p})$"))
                        .map_err(|_| ApiError::bad(&field, "the type's pattern is invalid"))?;
                    if !re.is_match(s) {
                        return Err(ApiError::bad(&field, &format!("must match {p}")));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn ticket(created: i64) -> Ticket {
        Ticket {
            status: "new".into(),
            created_at_ms: created,
            ..Ticket::default()
        }
    }

    #[test]
    fn status_flow() {
        let ok = [
            ("new", "open"),
            ("new", "pending"),
            ("new", "solved"),
            ("open", "pending"),
            ("pending", "open"),
            ("pending", "solved"),
            ("solved", "open"),
            ("solved", "closed"),
            ("open", "open"),
        ];
        for (a, b) in ok {
            assert!(transition_allowed(a, b), "{a} -> {b}");
        }
        let refused = [
            ("new", "closed"),
            ("open", "new"),
            ("open", "closed"),
            ("closed", "open"),
            ("closed", "closed"),
            ("solved", "pending"),
        ];
        for (a, b) in refused {
            assert!(!transition_allowed(a, b), "{a} -> {b}");
        }
        let mut t = ticket(0);
        let e = change_status(&mut t, "closed", &BusinessHours::always(), 1).expect_err("409");
        assert_eq!((e.status, e.field.as_deref()), (409, Some("status")));
        let e = change_status(&mut t, "bogus", &BusinessHours::always(), 1).expect_err("400");
        assert_eq!((e.status, e.field.as_deref()), (400, Some("status")));
        assert_eq!(t.status, "new");
    }

    #[test]
    fn pending_pauses_the_clock() {
        let always = BusinessHours::always();
        let g = GroupSpec {
            first_response_mins: Some(60),
            resolution_mins: Some(240),
            ..GroupSpec::default()
        };
        let mut t = ticket(0);
        change_status(&mut t, "open", &always, H / 2).expect("open");
        change_status(&mut t, "pending", &always, H).expect("pending");
        // Three hours later, still pending: the resolution timer stands still (due at 4 h).
        let v = sla(&t, &g, &always, 4 * H);
        assert!(v.paused);
        assert_eq!(v.paused_business_ms, 3 * H);
        let r = v.resolution.expect("timer");
        assert_eq!((r.due_at_ms, r.breached), (Some(4 * H), false));
        // The first response was already late when it paused (due at 1 h, paused at 1 h: not
        // later than due, so not breached yet).
        assert!(!v.first_response.expect("fr").breached);
        // Resumed at 4 h: due times move by the 3 h pause.
        change_status(&mut t, "open", &always, 4 * H).expect("resume");
        let v = sla(&t, &g, &always, 5 * H);
        assert!(!v.paused);
        let r = v.resolution.expect("timer");
        assert_eq!((r.due_at_ms, r.breached), (Some(7 * H), false));
        let fr = v.first_response.expect("fr");
        assert_eq!((fr.due_at_ms, fr.breached), (Some(4 * H), true));
        // Solved at 8 h: the resolution was met late.
        change_status(&mut t, "solved", &always, 8 * H).expect("solve");
        let r = sla(&t, &g, &always, 9 * H).resolution.expect("timer");
        assert_eq!((r.met_at_ms, r.breached), (Some(8 * H), true));
    }

    #[test]
    fn fields_are_validated_by_name() {
        let spec: TicketTypeSpec = serde_json::from_value(serde_json::json!({
            "fields": {
                "order_number": {"type": "string", "required": true, "pattern": "ORD-[0-9]{4}"},
                "waybill": {"type": "string", "max_length": 12},
                "items": {"type": "integer"}
            }
        }))
        .expect("spec");
        spec.check().expect("valid");
        let check = |v: Value| {
            spec.validate(v.as_object().expect("object"))
                .err()
                .and_then(|e| e.field)
        };
        assert_eq!(check(serde_json::json!({"order_number": "ORD-1234"})), None);
        assert_eq!(
            check(serde_json::json!({})),
            Some("fields.order_number".into())
        );
        assert_eq!(
            check(serde_json::json!({"order_number": "ORD-12"})),
            Some("fields.order_number".into())
        );
        assert_eq!(
            check(serde_json::json!({"order_number": "ORD-1234", "items": 1.5})),
            Some("fields.items".into())
        );
        assert_eq!(
            check(serde_json::json!({"order_number": "ORD-1234", "waybill": "W".repeat(13)})),
            Some("fields.waybill".into())
        );
        assert_eq!(
            check(serde_json::json!({"order_number": "ORD-1234", "colour": "red"})),
            Some("fields.colour".into())
        );
        let bad: TicketTypeSpec = serde_json::from_value(serde_json::json!({
            "fields": {"x": {"type": "string", "pattern": "("}}
        }))
        .expect("spec");
        assert_eq!(
            bad.check().expect_err("bad").field.as_deref(),
            Some("fields.x.pattern")
        );
    }
}
