//! First-answer deadlines in business time: a mailbox's `sla_seconds` counted only inside its
//! `business_hours` (`Mo-Fr 08:00-18:00`, `Mo,We,Fr 09:00-17:00`; German day names too), in UTC.
//! A mailbox without (readable) business hours counts wall-clock time. No I/O.

/// Opening hours: the days (Monday first) and the open interval in minutes of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    days: [bool; 7],
    open: i64,
    close: i64,
}

const DAY_MS: i64 = 86_400_000;
const DAY_NAMES: [[&str; 2]; 7] = [
    ["mo", "mo"],
    ["tu", "di"],
    ["we", "mi"],
    ["th", "do"],
    ["fr", "fr"],
    ["sa", "sa"],
    ["su", "so"],
];

fn day(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|names| names.contains(&name.as_str()))
}

fn minutes(hhmm: &str) -> Option<i64> {
    let (h, m) = hhmm.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
}

impl BusinessHours {
    /// Reads `Mo-Fr 08:00-18:00`; `None` when it is not of that form.
    pub fn parse(text: &str) -> Option<BusinessHours> {
        let (days_text, hours) = text.trim().split_once(' ')?;
        let mut days = [false; 7];
        for part in days_text.split(',') {
            match part.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (day(from)?, day(to)?);
                    let mut d = from;
                    loop {
                        days[d] = true;
                        if d == to {
                            break;
                        }
                        d = (d + 1) % 7;
                    }
                }
                None => days[day(part)?] = true,
            }
        }
        let (open, close) = hours.split_once('-')?;
        let (open, close) = (minutes(open)?, minutes(close)?);
        (open < close).then_some(BusinessHours { days, open, close })
    }

    /// Whether the moment `at` (Unix ms) is inside these hours.
    pub fn contains(&self, at: i64) -> bool {
        let weekday = (at.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize;
        let minute = at.rem_euclid(DAY_MS) / 60_000;
        self.days[weekday] && (self.open..self.close).contains(&minute)
    }

    /// The moment `seconds` of business time after `start` (Unix ms).
    pub fn deadline(&self, start: i64, seconds: i64) -> i64 {
        let mut remaining = seconds.max(0) * 1000;
        let mut t = start;
        // A week holds at least one open day; a year of weeks bounds any real SLA.
        for _ in 0..(366 * 8) {
            let day_start = t.div_euclid(DAY_MS) * DAY_MS;
            let weekday = (t.div_euclid(DAY_MS) + 3).rem_euclid(7) as usize;
            let (open, close) = (
                day_start + self.open * 60_000,
                day_start + self.close * 60_000,
            );
            if self.days[weekday] && t < close {
                let from = t.max(open);
                if remaining <= close - from {
                    return from + remaining;
                }
                remaining -= close - from;
            }
            t = day_start + DAY_MS;
        }
        start + seconds * 1000
    }
}

/// The first-answer deadline of a message arriving at `now` in a mailbox with `sla_seconds`
/// and `business_hours`.
pub fn first_answer_due(
    now: i64,
    sla_seconds: Option<i64>,
    business_hours: Option<&str>,
) -> Option<i64> {
    let seconds = sla_seconds?;
    Some(match business_hours.and_then(BusinessHours::parse) {
        Some(hours) => hours.deadline(now, seconds),
        None => now + seconds * 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-30 is a Monday; `at(day, h, m)` is that week's day (0 = Monday) at h:m UTC.
    fn at(day: i64, h: i64, m: i64) -> i64 {
        let monday = 1_795_996_800_000; // 2026-11-30T00:00:00Z
        monday + day * DAY_MS + (h * 60 + m) * 60_000
    }

    #[test]
    fn contains_open_minutes_of_open_days() {
        let h = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("parses");
        assert!(h.contains(at(0, 8, 0)));
        assert!(h.contains(at(4, 17, 59)));
        assert!(!h.contains(at(0, 7, 59)));
        assert!(!h.contains(at(0, 18, 0)));
        assert!(!h.contains(at(5, 12, 0)), "Saturday");
        let all_day = BusinessHours::parse("Mo-So 00:00-24:00").expect("parses");
        assert!(all_day.contains(at(6, 23, 59)));
    }

    #[test]
    fn parses_ranges_lists_and_german_days() {
        let h = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("parses");
        assert_eq!(h.days, [true, true, true, true, true, false, false]);
        assert_eq!((h.open, h.close), (480, 1080));
        let h = BusinessHours::parse("Mo,Mi,Fr 09:00-17:00").expect("parses");
        assert_eq!(h.days, [true, false, true, false, true, false, false]);
        assert!(BusinessHours::parse("Sa-Mo 10:00-12:00").is_some_and(|h| h.days[6] && h.days[0]));
        for bad in [
            "",
            "Mo-Fr",
            "Xx 08:00-18:00",
            "Mo 18:00-08:00",
            "Mo 25:00-26:00",
        ] {
            assert_eq!(BusinessHours::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn eight_business_hours() {
        let h = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("parses");
        let eight = 8 * 3600;
        // Monday 09:00 → Monday 17:00.
        assert_eq!(h.deadline(at(0, 9, 0), eight), at(0, 17, 0));
        // Monday 15:00: three hours today, five on Tuesday → Tuesday 13:00.
        assert_eq!(h.deadline(at(0, 15, 0), eight), at(1, 13, 0));
        // Friday 20:00 → Monday 16:00.
        assert_eq!(h.deadline(at(4, 20, 0), eight), at(7, 16, 0));
        // Saturday morning → Monday 16:00.
        assert_eq!(h.deadline(at(5, 6, 0), eight), at(7, 16, 0));
        // Before opening → from opening.
        assert_eq!(h.deadline(at(2, 5, 0), 3600), at(2, 9, 0));
    }

    #[test]
    fn without_hours_it_is_wall_clock() {
        assert_eq!(first_answer_due(1000, Some(60), None), Some(61_000));
        assert_eq!(
            first_answer_due(1000, Some(60), Some("whenever")),
            Some(61_000)
        );
        assert_eq!(
            first_answer_due(1000, None, Some("Mo-Fr 08:00-18:00")),
            None
        );
    }
}
