//! Phone calls end to end over real sockets on loopback, on SQLite and PostgreSQL: a trunk
//! (`127.0.0.2`) calls the demo service number `+4930123456` (queue *Sales DE*); the demo agents
//! alice and bruno register test phones, log in to the console and take — or refuse, or miss —
//! the calls. RTP is checked to really cross the bridge in both directions; the event log and
//! the call detail record are checked after each call. sipp plays caller and agent phone with
//! the scenarios in `loadtests/sip/`.

mod common;

use std::net::SocketAddr;

use common::console::Console;
use common::feed::{agent_of, Feed};
use common::phone::{tone_level, Phone};
use common::trunk::{self, NUMBER, SIP_PASSWORD, TRUNK_IP};
use common::{assert_error, eventually, Db, TestServer};
use serde_json::{json, Value};
use vacd_sip::g711::Law;
use vacd_sip::message;
use vacd_sip::rsip::Method;

/// The customer number the click-to-dial tests call.
const DIALLED: &str = "+4940555000";

/// A server whose trunk is `127.0.0.2`, with its agents' consoles and phones.
struct Floor {
    s: TestServer,
    sam: String,
}

/// An agent at work: its console and its phone.
struct Agent {
    id: i64,
    /// The token its console connected with.
    token: String,
    console: Console,
    phone: Phone,
}

impl Agent {
    /// Its console connects anew with the same token (a reload of the page): the new one gets
    /// `hello`, the old one is replaced.
    async fn reconnect(&mut self, s: &TestServer) {
        let console = Console::connect(s, &self.token).await;
        let mut old = std::mem::replace(&mut self.console, console);
        old.expect("session.replaced").await;
    }

    /// Holds (`on`) or resumes its call `interaction` from the console; the console is told
    /// so, by the console.
    async fn holds(&mut self, interaction: i64, on: bool) {
        let (command, told) = match on {
            true => ("call.hold", "call.held"),
            false => ("call.resume", "call.resumed"),
        };
        self.console
            .ok(json!({ "type": command, "interaction": interaction }))
            .await;
        self.console
            .expect_where(told, |f| {
                f["interaction"] == interaction && f["by"] == "console"
            })
            .await;
    }

    /// Dials the customer number [`DIALLED`] from the console (click-to-dial); acknowledged.
    async fn dial(&mut self) {
        self.console
            .ok(json!({ "type": "call.dial", "number": DIALLED }))
            .await;
    }

    /// Its dialled call `interaction` ended without wrap-up: the wrap-up is over within the
    /// console's wait (15 s), where the queue's wrap-up timer (30 s) would not yet have run out.
    async fn wraps_up_nothing(&mut self, interaction: &Value) {
        self.console
            .expect_where("wrapup.ended", |f| f["interaction"] == *interaction)
            .await;
    }

    /// Transfers its connected call `interaction` to the outside `number` from the console;
    /// its phone is hung up.
    async fn transfer_out(&mut self, interaction: i64, number: &str) {
        self.console
            .ok(
                json!({ "type": "interaction.transfer", "interaction": interaction,
                        "to": { "target": "number", "number": number } }),
            )
            .await;
        self.phone.take_bye().await;
    }
}

impl Floor {
    async fn new(db: Db) -> Floor {
        Floor::with(db, |_| {}).await
    }

    async fn with(db: Db, adjust: impl FnOnce(&mut vacd::config::Config)) -> Floor {
        let s = TestServer::start_with(db, |config| {
            trunk::configure(config, None);
            adjust(config);
        })
        .await;
        let sam = s.demo_login("sam").await;
        Floor { s, sam }
    }

    /// `user` registers a phone (contact: the phone itself, or `contact`), logs in and is ready.
    async fn agent(&self, user: &str, contact: Option<SocketAddr>) -> Agent {
        let phone = Phone::new("127.0.0.1", self.s.sip_udp()).await;
        self.agent_with(user, phone, contact).await
    }

    async fn agent_with(&self, user: &str, mut phone: Phone, contact: Option<SocketAddr>) -> Agent {
        phone.register(user, SIP_PASSWORD, contact).await;
        let token = self.s.demo_login(user).await;
        let mut console = Console::connect(&self.s, &token).await;
        console.ready().await;
        let (_, me) = self.s.get("/api/v1/me", &token).await;
        let id = me["id"]
            .as_i64()
            .or(me["user"]["id"].as_i64())
            .expect("user id");
        Agent {
            id,
            token,
            console,
            phone,
        }
    }

    async fn caller(&self) -> Phone {
        Phone::new(TRUNK_IP, self.s.sip_udp()).await
    }

    /// The events of `kind` about `interaction`, once what routing said so far is written.
    async fn events(&self, kind: &str, interaction: i64) -> Vec<Value> {
        self.s.routing().flushed().await;
        let (_, page) = self
            .s
            .get(
                &format!("/api/v1/events?kind={kind}&interaction_id={interaction}"),
                &self.sam,
            )
            .await;
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// The payload of the call's `call.ended` event, once the agent's console has seen the
    /// end: the call actor writes the record before it tells routing.
    async fn call_ended(&self, agent: &mut Agent, interaction: i64) -> Value {
        agent
            .console
            .expect_where("interaction.ended", |f| f["interaction"] == interaction)
            .await;
        self.ended_payload(interaction).await
    }

    /// The caller hangs up; vacd ends the agent's leg; returns the `call.ended` payload.
    async fn caller_hangs_up(
        &self,
        caller: &mut Phone,
        leg: &common::phone::Leg,
        agent: &mut Agent,
        interaction: i64,
    ) -> Value {
        assert_eq!(caller.bye(leg).await, 200);
        agent.phone.take_bye().await;
        self.call_ended(agent, interaction).await
    }

    /// The transfer's target answers its phone, hears the caller, and the caller hangs up:
    /// the call's record says connected.
    async fn target_takes_the_call(
        &self,
        caller: &mut Phone,
        leg: &common::phone::Leg,
        target: &mut Agent,
        interaction: i64,
    ) {
        let invite = target.phone.request(Method::Invite).await;
        target.phone.answer(&invite).await;
        caller
            .rtp_reaches(leg.remote_rtp, b"transferred", &target.phone)
            .await;
        let ended = self.caller_hangs_up(caller, leg, target, interaction).await;
        assert_eq!(ended["result"], "connected", "{ended}");
    }

    /// The record of the dialled call, once it has failed.
    async fn failed_dial(&self) -> Value {
        eventually("the failed click-to-dial's record", || async {
            let (_, records) = self
                .s
                .get("/api/v1/call-records?direction=outbound", &self.sam)
                .await;
            let record = records["items"][0].clone();
            (record["result"] == "failed").then_some(record)
        })
        .await
    }

    async fn ended_payload(&self, interaction: i64) -> Value {
        let events = self.events("call.ended", interaction).await;
        assert_eq!(
            events.len(),
            1,
            "one call.ended for {interaction}: {events:?}"
        );
        payload(&events[0])
    }

    /// Restarts the server: shutdown lets the call actors finish writing their records, which
    /// is how tests without a console wait for them.
    async fn restart(self) -> Floor {
        let s = self.s.restart().await;
        let sam = s.demo_login("sam").await;
        Floor { s, sam }
    }
}

/// An event's payload (stored as JSON text).
fn payload(event: &Value) -> Value {
    let text = event["payload"].as_str().expect("payload text");
    serde_json::from_str(text).expect("payload JSON")
}

/// A call from the trunk that `Floor::connect` put through to an agent.
/// A call offered to an agent whose phone now rings.
struct Ringing {
    caller: Phone,
    /// The caller's leg.
    leg: common::phone::Leg,
    interaction: i64,
    /// The INVITE ringing the agent's phone.
    invite: vacd_sip::rsip::Request,
}

struct Connected {
    caller: Phone,
    /// The caller's leg.
    leg: common::phone::Leg,
    interaction: i64,
    /// The agent phone's leg.
    agent_leg: common::phone::Leg,
}

/// `agent` is offered `interaction` next, its phone rings and answers, and its console sees
/// the call connected.
async fn takes_over(agent: &mut Agent, interaction: i64) {
    agent
        .console
        .expect_where("offer", |f| f["interaction"] == interaction)
        .await;
    let invite = agent.phone.request(Method::Invite).await;
    answers(agent, &invite, interaction).await;
}

/// `agent`'s phone answers the ringing `invite` of `interaction`, and its console sees the call
/// connected; the phone's leg.
async fn answers(
    agent: &mut Agent,
    invite: &vacd_sip::rsip::Request,
    interaction: i64,
) -> common::phone::Leg {
    let leg = agent.phone.answer(invite).await;
    agent
        .console
        .expect_where("interaction.connected", |f| f["interaction"] == interaction)
        .await;
    leg
}

impl Floor {
    /// Changes the queue the service number's calls go to (Sales DE).
    async fn sales_de(&self, change: Value) {
        let admin = self.s.demo_login("ada").await;
        let (_, queues) = self.s.get("/api/v1/queues?limit=100", &admin).await;
        let queue = queues["items"]
            .as_array()
            .and_then(|qs| qs.iter().find(|q| q["name"] == "Sales DE"))
            .and_then(|q| q["id"].as_i64())
            .expect("Sales DE");
        let (status, body) = self
            .s
            .patch(&format!("/api/v1/queues/{queue}"), &admin, change)
            .await;
        assert!(status.is_success(), "{body}");
    }

    /// A floor whose trunk sends calls to outside numbers to a carrier of the test's (the phone
    /// returned), configured further by `adjust`.
    async fn with_carrier(
        db: Db,
        adjust: impl FnOnce(&mut vacd::config::Config),
    ) -> (Floor, Phone) {
        let mut carrier = Phone::new(TRUNK_IP, "127.0.0.1:9".parse().expect("address")).await;
        let outbound = carrier.addr;
        let f = Floor::with(db, |config| {
            config.sip.trunks[0].outbound = Some(outbound);
            adjust(config);
        })
        .await;
        carrier.retarget(f.s.sip_udp());
        (f, carrier)
    }

    /// Sam's phone, registered.
    async fn supervisor_phone(&self) -> Phone {
        let mut phone = Phone::new("127.0.0.1", self.s.sip_udp()).await;
        phone.register("sam", SIP_PASSWORD, None).await;
        phone
    }

    /// Sam starts (or switches to) monitoring `interaction` in `mode`; the answer.
    async fn monitor(&self, interaction: i64, mode: &str) -> (reqwest::StatusCode, Value) {
        self.s
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/calls/{interaction}/monitor"),
                Some(&self.sam),
                Some(json!({ "mode": mode })),
            )
            .await
    }

    /// A caller from the trunk dials the service number; `agent`'s console gets the offer and
    /// its phone rings.
    async fn ring(&self, agent: &mut Agent) -> Ringing {
        self.ring_from(self.caller().await, agent).await
    }

    /// [`Floor::ring`] with a caller of the test's own making.
    async fn ring_from(&self, mut caller: Phone, agent: &mut Agent) -> Ringing {
        let leg = caller.call(NUMBER).await.expect("vacd answers the call");
        let interaction = interaction_of(&agent.console.expect("offer").await);
        let invite = agent.phone.request(Method::Invite).await;
        Ringing {
            caller,
            leg,
            interaction,
            invite,
        }
    }

    /// A caller rings `agent`'s phone and hangs up before it answers; once the agent is ready
    /// again, returns the call's interaction record.
    async fn rings_and_hangs_up(&self, agent: &mut Agent) -> Value {
        let Ringing {
            mut caller,
            leg,
            interaction,
            invite,
        } = self.ring(agent).await;
        let (_, record) = self
            .s
            .get(&format!("/api/v1/interactions/{interaction}"), &self.sam)
            .await;
        agent.phone.respond(&invite, 180, "ring", false).await;
        assert_eq!(caller.bye(&leg).await, 200);
        agent.phone.cancelled(&invite).await;
        agent
            .console
            .expect_where("presence.changed", |f| f["to"]["presence"] == "ready")
            .await;
        record
    }

