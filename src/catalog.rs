//! The administered data model: every tenant-owned table the admin API exposes, its columns,
//! their types and limits, what they reference, and which role may read, write and delete it.
//!
//! One description drives three things so they cannot drift apart: request validation
//! (`api::resources`), the generic SQL of `store::crud`, and the OpenAPI document
//! (`api::openapi`). Start with [`RESOURCES`]; the tables themselves are created by the
//! migrations under `migrations/`.

use serde::{Deserialize, Serialize};

/// A user's role. Ordered: each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    TeamLead,
    Supervisor,
    Admin,
}

impl Role {
    pub const NAMES: &'static [&'static str] = &["agent", "team_lead", "supervisor", "admin"];

    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "agent" => Some(Role::Agent),
            "team_lead" => Some(Role::TeamLead),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        Role::NAMES[self as usize]
    }
}

/// The value type of a column, with its limits.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Int {
        min: i64,
        max: i64,
    },
    Text {
        max_len: usize,
    },
    OneOf(&'static [&'static str]),
    /// An ISO 639-1 language code: two lowercase ASCII letters.
    Language,
    /// Opening hours such as `Mo-Fr 08:00-18:00` (see `channels::sla::BusinessHours`).
    Hours,
    /// The name of a WAV file in the sounds directory (`sip.sounds`): 1–100 characters of
    /// `[A-Za-z0-9._-]`, ending in `.wav`, not starting with a dot — no path leads out.
    SoundFile,
    /// An id of a row in the named table of the same tenant.
    Ref(&'static str),
    /// Written as a plain password, stored as an argon2 hash in `password_hash`, never read.
    Password,
    /// A SIP username (the user part of a phone's address-of-record): 1–64 characters of
    /// `[A-Za-z0-9._-]`, unique across tenants.
    SipUser,
    /// Written as a plain SIP password together with the `SipUser` column of the same row;
    /// stored as the digest HA1 values in `sip_ha1` (see `crate::sip::credentials`), never read.
    SipPassword,
    /// A credential vacd itself must use (a mail account's password): stored as written, at
    /// most `max_len` characters, never read back through the API.
    Secret {
        max_len: usize,
    },
    /// Unix milliseconds set by the server on insert; read-only.
    CreatedAt,
    /// An integer maintained by routing (queue order, assignee, …); read-only, may be null.
    Derived,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Must be given on create (columns with a default are not required).
    pub required: bool,
    /// Value used on create when the field is absent.
    pub default: Option<DefaultValue>,
    /// May be changed after create.
    pub mutable: bool,
    /// Usable as a `?name=value` filter on list.
    pub filter: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum DefaultValue {
    Int(i64),
    Text(&'static str),
}

impl Column {
    /// The SQL column this field is stored in.
    pub fn sql_name(&self) -> &'static str {
        match self.kind {
            Kind::Password => "password_hash",
            Kind::SipPassword => "sip_ha1",
            _ => self.name,
        }
    }

    pub fn readable(&self) -> bool {
        !matches!(
            self.kind,
            Kind::Password | Kind::SipPassword | Kind::Secret { .. }
        )
    }

    pub fn writable(&self) -> bool {
        !matches!(self.kind, Kind::CreatedAt | Kind::Derived)
    }

    pub fn is_int(&self) -> bool {
        matches!(
            self.kind,
            Kind::Int { .. } | Kind::Ref(_) | Kind::CreatedAt | Kind::Derived
        )
    }
}

/// A tenant-owned table exposed at `/api/v1/{path}`.
#[derive(Debug)]
pub struct Resource {
    pub path: &'static str,
    pub table: &'static str,
    /// Schema name in the OpenAPI document.
    pub schema: &'static str,
    pub columns: &'static [Column],
    pub read: Role,
    /// `None`: read-only through the API (the event log).
    pub write: Option<Role>,
    pub delete: Option<Role>,
}

impl Resource {
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: true,
        default: None,
        mutable: true,
        filter: false,
    }
}
/// The priority an interaction waits at unless a routing rule (or whoever creates it through
/// the API) sets one: the middle of 0–100, the same for every channel, so that an agent who
/// frees up takes work by queue priority, then waiting time.
pub const DEFAULT_PRIORITY: i32 = 50;

