//! How a `SELECT`'s outputs are named and referred to, where Polars SQL alone would refuse the
//! query or answer it wrongly:
//! - Polars names an unnamed expression after its leftmost column (`SUM(revenue)` is
//!   `revenue`, `1` is `literal`) and refuses a projection whose names repeat: `SELECT revenue,
//!   revenue * 2`, `SELECT SUM(revenue), AVG(revenue)` and `SELECT 1, 2` would fail. Such
//!   expressions are named after their own text instead (`"SUM(revenue)"`), as DuckDB and Spark
//!   name them; a projection whose names do not repeat keeps Polars' names.
//! - Polars computes an `ORDER BY` expression over the query's output rather than its input:
//!   `ORDER BY SUM(units)` sorted by the sum of one row's already summed value (a wrong
//!   order, silently) or failed when the sum had an alias. An `ORDER BY` expression that is
//!   one of the outputs becomes that output's position (`ORDER BY 2`), which Polars sorts by.
//!
//! [`super::sql_functions::rewrite`] applies both to every query lakeward runs. This module
//! only rewrites select lists and orderings; it knows nothing of what the names read.

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, OrderByKind, Query, Select,
    SelectItem, SetExpr, Statement, Value, VisitMut, VisitorMut,
};

/// Applies both rewrites to every query and `SELECT` of `statements`; whether any changed.
pub fn rewrite_outputs(statements: &mut [Statement]) -> bool {
    let mut rewriter = Rewriter { changed: false };
    for statement in statements {
        let _ = statement.visit(&mut rewriter);
    }
    rewriter.changed
}

struct Rewriter {
    changed: bool,
}

impl VisitorMut for Rewriter {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        self.changed |= order_by_outputs(query);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> ControlFlow<()> {
        self.changed |= name_repeated_outputs(select);
        ControlFlow::Continue(())
    }
}

/// Replaces each `ORDER BY` expression of `query` that is also one of its outputs by that
/// output's position; whether any was. Columns and positions are left as they are.
fn order_by_outputs(query: &mut Query) -> bool {
    let SetExpr::Select(select) = query.body.as_ref() else { return false };
    let Some(order_by) = &mut query.order_by else { return false };
    let OrderByKind::Expressions(orderings) = &mut order_by.kind else { return false };
    let mut changed = false;
    for ordering in orderings {
        if is_column(&ordering.expr) || matches!(ordering.expr, Expr::Value(_)) {
            continue;
        }
        let position = select.projection.iter().position(|item| match item {
            SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                *expr == ordering.expr
            }
            _ => false,
        });
        if let Some(position) = position {
            ordering.expr = Expr::Value(Value::Number((position + 1).to_string(), false).into());
            changed = true;
        }
    }
    changed
}

/// Gives each unnamed expression of `select` whose name Polars would repeat its text as
/// alias; whether any was. Next to `*`, whose names are not known here, every unnamed
/// expression is named.
fn name_repeated_outputs(select: &mut Select) -> bool {
    let wildcard = select
        .projection
        .iter()
        .any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)));
    let names: Vec<Option<String>> = select.projection.iter().map(output_name).collect();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in names.iter().flatten() {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    let several = select.projection.len() > 1;
    let mut changed = false;
    for (item, name) in select.projection.iter_mut().zip(&names) {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        if is_column(expr) {
            continue;
        }
        let repeated = match name {
            Some(name) => wildcard || uses[name.as_str()] > 1,
            // A name this module cannot foresee may repeat any other.
            None => several,
        };
        if repeated {
            let alias = Ident::with_quote('"', expr.to_string());
            *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias };
            changed = true;
        }
    }
    changed
}

/// The name Polars gives `item`'s output, when this module can foresee it.
fn output_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::UnnamedExpr(expr) => leftmost_name(expr),
        SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
        _ => None,
    }
}

fn is_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

