//! A cron expression in an IANA time zone, and the slot instants it names.
//!
//! Matching the fields is `croner`'s work, done on naive local times (evaluated in UTC, which
//! has no daylight saving). Mapping a local time to an instant is done here, because the rule
//! for the hour that repeats or does not exist is Stoker's, not the parser's (Vixie cron's):
//!
//! - a *fixed-time* entry (neither its minute nor its hour field starts with `*`, e.g.
//!   `30 1 * * *`) fires once in a repeated hour, at the first of the two instants, and fires at
//!   the transition instant when its local time does not exist;
//! - a *wildcard* entry (`*/15 * * * *`, `5 * * * *`, `* 1 * * *`) follows real elapsed time:
//!   it fires at both instants of a repeated local time and not at all for local times that
//!   do not exist.

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::InvalidInput;

/// The longest cron expression accepted.
pub const CRON_EXPR_MAX_LEN: usize = 256;
/// The longest time zone name accepted.
pub const CRON_TZ_MAX_LEN: usize = 64;

/// How far apart two checks of a zone's offset may be when looking for a transition. Real
/// zones change offset at most a few times a year, never twice within a week.
const TRANSITION_STEP_DAYS: i64 = 7;

/// A parsed cron expression with its time zone, and the UTC instants of its slots.
///
/// Around daylight-saving transitions (Vixie cron's rule): a *fixed-time* entry (neither its
/// minute nor its hour field starts with `*`) fires once in a repeated hour, at the first of
/// the two instants, and at the transition instant when its local time does not exist; a
/// *wildcard* entry (`*/15 * * * *`, `5 * * * *`) follows real elapsed time, firing at both
/// instants of a repeated local time and not at all for local times that do not exist.
///
/// ```
/// use stoker_core::cron::CronExpr;
///
/// let london = CronExpr::parse("30 1 * * *", "Europe/London").unwrap();
/// // 2026-03-29: 01:30 does not exist in London; the entry fires at the transition.
/// let slot = london.next_after("2026-03-29T00:00:00Z".parse().unwrap()).unwrap();
/// assert_eq!(slot.to_rfc3339(), "2026-03-29T01:00:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct CronExpr {
    cron: Cron,
    tz: Tz,
    fixed: bool,
    text: String,
}

