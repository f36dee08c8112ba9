//! Rows to partitions: [`Splitter`] finds each row's partition under a table's spec and
//! [`Gather`] collects each partition's rows into large writes.
//!
//! Both exist for speed. iceberg-rust's own splitter filters the whole batch once per
//! partition (quadratic for a year of daily partitions) and turns every row's partition value
//! into a `Literal`; ours groups rows by the transformed values as they sit in the Arrow
//! columns and builds one `Literal` per group. And a Parquet writer spends nearly as long on a
//! write of 200 rows as on one of 50,000, so rows wait in [`Gather`] until there are many per
//! partition.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampNanosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StructArray, UInt32Array};
use arrow_schema::{DataType, TimeUnit};
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;
use iceberg::arrow::{arrow_struct_to_literal, PartitionValueCalculator};
use iceberg::spec::{Literal, PartitionKey, PartitionSpec, Struct, StructType};

use super::TableError;

/// One row's value in one partition column, borrowed from the column and cheap to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Value<'a> {
    Null,
    Int(i128),
    /// A float by its bits (partition values compare by identity, not numerically).
    Bits(u64),
    Bytes(&'a [u8]),
}

/// The values of a partition column, or `None` for a type this fast path does not read.
fn column_values(column: &ArrayRef) -> Option<Vec<Value<'_>>> {
    fn each<'a>(column: &'a ArrayRef, value: impl Fn(usize) -> Value<'a>) -> Vec<Value<'a>> {
        (0..column.len()).map(|i| if column.is_null(i) { Value::Null } else { value(i) }).collect()
    }
    let values = match column.data_type() {
        DataType::Int32 => {
            let a = column.as_primitive::<Int32Type>();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Int64 => {
            let a = column.as_primitive::<Int64Type>();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Date32 => {
            let a = column.as_primitive::<Date32Type>();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = column.as_primitive::<TimestampMicrosecondType>();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let a = column.as_primitive::<TimestampNanosecondType>();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Decimal128(..) => {
            let a = column.as_primitive::<Decimal128Type>();
            each(column, |i| Value::Int(a.value(i)))
        }
        DataType::Float32 => {
            let a = column.as_primitive::<Float32Type>();
            each(column, |i| Value::Bits(a.value(i).to_bits().into()))
        }
        DataType::Float64 => {
            let a = column.as_primitive::<Float64Type>();
            each(column, |i| Value::Bits(a.value(i).to_bits()))
        }
        DataType::Boolean => {
            let a = column.as_boolean();
            each(column, |i| Value::Int(a.value(i).into()))
        }
        DataType::Utf8 => {
            let a = column.as_string::<i32>();
            each(column, |i| Value::Bytes(a.value(i).as_bytes()))
        }
        DataType::LargeUtf8 => {
            let a = column.as_string::<i64>();
            each(column, |i| Value::Bytes(a.value(i).as_bytes()))
        }
        DataType::Binary => {
            let a = column.as_binary::<i32>();
            each(column, |i| Value::Bytes(a.value(i)))
        }
        DataType::LargeBinary => {
            let a = column.as_binary::<i64>();
            each(column, |i| Value::Bytes(a.value(i)))
        }
        DataType::FixedSizeBinary(_) => {
            let a = column.as_fixed_size_binary();
            each(column, |i| Value::Bytes(a.value(i)))
        }
        _ => return None,
    };
    Some(values)
}

/// Row numbers of each distinct combination of partition values, in order of first
/// appearance; `None` if a column has a type [`column_values`] does not read.
fn group_rows(values: &StructArray) -> Option<Vec<Vec<u32>>> {
    let rows = values.len();
    let mut group_of = vec![0u32; rows];
    let mut groups = 1;
    // Refine the grouping one partition column at a time: (group so far, value) → group.
    for column in values.columns() {
        let keys = column_values(column)?;
        let mut ids: HashMap<(u32, Value), u32> = HashMap::with_capacity(groups.min(rows));
        for (group, key) in group_of.iter_mut().zip(keys) {
            let next = ids.len() as u32;
            *group = *ids.entry((*group, key)).or_insert(next);
        }
        groups = ids.len();
    }
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); if rows == 0 { 0 } else { groups }];
    for (row, group) in group_of.into_iter().enumerate() {
        members[group as usize].push(row as u32);
    }
    Some(members)
}

/// A batch, and the rows of it each partition gets.
pub struct Assigned {
    pub batch: RecordBatch,
    pub parts: Vec<(PartitionKey, Vec<u32>)>,
}

/// Finds the partition of each row of a batch.
pub struct Splitter {
    calculator: PartitionValueCalculator,
    spec: PartitionSpec,
    schema: iceberg::spec::SchemaRef,
    partition_type: StructType,
}

impl Splitter {
    pub fn try_new(
        schema: &iceberg::spec::SchemaRef,
        spec: &PartitionSpec,
    ) -> Result<Splitter, TableError> {
        Ok(Splitter {
            calculator: PartitionValueCalculator::try_new(spec, schema)?,
            spec: spec.clone(),
            schema: schema.clone(),
            partition_type: spec.partition_type(schema)?,
        })
    }

