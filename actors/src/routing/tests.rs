//! Router scenarios with simulated time. Every time is a plain number; nothing sleeps or reads a
//! clock, so each test is deterministic.

use super::events::{EventKind, Excluded, ExitReason, Explanation, OfferOutcome, StepReason, Why};
use super::metrics::{Metrics, MetricsWindow};
use super::queue::QueueEvent;
use super::router::RescindReason;
use super::*;
use serde_json::json;

const Q1: QueueId = QueueId(1);
const Q2: QueueId = QueueId(2);

fn a(n: u32) -> AgentId {
    AgentId(n)
}

fn i(n: u64) -> InteractionId {
    InteractionId(n)
}

/// A router with queues 1 and 2 (offer timeout 10 s, no wrap-up).
fn router() -> Router {
    let mut r = Router::new(RouterConfig::default());
    for q in [Q1, Q2] {
        r.add_queue(
            q,
            QueueConfig {
                offer_timeout_ms: 10_000,
                wrap_up_ms: Some(0),
                ..QueueConfig::default()
            },
        )
        .unwrap();
    }
    r
}

fn spec(id: u32, skills: &[(&str, u8)], queues: &[QueueId]) -> AgentSpec {
    AgentSpec {
        id: a(id),
        skills: skills.iter().map(|(s, l)| ((*s).to_owned(), *l)).collect(),
        languages: vec!["en".into()],
        attributes: json!({}),
        capacity: Capacity::default(),
        profile: queues
            .iter()
            .map(|&queue| ProfileEntry {
                queue,
                priority: 1,
                delay_ms: 0,
            })
            .collect(),
        auto_pause_after: 0,
    }
}

fn new(id: u64, channel: Channel, queue: Option<QueueId>, priority: u32) -> NewInteraction {
    NewInteraction {
        id: i(id),
        channel,
        customer: Customer::default(),
        attributes: json!({}),
        priority,
        queue,
    }
}

/// Adds an agent and makes it available at `now`.
fn login(r: &mut Router, now: u64, s: AgentSpec) {
    let id = s.id;
    r.handle(now, Input::AddAgent(s)).unwrap();
    r.handle(
        now,
        Input::SetPresence {
            agent: id,
            presence: Presence::Available,
        },
    )
    .unwrap();
}

fn drain(r: &mut Router) -> Vec<Output> {
    std::iter::from_fn(|| r.poll_output()).collect()
}

fn offers(outs: &[Output]) -> Vec<(InteractionId, AgentId)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Offer {
                interaction, agent, ..
            } => Some((*interaction, *agent)),
            _ => None,
        })
        .collect()
}

fn decisions(outs: &[Output]) -> Vec<&Decision> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Explain(Explanation::Decision(d)) => Some(d),
            _ => None,
        })
        .collect()
}

fn events(outs: &[Output]) -> Vec<RoutingEvent> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn accept(r: &mut Router, now: u64, id: u64, agent: u32) {
    r.handle(
        now,
        Input::Accept {
            interaction: i(id),
            agent: a(agent),
        },
    )
    .unwrap();
}

#[test]
fn priority_beats_age() {
    let mut r = router();
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    r.handle(10, Input::Enqueue(new(2, Channel::Voice, Some(Q1), 5)))
        .unwrap();
    drain(&mut r);
    login(&mut r, 20, spec(1, &[], &[Q1]));
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(1))]);
}

#[test]
fn fifo_within_priority() {
    let mut r = router();
    for n in 1..=3 {
        r.handle(n, Input::Enqueue(new(n, Channel::Voice, Some(Q1), 1)))
            .unwrap();
    }
    assert_eq!(r.position(i(1)).map(|p| p.0), Some(1));
    assert_eq!(r.position(i(3)).map(|p| p.0), Some(3));
    login(&mut r, 10, spec(1, &[], &[Q1]));
    let mut order = Vec::new();
    for (t, n) in [(20, 1), (30, 2), (40, 3)] {
        let o = offers(&drain(&mut r));
        assert_eq!(o, vec![(i(n), a(1))]);
        order.push(o[0].0);
        accept(&mut r, t, n, 1);
        r.handle(t + 5, Input::Complete { interaction: i(n) })
            .unwrap();
    }
    assert_eq!(order, vec![i(1), i(2), i(3)]);
}

#[test]
fn boost_counts_as_age() {
    let mut r = router();
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 1)))
        .unwrap();
    r.handle(1_000, Input::Enqueue(new(2, Channel::Voice, Some(Q1), 1)))
        .unwrap();
    r.handle(
        1_000,
        Input::Reprioritise {
            interaction: i(2),
            priority: 1,
            boost_ms: 5_000,
        },
    )
    .unwrap();
    assert_eq!(r.position(i(2)).map(|p| p.0), Some(1));
    login(&mut r, 2_000, spec(1, &[], &[Q1]));
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(1))]);
}

fn billing_workflow(r: &mut Router) {
    r.set_workflow(&WorkflowSpec {
        filters: vec![FilterSpec {
            name: "billing".into(),
            expression: r#"attributes.topic == "billing""#.into(),
            steps: vec![
                StepSpec {
                    queue: Q1,
                    target: Some("skills.billing >= 3".into()),
                    order: AgentOrder::BestSkill,
                    timeout_ms: Some(30_000),
                    skip_if: None,
                    ring_all: false,
                    priority: None,
                    boost_ms: 0,
                },
                StepSpec {
                    queue: Q2,
                    target: None,
                    order: AgentOrder::LongestIdle,
                    timeout_ms: None,
                    skip_if: None,
                    ring_all: false,
                    priority: Some(9),
                    boost_ms: 0,
                },
            ],
        }],
        default_queue: Some(Q2),
    })
    .unwrap();
}