impl CronExpr {
    /// Parses `expr` (5 fields, or 6 with seconds first, or one of `@yearly`, `@annually`,
    /// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`) in the IANA zone `tz`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput`] naming `expr` or `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<CronExpr, InvalidInput> {
        let tz = parse_tz(tz)?;
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(InvalidInput::new("expr", "must not be empty"));
        }
        if expr.len() > CRON_EXPR_MAX_LEN {
            return Err(InvalidInput::new(
                "expr",
                format!(
                    "is {} bytes, over the limit of {CRON_EXPR_MAX_LEN}",
                    expr.len()
                ),
            ));
        }
        let text = match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            other if other.starts_with('@') => {
                return Err(InvalidInput::new(
                    "expr",
                    format!(
                        "{trimmed:?} is not a known nickname (use @yearly, @monthly, @weekly, \
                         @daily, @hourly or 5 or 6 fields)"
                    ),
                ))
            }
            _ => trimmed.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        let fields: Vec<&str> = text.split(' ').collect();
        let (minute, hour) = match fields.len() {
            5 => (fields[0], fields[1]),
            6 => (fields[1], fields[2]),
            n => {
                return Err(InvalidInput::new(
                    "expr",
                    format!(
                        "{trimmed:?} has {n} fields; expected 5 (minute hour day month weekday) \
                         or 6 (second minute hour day month weekday)"
                    ),
                ))
            }
        };
        let fixed = !minute.starts_with('*') && !hour.starts_with('*');
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(&text)
            .map_err(|err| InvalidInput::new("expr", format!("{trimmed:?}: {err}")))?;
        let parsed = CronExpr {
            cron,
            tz,
            fixed,
            text,
        };
        // An expression such as `0 0 30 2 *` parses but never matches.
        if parsed.next_after(Utc::now() - Duration::days(1)).is_none() {
            return Err(InvalidInput::new(
                "expr",
                format!("{trimmed:?} never matches a date"),
            ));
        }
        Ok(parsed)
    }

    /// The time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Whether this is a fixed-time entry (see [`CronExpr`]).
    pub fn is_fixed_time(&self) -> bool {
        self.fixed
    }

    /// The expression as evaluated (nicknames expanded, whitespace normalised).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The next `n` slots after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut slots = Vec::with_capacity(n);
        let mut at = after;
        while slots.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    slots.push(next);
                    at = next;
                }
                None => break,
            }
        }
        slots
    }

    /// The first slot strictly after `t`, or `None` if the expression never matches again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut off = self.offset_at(t);
        let mut from = t;
        // The first whole local second after `t`: slots are whole seconds.
        let mut lower = floor_second(t.naive_utc() + off) + Duration::seconds(1);
        if self.fixed {
            // In the second pass of a repeated hour, a fixed-time entry already fired in the
            // first pass: its next slot comes after the repetition.
            let local = t.naive_utc() + off;
            if let chrono::LocalResult::Ambiguous(first, _) = self.tz.from_local_datetime(&local) {
                let first = first.with_timezone(&Utc);
                let first_off = self.offset_at(first);
                if first != floor_second_utc(t) && first_off != off {
                    if let Some((at, _)) = self.first_transition(first, t, first_off) {
                        lower = lower.max(at.naive_utc() + first_off);
                    }
                }
            }
        }
        // Each round either returns or moves past one offset transition.
        for _ in 0..64 {
            let candidate = self
                .cron
                .find_next_occurrence(&Utc.from_utc_datetime(&lower), true)
                .ok()?
                .naive_utc();
            let instant = Utc.from_utc_datetime(&(candidate - off));
            let Some((at, new_off)) = self.first_transition(from, instant, off) else {
                return Some(instant);
            };
            if new_off > off {
                // Spring forward: local times in [at + off, at + new_off) do not exist.
                if candidate < at.naive_utc() + new_off && self.fixed {
                    return Some(at);
                }
                lower = at.naive_utc() + new_off;
            } else {
                // Fall back: local times in [at + new_off, at + off) happen twice.
                lower = if self.fixed {
                    at.naive_utc() + off
                } else {
                    at.naive_utc() + new_off
                };
            }
            off = new_off;
            from = at;
        }
        None
    }

    /// The zone's offset from UTC at `t`, as a duration to add to UTC.
    fn offset_at(&self, t: DateTime<Utc>) -> Duration {
        Duration::seconds(i64::from(
            self.tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        ))
    }

    /// The first instant in `(from, to]` at which the offset is no longer `off`, with the new
    /// offset; to the second.
    fn first_transition(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        off: Duration,
    ) -> Option<(DateTime<Utc>, Duration)> {
        let mut a = from;
        while a < to {
            let b = (a + Duration::days(TRANSITION_STEP_DAYS)).min(to);
            if self.offset_at(b) != off {
                // The transition is a whole second in (lo, hi]: narrow the interval to at
                // most one second, which holds exactly one whole second.
                let (mut lo, mut hi) = (a, b);
                while hi - lo > Duration::seconds(1) {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset_at(mid) == off {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                let at = floor_second_utc(lo) + Duration::seconds(1);
                return Some((at, self.offset_at(at)));
            }
            a = b;
        }
        None
    }
}

/// Parses an IANA time zone name.
///
/// # Errors
///
/// [`InvalidInput`] naming `tz`.
pub fn parse_tz(tz: &str) -> Result<Tz, InvalidInput> {
    if tz.len() > CRON_TZ_MAX_LEN {
        return Err(InvalidInput::new(
            "tz",
            format!("is {} bytes, over the limit of {CRON_TZ_MAX_LEN}", tz.len()),
        ));
    }
    Tz::from_str(tz).map_err(|_| {
        InvalidInput::new(
            "tz",
            format!("{tz:?} is not an IANA time zone (e.g. UTC, Europe/London)"),
        )
    })
}

fn floor_second(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

fn floor_second_utc(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn slots(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
        let cron = CronExpr::parse(expr, tz).unwrap();
        let (mut t, end) = (at(from), at(to));
        let mut out = Vec::new();
        while let Some(next) = cron.next_after(t) {
            if next > end {
                break;
            }
            out.push(next.format("%H:%M").to_string());
            t = next;
        }
        out
    }

    #[test]
    fn names_the_field_at_fault() {
        assert_eq!(CronExpr::parse("* * *", "UTC").unwrap_err().field, "expr");
        assert_eq!(
            CronExpr::parse("61 * * * *", "UTC").unwrap_err().field,
            "expr"
        );
        assert_eq!(
            CronExpr::parse("0 0 30 2 *", "UTC").unwrap_err().field,
            "expr"
        );
        assert_eq!(CronExpr::parse("@reboot", "UTC").unwrap_err().field, "expr");
        assert_eq!(
            CronExpr::parse("0 0 * * * * *", "UTC").unwrap_err().field,
            "expr"
        );
        assert_eq!(
            CronExpr::parse("* * * * *", "Mars/Olympus")
                .unwrap_err()
                .field,
            "tz"
        );
        assert!(CronExpr::parse("*/10 * * * * *", "Europe/London").is_ok());
        assert!(CronExpr::parse("@daily", "America/New_York").is_ok());
    }

    #[test]
    fn london_spring_forward() {
        // 2026-03-29 01:00 UTC: 01:00 GMT becomes 02:00 BST.
        let (from, to) = ("2026-03-28T23:59:00Z", "2026-03-29T02:59:00Z");
        // 01:30 local does not exist: fires at the transition (01:00 UTC).
        assert_eq!(slots("30 1 * * *", "Europe/London", from, to), ["01:00"]);
        // Wildcard entries keep elapsed time (UTC instants shown).
        assert_eq!(
            slots("*/30 * * * *", "Europe/London", from, to),
            ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30"]
        );
    }

    #[test]
    fn london_fall_back() {
        // 2026-10-25 01:00 UTC: 02:00 BST becomes 01:00 GMT; 01:xx local happens twice.
        let (from, to) = ("2026-10-24T23:59:00Z", "2026-10-25T02:59:00Z");
        assert_eq!(slots("30 1 * * *", "Europe/London", from, to), ["00:30"]);
        assert_eq!(
            slots("15 * * * *", "Europe/London", from, to),
            ["00:15", "01:15", "02:15"]
        );
        // From inside the second pass, a fixed entry waits for the next day.
        let cron = CronExpr::parse("30 1 * * *", "Europe/London").unwrap();
        assert_eq!(
            cron.next_after(at("2026-10-25T01:10:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_both_transitions() {
        // 2026-03-08 07:00 UTC: 02:00 EST becomes 03:00 EDT.
        assert_eq!(
            slots(
                "30 2 * * *",
                "America/New_York",
                "2026-03-08T05:00:00Z",
                "2026-03-09T08:00:00Z"
            ),
            ["07:00", "06:30"]
        );
        // 2026-11-01 06:00 UTC: 02:00 EDT becomes 01:00 EST.
        assert_eq!(
            slots(
                "30 1 * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                "2026-11-02T08:00:00Z"
            ),
            ["05:30", "06:30"]
        );
        assert_eq!(
            slots(
                "0 * * * *",
                "America/New_York",
                "2026-11-01T04:30:00Z",
                "2026-11-01T07:30:00Z"
            ),
            ["05:00", "06:00", "07:00"]
        );
    }
}