    /// The partition value of row `row` of `values`.
    fn value_of(&self, values: &ArrayRef, row: usize) -> Result<Struct, TableError> {
        match arrow_struct_to_literal(&values.slice(row, 1), &self.partition_type)?.pop() {
            Some(Some(Literal::Struct(value))) => Ok(value),
            _ => Err(TableError::Invalid(format!("row {row} has no partition value"))),
        }
    }

    /// Which rows of `batch` belong to which partition.
    pub fn assign(&self, batch: RecordBatch) -> Result<Assigned, TableError> {
        let values = self.calculator.calculate(&batch)?;
        let groups = match group_rows(values.as_struct()) {
            Some(groups) => groups,
            None => self.group_by_literal(&values)?,
        };
        let parts = groups
            .into_iter()
            .map(|rows| {
                let value = self.value_of(&values, rows[0] as usize)?;
                Ok((PartitionKey::new(self.spec.clone(), self.schema.clone(), value), rows))
            })
            .collect::<Result<_, TableError>>()?;
        Ok(Assigned { batch, parts })
    }

    /// The slow path for partition types the fast path does not read: a `Literal` per row.
    fn group_by_literal(&self, values: &ArrayRef) -> Result<Vec<Vec<u32>>, TableError> {
        let mut index: HashMap<Struct, usize> = HashMap::new();
        let mut groups: Vec<Vec<u32>> = Vec::new();
        for (row, value) in
            arrow_struct_to_literal(values, &self.partition_type)?.into_iter().enumerate()
        {
            let Some(Literal::Struct(value)) = value else {
                return Err(TableError::Invalid(format!("row {row} has no partition value")));
            };
            let next = groups.len();
            let group = *index.entry(value).or_insert(next);
            if group == next {
                groups.push(Vec::new());
            }
            groups[group].push(row as u32);
        }
        Ok(groups)
    }
}

/// Holds batches back until there are many rows per partition, then joins them and takes each
/// partition's rows out in one go (sequential copies: cheaper than gathering row by row from
/// many batches).
pub struct Gather {
    batches: Vec<RecordBatch>,
    /// Per partition: its key and its rows, numbered across the held batches.
    pending: HashMap<Struct, (PartitionKey, Vec<u32>)>,
    held: usize,
    /// Rows held back across all partitions at most; past it every partition is written.
    limit: usize,
}

impl Gather {
    /// A gather holding at most `limit` rows back.
    pub fn new(limit: usize) -> Gather {
        Gather { batches: Vec::new(), pending: HashMap::new(), held: 0, limit }
    }

    /// Takes an assigned batch; returns what is ready to write. A batch that falls in a single
    /// partition is ready as it is.
    pub fn add(
        &mut self,
        assigned: Assigned,
    ) -> Result<Vec<(PartitionKey, RecordBatch)>, TableError> {
        let Assigned { batch, mut parts } = assigned;
        if parts.len() == 1 {
            let (key, _) = parts.pop().expect("one part");
            return Ok(vec![(key, batch)]);
        }
        let first = self.held as u32;
        self.held += batch.num_rows();
        self.batches.push(batch);
        for (key, rows) in parts {
            let entry = self.pending.entry(key.data().clone()).or_insert_with(|| (key, Vec::new()));
            entry.1.extend(rows.into_iter().map(|row| first + row));
        }
        if self.held >= self.limit {
            return self.drain();
        }
        Ok(Vec::new())
    }

    /// Everything held back, one batch per partition.
    pub fn drain(&mut self) -> Result<Vec<(PartitionKey, RecordBatch)>, TableError> {
        if self.batches.is_empty() {
            return Ok(Vec::new());
        }
        let all = concat_batches(&self.batches[0].schema(), &self.batches)?;
        let ready = self
            .pending
            .drain()
            .map(|(_, (key, rows))| Ok((key, take_record_batch(&all, &UInt32Array::from(rows))?)))
            .collect();
        self.batches.clear();
        self.held = 0;
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int32Array, StringArray};
    use arrow_schema::{Field, Fields};

    use super::*;

    fn struct_of(columns: Vec<ArrayRef>) -> StructArray {
        let fields: Fields = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Arc::new(Field::new(format!("c{i}"), c.data_type().clone(), true)))
            .collect();
        StructArray::new(fields, columns, None)
    }

    #[test]
    fn rows_group_by_every_partition_column_in_order_of_appearance() {
        let days: ArrayRef =
            Arc::new(Int32Array::from(vec![Some(3), Some(1), Some(3), None, Some(1), Some(3)]));
        let kinds: ArrayRef = Arc::new(StringArray::from(vec!["a", "a", "b", "a", "a", "a"]));
        let groups = group_rows(&struct_of(vec![days.clone(), kinds])).unwrap();
        assert_eq!(groups, vec![vec![0, 5], vec![1, 4], vec![2], vec![3]]);
        assert_eq!(
            group_rows(&struct_of(vec![days])).unwrap(),
            vec![vec![0, 2, 5], vec![1, 4], vec![3]]
        );
        let amounts: ArrayRef = Arc::new(Float64Array::from(vec![0.0, -0.0, 0.0]));
        assert_eq!(group_rows(&struct_of(vec![amounts])).unwrap(), vec![vec![0, 2], vec![1]]);
        assert!(group_rows(&struct_of(vec![Arc::new(Int32Array::from(Vec::<i32>::new()))]))
            .unwrap()
            .is_empty());
    }
}
