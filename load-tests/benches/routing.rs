//! Routing benchmark (issue 8): 10 000 agents, 100 000 waiting interactions, 50 skills.
//!
//! Run with `cargo bench -p switchboard-load --bench routing` (or `-- --agents N …`). Options (all optional): `--agents N --waiting N --skills N --queues N
//! --iterations N --seed N --no-explain`.
//!
//! Phase A (steady state, the target): every agent is logged in and working, 100 000
//! interactions wait. Each iteration ends one conversation (the freed agent is offered the best
//! interaction it can serve: an agent-driven decision), accepts the offers made, and enqueues a
//! new interaction (a task-driven decision) so the backlog stays at 100 000. The backlog arrives
//! spread over the 30 s before the measurement and simulated time moves 1 ms per iteration, so
//! workflow step timeouts (30 s) come due along the way and their overflow decisions are
//! measured too.
//!
//! Phase B (idle pool): every agent is free and nothing waits; each arrival is routed over the
//! whole matching pool (task-driven decision over thousands of candidates), then accepted and
//! completed.
//!
//! Latency is measured per `handle` call that made at least one decision (a call that made three
//! decisions counts once, with the time of all three), so p50/p99 are per call, an upper bound
//! per decision. Decisions/s divides all decisions by all time spent in `handle` + draining.

use serde_json::json;
use std::time::{Duration, Instant};
use switchboard_actors::routing::{
    AgentId, AgentOrder, AgentSpec, Capacity, Channel, Customer, FilterSpec, Input, InteractionId,
    NewInteraction, Output, Presence, ProfileEntry, QueueConfig, QueueId, Router, RouterConfig,
    StepSpec, WorkflowSpec,
};

struct Args {
    agents: u32,
    waiting: u64,
    skills: u32,
    queues: u32,
    iterations: u64,
    seed: u64,
    explain: bool,
}

fn args() -> Args {
    let mut a = Args {
        agents: 10_000,
        waiting: 100_000,
        skills: 50,
        queues: 10,
        iterations: 200_000,
        seed: 42,
        explain: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut k = 0;
    while k < v.len() {
        let num = |k: usize| v.get(k + 1).and_then(|s| s.parse::<u64>().ok());
        match (v[k].as_str(), num(k)) {
            ("--agents", Some(n)) => a.agents = n as u32,
            ("--waiting", Some(n)) => a.waiting = n,
            ("--skills", Some(n)) => a.skills = n.max(1) as u32,
            ("--queues", Some(n)) => a.queues = n.max(1) as u32,
            ("--iterations", Some(n)) => a.iterations = n,
            ("--seed", Some(n)) => a.seed = n,
            // `cargo bench` passes --bench to every bench target.
            ("--bench", _) => {
                k += 1;
                continue;
            }
            ("--no-explain", _) => {
                a.explain = false;
                k += 1;
                continue;
            }
            (other, _) => {
                eprintln!("unknown or incomplete option {other}");
                std::process::exit(2);
            }
        }
        k += 2;
    }
    a
}

/// xorshift64*: the benchmark's own reproducible randomness.
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Stats {
    samples: Vec<Duration>,
    decisions: u64,
    offers: u64,
    busy: Duration,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            samples: Vec::new(),
            decisions: 0,
            offers: 0,
            busy: Duration::ZERO,
        }
    }

    fn report(&mut self, name: &str) {
        self.samples.sort_unstable();
        let pct = |p: f64| {
            let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
            self.samples.get(i).copied().unwrap_or_default()
        };
        let secs = self.busy.as_secs_f64().max(1e-9);
        println!(
            "{name}: {} decisions ({} offers, the rest \"no agent, wait\") in {:.3} s of routing time = {:.0} decisions/s; per deciding call \
             p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} calls)",
            self.decisions,
            self.offers,
            secs,
            self.decisions as f64 / secs,
            pct(0.50).as_secs_f64() * 1e6,
            pct(0.99).as_secs_f64() * 1e6,
            pct(0.999).as_secs_f64() * 1e6,
            self.samples.last().copied().unwrap_or_default().as_secs_f64() * 1e6,
            self.samples.len(),
        );
    }
}

