//! The window computation over record batches: each event's windows, the group (window and
//! key) it lands in, the accumulators it updates, the late events, and what the watermark
//! closes. Groups are found through interned keys (no allocation per event); the watermark
//! only moves in [`Windower::close`], so a try's lateness is judged against where the previous
//! try left it, as Spark does per micro-batch.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::spec::Literal;
use super::state::{Acc, Definition, Input, LatePolicy, SavedGroup, SavedState};
use super::WindowError;

/// FxHash: a fast, deterministic hash for the integer keys of the group map.
#[derive(Default)]
struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

/// A stable 64-bit hash of a value's text (FNV-1a), for distinct counts kept across tries and
/// releases.
fn value_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= *b as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Key values of one column, numbered in order of first sight.
#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<String>,
}

const NULL_ID: u32 = u32::MAX;

impl Interner {
    fn id(&mut self, value: Option<&str>) -> u32 {
        let Some(value) = value else { return NULL_ID };
        if let Some(id) = self.ids.get(value) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.values.push(value.to_string());
        self.ids.insert(value.to_string(), id);
        id
    }

    fn value(&self, id: u32) -> Option<&str> {
        (id != NULL_ID).then(|| self.values[id as usize].as_str())
    }
}

struct Group {
    accs: Vec<Acc>,
    /// Its row has been emitted (it is kept only to be corrected).
    emitted: bool,
    /// A late event changed it since its row was emitted.
    changed: bool,
}

/// A batch's column, prepared once for the per-event loop.
enum Prepared {
    Every,
    Flags(Vec<bool>),
    Numbers(Float64Array),
    Hashes(Vec<Option<u64>>),
}

impl Prepared {
    #[inline]
    fn add(&self, acc: &mut Acc, row: usize) {
        match (acc, self) {
            (Acc::Count(n), Prepared::Every) => *n += 1,
            (Acc::Count(n), Prepared::Flags(flags)) => *n += flags[row] as u64,
            (Acc::Sum { sum, n }, Prepared::Numbers(a)) if a.is_valid(row) => {
                *sum += a.value(row);
                *n += 1;
            }
            (Acc::Min(m), Prepared::Numbers(a)) if a.is_valid(row) => {
                let v = a.value(row);
                *m = Some(m.map_or(v, |m| m.min(v)));
            }
            (Acc::Max(m), Prepared::Numbers(a)) if a.is_valid(row) => {
                let v = a.value(row);
                *m = Some(m.map_or(v, |m| m.max(v)));
            }
            (Acc::Distinct(set), Prepared::Hashes(hashes)) => {
                if let Some(h) = hashes[row] {
                    set.insert(h);
                }
            }
            (Acc::Sketch(sketch), Prepared::Numbers(a)) if a.is_valid(row) => {
                sketch.add(a.value(row))
            }
            _ => {}
        }
    }
}

/// What [`Windower::close`] emits.
pub struct Closed {
    /// One row per window and key: newly closed windows, then corrected ones.
    pub rows: RecordBatch,
    /// Rows of windows closed for the first time.
    pub emitted: usize,
    /// Rows that correct a window emitted before (update policy).
    pub corrected: usize,
    /// The watermark after this close.
    pub watermark: Option<i64>,
}

/// What [`Windower::add`] did with a batch.
#[derive(Debug, Default)]
pub struct Added {
    pub events: u64,
    /// Events behind the watermark for at least one of their windows.
    pub late: u64,
    /// The late events to write to the late-events table (side output, or past the update
    /// horizon), as rows of the input batch.
    pub late_rows: Option<RecordBatch>,
}

/// A window computation in progress.
pub struct Windower {
    def: Definition,
    inputs: Vec<Input>,
    /// For each aggregate, the input it finishes.
    input_of: Vec<usize>,
    columns: Vec<Interner>,
    tuples: FxMap<Vec<u32>, u32>,
    tuple_ids: Vec<Vec<u32>>,
    groups: FxMap<(i64, u32), Group>,
    max_event_time: Option<i64>,
    watermark: Option<i64>,
    late_events: u64,
    late_dropped: u64,
}

