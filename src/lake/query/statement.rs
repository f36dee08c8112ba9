//! What a console query reads: the statement parsed, checked to be one read-only query over
//! lake names, and rewritten into Polars SQL over bound names (`__lw0`, `__lw1`, …), one per
//! table or dataset reference, each with its time travel and the comparisons of its `WHERE`
//! that can prune files.
//!
//! Names: `namespace.table` is an Iceberg table; a quoted name with a slash
//! (`"silver/orders_enriched"`) is a dataset; anything else must be a CTE of the query. Time
//! travel follows the table name, before its alias: `FOR VERSION AS OF <snapshot id>`,
//! `FOR TIMESTAMP AS OF '<time>'` (`FOR` optional, Spark's spelling; `FOR SYSTEM_TIME AS OF`
//! too). Table functions (`read_parquet('…')`) and every statement but a query are refused:
//! a query reads nothing but the lake names it resolves here. This module parses; it reads no
//! data and knows nothing of where tables live.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Ident, ObjectName, Query, Select, SetExpr, Statement, TableAlias,
    TableFactor, UnaryOperator, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError, ParserOptions};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use super::QueryError;
use crate::lake::engine::is_distinct_aggregate;
use crate::lake::tables::Comparison;

/// A statement ready for Polars: its text over bound names, and what each name reads.
#[derive(Debug)]
pub struct Bound {
    pub sql: String,
    pub sources: Vec<Source>,
    /// The query has an aggregate over distinct values (`COUNT(DISTINCT x)`).
    pub aggregates_distinct: bool,
}

/// One reference to the lake in a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The name the rewritten query reads it by.
    pub bound_as: String,
    pub target: Target,
    pub version: Option<Version>,
    /// Comparisons every row read from it must pass (`WHERE` conjuncts on its columns).
    pub comparisons: Vec<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `namespace.table`.
    Table(String),
    /// A dataset path in the warehouse.
    Dataset(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Table(name) | Target::Dataset(name) => f.write_str(name),
        }
    }
}

/// Which snapshot a time-travelling reference reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Snapshot(i64),
    /// The snapshot current at this time, in milliseconds since the epoch.
    AsOfMillis(i64),
}

/// Binds the lake names of `sql` (one query statement).
pub fn bind(sql: &str) -> Result<Bound, QueryError> {
    let (text, versions) = take_versions(sql)?;
    let mut statements = Parser::new(&GenericDialect)
        .with_options(ParserOptions { trailing_commas: true, ..Default::default() })
        .try_with_sql(&text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| syntax_error(e, &text))?;
    let mut statement = match statements.len() {
        0 => return Err(QueryError::Refused("the query is empty".into())),
        1 => statements.remove(0),
        n => return Err(QueryError::Refused(format!("{n} statements: run one query at a time"))),
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(QueryError::Refused(
            "only queries (SELECT, WITH …, VALUES) can be run: the lake is read-only here".into(),
        ));
    }
    let mut binder = Binder { versions, ..Binder::default() };
    if let ControlFlow::Break(e) = statement.visit(&mut binder) {
        return Err(e);
    }
    if let Some((location, _)) = binder.versions.iter().next() {
        return Err(QueryError::Syntax {
            message: "time travel (`FOR VERSION AS OF …`) must follow a table name".into(),
            line: location.0,
            column: location.1,
        });
    }
    Ok(Bound {
        sql: statement.to_string(),
        sources: binder.sources,
        aggregates_distinct: binder.aggregates_distinct,
    })
}

/// A parser error with its position: the one it names (`… at Line: 1, Column: 15`), or the end
/// of `sql` when the query stopped short.
fn syntax_error(e: ParserError, sql: &str) -> QueryError {
    let message = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "the query nests too deeply".into(),
    };
    let position = message.rsplit_once(" at Line: ").and_then(|(_, at)| {
        let (line, column) = at.split_once(", Column: ")?;
        Some((line.trim().parse().ok()?, column.trim().parse().ok()?))
    });
    let end = || {
        let last = sql.trim_end().lines().last().unwrap_or("");
        let line = sql.trim_end().lines().count().max(1) as u64;
        (line, last.chars().count() as u64 + 1)
    };
    let (line, column) = match position {
        Some(at) => at,
        None if message.ends_with("EOF") => end(),
        None => (0, 0),
    };
    QueryError::Syntax { message, line, column }
}

/// `(line, column)` of a token, both from 1.
type Position = (u64, u64);

fn position(location: &Location) -> Position {
    (location.line, location.column)
}

