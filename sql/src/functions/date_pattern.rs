//! Flink's date patterns (`yyyy-MM-dd HH:mm:ss.SSS`), the letters of Java's
//! `DateTimeFormatter`, which Flink's `DATE_FORMAT` uses. A pattern is compiled
//! once into pieces, then each row is written straight into the output buffer,
//! with no allocation per row. A letter Eddy does not support is refused by name
//! rather than copied through as text (which is how DataFusion's `date_format`
//! turns `yyyy-MM-dd` into the answer `yyyy-MM-dd`).

use std::fmt::{self, Write};

use chrono::{Datelike, NaiveDateTime, Timelike};

/// One field of a date pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// `y`, `u`: the year; `yy` its last two digits.
    Year,
    /// `M`, `MM`: the month number; `MMM` `Feb`, `MMMM` `February`, `MMMMM` `F`.
    Month,
    /// `Q`, `q`: the quarter number; `QQQ` `Q1`, `QQQQ` `1st quarter`.
    Quarter,
    /// `d`: the day of the month.
    Day,
    /// `D`: the day of the year.
    DayOfYear,
    /// `E`: the day's name, `Thu`; `EEEE` `Thursday`, `EEEEE` `T`.
    DayName,
    /// `a`: `AM` or `PM`.
    AmPm,
    /// `H`: the hour, 0-23.
    Hour,
    /// `k`: the hour, 1-24.
    HourFrom1,
    /// `h`: the hour of the half day, 1-12.
    HalfDayHour,
    /// `K`: the hour of the half day, 0-11.
    HalfDayHourFrom0,
    /// `m`: the minute.
    Minute,
    /// `s`: the second.
    Second,
    /// `S`: the fraction of the second, as many digits as letters.
    Fraction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field { field: Field, letters: usize },
}

/// What a day past its month's end means when text is read: Flink's
/// `TO_TIMESTAMP` takes the month's last day (Java's "smart" resolving), its
/// `TO_DATE` gives NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PastMonthEnd {
    LastDay,
    NoDate,
}

/// A compiled date pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DatePattern {
    pieces: Vec<Piece>,
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

