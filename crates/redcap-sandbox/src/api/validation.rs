//! Text validation of imported record values (the
//! `text_validation_type_or_show_slider_number` of a `text` field).
//!
//! `redcap-api.md` does not cover it; the rules here are REDCap's built-in
//! validation types as its data dictionary documents them, written from
//! their meaning (INF):
//!
//! | type | accepted |
//! |---|---|
//! | `integer` | optional sign, digits |
//! | `number` | optional sign, digits with an optional `.` fraction (or `.5`) |
//! | `number_Ndp` (N = 1…4) | optional sign, digits, `.`, exactly N digits |
//! | `*_comma_decimal` variants | the same with `,` |
//! | `date_ymd`, `date_mdy`, `date_dmy` | a real calendar date `YYYY-MM-DD` |
//! | `datetime_*` | `YYYY-MM-DD HH:MM` |
//! | `datetime_seconds_*` | `YYYY-MM-DD HH:MM:SS` |
//! | `time` | `HH:MM`, 00:00–23:59; `time_hh_mm_ss` `HH:MM:SS`; `time_mm_ss` `MM:SS` |
//! | `email` | `local@domain.tld`, no spaces |
//! | `phone` | a North American number: 10 digits once `( ) - . space` are dropped, area code and exchange starting 2–9 |
//! | `zipcode` | 5 digits, or 5+4 (`12345-6789` or `123456789`) |
//! | `alpha_only` | letters only |
//!
//! Dates are imported in the request's `dateFormat` (§1.2: `YMD` default,
//! `MDY`, `DMY`), whatever the field's display format: `MDY`/`DMY` values
//! (`/` or `-` between parts) are turned into `YYYY-MM-DD` before they are
//! checked and stored. Other types (and unknown ones) are not checked.
//! `text_validation_min`/`max` are soft limits in REDCap (an out-of-range
//! value is "admissible", a warning in the web UI): imports accept it.

/// The `dateFormat` of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    Ymd,
    Mdy,
    Dmy,
}

impl DateFormat {
    /// `MDY`, `DMY`, anything else `YMD` (§1.2).
    pub fn from_param(value: &str) -> DateFormat {
        match value {
            "MDY" => DateFormat::Mdy,
            "DMY" => DateFormat::Dmy,
            _ => DateFormat::Ymd,
        }
    }
}

fn is_date_type(vtype: &str) -> bool {
    vtype.starts_with("date_") || vtype.starts_with("datetime_")
}

/// `value` in `YYYY-MM-DD…` when it is an `MDY`/`DMY` date (or datetime) of
/// a date-validated field; `None` when nothing is to be converted.
pub fn to_ymd(vtype: &str, value: &str, format: DateFormat) -> Option<String> {
    if format == DateFormat::Ymd || !is_date_type(vtype) {
        return None;
    }
    let (date, time) = match value.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (value, None),
    };
    let parts: Vec<&str> = date.split(['/', '-']).collect();
    let [a, b, year] = parts.as_slice() else {
        return None;
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(a) && all_digits(b) && all_digits(year)) || a.len() > 2 || b.len() > 2 {
        return None;
    }
    let (month, day) = match format {
        DateFormat::Mdy => (a, b),
        _ => (b, a),
    };
    let mut out = format!("{year}-{month:0>2}-{day:0>2}");
    if let Some(t) = time {
        out.push(' ');
        out.push_str(t);
    }
    Some(out)
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn unsigned(s: &str) -> &str {
    s.strip_prefix(['-', '+']).unwrap_or(s)
}

fn number(s: &str, sep: char) -> bool {
    let s = unsigned(s);
    match s.split_once(sep) {
        None => digits(s),
        Some((whole, frac)) => (whole.is_empty() || digits(whole)) && digits(frac),
    }
}

fn number_dp(s: &str, places: usize, sep: char) -> bool {
    match unsigned(s).split_once(sep) {
        Some((whole, frac)) => digits(whole) && digits(frac) && frac.len() == places,
        None => false,
    }
}

/// `NN` within `0..=max`.
fn two_digits(s: &str, max: u32) -> bool {
    s.len() == 2 && digits(s) && s.parse::<u32>().is_ok_and(|n| n <= max)
}

fn date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return false;
    };
    if y.len() != 4 || !digits(y) || m.len() != 2 || !digits(m) || d.len() != 2 || !digits(d) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (
        y.parse().unwrap_or(0),
        m.parse().unwrap_or(0),
        d.parse().unwrap_or(0),
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `HH:MM` or, with `seconds`, `HH:MM:SS`.
fn clock(s: &str, seconds: bool) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    match (parts.as_slice(), seconds) {
        ([h, m], false) => two_digits(h, 23) && two_digits(m, 59),
        ([h, m, sec], true) => two_digits(h, 23) && two_digits(m, 59) && two_digits(sec, 59),
        _ => false,
    }
}

fn datetime(s: &str, seconds: bool) -> bool {
    s.split_once(' ')
        .is_some_and(|(d, t)| date(d) && clock(t, seconds))
}

fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-'!#$&*/=?^`{|}~".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

fn phone(s: &str) -> bool {
    if !s.chars().all(|c| c.is_ascii_digit() || "()-. ".contains(c)) {
        return false;
    }
    let d: Vec<u8> = s.bytes().filter(u8::is_ascii_digit).collect();
    d.len() == 10 && (b'2'..=b'9').contains(&d[0]) && (b'2'..=b'9').contains(&d[3])
}

