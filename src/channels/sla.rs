//! Business time: opening hours such as `Mo-Fr 08:00-18:00` or `Mo,We,Fr 09:00-17:00` (German
//! day names too) on the tenant's clock — its IANA time zone (`tenants.time_zone`, UTC unless
//! set), with summer time: a mailbox's first-answer deadline (`sla_seconds` counted only inside
//! its `business_hours`; without readable hours, wall-clock time) and a routing rule's time of
//! day. No I/O.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Opening hours: the days (Monday first) and the open interval in minutes of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusinessHours {
    days: [bool; 7],
    open: i64,
    close: i64,
}

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

    /// Whether the moment `at` (Unix ms) is inside these hours on the clock of `zone`.
    pub fn contains(&self, at: i64, zone: &TimeZone) -> bool {
        let Ok(moment) = Timestamp::from_millisecond(at) else {
            return false;
        };
        let local = zone.to_datetime(moment);
        let minute = i64::from(local.hour()) * 60 + i64::from(local.minute());
        self.days[weekday(local.date())] && (self.open..self.close).contains(&minute)
    }

    /// The moment `seconds` of business time after `start` (Unix ms), on the clock of `zone`: a
    /// day whose clocks change is as long as it really is.
    pub fn deadline(&self, start: i64, seconds: i64, zone: &TimeZone) -> i64 {
        let wall_clock = start + seconds.max(0) * 1000;
        let Ok(moment) = Timestamp::from_millisecond(start) else {
            return wall_clock;
        };
        let mut remaining = seconds.max(0) * 1000;
        let mut day = zone.to_datetime(moment).date();
        // A week holds at least one open day; a year of weeks bounds any real SLA.
        for _ in 0..(366 * 8) {
            if self.days[weekday(day)] {
                let (Some(open), Some(close)) = (
                    instant(day, self.open, zone),
                    instant(day, self.close, zone),
                ) else {
                    return wall_clock;
                };
                if start < close {
                    let from = start.max(open);
                    if remaining <= close - from {
                        return from + remaining;
                    }
                    remaining -= close - from;
                }
            }
            let Ok(next) = day.tomorrow() else {
                return wall_clock;
            };
            day = next;
        }
        wall_clock
    }
}

/// Monday = 0.
fn weekday(date: Date) -> usize {
    date.weekday().to_monday_zero_offset() as usize
}

/// The moment (Unix ms) `minute` minutes into `day` on the clock of `zone` (1440 is the next
/// day's midnight); a time a clock change skips is read as the clock before the change would
/// have it (02:30 on the night summer time starts at 02:00 is 03:30).
fn instant(day: Date, minute: i64, zone: &TimeZone) -> Option<i64> {
    let (day, minute) = match minute {
        1440 => (day.tomorrow().ok()?, 0),
        m => (day, m),
    };
    let local = DateTime::new(
        day.year(),
        day.month(),
        day.day(),
        (minute / 60) as i8,
        (minute % 60) as i8,
        0,
        0,
    )
    .ok()?;
    Some(zone.to_timestamp(local).ok()?.as_millisecond())
}

/// The time zone named `name` (IANA, such as `Europe/Berlin`); `None` if the time zone
/// database does not know it.
pub fn time_zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

/// The clock of a tenant whose stored time zone is `name`: UTC, with a warning, if the time
/// zone database no longer knows it (the API checks names before storing them).
pub fn tenant_clock(tenant: i64, name: &str) -> TimeZone {
    time_zone(name).unwrap_or_else(|| {
        tracing::warn!(
            tenant,
            time_zone = name,
            "tenant's time zone unknown; using UTC"
        );
        TimeZone::UTC
    })
}