    /// The customer `customer` is known to speak `language`.
    async fn customer_speaks(&self, customer: i64, language: &str) {
        let path = format!("/api/v1/customers/{customer}");
        let (status, body) = self
            .s
            .patch(&path, &self.sam, json!({ "language": language }))
            .await;
        assert!(status.is_success(), "{body}");
    }

    /// [`Floor::ring`], and the agent's phone answers.
    async fn connect(&self, agent: &mut Agent) -> Connected {
        let Ringing {
            caller,
            leg,
            interaction,
            invite,
        } = self.ring(agent).await;
        let agent_leg = agent.phone.answer(&invite).await;
        Connected {
            caller,
            leg,
            interaction,
            agent_leg,
        }
    }
}

fn interaction_of(offer: &Value) -> i64 {
    offer["interaction"].as_i64().expect("interaction id")
}

/// Caller → queue → agent answers → RTP both ways → caller hangs up.
async fn call_reaches_an_agent_and_rtp_crosses_the_bridge(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("vacd answers the call");

    // Waiting: the caller hears vacd's greeting and music.
    let (from, _) = caller
        .recv_rtp_within(common::phone::WAIT)
        .await
        .expect("music while queued");
    assert_eq!(from, leg.remote_rtp, "symmetric RTP from the SDP's address");

    // bruno's phone rings with the caller's number; his console shows the offer and who calls.
    let offer = bruno.console.expect("offer").await;
    let interaction = interaction_of(&offer);
    assert_eq!(offer["channel"], "call");
    let pop = bruno.console.expect("customer.screen_pop").await;
    assert_eq!(pop["identities"][0]["value"], "+491701234567", "{pop}");
    let invite = bruno.phone.request(Method::Invite).await;
    let from_header = message::from_value(&invite.headers).expect("From");
    assert!(from_header.contains("+491701234567"), "{from_header}");
    let agent_leg = answers(&mut bruno, &invite, interaction).await;

    // Media crosses the bridge, untouched, both ways.
    let arrived_from = caller
        .rtp_reaches(leg.remote_rtp, b"hello agent", &bruno.phone)
        .await;
    assert_eq!(
        arrived_from, agent_leg.remote_rtp,
        "relayed from the agent leg's socket"
    );
    let arrived_from = bruno
        .phone
        .rtp_reaches(agent_leg.remote_rtp, b"hello caller", &caller)
        .await;
    assert_eq!(arrived_from, leg.remote_rtp);

    // The caller hangs up; vacd ends the agent's leg too.
    let ended = f
        .caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    assert_eq!(ended["result"], "connected", "{ended}");
    assert_eq!(ended["hangup_by"], "caller", "{ended}");
    assert_eq!(
        f.events("call.ended", interaction).await[0]["agent_id"],
        bruno.id
    );
    let started = f.events("call.started", interaction).await;
    assert_eq!(payload(&started[0])["dialled"], NUMBER, "{started:?}");
    let (_, records) =
        f.s.get(
            &format!("/api/v1/call-records?interaction_id={interaction}"),
            &f.sam,
        )
        .await;
    let record = &records["items"][0];
    assert_eq!(record["caller"], "+491701234567", "{records}");
    assert_eq!(record["trunk"], "carrier");
    assert_eq!(record["agent_id"], bruno.id);
    assert_eq!(record["hangup_by"], "caller");
    assert!(record["connected_at"].as_i64() >= record["started_at"].as_i64());
    let metrics = reqwest::get(format!("{}/metrics", f.s.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("vacd_calls_ended_total") && l.contains("result=\"connected\"")),
        "{metrics}"
    );
    f.s.stop().await;
}

/// The agent hangs up first: the caller gets the BYE.
async fn agent_hangs_up(db: Db) {
    let f = Floor::new(db).await;
    let mut alice = f.agent("alice", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        agent_leg,
    } = f.connect(&mut alice).await;
    assert_eq!(alice.phone.bye(&agent_leg).await, 200);
    let bye = caller.take_bye().await;
    assert_eq!(
        message::call_id(&bye.headers).ok(),
        Some(leg.call_id.as_str())
    );
    let ended = f.call_ended(&mut alice, interaction).await;
    assert_eq!(ended["hangup_by"], "agent", "{ended}");
    f.s.stop().await;
}

/// vacd listening for SIP on every interface names a reachable address in its Contact and Via
/// (its media address), never 0.0.0.0: the caller's ACK and the agent phone's BYE find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_everywhere_names_a_reachable_address() {
    let f = Floor::with(Db::Sqlite, |config| {
        config.sip.udp = "0.0.0.0:0".parse().expect("address");
    })
    .await;
    let mut alice = f.agent("alice", None).await;
    let Connected {
        mut caller,
        leg,
        agent_leg,
        ..
    } = f.connect(&mut alice).await;
    let port = f.s.sip_udp().port();
    for target in [&leg.target, &agent_leg.target] {
        assert!(
            target.contains(&format!("127.0.0.1:{port}")) && !target.contains("0.0.0.0"),
            "{target}"
        );
    }
    assert_eq!(alice.phone.bye(&agent_leg).await, 200);
    caller.take_bye().await;
    f.s.stop().await;
}

/// Nobody is ready: the caller waits, hangs up, and the call is an abandon.
async fn caller_abandons_while_queued(db: Db) {
    let f = Floor::new(db).await;
    let mut caller = f.caller().await;
    let leg = caller
        .call(NUMBER)
        .await
        .expect("answered while nobody is ready");
    caller
        .recv_rtp_within(common::phone::WAIT)
        .await
        .expect("music while queued");
    assert_eq!(caller.bye(&leg).await, 200);
    let f = f.restart().await;
    let interaction = started_interaction(&f).await;
    let ended = f.ended_payload(interaction).await;
    assert_eq!(ended["result"], "abandoned", "{ended}");
    assert_eq!(ended["hangup_by"], "caller", "{ended}");
    f.s.stop().await;
}

/// A waiting caller keeps the music whatever else reaches its RTP port: a stranger's RTCP
/// report is not latched on, and the caller's voice goes nowhere.
async fn a_waiting_caller_keeps_the_music(db: Db) {
    let f = Floor::new(db).await;
    let mut caller = f.caller().await;
    let leg = caller
        .call(NUMBER)
        .await
        .expect("answered while nobody is ready");
    hears_music(&mut caller, &leg).await;
    let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // A sender report (RFC 3550 §6.4.1) with no report blocks, to the caller's RTP port.
    let mut report = vec![0x80, 200, 0x00, 0x06];
    report.extend_from_slice(&[0; 24]);
    stranger
        .send_to(&report, leg.remote_rtp)
        .await
        .expect("send");
    caller.send_rtp(leg.remote_rtp, 1, b"hello?").await;
    hears_music(&mut caller, &leg).await;
    assert_eq!(caller.bye(&leg).await, 200);
    f.s.stop().await;
}

/// `seconds` of a sine tone of `frequency` Hz as a WAV file (16-bit PCM, 8 kHz, mono).
fn tone_wav(frequency: f32, seconds: u32) -> Vec<u8> {
    let samples = 8000 * seconds;
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + samples * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    // PCM, mono, 8000 Hz, 16000 bytes/s, 2-byte frames, 16 bits.
    for field in [1u16, 1] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    for field in [2u16, 16] {
        wav.extend_from_slice(&field.to_le_bytes());
    }
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(samples * 2).to_le_bytes());
    let step = 2.0 * std::f32::consts::PI * frequency / 8000.0;
    for n in 0..samples {
        let sample = (8000.0 * (step * n as f32).sin()) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// A floor whose sounds directory holds one file: `name`, a tone of `frequency` Hz for
/// `seconds`; with an admin's token and the API path of the demo queue Sales DE.
struct Sounding {
    f: Floor,
    admin: String,
    queue: String,
    _sounds: tempfile::TempDir,
}

async fn sounding(db: Db, name: &str, frequency: f32, seconds: u32) -> Sounding {
    let sounds = tempfile::tempdir().expect("a sounds directory");
    std::fs::write(sounds.path().join(name), tone_wav(frequency, seconds)).expect("write");
    let dir = sounds.path().to_owned();
    let f = Floor::with(db, |c| c.sip.sounds = dir).await;
    let admin = f.s.demo_login("ada").await;
    let (_, queues) = f.s.get("/api/v1/queues?name=Sales%20DE", &admin).await;
    let queue = format!("/api/v1/queues/{}", queues["items"][0]["id"]);
    Sounding {
        f,
        admin,
        queue,
        _sounds: sounds,
    }
}

/// A queue plays its own greeting (a WAV file in the sounds directory) to its callers, where
/// the directory has none; a name that would lead out of the directory is refused.
async fn a_queue_plays_its_own_greeting(db: Db) {
    const WELCOME: f32 = 1000.0;
    // The directory is kept (bound) until the test ends: files are read when a call needs them.
    let Sounding {
        f,
        admin,
        queue,
        _sounds: _kept,
    } = sounding(db, "welcome.wav", WELCOME, 2).await;
    for bad in ["../welcome.wav", ".hidden.wav", "welcome.mp3", "a/b.wav"] {
        let refused = f.s.patch(&queue, &admin, json!({ "greeting": bad })).await;
        assert_error(
            &refused,
            reqwest::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
        );
    }
    let (status, body) =
        f.s.patch(&queue, &admin, json!({ "greeting": "welcome.wav" }))
            .await;
    assert!(status.is_success(), "{body}");
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    let heard = caller.hear(25).await;
    // The default music here is the generated comfort tone (425 Hz): the queue's file plays.
    let (welcome, comfort) = (tone_level(&heard, WELCOME), tone_level(&heard, 425.0));
    assert!(
        welcome > 1000.0 && welcome > 10.0 * comfort,
        "1000 Hz at {welcome}, 425 Hz at {comfort}"
    );
    assert_eq!(caller.bye(&leg).await, 200);
    f.s.stop().await;
}

/// A queue with an announcement plays it to a waiting caller after every
/// `announce_every_seconds` of music (here 5 s: 250 packets of 20 ms), then the music goes on;
/// a caller an agent holds hears music only, however long.
async fn a_queue_announces_between_its_music(db: Db) {
    const BUSY: f32 = 1500.0;
    // The directory is kept (bound) until the test ends: files are read when a call needs them.
    let Sounding {
        f,
        admin,
        queue,
        _sounds: _kept,
    } = sounding(db, "busy.wav", BUSY, 1).await;
    let too_often =
        f.s.patch(&queue, &admin, json!({ "announce_every_seconds": 1 }))
            .await;
    assert_error(
        &too_often,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "out_of_range",
    );
    let (status, body) =
        f.s.patch(
            &queue,
            &admin,
            json!({ "announcement": "busy.wav", "announce_every_seconds": 5 }),
        )
        .await;
    assert!(status.is_success(), "{body}");

    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    // Packets are told apart by their tone: the announcement's 1500 Hz or the music's
    // (the comfort tone, 425 Hz, and its pauses).
    let mut heard = Vec::new();
    for _ in 0..(250 + 50 + 50) {
        let packet = caller.hear(1).await;
        heard.push(tone_level(&packet, BUSY) > 1000.0);
    }
    let music = heard.iter().take_while(|busy| !**busy).count();
    assert!(
        (249..=251).contains(&music),
        "the announcement after 5 s of music, not after {music} packets"
    );
    let announced = heard[music..].iter().take_while(|busy| **busy).count();
    assert!(
        (45..=55).contains(&announced),
        "the whole 1 s announcement, not {announced} packets"
    );
    assert!(
        heard[music + announced..].iter().all(|busy| !busy),
        "music again after the announcement"
    );
    assert_eq!(caller.bye(&leg).await, 200);

    // Held by the agent's phone (its leg no longer takes media, as while the caller waits):
    // music for longer than the interval, and no announcement.
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    let held = bruno.phone.reinvite(&mut agent_leg, "sendonly").await;
    assert_eq!(held.status_code.code(), 200, "{held}");
    bruno
        .console
        .expect_where("call.held", |f| f["by"] == "phone")
        .await;
    for n in 0..300 {
        let packet = caller.hear(1).await;
        assert!(
            tone_level(&packet, BUSY) < 1000.0,
            "an announcement to a held caller, packet {n}"
        );
    }
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// While an agent's phone rings, the port vacd offered it is open: a stranger's packets there
/// (the phone has not answered, so none are its) do not reach the waiting caller, who hears
/// nothing but music.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_talk_to_a_waiting_caller() {
    let f = Floor::new(Db::Sqlite).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        invite,
        ..
    } = f.ring(&mut bruno).await;
    let offered = common::phone::rtp_address(&invite.body);
    hears_music(&mut caller, &leg).await;
    let stranger = Phone::new("127.0.0.3", f.s.sip_udp()).await;
    stranger.send_rtp(offered, 1, &[0xff]).await;
    caller.hears_music(&leg, 10).await;
    f.s.stop().await;
}

