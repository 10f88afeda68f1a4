//! Skills and languages: what agents have, what interactions need, and how escalation relaxes
//! the need.
//!
//! Skill names and ISO 639-1 language codes are interned to [`SkillId`]s by the caller; a level is
//! 1–10 ([`SkillLevel`]). An agent meets an interaction when it holds every needed skill at the
//! needed level or higher, and the interaction's language at any level. The engine keeps both
//! sides as sorted vectors ([`SkillSet`], [`Need`]) so that a check is one merge walk.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::ids::SkillId;

/// A skill level, 1 (basic) to 10 (expert).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct SkillLevel(u8);

impl SkillLevel {
    /// The lowest level.
    pub const MIN: SkillLevel = SkillLevel(1);
    /// The highest level.
    pub const MAX: SkillLevel = SkillLevel(10);

    /// A level, if `level` is within 1–10.
    pub fn new(level: u8) -> Option<SkillLevel> {
        (Self::MIN.0..=Self::MAX.0)
            .contains(&level)
            .then_some(SkillLevel(level))
    }

    /// The level as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// The error of a skill level outside 1–10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("skill level {0} is outside 1-10")]
pub struct SkillLevelOutOfRange(pub u8);

impl TryFrom<u8> for SkillLevel {
    type Error = SkillLevelOutOfRange;

    fn try_from(level: u8) -> Result<Self, Self::Error> {
        SkillLevel::new(level).ok_or(SkillLevelOutOfRange(level))
    }
}

impl From<SkillLevel> for u8 {
    fn from(level: SkillLevel) -> u8 {
        level.0
    }
}

/// A skill an agent holds, at a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct AgentSkill {
    /// The skill (or language).
    pub skill: SkillId,
    /// How well the agent masters it.
    pub level: SkillLevel,
}

/// A skill a queue or an interaction requires, at a minimum level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct SkillRequirement {
    /// The skill.
    pub skill: SkillId,
    /// The lowest acceptable level.
    pub level: SkillLevel,
}

/// A 64-bit summary of a set of skills (bit `skill % 64`): if an agent's summary lacks a bit of
/// an interaction's, the agent cannot meet it, which the idle index can tell without touching
/// the agent.
pub(crate) fn summary_bit(skill: SkillId) -> u64 {
    // Fibonacci hashing spreads ids that are close or congruent mod 64 over different bits.
    1 << (skill.0.wrapping_mul(0x9E37_79B9) >> 26)
}

/// An agent's skills, sorted by skill id, one entry per skill.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SkillSet {
    skills: Vec<(SkillId, u8)>,
    summary: u64,
}

impl SkillSet {
    /// Builds the set; a skill listed twice is an error naming it.
    pub(crate) fn new(skills: &[AgentSkill]) -> Result<SkillSet, SkillId> {
        let mut set: Vec<(SkillId, u8)> = skills.iter().map(|s| (s.skill, s.level.0)).collect();
        set.sort_unstable();
        if let Some(pair) = set.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(pair[0].0);
        }
        let summary = set
            .iter()
            .fold(0, |bits, &(skill, _)| bits | summary_bit(skill));
        Ok(SkillSet {
            skills: set,
            summary,
        })
    }

    /// The summary of the skills held (see [`summary_bit`]).
    pub(crate) fn summary(&self) -> u64 {
        self.summary
    }

    /// The agent's level in `skill`, 0 if it lacks it.
    pub(crate) fn level(&self, skill: SkillId) -> u8 {
        match self.skills.binary_search_by_key(&skill, |&(s, _)| s) {
            Ok(i) => self.skills[i].1,
            Err(_) => 0,
        }
    }

    /// Whether the agent meets every need.
    pub(crate) fn meets(&self, needs: &Needs) -> bool {
        needs.may_be_met_by(self.summary) && self.meets_all(&needs.list)
    }

    /// Whether the agent holds every one of `needs` (sorted by skill) at its level.
    pub(crate) fn meets_all(&self, needs: &[Need]) -> bool {
        let mut have = self.skills.iter().peekable();
        'needs: for need in needs {
            while let Some(&&(skill, level)) = have.peek() {
                if skill < need.skill {
                    have.next();
                    continue;
                }
                if skill == need.skill && level >= need.level {
                    have.next();
                    continue 'needs;
                }
                return false;
            }
            return false;
        }
        true
    }

    /// Sum of the agent's levels in `skills` (the best-skill strategy ranks by it).
    pub(crate) fn score(&self, skills: &[SkillRequirement]) -> u64 {
        skills.iter().map(|r| u64::from(self.level(r.skill))).sum()
    }
}