fn zipcode(s: &str) -> bool {
    match s.split_once('-') {
        Some((five, four)) => five.len() == 5 && digits(five) && four.len() == 4 && digits(four),
        None => (s.len() == 5 || s.len() == 9) && digits(s),
    }
}

/// Whether `value` (non-empty, already in `YYYY-MM-DD` for dates) passes the
/// validation type `vtype`. Unknown types pass.
pub fn valid(vtype: &str, value: &str) -> bool {
    match vtype {
        "integer" => digits(unsigned(value)),
        "number" => number(value, '.'),
        "number_comma_decimal" => number(value, ','),
        "number_1dp" => number_dp(value, 1, '.'),
        "number_2dp" => number_dp(value, 2, '.'),
        "number_3dp" => number_dp(value, 3, '.'),
        "number_4dp" => number_dp(value, 4, '.'),
        "number_1dp_comma_decimal" => number_dp(value, 1, ','),
        "number_2dp_comma_decimal" => number_dp(value, 2, ','),
        "number_3dp_comma_decimal" => number_dp(value, 3, ','),
        "number_4dp_comma_decimal" => number_dp(value, 4, ','),
        "date_ymd" | "date_mdy" | "date_dmy" => date(value),
        "datetime_ymd" | "datetime_mdy" | "datetime_dmy" => datetime(value, false),
        "datetime_seconds_ymd" | "datetime_seconds_mdy" | "datetime_seconds_dmy" => {
            datetime(value, true)
        }
        "time" => clock(value, false),
        "time_hh_mm_ss" => clock(value, true),
        "time_mm_ss" => value
            .split_once(':')
            .is_some_and(|(m, s)| two_digits(m, 59) && two_digits(s, 59)),
        "email" => email(value),
        "phone" => phone(value),
        "zipcode" => zipcode(value),
        "alpha_only" => value.chars().all(|c| c.is_alphabetic()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for ok in ["0", "-12", "+7", "0012"] {
            assert!(valid("integer", ok), "{ok}");
        }
        for bad in ["1.0", "1e3", "", "-", "12a", " 1"] {
            assert!(!valid("integer", bad), "{bad:?}");
        }
        for ok in ["1", "-1.25", ".5", "+3.0"] {
            assert!(valid("number", ok), "{ok}");
        }
        for bad in ["1.", "1.2.3", "abc", "1,5", "--1"] {
            assert!(!valid("number", bad), "{bad:?}");
        }
        assert!(valid("number_1dp", "22.0"));
        assert!(
            !valid("number_1dp", "22"),
            "the live server refuses 22 for number_1dp"
        );
        assert!(!valid("number_2dp", "1.5"));
        assert!(valid("number_2dp_comma_decimal", "1,50"));
        assert!(valid("number_comma_decimal", "-3,25"));
    }

    #[test]
    fn dates_and_times() {
        assert!(valid("date_ymd", "2024-02-29"));
        assert!(!valid("date_ymd", "2023-02-29"));
        assert!(!valid("date_dmy", "2024-13-01"));
        assert!(
            !valid("date_mdy", "01/31/2024"),
            "unconverted MDY is not a date"
        );
        assert!(!valid("date_ymd", "2024-1-05"));
        assert!(valid("datetime_ymd", "2024-01-05 23:59"));
        assert!(!valid("datetime_ymd", "2024-01-05 24:00"));
        assert!(!valid("datetime_ymd", "2024-01-05"));
        assert!(valid("datetime_seconds_dmy", "2024-01-05 10:11:12"));
        assert!(!valid("datetime_seconds_ymd", "2024-01-05 10:11"));
        assert!(valid("time", "00:00"));
        assert!(!valid("time", "7:30"));
        assert!(valid("time_mm_ss", "59:59"));
        assert!(valid("time_hh_mm_ss", "23:00:01"));
    }

    #[test]
    fn date_format_conversion() {
        use DateFormat::*;
        assert_eq!(
            to_ymd("date_dmy", "31/01/2024", Dmy).as_deref(),
            Some("2024-01-31")
        );
        assert_eq!(
            to_ymd("date_ymd", "1/2/2024", Mdy).as_deref(),
            Some("2024-01-02")
        );
        assert_eq!(
            to_ymd("datetime_mdy", "12-31-2024 08:15", Mdy).as_deref(),
            Some("2024-12-31 08:15")
        );
        assert_eq!(to_ymd("date_ymd", "2024-01-02", Ymd), None);
        assert_eq!(to_ymd("integer", "1/2/2024", Mdy), None);
        assert_eq!(to_ymd("date_ymd", "2024-01-02", Mdy), None, "not MDY");
    }

    #[test]
    fn contact_fields() {
        assert!(valid("email", "joe@user.com"));
        assert!(valid("email", "a.b+c@sub.example.org"));
        for bad in ["joe", "joe@", "@x.com", "joe@x", "jo e@x.com", "joe@x.c0m"] {
            assert!(!valid("email", bad), "{bad}");
        }
        assert!(valid("phone", "(415) 555-1212"));
        assert!(valid("phone", "415.555.1212"));
        assert!(!valid("phone", "115 555 1212"));
        assert!(!valid("phone", "415 555 121"));
        assert!(!valid("phone", "415-555-1212 x3"));
        assert!(valid("zipcode", "94043"));
        assert!(valid("zipcode", "94043-1234"));
        assert!(valid("zipcode", "940431234"));
        assert!(!valid("zipcode", "9404"));
        assert!(valid("alpha_only", "Abc"));
        assert!(!valid("alpha_only", "Ab1"));
        assert!(valid("signature", "anything"), "unknown types pass");
    }
}
