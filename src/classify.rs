//! Classification: which queue a new interaction waits in, by the tenant's routing rules
//! (`/api/v1/routing-rules`). A rule's conditions — channel, service address, keywords in the
//! subject or text, language, customer, time of day — must all hold (an unset one always
//! does); the first rule by `position` (then id) whose conditions hold gives the queue, and a
//! priority if it sets one. Without a matching rule the service address's queue stands. No I/O:
//! the store reads the rules and the facts and writes the outcome (see `store::rules`).

use jiff::tz::TimeZone;

use crate::channels::sla::BusinessHours;

/// One enabled rule, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: i64,
    pub channel: Option<String>,
    pub service_address: Option<i64>,
    /// Lowercase; any one found in the subject or text is enough.
    pub keywords: Vec<String>,
    pub language: Option<String>,
    pub customer: Option<i64>,
    pub hours: Option<Hours>,
    pub queue: i64,
    pub priority: Option<i32>,
}

/// A rule's time-of-day condition: inside `hours` on the clock of `zone` (the tenant's), or
/// outside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    pub hours: BusinessHours,
    pub zone: TimeZone,
    pub outside: bool,
}

impl Rule {
    /// `keywords` as stored: separated by commas, blanks around them ignored.
    pub fn keywords(text: &str) -> Vec<String> {
        text.split(',')
            .map(|k| k.trim().to_lowercase())
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// Whether every condition holds; `text` is `facts.text` in lowercase.
    fn holds(&self, facts: &Facts, text: &str) -> bool {
        let some_is = |condition: Option<&str>, fact: Option<&str>| {
            condition.is_none_or(|c| fact.is_some_and(|f| f == c))
        };
        some_is(self.channel.as_deref(), Some(facts.channel))
            && self
                .service_address
                .is_none_or(|a| facts.service_address == Some(a))
            && self.customer.is_none_or(|c| facts.customer == Some(c))
            && some_is(self.language.as_deref(), facts.language)
            && self
                .hours
                .as_ref()
                .is_none_or(|h| h.hours.contains(facts.at, &h.zone) != h.outside)
            && (self.keywords.is_empty() || self.keywords.iter().any(|k| text.contains(k.as_str())))
    }
}

/// What is known of a new interaction when it is classified.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub channel: &'a str,
    pub service_address: Option<i64>,
    /// Subject and text (or a chat's topic); empty for a call.
    pub text: &'a str,
    pub language: Option<&'a str>,
    pub customer: Option<i64>,
    /// Unix milliseconds.
    pub at: i64,
}

/// The queue (and priority) the first matching rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub rule: i64,
    pub queue: i64,
    pub priority: Option<i32>,
}

/// The first of `rules` (in their order) whose conditions hold for `facts`.
pub fn classify(rules: &[Rule], facts: &Facts) -> Option<Decision> {
    // Lowercased once (a mail's whole text), and only if a rule looks for keywords.
    let text = if rules.iter().any(|r| !r.keywords.is_empty()) {
        facts.text.to_lowercase()
    } else {
        String::new()
    };
    rules
        .iter()
        .find(|r| r.holds(facts, &text))
        .map(|r| Decision {
            rule: r.id,
            queue: r.queue,
            priority: r.priority,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 (a Monday) 10:00 UTC.
    const MONDAY_10: i64 = 1_795_996_800_000 + 10 * 3_600_000;

    fn rule(id: i64, queue: i64) -> Rule {
        Rule {
            id,
            channel: None,
            service_address: None,
            keywords: Vec::new(),
            language: None,
            customer: None,
            hours: None,
            queue,
            priority: None,
        }
    }

    fn facts() -> Facts<'static> {
        Facts {
            channel: "email",
            service_address: Some(7),
            text: "Subject: Invoice 4711\nPlease cancel my CONTRACT.",
            language: Some("de"),
            customer: Some(42),
            at: MONDAY_10,
        }
    }

    #[test]
    fn no_rules_no_decision() {
        assert_eq!(classify(&[], &facts()), None);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let rules = [
            Rule {
                channel: Some("call".into()),
                ..rule(1, 10)
            },
            Rule {
                priority: Some(90),
                ..rule(2, 20)
            },
            rule(3, 30),
        ];
        let decision = classify(&rules, &facts());
        assert_eq!(
            decision,
            Some(Decision {
                rule: 2,
                queue: 20,
                priority: Some(90)
            })
        );
    }

    #[test]
    fn every_condition_must_hold() {
        let base = facts();
        let cases: Vec<(Rule, bool)> = vec![
            (
                Rule {
                    channel: Some("email".into()),
                    ..rule(1, 1)
                },
                true,
            ),
            (
                Rule {
                    service_address: Some(8),
                    ..rule(1, 1)
                },
                false,
            ),
            (
                Rule {
                    customer: Some(42),
                    language: Some("de".into()),
                    ..rule(1, 1)
                },
                true,
            ),
            (
                Rule {
                    customer: Some(42),
                    language: Some("en".into()),
                    ..rule(1, 1)
                },
                false,
            ),
            (
                Rule {
                    keywords: Rule::keywords(" kündigen , Contract "),
                    ..rule(1, 1)
                },
                true,
            ),
            (
                Rule {
                    keywords: Rule::keywords("refund"),
                    ..rule(1, 1)
                },
                false,
            ),
        ];
        for (r, matches) in cases {
            assert_eq!(
                classify(std::slice::from_ref(&r), &base).is_some(),
                matches,
                "{r:?}"
            );
        }
    }

    #[test]
    fn an_unknown_fact_fails_a_condition_on_it() {
        let anonymous = Facts {
            customer: None,
            language: None,
            service_address: None,
            ..facts()
        };
        for r in [
            Rule {
                customer: Some(42),
                ..rule(1, 1)
            },
            Rule {
                language: Some("de".into()),
                ..rule(1, 1)
            },
            Rule {
                service_address: Some(7),
                ..rule(1, 1)
            },
        ] {
            assert_eq!(
                classify(std::slice::from_ref(&r), &anonymous),
                None,
                "{r:?}"
            );
        }
    }

    #[test]
    fn time_of_day_inside_or_outside_the_hours() {
        let office = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("hours");
        let office_in = |zone: TimeZone| {
            let during = Rule {
                hours: Some(Hours {
                    hours: office,
                    zone: zone.clone(),
                    outside: false,
                }),
                ..rule(1, 1)
            };
            let after = Rule {
                hours: Some(Hours {
                    hours: office,
                    zone,
                    outside: true,
                }),
                ..rule(2, 2)
            };
            [during, after]
        };
        let rules = office_in(TimeZone::UTC);
        let queue_at = |at: i64| classify(&rules, &Facts { at, ..facts() }).map(|d| d.queue);
        assert_eq!(queue_at(MONDAY_10), Some(1));
        assert_eq!(queue_at(MONDAY_10 + 9 * 3_600_000), Some(2), "Monday 19:00");
        assert_eq!(queue_at(MONDAY_10 + 5 * 86_400_000), Some(2), "Saturday");
        // Monday 10:00 UTC is 19:00 in Tokyo: after hours there.
        let tokyo = crate::channels::sla::time_zone("Asia/Tokyo").expect("Tokyo");
        let rules = office_in(tokyo);
        let at_monday_10 = classify(
            &rules,
            &Facts {
                at: MONDAY_10,
                ..facts()
            },
        );
        assert_eq!(at_monday_10.map(|d| d.queue), Some(2));
    }
}