fn billing_call(id: u64) -> NewInteraction {
    let mut n = new(id, Channel::Voice, None, 0);
    n.attributes = json!({"topic": "billing"});
    n
}

#[test]
fn overflow_to_next_step_after_timeout() {
    let mut r = router();
    billing_workflow(&mut r);
    login(&mut r, 0, spec(1, &[("billing", 1)], &[Q1, Q2]));
    r.handle(0, Input::Enqueue(billing_call(7))).unwrap();
    let outs = drain(&mut r);
    assert!(offers(&outs).is_empty(), "billing 1 is below the target");
    let d = decisions(&outs);
    assert_eq!(d[0].why, Why::NoAgent);
    assert_eq!(d[0].filter.as_deref(), Some("billing"));
    assert_eq!(d[0].skipped, vec![(a(1), Excluded::Target)]);
    assert_eq!(r.poll_timeout(), Some(30_000));

    r.handle(29_999, Input::Tick).unwrap();
    assert!(offers(&drain(&mut r)).is_empty());
    r.handle(30_000, Input::Tick).unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Explain(Explanation::StepEntered {
            step: 1,
            queue: Q2,
            reason: StepReason::Timeout,
            ..
        })
    )));
    assert_eq!(offers(&outs), vec![(i(7), a(1))]);
    let it = r.interaction(i(7)).unwrap();
    assert_eq!((it.queue, it.priority), (Some(Q2), 9));
    assert!(!r.queue(Q1).unwrap().contains(i(7)));
}

#[test]
fn skill_match_orders_by_proficiency() {
    let mut r = router();
    billing_workflow(&mut r);
    login(&mut r, 0, spec(1, &[("billing", 3)], &[Q1]));
    login(&mut r, 1, spec(2, &[("billing", 5)], &[Q1]));
    login(&mut r, 2, spec(3, &[("billing", 4)], &[Q1]));
    login(&mut r, 3, spec(4, &[("sales", 5)], &[Q1]));
    drain(&mut r);
    r.handle(10, Input::Enqueue(billing_call(1))).unwrap();
    let outs = drain(&mut r);
    assert_eq!(offers(&outs), vec![(i(1), a(2))]);
    let d = decisions(&outs)[0];
    assert_eq!(d.why, Why::Ordering(AgentOrder::BestSkill, 5));
    assert_eq!(d.candidates, 3);
    assert!(d.skipped.contains(&(a(4), Excluded::Target)));
    r.handle(11, Input::Enqueue(billing_call(2))).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(3))]);
}

#[test]
fn chat_capacity_three_and_no_voice_while_chatting() {
    let mut r = router();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    for n in 1..=4 {
        r.handle(n, Input::Enqueue(new(n, Channel::Chat, Some(Q1), 0)))
            .unwrap();
    }
    let o = offers(&drain(&mut r));
    assert_eq!(o, vec![(i(1), a(1)), (i(2), a(1)), (i(3), a(1))]);
    for n in 1..=3 {
        accept(&mut r, 10, n, 1);
    }
    r.handle(11, Input::Enqueue(new(5, Channel::Voice, Some(Q1), 9)))
        .unwrap();
    assert!(offers(&drain(&mut r)).is_empty(), "no voice while chatting");
    assert_eq!(r.agent(a(1)).unwrap().status(), AgentStatus::Busy);
    // One chat ends: the room is one chat, not a call, so the waiting chat comes in.
    r.handle(20, Input::Complete { interaction: i(1) }).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(4), a(1))]);
}

#[test]
fn voice_blocks_chat() {
    let mut r = router();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    r.handle(1, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    accept(&mut r, 2, 1, 1);
    r.handle(3, Input::Enqueue(new(2, Channel::Chat, Some(Q1), 0)))
        .unwrap();
    let outs = drain(&mut r);
    assert_eq!(offers(&outs), vec![(i(1), a(1))]);
    assert!(!r.agent(a(1)).unwrap().is_open_for(Channel::Chat));
    r.handle(4, Input::Complete { interaction: i(1) }).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(1))]);
}

#[test]
fn auto_pause_after_missed_offers() {
    let mut r = router();
    let mut s = spec(1, &[], &[Q1]);
    s.auto_pause_after = 2;
    login(&mut r, 0, s);
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    r.handle(10_000, Input::Tick).unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Rescind {
            reason: RescindReason::Expired,
            ..
        }
    )));
    assert_eq!(r.agent(a(1)).unwrap().stats.missed_in_row, 1);
    assert_eq!(r.agent(a(1)).unwrap().presence, Presence::Available);
    r.handle(11_000, Input::Enqueue(new(2, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(1))]);
    r.handle(21_000, Input::Tick).unwrap();
    let outs = drain(&mut r);
    let paused = Presence::Break {
        reason: "missed-offers".into(),
    };
    assert_eq!(r.agent(a(1)).unwrap().presence, paused);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::AgentStatus { agent, status: AgentStatus::Break { reason } }
            if *agent == a(1) && reason == "missed-offers"
    )));
    assert!(offers(&outs).is_empty());
    assert_eq!(r.queue(Q1).unwrap().len(), 2);
}

