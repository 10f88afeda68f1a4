//! Routing engine throughput at contact-center scale: 10,000 agents, 500 queues, 50 skills and
//! 5 languages in one tenant.
//!
//! - `route_decisions`: a batch of 1,000 arriving interactions, each routed to an idle agent
//!   (enqueue → offer). Only the enqueues are timed; the accepts and ends that keep agents cycling
//!   run untimed between batches. Throughput = routing decisions per second.
//! - `full_cycle`: enqueue → offer → accept → end (→ done, agent free again), all timed.
//!   Throughput = complete interactions per second (one routing decision each).
//! - `agent_frees_up`: every agent busy, 100 interactions waiting per queue (50,000 in all). An
//!   agent ending its call pulls the best waiting interaction across its queues (end → offer).
//!   Only the ends are timed; accepts and refills run untimed. Throughput = decisions per second.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-actors cargo bench -p vacd-actors --bench engine`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vacd_actors::*;

const AGENTS: u64 = 10_000;
const QUEUES: u64 = 500;
const SKILLS: u32 = 50;
const LANGUAGES: u32 = 5;
const QUEUES_PER_AGENT: usize = 5;
const BATCH: u64 = 1_000;

/// splitmix64: a deterministic generator so every run builds the same tenant.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn level(n: u64) -> SkillLevel {
    SkillLevel::new(u8::try_from(n).unwrap_or(10)).unwrap_or(SkillLevel::MAX)
}

fn language(index: u64) -> SkillId {
    SkillId(1_000 + u32::try_from(index).unwrap_or(0))
}

/// The queue's required skill (one of 50).
fn queue_skill(queue: u64) -> SkillId {
    SkillId(u32::try_from(queue % u64::from(SKILLS)).unwrap_or(0))
}

struct Tenant {
    engine: Engine,
    now: Instant,
    rng: Rng,
    next_id: u64,
}

impl Tenant {
    fn new() -> Tenant {
        let now = Instant::now();
        let mut engine = Engine::new(EngineConfig::default());
        let mut rng = Rng(7);
        let strategies = [
            Strategy::LongestIdle,
            Strategy::LongestIdle,
            Strategy::LeastOccupied,
            Strategy::BestSkill,
            Strategy::RoundRobin,
        ];
        for q in 0..QUEUES {
            let mut queue = QueueConfig::new(QueueId(q));
            queue.priority = i32::try_from(rng.below(3)).unwrap_or(0);
            queue.strategy = strategies[usize::try_from(q).unwrap_or(0) % strategies.len()];
            queue.required_skills = vec![SkillRequirement {
                skill: queue_skill(q),
                level: level(1 + rng.below(3)),
            }];
            queue.sla = Some(ServiceLevel {
                target: Duration::from_secs(20),
                percent: 80,
            });
            queue.escalation = vec![EscalationStep {
                after: Duration::from_secs(120),
                action: EscalationAction::LowerSkillLevels { by: 2 },
            }];
            engine
                .handle(Input::UpsertQueue { queue }, now)
                .expect("valid queue");
        }
        for a in 0..AGENTS {
            let mut agent = AgentConfig::new(AgentId(a));
            let mut skills: Vec<AgentSkill> = Vec::new();
            let mut add = |skill: SkillId, lvl: SkillLevel| {
                if !skills.iter().any(|s| s.skill == skill) {
                    skills.push(AgentSkill { skill, level: lvl });
                }
            };
            while agent.queues.len() < QUEUES_PER_AGENT {
                let q = QueueId(rng.below(QUEUES));
                if !agent.queues.contains(&q) {
                    agent.queues.push(q);
                    add(queue_skill(q.0), level(3 + rng.below(8)));
                }
            }
            for _ in 0..3 {
                add(
                    SkillId(u32::try_from(rng.below(u64::from(SKILLS))).unwrap_or(0)),
                    level(1 + rng.below(10)),
                );
            }
            add(language(a % u64::from(LANGUAGES)), level(10));
            add(language((a / 7) % u64::from(LANGUAGES)), level(5));
            agent.skills = skills;
            engine
                .handle(Input::UpsertAgent { agent }, now)
                .expect("valid agent");
            let ready = AgentStatus::Ready {
                mode: ReadyMode::Inbound,
            };
            engine
                .handle(
                    Input::SetStatus {
                        agent: AgentId(a),
                        status: ready,
                    },
                    now,
                )
                .expect("known agent");
        }
        engine.drain_outputs().for_each(drop);
        Tenant {
            engine,
            now,
            rng,
            next_id: 0,
        }
    }

    fn new_interaction(&mut self) -> NewInteraction {
        self.next_id += 1;
        let channel = match self.rng.below(20) {
            0..=15 => Channel::Call,
            16..=18 => Channel::Chat,
            _ => Channel::Email,
        };
        NewInteraction {
            id: InteractionId(self.next_id),
            channel,
            queue: QueueId(self.rng.below(QUEUES)),
            language: Some(language(self.rng.below(u64::from(LANGUAGES)))),
            skills: Vec::new(),
            priority: 0,
            restored: None,
        }
    }