/// Feeds one input, drains the outputs; returns (decisions, offers made).
fn step(
    r: &mut Router,
    now: u64,
    input: Input,
    stats: Option<&mut Stats>,
    offers: &mut Vec<(InteractionId, AgentId)>,
) -> u64 {
    let t0 = Instant::now();
    let before = r.decisions();
    let offers_before = offers.len();
    let res = r.handle(now, input);
    while let Some(o) = r.poll_output() {
        if let Output::Offer {
            interaction, agent, ..
        } = o
        {
            offers.push((interaction, agent));
        }
    }
    let dt = t0.elapsed();
    let decisions = r.decisions() - before;
    // Outliers go to stderr with their time, to tell the router from the box's noise.
    if dt.as_millis() >= 2 {
        eprintln!("slow call at {now}: {dt:?}, {decisions} decisions");
    }
    if let Err(e) = res {
        eprintln!("input refused: {e}");
    }
    if let Some(s) = stats {
        s.busy += dt;
        if decisions > 0 {
            s.samples.push(dt);
            s.decisions += decisions;
            s.offers += (offers.len() - offers_before) as u64;
        }
    }
    decisions
}

fn workflow(skills: u32, queues: u32) -> WorkflowSpec {
    WorkflowSpec {
        filters: (0..skills)
            .map(|k| FilterSpec {
                name: format!("s{k}"),
                expression: format!(r#"attributes.skill == "s{k}""#),
                steps: vec![
                    StepSpec {
                        queue: QueueId(k % queues),
                        target: Some(format!("skills.s{k} >= 3")),
                        order: if k % 2 == 0 {
                            AgentOrder::LongestIdle
                        } else {
                            AgentOrder::BestSkill
                        },
                        timeout_ms: Some(30_000),
                        skip_if: None,
                        ring_all: false,
                        priority: None,
                        boost_ms: 0,
                    },
                    StepSpec {
                        queue: QueueId(k % queues),
                        target: Some(format!("skills.s{k} >= 1")),
                        order: AgentOrder::LongestIdle,
                        timeout_ms: None,
                        skip_if: None,
                        ring_all: false,
                        priority: Some(5),
                        boost_ms: 0,
                    },
                ],
            })
            .collect(),
        default_queue: Some(QueueId(0)),
    }
}

fn agent_spec(id: u32, a: &Args, rnd: &mut Rand) -> AgentSpec {
    let mut skills: Vec<(String, u8)> = Vec::new();
    while skills.len() < 6 {
        let k = rnd.below(a.skills as u64);
        let name = format!("s{k}");
        if !skills.iter().any(|s| s.0 == name) {
            skills.push((name, 1 + rnd.below(5) as u8));
        }
    }
    let mut profile: Vec<ProfileEntry> = Vec::new();
    for (i, (name, _)) in skills.iter().enumerate() {
        let k: u32 = name[1..].parse().unwrap_or(0);
        let queue = QueueId(k % a.queues);
        if !profile.iter().any(|p| p.queue == queue) {
            profile.push(ProfileEntry {
                queue,
                priority: if i == 0 { 1 } else { 2 },
                delay_ms: 0,
            });
        }
    }
    AgentSpec {
        id: AgentId(id),
        skills,
        languages: vec!["en".into()],
        attributes: json!({}),
        capacity: Capacity::default(),
        profile,
        auto_pause_after: 0,
    }
}

fn interaction(id: u64, a: &Args, rnd: &mut Rand) -> NewInteraction {
    NewInteraction {
        id: InteractionId(id),
        channel: if rnd.below(2) == 0 {
            Channel::Voice
        } else {
            Channel::Chat
        },
        customer: Customer::default(),
        attributes: json!({ "skill": format!("s{}", rnd.below(a.skills as u64)) }),
        priority: rnd.below(4) as u32,
        queue: None,
    }
}

fn new_router(a: &Args) -> Router {
    let mut r = Router::new(RouterConfig {
        seed: a.seed,
        explanations: a.explain,
        expected_interactions: a.waiting as usize + 4 * a.agents as usize,
        ..RouterConfig::default()
    });
    for q in 0..a.queues {
        let cfg = QueueConfig {
            wrap_up_ms: Some(0),
            ..QueueConfig::default()
        };
        if let Err(e) = r.add_queue(QueueId(q), cfg) {
            eprintln!("{e}");
        }
    }
    if let Err(e) = r.set_workflow(&workflow(a.skills, a.queues)) {
        eprintln!("workflow: {e}");
        std::process::exit(1);
    }
    r
}

fn main() {
    let a = args();
    let mut rnd = Rand(a.seed | 1);
    println!(
        "route_bench: {} agents, {} waiting, {} skills, {} queues, {} iterations, explanations {}",
        a.agents,
        a.waiting,
        a.skills,
        a.queues,
        a.iterations,
        if a.explain { "on" } else { "off" }
    );

    // ---- Phase A: steady state with a full backlog.
    let mut r = new_router(&a);
    let mut offers = Vec::new();
    let mut now = 0u64;
    let mut next_id = 0u64;
    let setup = Instant::now();
    for id in 0..a.agents {
        step(
            &mut r,
            now,
            Input::AddAgent(agent_spec(id, &a, &mut rnd)),
            None,
            &mut offers,
        );
        let presence = Presence::Available;
        step(
            &mut r,
            now,
            Input::SetPresence {
                agent: AgentId(id),
                presence,
            },
            None,
            &mut offers,
        );
    }
    // Arrivals spread over 30 s fill every agent, then build the backlog; so step timeouts and
    // offer timers come due gradually during the measurement, as they would in service.
    let mut assigned: Vec<InteractionId> = Vec::new();
    let expected = a.waiting + a.agents as u64 * 3 / 2;
    while r.interaction_count() - assigned.len() < a.waiting as usize {
        now = next_id * 30_000 / expected.max(1);
        let n = interaction(next_id, &a, &mut rnd);
        next_id += 1;
        step(&mut r, now, Input::Enqueue(n), None, &mut offers);
        for (i, ag) in std::mem::take(&mut offers) {
            step(
                &mut r,
                now,
                Input::Accept {
                    interaction: i,
                    agent: ag,
                },
                None,
                &mut offers,
            );
            assigned.push(i);
        }
    }
    println!(
        "phase A setup: {:.2} s; {} assigned, {} waiting, {} live interactions",
        setup.elapsed().as_secs_f64(),
        assigned.len(),
        r.interaction_count() - assigned.len(),
        r.interaction_count()
    );

    let mut stats = Stats::new();
    let mut accept_time = Duration::ZERO;
    let wall = Instant::now();
    for _ in 0..a.iterations {
        now += 1;
        if assigned.is_empty() {
            break;
        }
        let k = rnd.below(assigned.len() as u64) as usize;
        let done = assigned.swap_remove(k);
        step(
            &mut r,
            now,
            Input::Complete { interaction: done },
            Some(&mut stats),
            &mut offers,
        );
        let n = interaction(next_id, &a, &mut rnd);
        next_id += 1;
        step(
            &mut r,
            now,
            Input::Enqueue(n),
            Some(&mut stats),
            &mut offers,
        );
        let t = Instant::now();
        for (i, ag) in std::mem::take(&mut offers) {
            step(
                &mut r,
                now,
                Input::Accept {
                    interaction: i,
                    agent: ag,
                },
                None,
                &mut offers,
            );
            assigned.push(i);
        }
        accept_time += t.elapsed();
    }
    let wall = wall.elapsed();
    stats.report("phase A (steady state, 100k waiting)");
    println!(
        "phase A: wall {:.2} s for {} iterations (accepts {:.2} s); end: {} assigned, {} waiting, {} timers",
        wall.as_secs_f64(),
        a.iterations,
        accept_time.as_secs_f64(),
        assigned.len(),
        r.interaction_count() - assigned.len(),
        r.timer_count()
    );
    drop(r);

    // ---- Phase B: idle pool, arrivals routed over many candidates.
    let mut r = new_router(&a);
    let mut offers = Vec::new();
    let mut now = 0u64;
    for id in 0..a.agents {
        step(
            &mut r,
            now,
            Input::AddAgent(agent_spec(id, &a, &mut rnd)),
            None,
            &mut offers,
        );
        let presence = Presence::Available;
        step(
            &mut r,
            now,
            Input::SetPresence {
                agent: AgentId(id),
                presence,
            },
            None,
            &mut offers,
        );
    }
    let mut stats = Stats::new();
    let iterations = a.iterations.min(100_000);
    for _ in 0..iterations {
        now += 1;
        let n = interaction(next_id, &a, &mut rnd);
        next_id += 1;
        step(
            &mut r,
            now,
            Input::Enqueue(n),
            Some(&mut stats),
            &mut offers,
        );
        for (i, ag) in std::mem::take(&mut offers) {
            step(
                &mut r,
                now,
                Input::Accept {
                    interaction: i,
                    agent: ag,
                },
                None,
                &mut offers,
            );
            step(
                &mut r,
                now,
                Input::Complete { interaction: i },
                None,
                &mut offers,
            );
        }
    }
    stats.report("phase B (idle pool, task-driven)");
}
