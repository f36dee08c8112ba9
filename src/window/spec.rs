//! What a window computation is: the windows of event time (`size`, `slide`) and the
//! aggregates, parsed from their DAG-file text (`"count"`, `"p95(response_time_ms)"`,
//! `"count_if(status_code >= 500)"`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Tumbling (`slide == size`) or hopping (`slide < size`) windows, in microseconds, aligned
/// to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Windows {
    pub size: i64,
    pub slide: i64,
}

impl Windows {
    pub fn new(size: i64, slide: i64) -> Result<Windows, String> {
        if size <= 0 || slide <= 0 {
            return Err("window `size` and `slide` must be positive".into());
        }
        if slide > size {
            return Err("`slide` longer than `size` would leave events in no window".into());
        }
        if size % slide != 0 {
            return Err("`size` must be a whole number of `slide`s".into());
        }
        Ok(Windows { size, slide })
    }

    /// How many windows each event falls in.
    pub fn per_event(&self) -> i64 {
        self.size / self.slide
    }

    /// The start of the newest window holding event time `t`; the others start `slide`,
    /// `2 × slide`, … earlier ([`Windows::per_event`] in all).
    pub fn last_start(&self, t: i64) -> i64 {
        t.div_euclid(self.slide) * self.slide
    }
}

/// A comparison of a column with a literal, for `count_if`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub column: String,
    pub op: Comparison,
    pub value: Literal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Comparison::Eq => ordering == Equal,
            Comparison::Ne => ordering != Equal,
            Comparison::Lt => ordering == Less,
            Comparison::Le => ordering != Greater,
            Comparison::Gt => ordering == Greater,
            Comparison::Ge => ordering != Less,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Literal {
    Number(f64),
    Text(String),
}

/// What an aggregate computes over the events of a window and key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Measure {
    Count,
    CountIf(Condition),
    Sum(String),
    Avg(String),
    Min(String),
    Max(String),
    CountDistinct(String),
    /// A quantile in (0, 1), from a sketch (see `sketch`).
    Quantile(String, f64),
}

impl Measure {
    /// Parses `count`, `count_if(column op literal)`, `sum|avg|min|max(column)`,
    /// `count_distinct(column)`, `p50|p95|p99(column)` or `quantile(column, q)`.
    pub fn parse(text: &str) -> Result<Measure, String> {
        let text = text.trim();
        let bad = |why: &str| format!("aggregate `{text}`: {why}");
        if matches!(text, "count" | "count()" | "count(*)") {
            return Ok(Measure::Count);
        }
        let open = text.find('(').ok_or_else(|| {
            bad("expected count, count_if(…), sum, avg, min, max, count_distinct, p50, p95, \
                 p99 (column) or quantile(column, q)")
        })?;
        let inner = text[open + 1..].strip_suffix(')').ok_or_else(|| bad("missing `)`"))?.trim();
        let column = |name: &str| {
            if is_name(name) {
                Ok(name.to_string())
            } else {
                Err(bad("expected a column name"))
            }
        };
        Ok(match &text[..open] {
            "count_if" => Measure::CountIf(parse_condition(inner).map_err(|e| bad(&e))?),
            "sum" => Measure::Sum(column(inner)?),
            "avg" => Measure::Avg(column(inner)?),
            "min" => Measure::Min(column(inner)?),
            "max" => Measure::Max(column(inner)?),
            "count_distinct" => Measure::CountDistinct(column(inner)?),
            "p50" => Measure::Quantile(column(inner)?, 0.50),
            "p90" => Measure::Quantile(column(inner)?, 0.90),
            "p95" => Measure::Quantile(column(inner)?, 0.95),
            "p99" => Measure::Quantile(column(inner)?, 0.99),
            "quantile" => {
                let (name, q) = inner.split_once(',').ok_or_else(|| bad("expected (column, q)"))?;
                let q: f64 = q.trim().parse().map_err(|_| bad("q must be a number"))?;
                if !(q > 0.0 && q < 1.0) {
                    return Err(bad("q must be between 0 and 1"));
                }
                Measure::Quantile(column(name.trim())?, q)
            }
            other => return Err(bad(&format!("unknown function `{other}`"))),
        })
    }