#[test]
fn reservation_timeout_goes_to_next_agent() {
    let mut r = router();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    login(&mut r, 1, spec(2, &[], &[Q1]));
    r.handle(2, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    assert_eq!(
        offers(&drain(&mut r)),
        vec![(i(1), a(1))],
        "longest idle first"
    );
    assert_eq!(r.poll_timeout(), Some(10_002));
    r.handle(10_002, Input::Tick).unwrap();
    let outs = drain(&mut r);
    assert_eq!(offers(&outs), vec![(i(1), a(2))]);
    assert!(events(&outs).iter().any(|e| e.kind
        == EventKind::OfferEnded {
            interaction: i(1),
            agent: a(1),
            outcome: OfferOutcome::TimedOut
        }));
    assert_eq!(
        decisions(&outs)[0].skipped,
        vec![(a(1), Excluded::Rejected)]
    );
}

#[test]
fn reject_goes_to_next_agent_and_accept_assigns() {
    let mut r = router();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    login(&mut r, 1, spec(2, &[], &[Q1]));
    r.handle(2, Input::Enqueue(new(1, Channel::Chat, Some(Q1), 0)))
        .unwrap();
    drain(&mut r);
    r.handle(
        3,
        Input::Reject {
            interaction: i(1),
            agent: a(1),
        },
    )
    .unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(1), a(2))]);
    assert_eq!(
        r.handle(
            4,
            Input::Accept {
                interaction: i(1),
                agent: a(1)
            }
        ),
        Err(RouterError::NotOffered(i(1), a(1)))
    );
    accept(&mut r, 4, 1, 2);
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(o, Output::Assigned { interaction, agent } if *interaction == i(1) && *agent == a(2))));
    assert_eq!(
        r.interaction(i(1)).unwrap().state,
        InteractionState::Assigned
    );
    assert!(!r.queue(Q1).unwrap().contains(i(1)));
}

#[test]
fn callback_keeps_its_place() {
    let mut r = router();
    for n in 1..=3 {
        r.handle(n, Input::Enqueue(new(n, Channel::Voice, Some(Q1), 0)))
            .unwrap();
    }
    r.handle(
        5,
        Input::RequestCallback {
            interaction: i(2),
            number: "+331234".into(),
        },
    )
    .unwrap();
    assert_eq!(
        r.interaction(i(2)).unwrap().state,
        InteractionState::Callback
    );
    assert_eq!(r.position(i(2)).map(|p| p.0), Some(2));
    login(&mut r, 10, spec(1, &[], &[Q1]));
    assert_eq!(offers(&drain(&mut r)), vec![(i(1), a(1))]);
    accept(&mut r, 11, 1, 1);
    r.handle(12, Input::Complete { interaction: i(1) }).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(2), a(1))]);
    // A rejected callback goes back to waiting as a callback, first in line; the agent, free
    // again, gets the next one.
    r.handle(
        13,
        Input::Reject {
            interaction: i(2),
            agent: a(1),
        },
    )
    .unwrap();
    assert_eq!(
        r.interaction(i(2)).unwrap().state,
        InteractionState::Callback
    );
    assert_eq!(r.position(i(2)).map(|p| p.0), Some(1));
    let outs = drain(&mut r);
    assert_eq!(offers(&outs), vec![(i(3), a(1))]);
    let evs = events(&outs);
    assert!(!evs
        .iter()
        .any(|e| matches!(e.kind, EventKind::Abandoned { .. })));
}

#[test]
fn queue_replay_equals_live_state() {
    let mut r = router();
    let mut log: Vec<QueueEvent> = Vec::new();
    let mut collect = |r: &mut Router| {
        for o in drain(r) {
            if let Output::Queue { queue: Q1, event } = o {
                log.push(event);
            }
        }
    };
    for n in 1..=5 {
        r.handle(
            n,
            Input::Enqueue(new(n, Channel::Voice, Some(Q1), (n % 2) as u32)),
        )
        .unwrap();
    }
    r.handle(
        6,
        Input::Reprioritise {
            interaction: i(4),
            priority: 7,
            boost_ms: 3,
        },
    )
    .unwrap();
    r.handle(
        7,
        Input::RequestCallback {
            interaction: i(5),
            number: "+1".into(),
        },
    )
    .unwrap();
    r.handle(8, Input::Abandon { interaction: i(2) }).unwrap();
    collect(&mut r);
    login(&mut r, 9, spec(1, &[], &[Q1]));
    r.handle(
        10,
        Input::Reject {
            interaction: i(4),
            agent: a(1),
        },
    )
    .unwrap();
    collect(&mut r);
    let offered = r.interaction(i(1)).map(|it| it.state);
    assert_eq!(offered, Some(InteractionState::Offered));
    accept(&mut r, 11, 1, 1);
    r.handle(500, Input::Complete { interaction: i(1) })
        .unwrap();
    collect(&mut r);

    let live = r.queue(Q1).unwrap();
    let rebuilt = Queue::replay(Q1, live.config.clone(), &log);
    assert_eq!(rebuilt.entries(), live.entries());
    assert_eq!(
        rebuilt.handle_times().collect::<Vec<_>>(),
        live.handle_times().collect::<Vec<_>>()
    );
    for n in 1..=5 {
        assert_eq!(
            rebuilt.position(i(n)),
            live.position(i(n)),
            "position of {n}"
        );
    }
    assert!(log.iter().any(|e| matches!(e, QueueEvent::Returned { .. })));
    // Persisted as JSON and read back, the log rebuilds the same queue.
    let text = serde_json::to_string(&log).unwrap();
    let back: Vec<QueueEvent> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        Queue::replay(Q1, live.config.clone(), &back).entries(),
        live.entries()
    );
}