impl Windower {
    pub fn new(def: Definition) -> Windower {
        let mut inputs: Vec<Input> = Vec::new();
        let mut input_of = Vec::new();
        for (_, measure) in &def.aggregates {
            let input = Input::of(measure);
            let index = inputs.iter().position(|i| *i == input).unwrap_or_else(|| {
                inputs.push(input);
                inputs.len() - 1
            });
            input_of.push(index);
        }
        let columns = def.keys.iter().map(|_| Interner::default()).collect();
        Windower {
            def,
            inputs,
            input_of,
            columns,
            tuples: FxMap::default(),
            tuple_ids: Vec::new(),
            groups: FxMap::default(),
            max_event_time: None,
            watermark: None,
            late_events: 0,
            late_dropped: 0,
        }
    }

    /// Resumes from a saved state; fails if it was saved under another definition.
    pub fn restore(def: Definition, saved: SavedState) -> Result<Windower, WindowError> {
        if saved.definition != def {
            return Err(WindowError::DefinitionChanged);
        }
        let mut windower = Windower::new(def);
        windower.max_event_time = saved.max_event_time;
        windower.watermark = saved.watermark;
        windower.late_events = saved.late_events;
        windower.late_dropped = saved.late_dropped;
        for (groups, emitted) in [(saved.open, false), (saved.emitted, true)] {
            for group in groups {
                let ids: Vec<u32> = group
                    .keys
                    .iter()
                    .zip(windower.columns.iter_mut())
                    .map(|(value, interner)| interner.id(value.as_deref()))
                    .collect();
                let tuple = windower.tuple_of(&ids);
                windower.groups.insert(
                    (group.start, tuple),
                    Group { accs: group.accs, emitted, changed: false },
                );
            }
        }
        Ok(windower)
    }

    pub fn save(&self) -> SavedState {
        let mut open = Vec::new();
        let mut emitted = Vec::new();
        for ((start, tuple), group) in &self.groups {
            let saved = SavedGroup {
                start: *start,
                keys: self.key_values(*tuple),
                accs: group.accs.clone(),
            };
            if group.emitted {
                emitted.push(saved)
            } else {
                open.push(saved)
            }
        }
        let order = |a: &SavedGroup, b: &SavedGroup| (a.start, &a.keys).cmp(&(b.start, &b.keys));
        open.sort_by(order);
        emitted.sort_by(order);
        SavedState {
            definition: self.def.clone(),
            max_event_time: self.max_event_time,
            watermark: self.watermark,
            open,
            emitted,
            late_events: self.late_events,
            late_dropped: self.late_dropped,
        }
    }

    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// Late events since the computation began: all of them, and those dropped.
    pub fn late_totals(&self) -> (u64, u64) {
        (self.late_events, self.late_dropped)
    }

    /// Windows (with keys) not yet emitted.
    pub fn open_groups(&self) -> usize {
        self.groups.values().filter(|g| !g.emitted).count()
    }

    /// The input columns the computation reads.
    pub fn columns(&self) -> Vec<String> {
        let mut columns = vec![self.def.event_time.clone()];
        columns.extend(self.def.keys.iter().cloned());
        for (_, measure) in &self.def.aggregates {
            columns.extend(measure.columns().into_iter().map(str::to_string));
        }
        let mut seen = std::collections::HashSet::new();
        columns.retain(|c| seen.insert(c.clone()));
        columns
    }

    fn tuple_of(&mut self, ids: &[u32]) -> u32 {
        if let Some(id) = self.tuples.get(ids) {
            return *id;
        }
        let id = self.tuple_ids.len() as u32;
        self.tuple_ids.push(ids.to_vec());
        self.tuples.insert(ids.to_vec(), id);
        id
    }

    fn key_values(&self, tuple: u32) -> Vec<Option<String>> {
        self.tuple_ids[tuple as usize]
            .iter()
            .zip(&self.columns)
            .map(|(id, interner)| interner.value(*id).map(str::to_string))
            .collect()
    }

