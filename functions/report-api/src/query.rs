//! The query string: a date range and an optional source, validated. A bad value is a 400 that names
//! the parameter and the rule, never the value itself.

use chrono::{Days, NaiveDate};

/// Longest range one request may ask for.
pub const MAX_DAYS: u64 = 366;
/// The range when none is given: the last 30 days.
pub const DEFAULT_DAYS: u64 = 30;

/// What the dashboard shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Only leads of this source (UTM source, else source name, else intake endpoint).
    pub source: Option<String>,
}

impl Filter {
    /// Every day of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }

    /// The query string that reproduces this filter (for links), URL-encoded.
    pub fn query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("from", &self.from.to_string());
        q.append_pair("to", &self.to.to_string());
        if let Some(s) = &self.source {
            q.append_pair("source", s);
        }
        q.finish()
    }
}

/// Why a query string was refused (the 400's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{0} must be a date written YYYY-MM-DD")]
    BadDate(&'static str),
    #[error("from must not be after to")]
    Reversed,
    #[error("the range may span at most {MAX_DAYS} days")]
    TooLong,
    #[error("source must be 1 to 64 letters, digits, '.', '_' or '-'")]
    BadSource,
    #[error("{0} is given more than once")]
    Repeated(&'static str),
    #[error("unknown query parameter (known: from, to, source)")]
    Unknown,
}

fn valid_source(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Reads the query string (`None` or empty: the defaults) relative to `today`.
pub fn parse(query: Option<&str>, today: NaiveDate) -> Result<Filter, QueryError> {
    let (mut from, mut to, mut source) = (None, None, None);
    for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let v = v.trim().to_string();
        let (slot, name) = match k.as_ref() {
            "from" => (&mut from, "from"),
            "to" => (&mut to, "to"),
            "source" => (&mut source, "source"),
            _ => return Err(QueryError::Unknown),
        };
        if slot.is_some() {
            return Err(QueryError::Repeated(name));
        }
        *slot = Some(v);
    }
    let date = |v: Option<String>, name: &'static str| -> Result<Option<NaiveDate>, QueryError> {
        match v.filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => NaiveDate::parse_from_str(&v, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| QueryError::BadDate(name)),
        }
    };
    let to = date(to, "to")?.unwrap_or(today);
    let from = date(from, "from")?.unwrap_or_else(|| {
        to.checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(to)
    });
    if from > to {
        return Err(QueryError::Reversed);
    }
    if (to - from).num_days() >= MAX_DAYS as i64 {
        return Err(QueryError::TooLong);
    }
    let source = match source.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if valid_source(&s) => Some(s),
        Some(_) => return Err(QueryError::BadSource),
    };
    Ok(Filter { from, to, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    #[test]
    fn no_query_means_the_last_thirty_days_of_every_source() {
        let f = parse(None, today()).unwrap();
        assert_eq!(f.from.to_string(), "2026-10-30");
        assert_eq!(f.to, today());
        assert_eq!(f.days().count(), 30);
        assert_eq!(f.source, None);
    }

    #[test]
    fn a_range_and_a_source_are_read_and_round_trip() {
        let f = parse(Some("from=2026-11-01&to=2026-11-07&source=google"), today()).unwrap();
        assert_eq!(f.days().count(), 7);
        assert_eq!(f.source.as_deref(), Some("google"));
        assert_eq!(parse(Some(&f.query_string()), today()).unwrap(), f);
    }

    #[test]
    fn bad_input_is_refused_by_name_without_echoing_it() {
        let cases = [
            ("from=<script>", QueryError::BadDate("from")),
            ("to=2026-02-30", QueryError::BadDate("to")),
            ("from=2026-11-10&to=2026-11-01", QueryError::Reversed),
            ("from=2024-01-01&to=2026-01-01", QueryError::TooLong),
            ("source=%3Cimg%20src%3Dx%3E", QueryError::BadSource),
            (
                "from=2026-11-01&from=2026-11-02",
                QueryError::Repeated("from"),
            ),
            ("<b>=1", QueryError::Unknown),
        ];
        for (q, want) in cases {
            let err = parse(Some(q), today()).unwrap_err();
            assert_eq!(err, want, "{q}");
            assert!(!err.to_string().contains('<'), "{q}");
        }
    }
}
