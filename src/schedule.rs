//! Schedules and data intervals: when a DAG's runs are due, in the DAG's time zone.
//!
//! Follows Airflow's data-interval model: a scheduled run covers `[start, end)`, its logical date
//! is `start`, and it becomes due once `end` has passed. A continuous schedule (`@continuous`,
//! as in Airflow 3) has no calendar: its next run is due as soon as the previous one ended (the
//! scheduler checks that) and `min_interval` after the previous one began; its interval covers
//! the time since the previous run's creation and its logical date is the interval's end. Everything here is a pure function of
//! the inputs (the current time is a parameter), so it is tested with any clock.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// When a DAG runs by itself.
#[derive(Clone)]
pub enum Schedule {
    /// A cron expression (5 or 6 fields) or one of the presets `@hourly` … `@yearly`.
    Cron { expression: String, cron: Box<Cron> },
    /// Exactly one run, at `start_date`.
    Once,
    /// A new run as soon as the previous one ended, at most one every `min_interval`.
    Continuous { min_interval: std::time::Duration },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expression())
    }
}

/// A run's data interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Schedule {
    /// Parses `0 2 * * *`, `*/10 * * * * *`, `@daily`, `@once`, ….
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let trimmed = text.trim();
        if trimmed == "@once" {
            return Ok(Schedule::Once);
        }
        if trimmed == "@continuous" {
            return Ok(Schedule::Continuous { min_interval: std::time::Duration::ZERO });
        }
        if trimmed.starts_with('@') {
            const PRESETS: [&str; 6] =
                ["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually"];
            if !PRESETS.contains(&trimmed) {
                return Err(format!(
                    "unknown schedule preset `{trimmed}` (expected one of @once, @continuous, {})",
                    PRESETS.join(", ")
                ));
            }
        } else {
            let fields = trimmed.split_whitespace().count();
            if !(5..=6).contains(&fields) {
                return Err(format!(
                    "invalid cron expression `{trimmed}`: expected 5 fields (minute hour day month weekday) or 6 (with seconds first), found {fields}"
                ));
            }
        }
        let parser =
            CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser
            .parse(trimmed)
            .map_err(|e| format!("invalid cron expression `{trimmed}`: {e}"))?;
        Ok(Schedule::Cron { expression: trimmed.to_string(), cron: Box::new(cron) })
    }

    pub fn expression(&self) -> &str {
        match self {
            Schedule::Cron { expression, .. } => expression,
            Schedule::Once => "@once",
            Schedule::Continuous { .. } => "@continuous",
        }
    }

    /// The first schedule point strictly after `t`.
    fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.find(t, tz, Direction::Forward, false)
    }

    /// The first schedule point at or after `t`.
    fn next_at_or_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.find(t, tz, Direction::Forward, true)
    }

    /// The last schedule point at or before `t`.
    fn prev_at_or_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.find(t, tz, Direction::Backward, true)
    }

    /// The last schedule point strictly before `t`.
    fn prev_before(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.find(t, tz, Direction::Backward, false)
    }

    /// Finds the nearest schedule point from `t` in `direction`.
    ///
    /// Cron fields are wall-clock times in `tz`, as in Vixie cron: a time that a DST change
    /// skips fires at the first instant after the gap, and a time that a DST change repeats
    /// fires at each real instant (so an hourly job runs every hour, a daily one once a day
    /// unless its time falls in the repeated hour). The wall-clock search starts two hours
    /// before (or after) `t` so that a repeated hour is never overlooked.
    fn find(
        &self,
        t: DateTime<Utc>,
        tz: Tz,
        direction: Direction,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        let Schedule::Cron { cron, .. } = self else { return None };
        let margin = chrono::Duration::hours(2);
        let local = t.with_timezone(&tz).naive_local();
        let mut cursor = match direction {
            Direction::Forward => local - margin,
            Direction::Backward => local + margin,
        };
        for _ in 0..10_000 {
            let wall = match direction {
                Direction::Forward => cron.find_next_occurrence(&cursor, false).ok()?,
                Direction::Backward => cron.find_previous_occurrence(&cursor, false).ok()?,
            };
            let mut instants = wall_clock_instants(wall, tz);
            if direction == Direction::Backward {
                instants.reverse();
            }
            let hit = instants.into_iter().find(|at| match (direction, inclusive) {
                (Direction::Forward, true) => *at >= t,
                (Direction::Forward, false) => *at > t,
                (Direction::Backward, true) => *at <= t,
                (Direction::Backward, false) => *at < t,
            });
            if hit.is_some() {
                return hit;
            }
            cursor = wall;
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// The real instants of a wall-clock time in `tz`: one, two (repeated by a DST change, in
/// order) or, for a time skipped by a DST change, the first instant after the gap.
fn wall_clock_instants(wall: chrono::NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(at) => vec![at.with_timezone(&Utc)],
        chrono::LocalResult::Ambiguous(first, second) => {
            vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
        }
        chrono::LocalResult::None => (1..=24 * 60)
            .find_map(|minutes| {
                tz.from_local_datetime(&(wall + chrono::Duration::minutes(minutes))).earliest()
            })
            .map(|at| {
                let at = at.with_timezone(&Utc);
                // Back up from the first valid whole minute to the exact end of the gap.
                at - chrono::Duration::seconds(at.timestamp().rem_euclid(60))
            })
            .into_iter()
            .collect(),
    }
}

/// The parts of a DAG that decide when it runs.
#[derive(Debug, Clone, Copy)]
pub struct Timetable<'a> {
    pub schedule: &'a Schedule,
    pub timezone: Tz,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
}