impl DatePattern {
    /// Compiles `pattern`, or says which letter (or count of letters) is not supported.
    pub(super) fn parse(pattern: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    text.push('\'');
                    continue;
                }
                // A quoted literal, with '' inside it for one quote.
                loop {
                    match chars.next() {
                        None => return Err(format!("the pattern '{pattern}' has a quote ' that is never closed; write '' for a literal quote")),
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(other) => text.push(other),
                    }
                }
                continue;
            }
            if !c.is_ascii_alphabetic() {
                if matches!(c, '[' | ']' | '{' | '}' | '#') {
                    return Err(format!(
                        "the pattern character '{c}' (optional sections and reserved characters) is not supported; quote it ('{c}') to print it"
                    ));
                }
                text.push(c);
                continue;
            }
            let mut letters = 1;
            while chars.peek() == Some(&c) {
                chars.next();
                letters += 1;
            }
            let (field, most) = match c {
                'y' | 'u' => (Field::Year, 19),
                'M' | 'L' => (Field::Month, 5),
                'Q' | 'q' => (Field::Quarter, 4),
                'd' => (Field::Day, 2),
                'D' => (Field::DayOfYear, 3),
                'E' => (Field::DayName, 5),
                'a' => (Field::AmPm, 1),
                'H' => (Field::Hour, 2),
                'k' => (Field::HourFrom1, 2),
                'h' => (Field::HalfDayHour, 2),
                'K' => (Field::HalfDayHourFrom0, 2),
                'm' => (Field::Minute, 2),
                's' => (Field::Second, 2),
                'S' => (Field::Fraction, 9),
                other => {
                    return Err(format!(
                        "the pattern letter '{other}' is not supported; supported: y u M L Q q d D E a H k h K m s S, text in single quotes ('T')"
                    ))
                }
            };
            if letters > most {
                return Err(format!("too many pattern letters '{}' ({letters}; at most {most})", c));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Field { field, letters });
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(DatePattern { pieces })
    }

    /// Reads `text` written in this pattern: fields it lacks are those of
    /// 1970-01-01 00:00:00; None when the text does not fit the pattern (or names
    /// no real date), as Flink gives NULL then. `days` says what a day past the
    /// month's end (29 February 2023) is.
    pub(super) fn parse_text(&self, text: &str, days: PastMonthEnd) -> Option<NaiveDateTime> {
        let (mut year, mut month, mut day, mut hour, mut minute, mut second, mut nanos) = (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64, 0i64);
        let mut half_day: Option<bool> = None;
        let mut rest = text;
        for (i, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Text(literal) => rest = rest.strip_prefix(literal.as_str())?,
                Piece::Field { field, letters } => {
                    // A field followed directly by another number takes exactly its letters' digits.
                    let fixed = matches!(self.pieces.get(i + 1), Some(Piece::Field { .. }));
                    match field {
                        Field::AmPm => {
                            let pm = if rest.starts_with("PM") {
                                true
                            } else if rest.starts_with("AM") {
                                false
                            } else {
                                return None;
                            };
                            half_day = Some(pm);
                            rest = &rest[2..];
                        }
                        Field::Month if *letters >= 3 => {
                            let (index, name) = MONTHS.iter().enumerate().find_map(|(i, name)| {
                                let name = if *letters == 3 { &name[..3] } else { name };
                                rest.starts_with(name).then_some((i, name))
                            })?;
                            month = index as i64 + 1;
                            rest = &rest[name.len()..];
                        }
                        Field::DayName | Field::Quarter => return None,
                        _ => {
                            let most = if fixed { *letters } else { 9 };
                            let digits = rest.bytes().take(most).take_while(u8::is_ascii_digit).count();
                            if digits == 0 || (fixed && digits < *letters) {
                                return None;
                            }
                            let value: i64 = rest[..digits].parse().ok()?;
                            rest = &rest[digits..];
                            match field {
                                Field::Year if *letters == 2 => year = 2000 + value,
                                Field::Year => year = value,
                                Field::Month => month = value,
                                Field::Day => day = value,
                                Field::DayOfYear => {
                                    let date = chrono::NaiveDate::from_yo_opt(i32::try_from(year).ok()?, u32::try_from(value).ok()?)?;
                                    (month, day) = (i64::from(date.month()), i64::from(date.day()));
                                }
                                Field::Hour | Field::HalfDayHourFrom0 => hour = value,
                                Field::HourFrom1 => hour = value % 24,
                                Field::HalfDayHour => hour = value % 12,
                                Field::Minute => minute = value,
                                Field::Second => second = value,
                                Field::Fraction => nanos = value * 10i64.pow(9u32.saturating_sub(digits as u32)),
                                _ => return None,
                            }
                        }
                    }
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        if half_day == Some(true) && hour < 12 {
            hour += 12;
        }
        let (year, month, day) = (i32::try_from(year).ok()?, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
        let date = match chrono::NaiveDate::from_ymd_opt(year, month, day) {
            Some(date) => date,
            None if days == PastMonthEnd::LastDay && (29..=31).contains(&day) => {
                (28..day).rev().find_map(|last| chrono::NaiveDate::from_ymd_opt(year, month, last))?
            }
            None => return None,
        };
        date.and_hms_nano_opt(u32::try_from(hour).ok()?, u32::try_from(minute).ok()?, u32::try_from(second).ok()?, u32::try_from(nanos).ok()?)
    }

    /// Writes `at` in this pattern to `out`.
    pub(super) fn format(&self, at: &NaiveDateTime, out: &mut impl Write) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.write_str(text)?,
                Piece::Field { field, letters } => write_field(*field, *letters, at, out)?,
            }
        }
        Ok(())
    }
}

