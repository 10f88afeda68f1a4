//! The store against real SQLite and real PostgreSQL with the same bodies: migrations,
//! tenant scoping, constraint errors as domain errors, the event log committing with the change
//! it records, sessions and attachment bytes.

mod common;

use common::{Db, TestDb};
use serde_json::json;
use vacd::api::resources::new_values;
use vacd::catalog::{Role, EVENTS, MAILBOXES, QUEUES, SKILLS, USERS};
use vacd::store::{self, ListQuery, NewEvent, Principal, Store};

fn all() -> ListQuery {
    ListQuery {
        filters: Vec::new(),
        limit: 500,
        offset: 0,
    }
}

/// Every event of `kind`.
fn of_kind(kind: &str) -> ListQuery {
    ListQuery {
        filters: vec![(
            EVENTS.column("kind").expect("column"),
            store::Value::Text(Some(kind.into())),
        )],
        ..all()
    }
}

async fn open(db: &TestDb) -> Store {
    Store::open(&db.url, 4).await.expect("store opens")
}

/// A tenant `t` with one queue `Q`: their ids.
async fn tenant_with_queue(store: &Store) -> (i64, i64) {
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let queue = store
        .create(
            &QUEUES,
            t,
            None,
            &new_values(&QUEUES, json!({ "name": "Q" })).expect("valid"),
        )
        .await
        .expect("queue")["id"]
        .as_i64()
        .expect("id");
    (t, queue)
}

/// `n` new emails waiting for routing in `queue`; their ids.
async fn new_emails(store: &Store, t: i64, queue: i64, n: usize) -> Vec<i64> {
    new_work(store, t, queue, "email", n).await
}

/// `n` new interactions of `channel` waiting for routing in `queue`; their ids.
async fn new_work(store: &Store, t: i64, queue: i64, channel: &str, n: usize) -> Vec<i64> {
    let values = new_values(
        &vacd::catalog::INTERACTIONS,
        json!({ "channel": channel, "queue_id": queue }),
    )
    .expect("valid");
    let mut ids = Vec::new();
    for _ in 0..n {
        let created = store
            .create(&vacd::catalog::INTERACTIONS, t, None, &values)
            .await
            .expect("interaction");
        ids.push(created["id"].as_i64().expect("id"));
    }
    ids
}

async fn migrations_apply_once_and_report_ready(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    assert!(store.ready().await.expect("ready query"));
    store.close().await;
    // A second start finds everything applied and changes nothing.
    let store = open(&db).await;
    assert!(store.ready().await.expect("ready query"));
    store.migrate().await.expect("idempotent");
    store.close().await;
    db.drop_db().await;
}