    /// The column the aggregate reads, if any.
    pub fn columns(&self) -> Vec<&str> {
        match self {
            Measure::Count => vec![],
            Measure::CountIf(c) => vec![c.column.as_str()],
            Measure::Sum(c)
            | Measure::Avg(c)
            | Measure::Min(c)
            | Measure::Max(c)
            | Measure::CountDistinct(c)
            | Measure::Quantile(c, _) => vec![c.as_str()],
        }
    }

    /// Whether the result is a count (an integer column), else a number.
    pub fn is_count(&self) -> bool {
        matches!(self, Measure::Count | Measure::CountIf(_) | Measure::CountDistinct(_))
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::Count => write!(f, "count"),
            Measure::CountIf(c) => write!(f, "count_if({} {:?} {:?})", c.column, c.op, c.value),
            Measure::Sum(c) => write!(f, "sum({c})"),
            Measure::Avg(c) => write!(f, "avg({c})"),
            Measure::Min(c) => write!(f, "min({c})"),
            Measure::Max(c) => write!(f, "max({c})"),
            Measure::CountDistinct(c) => write!(f, "count_distinct({c})"),
            Measure::Quantile(c, q) => write!(f, "quantile({c}, {q})"),
        }
    }
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    const OPS: [(&str, Comparison); 7] = [
        (">=", Comparison::Ge),
        ("<=", Comparison::Le),
        ("!=", Comparison::Ne),
        ("<>", Comparison::Ne),
        ("=", Comparison::Eq),
        (">", Comparison::Gt),
        ("<", Comparison::Lt),
    ];
    let (at, symbol, op) = OPS
        .iter()
        .filter_map(|(symbol, op)| text.find(symbol).map(|at| (at, *symbol, *op)))
        .min_by_key(|(at, symbol, _)| (*at, std::cmp::Reverse(symbol.len())))
        .ok_or("expected `column op value` with op one of = != < <= > >=")?;
    let column = text[..at].trim();
    let literal = text[at + symbol.len()..].trim();
    if !is_name(column) {
        return Err(format!("`{column}` is not a column name"));
    }
    let value = if let Some(quoted) = literal.strip_prefix('\'').and_then(|l| l.strip_suffix('\''))
    {
        Literal::Text(quoted.to_string())
    } else {
        Literal::Number(
            literal.parse().map_err(|_| format!("`{literal}` is neither a number nor 'text'"))?,
        )
    };
    Ok(Condition { column: column.to_string(), op, value })
}

fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_parse_and_bad_ones_say_why() {
        assert_eq!(Measure::parse("count(*)").unwrap(), Measure::Count);
        assert_eq!(
            Measure::parse("p95(response_time_ms)").unwrap(),
            Measure::Quantile("response_time_ms".into(), 0.95)
        );
        assert_eq!(
            Measure::parse("count_if(status_code >= 500)").unwrap(),
            Measure::CountIf(Condition {
                column: "status_code".into(),
                op: Comparison::Ge,
                value: Literal::Number(500.0)
            })
        );
        assert_eq!(Measure::parse("count_if(method = 'POST')").unwrap().columns(), vec!["method"]);
        for (text, why) in [
            ("median(x)", "unknown function `median`"),
            ("sum(a b)", "expected a column name"),
            ("quantile(x, 2)", "between 0 and 1"),
            ("count_if(x ~ 3)", "expected `column op value`"),
            ("count_if(x > abc)", "neither a number"),
        ] {
            let error = Measure::parse(text).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn hopping_windows_cover_each_event_size_over_slide_times() {
        let minute = 60_000_000;
        let w = Windows::new(5 * minute, minute).unwrap();
        assert_eq!(w.per_event(), 5);
        assert_eq!(w.last_start(7 * minute + 3), 7 * minute);
        assert_eq!(w.last_start(-1), -minute);
        assert!(Windows::new(minute, 2 * minute).is_err());
        assert!(Windows::new(90_000_000, minute).is_err());
    }
}