    /// Adds a batch of events (it must hold [`Windower::columns`]).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<Added, WindowError> {
        let times = event_times(batch, &self.def.event_time)?;
        let tuples = self.batch_tuples(batch)?;
        let prepared: Vec<Prepared> =
            self.inputs.iter().map(|input| prepare(batch, input)).collect::<Result<_, _>>()?;
        let (size, slide) = (self.def.windows.size, self.def.windows.slide);
        let per_event = self.def.windows.per_event();
        let closed_before = self.watermark;
        let horizon = closed_before.map(|w| w - self.def.update_horizon);
        let policy = self.def.late;
        let mut added = Added { events: 0, ..Added::default() };
        let mut late_rows: Vec<u32> = Vec::new();
        let mut max_time = self.max_event_time;
        let empty: Vec<Acc> = self.inputs.iter().map(Input::empty).collect();
        for (row, tuple) in tuples.into_iter().enumerate() {
            if times.is_null(row) {
                continue;
            }
            let t = times.value(row);
            added.events += 1;
            max_time = Some(max_time.map_or(t, |m| m.max(t)));
            let last = self.def.windows.last_start(t);
            let (mut late, mut outside) = (false, false);
            for k in 0..per_event {
                let start = last - k * slide;
                let end = start + size;
                let closed = closed_before.is_some_and(|w| end <= w);
                if closed {
                    late = true;
                    let correctable =
                        policy == LatePolicy::Update && horizon.is_some_and(|h| end > h);
                    if !correctable {
                        outside = true;
                        continue;
                    }
                }
                let group = self.groups.entry((start, tuple)).or_insert_with(|| Group {
                    accs: empty.clone(),
                    emitted: closed,
                    changed: false,
                });
                group.changed |= closed;
                for (acc, p) in group.accs.iter_mut().zip(&prepared) {
                    p.add(acc, row);
                }
            }
            if late {
                added.late += 1;
                if outside {
                    match policy {
                        LatePolicy::Drop => self.late_dropped += 1,
                        LatePolicy::SideOutput | LatePolicy::Update => late_rows.push(row as u32),
                    }
                }
            }
        }
        self.max_event_time = max_time;
        self.late_events += added.late;
        if !late_rows.is_empty() {
            let indices = UInt32Array::from(late_rows);
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c, &indices, None))
                .collect::<Result<Vec<_>, _>>()?;
            added.late_rows = Some(RecordBatch::try_new(batch.schema(), columns)?);
        }
        Ok(added)
    }

    /// Each row's key tuple.
    fn batch_tuples(&mut self, batch: &RecordBatch) -> Result<Vec<u32>, WindowError> {
        let rows = batch.num_rows();
        let mut per_column: Vec<Vec<u32>> = Vec::with_capacity(self.def.keys.len());
        for (key, interner) in self.def.keys.iter().zip(self.columns.iter_mut()) {
            let text = as_text(batch, key)?;
            let text = text.as_string::<i32>();
            per_column.push(
                (0..rows).map(|r| interner.id(text.is_valid(r).then(|| text.value(r)))).collect(),
            );
        }
        let mut ids = vec![0u32; per_column.len()];
        let mut tuples = Vec::with_capacity(rows);
        for row in 0..rows {
            for (slot, column) in ids.iter_mut().zip(&per_column) {
                *slot = column[row];
            }
            tuples.push(self.tuple_of(&ids));
        }
        Ok(tuples)
    }

    /// Moves the watermark to the largest event time seen minus the allowed lateness and
    /// emits every window it passed, plus the corrections late events made.
    pub fn close(&mut self) -> Result<Closed, WindowError> {
        let candidate = self.max_event_time.map(|t| t - self.def.allowed_lateness);
        self.watermark = match (self.watermark, candidate) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let size = self.def.windows.size;
        let mut fresh: Vec<(i64, u32)> = Vec::new();
        let mut corrected: Vec<(i64, u32)> = Vec::new();
        if let Some(watermark) = self.watermark {
            for (key, group) in self.groups.iter_mut() {
                if !group.emitted && key.0 + size <= watermark {
                    group.emitted = true;
                    fresh.push(*key);
                } else if group.emitted && group.changed {
                    corrected.push(*key);
                }
                group.changed = false;
            }
        }
        let order = |this: &Windower, keys: &mut Vec<(i64, u32)>| {
            keys.sort_by_cached_key(|(start, tuple)| (*start, this.key_values(*tuple)));
        };
        order(self, &mut fresh);
        order(self, &mut corrected);
        let rows = self.rows(fresh.iter().chain(&corrected))?;
        let keep_emitted = self.def.late == LatePolicy::Update;
        let forget_before = self.watermark.map(|w| w - self.def.update_horizon);
        self.groups.retain(|(start, _), group| {
            !group.emitted || (keep_emitted && forget_before.is_some_and(|f| start + size > f))
        });
        Ok(Closed {
            rows,
            emitted: fresh.len(),
            corrected: corrected.len(),
            watermark: self.watermark,
        })
    }

    /// The output schema: window start and end, the keys, then the aggregates.
    pub fn output_schema(&self) -> SchemaRef {
        let time = DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
        let mut fields = vec![
            Field::new("window_start", time.clone(), false),
            Field::new("window_end", time, false),
        ];
        fields.extend(self.def.keys.iter().map(|k| Field::new(k, DataType::Utf8, true)));
        for (name, measure) in &self.def.aggregates {
            let data_type = if measure.is_count() { DataType::Int64 } else { DataType::Float64 };
            fields.push(Field::new(name, data_type, true));
        }
        Arc::new(Schema::new(fields))
    }

    fn rows<'a>(
        &self,
        keys: impl Iterator<Item = &'a (i64, u32)> + Clone,
    ) -> Result<RecordBatch, WindowError> {
        let size = self.def.windows.size;
        let starts: Vec<i64> = keys.clone().map(|(s, _)| *s).collect();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(starts.clone()).with_timezone("+00:00")),
            Arc::new(
                TimestampMicrosecondArray::from(
                    starts.iter().map(|s| s + size).collect::<Vec<_>>(),
                )
                .with_timezone("+00:00"),
            ),
        ];
        let values: Vec<Vec<Option<String>>> =
            keys.clone().map(|(_, tuple)| self.key_values(*tuple)).collect();
        for k in 0..self.def.keys.len() {
            columns.push(Arc::new(StringArray::from_iter(values.iter().map(|v| v[k].as_deref()))));
        }
        for ((_, measure), input) in self.def.aggregates.iter().zip(&self.input_of) {
            let results = keys.clone().map(|key| self.groups[key].accs[*input].finish(measure));
            if measure.is_count() {
                columns.push(Arc::new(Int64Array::from_iter(results.map(|v| v.map(|v| v as i64)))));
            } else {
                columns.push(Arc::new(Float64Array::from_iter(results)));
            }
        }
        Ok(RecordBatch::try_new(self.output_schema(), columns)?)
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, WindowError> {
    batch.column_by_name(name).ok_or_else(|| WindowError::MissingColumn(name.to_string()))
}