#[test]
fn ring_all_for_voice_first_accept_wins() {
    let mut r = router();
    r.set_workflow(&WorkflowSpec {
        filters: vec![FilterSpec {
            name: "all".into(),
            expression: "true".into(),
            steps: vec![StepSpec {
                queue: Q1,
                target: None,
                order: AgentOrder::LongestIdle,
                timeout_ms: None,
                skip_if: None,
                ring_all: true,
                priority: None,
                boost_ms: 0,
            }],
        }],
        default_queue: None,
    })
    .unwrap();
    for n in 1..=3 {
        login(&mut r, n.into(), spec(n, &[], &[Q1]));
    }
    r.handle(5, Input::Enqueue(new(1, Channel::Voice, None, 0)))
        .unwrap();
    let outs = drain(&mut r);
    assert_eq!(
        offers(&outs),
        vec![(i(1), a(1)), (i(1), a(2)), (i(1), a(3))]
    );
    assert_eq!(decisions(&outs)[0].why, Why::RingAll);
    accept(&mut r, 6, 1, 2);
    let outs = drain(&mut r);
    let rescinded: Vec<AgentId> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Rescind {
                agent,
                reason: RescindReason::Taken,
                ..
            } => Some(*agent),
            _ => None,
        })
        .collect();
    assert_eq!(rescinded, vec![a(1), a(3)]);
    assert_eq!(r.agent(a(1)).unwrap().status(), AgentStatus::Available);
    // A chat on the same step is offered to one agent only.
    r.handle(7, Input::Enqueue(new(2, Channel::Chat, None, 0)))
        .unwrap();
    assert_eq!(offers(&drain(&mut r)).len(), 1);
}

#[test]
fn routing_profile_priority_and_delay() {
    let mut r = router();
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q2), 0)))
        .unwrap();
    r.handle(5, Input::Enqueue(new(2, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    drain(&mut r);
    let mut s = spec(1, &[], &[]);
    s.profile = vec![
        ProfileEntry {
            queue: Q2,
            priority: 2,
            delay_ms: 0,
        },
        ProfileEntry {
            queue: Q1,
            priority: 1,
            delay_ms: 0,
        },
    ];
    login(&mut r, 10, s);
    let outs = drain(&mut r);
    assert_eq!(
        offers(&outs),
        vec![(i(2), a(1))],
        "queue of priority 1 first"
    );
    assert_eq!(
        decisions(&outs)[0].why,
        Why::NextInLine {
            profile_priority: 1
        }
    );

    // Delay: agent 2 takes queue 1 only after 5 s of waiting.
    let mut r = router();
    let mut s = spec(2, &[], &[]);
    s.profile = vec![ProfileEntry {
        queue: Q1,
        priority: 1,
        delay_ms: 5_000,
    }];
    login(&mut r, 0, s);
    r.handle(100, Input::Enqueue(new(3, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    let outs = drain(&mut r);
    assert!(offers(&outs).is_empty());
    assert_eq!(decisions(&outs)[0].skipped, vec![(a(2), Excluded::Delay)]);
    r.handle(5_099, Input::Tick).unwrap();
    assert!(offers(&drain(&mut r)).is_empty());
    r.handle(5_100, Input::Tick).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(3), a(2))]);
}

#[test]
fn target_reading_the_interaction_and_languages() {
    let mut r = router();
    r.set_workflow(&WorkflowSpec {
        filters: vec![FilterSpec {
            name: "level".into(),
            expression: "attributes.level > 0".into(),
            steps: vec![StepSpec {
                queue: Q1,
                target: Some(
                    r#"skills.billing >= task.attributes.level AND languages HAS task.attributes.lang"#
                        .into(),
                ),
                order: AgentOrder::LongestIdle,
                timeout_ms: None,
                skip_if: None,
                ring_all: false,
                priority: None,
                boost_ms: 0,
            }],
        }],
        default_queue: None,
    })
    .unwrap();
    let mut fr = spec(1, &[("billing", 2)], &[Q1]);
    fr.languages = vec!["FR".into()];
    login(&mut r, 0, fr);
    login(&mut r, 1, spec(2, &[("billing", 5)], &[Q1]));
    let mut n = new(1, Channel::Chat, None, 0);
    n.attributes = json!({"level": 2, "lang": "fr"});
    r.handle(5, Input::Enqueue(n)).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(1), a(1))]);
    let mut n = new(2, Channel::Chat, None, 0);
    n.attributes = json!({"level": 4, "lang": "fr"});
    r.handle(6, Input::Enqueue(n)).unwrap();
    assert!(
        offers(&drain(&mut r)).is_empty(),
        "nobody speaks fr at level 4"
    );
    let mut n = new(3, Channel::Chat, None, 0);
    n.attributes = json!({"level": 3, "lang": "en"});
    r.handle(7, Input::Enqueue(n)).unwrap();
    assert_eq!(offers(&drain(&mut r)), vec![(i(3), a(2))]);
    // No filter matches and there is no default queue: refused.
    assert_eq!(
        r.handle(8, Input::Enqueue(new(4, Channel::Chat, None, 0))),
        Err(RouterError::NoRoute(i(4)))
    );
    assert!(r.interaction(i(4)).is_none());
}

