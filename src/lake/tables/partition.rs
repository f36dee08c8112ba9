//! Partition specs as DAG files write them: `category`, `day(order_date)`, `month(ts)`,
//! `year(ts)`, `hour(ts)`, `bucket(16, customer_id)`, `truncate(4, sku)`.

use iceberg::spec::{Schema, Transform, UnboundPartitionSpec};

/// One partition field: a transform of a source column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionField {
    pub column: String,
    pub transform: Transform,
}

impl PartitionField {
    /// Parses each of a DAG's `partition_by` entries; the first bad one is the error.
    pub fn parse_all(texts: &[String]) -> Result<Vec<PartitionField>, String> {
        texts.iter().map(|text| PartitionField::parse(text)).collect()
    }

    /// Parses `column` or `transform(column)` or `transform(n, column)`.
    pub fn parse(text: &str) -> Result<PartitionField, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "invalid partition field `{text}`: expected `column`, `day(column)`, `month(column)`, \
                 `year(column)`, `hour(column)`, `bucket(N, column)` or `truncate(W, column)`"
            )
        };
        let Some(open) = text.find('(') else {
            return if is_name(text) {
                Ok(PartitionField { column: text.to_string(), transform: Transform::Identity })
            } else {
                Err(bad())
            };
        };
        let inner = text[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let args: Vec<&str> = inner.split(',').map(str::trim).collect();
        let width = |arg: &str| arg.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(bad);
        let (transform, column) = match (&text[..open], args.as_slice()) {
            ("identity", [column]) => (Transform::Identity, *column),
            ("year", [column]) => (Transform::Year, *column),
            ("month", [column]) => (Transform::Month, *column),
            ("day", [column]) => (Transform::Day, *column),
            ("hour", [column]) => (Transform::Hour, *column),
            ("bucket", [n, column]) => (Transform::Bucket(width(n)?), *column),
            ("truncate", [w, column]) => (Transform::Truncate(width(w)?), *column),
            _ => return Err(bad()),
        };
        if !is_name(column) {
            return Err(bad());
        }
        Ok(PartitionField { column: column.to_string(), transform })
    }

    /// Whether the field is a column as it is (no transform).
    pub fn is_column(&self) -> bool {
        self.transform == Transform::Identity
    }

    /// The partition field's name in the table: `order_date_day`, `category`, `id_bucket_16`.
    pub fn name(&self) -> String {
        match self.transform {
            Transform::Identity => self.column.clone(),
            Transform::Year => format!("{}_year", self.column),
            Transform::Month => format!("{}_month", self.column),
            Transform::Day => format!("{}_day", self.column),
            Transform::Hour => format!("{}_hour", self.column),
            Transform::Bucket(n) => format!("{}_bucket_{n}", self.column),
            Transform::Truncate(w) => format!("{}_trunc_{w}", self.column),
            Transform::Void | Transform::Unknown => format!("{}_void", self.column),
        }
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The partition spec of `fields` over `schema`.
pub fn partition_spec(
    schema: &Schema,
    fields: &[PartitionField],
) -> Result<UnboundPartitionSpec, String> {
    let mut builder = UnboundPartitionSpec::builder();
    for field in fields {
        let source = schema
            .field_by_name(&field.column)
            .ok_or_else(|| format!("partition column `{}` is not in the data", field.column))?;
        builder = builder
            .add_partition_field(source.id, field.name(), field.transform)
            .map_err(|e| format!("partition field `{}`: {}", field.name(), e.message()))?;
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transform_parses() {
        let cases = [
            ("category", Transform::Identity, "category"),
            ("day(order_date)", Transform::Day, "order_date_day"),
            ("month( order_date )", Transform::Month, "order_date_month"),
            ("year(order_date)", Transform::Year, "order_date_year"),
            ("hour(ts)", Transform::Hour, "ts_hour"),
            ("bucket(16, customer_id)", Transform::Bucket(16), "customer_id_bucket_16"),
            ("truncate(4, sku)", Transform::Truncate(4), "sku_trunc_4"),
        ];
        for (text, transform, name) in cases {
            let field = PartitionField::parse(text).unwrap();
            assert_eq!(field.transform, transform, "{text}");
            assert_eq!(field.name(), name);
        }
        for bad in ["day()", "bucket(0, x)", "week(x)", "bucket(x)", "a-b", "day(x"] {
            assert!(PartitionField::parse(bad).is_err(), "{bad}");
        }
    }
}