fn write_field(field: Field, letters: usize, at: &NaiveDateTime, out: &mut impl Write) -> fmt::Result {
    let number = |out: &mut dyn Write, value: i64| write!(out, "{value:0letters$}");
    match field {
        Field::Year if letters == 2 => write!(out, "{:02}", at.year().rem_euclid(100)),
        Field::Year => {
            let year = at.year();
            // DateTimeFormatter puts a '+' before a year wider than four letters allow.
            if letters >= 4 && year > 9999 {
                out.write_char('+')?;
            }
            number(out, i64::from(year))
        }
        Field::Month => match letters {
            1 | 2 => number(out, i64::from(at.month())),
            3 => out.write_str(&MONTHS[at.month0() as usize][..3]),
            4 => out.write_str(MONTHS[at.month0() as usize]),
            _ => out.write_str(&MONTHS[at.month0() as usize][..1]),
        },
        Field::Quarter => {
            let quarter = at.month0() / 3 + 1;
            match letters {
                1 | 2 => number(out, i64::from(quarter)),
                3 => write!(out, "Q{quarter}"),
                _ => write!(out, "{}", ["1st quarter", "2nd quarter", "3rd quarter", "4th quarter"][quarter as usize - 1]),
            }
        }
        Field::Day => number(out, i64::from(at.day())),
        Field::DayOfYear => number(out, i64::from(at.ordinal())),
        Field::DayName => {
            let name = DAYS[at.weekday().num_days_from_monday() as usize];
            match letters {
                1..=3 => out.write_str(&name[..3]),
                4 => out.write_str(name),
                _ => out.write_str(&name[..1]),
            }
        }
        Field::AmPm => out.write_str(if at.hour() < 12 { "AM" } else { "PM" }),
        Field::Hour => number(out, i64::from(at.hour())),
        Field::HourFrom1 => number(out, i64::from(if at.hour() == 0 { 24 } else { at.hour() })),
        Field::HalfDayHour => number(out, i64::from(if at.hour().is_multiple_of(12) { 12 } else { at.hour() % 12 })),
        Field::HalfDayHourFrom0 => number(out, i64::from(at.hour() % 12)),
        Field::Minute => number(out, i64::from(at.minute())),
        Field::Second => number(out, i64::from(at.second())),
        Field::Fraction => {
            // The first `letters` digits of the nanoseconds, truncated.
            let nanos = at.nanosecond() % 1_000_000_000;
            let digits = nanos / 10u32.pow(9 - letters as u32);
            write!(out, "{digits:0letters$}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn format(pattern: &str, at: NaiveDateTime) -> String {
        let mut out = String::new();
        DatePattern::parse(pattern).unwrap().format(&at, &mut out).unwrap();
        out
    }

    #[test]
    fn fields_literals_and_quotes() {
        let at = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap().and_hms_milli_opt(13, 5, 9, 123).unwrap();
        assert_eq!(format("yyyy-MM-dd HH:mm:ss.SSS", at), "2024-02-29 13:05:09.123");
        assert_eq!(format("yy/M/d h a 'o''clock' ''", at), "24/2/29 1 PM o'clock '");
        assert_eq!(format("EEE EEEE MMM MMMM D qqq", at), "Thu Thursday Feb February 60 Q1");
    }

    #[test]
    fn text_is_read_back() {
        let at = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap().and_hms_milli_opt(13, 5, 9, 120).unwrap();
        let parse = |pattern: &str, text: &str| DatePattern::parse(pattern).unwrap().parse_text(text, PastMonthEnd::NoDate);
        assert_eq!(parse("yyyy-MM-dd HH:mm:ss.SS", "2024-02-29 13:05:09.12"), Some(at));
        assert_eq!(parse("yyyyMMddHHmmss", "20240229130509"), Some(at.with_nanosecond(0).unwrap()));
        assert_eq!(parse("dd MMM yyyy", "29 Feb 2024"), Some(at.date().and_hms_opt(0, 0, 0).unwrap()));
        assert_eq!(parse("yyyy-MM-dd", "2023-02-29"), None);
        assert_eq!(parse("yyyy-MM-dd", "2024-02-29 extra"), None);
    }

    #[test]
    fn unsupported_letters_are_named() {
        assert!(DatePattern::parse("yyyy-MM-dd z").unwrap_err().contains("'z'"));
        assert!(DatePattern::parse("ddd").unwrap_err().contains("'d'"));
        assert!(DatePattern::parse("'open").unwrap_err().contains("never closed"));
    }
}