#[test]
fn skip_if_and_first_matching_filter() {
    let mut r = router();
    let step = |queue, skip: Option<&str>| StepSpec {
        queue,
        target: None,
        order: AgentOrder::LongestIdle,
        timeout_ms: None,
        skip_if: skip.map(Into::into),
        ring_all: false,
        priority: None,
        boost_ms: 0,
    };
    r.set_workflow(&WorkflowSpec {
        filters: vec![
            FilterSpec {
                name: "vip".into(),
                expression: "attributes.vip == true".into(),
                steps: vec![step(Q1, Some("available == 0")), step(Q2, None)],
            },
            FilterSpec {
                name: "everyone".into(),
                expression: "true".into(),
                steps: vec![step(Q1, None)],
            },
        ],
        default_queue: None,
    })
    .unwrap();
    let mut n = new(1, Channel::Voice, None, 0);
    n.attributes = json!({"vip": true});
    r.handle(0, Input::Enqueue(n)).unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Explain(Explanation::FilterMatched { filter: Some(f), .. }) if &**f == "vip"
    )));
    assert_eq!(
        r.interaction(i(1)).unwrap().queue,
        Some(Q2),
        "no agent in q1: skipped"
    );
    r.handle(1, Input::Enqueue(new(2, Channel::Voice, None, 0)))
        .unwrap();
    assert_eq!(r.interaction(i(2)).unwrap().queue, Some(Q1));
}

#[test]
fn round_robin_and_seeded_random_are_deterministic() {
    let run = |order: AgentOrder| {
        let mut r = router();
        r.set_workflow(&WorkflowSpec {
            filters: vec![FilterSpec {
                name: "x".into(),
                expression: "true".into(),
                steps: vec![StepSpec {
                    queue: Q1,
                    target: None,
                    order,
                    timeout_ms: None,
                    skip_if: None,
                    ring_all: false,
                    priority: None,
                    boost_ms: 0,
                }],
            }],
            default_queue: None,
        })
        .unwrap();
        for n in 1..=3 {
            login(&mut r, 0, spec(n, &[], &[Q1]));
        }
        let mut got = Vec::new();
        for n in 1..=6u64 {
            r.handle(n, Input::Enqueue(new(n, Channel::Voice, None, 0)))
                .unwrap();
            let o = offers(&drain(&mut r));
            got.push(o[0].1 .0);
            accept(&mut r, n, n, o[0].1 .0);
            r.handle(n, Input::Complete { interaction: i(n) }).unwrap();
        }
        got
    };
    assert_eq!(run(AgentOrder::RoundRobin), vec![1, 2, 3, 1, 2, 3]);
    let random = run(AgentOrder::Random);
    assert_eq!(random, run(AgentOrder::Random));
    assert!(random.iter().all(|x| (1..=3).contains(x)));
}

#[test]
fn fewest_handled_and_least_talk_time() {
    let mut r = router();
    r.set_workflow(&WorkflowSpec {
        filters: vec![FilterSpec {
            name: "x".into(),
            expression: r#"channel == "chat""#.into(),
            steps: vec![StepSpec {
                queue: Q1,
                target: None,
                order: AgentOrder::LeastTalkTime,
                timeout_ms: None,
                skip_if: None,
                ring_all: false,
                priority: None,
                boost_ms: 0,
            }],
        }],
        default_queue: None,
    })
    .unwrap();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    login(&mut r, 0, spec(2, &[], &[Q1]));
    r.handle(1, Input::Enqueue(new(1, Channel::Chat, None, 0)))
        .unwrap();
    let first = offers(&drain(&mut r))[0].1;
    accept(&mut r, 1, 1, first.0);
    r.handle(60_000, Input::Complete { interaction: i(1) })
        .unwrap();
    r.handle(60_001, Input::Enqueue(new(2, Channel::Chat, None, 0)))
        .unwrap();
    let second = offers(&drain(&mut r))[0].1;
    assert_ne!(first, second, "the agent who talked a minute is not chosen");
}

#[test]
fn wrap_up_time_and_dispositions() {
    let mut r = router();
    r.configure_queue(
        Q1,
        QueueConfig {
            wrap_up_ms: Some(20_000),
            dispositions: vec!["sale".into(), "no-sale".into()],
            ..QueueConfig::default()
        },
    )
    .unwrap();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    r.handle(0, Input::Enqueue(new(2, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    accept(&mut r, 1, 1, 1);
    r.handle(100, Input::Complete { interaction: i(1) })
        .unwrap();
    assert_eq!(r.agent(a(1)).unwrap().status(), AgentStatus::WrapUp);
    assert_eq!(
        r.handle(
            200,
            Input::EndWrapUp {
                interaction: i(1),
                disposition: Some("bogus".into())
            }
        ),
        Err(RouterError::Disposition("bogus".into()))
    );
    drain(&mut r);
    // Wrap-up ends on its own after 20 s; the next call comes in.
    r.handle(20_100, Input::Tick).unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(o, Output::Completed { interaction, disposition: None, .. } if *interaction == i(1))));
    assert_eq!(offers(&outs), vec![(i(2), a(1))]);
    accept(&mut r, 20_200, 2, 1);
    r.handle(30_000, Input::Complete { interaction: i(2) })
        .unwrap();
    r.handle(
        31_000,
        Input::EndWrapUp {
            interaction: i(2),
            disposition: Some("sale".into()),
        },
    )
    .unwrap();
    let outs = drain(&mut r);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Completed { disposition: Some(d), .. } if d == "sale")));
    assert_eq!(r.agent(a(1)).unwrap().stats.handled, 2);
    assert_eq!(r.agent(a(1)).unwrap().status(), AgentStatus::Available);
}