/// A database is one process's: a second open is refused while the first holds it (a SQLite
/// file by name), and taken once it was closed.
async fn a_database_is_opened_by_one_store_at_a_time(db: Db) {
    let kind = db;
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    match Store::open(&db.url, 4).await {
        Err(e @ store::Error::Locked { .. }) => {
            let named = match kind {
                Db::Sqlite => "vacd.db",
                Db::Postgres => "PostgreSQL",
            };
            assert!(e.to_string().contains(named), "{e}");
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a second store opened the same database"),
    }
    store.close().await;
    let again = open(&db).await;
    assert!(again.ready().await.expect("ready query"));
    again.close().await;
    db.drop_db().await;
}

async fn rows_belong_to_their_tenant(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let a = store.create_tenant("a", "A").await.expect("tenant a").id;
    let b = store.create_tenant("b", "B").await.expect("tenant b").id;
    let skill = |name: &str| new_values(&SKILLS, json!({ "name": name })).expect("valid");
    let mine = store
        .create(&SKILLS, a, None, &skill("en"))
        .await
        .expect("create")["id"]
        .as_i64()
        .expect("id");
    // The same name in another tenant is no duplicate.
    store
        .create(&SKILLS, b, None, &skill("en"))
        .await
        .expect("same name, other tenant");

    assert!(matches!(
        store.get(&SKILLS, b, mine).await,
        Err(store::Error::NotFound)
    ));
    assert!(matches!(
        store.delete(&SKILLS, b, None, mine).await,
        Err(store::Error::NotFound)
    ));
    let change = new_values(&SKILLS, json!({ "name": "de" })).expect("valid");
    assert!(matches!(
        store.update(&SKILLS, b, None, mine, &change).await,
        Err(store::Error::NotFound)
    ));
    assert_eq!(store.list(&SKILLS, a, &all()).await.expect("list").total, 1);
    assert_eq!(
        store.get(&SKILLS, a, mine).await.expect("get")["name"],
        "en"
    );

    // A reference into another tenant is unknown.
    let their_mailbox = store
        .create(
            &MAILBOXES,
            b,
            None,
            &new_values(&MAILBOXES, json!({ "name": "Theirs" })).expect("valid"),
        )
        .await
        .expect("mailbox")["id"]
        .as_i64()
        .expect("id");
    let queue =
        new_values(&QUEUES, json!({ "name": "q", "mailbox_id": their_mailbox })).expect("valid");
    assert!(matches!(
        store.create(&QUEUES, a, None, &queue).await,
        Err(store::Error::UnknownReference {
            field: "mailbox_id",
            ..
        })
    ));
    store.close().await;
    db.drop_db().await;
}

async fn constraint_violations_are_domain_errors(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let mailbox = store
        .create(
            &MAILBOXES,
            t,
            None,
            &new_values(&MAILBOXES, json!({ "name": "M" })).expect("valid"),
        )
        .await
        .expect("mailbox")["id"]
        .as_i64()
        .expect("id");
    store
        .create(
            &QUEUES,
            t,
            None,
            &new_values(&QUEUES, json!({ "name": "Q", "mailbox_id": mailbox })).expect("valid"),
        )
        .await
        .expect("queue");
    let events_before = store.list(&EVENTS, t, &all()).await.expect("events").total;
    let duplicate = store
        .create(
            &QUEUES,
            t,
            None,
            &new_values(&QUEUES, json!({ "name": "Q" })).expect("valid"),
        )
        .await;
    assert!(
        matches!(duplicate, Err(store::Error::Duplicate("Queue"))),
        "{duplicate:?}"
    );
    let in_use = store.delete(&MAILBOXES, t, None, mailbox).await;
    assert!(
        matches!(in_use, Err(store::Error::InUse("Mailbox"))),
        "{in_use:?}"
    );
    assert!(matches!(
        store.create_tenant("t", "again").await,
        Err(store::Error::Duplicate("Tenant"))
    ));
    // Failed changes left no audit event behind: the event commits with its change or not at all.
    assert_eq!(
        store.list(&EVENTS, t, &all()).await.expect("events").total,
        events_before
    );
    store.close().await;
    db.drop_db().await;
}

async fn event_log_appends_and_filters(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    for (kind, interaction) in [
        ("interaction.queued", 7),
        ("interaction.offered", 7),
        ("interaction.queued", 8),
    ] {
        store
            .append_event(&NewEvent {
                tenant: t,
                kind: kind.into(),
                interaction_id: Some(interaction),
                agent_id: None,
                queue_id: Some(3),
                payload: json!({ "note": kind }).to_string(),
            })
            .await
            .expect("append");
    }
    let column = EVENTS.column("interaction_id").expect("column");
    let query = ListQuery {
        filters: vec![(column, store::Value::Int(Some(7)))],
        ..all()
    };
    let page = store.list(&EVENTS, t, &query).await.expect("list");
    assert_eq!(page.total, 2);
    assert_eq!(page.items[0]["kind"], "interaction.queued");
    assert_eq!(
        page.items[1]["payload"],
        json!({ "note": "interaction.offered" }).to_string()
    );
    store.close().await;
    db.drop_db().await;
}

async fn sessions_expire_and_follow_the_role(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let user = store
        .create(
            &USERS,
            t,
            None,
            &new_values(
                &USERS,
                json!({ "username": "u", "display_name": "U", "password": "password1" }),
            )
            .expect("valid"),
        )
        .await
        .expect("user")["id"]
        .as_i64()
        .expect("id");
    let who = Principal {
        user_id: user,
        tenant_id: t,
        role: Role::Agent,
    };
    let now = store::now_ms();
    let login = store
        .find_login("t", "u")
        .await
        .expect("lookup")
        .expect("the user logs in");
    assert_eq!(login.principal, who);
    for (token, expires) in [("live", now + 60_000), ("dead", now - 1)] {
        assert!(store
            .create_session(token, &login, expires)
            .await
            .expect("session"));
    }
    assert_eq!(store.session("live").await.expect("lookup"), Some(who));
    assert_eq!(store.session("dead").await.expect("lookup"), None);
    let promote = [(
        USERS.column("role").expect("column"),
        store::Value::Text(Some("supervisor".into())),
    )];
    store
        .update(&USERS, t, None, user, &promote)
        .await
        .expect("promote");
    assert_eq!(
        store.session("live").await.expect("lookup").map(|p| p.role),
        Some(Role::Supervisor)
    );
    store.delete_session("live").await.expect("logout");
    assert_eq!(store.session("live").await.expect("lookup"), None);
    assert!(
        login.password_hash.starts_with("$argon2"),
        "stored as an argon2 hash"
    );
    // A login checked against the old password while a reset commits starts no session.
    let reset = [(
        USERS.column("password").expect("column"),
        store::Value::Text(Some(
            vacd::api::auth::hash_password("password2").expect("hashed"),
        )),
    )];
    store
        .update(&USERS, t, None, user, &reset)
        .await
        .expect("reset");
    assert!(!store
        .create_session("late", &login, now + 60_000)
        .await
        .expect("refused, not failed"));
    assert_eq!(store.session("late").await.expect("lookup"), None);
    store.close().await;
    db.drop_db().await;
}

/// The journal's view of an interaction after runs of outputs, batched in different ways.
async fn routing_outputs_update_interactions(db: Db) {
    use std::time::{Duration, SystemTime};
    use vacd::catalog::INTERACTIONS;
    use vacd::store::OutputBatch;
    use vacd_actors::{AgentId, Channel, InteractionId, Output, QueueId, RevokeReason};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let ids = new_emails(&store, t, queue, 6).await;
    let (i, q) = (
        |n: usize| InteractionId(ids[n] as u64),
        QueueId(queue as u64),
    );
    let queued = |n: usize, order: u64| Output::Queued {
        interaction: i(n),
        queue: q,
        channel: Channel::Email,
        order,
        priority: 0,
        waited: std::time::Duration::ZERO,
    };
    let offered = |n: usize, agent: u64| Output::Offered {
        interaction: i(n),
        agent: AgentId(agent),
        queue: q,
        channel: Channel::Email,
        timeout: Duration::from_secs(20),
    };
    let revoked = |n: usize, agent: u64| Output::OfferRevoked {
        interaction: i(n),
        agent: AgentId(agent),
        reason: RevokeReason::Rejected,
    };
    let batch = |outputs: Vec<Output>| OutputBatch {
        tenant: t,
        at: SystemTime::now(),
        outputs,
    };
    store
        .record_outputs(&[
            batch(vec![
                queued(0, 1),
                offered(0, 7),
                revoked(0, 7),
                offered(0, 8),
            ]),
            batch(vec![Output::Connected {
                interaction: i(0),
                agent: AgentId(8),
                queue: q,
                waited: Duration::from_secs(3),
            }]),
            batch(vec![queued(1, 2), offered(1, 7)]),
            batch(vec![
                queued(2, 3),
                Output::Abandoned {
                    interaction: i(2),
                    queue: q,
                    waited: Duration::from_secs(1),
                },
            ]),
            batch(vec![queued(3, 4), offered(3, 9)]),
        ])
        .await
        .expect("recorded");
    // A revoke alone in a later run only requeues what is still offered.
    store
        .record_outputs(&[batch(vec![revoked(1, 7)])])
        .await
        .expect("recorded");
    store
        .record_outputs(&[batch(vec![
            Output::Connected {
                interaction: i(3),
                agent: AgentId(9),
                queue: q,
                waited: Duration::from_secs(2),
            },
            Output::Ended {
                interaction: i(3),
                agent: AgentId(9),
                wrap_up: Duration::ZERO,
            },
            Output::Done { interaction: i(3) },
        ])])
        .await
        .expect("recorded");
    store
        .record_outputs(&[batch(vec![revoked(3, 5)])])
        .await
        .expect("recorded");

    let row = |n: usize| {
        let store = store.clone();
        let id = ids[n];
        async move { store.get(&INTERACTIONS, t, id).await.expect("row") }
    };
    // A ticket the customer wrote to while its agent wrapped it up is made new again by the
    // store (as a ticket's reopen does); the done of its earlier routing, written after that,
    // must not finish it — only its new queueing changes it.
    store
        .record_outputs(&[batch(vec![
            queued(4, 5),
            Output::Ended {
                interaction: i(4),
                agent: AgentId(9),
                wrap_up: Duration::from_secs(60),
            },
        ])])
        .await
        .expect("recorded");
    {
        use sqlx::Connection;
        let mut other = sqlx::AnyConnection::connect(&db.url)
            .await
            .expect("connects");
        sqlx::query(
            "UPDATE interactions SET state = 'new', agent_id = NULL, queue_order = NULL, \
             queued_at = NULL WHERE id = $1",
        )
        .bind(ids[4])
        .execute(&mut other)
        .await
        .expect("made new");
        other.close().await.expect("closed");
    }
    store
        .record_outputs(&[batch(vec![Output::Done { interaction: i(4) }])])
        .await
        .expect("recorded");
    let r4 = row(4).await;
    assert_eq!(
        (r4["state"].as_str(), r4["queue_order"].as_i64()),
        (Some("new"), None),
        "a stale done leaves the reopened row alone: {r4}"
    );
    store
        .record_outputs(&[batch(vec![queued(4, 6)])])
        .await
        .expect("recorded");
    let r4 = row(4).await;
    assert_eq!(
        (r4["state"].as_str(), r4["queue_order"].as_i64()),
        (Some("queued"), Some(6)),
        "its new queueing is written: {r4}"
    );
    // Queued, then transferred to an agent, in one run: the wait starts at the transfer.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let transfer = start + Duration::from_secs(3);
    store
        .record_outputs(&[
            OutputBatch {
                tenant: t,
                at: start,
                outputs: vec![queued(5, 7)],
            },
            OutputBatch {
                tenant: t,
                at: transfer,
                outputs: vec![Output::Transferred {
                    interaction: i(5),
                    from: AgentId(9),
                    to: vacd_actors::TransferTarget::Agent { agent: AgentId(8) },
                    wrap_up: Duration::ZERO,
                }],
            },
        ])
        .await
        .expect("recorded");
    let r5 = row(5).await;
    assert_eq!(
        r5["queued_at"].as_i64(),
        Some(1_800_000_003_000),
        "the transfer's new wait: {r5}"
    );
    let (r0, r1, r2, r3) = (row(0).await, row(1).await, row(2).await, row(3).await);
    assert_eq!(
        (
            r0["state"].as_str(),
            r0["agent_id"].as_i64(),
            r0["queue_order"].as_i64()
        ),
        (Some("connected"), Some(8), Some(1))
    );
    assert!(r0["queued_at"].as_i64().is_some());
    assert_eq!(
        (r1["state"].as_str(), r1["agent_id"].as_i64()),
        (Some("queued"), None)
    );
    assert_eq!(
        (r2["state"].as_str(), r2["agent_id"].as_i64()),
        (Some("abandoned"), None)
    );
    assert_eq!(
        (r3["state"].as_str(), r3["agent_id"].as_i64()),
        (Some("done"), Some(9)),
        "a late revoke leaves a finished row alone"
    );
    assert_eq!(
        store
            .list(&EVENTS, t, &of_kind("routing.offered"))
            .await
            .expect("events")
            .total,
        4
    );
    // The event log holds the outputs in the order they were recorded, each with its own
    // columns and payload.
    let of_first = ListQuery {
        filters: vec![(
            EVENTS.column("interaction_id").expect("column"),
            store::Value::Int(Some(ids[0])),
        )],
        ..all()
    };
    let events = store.list(&EVENTS, t, &of_first).await.expect("events");
    let kinds: Vec<_> = events.items.iter().map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "routing.queued",
            "routing.offered",
            "routing.offer_revoked",
            "routing.offered",
            "routing.connected"
        ]
        .map(Some)
    );
    let revoke = &events.items[2];
    assert_eq!(
        (revoke["agent_id"].as_i64(), revoke["queue_id"].as_i64()),
        (Some(7), None)
    );
    let payload: serde_json::Value =
        serde_json::from_str(revoke["payload"].as_str().expect("payload text")).expect("JSON");
    assert_eq!(payload["reason"], "rejected");
    store.close().await;
    db.drop_db().await;
}