/// `sql` with its time-travel clauses blanked out (so positions in errors stay right), and
/// each clause by the position of the name token it follows.
fn take_versions(sql: &str) -> Result<(String, HashMap<Position, Version>), QueryError> {
    let tokens = Tokenizer::new(&GenericDialect, sql).tokenize_with_location().map_err(|e| {
        QueryError::Syntax {
            message: e.message.clone(),
            line: e.location.line,
            column: e.location.column,
        }
    })?;
    let words: Vec<&sqlparser::tokenizer::TokenWithSpan> =
        tokens.iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
    let keyword = |i: usize, expected: &str| matches!(words.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(expected));
    let mut versions = HashMap::new();
    let mut blanks = Vec::new();
    let mut i = 1;
    while i < words.len() {
        let start = i;
        let at = if keyword(i, "for") { i + 1 } else { i };
        let kind = ["version", "timestamp", "system_time"].into_iter().find(|k| keyword(at, k));
        let (Some(kind), true, true) = (kind, keyword(at + 1, "as"), keyword(at + 2, "of")) else {
            i += 1;
            continue;
        };
        let value_token = words.get(at + 3).ok_or_else(|| QueryError::Syntax {
            message: "time travel needs a snapshot id or a time after `AS OF`".into(),
            line: words[at + 2].span.end.line,
            column: words[at + 2].span.end.column,
        })?;
        let bad = |message: String| QueryError::Syntax {
            message,
            line: value_token.span.start.line,
            column: value_token.span.start.column,
        };
        let version = match (kind, &value_token.token) {
            ("version", Token::Number(n, _)) => Version::Snapshot(
                n.parse().map_err(|_| bad(format!("`{n}` is not a snapshot id")))?,
            ),
            ("version", other) => return Err(bad(format!("`{other}` is not a snapshot id"))),
            (_, Token::SingleQuotedString(time)) => Version::AsOfMillis(
                crate::time::parse_instant(time)
                    .map_err(|e| bad(format!("`{time}` is not a time: {e}")))?
                    .div_euclid(1000),
            ),
            (_, other) => {
                return Err(bad(format!(
                    "`{other}` is not a time: write it quoted, '2024-01-05 12:00:00' (UTC)"
                )))
            }
        };
        versions.insert(position(&words[start - 1].span.start), version);
        blanks.push((words[start].span.start, value_token.span.end));
        i = at + 4;
    }
    Ok((blank(sql, &blanks), versions))
}