impl Timetable<'_> {
    /// The data interval of the next scheduled run, given the interval of the latest one.
    ///
    /// The result may lie in the future: the run is due once [`DataInterval::is_due`] says so.
    /// `None` means the DAG will never run by itself again (`@once` done, or past `end_date`).
    pub fn next_interval(
        &self,
        last: Option<DataInterval>,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let tz = self.timezone;
        let interval = match self.schedule {
            Schedule::Once => {
                if last.is_some() {
                    return None;
                }
                let at = self.start_date.unwrap_or(now);
                DataInterval { start: at, end: at }
            }
            Schedule::Continuous { min_interval } => {
                let not_before = match last {
                    Some(last) => {
                        let gap = chrono::Duration::from_std(*min_interval);
                        last.end + gap.unwrap_or(chrono::Duration::days(36_500))
                    }
                    None => self.start_date.unwrap_or(now),
                };
                let start = last.map_or(not_before.min(now), |last| last.end);
                DataInterval { start, end: not_before.max(now) }
            }
            schedule @ Schedule::Cron { .. } => {
                let mut start = match (last, self.start_date) {
                    (Some(last), _) => schedule.next_at_or_after(last.end, tz)?,
                    (None, Some(start_date)) => schedule.next_at_or_after(start_date, tz)?,
                    (None, None) => latest_complete_start(schedule, tz, now)?,
                };
                if !self.catchup {
                    if let Some(latest) = latest_complete_start(schedule, tz, now) {
                        start = start.max(latest);
                    }
                }
                DataInterval { start, end: schedule.next_after(start, tz)? }
            }
        };
        match self.end_date {
            Some(end_date) if interval.start > end_date => None,
            _ => Some(interval),
        }
    }

    /// Every scheduled interval whose start lies in `range` (a backfill).
    pub fn intervals_in(&self, range: &BackfillRange) -> Vec<DataInterval> {
        let tz = self.timezone;
        let mut out = Vec::new();
        if let Schedule::Continuous { .. } = self.schedule {
            return out;
        }
        let Schedule::Cron { .. } = self.schedule else {
            if let Some(at) = self.start_date.filter(|at| range.contains(*at)) {
                out.push(DataInterval { start: at, end: at });
            }
            return out;
        };
        let mut cursor = self.schedule.next_at_or_after(range.start, tz);
        while let Some(start) = cursor.filter(|s| range.contains(*s)) {
            let Some(end) = self.schedule.next_after(start, tz) else { break };
            out.push(DataInterval { start, end });
            cursor = Some(end);
        }
        out
    }

    /// The data interval of a manual run at `logical_date`: the schedule interval starting
    /// there, or an empty interval for DAGs without a cron schedule.
    pub fn manual_interval(&self, logical_date: DateTime<Utc>) -> DataInterval {
        let end = self.schedule.next_after(logical_date, self.timezone).unwrap_or(logical_date);
        DataInterval { start: logical_date, end }
    }
}