/// An enqueue or a transfer to a queue starts a wait (`queued_at`, from which a restart
/// restores how long the interaction has waited); a supervisor's move keeps the wait it has.
async fn a_transfer_starts_a_new_wait_and_a_move_does_not(db: Db) {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    use vacd::catalog::INTERACTIONS;
    use vacd::store::OutputBatch;
    use vacd_actors::{AgentId, Channel, InteractionId, Output, QueueId, TransferTarget};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let id = new_emails(&store, t, queue, 1).await[0];
    let (interaction, q) = (InteractionId(id as u64), QueueId(queue as u64));
    let queued = |order| Output::Queued {
        interaction,
        queue: q,
        channel: Channel::Email,
        order,
        priority: 0,
        waited: std::time::Duration::ZERO,
    };
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let minutes = |n: u64| start + Duration::from_secs(60 * n);
    let ms = |at: SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_millis() as i64
    };
    let record = |at, outputs| {
        let store = store.clone();
        async move {
            let batch = OutputBatch {
                tenant: t,
                at,
                outputs,
            };
            store.record_outputs(&[batch]).await.expect("recorded");
            store.get(&INTERACTIONS, t, id).await.expect("row")["queued_at"].as_i64()
        }
    };
    assert_eq!(record(start, vec![queued(1)]).await, Some(ms(start)));
    // Transferred back into the queue after a minute: a new wait.
    assert_eq!(
        record(minutes(1), vec![queued(7)]).await,
        Some(ms(minutes(1)))
    );
    // Moved by a supervisor (in the same run as a transfer, or alone): the wait goes on.
    let moved = Output::Moved {
        interaction,
        from_queue: q,
        queue: q,
        to: TransferTarget::Queue { queue: q },
        order: 7,
    };
    assert_eq!(
        record(minutes(2), vec![moved.clone()]).await,
        Some(ms(minutes(1)))
    );
    assert_eq!(
        record(minutes(3), vec![queued(9), moved]).await,
        Some(ms(minutes(3)))
    );
    // Transferred to an agent: a new wait too, in the same queue and place.
    let to_agent = vec![
        Output::Transferred {
            interaction,
            from: AgentId(1),
            to: TransferTarget::Agent { agent: AgentId(2) },
            wrap_up: Duration::ZERO,
        },
        Output::Offered {
            interaction,
            agent: AgentId(2),
            queue: q,
            channel: Channel::Email,
            timeout: Duration::from_secs(20),
        },
    ];
    assert_eq!(record(minutes(4), to_agent).await, Some(ms(minutes(4))));
    store.close().await;
    db.drop_db().await;
}

/// A restart re-applies silently only the escalation steps of the interaction's current queue
/// and wait — those at or before the wait at which its last one was logged: a move to another
/// queue (and back), and a transfer, start escalation over; a move to an agent does not.
async fn a_restart_counts_the_escalation_steps_of_the_current_queue_and_wait(db: Db) {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};
    use vacd::store::OutputBatch;
    use vacd_actors::{
        AgentId, Channel, EscalationAction, InteractionId, Output, QueueId, TransferTarget,
    };

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, a) = tenant_with_queue(&store).await;
    let values = new_values(&QUEUES, json!({ "name": "Overflow" })).expect("valid");
    let b = store
        .create(&QUEUES, t, None, &values)
        .await
        .expect("queue")["id"]
        .as_i64()
        .expect("id");
    // Both queues: a step after a minute and one after two hours. What a restart re-applies is
    // read by the wait at the last logged step: an hour here, so the first step only.
    for queue in [a, b] {
        for after in [60, 7200] {
            let step =
                json!({ "queue_id": queue, "after_seconds": after, "action": "drop_skills" });
            let values = new_values(&vacd::catalog::QUEUE_ESCALATIONS, step).expect("valid step");
            store
                .create(&vacd::catalog::QUEUE_ESCALATIONS, t, None, &values)
                .await
                .expect("step");
        }
    }
    let ids = new_emails(&store, t, a, 2).await;
    let (moved, transferred) = (InteractionId(ids[0] as u64), InteractionId(ids[1] as u64));
    let (qa, qb) = (QueueId(a as u64), QueueId(b as u64));
    let queued = |interaction, queue, order| Output::Queued {
        interaction,
        queue,
        channel: Channel::Email,
        order,
        priority: 0,
        waited: std::time::Duration::ZERO,
    };
    let escalated = |interaction, queue, step| Output::Escalated {
        interaction,
        queue,
        step,
        action: EscalationAction::DropSkills,
    };
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let batch = |at, outputs| OutputBatch {
        tenant: t,
        at,
        outputs,
    };
    store
        .record_outputs(&[
            batch(
                an_hour_ago,
                vec![
                    queued(moved, qa, 1),
                    escalated(moved, qa, 0),
                    escalated(moved, qa, 1),
                    queued(transferred, qa, 2),
                    escalated(transferred, qa, 0),
                    Output::Connected {
                        interaction: transferred,
                        agent: AgentId(1),
                        queue: qa,
                        waited: Duration::from_secs(1),
                    },
                ],
            ),
            batch(
                SystemTime::now(),
                vec![
                    Output::Moved {
                        interaction: moved,
                        from_queue: qa,
                        queue: qb,
                        to: TransferTarget::Queue { queue: qb },
                        order: 1,
                    },
                    escalated(moved, qb, 0),
                    Output::Transferred {
                        interaction: transferred,
                        from: AgentId(1),
                        to: TransferTarget::Queue { queue: qa },
                        wrap_up: Duration::ZERO,
                    },
                    queued(transferred, qa, 3),
                ],
            ),
        ])
        .await
        .expect("recorded");
    let setup = store
        .routing_setup(t, &BTreeSet::new(), false)
        .await
        .expect("setup");
    // What a restart finds of an interaction's wait.
    let restored = |setup: &vacd::store::RoutingSetup, interaction: InteractionId| {
        setup
            .setup
            .waiting
            .iter()
            .find(|w| w.id == interaction)
            .and_then(|w| w.restored)
    };
    let applied = |setup: &vacd::store::RoutingSetup, interaction| {
        restored(setup, interaction).map(|r| r.escalations_applied)
    };
    assert_eq!(
        applied(&setup, moved),
        Some(1),
        "the overflow queue's first step only"
    );
    assert_eq!(applied(&setup, transferred), Some(0), "a new wait");

    // The restored routing announces the waits it took back (`Queued` with how long each had
    // waited): a second restart finds the same steps and the same wait, not a new one.
    let announced: Vec<Output> = setup
        .setup
        .waiting
        .iter()
        .filter_map(|w| {
            let r = w.restored.as_ref()?;
            Some(Output::Queued {
                interaction: w.id,
                queue: w.queue,
                channel: w.channel,
                order: r.order,
                priority: w.priority,
                waited: r.waited,
            })
        })
        .collect();
    let waited = |setup: &vacd::store::RoutingSetup, interaction| {
        restored(setup, interaction).expect("restored").waited
    };
    // Outputs logged now, then what a restart finds.
    let after = |outputs: Vec<Output>| {
        let store = &store;
        async move {
            store
                .record_outputs(&[batch(SystemTime::now(), outputs)])
                .await
                .expect("recorded");
            store
                .routing_setup(t, &BTreeSet::new(), false)
                .await
                .expect("setup")
        }
    };
    let first_wait = waited(&setup, moved);
    assert!(first_wait >= Duration::from_secs(3599), "{first_wait:?}");
    let again = after(announced).await;
    assert!(waited(&again, moved) >= first_wait, "the wait goes on");
    assert_eq!(
        applied(&again, moved),
        Some(1),
        "the steps taken stay taken"
    );
    let events = store
        .report_events(t, 0, vacd::store::now_ms() + 1, 1000)
        .await
        .expect("events")
        .expect("within the limit");
    let restored_waits = events
        .iter()
        .filter(|e| e.kind == "routing.queued" && e.restored)
        .count();
    assert_eq!(
        restored_waits, 2,
        "the restored waits are marked so in the log"
    );

    let moved_to = |from_queue, queue, to| Output::Moved {
        interaction: moved,
        from_queue,
        queue,
        to,
        order: 1,
    };
    let to_queue = |queue| TransferTarget::Queue { queue };
    for (outputs, steps, why) in [
        (
            vec![moved_to(qb, qa, to_queue(qa)), escalated(moved, qa, 0)],
            1,
            "moved back to its first queue, whose first step is due at once again: the steps \
             of this stay, not the first stay's two as well",
        ),
        (
            vec![moved_to(
                qa,
                qa,
                TransferTarget::Agent { agent: AgentId(1) },
            )],
            1,
            "offered straight to an agent: no new escalation, the step stays taken",
        ),
        (
            vec![moved_to(qa, qb, to_queue(qb))],
            0,
            "moved to a queue with nothing logged since: escalation starts over there",
        ),
    ] {
        assert_eq!(applied(&after(outputs).await, moved), Some(steps), "{why}");
    }
    store.close().await;
    db.drop_db().await;
}