/// Deepest parent chain (mailboxes in mailboxes): deeper ones are refused, and walks up a
/// chain stop there, so a corrupt table cannot make them loop.
pub const MAX_HIERARCHY_DEPTH: usize = 32;

const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: false,
        default: None,
        mutable: true,
        filter: false,
    }
}
const fn int_default(name: &'static str, min: i64, max: i64, default: i64) -> Column {
    Column {
        name,
        kind: Kind::Int { min, max },
        required: false,
        default: Some(DefaultValue::Int(default)),
        mutable: true,
        filter: false,
    }
}
const fn derived(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Derived,
        required: false,
        default: None,
        mutable: false,
        filter: false,
    }
}
const fn created_at() -> Column {
    Column {
        name: "created_at",
        kind: Kind::CreatedAt,
        required: false,
        default: None,
        mutable: false,
        filter: false,
    }
}
/// A reference to the parent row, fixed at create and usable as a filter.
const fn parent(name: &'static str, table: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Ref(table),
        required: true,
        default: None,
        mutable: false,
        filter: true,
    }
}
const fn filter(mut c: Column) -> Column {
    c.filter = true;
    c
}
const fn text(max_len: usize) -> Kind {
    Kind::Text { max_len }
}

pub const CHANNELS: &[&str] = &["call", "chat", "email", "fax", "letter", "sms"];
/// The states an interaction can be created in through the API: `new` (routing takes it), or
/// finished (a record of past work). The others are routing's to set: a row created `queued`
/// would be in no queue routing knows, and could never be deleted.
pub const CREATED_INTERACTION_STATES: &[&str] = &["new", "done", "abandoned", "failed"];
pub const STRATEGIES: &[&str] = &[
    "longest_idle",
    "least_occupied",
    "best_skill",
    "round_robin",
    "ring_all",
];
/// How an agent mixes calls, chats and tickets (`vacd_actors::Blending`, same names).
pub const BLENDINGS: &[&str] = &["call_blocks_others", "exclusive", "independent"];
/// What a missed offer does to the agent: `not_ready` with the tenant's reason, or `stay_ready`.
pub const MISSED_OFFERS: &[&str] = &["not_ready", "stay_ready"];
pub const ADDRESS_KINDS: &[&str] = &["phone", "email", "widget", "sms", "fax", "letter"];
pub const IDENTITY_KINDS: &[&str] = &["phone", "email", "visitor"];