/// The interaction of the only call the server has seen.
/// Waits for it: the call task writes its start while the call goes on.
async fn started_interaction(f: &Floor) -> i64 {
    eventually("a call.started event", || async {
        let (_, page) = f.s.get("/api/v1/events?kind=call.started", &f.sam).await;
        page["items"][0]["interaction_id"].as_i64()
    })
    .await
}

/// The first phone declines (busy): routing offers the call to the next agent at once, and the
/// first agent is set not ready.
async fn rejected_call_goes_to_the_next_agent(db: Db) {
    let f = Floor::new(db).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    // Longest idle first: alice became ready first.
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut alice).await;
    alice.phone.decline(&invite, 486).await;
    alice
        .console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "missed")
        .await;
    takes_over(&mut bruno, interaction).await;
    let ended = f
        .caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    assert_eq!(ended["result"], "connected");
    f.s.stop().await;
}

/// The caller hangs up while the agent's phone rings, and the phone's 200 crosses vacd's CANCEL
/// after the call has ended: vacd acknowledges and hangs up that leg, and the call's place is
/// free again — with room for one call, the next caller gets through.
async fn an_answer_crossing_the_cancel_frees_the_call(db: Db) {
    let f = Floor::with(db, |config| config.sip.max_calls = 1).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut bruno).await;
    bruno.phone.respond(&invite, 180, "late", false).await;
    assert_eq!(caller.bye(&leg).await, 200);
    let cancel = bruno.phone.request(Method::Cancel).await;
    bruno.phone.respond(&cancel, 200, "late", false).await;
    // The call's end reached routing after its record: the call is over on vacd's side.
    bruno
        .console
        .expect_where("offer.revoked", |f| f["interaction"] == interaction)
        .await;
    bruno.phone.respond(&invite, 200, "late", true).await;
    bruno.phone.request(Method::Ack).await;
    bruno.phone.take_bye().await;
    // The place is free once both the late leg and the call's actor are done (its report
    // may still be on its way).
    let (mut next, leg) = eventually("the next caller answered", || async {
        let mut next = f.caller().await;
        next.call(NUMBER).await.ok().map(|leg| (next, leg))
    })
    .await;
    assert_eq!(next.bye(&leg).await, 200);
    f.s.stop().await;
}

/// INVITEs that arrive together do not get past `sip.max_calls`: with room for one call, one
/// of three callers is answered and the other two get 503 with a Retry-After.
async fn a_burst_of_calls_beyond_capacity_gets_503(db: Db) {
    let f = Floor::with(db, |config| config.sip.max_calls = 1).await;
    let (mut a, mut b, mut c) = (f.caller().await, f.caller().await, f.caller().await);
    let (a, b, c) = tokio::join!(a.call(NUMBER), b.call(NUMBER), c.call(NUMBER));
    let refused: Vec<_> = [&a, &b, &c]
        .into_iter()
        .filter_map(|call| call.as_ref().err())
        .collect();
    let codes: Vec<u16> = refused.iter().map(|r| r.status_code.code()).collect();
    assert_eq!(codes, [503, 503], "one answered, two refused");
    assert!(refused.iter().all(|r| r
        .headers
        .iter()
        .any(|h| matches!(h, vacd_sip::rsip::Header::RetryAfter(_)))));
    f.s.stop().await;
}

/// An agent's phone answers with a 200 vacd cannot acknowledge (no Contact): that counts as a
/// refusal — the next agent gets the call at once, and the first phone's leg holds nothing.
async fn an_answer_without_contact_counts_as_a_refusal(db: Db) {
    let f = Floor::new(db).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut alice).await;
    let broken = message::response_to(&invite, 200, Some("no-contact"));
    let text = message::encode(&vacd_sip::rsip::SipMessage::Response(broken));
    alice
        .phone
        .send(std::str::from_utf8(&text).expect("text"))
        .await;
    alice
        .console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "missed")
        .await;
    takes_over(&mut bruno, interaction).await;
    let ended = f
        .caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// The agent's INVITE was forked on its way and a second phone answers too: vacd acknowledges