/// Routing outputs that cannot be written together (a move to a queue deleted meanwhile) lose
/// only the change that cannot be made: every event is written, and every other row change.
async fn a_bad_row_change_costs_only_itself(db: Db) {
    use std::time::SystemTime;
    use vacd::catalog::INTERACTIONS;
    use vacd::store::OutputBatch;
    use vacd_actors::{Channel, InteractionId, Output, QueueId, TransferTarget};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let ids = new_emails(&store, t, queue, 2).await;
    let (moved, queued) = (InteractionId(ids[0] as u64), InteractionId(ids[1] as u64));
    let (q, gone) = (QueueId(queue as u64), QueueId(9_999_999));
    let batch = OutputBatch {
        tenant: t,
        at: SystemTime::now(),
        outputs: vec![
            Output::Moved {
                interaction: moved,
                from_queue: q,
                queue: gone,
                to: TransferTarget::Queue { queue: gone },
                order: 1,
            },
            Output::Queued {
                interaction: queued,
                queue: q,
                channel: Channel::Email,
                order: 2,
                priority: 0,
                waited: std::time::Duration::ZERO,
            },
        ],
    };
    store.record_outputs(&[batch]).await.expect("recorded");
    let r0 = store.get(&INTERACTIONS, t, ids[0]).await.expect("row");
    let r1 = store.get(&INTERACTIONS, t, ids[1]).await.expect("row");
    assert_eq!(
        (r0["state"].as_str(), r0["queue_id"].as_i64()),
        (Some("new"), Some(queue)),
        "the impossible change is not made"
    );
    assert_eq!(
        (r1["state"].as_str(), r1["queue_order"].as_i64()),
        (Some("queued"), Some(2))
    );
    for kind in ["routing.moved", "routing.queued"] {
        let events = store
            .list(&EVENTS, t, &of_kind(kind))
            .await
            .expect("events");
        assert_eq!(events.total, 1, "{kind}");
    }
    store.close().await;
    db.drop_db().await;
}

/// Many creates at once are committed together (group commit); each still gets its own row,
/// its own audit event and its own error.
async fn concurrent_creates_each_get_their_own_outcome(db: Db) {
    use vacd::catalog::INTERACTIONS;
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let other = store.create_tenant("o", "O").await.expect("tenant").id;
    let queue = |tenant, name: &str| {
        let store = store.clone();
        let values = new_values(&QUEUES, json!({ "name": name })).expect("valid");
        async move { store.create(&QUEUES, tenant, None, &values).await }
    };
    let mine = queue(t, "mine").await.expect("queue")["id"]
        .as_i64()
        .expect("id");
    let foreign = queue(other, "theirs").await.expect("queue")["id"]
        .as_i64()
        .expect("id");
    let events_before = store.list(&EVENTS, t, &all()).await.expect("events").total;

    let mut tasks = Vec::new();
    for n in 0..150 {
        // Every tenth names the other tenant's queue; every fifteenth a duplicate queue name.
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if n % 15 == 7 {
                let values = new_values(&QUEUES, json!({ "name": "twin" })).expect("valid");
                return (n, store.create(&QUEUES, t, Some(n), &values).await);
            }
            let target = if n % 10 == 3 { foreign } else { mine };
            let body =
                json!({ "channel": "email", "queue_id": target, "subject": format!("s-{n}") });
            let values = new_values(&INTERACTIONS, body).expect("valid");
            (n, store.create(&INTERACTIONS, t, Some(n), &values).await)
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let (mut created, mut twins) = (0, 0);
    for task in tasks {
        let (n, outcome) = task.await.expect("task");
        if n % 15 == 7 {
            match outcome {
                Ok(_) => twins += 1,
                Err(store::Error::Duplicate("Queue")) => {}
                Err(e) => panic!("twin {n}: {e:?}"),
            }
            continue;
        }
        if n % 10 == 3 {
            assert!(
                matches!(
                    outcome,
                    Err(store::Error::UnknownReference {
                        field: "queue_id",
                        ..
                    })
                ),
                "{n}: {outcome:?}"
            );
            continue;
        }
        let row = outcome.unwrap_or_else(|e| panic!("{n}: {e:?}"));
        assert_eq!(
            row["subject"],
            format!("s-{n}"),
            "the answer is the request's own row"
        );
        let id = row["id"].as_i64().expect("id");
        assert!(ids.insert(id), "ids are distinct");
        let stored = store.get(&INTERACTIONS, t, id).await.expect("durable");
        assert_eq!(stored, row);
        created += 1;
    }
    assert_eq!(twins, 1, "exactly one of the duplicates is created");
    // One audit event per created row, none for a refused one, each naming its own row.
    let events = store.list(&EVENTS, t, &all()).await.expect("events");
    assert_eq!(events.total, events_before + created + twins);
    let audited: std::collections::BTreeSet<i64> = events
        .items
        .iter()
        .filter(|e| e["kind"] == "admin.interactions.created")
        .filter_map(|e| {
            let payload: serde_json::Value = serde_json::from_str(e["payload"].as_str()?).ok()?;
            payload["id"].as_i64()
        })
        .collect();
    assert_eq!(audited, ids);
    store.close().await;
    db.drop_db().await;
}

/// The first offer of an interaction shows the row as created without reading it; a change
/// through the store is what later offers show.
async fn offer_details_follow_changes(db: Db) {
    use vacd::catalog::INTERACTIONS;
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let create = |subject: &str| {
        let values = new_values(
            &INTERACTIONS,
            json!({ "channel": "email", "subject": subject }),
        )
        .expect("valid");
        let store = store.clone();
        async move { store.create(&INTERACTIONS, t, None, &values).await }
    };
    let details = |id: i64| {
        let store = store.clone();
        async move {
            let details = store.offer_details(t, id).await?;
            Ok::<_, store::Error>(
                serde_json::from_str::<serde_json::Value>(details.record.get()).expect("json"),
            )
        }
    };
    let first = create("first").await.expect("created");
    let id = first["id"].as_i64().expect("id");
    assert_eq!(details(id).await.expect("details"), first);
    // Offered again: read from the database, same record.
    assert_eq!(details(id).await.expect("details"), first);

    let second = create("before").await.expect("created");
    let id = second["id"].as_i64().expect("id");
    let subject = [(
        INTERACTIONS.column("subject").expect("column"),
        store::Value::Text(Some("after".into())),
    )];
    store
        .update(&INTERACTIONS, t, None, id, &subject)
        .await
        .expect("updated");
    assert_eq!(details(id).await.expect("details")["subject"], "after");
    let third = create("gone").await.expect("created")["id"]
        .as_i64()
        .expect("id");
    store
        .delete(&INTERACTIONS, t, None, third)
        .await
        .expect("deleted");
    assert!(matches!(details(third).await, Err(store::Error::NotFound)));
    store.close().await;
    db.drop_db().await;
}

/// Messages of many chats arriving at once are committed together: each gets its own row, a
/// resend (same interaction, author and client id) — also one in the same batch — gets the row
/// stored first, and a message that cannot be stored fails without taking its batch along.
async fn concurrent_chat_messages_are_each_stored_once(db: Db) {
    use vacd::catalog::INTERACTIONS;
    use vacd_actors::chat::{NewMessage, Party};
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let mut interactions = Vec::new();
    for n in 0..10 {
        let values = new_values(
            &INTERACTIONS,
            json!({ "channel": "chat", "subject": format!("c-{n}") }),
        )
        .expect("valid");
        let row = store
            .create(&INTERACTIONS, t, None, &values)
            .await
            .expect("created");
        interactions.push(row["id"].as_i64().expect("id"));
    }
    // Every fourth message has no client id; the others repeat each client id of an
    // interaction several times (n and n + 40 share interaction and client id).
    let message = |n: usize| NewMessage {
        author: Party::Visitor,
        name: "Vera".into(),
        text: format!("m-{n}"),
        client_id: (!n.is_multiple_of(4)).then(|| format!("c-{}", n % 40)),
        whisper: false,
    };
    let mut tasks = Vec::new();
    for n in 0..400 {
        let store = store.clone();
        let interaction = interactions[n % 10];
        tasks.push(tokio::spawn(async move {
            let stored = store.store_chat_message(t, interaction, &message(n)).await;
            (n, interaction, stored)
        }));
    }
    // Messages of an interaction that does not exist fail alone, whatever batch they land in.
    let strays: Vec<_> = (0..5)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.store_chat_message(t, -1, &message(1000 + n)).await })
        })
        .collect();
    for stray in strays {
        assert!(
            stray.await.expect("task").is_err(),
            "no row for a missing interaction"
        );
    }
    let mut by_key = std::collections::HashMap::new();
    let mut anonymous = std::collections::BTreeSet::new();
    for task in tasks {
        let (n, interaction, stored) = task.await.expect("task");
        let stored = stored.unwrap_or_else(|e| panic!("{n}: {e:?}"));
        match message(n).client_id {
            None => {
                assert_eq!(stored.text, format!("m-{n}"));
                assert!(anonymous.insert(stored.id), "{n}: a row of its own");
            }
            Some(client) => {
                let first = *by_key.entry((interaction, client)).or_insert(stored.id);
                assert_eq!(stored.id, first, "{n}: every copy gets the same row");
            }
        }
    }
    assert_eq!(anonymous.len(), 100);
    assert_eq!(by_key.len(), 30, "one row per interaction and client id");
    let mut rows = 0;
    for interaction in &interactions {
        let messages = store
            .chat_messages(t, *interaction, "Vera", None)
            .await
            .expect("messages");
        for m in &messages {
            let expected = match &m.client_id {
                Some(client) => by_key[&(*interaction, client.clone())],
                None => m.id,
            };
            assert_eq!(m.id, expected, "the stored row is the one answered");
            assert!(m.client_id.is_some() || anonymous.contains(&m.id));
        }
        rows += messages.len();
    }
    assert_eq!(rows, 130, "nothing stored twice, nothing lost");
    store.close().await;
    db.drop_db().await;
}