/// The name of an expression's leftmost column, `literal` for a value, `len` for `COUNT(*)`
/// (for a function, of its first argument that is not a value).
fn leftmost_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
        Expr::Value(_) => Some("literal".into()),
        Expr::BinaryOp { left, .. } => leftmost_name(left),
        Expr::UnaryOp { expr, .. } | Expr::Nested(expr) | Expr::Cast { expr, .. } => {
            leftmost_name(expr)
        }
        Expr::Function(function) => {
            let FunctionArguments::List(list) = &function.args else { return None };
            let names: Vec<Option<String>> = list
                .args
                .iter()
                .map(|arg| match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => Some("len".into()),
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)) => leftmost_name(arg),
                    _ => None,
                })
                .collect();
            // A leading value does not name it: `date_trunc('day', ts)` is `ts`.
            let column = names.iter().flatten().find(|name| *name != "literal");
            column.or(names.first()?.as_ref()).cloned()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use sqlparser::ast::{SetExpr, Statement};
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn ordered(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&GenericDialect, sql).unwrap().remove(0);
        let Statement::Query(query) = &mut statement else { panic!("{sql}") };
        order_by_outputs(query);
        statement.to_string()
    }

    fn named(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&GenericDialect, sql).unwrap().remove(0);
        let Statement::Query(query) = &mut statement else { panic!("{sql}") };
        let SetExpr::Select(select) = query.body.as_mut() else { panic!("{sql}") };
        name_repeated_outputs(select);
        statement.to_string()
    }

    #[test]
    fn expressions_polars_would_name_alike_are_named_after_their_text() {
        assert_eq!(
            named("SELECT SUM(revenue), AVG(revenue) FROM t"),
            r#"SELECT SUM(revenue) AS "SUM(revenue)", AVG(revenue) AS "AVG(revenue)" FROM t"#
        );
        assert_eq!(
            named("SELECT revenue, revenue * 2 FROM t"),
            r#"SELECT revenue, revenue * 2 AS "revenue * 2" FROM t"#,
            "a column keeps its name"
        );
        assert_eq!(named("SELECT 1, 2"), r#"SELECT 1 AS "1", 2 AS "2""#);
        assert_eq!(
            named("SELECT *, price * 2 FROM t"),
            r#"SELECT *, price * 2 AS "price * 2" FROM t"#,
            "the names of * are not known"
        );
        assert_eq!(
            named(r#"SELECT "x", "x" + 1 FROM t"#),
            r#"SELECT "x", "x" + 1 AS """x"" + 1" FROM t"#,
            "quotes in the text are escaped"
        );
    }

    #[test]
    fn names_that_do_not_repeat_are_left_to_polars() {
        for sql in [
            "SELECT COUNT(*), SUM(revenue) FROM t",
            "SELECT state, SUM(revenue) AS total, MAX(revenue) FROM t GROUP BY state",
            "SELECT SUM(revenue) FROM t",
            "SELECT a, b FROM t",
            "SELECT CASE WHEN a > 1 THEN 'x' END FROM t",
        ] {
            assert_eq!(named(sql), sql);
        }
    }

    #[test]
    fn a_name_that_cannot_be_foreseen_is_given_beside_others() {
        assert_eq!(
            named("SELECT a, CASE WHEN a > 1 THEN 'x' END FROM t"),
            r#"SELECT a, CASE WHEN a > 1 THEN 'x' END AS "CASE WHEN a > 1 THEN 'x' END" FROM t"#
        );
    }

    #[test]
    fn an_ordering_by_an_output_expression_orders_by_its_position() {
        assert_eq!(
            ordered("SELECT c, SUM(u) FROM t GROUP BY c ORDER BY SUM(u) DESC, c"),
            "SELECT c, SUM(u) FROM t GROUP BY c ORDER BY 2 DESC, c"
        );
        assert_eq!(
            ordered("SELECT c, SUM(u) AS s FROM t GROUP BY c ORDER BY SUM(u)"),
            "SELECT c, SUM(u) AS s FROM t GROUP BY c ORDER BY 2"
        );
        for sql in [
            "SELECT c, SUM(u) FROM t GROUP BY c ORDER BY MAX(u)",
            "SELECT c, u FROM t ORDER BY u, 1",
        ] {
            assert_eq!(ordered(sql), sql, "not an output, or already a column or position");
        }
    }
}