pub static MAILBOXES: Resource = Resource {
    path: "mailboxes",
    table: "mailboxes",
    schema: "Mailbox",
    columns: &[
        req("name", text(100)),
        filter(opt("parent_id", Kind::Ref("mailboxes"))),
        opt("language", Kind::Language),
        opt(
            "sla_seconds",
            Kind::Int {
                min: 1,
                max: 365 * 24 * 3600,
            },
        ),
        opt("business_hours", Kind::Hours),
        opt("signature", text(2000)),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static SKILLS: Resource = Resource {
    path: "skills",
    table: "skills",
    schema: "Skill",
    columns: &[
        filter(req("name", text(64))),
        Column {
            default: Some(DefaultValue::Text("topic")),
            required: false,
            ..filter(req("kind", Kind::OneOf(&["topic", "language"])))
        },
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static QUEUES: Resource = Resource {
    path: "queues",
    table: "queues",
    schema: "Queue",
    columns: &[
        filter(req("name", text(100))),
        filter(opt("mailbox_id", Kind::Ref("mailboxes"))),
        int_default("priority", 0, 100, 50),
        Column {
            default: Some(DefaultValue::Text("longest_idle")),
            required: false,
            ..req("strategy", Kind::OneOf(STRATEGIES))
        },
        int_default("sla_percent", 1, 100, 80),
        int_default("sla_seconds", 1, 30 * 24 * 3600, 20),
        int_default("offer_timeout_seconds", 1, 600, 20),
        int_default("wrapup_seconds", 0, 3600, 30),
        opt("greeting", Kind::SoundFile),
        opt("music", Kind::SoundFile),
        opt("announcement", Kind::SoundFile),
        opt("announce_every_seconds", Kind::Int { min: 5, max: 3600 }),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static QUEUE_SKILLS: Resource = Resource {
    path: "queue-skills",
    table: "queue_skills",
    schema: "QueueSkill",
    columns: &[
        parent("queue_id", "queues"),
        filter(Column {
            mutable: false,
            ..req("skill_id", Kind::Ref("skills"))
        }),
        int_default("min_level", 1, 10, 1),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub const ESCALATION_ACTIONS: &[&str] = &[
    "lower_skill_levels",
    "drop_skills",
    "add_overflow_queue",
    "raise_priority",
];

/// Escalation steps of a queue: after `after_seconds` of waiting, do `action` (`amount` levels
/// or priority points; `overflow_queue_id` for `add_overflow_queue`).
pub static QUEUE_ESCALATIONS: Resource = Resource {
    path: "queue-escalations",
    table: "queue_escalations",
    schema: "QueueEscalation",
    columns: &[
        parent("queue_id", "queues"),
        req(
            "after_seconds",
            Kind::Int {
                min: 1,
                max: 7 * 24 * 3600,
            },
        ),
        req("action", Kind::OneOf(ESCALATION_ACTIONS)),
        opt("amount", Kind::Int { min: 1, max: 100 }),
        opt("overflow_queue_id", Kind::Ref("queues")),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static TEAMS: Resource = Resource {
    path: "teams",
    table: "teams",
    schema: "Team",
    columns: &[req("name", text(100))],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static USERS: Resource = Resource {
    path: "users",
    table: "users",
    schema: "User",
    columns: &[
        filter(Column {
            mutable: false,
            ..req("username", text(64))
        }),
        req("display_name", text(100)),
        filter(Column {
            default: Some(DefaultValue::Text("agent")),
            required: false,
            ..req("role", Kind::OneOf(Role::NAMES))
        }),
        req("password", Kind::Password),
        filter(opt("team_id", Kind::Ref("teams"))),
        int_default("capacity_calls", 0, 1, 1),
        int_default("capacity_chats", 0, 10, 3),
        int_default("capacity_tickets", 0, 50, 5),
        // NULL: the tenant's blending (`GET /api/v1/tenants/{id}`).
        opt("blending", Kind::OneOf(BLENDINGS)),
        // The agent's phone: REGISTERs as `sip:<sip_username>@…` with digest auth.
        filter(opt("sip_username", Kind::SipUser)),
        opt("sip_password", Kind::SipPassword),
        created_at(),
    ],
    read: Role::TeamLead,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static AGENT_SKILLS: Resource = Resource {
    path: "agent-skills",
    table: "agent_skills",
    schema: "AgentSkill",
    columns: &[
        parent("user_id", "users"),
        filter(Column {
            mutable: false,
            ..req("skill_id", Kind::Ref("skills"))
        }),
        req("level", Kind::Int { min: 1, max: 10 }),
    ],
    read: Role::TeamLead,
    write: Some(Role::Supervisor),
    delete: Some(Role::Supervisor),
};

pub static QUEUE_MEMBERS: Resource = Resource {
    path: "queue-members",
    table: "queue_members",
    schema: "QueueMember",
    columns: &[
        parent("queue_id", "queues"),
        filter(Column {
            mutable: false,
            ..req("user_id", Kind::Ref("users"))
        }),
    ],
    read: Role::Agent,
    write: Some(Role::Supervisor),
    delete: Some(Role::Supervisor),
};

pub static SERVICE_ADDRESSES: Resource = Resource {
    path: "service-addresses",
    table: "service_addresses",
    schema: "ServiceAddress",
    columns: &[
        filter(req("kind", Kind::OneOf(ADDRESS_KINDS))),
        filter(req("address", text(200))),
        filter(req("mailbox_id", Kind::Ref("mailboxes"))),
        opt("queue_id", Kind::Ref("queues")),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub static CUSTOMERS: Resource = Resource {
    path: "customers",
    table: "customers",
    schema: "Customer",
    columns: &[
        req("name", text(200)),
        opt("language", Kind::Language),
        opt("notes", text(10_000)),
        created_at(),
    ],
    read: Role::Agent,
    write: Some(Role::Agent),
    delete: Some(Role::Admin),
};

pub static CUSTOMER_IDENTITIES: Resource = Resource {
    path: "customer-identities",
    table: "customer_identities",
    schema: "CustomerIdentity",
    columns: &[
        parent("customer_id", "customers"),
        filter(req("kind", Kind::OneOf(IDENTITY_KINDS))),
        filter(req("value", text(200))),
    ],
    read: Role::Agent,
    write: Some(Role::Agent),
    delete: Some(Role::Admin),
};

pub static INTERACTIONS: Resource = Resource {
    path: "interactions",
    table: "interactions",
    schema: "Interaction",
    columns: &[
        filter(Column {
            mutable: false,
            ..req("channel", Kind::OneOf(CHANNELS))
        }),
        filter(opt("mailbox_id", Kind::Ref("mailboxes"))),
        // Routing owns where an interaction is and how it stands once created (move it with a
        // transfer from the console), so the API sets queue and state only at creation — and
        // language and priority, which routing reads only then: changed in the table alone they
        // would reorder the queue at the next restart, not now.
        filter(Column {
            mutable: false,
            ..opt("queue_id", Kind::Ref("queues"))
        }),
        filter(opt("customer_id", Kind::Ref("customers"))),
        Column {
            mutable: false,
            ..opt("language", Kind::Language)
        },
        Column {
            mutable: false,
            ..int_default("priority", 0, 100, DEFAULT_PRIORITY as i64)
        },
        filter(Column {
            default: Some(DefaultValue::Text("new")),
            required: false,
            mutable: false,
            ..req("state", Kind::OneOf(CREATED_INTERACTION_STATES))
        }),
        opt("subject", text(500)),
        opt(
            "sla_deadline",
            Kind::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        filter(derived("agent_id")),
        derived("queue_order"),
        derived("queued_at"),
        created_at(),
    ],
    read: Role::Agent,
    write: Some(Role::Agent),
    delete: Some(Role::Admin),
};

pub static MESSAGES: Resource = Resource {
    path: "messages",
    table: "messages",
    schema: "Message",
    columns: &[
        parent("interaction_id", "interactions"),
        filter(Column {
            mutable: false,
            ..req("direction", Kind::OneOf(&["in", "out", "internal"]))
        }),
        // A message is a record of what was said: written once, never edited (an admin may
        // delete it).
        Column {
            mutable: false,
            ..req("author", text(200))
        },
        Column {
            mutable: false,
            ..req("body", text(1_000_000))
        },
        created_at(),
    ],
    read: Role::Agent,
    write: Some(Role::Agent),
    delete: Some(Role::Admin),
};

pub static ATTACHMENTS: Resource = Resource {
    path: "attachments",
    table: "attachments",
    schema: "Attachment",
    columns: &[
        parent("message_id", "messages"),
        // What was sent or received under which name and type is a record, like the message.
        Column {
            mutable: false,
            ..req("filename", text(255))
        },
        Column {
            mutable: false,
            ..req("content_type", text(127))
        },
        Column {
            mutable: false,
            ..int_default("size_bytes", 0, i64::MAX, 0)
        },
        created_at(),
    ],
    read: Role::Agent,
    write: Some(Role::Agent),
    delete: Some(Role::Admin),
};

pub static EVENTS: Resource = Resource {
    path: "events",
    table: "events",
    schema: "Event",
    columns: &[
        filter(req("kind", text(64))),
        req(
            "at",
            Kind::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        filter(opt(
            "interaction_id",
            Kind::Int {
                min: 1,
                max: i64::MAX,
            },
        )),
        filter(opt(
            "agent_id",
            Kind::Int {
                min: 1,
                max: i64::MAX,
            },
        )),
        filter(opt(
            "queue_id",
            Kind::Int {
                min: 1,
                max: i64::MAX,
            },
        )),
        req("payload", text(1_000_000)),
    ],
    read: Role::Supervisor,
    write: None,
    delete: None,
};

/// Call detail records, written by the call actors (read-only here).
pub static CALL_RECORDS: Resource = Resource {
    path: "call-records",
    table: "call_records",
    schema: "CallRecord",
    columns: &[
        filter(req("interaction_id", Kind::Ref("interactions"))),
        req("call_id", text(1_000)),
        filter(req("trunk", text(200))),
        filter(req("caller", text(200))),
        filter(req("dialled", text(200))),
        filter(opt("agent_id", Kind::Ref("users"))),
        req(
            "started_at",
            Kind::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        opt(
            "connected_at",
            Kind::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        opt(
            "ended_at",
            Kind::Int {
                min: 0,
                max: i64::MAX,
            },
        ),
        filter(opt("result", Kind::OneOf(CALL_RESULTS))),
        opt("hangup_by", Kind::OneOf(HANGUP_PARTIES)),
        filter(req("direction", Kind::OneOf(CALL_DIRECTIONS))),
    ],
    read: Role::Supervisor,
    write: None,
    delete: None,
};

pub const CALL_RESULTS: &[&str] = &["connected", "abandoned", "failed"];
pub const CALL_DIRECTIONS: &[&str] = &["inbound", "outbound"];
pub const HANGUP_PARTIES: &[&str] = &["caller", "agent", "remote", "system"];

pub static TEMPLATES: Resource = Resource {
    path: "templates",
    table: "templates",
    schema: "Template",
    columns: &[
        req("name", text(100)),
        filter(opt("mailbox_id", Kind::Ref("mailboxes"))),
        filter(req("language", Kind::Language)),
        filter(Column {
            default: Some(DefaultValue::Text("email")),
            required: false,
            ..req("channel", Kind::OneOf(CHANNELS))
        }),
        opt("subject", text(500)),
        req("body", text(100_000)),
    ],
    read: Role::Agent,
    write: Some(Role::TeamLead),
    delete: Some(Role::TeamLead),
};

pub static TEXT_MODULES: Resource = Resource {
    path: "text-modules",
    table: "text_modules",
    schema: "TextModule",
    columns: &[
        req("name", text(100)),
        filter(req("language", Kind::Language)),
        opt("shortcut", text(32)),
        req("body", text(20_000)),
    ],
    read: Role::Agent,
    write: Some(Role::TeamLead),
    delete: Some(Role::TeamLead),
};

/// How a chat widget (a service address of kind `widget`) looks and what its pre-chat form
/// asks; a widget without a row gets defaults (see `store::chat`).
pub static CHAT_WIDGETS: Resource = Resource {
    path: "chat-widgets",
    table: "chat_widgets",
    schema: "ChatWidget",
    columns: &[
        filter(req("service_address_id", Kind::Ref("service_addresses"))),
        req("title", text(100)),
        req("color", text(32)),
        opt("logo_url", text(500)),
        req("welcome", text(500)),
        req("offline_text", text(500)),
        req("prechat", text(100)),
        opt("topics", text(500)),
    ],
    read: Role::Agent,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

pub const MAIL_PROTOCOLS: &[&str] = &["imap", "pop3"];
pub const MAIL_SECURITY: &[&str] = &["tls", "starttls", "plain"];

/// The mail account of an email service address (see `channels::email`); its passwords are
/// never read back.
pub static MAIL_ACCOUNTS: Resource = Resource {
    path: "mail-accounts",
    table: "mail_accounts",
    schema: "MailAccount",
    columns: &[
        filter(req("service_address_id", Kind::Ref("service_addresses"))),
        req("protocol", Kind::OneOf(MAIL_PROTOCOLS)),
        req("host", text(255)),
        req("port", Kind::Int { min: 1, max: 65535 }),
        req("security", Kind::OneOf(MAIL_SECURITY)),
        req("username", text(255)),
        req("password", Kind::Secret { max_len: 255 }),
        Column {
            default: Some(DefaultValue::Text("INBOX")),
            required: false,
            ..req("folder", text(255))
        },
        Column {
            default: Some(DefaultValue::Text("delete")),
            required: false,
            ..req("after_fetch", Kind::OneOf(&["delete", "flag"]))
        },
        opt("smtp_host", text(255)),
        opt("smtp_port", Kind::Int { min: 1, max: 65535 }),
        opt("smtp_security", Kind::OneOf(MAIL_SECURITY)),
        opt("smtp_username", text(255)),
        opt("smtp_password", Kind::Secret { max_len: 255 }),
        opt("auto_reply_template", text(100)),
        int_default("enabled", 0, 1, 1),
    ],
    read: Role::Admin,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

/// Classification (`crate::classify`): the first enabled rule by `position` whose conditions
/// all hold sends a new interaction to its queue.
pub static ROUTING_RULES: Resource = Resource {
    path: "routing-rules",
    table: "routing_rules",
    schema: "RoutingRule",
    columns: &[
        req("name", text(100)),
        int_default("position", 0, 10_000, 100),
        int_default("enabled", 0, 1, 1),
        filter(opt("channel", Kind::OneOf(CHANNELS))),
        filter(opt("service_address_id", Kind::Ref("service_addresses"))),
        opt("keywords", text(500)),
        opt("language", Kind::Language),
        opt("customer_id", Kind::Ref("customers")),
        opt("hours", Kind::Hours),
        int_default("outside_hours", 0, 1, 0),
        filter(req("queue_id", Kind::Ref("queues"))),
        opt("priority", Kind::Int { min: 0, max: 100 }),
    ],
    read: Role::Supervisor,
    write: Some(Role::Admin),
    delete: Some(Role::Admin),
};

/// Every tenant-owned resource of the admin API, in the order the OpenAPI document lists them.
pub static RESOURCES: &[&Resource] = &[
    &MAILBOXES,
    &SKILLS,
    &QUEUES,
    &QUEUE_SKILLS,
    &QUEUE_ESCALATIONS,
    &TEAMS,
    &USERS,
    &AGENT_SKILLS,
    &QUEUE_MEMBERS,
    &SERVICE_ADDRESSES,
    &CUSTOMERS,
    &CUSTOMER_IDENTITIES,
    &INTERACTIONS,
    &MESSAGES,
    &ATTACHMENTS,
    &EVENTS,
    &CALL_RECORDS,
    &TEMPLATES,
    &TEXT_MODULES,
    &CHAT_WIDGETS,
    &MAIL_ACCOUNTS,
    &ROUTING_RULES,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_known_tables() {
        let tables: Vec<_> = RESOURCES.iter().map(|r| r.table).collect();
        for r in RESOURCES {
            for c in r.columns {
                if let Kind::Ref(t) = c.kind {
                    assert!(
                        tables.contains(&t),
                        "{}.{} references unknown {t}",
                        r.table,
                        c.name
                    );
                }
                assert!(
                    !(c.required && c.default.is_some()),
                    "{}.{}",
                    r.table,
                    c.name
                );
            }
        }
    }

    #[test]
    fn blendings_are_the_engines() {
        for name in BLENDINGS {
            let parsed = serde_json::from_value::<vacd_actors::Blending>(serde_json::json!(name));
            assert!(parsed.is_ok(), "{name}");
        }
    }

    #[test]
    fn roles_round_trip() {
        for name in Role::NAMES {
            assert_eq!(Role::parse(name).map(Role::as_str), Some(*name));
        }
        assert!(Role::Admin > Role::Supervisor && Role::Supervisor > Role::TeamLead);
    }
}