/// Calls starting and ending at once share transactions: each gets its own interaction and
/// record, callers are one customer per number, and a write that cannot be done (a tenant
/// that does not exist) fails alone.
async fn concurrent_call_records_are_each_written_once(db: Db) {
    use vacd::store::{CallEnd, CallResult, HangupBy, NewCall};
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let call = |n: usize, tenant: i64| NewCall {
        tenant,
        mailbox: None,
        service_address: None,
        queue: None,
        call_id: format!("call-{n}"),
        trunk: "test".into(),
        caller: Some(format!("+4917000000{}", n % 7)),
        dialled: "+4930123456".into(),
        dialled_by: None,
        language: None,
    };
    let mut tasks = Vec::new();
    for n in 0..120 {
        let store = store.clone();
        let tenant = if n % 40 == 13 { -1 } else { t };
        tasks.push(tokio::spawn(async move {
            let started = store.start_call(&call(n, tenant)).await;
            if let Ok(started) = &started {
                let end = CallEnd {
                    tenant,
                    interaction: started.interaction,
                    agent: None,
                    connected_at: None,
                    result: CallResult::Abandoned,
                    hangup_by: HangupBy::Caller,
                    routed: true,
                };
                store.end_call(&end).await.expect("ended");
            }
            (n, tenant, started)
        }));
    }
    let mut interactions = std::collections::BTreeSet::new();
    let mut customers = std::collections::BTreeMap::new();
    for task in tasks {
        let (n, tenant, started) = task.await.expect("task");
        if tenant != t {
            assert!(started.is_err(), "{n}: no record for an unknown tenant");
            continue;
        }
        let started = started.unwrap_or_else(|e| panic!("{n}: {e:?}"));
        assert!(
            interactions.insert(started.interaction),
            "{n}: its own interaction"
        );
        let customer = started.customer.expect("a caller's customer");
        assert_eq!(
            *customers.entry(n % 7).or_insert(customer),
            customer,
            "{n}: one customer per number"
        );
    }
    assert_eq!(interactions.len(), 117);
    assert_eq!(customers.len(), 7);
    let events = store.list(&EVENTS, t, &all()).await.expect("events");
    let count = |kind: &str| events.items.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!((count("call.started"), count("call.ended")), (117, 117));
    store.close().await;
    db.drop_db().await;
}

/// Hands the journal `agents` presence changes of round `round`, one output batch each.
fn journal_presence_changes(store: &Store, tenant: i64, round: u64, agents: u64) {
    use std::time::SystemTime;
    use vacd::store::OutputBatch;
    use vacd_actors::{AgentId, Output, Presence};

    for agent in 0..agents {
        store.journal(OutputBatch {
            tenant,
            at: SystemTime::now(),
            outputs: vec![Output::PresenceChanged {
                agent: AgentId(round * 10 + agent),
                from: Presence::Offline,
                to: Presence::Busy,
            }],
        });
    }
}

/// Routing's outputs are committed in the same rounds as creates (on SQLite; PostgreSQL has a
/// committer for each); a round that fails for one create (a duplicate) writes the create on its
/// own and still every output of the round.
async fn routing_outputs_survive_a_failed_create_in_their_round(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let twin = new_values(&QUEUES, json!({ "name": "twin" })).expect("valid");
    store.create(&QUEUES, t, None, &twin).await.expect("queue");
    let rounds = 50;
    for round in 0..rounds {
        journal_presence_changes(&store, t, round, 4);
        // Sent while the outputs wait (or are being written): usually the same round.
        let refused = store.create(&QUEUES, t, None, &twin).await;
        assert!(
            matches!(refused, Err(store::Error::Duplicate("Queue"))),
            "{refused:?}"
        );
    }
    store.flushed().await;
    let presence = of_kind("routing.presence_changed");
    let events = store.list(&EVENTS, t, &presence).await.expect("events");
    assert_eq!(events.total, rounds as i64 * 4, "no output lost");
    store.close().await;
    db.drop_db().await;
}

/// A create that shares its round with routing outputs (on SQLite, usually one multi-statement
/// trip) is inserted with its audit event when its references hold, and refused naming the
/// reference that points nowhere otherwise; either way every output of the round is written
/// once.
async fn a_lone_create_and_its_round_are_written_whole(db: Db) {
    use vacd::catalog::INTERACTIONS;

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let rounds = 40;
    let mut created = Vec::new();
    for round in 0..rounds {
        journal_presence_changes(&store, t, round, 3);
        // Sent while the outputs wait (or are being written): usually the same round. Every
        // other round one of two references points nowhere (the mailbox; the queue holds).
        let (nowhere, field, table) = if round % 2 == 0 {
            let body = json!({ "channel": "email", "queue_id": queue + 1000 });
            (body, "queue_id", "queues")
        } else {
            let body = json!({ "channel": "email", "mailbox_id": 4242, "queue_id": queue });
            (body, "mailbox_id", "mailboxes")
        };
        let nowhere = new_values(&INTERACTIONS, nowhere).expect("valid");
        match store.create(&INTERACTIONS, t, None, &nowhere).await {
            Err(store::Error::UnknownReference {
                field: f,
                table: tb,
            }) => {
                assert_eq!((f, tb), (field, table));
            }
            other => panic!("round {round}: {other:?}"),
        }
        let values = new_values(
            &INTERACTIONS,
            json!({ "channel": "email", "queue_id": queue, "subject": format!("round {round}") }),
        )
        .expect("valid");
        let row = store
            .create(&INTERACTIONS, t, Some(7), &values)
            .await
            .expect("created");
        assert_eq!(row["queue_id"], queue);
        assert_eq!(row["subject"], format!("round {round}"));
        created.push(row["id"].as_i64().expect("id"));
    }
    store.flushed().await;
    let presence = store
        .list(&EVENTS, t, &of_kind("routing.presence_changed"))
        .await
        .expect("events");
    assert_eq!(presence.total, rounds as i64 * 3, "every output once");
    let audits = store
        .list(&EVENTS, t, &of_kind("admin.interactions.created"))
        .await
        .expect("events");
    let audited: Vec<(i64, String, i64)> = audits
        .items
        .iter()
        .map(|e| {
            let payload: serde_json::Value =
                serde_json::from_str(e["payload"].as_str().expect("payload")).expect("json");
            (
                payload["id"].as_i64().expect("id"),
                payload["table"].as_str().expect("table").to_owned(),
                e["agent_id"].as_i64().expect("actor"),
            )
        })
        .collect();
    let expected: Vec<(i64, String, i64)> = created
        .iter()
        .map(|id| (*id, "interactions".to_owned(), 7))
        .collect();
    assert_eq!(audited, expected, "one audit event per created row");
    let rows = store
        .list(&INTERACTIONS, t, &all())
        .await
        .expect("interactions");
    assert_eq!(rows.total, rounds as i64, "nothing of the refused creates");
    store.close().await;
    db.drop_db().await;
}