/// The first-answer deadline of a message arriving at `now` in a mailbox with `sla_seconds`
/// and `business_hours` on the clock of `zone`.
pub fn first_answer_due(
    now: i64,
    sla_seconds: Option<i64>,
    business_hours: Option<&str>,
    zone: &TimeZone,
) -> Option<i64> {
    let seconds = sla_seconds?;
    Some(match business_hours.and_then(BusinessHours::parse) {
        Some(hours) => hours.deadline(now, seconds, zone),
        None => now + seconds * 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MS: i64 = 86_400_000;
    const UTC: &TimeZone = &TimeZone::UTC;

    /// 2026-11-30 is a Monday; `at(day, h, m)` is that week's day (0 = Monday) at h:m UTC.
    fn at(day: i64, h: i64, m: i64) -> i64 {
        let monday = 1_795_996_800_000; // 2026-11-30T00:00:00Z
        monday + day * DAY_MS + (h * 60 + m) * 60_000
    }

    #[test]
    fn contains_open_minutes_of_open_days() {
        let h = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("parses");
        assert!(h.contains(at(0, 8, 0), UTC));
        assert!(h.contains(at(4, 17, 59), UTC));
        assert!(!h.contains(at(0, 7, 59), UTC));
        assert!(!h.contains(at(0, 18, 0), UTC));
        assert!(!h.contains(at(5, 12, 0), UTC), "Saturday");
        let all_day = BusinessHours::parse("Mo-So 00:00-24:00").expect("parses");
        assert!(all_day.contains(at(6, 23, 59), UTC));
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
        assert_eq!(h.deadline(at(0, 9, 0), eight, UTC), at(0, 17, 0));
        // Monday 15:00: three hours today, five on Tuesday → Tuesday 13:00.
        assert_eq!(h.deadline(at(0, 15, 0), eight, UTC), at(1, 13, 0));
        // Friday 20:00 → Monday 16:00.
        assert_eq!(h.deadline(at(4, 20, 0), eight, UTC), at(7, 16, 0));
        // Saturday morning → Monday 16:00.
        assert_eq!(h.deadline(at(5, 6, 0), eight, UTC), at(7, 16, 0));
        // Before opening → from opening.
        assert_eq!(h.deadline(at(2, 5, 0), 3600, UTC), at(2, 9, 0));
    }

    #[test]
    fn hours_are_read_on_the_tenant_clock() {
        let berlin = time_zone("Europe/Berlin").expect("the time zone database knows Berlin");
        let h = BusinessHours::parse("Mo-Fr 08:00-18:00").expect("parses");
        // Monday 07:30 UTC is 08:30 in Berlin (winter time): open there, not yet in UTC.
        assert!(h.contains(at(0, 7, 30), &berlin));
        assert!(!h.contains(at(0, 7, 30), UTC));
        assert!(!h.contains(at(0, 17, 30), &berlin), "18:30 in Berlin");
        // Monday 06:30 UTC (07:30 in Berlin): one hour from Berlin's opening at 07:00 UTC.
        assert_eq!(h.deadline(at(0, 6, 30), 3600, &berlin), at(0, 8, 0));
        assert_eq!(h.deadline(at(0, 6, 30), 3600, UTC), at(0, 9, 0));
        // Summer time starts on Sunday 2027-03-28: that day has 23 hours, so a day of business
        // time every day from Saturday noon ends on Sunday at 13:00 local time.
        let all_day = BusinessHours::parse("Mo-So 00:00-24:00").expect("parses");
        let saturday_noon = 1_806_145_200_000; // 2027-03-27T12:00:00+01:00
        let due = all_day.deadline(saturday_noon, 24 * 3600, &berlin);
        assert_eq!(due, saturday_noon + DAY_MS, "real time, not clock time");
        assert_eq!(
            time_zone("Europe/Berlin").map(|z| z
                .to_datetime(Timestamp::from_millisecond(due).expect("ms"))
                .hour()),
            Some(13)
        );
        assert!(time_zone("Mars/Olympus_Mons").is_none());
    }

    #[test]
    fn without_hours_it_is_wall_clock() {
        assert_eq!(first_answer_due(1000, Some(60), None, UTC), Some(61_000));
        assert_eq!(
            first_answer_due(1000, Some(60), Some("whenever"), UTC),
            Some(61_000)
        );
        assert_eq!(
            first_answer_due(1000, None, Some("Mo-Fr 08:00-18:00"), UTC),
            None
        );
    }
}