    fn handle(&mut self, input: Input) {
        self.engine
            .handle(input, self.now)
            .expect("bench inputs are valid");
    }

    /// Enqueues one interaction; returns the offers it produced.
    fn enqueue(&mut self, offers: &mut Vec<(AgentId, InteractionId)>) {
        let interaction = self.new_interaction();
        self.handle(Input::Enqueue { interaction });
        collect_offers(&mut self.engine, offers);
    }

    /// Accepts and ends every offer; freed agents may pull more work (collected into `offers`).
    fn work_off(&mut self, offers: &mut Vec<(AgentId, InteractionId)>) {
        while let Some((agent, interaction)) = offers.pop() {
            self.handle(Input::Accept { agent, interaction });
            self.handle(Input::End { interaction });
            collect_offers(&mut self.engine, offers);
        }
    }

    fn tick(&mut self) {
        self.now += Duration::from_millis(1);
    }
}

fn collect_offers(engine: &mut Engine, offers: &mut Vec<(AgentId, InteractionId)>) {
    for output in engine.drain_outputs() {
        if let Output::Offered {
            agent, interaction, ..
        } = output
        {
            offers.push((agent, interaction));
        }
    }
}

fn route_decisions(c: &mut Criterion) {
    let mut tenant = Tenant::new();
    let mut group = c.benchmark_group("routing");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BATCH));
    let mut offers = Vec::new();
    let mut decisions = 0u64;
    let mut enqueued = 0u64;
    group.bench_function("route_decisions", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                tenant.tick();
                let start = Instant::now();
                for _ in 0..BATCH {
                    tenant.enqueue(&mut offers);
                }
                timed += start.elapsed();
                enqueued += BATCH;
                decisions += offers.len() as u64;
                tenant.work_off(&mut offers);
            }
            timed
        });
    });
    println!(
        "route_decisions: {decisions} of {enqueued} arrivals offered at once; {} live afterwards",
        tenant.engine.live_interactions()
    );

    let mut cycles = 0u64;
    group.bench_function("full_cycle", |b| {
        b.iter_custom(|iterations| {
            let start = Instant::now();
            for _ in 0..iterations {
                tenant.tick();
                for _ in 0..BATCH {
                    tenant.enqueue(&mut offers);
                    cycles += offers.len() as u64;
                    tenant.work_off(&mut offers);
                }
            }
            start.elapsed()
        });
    });
    println!("full_cycle: {cycles} interactions handled end to end");
    group.finish();
}

fn agent_frees_up(c: &mut Criterion) {
    let mut tenant = Tenant::new();
    // Make every agent busy, then leave ~100 interactions waiting per queue.
    let mut offers = Vec::new();
    let mut connected: Vec<InteractionId> = Vec::new();
    while tenant.engine.live_interactions() < usize::try_from(AGENTS + QUEUES * 100).unwrap_or(0) {
        tenant.enqueue(&mut offers);
        for (agent, interaction) in offers.drain(..) {
            tenant.handle(Input::Accept { agent, interaction });
            connected.push(interaction);
        }
    }
    let waiting: usize = (0..QUEUES)
        .filter_map(|q| tenant.engine.queue_stats(QueueId(q), tenant.now).ok())
        .map(|s| s.waiting)
        .sum();
    println!(
        "agent_frees_up: {} connected, {waiting} waiting across {QUEUES} queues",
        connected.len()
    );
    let mut group = c.benchmark_group("routing");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BATCH));
    let mut rng = Rng(11);
    let mut pulled = 0u64;
    group.bench_function("agent_frees_up", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                tenant.tick();
                // Untimed: pick the calls to end, spread over the tenant.
                let ending: Vec<InteractionId> = (0..BATCH)
                    .map(|_| {
                        let at = usize::try_from(rng.below(connected.len() as u64)).unwrap_or(0);
                        connected.swap_remove(at)
                    })
                    .collect();
                let start = Instant::now();
                for &interaction in &ending {
                    tenant
                        .engine
                        .handle(Input::End { interaction }, tenant.now)
                        .expect("connected");
                    collect_offers(&mut tenant.engine, &mut offers);
                }
                timed += start.elapsed();
                pulled += offers.len() as u64;
                // Untimed: accept what was offered and refill the queues.
                for (agent, interaction) in offers.drain(..) {
                    tenant.handle(Input::Accept { agent, interaction });
                    connected.push(interaction);
                }
                let mut refill = Vec::new();
                for _ in 0..ending.len() {
                    tenant.enqueue(&mut refill);
                }
                for (agent, interaction) in refill {
                    tenant.handle(Input::Accept { agent, interaction });
                    connected.push(interaction);
                }
            }
            timed
        });
    });
    println!("agent_frees_up: {pulled} waiting interactions pulled by freed agents");
    group.finish();
}

criterion_group!(benches, route_decisions, agent_frees_up);
criterion_main!(benches);