#[test]
fn max_wait_and_leave_when_empty() {
    let mut r = router();
    r.configure_queue(
        Q1,
        QueueConfig {
            max_wait_ms: Some(60_000),
            ..QueueConfig::default()
        },
    )
    .unwrap();
    r.configure_queue(
        Q2,
        QueueConfig {
            leave_when_empty: true,
            join_when_empty: false,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    assert_eq!(
        r.handle(0, Input::Enqueue(new(2, Channel::Voice, Some(Q2), 0))),
        Err(RouterError::NoRoute(i(2))),
        "nobody logged in to q2"
    );
    r.handle(60_000, Input::Tick).unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(o, Output::Exited { interaction, reason: ExitReason::MaxWait } if *interaction == i(1))));
    assert!(r.interaction(i(1)).is_none());

    r.handle(60_000, Input::AddAgent(spec(1, &[], &[Q2])))
        .unwrap();
    r.handle(
        60_000,
        Input::SetPresence {
            agent: a(1),
            presence: Presence::Break {
                reason: "lunch".into(),
            },
        },
    )
    .unwrap();
    r.handle(60_001, Input::Enqueue(new(3, Channel::Voice, Some(Q2), 0)))
        .unwrap();
    r.handle(
        60_002,
        Input::SetPresence {
            agent: a(1),
            presence: Presence::Offline,
        },
    )
    .unwrap();
    let outs = drain(&mut r);
    assert!(outs.iter().any(|o| matches!(o, Output::Exited { interaction, reason: ExitReason::QueueEmpty } if *interaction == i(3))));
}

#[test]
fn transfer_continues_in_another_queue() {
    let mut r = router();
    login(&mut r, 0, spec(1, &[], &[Q1]));
    r.handle(1, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 3)))
        .unwrap();
    accept(&mut r, 2, 1, 1);
    r.handle(
        3,
        Input::Transfer {
            interaction: i(1),
            new_id: i(10),
            queue: Q2,
        },
    )
    .unwrap();
    let it = r.interaction(i(10)).unwrap();
    assert_eq!(
        (it.queue, it.transferred_from, it.priority),
        (Some(Q2), Some(i(1)), 3)
    );
    let evs = events(&drain(&mut r));
    assert!(evs.iter().any(|e| e.kind
        == EventKind::Transferred {
            interaction: i(1),
            to: i(10),
            queue: Q2
        }));
    // No wrap-up configured (Some(0)): the agent is free at once.
    assert_eq!(r.agent(a(1)).unwrap().status(), AgentStatus::Available);
}

#[test]
fn bad_inputs_are_answered_not_panicked() {
    let mut r = router();
    assert_eq!(
        r.handle(
            0,
            Input::Accept {
                interaction: i(9),
                agent: a(9)
            }
        ),
        Err(RouterError::UnknownAgent(a(9)))
    );
    login(&mut r, 0, spec(1, &[], &[Q1]));
    assert_eq!(
        r.handle(0, Input::AddAgent(spec(1, &[], &[Q1]))),
        Err(RouterError::DuplicateAgent(a(1)))
    );
    assert_eq!(
        r.handle(0, Input::Complete { interaction: i(9) }),
        Err(RouterError::UnknownInteraction(i(9)))
    );
    assert_eq!(
        r.handle(
            0,
            Input::Enqueue(new(1, Channel::Voice, Some(QueueId(99)), 0))
        ),
        Err(RouterError::UnknownQueue(QueueId(99)))
    );
    r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)))
        .unwrap();
    assert!(matches!(
        r.handle(0, Input::Complete { interaction: i(1) }),
        Err(RouterError::Transition(_))
    ));
    assert_eq!(
        r.handle(0, Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0))),
        Err(RouterError::DuplicateInteraction(i(1)))
    );
    assert_eq!(
        r.handle(0, Input::RemoveAgent(a(1))),
        Err(RouterError::AgentBusy(a(1)))
    );
    let err = r
        .set_workflow(&WorkflowSpec {
            filters: vec![FilterSpec {
                name: "bad".into(),
                expression: "true".into(),
                steps: vec![StepSpec {
                    queue: Q1,
                    target: Some("skills.billing >= AND x".into()),
                    order: AgentOrder::LongestIdle,
                    timeout_ms: None,
                    skip_if: None,
                    ring_all: false,
                    priority: None,
                    boost_ms: 0,
                }],
            }],
            default_queue: None,
        })
        .unwrap_err();
    assert_eq!((err.filter, err.step, err.field), (0, Some(0), "target"));
    assert!(err.to_string().contains("offset 18"), "{err}");
}