/// A round larger than the largest statement (300 creates, then 300 outputs in one batch) is
/// written whole: every row inserted once, every event appended, every row changed.
async fn a_round_of_more_than_one_chunk_is_written_whole(db: Db) {
    use std::time::SystemTime;
    use vacd::catalog::INTERACTIONS;
    use vacd::store::OutputBatch;
    use vacd_actors::{Channel, InteractionId, Output, QueueId};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let tasks: Vec<_> = (0..300)
        .map(|n| {
            let store = store.clone();
            let body =
                json!({ "channel": "email", "queue_id": queue, "subject": format!("s-{n}") });
            let values = new_values(&INTERACTIONS, body).expect("valid");
            tokio::spawn(async move { store.create(&INTERACTIONS, t, None, &values).await })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        let row = task.await.expect("task").expect("created");
        ids.push(row["id"].as_i64().expect("id"));
    }
    let unique: std::collections::BTreeSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), 300, "each create its own row");
    let outputs = ids
        .iter()
        .enumerate()
        .map(|(n, id)| Output::Queued {
            interaction: InteractionId(*id as u64),
            queue: QueueId(queue as u64),
            channel: Channel::Email,
            order: n as u64,
            priority: 0,
            waited: std::time::Duration::ZERO,
        })
        .collect();
    store
        .record_outputs(&[OutputBatch {
            tenant: t,
            at: SystemTime::now(),
            outputs,
        }])
        .await
        .expect("recorded");
    assert_eq!(
        store
            .list(&EVENTS, t, &of_kind("routing.queued"))
            .await
            .expect("events")
            .total,
        300
    );
    for (n, id) in ids.iter().enumerate() {
        let row = store.get(&INTERACTIONS, t, *id).await.expect("row");
        assert_eq!(row["state"], "queued", "{row}");
        assert_eq!(row["queue_order"], n as i64, "{row}");
    }
    store.close().await;
    db.drop_db().await;
}

/// Rounds of several creates (on SQLite: `BEGIN`, the inserts, then the events, row changes and
/// `COMMIT` in one trip) write every create and output once, also when one create of the round
/// fails and the round is done again one by one; the writer is clean afterwards.
async fn rounds_of_several_creates_are_written_whole(db: Db) {
    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let twin = new_values(&QUEUES, json!({ "name": "twin" })).expect("valid");
    store.create(&QUEUES, t, None, &twin).await.expect("queue");
    let rounds = 10;
    for round in 0..rounds {
        journal_presence_changes(&store, t, round, 5);
        // Sent together: they gather in one or two rounds beside the outputs. Every other
        // round one of them is a duplicate.
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                let name = if round % 2 == 1 && n == 3 {
                    "twin".to_owned()
                } else {
                    format!("q-{round}-{n}")
                };
                let values = new_values(&QUEUES, json!({ "name": name })).expect("valid");
                tokio::spawn(async move { store.create(&QUEUES, t, None, &values).await })
            })
            .collect();
        for (n, task) in tasks.into_iter().enumerate() {
            let outcome = task.await.expect("task");
            if round % 2 == 1 && n == 3 {
                assert!(
                    matches!(outcome, Err(store::Error::Duplicate("Queue"))),
                    "{outcome:?}"
                );
            } else {
                let row = outcome.expect("created");
                assert_eq!(row["name"], format!("q-{round}-{n}"));
            }
        }
    }
    store.flushed().await;
    let count = |kind: &'static str| {
        let store = store.clone();
        async move {
            let events = store.list(&EVENTS, t, &of_kind(kind)).await;
            events.expect("events").total
        }
    };
    let created = 1 + rounds as i64 * 8 - rounds as i64 / 2;
    assert_eq!(count("routing.presence_changed").await, rounds as i64 * 5);
    assert_eq!(count("admin.queues.created").await, created);
    let queues = store.list(&QUEUES, t, &all()).await.expect("queues");
    assert_eq!(queues.total, created, "each create once");
    let after = new_values(&QUEUES, json!({ "name": "after" })).expect("valid");
    store
        .create(&QUEUES, t, None, &after)
        .await
        .expect("the writer takes the next round");
    store.close().await;
    db.drop_db().await;
}

/// A round of outputs that cannot be written (its tenant is gone) fails alone: nothing of it
/// stays behind on the writer, and the next rounds (on SQLite one multi-statement trip each, on
/// PostgreSQL a transaction) are written whole.
async fn a_failed_output_round_leaves_the_writer_clean(db: Db) {
    use std::time::SystemTime;
    use vacd::store::OutputBatch;
    use vacd_actors::{AgentId, Output, Presence};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let presence = |tenant: i64, agent: u64| OutputBatch {
        tenant,
        at: SystemTime::now(),
        outputs: vec![Output::PresenceChanged {
            agent: AgentId(agent),
            from: Presence::Offline,
            to: Presence::Busy,
        }],
    };
    let failed = store
        .record_outputs(&[presence(t, 1), presence(t + 1000, 2)])
        .await;
    assert!(failed.is_err(), "an event of no tenant is refused");
    for agent in 3..6 {
        store
            .record_outputs(&[presence(t, agent)])
            .await
            .expect("a later round is written");
    }
    let events = store.list(&EVENTS, t, &all()).await.expect("events");
    let agents: Vec<i64> = events
        .items
        .iter()
        .filter_map(|e| e["agent_id"].as_i64())
        .collect();
    assert_eq!(
        agents,
        [3, 4, 5],
        "the failed round left nothing: {events:?}"
    );
    store.close().await;
    db.drop_db().await;
}

/// What a tenant's routing restarts from: waiting work in its order, with calls only while
/// their caller is still on the line (live), which are named apart (their rings must stop). After a failure, work agents held (a live connected call, an email in wrap-up, a call
/// that hung up meanwhile, to wrap up) is theirs again, and the email of an agent that is gone
/// waits again; at a start of vacd, the emails wait again — but the one in wrap-up, which is
/// finished — and no call is left.
async fn routing_restarts_with_the_live_calls_still_waiting(db: Db) {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};
    use vacd::catalog::INTERACTIONS;
    use vacd::catalog::USERS;
    use vacd::store::{OutputBatch, RoutingSetup};
    use vacd_actors::{AgentId, Channel, InteractionId, Output, QueueId};

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let q = QueueId(queue as u64);
    let mut agents = Vec::new();
    for name in ["a", "b", "c"] {
        let body = json!({ "username": name, "display_name": name, "password": "password1" });
        let values = new_values(&USERS, body).expect("valid");
        let user = store.create(&USERS, t, None, &values).await.expect("user");
        agents.push(AgentId(user["id"].as_u64().expect("id")));
    }
    // An agent deleted since (or never there): its held email waits again.
    let gone = AgentId(4242);
    let channels = [
        Channel::Call,
        Channel::Call,
        Channel::Call,
        Channel::Call,
        Channel::Email,
        Channel::Email,
        Channel::Call,
        Channel::Email,
    ];
    let mut ids = Vec::new();
    let mut outputs = Vec::new();
    for (n, channel) in channels.into_iter().enumerate() {
        let name = if channel == Channel::Call {
            "call"
        } else {
            "email"
        };
        let id = new_work(&store, t, queue, name, 1).await[0];
        ids.push(id);
        // Queued in reverse order of creation, so the order is not the ids'.
        outputs.push(Output::Queued {
            interaction: InteractionId(id as u64),
            queue: q,
            channel,
            order: 10 - n as u64,
            priority: 0,
            waited: std::time::Duration::ZERO,
        });
    }
    // A call agent b placed itself (click-to-dial), never queued.
    let placed = new_work(&store, t, queue, "call", 1).await[0];
    ids.push(placed);
    outputs.push(Output::Placed {
        interaction: InteractionId(placed as u64),
        agent: agents[1],
        queue: q,
        channel: Channel::Call,
        order: 20,
    });
    let i = |n: usize| InteractionId(ids[n] as u64);
    outputs.push(Output::Offered {
        interaction: i(1),
        agent: AgentId(7),
        queue: q,
        channel: Channel::Call,
        timeout: Duration::from_secs(20),
    });
    // The calls 3 and 6 and the emails 5 and 7 are answered, and the email 5 ended (its agent
    // wraps it up).
    for (n, agent, channel) in [
        (3, agents[0], Channel::Call),
        (5, agents[1], Channel::Email),
        (6, agents[2], Channel::Call),
        (7, gone, Channel::Email),
    ] {
        outputs.push(Output::Offered {
            interaction: i(n),
            agent,
            queue: q,
            channel,
            timeout: Duration::from_secs(20),
        });
        outputs.push(Output::Connected {
            interaction: i(n),
            agent,
            queue: q,
            waited: Duration::from_secs(1),
        });
    }
    outputs.push(Output::Ended {
        interaction: i(5),
        agent: agents[1],
        wrap_up: Duration::from_secs(30),
    });
    store
        .record_outputs(&[OutputBatch {
            tenant: t,
            at: SystemTime::now(),
            outputs,
        }])
        .await
        .expect("recorded");

    // Calls 0, 1, 3 and the placed one are still on the line; 2 and 6 are not (a restart of
    // vacd: none are).
    let live: BTreeSet<i64> = [ids[0], ids[1], ids[3], placed].into();
    let RoutingSetup {
        setup,
        waiting_calls,
    } = store.routing_setup(t, &live, true).await.expect("setup");
    let waiting: Vec<InteractionId> = setup.waiting.iter().map(|w| w.id).collect();
    assert_eq!(
        waiting,
        [i(7), i(4), i(1), i(0)],
        "live waiting calls, the waiting email and the email of the agent that is gone, in order"
    );
    let held: Vec<(InteractionId, AgentId, bool)> = setup
        .held
        .iter()
        .map(|h| (h.interaction.id, h.agent, h.wrap_up))
        .collect();
    assert_eq!(
        held,
        [
            (i(6), agents[2], true),
            (i(5), agents[1], true),
            (i(3), agents[0], false),
            (i(8), agents[1], false)
        ],
        "back with their agents: the call that ended meanwhile and the email in wrap-up, the \
         connected live call, the live call its agent placed"
    );
    assert_eq!(
        waiting_calls,
        [i(1), i(0)],
        "the live calls that wait again, queued or offered: their rings stop"
    );
    let RoutingSetup {
        setup,
        waiting_calls,
    } = store
        .routing_setup(t, &BTreeSet::new(), false)
        .await
        .expect("setup");
    let waiting: Vec<InteractionId> = setup.waiting.iter().map(|w| w.id).collect();
    assert_eq!(
        waiting,
        [i(7), i(4)],
        "the emails wait again, but the one in wrap-up; no call outlives vacd"
    );
    let finished = store
        .get(&INTERACTIONS, t, ids[5])
        .await
        .expect("the email in wrap-up");
    assert_eq!(
        finished["state"], "done",
        "its agent had ended it: {finished}"
    );
    assert!(setup.held.is_empty());
    assert!(waiting_calls.is_empty());
    store.close().await;
    db.drop_db().await;
}