/// that answer and hangs it up; the call stays with the first. Past four such answers, more
/// are ignored (each would cost an ACK kept for the call and a BYE).
async fn a_second_answer_of_a_forked_invite_is_hung_up(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut bruno).await;
    let first = bruno.phone.answer(&invite).await;
    bruno.phone.respond(&invite, 200, "forked", true).await;
    // vacd acknowledges the second answer (ACKs of the first may still come: the phone
    // repeated it until acknowledged).
    let ack = loop {
        let ack = bruno.phone.request(Method::Ack).await;
        if message::to_tag(&ack.headers) == Some("forked") {
            break ack;
        }
    };
    let bye = bruno.phone.take_bye().await;
    assert_eq!(message::to_tag(&bye.headers), Some("forked"), "{bye}");
    // So are the next ones, up to four in all; a fifth is ignored.
    for tag in ["fork-2", "fork-3", "fork-4"] {
        bruno.phone.respond(&invite, 200, tag, true).await;
        let ack = bruno.phone.request(Method::Ack).await;
        assert_eq!(message::to_tag(&ack.headers), Some(tag), "{ack}");
        let bye = bruno.phone.take_bye().await;
        assert_eq!(message::to_tag(&bye.headers), Some(tag), "{bye}");
    }
    bruno.phone.respond(&invite, 200, "fork-5", true).await;
    // The second phone repeats its answer: the same ACK again (and no second BYE). The first
    // ACK after the fifth answer is this one: the fifth got none (one socket, in order).
    let again = bruno.phone.repeat_answer(&invite, "forked").await;
    assert_eq!(again.to_string(), ack.to_string());
    caller
        .rtp_reaches(leg.remote_rtp, b"still with the first answer", &bruno.phone)
        .await;
    // The next BYE is the first answer's: a second one for the fork would have come before
    // (one socket, in order).
    assert_eq!(caller.bye(&leg).await, 200);
    let bye = bruno.phone.take_bye().await;
    assert_eq!(message::to_tag(&bye.headers), Some(first.tag()), "{bye}");
    let ended = f.call_ended(&mut bruno, interaction).await;
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// The caller's INVITE arrives a second time by another path (or forked to a second number):
/// 482, and the call it belongs to goes on unharmed.
async fn a_merged_invite_is_refused_and_the_call_goes_on(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    let again = caller.invite_again(NUMBER, &leg).await;
    assert_eq!(again.status_code.code(), 482, "{again}");
    let interaction = interaction_of(&bruno.console.expect("offer").await);
    let invite = bruno.phone.request(Method::Invite).await;
    bruno.phone.answer(&invite).await;
    let ended = f
        .caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// Ring-all rings every ready agent's phone; when the tenant's routing restarts after a
/// failure, the offers of the calls still waiting are void and every phone still ringing for
/// them is cancelled (the restored routing offers them anew).
async fn a_routing_restart_stops_every_phone_ringing_for_a_waiting_call(db: Db) {
    let f = Floor::new(db).await;
    f.sales_de(json!({ "strategy": "ring_all" })).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    let interaction = interaction_of(&alice.console.expect("offer").await);
    bruno
        .console
        .expect_where("offer", |f| f["interaction"] == interaction)
        .await;
    let mut ringing = Vec::new();
    for agent in [&mut alice, &mut bruno] {
        let invite = agent.phone.request(Method::Invite).await;
        agent.phone.respond(&invite, 180, "ring", false).await;
        ringing.push(invite);
    }

    f.s.routing()
        .calls()
        .void_offers(&[vacd_actors::InteractionId(interaction as u64)]);
    for (agent, invite) in [&mut alice, &mut bruno].into_iter().zip(&ringing) {
        agent.phone.cancelled(invite).await;
    }
    assert_eq!(caller.bye(&leg).await, 200);
    f.s.stop().await;
}

/// The agent rejects in the console while its phone rings: vacd cancels the ringing phone and
/// offers the call to the next agent.
async fn a_console_reject_stops_the_ringing_phone(db: Db) {
    let f = Floor::new(db).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut alice).await;
    alice.phone.respond(&invite, 180, "ring", false).await;
    alice
        .console
        .ok(json!({ "type": "offer.reject", "interaction": interaction }))
        .await;
    alice.phone.cancelled(&invite).await;
    takes_over(&mut bruno, interaction).await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// The first phone rings out the offer timeout: vacd cancels it, alice shows
/// `not_ready("missed")`, and bruno gets the call.
async fn unanswered_call_is_rerouted(db: Db) {
    let f = Floor::new(db).await;
    f.sales_de(json!({ "offer_timeout_seconds": 1 })).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut alice).await;
    alice.phone.respond(&invite, 180, "ring", false).await;
    // No answer: the offer times out and vacd cancels the ringing phone.
    alice.phone.cancelled(&invite).await;
    alice
        .console
        .expect_where("offer.revoked", |f| f["interaction"] == interaction)
        .await;
    let invite = bruno.phone.request(Method::Invite).await;
    answers(&mut bruno, &invite, interaction).await;
    alice
        .console
        .expect_where("presence.changed", |f| f["to"]["reason"] == "missed")
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// The phone rings out the offer timeout and, as its agent stays ready (`missed_offer`
/// `stay_ready`), is rung again on a new leg; the first leg's late answer crosses vacd's CANCEL.
/// vacd hangs up that leg only — the new one rings on and connects the call.
async fn a_late_answer_hangs_up_its_own_leg_not_the_new_ring(db: Db) {
    let f = Floor::new(db).await;
    f.sales_de(json!({ "offer_timeout_seconds": 1 })).await;
    let admin = f.s.demo_login("ada").await;
    let tenant =
        f.s.store()
            .tenant_by_name("demo")
            .await
            .expect("tenant read")
            .expect("the demo tenant");
    let (status, body) =
        f.s.patch(
            &format!("/api/v1/tenants/{}", tenant.id),
            &admin,
            json!({ "missed_offer": "stay_ready" }),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut bruno).await;
    bruno.phone.respond(&invite, 180, "late", false).await;
    let cancel = bruno.phone.request(Method::Cancel).await;
    assert_eq!(
        message::call_id(&cancel.headers),
        message::call_id(&invite.headers)
    );
    bruno.phone.respond(&cancel, 200, "late", false).await;
    let again = bruno.phone.request(Method::Invite).await;
    assert_ne!(
        message::call_id(&again.headers),
        message::call_id(&invite.headers),
        "a new leg"
    );
    // The first leg answers after all, crossing the CANCEL: acknowledged and hung up.
    bruno.phone.respond(&invite, 200, "late", true).await;
    bruno.phone.request(Method::Ack).await;
    let bye = bruno.phone.take_bye().await;
    assert_eq!(
        message::call_id(&bye.headers),
        message::call_id(&invite.headers)
    );
    // The new leg still rings: answered, it connects the call.
    answers(&mut bruno, &again, interaction).await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// An agent's phone whose SDP names its media address by a host name (vacd resolves none) is
/// bridged all the same: its first RTP packet latches its address.
async fn an_agent_sdp_naming_a_host_is_bridged_by_its_first_packet(db: Db) {
    let f = Floor::new(db).await;
    let mut phone = Phone::new("127.0.0.1", f.s.sip_udp()).await;
    phone.sdp_host = Some("phone.example.invalid".into());
    let mut bruno = f.agent_with("bruno", phone, None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut bruno).await;
    let agent_leg = answers(&mut bruno, &invite, interaction).await;
    bruno
        .phone
        .rtp_reaches(agent_leg.remote_rtp, b"hello caller", &caller)
        .await;
    caller
        .rtp_reaches(leg.remote_rtp, b"hello agent", &bruno.phone)
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// The caller (after what it had received) hears vacd's music on hold: 20 ms G.711 frames from
/// the call's media address.
async fn hears_music(caller: &mut Phone, leg: &common::phone::Leg) {
    caller.drain_rtp().await;
    caller.hears_music(leg, 1).await;
}

/// The agent's phone holds the call (re-INVITE sendonly): vacd answers recvonly, the caller
/// hears music and nothing the caller sends reaches the agent; resuming bridges again.
async fn agent_holds_and_resumes(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"before hold", &bruno.phone)
        .await;

    let held = bruno.phone.reinvite(&mut agent_leg, "sendonly").await;
    assert_eq!(held.status_code.code(), 200, "{held}");
    // The console hears of it.
    bruno
        .console
        .expect_where("call.held", |f| {
            f["interaction"] == interaction && f["by"] == "phone"
        })
        .await;
    let answer = String::from_utf8_lossy(&held.body).into_owned();
    assert!(answer.contains("a=recvonly"), "{answer}");
    // On hold: music reaches the caller again, the caller's voice does not reach the agent.
    hears_music(&mut caller, &leg).await;
    for sequence in 0..5 {
        caller
            .send_rtp(leg.remote_rtp, sequence, b"while on hold")
            .await;
    }
    // Resume: the bridge carries the caller's voice again; what was sent on hold never
    // arrived (loopback keeps the order, so it would have come before).
    let resumed = bruno.phone.reinvite(&mut agent_leg, "sendrecv").await;
    assert_eq!(resumed.status_code.code(), 200, "{resumed}");
    bruno
        .console
        .expect_where("call.resumed", |f| f["by"] == "phone")
        .await;
    let (_, before) = caller
        .rtp_reaches_after(leg.remote_rtp, b"after hold", &bruno.phone)
        .await;
    assert!(
        !before.iter().any(|p| p == b"while on hold"),
        "held audio leaked to the agent: {before:?}"
    );
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// A call is served in its caller's language: the number's mailbox's (Sales: German) for a
/// new caller; the customer's own once it is known, in the mailbox's queue for it (Sales EN) —
/// even when an agent who does not speak it has waited longer; and the number's language
/// again when the mailbox has no queue for the customer's (French).
async fn a_caller_reaches_an_agent_who_speaks_their_language(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let first = f.rings_and_hangs_up(&mut bruno).await;
    assert_eq!(first["language"], "de", "{first}");
    // Bruno is ready again, and has waited longest from then on; he learnt the caller speaks
    // English (he does not, alice does).
    let mut alice = f.agent("alice", None).await;
    let customer = first["customer_id"]
        .as_i64()
        .expect("the caller's customer");
    f.customer_speaks(customer, "en").await;
    let english = f.rings_and_hangs_up(&mut alice).await;
    assert_eq!(english["language"], "en", "{english}");
    let (_, queue) =
        f.s.get(&format!("/api/v1/queues/{}", english["queue_id"]), &f.sam)
            .await;
    assert_eq!(queue["name"], "Sales EN", "{queue}");
    // French: a language of the tenant's, but Sales has no queue for it.
    f.customer_speaks(customer, "fr").await;
    let french = f.rings_and_hangs_up(&mut bruno).await;
    assert_eq!(french["language"], "de", "{french}");
    f.s.stop().await;
}

/// The agent's phone sends its 2xx again (the ACK was lost, for all it knows): vacd sends the
/// same ACK again each time (RFC 3261 §13.2.2.4), not a new transaction, and the call goes on.
async fn a_repeated_answer_gets_the_same_ack(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Ringing {
        mut caller,
        leg,
        interaction,
        invite,
    } = f.ring(&mut bruno).await;
    let (agent_leg, ack) = bruno.phone.answer_with_ack(&invite).await;
    let first = bruno.phone.repeat_answer(&invite, agent_leg.tag()).await;
    let second = bruno.phone.repeat_answer(&invite, agent_leg.tag()).await;
    assert_eq!(first.to_string(), ack.to_string());
    assert_eq!(second.to_string(), ack.to_string());
    assert_eq!(
        message::cseq(&ack.headers).expect("CSeq"),
        (message::cseq(&invite.headers).expect("CSeq").0, Method::Ack)
    );
    caller
        .rtp_reaches(leg.remote_rtp, b"still bridged", &bruno.phone)
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// The agent's console holds the call: the caller hears music and nothing passes between the
/// legs, either way; resuming bridges them again. Both are in the event log; a hold of a call
/// the agent does not hold is refused.
async fn console_holds_and_resumes(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        agent_leg,
    } = f.connect(&mut bruno).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"before hold", &bruno.phone)
        .await;
    let refused = bruno
        .console
        .command(json!({ "type": "call.hold", "interaction": interaction + 1000 }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "hold_failed");
    let refused = bruno.console.command(json!({ "type": "call.hold" })).await;
    assert_eq!(refused.last().expect("reply")["code"], "invalid_command");
    // A colleague cannot hold bruno's call.
    let mut alice = Console::connect(&f.s, &f.s.demo_login("alice").await).await;
    let refused = alice
        .command(json!({ "type": "call.hold", "interaction": interaction }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "hold_failed");

    bruno.holds(interaction, true).await;
    hears_music(&mut caller, &leg).await;
    for sequence in 0..5 {
        caller
            .send_rtp(leg.remote_rtp, sequence, b"caller on hold")
            .await;
        bruno
            .phone
            .send_rtp(agent_leg.remote_rtp, sequence, b"agent on hold")
            .await;
    }
    // Resumed: both directions cross the bridge again, and what was sent on hold never did
    // (loopback keeps the order, so it would have come first).
    bruno.holds(interaction, false).await;
    let (_, to_agent) = caller
        .rtp_reaches_after(leg.remote_rtp, b"after hold", &bruno.phone)
        .await;
    assert!(
        !to_agent.iter().any(|p| p == b"caller on hold"),
        "held audio reached the agent: {to_agent:?}"
    );
    let (_, to_caller) = bruno
        .phone
        .rtp_reaches_after(agent_leg.remote_rtp, b"agent back", &caller)
        .await;
    assert!(
        !to_caller.iter().any(|p| p == b"agent on hold"),
        "held audio reached the caller: {to_caller:?}"
    );
    // Held again, then the caller hangs up: that ends the hold too.
    bruno
        .console
        .ok(json!({ "type": "call.hold", "interaction": interaction }))
        .await;
    hears_music(&mut caller, &leg).await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    for (kind, reasons) in [
        ("call.held", vec![Value::Null, Value::Null]),
        ("call.resumed", vec![json!("console"), json!("hung up")]),
    ] {
        let logged = eventually(kind, || async {
            let logged = f.events(kind, interaction).await;
            (logged.len() == 2).then_some(logged)
        })
        .await;
        let mut got = Vec::new();
        for event in &logged {
            assert_eq!(event["agent_id"], bruno.id, "{kind}: {logged:?}");
            let payload: Value = serde_json::from_str(event["payload"].as_str().unwrap_or("{}"))
                .expect("the event's payload");
            got.push(payload["reason"].clone());
        }
        got.sort_by_key(|r| r.to_string());
        assert_eq!(got, reasons, "{kind}: {logged:?}");
    }
    f.s.stop().await;
}

/// The `call.held` frames `console` got, each checked to come after its `hello` (the first
/// frame of a connection).
fn holds_told(console: &Console) -> Vec<Value> {
    assert_eq!(console.seen[0]["type"], "hello", "{:?}", console.seen);
    console
        .seen
        .iter()
        .filter(|f| f["type"] == "call.held")
        .cloned()
        .collect()
}

/// A console that connects anew (a reload: a new websocket, same token) is told right after
/// `hello` the holds its agent's call is in — the console's and the phone's, each with its
/// `by` — so it offers Resume; a call no longer held is told nothing.
async fn a_reconnecting_console_learns_the_hold(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    bruno.holds(interaction, true).await;

    // Held from the console: the new console hears so, and resumes the call.
    bruno.reconnect(&f.s).await;
    let held = bruno.console.expect("call.held").await;
    assert_eq!(
        held,
        json!({ "type": "call.held", "interaction": interaction, "by": "console" })
    );
    assert_eq!(holds_told(&bruno.console), [held]);
    bruno.holds(interaction, false).await;
    // The resume from the new console bridges the call again.
    bruno
        .phone
        .rtp_reaches(agent_leg.remote_rtp, b"agent back", &caller)
        .await;

    // Resumed, then connected anew: no console hold is told — up to the phone's hold
    // (re-INVITE, made after `hello`), of which the new console hears.
    bruno.reconnect(&f.s).await;
    let held = bruno.phone.reinvite(&mut agent_leg, "sendonly").await;
    assert_eq!(held.status_code.code(), 200, "{held}");
    bruno
        .console
        .expect_where("call.held", |f| f["by"] == "phone")
        .await;
    let told = holds_told(&bruno.console);
    assert!(told.iter().all(|f| f["by"] == "phone"), "{told:?}");

    // Held on the phone: a new console hears that hold, by the phone, and no other.
    bruno.reconnect(&f.s).await;
    let held = bruno.console.expect("call.held").await;
    assert_eq!(
        held,
        json!({ "type": "call.held", "interaction": interaction, "by": "phone" })
    );
    let resumed = bruno.phone.reinvite(&mut agent_leg, "sendrecv").await;
    assert_eq!(resumed.status_code.code(), 200, "{resumed}");
    bruno
        .console
        .expect_where("call.resumed", |f| f["by"] == "phone")
        .await;
    assert_eq!(holds_told(&bruno.console), [held]);
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// The agent's phone holds with a re-INVITE without an offer (delayed offer): vacd offers in
/// its 200, the phone answers sendonly in the ACK, and the caller hears music.
async fn a_reinvite_without_an_offer_gets_one(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"before hold", &bruno.phone)
        .await;
    let offered = bruno
        .phone
        .reinvite_without_offer(&mut agent_leg, "sendonly")
        .await;
    assert_eq!(offered.status_code.code(), 200, "{offered}");
    let offer = String::from_utf8_lossy(&offered.body).into_owned();
    assert!(
        offer.contains("m=audio") && offer.contains("a=sendrecv"),
        "{offer}"
    );
    // The answer in the ACK put the call on hold: music reaches the caller.
    hears_music(&mut caller, &leg).await;
    let resumed = bruno.phone.reinvite(&mut agent_leg, "sendrecv").await;
    assert_eq!(resumed.status_code.code(), 200, "{resumed}");
    caller
        .rtp_reaches_after(leg.remote_rtp, b"after hold", &bruno.phone)
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// Accepting a call in the console is allowed: the phone keeps ringing, and its answer
/// bridges the media.
async fn console_accept_then_phone_answers(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    let interaction = interaction_of(&bruno.console.expect("offer").await);
    bruno
        .console
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    let invite = bruno.phone.request(Method::Invite).await;
    bruno.phone.answer(&invite).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"accepted in the console", &bruno.phone)
        .await;
    let ended = f
        .caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// Accepted in the console, then the agent's phone declines: the caller is not left on hold
/// music — the call waits again and the next agent gets it.
async fn console_accept_then_phone_declines(db: Db) {
    let f = Floor::new(db).await;
    let mut alice = f.agent("alice", None).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    let leg = caller.call(NUMBER).await.expect("answered");
    let interaction = interaction_of(&alice.console.expect("offer").await);
    alice
        .console
        .ok(json!({ "type": "offer.accept", "interaction": interaction }))
        .await;
    let invite = alice.phone.request(Method::Invite).await;
    alice.phone.decline(&invite, 486).await;
    takes_over(&mut bruno, interaction).await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// Blind transfer from the console to another agent: vacd hangs up the first agent's phone,
/// rings the target's, and bridges the caller with it.
async fn console_transfers_to_another_agent(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    bruno
        .console
        .expect_where("interaction.connected", |f| f["interaction"] == interaction)
        .await;
    let mut alice = f.agent("alice", None).await;
    bruno
        .console
        .ok(
            json!({ "type": "interaction.transfer", "interaction": interaction,
                    "to": { "target": "agent", "agent": alice.id } }),
        )
        .await;
    bruno.phone.take_bye().await;
    alice
        .console
        .expect_where("offer", |f| f["interaction"] == interaction)
        .await;
    f.target_takes_the_call(&mut caller, &leg, &mut alice, interaction)
        .await;
    let record = f.events("call.ended", interaction).await;
    assert_eq!(
        record[0]["agent_id"], alice.id,
        "the last agent is on the record"
    );
    f.s.stop().await;
}

/// A team lead listens to their own team's calls only: a transfer, which may take the call out
/// of the team, hangs up the team lead's phone; the call goes on.
async fn a_transfer_ends_a_team_leads_listening(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    let admin = f.s.demo_login("ada").await;
    let (_, teams) = f.s.get("/api/v1/teams", &admin).await;
    let berlin = teams["items"][0]["id"].clone();
    let (_, lead) =
        f.s.demo_user(
            &admin,
            "tl-berlin",
            json!({ "role": "team_lead", "team_id": berlin,
                    "sip_username": "tl-berlin", "sip_password": SIP_PASSWORD }),
        )
        .await;
    let mut lead_phone = Phone::new("127.0.0.1", f.s.sip_udp()).await;
    lead_phone.register("tl-berlin", SIP_PASSWORD, None).await;
    let (status, body) =
        f.s.call(
            reqwest::Method::PUT,
            &format!("/api/v1/calls/{interaction}/monitor"),
            Some(&lead),
            Some(json!({ "mode": "silent" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    let invite = lead_phone.request(Method::Invite).await;
    let listening = lead_phone.answer(&invite).await;

    let (_, row) =
        f.s.get(&format!("/api/v1/interactions/{interaction}"), &admin)
            .await;
    bruno
        .console
        .ok(
            json!({ "type": "interaction.transfer", "interaction": interaction,
                    "to": { "target": "queue", "queue": row["queue_id"] } }),
        )
        .await;
    bruno.phone.take_bye().await;
    let bye = lead_phone.take_bye().await;
    assert_eq!(
        message::to_tag(&bye.headers),
        Some(listening.tag()),
        "{bye}"
    );
    // The caller waits again and reaches the next agent.
    let mut alice = f.agent("alice", None).await;
    alice
        .console
        .expect_where("offer", |f| f["interaction"] == interaction)
        .await;
    f.target_takes_the_call(&mut caller, &leg, &mut alice, interaction)
        .await;
    f.s.stop().await;
}

/// Caller and agent phone both signal over TCP.
async fn call_over_tcp(db: Db) {
    let f = Floor::new(db).await;
    let phone = Phone::tcp("127.0.0.1", f.s.sip_tcp()).await;
    let mut bruno = f.agent_with("bruno", phone, None).await;
    let mut caller = Phone::tcp(TRUNK_IP, f.s.sip_tcp()).await;
    let leg = caller.call(NUMBER).await.expect("answered over TCP");
    let interaction = interaction_of(&bruno.console.expect("offer").await);
    let invite = bruno.phone.request(Method::Invite).await;
    let via = message::top_via(&invite.headers)
        .expect("Via")
        .transport
        .to_owned();
    assert_eq!(
        via, "TCP",
        "the agent's phone is rung over its own connection"
    );
    let agent_leg = bruno.phone.answer(&invite).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"over tcp", &bruno.phone)
        .await;
    assert_eq!(bruno.phone.bye(&agent_leg).await, 200);
    caller.take_bye().await;
    let ended = f.call_ended(&mut bruno, interaction).await;
    assert_eq!(ended["hangup_by"], "agent", "{ended}");
    f.s.stop().await;
}

/// Garbage, truncated requests, out-of-dialog BYEs and unknown methods from one source while a
/// call goes through from the trunk: the call is served, media crosses, the server keeps going.
async fn storm_does_not_stop_a_concurrent_call(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let server = f.s.sip_udp();
    // The storm runs until it is stopped and counts vacd's answers to it (481 to the BYE, 501,
    // 400). The call starts once vacd has answered the storm, and the storm stops once vacd has
    // answered it again after the call, so the whole call happens inside it.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let (answers, mut answered) = tokio::sync::watch::channel(0usize);
    let storm = tokio::spawn(async move {
        let socket = tokio::net::UdpSocket::bind("127.0.0.3:0")
            .await
            .expect("bind");
        let head = "Via: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKs\r\nMax-Forwards: 70\r\n\
From: <sip:s@x>;tag=1\r\nTo: <sip:x>;tag=2\r\nCall-ID: storm\r\n";
        let junk: Vec<Vec<u8>> = vec![
            b"\x00\x01\x02\xff\xfe".to_vec(),
            b"INVITE sip:+4930123456@x SIP/2.0\r\nVia: broken\r\n\r\n".to_vec(),
            format!("BYE sip:x SIP/2.0\r\n{head}CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n")
                .into_bytes(),
            format!(
                "FROBNICATE sip:x SIP/2.0\r\n{head}CSeq: 3 FROBNICATE\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
            format!(
                "INVITE sip:x SIP/2.0\r\n{head}CSeq: 4 INVITE\r\nContent-Length: 900\r\n\r\nv=0"
            )
            .into_bytes(),
            vec![b'A'; 60_000],
        ];
        let mut reply = vec![0u8; 65_535];
        let mut sent = 0usize;
        while !*stopped.borrow_and_update() {
            tokio::select! {
                biased;
                received = socket.recv_from(&mut reply) => {
                    if received.is_ok() {
                        answers.send_modify(|n| *n += 1);
                    }
                }
                _ = socket.send_to(&junk[sent % junk.len()], server) => {
                    sent += 1;
                    if sent.is_multiple_of(100) {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    });
    tokio::time::timeout(common::phone::WAIT, answered.wait_for(|n| *n > 0))
        .await
        .expect("vacd answers the storm within the wait")
        .expect("the storm goes on");
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"still talking", &bruno.phone)
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    let seen = *answered.borrow();
    tokio::time::timeout(common::phone::WAIT, answered.wait_for(|n| *n > seen))
        .await
        .expect("vacd still answers the storm after the call, within the wait")
        .expect("the storm goes on");
    let _ = stop.send(true);
    storm.await.expect("storm task");
    f.s.stop().await;
}

/// The agent's phone transfers the call with REFER to another agent's SIP address: 202, a
/// NOTIFY with 200, the BYE; the target's phone rings and is bridged with the caller.
async fn phone_refers_to_another_agent(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    // Bare digits are an extension without a registered phone, not a number abroad: refused,
    // and bruno keeps the call.
    let extension = format!("sip:2002@{}", f.s.sip_udp());
    let refused = bruno.phone.refer(&mut agent_leg, &extension).await;
    assert_eq!(refused.status_code.code(), 404, "{refused}");
    let mut alice = f.agent("alice", None).await;
    let target = format!("sip:alice@{}", f.s.sip_udp());
    let accepted = bruno.phone.refer(&mut agent_leg, &target).await;
    assert_eq!(accepted.status_code.code(), 202, "{accepted}");
    let notify = bruno.phone.request(Method::Notify).await;
    assert!(String::from_utf8_lossy(&notify.body).contains("200"));
    bruno.phone.respond(&notify, 200, "", false).await;
    bruno.phone.take_bye().await;
    f.target_takes_the_call(&mut caller, &leg, &mut alice, interaction)
        .await;
    f.s.stop().await;
}

/// Many phones end a blind transfer with REFER and BYE at once, without waiting for the
/// NOTIFY: the phone is let go, the transfer goes on, and the caller is bridged with the target.
async fn phone_refers_and_hangs_up_at_once(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    let mut alice = f.agent("alice", None).await;
    let target = format!("sip:alice@{}", f.s.sip_udp());
    let (referred, hung_up) = bruno.phone.refer_and_hang_up(&mut agent_leg, &target).await;
    assert_eq!(referred, 202);
    // 200: the BYE came before routing's transfer (the case this is about, nearly always);
    // 481: routing was quicker and vacd had hung the phone up already.
    assert!(matches!(hung_up, 200 | 481), "BYE answered {hung_up}");
    f.target_takes_the_call(&mut caller, &leg, &mut alice, interaction)
        .await;
    f.s.stop().await;
}

/// The same, but routing refuses the transfer (the target's console is not open): with the
/// phone gone nobody is left for the caller, and the call ends as if the agent had hung up.
async fn phone_refers_to_an_absent_agent_and_hangs_up(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        interaction,
        mut agent_leg,
        ..
    } = f.connect(&mut bruno).await;
    // Alice's phone is registered (so the REFER names an agent), her console is not open.
    let mut alice = Phone::new("127.0.0.1", f.s.sip_udp()).await;
    alice.register("alice", SIP_PASSWORD, None).await;
    let target = format!("sip:alice@{}", f.s.sip_udp());
    let (referred, hung_up) = bruno.phone.refer_and_hang_up(&mut agent_leg, &target).await;
    assert_eq!((referred, hung_up), (202, 200));
    caller.take_bye().await;
    common::eventually("the call's interaction ended", || async {
        let ended = f.events("routing.ended", interaction).await;
        (!ended.is_empty()).then_some(())
    })
    .await;
    f.s.stop().await;
}

/// REFER to an external number: vacd calls it through the trunk's outbound address, the agent
/// is released to wrap-up, and caller and number are bridged until the number hangs up.
async fn phone_refers_to_an_external_number(db: Db) {
    let (f, mut carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        mut agent_leg,
    } = f.connect(&mut bruno).await;
    let target = format!("sip:+4940999888@{}", f.s.sip_udp());
    let accepted = bruno.phone.refer(&mut agent_leg, &target).await;
    assert_eq!(accepted.status_code.code(), 202, "{accepted}");
    let notify = bruno.phone.request(Method::Notify).await;
    bruno.phone.respond(&notify, 200, "", false).await;
    bruno.phone.take_bye().await;
    bruno
        .console
        .expect_where("interaction.ended", |f| f["interaction"] == interaction)
        .await;
    let outgoing = carrier.request(Method::Invite).await;
    assert_eq!(
        outgoing.uri.auth.as_ref().map(|a| a.user.as_str()),
        Some("+4940999888")
    );
    let external = carrier.answer(&outgoing).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"to the outside", &carrier)
        .await;
    carrier
        .rtp_reaches(external.remote_rtp, b"from the outside", &caller)
        .await;
    assert_eq!(carrier.bye(&external).await, 200);
    caller.take_bye().await;
    let f = f.restart().await;
    let ended = f.ended_payload(interaction).await;
    assert_eq!(ended["hangup_by"], "remote", "{ended}");
    let transferred = f.events("call.transferred", interaction).await;
    assert_eq!(payload(&transferred[0])["to"], "+4940999888");
    f.s.stop().await;
}

/// A transfer to an external number that rings and never answers is given up after
/// `sip.ring_timeout_seconds`: the far end is cancelled and the call ends as a failed transfer
/// does, instead of the caller hearing music for ever.
async fn an_external_number_that_never_answers_is_given_up(db: Db) {
    let (f, mut carrier) =
        Floor::with_carrier(db, |config| config.sip.ring_timeout_seconds = 1).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    bruno.transfer_out(interaction, "+4940999888").await;
    let outgoing = carrier.request(Method::Invite).await;
    carrier.respond(&outgoing, 180, "rings", false).await;
    carrier.cancelled(&outgoing).await;
    caller.take_bye().await;
    f.s.stop().await;
}

/// The console transfers a call to an external number; a transfer without an outbound trunk,
/// or of a call the agent does not hold, is refused with an error and changes nothing.
async fn console_transfers_to_an_external_number(db: Db) {
    let (f, mut carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    let refused = bruno
        .console
        .command(
            json!({ "type": "interaction.transfer", "interaction": interaction + 1000,
                         "to": { "target": "number", "number": "+4940999888" } }),
        )
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "transfer_failed");
    let refused = bruno
        .console
        .command(
            json!({ "type": "interaction.transfer", "interaction": interaction,
                         "to": { "target": "number", "number": "not a number" } }),
        )
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "invalid_command");
    // Sam listens in; the call leaving the contact center takes him off it, and it cannot be
    // listened to any more.
    let mut sam_phone = f.supervisor_phone().await;
    assert!(f.monitor(interaction, "whisper").await.0.is_success());
    let ringing = sam_phone.request(Method::Invite).await;
    sam_phone.answer(&ringing).await;
    bruno.transfer_out(interaction, "0049 40 999888").await;
    sam_phone.take_bye().await;
    assert_eq!(
        f.monitor(interaction, "whisper").await.0,
        reqwest::StatusCode::NOT_FOUND
    );
    let outgoing = carrier.request(Method::Invite).await;
    assert_eq!(
        outgoing.uri.auth.as_ref().map(|a| a.user.as_str()),
        Some("+4940999888")
    );
    carrier.answer(&outgoing).await;
    caller
        .rtp_reaches(leg.remote_rtp, b"outside", &carrier)
        .await;
    assert_eq!(caller.bye(&leg).await, 200);
    carrier.take_bye().await;
    let f = f.restart().await;
    let ended = f.ended_payload(interaction).await;
    assert_eq!(ended["hangup_by"], "caller", "{ended}");
    f.s.stop().await;
}

/// A provider that authenticates the calls it carries challenges vacd's INVITE (407): vacd
/// sends it again once with the outbound trunk's credentials, and the transfer goes through;
/// the BYE that ends the call is challenged and answered the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_trunk_that_challenges_gets_its_answer() {
    use vacd_sip::rsip::headers::UntypedHeader;
    let (f, mut carrier) = Floor::with_carrier(Db::Sqlite, |config| {
        let trunk = &mut config.sip.trunks[0];
        trunk.outbound_username = Some("vacd-account".into());
        trunk.outbound_password = Some("carrier-secret".into());
    })
    .await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    bruno.transfer_out(interaction, "+4940999888").await;
    let first = carrier.request(Method::Invite).await;
    let answer_of = |invite: &vacd_sip::rsip::Request| {
        invite.headers.iter().find_map(|h| match h {
            vacd_sip::rsip::Header::ProxyAuthorization(v) => Some(v.value().to_owned()),
            _ => None,
        })
    };
    assert_eq!(answer_of(&first), None, "no credentials unasked");
    carrier.challenge(&first, "carrier", "n-1").await;
    // The challenge is acknowledged (its INVITE's CSeq), then the INVITE comes again.
    let acked = carrier.request(Method::Ack).await;
    let cseq = |request: &vacd_sip::rsip::Request| message::cseq(&request.headers).expect("CSeq").0;
    assert_eq!(cseq(&acked), cseq(&first));
    let second = carrier.request(Method::Invite).await;
    let answer = answer_of(&second).expect("the challenge answered");
    let cnonce_of = |answer: &str| -> String {
        answer
            .split("cnonce=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a cnonce")
            .to_owned()
    };
    let challenge = "Digest realm=\"carrier\", nonce=\"n-1\", qop=\"auth\", algorithm=MD5";
    let expected = vacd_sip::digest::answer_challenge(
        challenge,
        "INVITE",
        &second.uri.to_string(),
        "vacd-account",
        "carrier-secret",
        1,
        &cnonce_of(&answer),
    )
    .expect("an answer");
    let response = |value: &str| {
        value
            .split("response=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
    };
    assert_eq!(response(&answer), response(&expected), "{answer}");
    assert_eq!(cseq(&second), cseq(&first) + 1);
    // Answered: its ACK has the INVITE's CSeq and credentials; caller and outside party talk.
    let tag = message::new_tag();
    carrier.respond(&second, 200, &tag, true).await;
    let ack = carrier.request(Method::Ack).await;
    assert_eq!(cseq(&ack), cseq(&second));
    assert_eq!(answer_of(&ack).as_deref(), Some(answer.as_str()));
    caller
        .rtp_reaches(leg.remote_rtp, b"outside", &carrier)
        .await;
    // The caller hangs up; the provider challenges the BYE too, and gets its answer once.
    assert_eq!(caller.bye(&leg).await, 200);
    let bye = carrier.request(Method::Bye).await;
    assert_eq!(answer_of(&bye), None, "no credentials unasked");
    carrier.challenge(&bye, "carrier", "n-2").await;
    let again = carrier.request(Method::Bye).await;
    let answer = answer_of(&again).expect("the BYE's challenge answered");
    let expected = vacd_sip::digest::answer_challenge(
        &challenge.replace("n-1", "n-2"),
        "BYE",
        &again.uri.to_string(),
        "vacd-account",
        "carrier-secret",
        1,
        &cnonce_of(&answer),
    )
    .expect("an answer");
    assert_eq!(response(&answer), response(&expected), "{answer}");
    assert_eq!(cseq(&again), cseq(&bye) + 1);
    assert_eq!(
        message::call_id(&again.headers).ok(),
        message::call_id(&bye.headers).ok()
    );
    carrier.respond(&again, 200, "", false).await;
    f.s.stop().await;
}

/// A caller whose provider gives telephone-event (DTMF) another payload type than vacd's
/// default: the agent's phone is offered the caller's number, so the key presses the relay
/// forwards as they are mean the same on both legs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_keeps_the_callers_payload_type() {
    let f = Floor::new(Db::Sqlite).await;
    let mut bruno = f.agent("bruno", None).await;
    let mut caller = f.caller().await;
    caller.telephone_event = 96;
    let Ringing { invite, .. } = f.ring_from(caller, &mut bruno).await;
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    assert!(
        offer.contains("a=rtpmap:96 telephone-event/8000") && !offer.contains("rtpmap:101"),
        "{offer}"
    );
    f.s.stop().await;
}

/// A supervisor's phone behind NAT names an address of its own network in its SDP: vacd
/// sends it the mix where its packets come from once one has come, and takes its voice from
/// there — the agent hears the whisper. A stranger's packets that reach the leg first (from
/// neither the SDP's IP nor the phone's SIP address) are not latched on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_behind_nat_whispers() {
    const CALLER: f32 = 450.0;
    const SUPERVISOR: f32 = 2000.0;
    let f = Floor::new(Db::Sqlite).await;
    let mut sam_phone = f.supervisor_phone().await;
    sam_phone.behind_nat = Some(std::net::IpAddr::from([192, 0, 2, 10]));
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    let _caller_voice = caller.play_tone(leg.remote_rtp, CALLER, 400);
    let (status, body) = f.monitor(interaction, "whisper").await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    let invite = sam_phone.request(Method::Invite).await;
    let sam_leg = sam_phone.answer(&invite).await;
    let stranger = Phone::new("127.0.0.3", f.s.sip_udp()).await;
    stranger.send_rtp(sam_leg.remote_rtp, 1, &[0xff; 160]).await;
    let _sam_voice = sam_phone.play_tone(sam_leg.remote_rtp, SUPERVISOR, 400);
    let heard = sam_phone.hear(40).await;
    let heard = &heard[20 * 160..];
    assert!(
        tone_level(heard, CALLER) > 1000.0,
        "the caller in the supervisor's mix: {}",
        tone_level(heard, CALLER)
    );
    bruno.phone.drain_rtp().await;
    let at_agent = bruno.phone.hear(45).await;
    let at_agent = &at_agent[20 * 160..];
    assert!(
        tone_level(at_agent, SUPERVISOR) > 1000.0,
        "the whisper reaches the agent: {}",
        tone_level(at_agent, SUPERVISOR)
    );
    f.s.stop().await;
}

/// Click-to-dial: the console dials a number; vacd rings the agent's phone first, then calls
/// the number through the outbound trunk and bridges them. The agent is set ready for outbound
/// work, and the call is its work in routing from the start: its console shows the call
/// (channel, details, the number's customer), the agent is busy, and the hang-up ends the call
/// into wrap-up and done. A queue the agent does not serve is refused.
async fn click_to_dial(db: Db) {
    let (f, mut carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    let refused = bruno
        .console
        .command(json!({ "type": "call.dial", "number": "030 555" }))
        .await;
    assert_eq!(refused.last().expect("reply")["code"], "invalid_command");
    let (_, queues) = f.s.get("/api/v1/queues?limit=100", &f.sam).await;
    let queue_of = |name: &str| {
        queues["items"]
            .as_array()
            .and_then(|q| q.iter().find(|q| q["name"] == name))
            .map(|q| q["id"].clone())
            .expect("demo queue")
    };
    let refused = bruno
        .console
        .command(json!({ "type": "call.dial", "number": DIALLED, "queue": queue_of("Sales EN") }))
        .await;
    let reply = refused.last().expect("reply");
    assert_eq!(
        reply["code"], "dial_failed",
        "not one of Bruno's queues: {reply}"
    );
    let refused = bruno
        .console
        .command(json!({ "type": "call.dial", "number": DIALLED, "queue": "Sales DE" }))
        .await;
    let reply = refused.last().expect("reply");
    assert_eq!(
        reply["code"], "invalid_command",
        "a queue is named by its id: {reply}"
    );
    // Ready for outbound work first, then the reply (the protocol's order).
    let dialled = bruno
        .console
        .command(json!({ "type": "call.dial", "number": DIALLED }))
        .await;
    assert_eq!(dialled.last().expect("reply")["type"], "ack", "{dialled:?}");
    assert!(
        dialled
            .iter()
            .any(|f| f["type"] == "presence.changed" && f["to"]["mode"] == "outbound"),
        "{dialled:?}"
    );
    let connected = bruno.console.expect("interaction.connected").await;
    assert_eq!(connected["channel"], "call", "{connected}");
    assert_eq!(
        connected["queue"],
        queue_of("Sales DE"),
        "Bruno's first queue: {connected}"
    );
    assert_eq!(
        connected["details"]["subject"], "Call to +4940555000",
        "{connected}"
    );
    let interaction = connected["interaction"].as_i64().expect("interaction id");
    let pop = bruno.console.expect("customer.screen_pop").await;
    assert_eq!(pop["interaction"], interaction, "{pop}");
    assert!(pop["identities"].to_string().contains(DIALLED), "{pop}");
    bruno
        .console
        .expect_where("presence.changed", |f| f["to"]["presence"] == "busy")
        .await;
    let invite = bruno.phone.request(Method::Invite).await;
    let agent_leg = bruno.phone.answer(&invite).await;
    let outgoing = carrier.request(Method::Invite).await;
    assert_eq!(
        outgoing.uri.auth.as_ref().map(|a| a.user.as_str()),
        Some(DIALLED)
    );
    let customer = carrier.answer(&outgoing).await;
    bruno
        .phone
        .rtp_reaches(agent_leg.remote_rtp, b"hello customer", &carrier)
        .await;
    carrier
        .rtp_reaches(customer.remote_rtp, b"hello agent", &bruno.phone)
        .await;
    assert_eq!(carrier.bye(&customer).await, 200);
    bruno.phone.take_bye().await;
    f.call_ended(&mut bruno, interaction).await;
    bruno
        .console
        .expect_where("presence.changed", |f| f["to"]["presence"] == "wrap_up")
        .await;
    bruno
        .console
        .ok(json!({ "type": "wrapup.done", "interaction": interaction }))
        .await;
    bruno
        .console
        .expect_where("wrapup.ended", |f| f["interaction"] == interaction)
        .await;
    let placed = f.events("routing.placed", interaction).await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    assert_eq!(placed[0]["agent_id"], bruno.id, "{placed:?}");
    let done = eventually("the dialled call's interaction done", || async {
        let (_, row) =
            f.s.get(&format!("/api/v1/interactions/{interaction}"), &f.sam)
                .await;
        (row["state"] == "done").then_some(row)
    })
    .await;
    assert_eq!(done["agent_id"], bruno.id, "{done}");
    let f = f.restart().await;
    let (_, records) =
        f.s.get("/api/v1/call-records?direction=outbound", &f.sam)
            .await;
    let record = &records["items"][0];
    assert_eq!(record["dialled"], DIALLED, "{records}");
    assert_eq!(record["result"], "connected", "{records}");
    assert_eq!(record["hangup_by"], "remote", "{records}");
    assert_eq!(record["agent_id"], bruno.id);
    f.s.stop().await;
}

/// A call dialled from an A-law phone runs in A-law end to end: the customer is offered it, and
/// a supervisor listening in hears both sides (the mix follows the law the phone chose).
async fn click_to_dial_in_a_law_is_monitored(db: Db) {
    const CUSTOMER: f32 = 450.0;
    const AGENT: f32 = 1000.0;
    let (f, mut carrier) = Floor::with_carrier(db, |_| {}).await;
    carrier.law = Law::ALaw;
    let mut phone = Phone::new("127.0.0.1", f.s.sip_udp()).await;
    phone.law = Law::ALaw;
    let mut bruno = f.agent_with("bruno", phone, None).await;
    let mut sam_phone = f.supervisor_phone().await;
    sam_phone.law = Law::ALaw;
    bruno.dial().await;
    let invite = bruno.phone.request(Method::Invite).await;
    let agent_leg = bruno.phone.answer(&invite).await;
    let outgoing = carrier.request(Method::Invite).await;
    let offer = String::from_utf8_lossy(&outgoing.body).into_owned();
    assert!(offer.contains("PCMA") && !offer.contains("PCMU"), "{offer}");
    let customer = carrier.answer(&outgoing).await;
    let _customer_voice = carrier.play_tone(customer.remote_rtp, CUSTOMER, 400);
    let _agent_voice = bruno.phone.play_tone(agent_leg.remote_rtp, AGENT, 400);
    let interaction = started_interaction(&f).await;
    let (status, body) = f.monitor(interaction, "silent").await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    let invite = sam_phone.request(Method::Invite).await;
    sam_phone.answer(&invite).await;
    let heard = sam_phone.hear(40).await;
    let heard = &heard[20 * 160..];
    for (who, tone) in [("customer", CUSTOMER), ("agent", AGENT)] {
        assert!(
            tone_level(heard, tone) > 1000.0,
            "the {who} in the mix: {}",
            tone_level(heard, tone)
        );
    }
    assert_eq!(carrier.bye(&customer).await, 200);
    f.s.stop().await;
}

/// Click-to-dial whose agent's own phone declines: the call ends at once as `failed` instead
/// of holding its slot and media for ever, and the agent, who talked to nobody, has no wrap-up:
/// it is ready for outbound work again at once.
async fn click_to_dial_declined_by_the_agents_phone_ends(db: Db) {
    let (f, _carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    bruno.dial().await;
    let invite = bruno.phone.request(Method::Invite).await;
    bruno.phone.decline(&invite, 603).await;
    let record = f.failed_dial().await;
    assert_eq!(record["hangup_by"], "agent", "{record}");
    bruno.wraps_up_nothing(&record["interaction_id"]).await;
    bruno
        .console
        .expect_where("presence.changed", |f| f["to"]["mode"] == "outbound")
        .await;
    f.s.stop().await;
}

/// An agent on a call has no room for one it would dial: routing refuses to place it, the
/// console is told `dial_failed` (after its ack: the dial had been set up), and the dialled
/// call's interaction is failed, not left new.
async fn click_to_dial_without_room_is_refused_by_routing(db: Db) {
    let (f, _carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected { .. } = f.connect(&mut bruno).await;
    bruno.dial().await;
    let refused = bruno
        .console
        .expect_where("error", |f| f["code"] == "dial_failed")
        .await;
    let interaction = refused["interaction"].as_i64().expect("the dialled call");
    eventually("the refused call's interaction failed", || async {
        let (_, row) =
            f.s.get(&format!("/api/v1/interactions/{interaction}"), &f.sam)
                .await;
        (row["state"] == "failed").then_some(())
    })
    .await;
    f.s.stop().await;
}

/// A dialled call cannot be transferred before the agent's phone answered: the customer is not
/// called yet, so there is nobody to transfer. The console hears `not_connected`, nothing
/// changes, and once the phone answers the customer is called and the transfer goes through.
async fn click_to_dial_is_not_transferred_before_the_customer_is_called(db: Db) {
    let (f, mut carrier) = Floor::with_carrier(db, |_| {}).await;
    let mut bruno = f.agent("bruno", None).await;
    bruno.dial().await;
    let connected = bruno.console.expect("interaction.connected").await;
    let (interaction, queue) = (connected["interaction"].clone(), connected["queue"].clone());
    let invite = bruno.phone.request(Method::Invite).await;
    bruno.phone.respond(&invite, 180, "ring", false).await;
    let transfer = json!({
        "type": "interaction.transfer",
        "interaction": interaction,
        "to": { "target": "queue", "queue": queue },
    });
    let refused = bruno.console.command(transfer.clone()).await;
    let reply = refused.last().expect("reply");
    assert_eq!(reply["code"], "not_connected", "{refused:?}");
    let agent_leg = bruno.phone.answer(&invite).await;
    let outgoing = carrier.request(Method::Invite).await;
    let customer = carrier.answer(&outgoing).await;
    bruno
        .phone
        .rtp_reaches(agent_leg.remote_rtp, b"hello customer", &carrier)
        .await;
    bruno.console.ok(transfer).await;
    bruno.phone.take_bye().await;
    // Written by routing's journal soon after the reply.
    let id = interaction.as_i64().expect("id");
    let moved = eventually("the transfer's event", || async {
        let moved = f.events("routing.transferred", id).await;
        (!moved.is_empty()).then_some(moved)
    })
    .await;
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(carrier.bye(&customer).await, 200);
    f.s.stop().await;
}

/// Without an outbound trunk, click-to-dial is refused and nothing rings.
async fn click_to_dial_needs_an_outbound_trunk(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let refused = bruno
        .console
        .command(json!({ "type": "call.dial", "number": DIALLED }))
        .await;
    let reply = refused.last().expect("reply");
    assert_eq!(reply["code"], "dial_failed", "{reply}");
    f.s.stop().await;
}

/// Silent monitoring, whisper and barge over real UDP: caller and agent each play a tone
/// (450 Hz, 1,000 Hz), the supervisor's phone plays 2,000 Hz. Silent: the supervisor hears
/// both tones, nobody hears the supervisor. Whisper: the agent hears the supervisor, the
/// caller does not. The mode switches keep the supervisor's leg (no second INVITE); the
/// supervisor hanging up leaves the call running.
async fn supervisor_monitors_whispers_and_barges(db: Db) {
    // Whole cycles per 20 ms frame (see `Phone::play_tone`): a busy machine makes the mix drop
    // or skip frames, which must not cancel a tone out.
    const CALLER: f32 = 450.0;
    const AGENT: f32 = 1000.0;
    const SUPERVISOR: f32 = 2000.0;
    // The phones talk until the supervisor has hung up, then they are stopped. A minute of
    // frames outlasts that with room to spare: the monitoring below takes about 4 s, and up to
    // 7.5 s on a 2-core machine under heavy load.
    const TALK: u16 = 3_000;
    let f = Floor::new(db).await;
    let mut floor = Feed::connect(&f.s, &f.sam).await;
    let mut sam_phone = f.supervisor_phone().await;

    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        agent_leg,
    } = f.connect(&mut bruno).await;
    // The supervisors' feed shows the call: bruno busy with it, in progress in its queue.
    floor
        .until("bruno on the call", |frame| {
            agent_of(frame, bruno.id).is_some_and(|a| {
                a["presence"]["presence"] == "busy" && a["work"][0]["interaction"] == interaction
            })
        })
        .await;
    let caller_voice = caller.play_tone(leg.remote_rtp, CALLER, TALK);
    let agent_voice = bruno.phone.play_tone(agent_leg.remote_rtp, AGENT, TALK);

    // An agent may not monitor, nor may the team lead of another team; an unknown call is 404.
    let path = format!("/api/v1/calls/{interaction}/monitor");
    let bruno_token = f.s.demo_login("bruno").await;
    let admin = f.s.demo_login("ada").await;
    let hamburg =
        f.s.create("/api/v1/teams", &admin, json!({ "name": "Team Hamburg" }))
            .await;
    let (_, outsider) =
        f.s.demo_user(
            &admin,
            "tl-hamburg",
            json!({ "role": "team_lead", "team_id": hamburg }),
        )
        .await;
    for token in [&bruno_token, &outsider] {
        let (status, _) =
            f.s.call(
                reqwest::Method::PUT,
                &path,
                Some(token),
                Some(json!({ "mode": "silent" })),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::FORBIDDEN);
    }
    let (status, _) =
        f.s.call(
            reqwest::Method::PUT,
            "/api/v1/calls/999999/monitor",
            Some(&f.sam),
            Some(json!({ "mode": "silent" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);

    let monitor = |mode: &'static str| {
        f.s.call(
            reqwest::Method::PUT,
            &path,
            Some(&f.sam),
            Some(json!({ "mode": mode })),
        )
    };
    // Started and stopped before Sam's phone answers: while its CANCEL is unanswered, a new
    // start is refused (it would end with the old leg), not acknowledged and dropped.
    let (status, body) = monitor("silent").await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    let ringing = sam_phone.request(Method::Invite).await;
    sam_phone.respond(&ringing, 180, "ring", false).await;
    let (status, body) =
        f.s.call(reqwest::Method::DELETE, &path, Some(&f.sam), None)
            .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    assert_error(
        &monitor("silent").await,
        reqwest::StatusCode::CONFLICT,
        "monitor_ending",
    );
    sam_phone.cancelled(&ringing).await;

    let (status, body) = monitor("silent").await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT, "{body}");
    let invite = sam_phone.request(Method::Invite).await;
    let sam_leg = sam_phone.answer(&invite).await;
    let sam_voice = sam_phone.play_tone(sam_leg.remote_rtp, SUPERVISOR, TALK);

    // Silent: both tones reach the supervisor; the supervisor reaches nobody.
    let heard = sam_phone.hear(40).await;
    let heard = &heard[20 * 160..];
    assert!(
        tone_level(heard, CALLER) > 1000.0,
        "caller in the mix: {}",
        tone_level(heard, CALLER)
    );
    assert!(
        tone_level(heard, AGENT) > 1000.0,
        "agent in the mix: {}",
        tone_level(heard, AGENT)
    );
    caller.drain_rtp().await;
    bruno.phone.drain_rtp().await;
    let at_caller = caller.hear(25).await;
    let at_agent = bruno.phone.hear(25).await;
    assert!(
        tone_level(&at_caller, AGENT) > 1000.0,
        "the caller hears the agent"
    );
    assert!(
        tone_level(&at_caller, SUPERVISOR) < 300.0,
        "silent: the caller must not hear the supervisor"
    );
    assert!(
        tone_level(&at_agent, SUPERVISOR) < 300.0,
        "silent: the agent must not hear the supervisor"
    );

    // Whisper: the agent hears caller and supervisor, the caller only the agent.
    let (status, _) =
        f.s.call(
            reqwest::Method::PUT,
            &path,
            Some(&f.sam),
            Some(json!({ "mode": "whisper" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    // The 204 may come before the call's media takes the switch, and packets from before it
    // are still queued at the phone: the agent's audio counts from the first frame with the
    // supervisor in it.
    let supervisor_in = |frame: &[i16]| tone_level(frame, SUPERVISOR) > 1000.0;
    let at_agent = &bruno
        .phone
        .hear_from("the whisper", 25, supervisor_in)
        .await;
    let at_caller = caller.hear(45).await;
    let at_caller = &at_caller[20 * 160..];
    assert!(
        tone_level(at_agent, SUPERVISOR) > 1000.0,
        "whisper reaches the agent: {}",
        tone_level(at_agent, SUPERVISOR)
    );
    assert!(
        tone_level(at_agent, CALLER) > 1000.0,
        "the agent still hears the caller"
    );
    assert!(
        tone_level(at_caller, SUPERVISOR) < 300.0,
        "whisper must not reach the caller: {}",
        tone_level(at_caller, SUPERVISOR)
    );

    // Barge: the caller hears the supervisor too. Still the same supervisor leg.
    let (status, _) =
        f.s.call(
            reqwest::Method::PUT,
            &path,
            Some(&f.sam),
            Some(json!({ "mode": "barge" })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    // Likewise the caller's, from the first frame with the supervisor in it.
    let at_caller = &caller.hear_from("the barge", 25, supervisor_in).await;
    assert!(
        tone_level(at_caller, SUPERVISOR) > 1000.0,
        "barge reaches the caller: {}",
        tone_level(at_caller, SUPERVISOR)
    );
    assert!(
        tone_level(at_caller, AGENT) > 1000.0,
        "the caller still hears the agent"
    );

    // The supervisor hangs up: monitoring ends, the call goes on.
    assert_eq!(sam_phone.bye(&sam_leg).await, 200);
    sam_voice.abort();
    caller_voice.abort();
    agent_voice.abort();
    caller
        .rtp_reaches(leg.remote_rtp, b"still here", &bruno.phone)
        .await;
    f.caller_hangs_up(&mut caller, &leg, &mut bruno, interaction)
        .await;
    f.s.stop().await;
}

/// A call live when vacd dies (no graceful shutdown: its record was started, never ended) is
/// closed at the next start: record `failed` by `system`, interaction `failed`.
async fn calls_live_at_a_crash_are_closed_at_start(db: Db) {
    let f = Floor::new(db).await;
    let admin = f.s.demo_login("ada").await;
    let (_, queues) = f.s.get("/api/v1/queues?limit=100", &admin).await;
    let queue = queues["items"][0]["id"].as_i64().expect("a queue");
    let tenant =
        f.s.store()
            .tenant_by_name("demo")
            .await
            .expect("store")
            .expect("the demo tenant")
            .id;
    // What the call actor writes when a call starts, as if vacd died right after.
    let started =
        f.s.store()
            .start_call(&vacd::store::NewCall {
                tenant,
                mailbox: None,
                service_address: None,
                queue: Some(queue),
                call_id: "crashed@test".into(),
                trunk: "carrier".into(),
                caller: Some("+491701234567".into()),
                dialled: NUMBER.into(),
                dialled_by: None,
                language: None,
            })
            .await
            .expect("call recorded");
    let f = f.restart().await;
    let (_, records) =
        f.s.get(
            &format!(
                "/api/v1/call-records?interaction_id={}",
                started.interaction
            ),
            &f.sam,
        )
        .await;
    let record = &records["items"][0];
    assert_eq!(record["result"], "failed", "{records}");
    assert_eq!(record["hangup_by"], "system", "{records}");
    assert!(record["ended_at"].as_i64().is_some(), "{records}");
    let (_, interaction) =
        f.s.get(
            &format!("/api/v1/interactions/{}", started.interaction),
            &f.sam,
        )
        .await;
    assert_eq!(interaction["state"], "failed", "{interaction}");
    // The event log hears it too: the waiting call was abandoned (else the reports would
    // count it offered and never finished).
    let (_, events) =
        f.s.get(
            &format!(
                "/api/v1/events?kind=routing.abandoned&interaction_id={}",
                started.interaction
            ),
            &f.sam,
        )
        .await;
    assert_eq!(events["total"], 1, "{events}");
    f.s.stop().await;
}

/// The console ends a call: vacd hangs up both phones.
async fn console_ends_the_call(db: Db) {
    let f = Floor::new(db).await;
    let mut bruno = f.agent("bruno", None).await;
    let Connected {
        mut caller,
        leg,
        interaction,
        ..
    } = f.connect(&mut bruno).await;
    bruno
        .console
        .expect_where("interaction.connected", |f| f["interaction"] == interaction)
        .await;
    bruno
        .console
        .ok(json!({ "type": "interaction.end", "interaction": interaction }))
        .await;
    let bye = caller.take_bye().await;
    assert_eq!(
        message::call_id(&bye.headers).ok(),
        Some(leg.call_id.as_str())
    );
    bruno.phone.take_bye().await;
    let f = f.restart().await;
    let ended = f.ended_payload(interaction).await;
    assert_eq!(ended["hangup_by"], "agent", "{ended}");
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// sipp plays both phones with the scenarios in `loadtests/sip/`: the agent's phone
/// (`agent.xml`, registered by the test) answers, the caller (`caller.xml`) talks and hangs up.
/// sipp picks its own ports where the test need not know them (without `-p` and `-mp` it binds
/// the first free SIP and media ports itself, so no other socket can take one in between); the
/// agent's phone listens where the test registered it, a port the test holds until sipp starts.
async fn sipp_call_flow(db: Db) {
    let f = Floor::new(db).await;
    let phone = free_udp_port(SIPP_PHONE_IP);
    let phone_address = phone.local_addr().expect("address");
    let _bruno = f.agent("bruno", Some(phone_address)).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtests/sip");
    let server = f.s.sip_udp().to_string();
    drop(phone);
    let agent = sipp(
        "agent",
        &[
            "-sf",
            &format!("{dir}/agent.xml"),
            "-m",
            "1",
            "-i",
            SIPP_PHONE_IP,
            "-p",
            &phone_address.port().to_string(),
            &server,
        ],
    );
    let caller = sipp(
        "caller",
        &[
            "-sf",
            &format!("{dir}/caller.xml"),
            "-m",
            "1",
            "-s",
            NUMBER,
            "-i",
            TRUNK_IP,
            &server,
        ],
    );
    // Both at once: when one fails, the other's account is part of the story (an agent's
    // phone that gave up leaves the caller waiting for a BYE until its timeout).
    let (caller, agent) = tokio::join!(caller.finish(), agent.finish());
    assert!(
        caller.success && agent.success,
        "sipp failed:\n{}\n{}",
        caller.report,
        agent.report
    );
    let f = f.restart().await;
    let interaction = started_interaction(&f).await;
    let ended = f.ended_payload(interaction).await;
    assert_eq!(ended["result"], "connected", "{ended}");
    f.s.stop().await;
}

/// Where sipp's agent phone listens: an address of its own (nothing else in the tests binds
/// it), so the port it was given cannot be taken by another test's socket while sipp starts.
const SIPP_PHONE_IP: &str = "127.0.0.4";

/// A UDP socket on a port of `ip` that the kernel found free; holding it keeps the port from
/// being given to anyone else until it is dropped.
fn free_udp_port(ip: &str) -> std::net::UdpSocket {
    std::net::UdpSocket::bind((ip, 0)).expect("a free UDP port")
}

/// A running sipp; it traces the messages it sent and received, and the unexpected ones, into
/// a directory of its own.
struct Sipp {
    name: &'static str,
    child: tokio::process::Child,
    traces: tempfile::TempDir,
}

/// How a sipp ended: whether it succeeded, and everything it printed and traced.
struct SippEnd {
    success: bool,
    report: String,
}

fn sipp(name: &'static str, args: &[&str]) -> Sipp {
    let traces = tempfile::tempdir().expect("temporary directory");
    let file = |kind: &str| traces.path().join(kind).display().to_string();
    let child = tokio::process::Command::new("sipp")
        .args(args)
        .args(["-timeout", "40s", "-timeout_error", "-nostdin"])
        .args(["-trace_msg", "-message_file", &file("messages")])
        .args(["-trace_err", "-error_file", &file("errors")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp runs (Debian package sip-tester; scripts/test.sh installs it)");
    Sipp {
        name,
        child,
        traces,
    }
}

impl Sipp {
    /// Waits for sipp to end (it gives up by itself after its `-timeout`).
    async fn finish(self) -> SippEnd {
        let output = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.child.wait_with_output(),
        )
        .await
        .expect("sipp finishes within 60 s")
        .expect("sipp output");
        let trace =
            |kind: &str| std::fs::read_to_string(self.traces.path().join(kind)).unwrap_or_default();
        SippEnd {
            success: output.status.success(),
            report: format!(
                "--- sipp {name}: {status}\n{stdout}\n{stderr}\n--- {name}'s messages:\n{messages}\n--- {name}'s unexpected messages:\n{errors}",
                name = self.name,
                status = output.status,
                stdout = String::from_utf8_lossy(&output.stdout),
                stderr = String::from_utf8_lossy(&output.stderr),
                messages = trace("messages"),
                errors = trace("errors"),
            ),
        }
    }
}

on_both_backends!(
    call_reaches_an_agent_and_rtp_crosses_the_bridge,
    a_burst_of_calls_beyond_capacity_gets_503,
    agent_hangs_up,
    caller_abandons_while_queued,
    a_waiting_caller_keeps_the_music,
    a_queue_announces_between_its_music,
    rejected_call_goes_to_the_next_agent,
    an_answer_crossing_the_cancel_frees_the_call,
    a_late_answer_hangs_up_its_own_leg_not_the_new_ring,
    an_agent_sdp_naming_a_host_is_bridged_by_its_first_packet,
    a_merged_invite_is_refused_and_the_call_goes_on,
    a_second_answer_of_a_forked_invite_is_hung_up,
    an_external_number_that_never_answers_is_given_up,
    a_reinvite_without_an_offer_gets_one,
    an_answer_without_contact_counts_as_a_refusal,
    unanswered_call_is_rerouted,
    a_console_reject_stops_the_ringing_phone,
    a_routing_restart_stops_every_phone_ringing_for_a_waiting_call,
    console_ends_the_call,
    agent_holds_and_resumes,
    a_queue_plays_its_own_greeting,
    a_caller_reaches_an_agent_who_speaks_their_language,
    a_repeated_answer_gets_the_same_ack,
    console_holds_and_resumes,
    a_reconnecting_console_learns_the_hold,
    console_accept_then_phone_answers,
    console_accept_then_phone_declines,
    console_transfers_to_another_agent,
    a_transfer_ends_a_team_leads_listening,
    call_over_tcp,
    storm_does_not_stop_a_concurrent_call,
    phone_refers_to_another_agent,
    phone_refers_and_hangs_up_at_once,
    phone_refers_to_an_absent_agent_and_hangs_up,
    phone_refers_to_an_external_number,
    console_transfers_to_an_external_number,
    click_to_dial,
    click_to_dial_declined_by_the_agents_phone_ends,
    click_to_dial_in_a_law_is_monitored,
    click_to_dial_needs_an_outbound_trunk,
    click_to_dial_is_not_transferred_before_the_customer_is_called,
    click_to_dial_without_room_is_refused_by_routing,
    supervisor_monitors_whispers_and_barges,
    calls_live_at_a_crash_are_closed_at_start,
    sipp_call_flow,
);