/// The hand-computed scenario of the metrics module, played through the router.
///
/// One agent, one voice queue with 10 s wrap-up, service level threshold 20 s, window 0–120 s:
///
/// | t (s) | what |
/// |---|---|
/// | 0 | agent available; call 1 arrives, offered |
/// | 1, 2 | calls 2 and 3 arrive, wait |
/// | 3 | call 3 abandons (waited 3 s) |
/// | 5 | call 1 accepted (waited 5 s) |
/// | 15–25 | call 1 on hold (10 s) |
/// | 65 | call 1 ends; wrap-up to 75 |
/// | 75 | call 2 offered (waited 74 s) |
/// | 76 | call 2 accepted (waited 75 s) |
/// | 106 | call 2 ends; agent closes wrap-up at 110 with "sale" |
///
/// Queue: queued 3, answered 2 (1 within 20 s), abandoned 1 → service level 1/(2+1) = 1/3;
/// ASA (5 + 75)/2 = 40 s; abandon rate 1/3; AHT ((75−5) + (110−76))/2 = 52 s; average hold
/// 10/2 = 5 s; average wrap-up (10 + 4)/2 = 7 s.
/// Agent: on contact 0–110 s = 110 s, idle 110–120 s = 10 s → occupancy 110/120.
#[test]
fn metrics_match_hand_computed_scenario() {
    let mut r = router();
    r.configure_queue(
        Q1,
        QueueConfig {
            wrap_up_ms: Some(10_000),
            offer_timeout_ms: 30_000,
            ..QueueConfig::default()
        },
    )
    .unwrap();
    let mut log = Vec::new();
    let mut step = |r: &mut Router, t: u64, input: Input| {
        r.handle(t, input).unwrap();
        log.extend(events(&drain(r)));
    };
    step(&mut r, 0, Input::AddAgent(spec(1, &[], &[Q1])));
    step(
        &mut r,
        0,
        Input::SetPresence {
            agent: a(1),
            presence: Presence::Available,
        },
    );
    step(
        &mut r,
        0,
        Input::Enqueue(new(1, Channel::Voice, Some(Q1), 0)),
    );
    step(
        &mut r,
        1_000,
        Input::Enqueue(new(2, Channel::Voice, Some(Q1), 0)),
    );
    step(
        &mut r,
        2_000,
        Input::Enqueue(new(3, Channel::Voice, Some(Q1), 0)),
    );
    step(&mut r, 3_000, Input::Abandon { interaction: i(3) });
    step(
        &mut r,
        5_000,
        Input::Accept {
            interaction: i(1),
            agent: a(1),
        },
    );
    step(
        &mut r,
        15_000,
        Input::Hold {
            interaction: i(1),
            on: true,
        },
    );
    step(
        &mut r,
        25_000,
        Input::Hold {
            interaction: i(1),
            on: false,
        },
    );
    step(&mut r, 65_000, Input::Complete { interaction: i(1) });
    step(&mut r, 75_000, Input::Tick);
    step(
        &mut r,
        76_000,
        Input::Accept {
            interaction: i(2),
            agent: a(1),
        },
    );
    step(&mut r, 106_000, Input::Complete { interaction: i(2) });
    step(
        &mut r,
        110_000,
        Input::EndWrapUp {
            interaction: i(2),
            disposition: Some("sale".into()),
        },
    );
    let window = MetricsWindow {
        from: 0,
        to: 120_000,
        service_level_ms: 20_000,
    };
    let m = Metrics::compute(&log, window);
    let q = m.queue_metrics(Q1);
    assert_eq!(
        (
            q.queued,
            q.answered,
            q.answered_within,
            q.abandoned,
            q.handled
        ),
        (3, 2, 1, 1, 2)
    );
    assert_eq!(q.service_level(), Some(1.0 / 3.0));
    assert_eq!(q.asa_ms(), Some(40_000.0));
    assert_eq!(q.abandon_rate(), Some(1.0 / 3.0));
    assert_eq!(q.aht_ms(), Some(52_000.0));
    assert_eq!(q.avg_hold_ms(), Some(5_000.0));
    assert_eq!(q.avg_wrap_ms(), Some(7_000.0));
    let ag = m.agent_metrics(a(1));
    assert_eq!(
        (ag.handled, ag.on_contact_ms, ag.idle_ms),
        (2, 110_000, 10_000)
    );
    assert_eq!(ag.occupancy(), Some(110.0 / 120.0));
    assert_eq!(ag.aht_ms(), Some(52_000.0));

    // Folding event by event (live) gives the same figures as the batch (history), also after
    // a JSON round trip of the stored log.
    let mut live = Metrics::new(window);
    for e in &log {
        live.apply(e);
    }
    assert_eq!(live.queue_metrics(Q1), q);
    let stored: Vec<RoutingEvent> =
        serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
    assert_eq!(Metrics::compute(&stored, window).agent_metrics(a(1)), ag);
}