impl Timetable<'_> {
    /// The interval that the latest cron tick at or before `now` closed (`None` for schedules
    /// without ticks): where a DAG that runs on a tick once its data changed stands.
    pub fn latest_closed(&self, now: DateTime<Utc>) -> Option<DataInterval> {
        let end = self.schedule.prev_at_or_before(now, self.timezone)?;
        let start = self.schedule.prev_before(end, self.timezone)?;
        Some(DataInterval { start, end })
    }

    /// The first cron tick after `now`.
    pub fn next_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule.next_after(now, self.timezone)
    }

    /// Whether runs follow one another without a calendar (`@continuous`).
    pub fn is_continuous(&self) -> bool {
        matches!(self.schedule, Schedule::Continuous { .. })
    }

    /// The logical date of the scheduled run for `interval`: its start, or for a continuous
    /// schedule its end (the moment the run was created).
    pub fn logical_date(&self, interval: &DataInterval) -> DateTime<Utc> {
        if self.is_continuous() {
            interval.end
        } else {
            interval.start
        }
    }
}

impl DataInterval {
    /// A scheduled run for this interval may be created at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.end <= now
    }
}

/// Start of the latest interval that has completely ended by `now`.
fn latest_complete_start(schedule: &Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let end = schedule.prev_at_or_before(now, tz)?;
    schedule.prev_before(end, tz)
}

/// The logical dates a backfill covers: from `start` included to `end` excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl BackfillRange {
    /// Reads `--start` and `--end`. Both are inclusive, and a bare date means a whole local
    /// calendar day in `tz` (23 or 25 hours long on the days clocks change), so day-by-day
    /// backfills tile the calendar exactly; a timestamp `--end` is included as is.
    pub fn parse(start: &str, end: &str, tz: Tz) -> Result<BackfillRange, String> {
        let invalid = |flag: &str, text: &str| {
            format!("{flag}: invalid date `{text}` (expected YYYY-MM-DD or an RFC 3339 timestamp)")
        };
        let from = parse_date(start, tz).ok_or_else(|| invalid("--start", start))?;
        let to = match chrono::NaiveDate::parse_from_str(end.trim(), "%Y-%m-%d") {
            Ok(day) => {
                let next = day.succ_opt().ok_or_else(|| invalid("--end", end))?;
                local_midnight(next, tz)
            }
            Err(_) => {
                parse_date(end, tz).ok_or_else(|| invalid("--end", end))?
                    + chrono::Duration::microseconds(1)
            }
        };
        if to <= from {
            return Err(format!("--end {end} is before --start {start}"));
        }
        Ok(BackfillRange { start: from, end: to })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }
}

/// Reads `YYYY-MM-DD` (midnight in `tz`) or an RFC 3339 timestamp.
pub fn parse_date(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Some(local_midnight(date, tz));
    }
    DateTime::parse_from_rfc3339(&text.trim().replace(' ', "T")).ok().map(|d| d.with_timezone(&Utc))
}