/// The event times as microseconds since the epoch.
fn event_times(batch: &RecordBatch, name: &str) -> Result<Int64Array, WindowError> {
    let array = column(batch, name)?;
    let micros = match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => array.clone(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Utf8 => {
            arrow_cast::cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?
        }
        other => {
            return Err(WindowError::WrongType {
                column: name.to_string(),
                found: other.to_string(),
                expected: "a timestamp",
            })
        }
    };
    Ok(arrow_cast::cast(&micros, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

fn as_text(batch: &RecordBatch, name: &str) -> Result<ArrayRef, WindowError> {
    Ok(arrow_cast::cast(column(batch, name)?, &DataType::Utf8)?)
}

fn as_numbers(batch: &RecordBatch, name: &str) -> Result<Float64Array, WindowError> {
    let array = column(batch, name)?;
    if !array.data_type().is_numeric() {
        return Err(WindowError::WrongType {
            column: name.to_string(),
            found: array.data_type().to_string(),
            expected: "a number",
        });
    }
    let cast = arrow_cast::cast(array, &DataType::Float64)?;
    Ok(cast.as_primitive::<arrow_array::types::Float64Type>().clone())
}

fn prepare(batch: &RecordBatch, input: &Input) -> Result<Prepared, WindowError> {
    let rows = batch.num_rows();
    Ok(match input {
        Input::Count => Prepared::Every,
        Input::Sum(c) | Input::Min(c) | Input::Max(c) | Input::Sketch(c) => {
            Prepared::Numbers(as_numbers(batch, c)?)
        }
        Input::Distinct(c) => {
            let text = as_text(batch, c)?;
            let text = text.as_string::<i32>();
            Prepared::Hashes(
                (0..rows).map(|r| text.is_valid(r).then(|| value_hash(text.value(r)))).collect(),
            )
        }
        Input::CountIf(condition) => {
            let flags = match &condition.value {
                Literal::Number(n) => {
                    let numbers = as_numbers(batch, &condition.column)?;
                    (0..rows)
                        .map(|r| {
                            numbers.is_valid(r)
                                && numbers
                                    .value(r)
                                    .partial_cmp(n)
                                    .is_some_and(|o| condition.op.holds(o))
                        })
                        .collect()
                }
                Literal::Text(s) => {
                    let text = as_text(batch, &condition.column)?;
                    let text = text.as_string::<i32>();
                    (0..rows)
                        .map(|r| text.is_valid(r) && condition.op.holds(text.value(r).cmp(s)))
                        .collect()
                }
            };
            Prepared::Flags(flags)
        }
    })
}