/// Thousands of random inputs (valid and not) at random times: nothing panics and every index
/// agrees with the state it mirrors after each step.
#[test]
fn random_inputs_keep_invariants() {
    struct Rand(u64);
    impl Rand {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }
    for seed in 1..=12u64 {
        let mut rnd = Rand(seed * 0x9E37_79B9);
        let mut r = Router::new(RouterConfig {
            seed,
            explain_skipped: 3,
            timer_batch: 4,
            ..RouterConfig::default()
        });
        for q in 1..=3 {
            let cfg = QueueConfig {
                offer_timeout_ms: 3_000,
                wrap_up_ms: [None, Some(0), Some(2_000)][q as usize - 1],
                max_length: Some(12),
                max_wait_ms: (q == 2).then_some(40_000),
                leave_when_empty: q == 3,
                ..QueueConfig::default()
            };
            r.add_queue(QueueId(q), cfg).unwrap();
        }
        let st = |queue: u32, target: &str, timeout: Option<u64>, ring_all: bool, order| StepSpec {
            queue: QueueId(queue),
            target: (!target.is_empty()).then(|| target.to_owned()),
            order,
            timeout_ms: timeout,
            skip_if: Some("available == 0 AND waiting > 5".into()),
            ring_all,
            priority: None,
            boost_ms: 100,
        };
        r.set_workflow(&WorkflowSpec {
            filters: vec![
                FilterSpec {
                    name: "skilled".into(),
                    expression: "attributes.k > 0".into(),
                    steps: vec![
                        st(
                            1,
                            "skills.s1 >= task.attributes.k",
                            Some(5_000),
                            false,
                            AgentOrder::BestSkill,
                        ),
                        st(2, "skills.s1 >= 1", Some(5_000), true, AgentOrder::Random),
                        st(3, "", None, false, AgentOrder::RoundRobin),
                    ],
                },
                FilterSpec {
                    name: "rest".into(),
                    expression: "true".into(),
                    steps: vec![
                        st(
                            2,
                            r#"languages HAS "fr""#,
                            Some(2_000),
                            false,
                            AgentOrder::FewestHandled,
                        ),
                        st(1, "", None, true, AgentOrder::LeastTalkTime),
                    ],
                },
            ],
            default_queue: None,
        })
        .unwrap();
        let mut now = 0u64;
        let mut offered: Vec<(InteractionId, AgentId)> = Vec::new();
        let (mut assigned, mut completed, mut exited) = (0, 0, 0);
        for _ in 0..3_000 {
            now += rnd.below(700);
            let ia = i(rnd.below(40));
            let ag = a(rnd.below(8) as u32);
            let input = match rnd.below(16) {
                0 => {
                    let mut s = spec(ag.0, &[("s1", rnd.below(6) as u8)], &[]);
                    s.languages = if rnd.below(2) == 0 {
                        vec!["fr".into()]
                    } else {
                        vec![]
                    };
                    s.auto_pause_after = rnd.below(3) as u32;
                    s.profile = Vec::new();
                    for q in 1..=3 {
                        if rnd.below(3) > 0 {
                            s.profile.push(ProfileEntry {
                                queue: QueueId(q),
                                priority: rnd.below(3) as u32,
                                delay_ms: rnd.below(3) * 1_000,
                            });
                        }
                    }
                    if rnd.below(2) == 0 {
                        Input::AddAgent(s)
                    } else {
                        Input::UpdateAgent(s)
                    }
                }
                1 => Input::SetPresence {
                    agent: ag,
                    presence: match rnd.below(3) {
                        0 => Presence::Offline,
                        1 => Presence::Break { reason: "x".into() },
                        _ => Presence::Available,
                    },
                },
                2 | 3 => {
                    let ch = Channel::ALL[rnd.below(4) as usize];
                    let q = (rnd.below(3) == 0).then(|| QueueId(1 + rnd.below(3) as u32));
                    let mut n = new(ia.0, ch, q, rnd.below(3) as u32);
                    n.attributes = json!({"k": rnd.below(4)});
                    Input::Enqueue(n)
                }
                4 | 5 if !offered.is_empty() => {
                    let (x, y) = offered.swap_remove(rnd.below(offered.len() as u64) as usize);
                    Input::Accept {
                        interaction: x,
                        agent: y,
                    }
                }
                6 if !offered.is_empty() => {
                    let (x, y) = offered.swap_remove(rnd.below(offered.len() as u64) as usize);
                    Input::Reject {
                        interaction: x,
                        agent: y,
                    }
                }
                7 => Input::Complete { interaction: ia },
                8 => Input::EndWrapUp {
                    interaction: ia,
                    disposition: None,
                },
                9 => Input::Abandon { interaction: ia },
                10 => Input::RequestCallback {
                    interaction: ia,
                    number: "1".into(),
                },
                11 => Input::Transfer {
                    interaction: ia,
                    new_id: i(rnd.below(40)),
                    queue: QueueId(1 + rnd.below(3) as u32),
                },
                12 => Input::Move {
                    interaction: ia,
                    queue: QueueId(1 + rnd.below(4) as u32),
                },
                13 => Input::Reprioritise {
                    interaction: ia,
                    priority: rnd.below(5) as u32,
                    boost_ms: rnd.below(5_000),
                },
                14 => Input::Hold {
                    interaction: ia,
                    on: rnd.below(2) == 0,
                },
                _ => Input::Tick,
            };
            let _ = r.handle(now, input);
            for o in drain(&mut r) {
                match o {
                    Output::Offer {
                        interaction, agent, ..
                    } => offered.push((interaction, agent)),
                    Output::Assigned { .. } => assigned += 1,
                    Output::Completed { .. } => completed += 1,
                    Output::Exited { .. } => exited += 1,
                    _ => {}
                }
            }
            r.check_invariants();
        }
        assert!(
            assigned > 20 && completed > 10,
            "seed {seed}: {assigned} assigned, {completed} completed, {exited} exited"
        );
    }
}