/// `sql` with the characters from each `(start, end)` (end exclusive) replaced by spaces.
fn blank(sql: &str, ranges: &[(Location, Location)]) -> String {
    if ranges.is_empty() {
        return sql.to_string();
    }
    let (mut line, mut column) = (1u64, 1u64);
    let mut out = String::with_capacity(sql.len());
    for ch in sql.chars() {
        let here = (line, column);
        let inside = ranges.iter().any(|(s, e)| here >= position(s) && here < position(e));
        out.push(if inside && ch != '\n' { ' ' } else { ch });
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    out
}

#[derive(Default)]
struct Binder {
    versions: HashMap<Position, Version>,
    ctes: HashSet<String>,
    /// Comparisons for the table references of the selects seen so far, by the position of
    /// the reference's last name part.
    comparisons: HashMap<Position, Vec<Comparison>>,
    sources: Vec<Source>,
    aggregates_distinct: bool,
}

impl VisitorMut for Binder {
    type Break = QueryError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<QueryError> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
            }
        }
        if let SetExpr::Table(_) = query.body.as_ref() {
            return ControlFlow::Break(QueryError::Refused(
                "`TABLE name` is not supported: write SELECT * FROM name".into(),
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<QueryError> {
        let Some(selection) = &select.selection else { return ControlFlow::Continue(()) };
        let mut conjuncts = Vec::new();
        collect_conjuncts(selection, &mut conjuncts);
        let factors: Vec<&TableFactor> = select
            .from
            .iter()
            .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
            .collect();
        let alone = factors.len() == 1;
        for factor in factors {
            let TableFactor::Table { name, alias, .. } = factor else { continue };
            let Some(last) = last_ident(name) else { continue };
            let qualifier = alias.as_ref().map_or(&last.value, |a| &a.name.value);
            let mine = conjuncts
                .iter()
                .filter(|(q, _)| match q {
                    Some(q) => q.eq_ignore_ascii_case(qualifier),
                    None => alone,
                })
                .map(|(_, c)| c.clone())
                .collect();
            self.comparisons.insert(position(&last.span.start), mine);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<QueryError> {
        self.aggregates_distinct |= is_distinct_aggregate(expr);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<QueryError> {
        match factor {
            TableFactor::Table { name, alias, args, version, .. } => {
                if args.is_some() {
                    return ControlFlow::Break(QueryError::Refused(format!(
                        "table function `{name}(…)`: queries read lake tables and datasets by \
                         name only"
                    )));
                }
                if version.is_some() {
                    return ControlFlow::Break(QueryError::Refused(
                        "write time travel as FOR VERSION AS OF <snapshot> or FOR TIMESTAMP AS \
                         OF '<time>'"
                            .into(),
                    ));
                }
                match self.bind_table(name, alias) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => ControlFlow::Break(e),
                }
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(QueryError::Refused(format!(
                "`{other}` cannot be read: queries read lake tables and datasets by name only"
            ))),
        }
    }
}

impl Binder {
    /// Rewrites one table reference to its bound name, recording what it reads.
    fn bind_table(
        &mut self,
        name: &mut ObjectName,
        alias: &mut Option<TableAlias>,
    ) -> Result<(), QueryError> {
        let parts: Vec<&Ident> = name.0.iter().filter_map(|p| p.as_ident()).collect();
        if parts.len() != name.0.len() {
            return Err(QueryError::Refused(format!("`{name}` is not a table name")));
        }
        let Some(last) = parts.last().copied().cloned() else { return Ok(()) };
        if parts.len() == 1 && self.ctes.contains(&last.value.to_ascii_lowercase()) {
            return Ok(());
        }
        let (target, short) = match parts.as_slice() {
            [namespace, table] => {
                (Target::Table(format!("{}.{}", namespace.value, table.value)), table.value.clone())
            }
            [path] if path.value.contains('/') => {
                let short = path.value.trim_end_matches('/').rsplit('/').next().unwrap_or("");
                (Target::Dataset(path.value.clone()), short.to_string())
            }
            _ => {
                return Err(QueryError::UnknownName(format!(
                    "`{name}` is not a table or dataset: name a table `namespace.table` \
                     (`bronze.orders`) and a dataset by its quoted path \
                     (\"silver/orders_enriched\")"
                )))
            }
        };
        let at = position(&last.span.start);
        let bound_as = format!("__lw{}", self.sources.len());
        self.sources.push(Source {
            bound_as: bound_as.clone(),
            target,
            version: self.versions.remove(&at),
            comparisons: self.comparisons.remove(&at).unwrap_or_default(),
        });
        *name = ObjectName::from(vec![Ident::new(bound_as)]);
        if alias.is_none() {
            *alias = Some(TableAlias {
                explicit: true,
                name: Ident::with_quote('"', short),
                columns: Vec::new(),
                at: None,
            });
        }
        Ok(())
    }
}

fn last_ident(name: &ObjectName) -> Option<&Ident> {
    name.0.last().and_then(|p| p.as_ident())
}

/// The `column op literal` conjuncts of a `WHERE`, each with its qualifier (`o.order_date`).
fn collect_conjuncts(expr: &Expr, out: &mut Vec<(Option<String>, Comparison)>) {
    match expr {
        Expr::Nested(inner) => collect_conjuncts(inner, out),
        Expr::BinaryOp { left, op: BinaryOperator::And, right } => {
            collect_conjuncts(left, out);
            collect_conjuncts(right, out);
        }
        Expr::BinaryOp { left, op, right } => {
            let Some(op) = comparison_op(op) else { return };
            if let (Some((q, column)), Some(value)) = (column_ref(left), literal(right)) {
                out.push((q, Comparison { column, op, value }));
            } else if let (Some(value), Some((q, column))) = (literal(left), column_ref(right)) {
                out.push((q, Comparison { column, op: mirrored(op), value }));
            }
        }
        Expr::Between { expr, negated: false, low, high } => {
            if let (Some((q, column)), Some(low), Some(high)) =
                (column_ref(expr), literal(low), literal(high))
            {
                out.push((q.clone(), Comparison { column: column.clone(), op: ">=", value: low }));
                out.push((q, Comparison { column, op: "<=", value: high }));
            }
        }
        _ => {}
    }
}

fn comparison_op(op: &BinaryOperator) -> Option<&'static str> {
    Some(match op {
        BinaryOperator::Eq => "=",
        BinaryOperator::NotEq => "!=",
        BinaryOperator::Lt => "<",
        BinaryOperator::LtEq => "<=",
        BinaryOperator::Gt => ">",
        BinaryOperator::GtEq => ">=",
        _ => return None,
    })
}

/// `a op b` as `b op' a`.
fn mirrored(op: &'static str) -> &'static str {
    match op {
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        same => same,
    }
}

fn column_ref(expr: &Expr) -> Option<(Option<String>, String)> {
    match expr {
        Expr::Identifier(column) => Some((None, column.value.clone())),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [qualifier, column] => Some((Some(qualifier.value.clone()), column.value.clone())),
            _ => None,
        },
        Expr::Nested(inner) => column_ref(inner),
        _ => None,
    }
}

/// A constant as text: numbers, strings, `DATE '…'`, `CAST('…' AS …)`, negative numbers.
fn literal(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => Some(n.clone()),
            Value::SingleQuotedString(s) => Some(s.clone()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        },
        Expr::TypedString(typed) => match &typed.value.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => {
            literal(expr).filter(|n| n.parse::<f64>().is_ok()).map(|n| format!("-{n}"))
        }
        Expr::Cast { expr, .. } | Expr::Nested(expr) => literal(expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{bind, Target, Version};
    use crate::lake::query::QueryError;

    #[test]
    fn names_are_bound_with_their_pruning_comparisons() {
        let bound = bind(
            "WITH recent AS (SELECT * FROM bronze.orders WHERE order_date >= DATE '2024-01-05') \
             SELECT o.order_id, c.state FROM recent o \
             JOIN \"silver/customers\" c ON o.customer_id = c.customer_id \
             WHERE c.state = 'CA' AND 10 < c.age",
        )
        .unwrap();
        assert_eq!(bound.sources.len(), 2);
        let orders = &bound.sources[0];
        assert_eq!(orders.target, Target::Table("bronze.orders".into()));
        assert_eq!(orders.comparisons.len(), 1);
        assert_eq!(orders.comparisons[0].to_string(), "order_date >= 2024-01-05");
        let customers = &bound.sources[1];
        assert_eq!(customers.target, Target::Dataset("silver/customers".into()));
        let pruning: Vec<String> = customers.comparisons.iter().map(|c| c.to_string()).collect();
        assert_eq!(pruning, ["state = CA", "age > 10"]);
        assert!(bound.sql.contains("FROM __lw0 AS \"orders\""), "{}", bound.sql);
        assert!(bound.sql.contains("JOIN __lw1 c ON"), "{}", bound.sql);
        assert!(bound.sql.contains("FROM recent o JOIN"), "{}", bound.sql);
    }

    #[test]
    fn time_travel_is_taken_out_of_the_text() {
        let bound = bind(
            "SELECT COUNT(*) FROM gold.daily_sales FOR VERSION AS OF 42 AS d \
             UNION ALL SELECT COUNT(*) FROM gold.daily_sales TIMESTAMP AS OF '2024-01-05 00:00:00'",
        )
        .unwrap();
        assert_eq!(bound.sources[0].version, Some(Version::Snapshot(42)));
        assert_eq!(bound.sources[1].version, Some(Version::AsOfMillis(1_704_412_800_000)));
        assert!(!bound.sql.to_ascii_uppercase().contains("AS OF"), "{}", bound.sql);
    }

    #[test]
    fn anything_but_a_query_over_lake_names_is_refused() {
        for sql in [
            "SELECT * FROM read_parquet('/etc/passwd')",
            "DROP TABLE bronze.orders",
            "SELECT 1; SELECT 2",
            "CREATE TABLE x AS SELECT 1",
        ] {
            assert!(matches!(bind(sql), Err(QueryError::Refused(_))), "{sql}");
        }
        assert!(matches!(bind("SELECT * FROM orders"), Err(QueryError::UnknownName(_))));
        assert!(matches!(bind("SELECT * FROM a.b.c"), Err(QueryError::UnknownName(_))));
        match bind("SELECT * FROM\n  bronze.orders WHER x = 1") {
            Err(QueryError::Syntax { line, column, .. }) => assert_eq!((line, column), (2, 22)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn aggregates_over_distinct_values_are_noticed_anywhere_in_the_query() {
        let distinct = |sql: &str| bind(sql).unwrap().aggregates_distinct;
        assert!(distinct(
            "SELECT state, COUNT(DISTINCT customer_id) FROM bronze.orders GROUP BY 1"
        ));
        assert!(distinct(
            "WITH d AS (SELECT SUM(DISTINCT quantity) AS q FROM bronze.orders) SELECT q + 1 FROM d"
        ));
        assert!(!distinct("SELECT COUNT(*), SUM(quantity) FROM bronze.orders"));
        assert!(!distinct("SELECT DISTINCT state FROM bronze.orders"), "not an aggregate");
    }
}