/// Midnight of `date` in `tz`, as UTC: how a bare `YYYY-MM-DD` is read.
pub fn local_midnight(date: chrono::NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        // Midnight skipped by a DST change: take the first instant of the day.
        chrono::LocalResult::None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&naive)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily() -> Schedule {
        Schedule::parse("0 2 * * *").unwrap()
    }

    #[test]
    fn continuous_runs_follow_one_another_at_least_min_interval_apart() {
        let schedule = Schedule::Continuous { min_interval: std::time::Duration::from_secs(10) };
        let timetable = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
        };
        let t0 = utc("2024-05-01T12:00:00Z");
        let first = timetable.next_interval(None, t0).unwrap();
        assert!(first.is_due(t0));
        assert_eq!(timetable.logical_date(&first), t0, "its logical date is when it was created");
        // 4 s later: held back until 10 s after the first began.
        let early = t0 + chrono::Duration::seconds(4);
        let second = timetable.next_interval(Some(first), early).unwrap();
        assert!(!second.is_due(early));
        assert_eq!(second.end, t0 + chrono::Duration::seconds(10));
        // 25 s later: due at once, covering the time since the first run.
        let late = t0 + chrono::Duration::seconds(25);
        let second = timetable.next_interval(Some(first), late).unwrap();
        assert!(second.is_due(late));
        assert_eq!((second.start, second.end), (t0, late));
        assert!(timetable.intervals_in(&BackfillRange { start: t0, end: late }).is_empty());
        assert_eq!(Schedule::parse("@continuous").unwrap().expression(), "@continuous");
    }

    #[test]
    fn latest_closed_interval_ends_at_the_last_tick() {
        let schedule = Schedule::parse("0 * * * *").unwrap();
        let tt = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
        };
        let closed = tt.latest_closed(utc("2024-05-01T10:20:00Z")).unwrap();
        assert_eq!(
            (closed.start, closed.end),
            (utc("2024-05-01T09:00:00Z"), utc("2024-05-01T10:00:00Z"))
        );
        let on_tick = tt.latest_closed(utc("2024-05-01T11:00:00Z")).unwrap();
        assert_eq!(on_tick.end, utc("2024-05-01T11:00:00Z"), "a tick closes its interval at once");
        assert_eq!(tt.next_tick(utc("2024-05-01T10:20:00Z")), Some(utc("2024-05-01T11:00:00Z")));
    }

    #[test]
    fn parses_cron_and_presets() {
        assert!(Schedule::parse("0 2 * * *").is_ok());
        assert!(Schedule::parse("*/5 0 2 * * *").is_ok());
        assert!(Schedule::parse("@daily").is_ok());
        assert!(matches!(Schedule::parse("@once"), Ok(Schedule::Once)));
        assert!(Schedule::parse("0 2 * *").unwrap_err().contains("found 4"));
        assert!(Schedule::parse("61 * * * *").unwrap_err().starts_with("invalid cron expression"));
        assert!(Schedule::parse("@fortnightly").unwrap_err().contains("unknown schedule preset"));
    }

    #[test]
    fn first_interval_starts_at_start_date_with_catchup() {
        let schedule = daily();
        let tt = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: Some(utc("2024-01-01T00:00:00Z")),
            end_date: None,
            catchup: true,
        };
        let next = tt.next_interval(None, utc("2024-01-10T00:00:00Z")).unwrap();
        assert_eq!(next.start, utc("2024-01-01T02:00:00Z"));
        assert_eq!(next.end, utc("2024-01-02T02:00:00Z"));
        let after = tt.next_interval(Some(next), utc("2024-01-10T00:00:00Z")).unwrap();
        assert_eq!(after.start, utc("2024-01-02T02:00:00Z"));
    }

    #[test]
    fn without_catchup_only_the_latest_interval_runs() {
        let schedule = daily();
        let tt = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: Some(utc("2024-01-01T00:00:00Z")),
            end_date: None,
            catchup: false,
        };
        let next = tt.next_interval(None, utc("2024-01-10T03:00:00Z")).unwrap();
        assert_eq!(next.start, utc("2024-01-09T02:00:00Z"));
        assert!(next.is_due(utc("2024-01-10T03:00:00Z")));
    }

    #[test]
    fn cron_follows_the_dag_time_zone_across_dst() {
        let schedule = daily();
        let tt = Timetable {
            schedule: &schedule,
            timezone: chrono_tz::Europe::Paris,
            start_date: Some(utc("2024-03-29T00:00:00Z")),
            end_date: None,
            catchup: true,
        };
        let first = tt.next_interval(None, utc("2024-04-10T00:00:00Z")).unwrap();
        // 02:00 Paris is 01:00 UTC in winter (CET)...
        assert_eq!(first.start, utc("2024-03-29T01:00:00Z"));
        let second = tt.next_interval(Some(first), utc("2024-04-10T00:00:00Z")).unwrap();
        let third = tt.next_interval(Some(second), utc("2024-04-10T00:00:00Z")).unwrap();
        // 02:00 does not exist on 31 March (clocks jump to 03:00 CEST = 01:00 UTC): the run
        // fires as the gap ends, then 02:00 CEST (00:00 UTC) from the next day on.
        assert_eq!(third.start, utc("2024-03-31T01:00:00Z"));
        let fourth = tt.next_interval(Some(third), utc("2024-04-10T00:00:00Z")).unwrap();
        assert_eq!(fourth.start, utc("2024-04-01T00:00:00Z"));
    }

    #[test]
    fn hourly_cron_runs_every_real_hour_when_clocks_go_back() {
        let schedule = Schedule::parse("30 * * * *").unwrap();
        let tt = Timetable {
            schedule: &schedule,
            timezone: chrono_tz::Europe::Paris,
            start_date: Some(utc("2024-10-26T23:00:00Z")),
            end_date: None,
            catchup: true,
        };
        let mut last = None;
        let mut starts = Vec::new();
        for _ in 0..4 {
            let next = tt.next_interval(last, utc("2024-11-01T00:00:00Z")).unwrap();
            starts.push(next.start);
            last = Some(next);
        }
        // 02:30 Paris happens twice on 27 October 2024: 00:30 UTC (CEST) and 01:30 UTC (CET).
        let expected = [
            "2024-10-26T23:30:00Z",
            "2024-10-27T00:30:00Z",
            "2024-10-27T01:30:00Z",
            "2024-10-27T02:30:00Z",
        ];
        assert_eq!(starts, expected.map(utc));
    }

    #[test]
    fn end_date_stops_scheduling_and_once_runs_once() {
        let schedule = daily();
        let tt = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: Some(utc("2024-01-01T00:00:00Z")),
            end_date: Some(utc("2024-01-01T12:00:00Z")),
            catchup: true,
        };
        let first = tt.next_interval(None, utc("2024-02-01T00:00:00Z")).unwrap();
        assert_eq!(tt.next_interval(Some(first), utc("2024-02-01T00:00:00Z")), None);

        let once = Schedule::Once;
        let tt = Timetable { schedule: &once, end_date: None, ..tt };
        let only = tt.next_interval(None, utc("2024-02-01T00:00:00Z")).unwrap();
        assert_eq!(only.start, utc("2024-01-01T00:00:00Z"));
        assert_eq!(tt.next_interval(Some(only), utc("2024-02-01T00:00:00Z")), None);
    }

    #[test]
    fn backfill_ranges_list_each_interval() {
        let schedule = daily();
        let tt = Timetable {
            schedule: &schedule,
            timezone: Tz::UTC,
            start_date: None,
            end_date: None,
            catchup: false,
        };
        let range = BackfillRange::parse("2024-01-01", "2024-01-03", Tz::UTC).unwrap();
        let starts: Vec<_> = tt.intervals_in(&range).iter().map(|i| i.start).collect();
        assert_eq!(
            starts,
            vec![
                utc("2024-01-01T02:00:00Z"),
                utc("2024-01-02T02:00:00Z"),
                utc("2024-01-03T02:00:00Z")
            ]
        );
        assert!(BackfillRange::parse("2024-01-03", "2024-01-02", Tz::UTC).is_err());
        let instant = BackfillRange::parse("2024-01-01", "2024-01-01T02:00:00Z", Tz::UTC).unwrap();
        assert_eq!(tt.intervals_in(&instant).len(), 1, "a timestamp end is included");
    }

    /// Backfilling a year one local day at a time, in a zone with DST, creates every interval
    /// of the year once: 23 hourly runs on the spring day, 25 on the autumn day, and each run
    /// belongs to the day it was backfilled for.
    #[test]
    fn day_by_day_backfills_tile_a_year_across_dst() {
        let tz: Tz = "Europe/Paris".parse().unwrap();
        for (expression, per_day) in [("@hourly", None), ("@daily", Some(1)), ("30 2 * * *", None)]
        {
            let schedule = Schedule::parse(expression).unwrap();
            let tt = Timetable {
                schedule: &schedule,
                timezone: tz,
                start_date: None,
                end_date: None,
                catchup: true,
            };
            let year = BackfillRange::parse("2024-01-01", "2024-12-31", tz).unwrap();
            let whole = tt.intervals_in(&year);
            let mut tiled = Vec::new();
            let mut day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
            while day.year() == 2024 {
                let text = day.format("%Y-%m-%d").to_string();
                let range = BackfillRange::parse(&text, &text, tz).unwrap();
                let runs = tt.intervals_in(&range);
                for run in &runs {
                    assert_eq!(run.start.with_timezone(&tz).date_naive(), day, "{expression}");
                }
                let expected = match (expression, text.as_str()) {
                    ("@hourly", "2024-03-31") => Some(23),
                    ("@hourly", "2024-10-27") => Some(25),
                    ("@hourly", _) => Some(24),
                    // 02:30 does not exist on the spring day (that run is at 03:00) and
                    // happens twice on the autumn day (a run at each).
                    ("30 2 * * *", "2024-10-27") => Some(2),
                    ("30 2 * * *", _) => Some(1),
                    _ => per_day,
                };
                assert_eq!(Some(runs.len()), expected, "{expression} on {text}");
                tiled.extend(runs);
                day = day.succ_opt().unwrap();
            }
            assert_eq!(tiled, whole, "{expression}: the days tile the year");
        }
    }
}