/// An interaction's effective requirements, sorted by skill, with their summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Inline up to four (a queue skill or two, an own skill and the language), the usual case.
    pub(crate) list: SmallVec<[Need; 4]>,
    summary: u64,
}

impl Needs {
    /// The summary of the needed skills (see [`summary_bit`]).
    pub(crate) fn summary(&self) -> u64 {
        self.summary
    }

    /// False if an agent whose skills have `summary` certainly lacks one of the needed skills.
    pub(crate) fn may_be_met_by(&self, summary: u64) -> bool {
        summary & self.summary == self.summary
    }

    /// These needs plus `language` at any level, as [`effective_needs`] adds it: the same as
    /// computing them again with the language, without the sort.
    pub(crate) fn with_language(&self, language: Option<SkillId>) -> Needs {
        let mut needs = Needs {
            list: SmallVec::new(),
            summary: self.summary,
        };
        let mut language =
            language.filter(|&language| self.list.iter().all(|need| need.skill != language));
        // Element by element: the lists are short, and copying slices of them calls memcpy.
        for &need in &self.list {
            if let Some(skill) = language.filter(|&skill| skill < need.skill) {
                needs.push_language(skill);
                language = None;
            }
            needs.list.push(need);
        }
        if let Some(skill) = language {
            needs.push_language(skill);
        }
        needs
    }

    fn push_language(&mut self, language: SkillId) {
        self.list.push(Need {
            skill: language,
            level: SkillLevel::MIN.0,
        });
        self.summary |= summary_bit(language);
    }
}

/// One effective requirement of an interaction: `skill` at `level` or better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Need {
    pub(crate) skill: SkillId,
    pub(crate) level: u8,
}

/// How far escalation has relaxed an interaction's skill requirements. Never touches the language.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Relaxation {
    /// Required levels are lowered by this much (never below 1).
    pub(crate) lower_by: u8,
    /// Non-language skills are not required at all.
    pub(crate) drop_skills: bool,
}