/// A TCP proxy in front of PostgreSQL that, once armed, passes the next `COMMIT` on and then
/// cuts that connection: the server commits, the client never hears so.
struct CommitCutter {
    /// The database's URL through the proxy.
    url: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CommitCutter {
    async fn start(url: &str) -> CommitCutter {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (authority, database) = rest.split_once('/').expect("a database");
        let (user, upstream) = authority.rsplit_once('@').expect("a user");
        let upstream = upstream.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let proxy = listener.local_addr().expect("address");
        let armed = Arc::new(AtomicBool::new(false));
        let arm = armed.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("PostgreSQL");
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let (arm, cut) = (arm.clone(), Arc::new(AtomicBool::new(false)));
                let cutting = cut.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                        let chunk = &buffer[..n];
                        let commit = chunk.windows(6).any(|w| w == b"COMMIT");
                        if commit && arm.swap(false, Ordering::SeqCst) {
                            // Cut before the server can answer: nothing it sends from now on
                            // reaches the client.
                            cutting.store(true, Ordering::SeqCst);
                            let _ = to_server.write_all(chunk).await;
                            return;
                        }
                        if to_server.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buffer).await {
                        if cut.load(Ordering::SeqCst)
                            || to_client.write_all(&buffer[..n]).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        CommitCutter {
            url: format!("{scheme}://{user}@{proxy}/{database}?sslmode=disable"),
            armed,
        }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// PostgreSQL: routing outputs whose row change the database refuses for the moment (a
/// serialization failure, here from a trigger that fails twice): the round fails, the events
/// are written alone, and the row change, refused once more, is made again until it is taken —
/// not left undone with the row saying `new` while its events say `queued`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_row_change_refused_for_the_moment_is_made_again() {
    use sqlx::Connection;
    use std::time::SystemTime;
    use vacd::catalog::INTERACTIONS;
    use vacd::store::OutputBatch;
    use vacd_actors::{Channel, InteractionId, Output, QueueId};

    let db = TestDb::new(Db::Postgres).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let id = new_emails(&store, t, queue, 1).await[0];
    let mut admin = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connects");
    for sql in [
        "CREATE SEQUENCE refusals",
        "CREATE FUNCTION refuse_twice() RETURNS trigger AS $$ BEGIN \
         IF nextval('refusals') <= 2 THEN \
         RAISE EXCEPTION 'not now' USING ERRCODE = '40001'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_twice BEFORE UPDATE ON interactions \
         FOR EACH ROW EXECUTE FUNCTION refuse_twice()",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    admin.close().await.expect("closed");

    let batch = OutputBatch {
        tenant: t,
        at: SystemTime::now(),
        outputs: vec![Output::Queued {
            interaction: InteractionId(id as u64),
            queue: QueueId(queue as u64),
            channel: Channel::Email,
            order: 7,
            priority: 0,
            waited: std::time::Duration::ZERO,
        }],
    };
    store.record_outputs(&[batch]).await.expect("recorded");
    let row = store.get(&INTERACTIONS, t, id).await.expect("row");
    assert_eq!(
        (row["state"].as_str(), row["queue_order"].as_i64()),
        (Some("queued"), Some(7)),
        "{row}"
    );
    let events = store
        .list(&EVENTS, t, &of_kind("routing.queued"))
        .await
        .expect("events");
    assert_eq!(events.total, 1, "the events are written once");
    store.close().await;
    db.drop_db().await;
}

/// PostgreSQL: the connection breaks after a round's `COMMIT` went out, so whether the round
/// committed is unknown. Its create is not written again — it did commit, and is there once —
/// and its caller hears that it may be stored; the store writes on with a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_create_whose_commit_went_unanswered_is_not_written_twice() {
    use vacd::catalog::INTERACTIONS;

    let db = TestDb::new(Db::Postgres).await;
    let cutter = CommitCutter::start(&db.url).await;
    let store = Store::open(&cutter.url, 4).await.expect("store opens");
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let task = |subject: &str| {
        new_values(
            &INTERACTIONS,
            json!({ "channel": "email", "subject": subject }),
        )
        .expect("valid")
    };

    cutter.arm();
    let outcome = store.create(&INTERACTIONS, t, None, &task("first")).await;
    assert!(
        matches!(outcome, Err(store::Error::CommitUnknown)),
        "{outcome:?}"
    );
    store
        .create(&INTERACTIONS, t, None, &task("second"))
        .await
        .expect("the next create is written");
    // Read back on a store of its own: one store holds the database at a time.
    store.close().await;
    let direct = open(&db).await;
    let subjects: Vec<String> = direct
        .list(&INTERACTIONS, t, &all())
        .await
        .expect("interactions")
        .items
        .iter()
        .filter_map(|i| i["subject"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        subjects,
        ["first", "second"],
        "the create that committed is there once"
    );
    direct.close().await;
    db.drop_db().await;
}

/// An email (subject `ahead`) to `queue` of tenant `t` created ahead on `store`, whose round's
/// `COMMIT` `cutter` cuts.
fn ahead_with_its_commit_cut(
    store: &Store,
    cutter: &CommitCutter,
    t: i64,
    queue: i64,
) -> vacd::store::Ahead {
    let values = new_values(
        &vacd::catalog::INTERACTIONS,
        json!({ "channel": "email", "queue_id": queue, "subject": "ahead" }),
    )
    .expect("valid");
    cutter.arm();
    store
        .create_ahead(t, None, &values)
        .expect("an id is reserved")
}

/// PostgreSQL: the connection breaks after the `COMMIT` of a round holding a create made ahead
/// went out. Its id tells: the row is found there and is the answer — written once, with one
/// audit event — not "may be stored", which would leave routing with an interaction its caller
/// cannot find by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_create_made_ahead_whose_commit_went_unanswered_is_found_written() {
    use vacd::catalog::INTERACTIONS;

    let db = TestDb::new(Db::Postgres).await;
    let cutter = CommitCutter::start(&db.url).await;
    let store = Store::open(&cutter.url, 4).await.expect("store opens");
    let (t, queue) = tenant_with_queue(&store).await;
    let ahead = ahead_with_its_commit_cut(&store, &cutter, t, queue);
    let announced = ahead.row.clone();
    ahead.written().await.expect("found written");
    store.close().await;
    let direct = open(&db).await;
    let rows = direct
        .list(&INTERACTIONS, t, &all())
        .await
        .expect("interactions");
    assert_eq!(rows.items, [announced], "there once");
    let audits = direct
        .list(&EVENTS, t, &of_kind("admin.interactions.created"))
        .await
        .expect("events");
    assert_eq!(audits.total, 1, "{:?}", audits.items);
    direct.close().await;
    db.drop_db().await;
}

/// PostgreSQL: a create made ahead whose `COMMIT` went unanswered, and which the database then
/// cannot take for the moment when it is written again (a serialization failure, from a
/// trigger that lets only the first insert through), is answered "may be stored" — not with
/// the database's error, which would withdraw from routing an interaction that is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_create_made_ahead_that_cannot_be_written_again_may_be_stored() {
    use sqlx::Connection;
    use vacd::catalog::INTERACTIONS;

    let db = TestDb::new(Db::Postgres).await;
    let mut admin = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connects");
    let cutter = CommitCutter::start(&db.url).await;
    let store = Store::open(&cutter.url, 4).await.expect("store opens");
    let (t, queue) = tenant_with_queue(&store).await;
    for sql in [
        "CREATE SEQUENCE inserts",
        "CREATE FUNCTION only_the_first() RETURNS trigger AS $$ BEGIN \
         IF nextval('inserts') > 1 THEN \
         RAISE EXCEPTION 'not now' USING ERRCODE = '40001'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER only_the_first BEFORE INSERT ON interactions \
         FOR EACH ROW EXECUTE FUNCTION only_the_first()",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let ahead = ahead_with_its_commit_cut(&store, &cutter, t, queue);
    let id = ahead.id;
    let answer = ahead.written().await;
    assert!(
        matches!(answer, Err(vacd::store::Error::CommitUnknown)),
        "{answer:?}"
    );
    let inserts: i64 = sqlx::query_scalar("SELECT last_value FROM inserts")
        .fetch_one(&mut admin)
        .await
        .expect("inserts");
    assert_eq!(inserts, 2, "written, then tried again");
    store.close().await;
    admin.close().await.expect("closed");
    let direct = open(&db).await;
    let stored = direct.get(&INTERACTIONS, t, id).await.expect("stored");
    assert_eq!(stored["subject"], "ahead");
    direct.close().await;
    db.drop_db().await;
}

/// PostgreSQL: a batch of chat messages whose `COMMIT` went unanswered is not written again
/// one by one (a message without a client id would be there twice); their authors hear that
/// they may be stored. On one thread, so that both messages are in the batch.
#[tokio::test]
async fn postgres_chat_messages_whose_commit_went_unanswered_are_not_written_twice() {
    use vacd::catalog::INTERACTIONS;
    use vacd_actors::chat::{NewMessage, Party};

    let db = TestDb::new(Db::Postgres).await;
    let cutter = CommitCutter::start(&db.url).await;
    let store = Store::open(&cutter.url, 4).await.expect("store opens");
    let t = store.create_tenant("t", "T").await.expect("tenant").id;
    let values = new_values(&INTERACTIONS, json!({ "channel": "chat" })).expect("valid");
    let interaction = store
        .create(&INTERACTIONS, t, None, &values)
        .await
        .expect("interaction")["id"]
        .as_i64()
        .expect("id");
    let said = |text: &str| NewMessage {
        author: Party::Visitor,
        name: "Vera".into(),
        text: text.into(),
        client_id: None,
        whisper: false,
    };

    cutter.arm();
    let (first, second) = (said("first"), said("second"));
    let outcomes = tokio::join!(
        store.store_chat_message(t, interaction, &first),
        store.store_chat_message(t, interaction, &second)
    );
    for outcome in [outcomes.0, outcomes.1] {
        assert!(
            matches!(outcome, Err(store::Error::CommitUnknown)),
            "{outcome:?}"
        );
    }
    store
        .store_chat_message(t, interaction, &said("third"))
        .await
        .expect("the next message is stored");
    // Read back on a store of its own: one store holds the database at a time.
    store.close().await;
    let direct = open(&db).await;
    let direct = &direct;
    let texts = |last| async move {
        let messages = direct
            .chat_messages(t, interaction, "Vera", last)
            .await
            .expect("messages");
        messages.into_iter().map(|m| m.text).collect::<Vec<_>>()
    };
    assert_eq!(
        texts(None).await,
        ["first", "second", "third"],
        "the batch that committed is there once"
    );
    assert_eq!(texts(Some(2)).await, ["second", "third"], "the last two");
    direct.close().await;
    db.drop_db().await;
}

/// Interactions created ahead of their insert take ids reserved for them, which the ids the
/// database chooses for other inserts (chats, calls, tickets) never meet — not even after a
/// restart, when the ids handed out go on above every row. Each is written as it was
/// announced, in one round with the outputs sent after it.
async fn interaction_ids_made_ahead_never_meet_those_the_database_chooses(db: Db) {
    use vacd::catalog::INTERACTIONS;

    let db = TestDb::new(db).await;
    let store = open(&db).await;
    let (t, queue) = tenant_with_queue(&store).await;
    let values = new_values(
        &INTERACTIONS,
        json!({ "channel": "email", "queue_id": queue, "subject": "Ahead" }),
    )
    .expect("valid");
    let ahead = |store: &Store| {
        store
            .create_ahead(t, None, &values)
            .expect("an id is reserved")
    };
    let first = ahead(&store);
    let chosen = new_emails(&store, t, queue, 2).await;
    let second = ahead(&store);
    let mut ids = chosen.clone();
    for made in [first, second] {
        let (id, announced) = (made.id, made.row.clone());
        made.written().await.expect("written");
        let stored = store.get(&INTERACTIONS, t, id).await.expect("stored");
        assert_eq!(stored, announced);
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "ids {ids:?}");
    store.close().await;

    let store = open(&db).await;
    let after = ahead(&store);
    let id = after.id;
    assert!(ids.iter().all(|&before| before < id), "{id} after {ids:?}");
    after.written().await.expect("written");
    let chosen = new_emails(&store, t, queue, 1).await[0];
    assert_ne!(chosen, id);
    store.close().await;
    db.drop_db().await;
}

on_both_backends!(
    interaction_ids_made_ahead_never_meet_those_the_database_chooses,
    a_database_is_opened_by_one_store_at_a_time,
    routing_restarts_with_the_live_calls_still_waiting,
    a_failed_output_round_leaves_the_writer_clean,
    a_lone_create_and_its_round_are_written_whole,
    a_round_of_more_than_one_chunk_is_written_whole,
    rounds_of_several_creates_are_written_whole,
    migrations_apply_once_and_report_ready,
    routing_outputs_survive_a_failed_create_in_their_round,
    rows_belong_to_their_tenant,
    constraint_violations_are_domain_errors,
    event_log_appends_and_filters,
    sessions_expire_and_follow_the_role,
    routing_outputs_update_interactions,
    a_transfer_starts_a_new_wait_and_a_move_does_not,
    a_bad_row_change_costs_only_itself,
    a_restart_counts_the_escalation_steps_of_the_current_queue_and_wait,
    concurrent_creates_each_get_their_own_outcome,
    concurrent_chat_messages_are_each_stored_once,
    concurrent_call_records_are_each_written_once,
    offer_details_follow_changes,
);

/// PostgreSQL: the session holding the database's lock breaks (here: terminated) and another
/// process takes the lock meanwhile. The store, which checks its session, reports itself not
/// ready — another vacd may be routing on the database — until the lock is its own again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_postgres_lock_makes_the_store_unready_until_taken_back() {
    use sqlx::{Connection, Row};
    use std::time::Duration;

    /// vacd's advisory lock ("vacd" in ASCII).
    const LOCK: i64 = 0x7661_6364;
    let db = TestDb::new(Db::Postgres).await;
    let store = open(&db).await;
    let mut lost = store
        .lock_watch()
        .expect("a PostgreSQL store watches its lock");
    let mut other = sqlx::AnyConnection::connect(&db.url)
        .await
        .expect("another process");
    let holder: i64 = sqlx::query(
        "SELECT pid::bigint AS pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND objid::bigint = $1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(LOCK)
    .fetch_one(&mut other)
    .await
    .expect("the store's lock")
    .try_get("pid")
    .expect("a pid");
    sqlx::query("SELECT pg_terminate_backend($1::int)")
        .bind(holder)
        .execute(&mut other)
        .await
        .expect("terminated");
    // Waits until the terminated session has let go.
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(LOCK)
        .execute(&mut other)
        .await
        .expect("the other process holds the lock");
    let wait = Duration::from_secs(30);
    tokio::time::timeout(wait, lost.wait_for(|lost| *lost))
        .await
        .expect("noticed within the wait")
        .expect("watched");
    assert!(
        matches!(store.ready().await, Err(store::Error::LockLost)),
        "not ready while another holds the lock"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK)
        .execute(&mut other)
        .await
        .expect("let go");
    tokio::time::timeout(wait, lost.wait_for(|lost| !*lost))
        .await
        .expect("taken back within the wait")
        .expect("watched");
    assert!(store.ready().await.expect("ready query"));
    other.close().await.expect("closed");
    store.close().await;
    db.drop_db().await;
}