/// The effective requirements, sorted by skill: the queue's and the interaction's skills (the
/// higher level wins when both name one), relaxed, plus the language at any level.
pub(crate) fn effective_needs(
    queue_skills: &[SkillRequirement],
    own_skills: &[SkillRequirement],
    language: Option<SkillId>,
    relaxation: Relaxation,
) -> Needs {
    let mut needs: SmallVec<[Need; 4]> = SmallVec::new();
    if !relaxation.drop_skills {
        for req in queue_skills.iter().chain(own_skills) {
            let level = req
                .level
                .0
                .saturating_sub(relaxation.lower_by)
                .max(SkillLevel::MIN.0);
            needs.push(Need {
                skill: req.skill,
                level,
            });
        }
    }
    if let Some(language) = language {
        needs.push(Need {
            skill: language,
            level: SkillLevel::MIN.0,
        });
    }
    // Highest level first within a skill, so dedup keeps the strictest need.
    needs.sort_unstable_by(|a, b| a.skill.cmp(&b.skill).then(b.level.cmp(&a.level)));
    needs.dedup_by_key(|n| n.skill);
    let summary = needs.iter().fold(0, |bits, n| bits | summary_bit(n.skill));
    Needs {
        list: needs,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(n: u8) -> SkillLevel {
        SkillLevel::new(n).expect("test levels are within 1-10")
    }

    fn skills(pairs: &[(u32, u8)]) -> SkillSet {
        let list: Vec<AgentSkill> = pairs
            .iter()
            .map(|&(s, l)| AgentSkill {
                skill: SkillId(s),
                level: level(l),
            })
            .collect();
        SkillSet::new(&list).expect("no duplicates")
    }

    fn req(skill: u32, l: u8) -> SkillRequirement {
        SkillRequirement {
            skill: SkillId(skill),
            level: level(l),
        }
    }

    #[test]
    fn levels_are_one_to_ten() {
        assert!(SkillLevel::new(0).is_none());
        assert!(SkillLevel::new(11).is_none());
        assert_eq!(SkillLevel::new(10), Some(SkillLevel::MAX));
        assert!(serde_json::from_str::<SkillLevel>("0").is_err());
        assert_eq!(
            serde_json::from_str::<SkillLevel>("7").ok(),
            SkillLevel::new(7)
        );
    }

    #[test]
    fn duplicate_agent_skill_is_rejected() {
        let dup = [
            AgentSkill {
                skill: SkillId(3),
                level: level(2),
            },
            AgentSkill {
                skill: SkillId(3),
                level: level(5),
            },
        ];
        assert_eq!(SkillSet::new(&dup), Err(SkillId(3)));
    }

    #[test]
    fn meets_needs_every_skill_at_level() {
        let agent = skills(&[(1, 5), (2, 3), (100, 1)]);
        let needs = effective_needs(
            &[req(1, 5)],
            &[req(2, 3)],
            Some(SkillId(100)),
            Relaxation::default(),
        );
        assert!(agent.meets(&needs));
        let too_high = effective_needs(&[req(1, 6)], &[], None, Relaxation::default());
        assert!(!agent.meets(&too_high));
        let missing = effective_needs(&[req(4, 1)], &[], None, Relaxation::default());
        assert!(!agent.meets(&missing));
        let other_language = effective_needs(&[], &[], Some(SkillId(101)), Relaxation::default());
        assert!(!agent.meets(&other_language));
        assert!(agent.meets(&Needs::default()));
        assert!(
            !other_language.may_be_met_by(agent.summary()),
            "told by the summary alone"
        );
    }

    #[test]
    fn stricter_of_queue_and_interaction_wins() {
        let needs = effective_needs(&[req(1, 3)], &[req(1, 7)], None, Relaxation::default());
        assert_eq!(
            needs.list.as_slice(),
            [Need {
                skill: SkillId(1),
                level: 7
            }]
        );
    }

    #[test]
    fn relaxation_lowers_levels_and_drops_skills_but_keeps_language() {
        let lowered = effective_needs(
            &[req(1, 5)],
            &[req(2, 2)],
            Some(SkillId(100)),
            Relaxation {
                lower_by: 3,
                drop_skills: false,
            },
        );
        assert_eq!(lowered.list[0].level, 2);
        assert_eq!(lowered.list[1].level, 1, "never below 1");
        let dropped = effective_needs(
            &[req(1, 5)],
            &[],
            Some(SkillId(100)),
            Relaxation {
                lower_by: 0,
                drop_skills: true,
            },
        );
        assert_eq!(
            dropped.list.as_slice(),
            [Need {
                skill: SkillId(100),
                level: 1
            }]
        );
    }

    #[test]
    fn adding_the_language_later_gives_the_same_needs() {
        let queue = [req(7, 4), req(2, 6), req(100, 3)];
        for language in [None, Some(1), Some(2), Some(5), Some(100), Some(101)] {
            let language = language.map(SkillId);
            let base = effective_needs(&queue, &[], None, Relaxation::default());
            assert_eq!(
                base.with_language(language),
                effective_needs(&queue, &[], language, Relaxation::default()),
                "{language:?}"
            );
        }
    }

    #[test]
    fn score_sums_levels_in_queue_skills() {
        let agent = skills(&[(1, 5), (2, 3)]);
        assert_eq!(agent.score(&[req(1, 1), req(2, 1), req(9, 1)]), 8);
    }
}
