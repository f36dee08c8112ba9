//! Reading raw CSV and JSON-lines files record by record, so one bad record is set aside with
//! its file, line and reason instead of failing the whole read.
//!
//! A record is malformed when it cannot be a row at all: a CSV record with more or fewer
//! fields than the header (a stray quote shows up this way, and costs only its own line), a
//! record that is not UTF-8, a JSON line that is not an object. The good records are parsed
//! by Polars as usual, with two more columns saying where each row came from. Typing values is
//! not done here (see `split_by_schema`). A file that cannot be read at all is an error
//! naming it.
//!
//! A CSV file is read, checked and parsed a block (64 MiB) at a time, so an ingest holds one
//! block of the file beside its rows, not the whole file. While it has no quotes and carriage
//! returns (what most exports are) a file has one record per line, and its blocks go to
//! `plain_lines`, which checks them and parses the good lines on every core; from the first
//! block with a quote or carriage return, the rest of the file goes through the `csv` crate's
//! reader, which knows quoting.

mod plain_lines;

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use polars::prelude::{
    AnyValue, Column, CsvReadOptions, DataFrame, DataType, Field, IntoColumn, JsonFormat,
    JsonReader, NamedFrom, Scalar, Schema, SchemaRef, SerReader, Series,
};

use crate::jobs::JobError;
use plain_lines::{end_line, gather_plain_lines, parse_plain_pieces};

/// The column naming the file a row was read from.
pub const FILE_COLUMN: &str = "_file";
/// The column holding the line a row starts on (1 is the first line of its file).
pub const LINE_COLUMN: &str = "_line";

/// A record that could not be read as a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub file: String,
    pub line: i64,
    /// The line as read (invalid UTF-8 replaced).
    pub raw: String,
    pub reason: String,
}

/// The rows of some files, with where each came from, and the records set aside.
pub struct Records {
    pub frame: DataFrame,
    pub malformed: Vec<Malformed>,
    /// The columns read with their declared type already (see [`CsvColumns::Typed`]).
    pub typed: Vec<String>,
}

impl Records {
    /// The malformed records as a frame: file, line, raw text and reason.
    pub fn malformed_frame(&self) -> Result<DataFrame, JobError> {
        let m = &self.malformed;
        DataFrame::new_infer_height(vec![
            Column::new(FILE_COLUMN.into(), m.iter().map(|r| r.file.as_str()).collect::<Vec<_>>()),
            Column::new(LINE_COLUMN.into(), m.iter().map(|r| r.line).collect::<Vec<_>>()),
            Column::new("_raw".into(), m.iter().map(|r| r.raw.as_str()).collect::<Vec<_>>()),
            Column::new("_error".into(), m.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>()),
        ])
        .map_err(JobError::failed)
    }
}

/// One file to read and the name it is reported under.
pub struct Source {
    pub path: PathBuf,
    pub name: String,
}

/// Good records gathered from every file and not parsed yet (canonical CSV, without the header
/// line), the files' one header, and where each good record came from.
#[derive(Default)]
struct Gathered {
    header: Option<Vec<String>>,
    csv: Vec<u8>,
    files: Vec<u32>,
    lines: Vec<i64>,
    malformed: Vec<Malformed>,
}

/// How the columns of CSV records are read.
pub enum CsvColumns {
    /// Types inferred by Polars; values that do not fit become null.
    Inferred,
    /// These columns with these types and the others as text (to be typed later), when every
    /// value of them parses (most files: one read, no text kept); otherwise every column as
    /// text. With no column listed, every column is text.
    Typed(Vec<(String, DataType)>),
}

/// How many bytes of a CSV file are read, checked and parsed at a time: what an ingest holds
/// of the file beside the rows read so far, whatever the file's size.
const BLOCK: usize = 64 << 20;

/// Reads CSV files with a header line each, their columns as `columns` says.
pub fn read_csv(sources: &[Source], columns: CsvColumns) -> Result<Records, JobError> {
    read_csv_in_blocks(sources, columns, BLOCK)
}

fn read_csv_in_blocks(
    sources: &[Source],
    columns: CsvColumns,
    block: usize,
) -> Result<Records, JobError> {
    let mut gathered = Gathered::default();
    let mut rows = Rows::new(columns);
    let mut fit = true;
    for (index, source) in sources.iter().enumerate() {
        fit = gather_csv(&mut gathered, &mut rows, index as u32, source, block)?;
        if !fit {
            break;
        }
    }
    let Some(header) = gathered.header.take() else {
        let none =
            Records { frame: DataFrame::empty(), malformed: gathered.malformed, typed: vec![] };
        return Ok(none);
    };
    fit = fit && rows.parse(&header, &gathered.csv)?;
    if !fit {
        // Some value does not parse: every column as text, typed (or not) row by row.
        return read_csv_in_blocks(sources, CsvColumns::Typed(vec![]), block);
    }
    let typed = rows.typed_columns();
    let frame = match rows.frame {
        Some(frame) if !gathered.lines.is_empty() => frame,
        _ => DataFrame::empty_with_schema(&text_schema(&header, &[])),
    };
    with_origin(frame, sources, &gathered.files, &gathered.lines, gathered.malformed, typed)
}

/// The columns of `header` as text, but those of `typed` with their type.
fn text_schema(header: &[String], typed: &[(String, DataType)]) -> Schema {
    let type_of = |name: &String| typed.iter().find(|(c, _)| c == name).map(|(_, t)| t.clone());
    header
        .iter()
        .map(|name| Field::new(name.into(), type_of(name).unwrap_or(DataType::String)))
        .collect()
}

/// The rows of the good records, parsed by Polars a block at a time.
struct Rows {
    columns: CsvColumns,
    /// The columns' types, fixed by the first block parsed.
    schema: Option<SchemaRef>,
    frame: Option<DataFrame>,
}

impl Rows {
    fn new(columns: CsvColumns) -> Rows {
        Rows { columns, schema: None, frame: None }
    }

    /// Parses `csv`, good records without a header line, under `header`; false when a value
    /// does not parse as its column's declared type.
    fn parse(&mut self, header: &[String], csv: &[u8]) -> Result<bool, JobError> {
        if csv.is_empty() {
            return Ok(true);
        }
        let options = match (&self.schema, &self.columns) {
            (Some(schema), columns) => CsvReadOptions::default()
                .with_schema(Some(schema.clone()))
                .with_ignore_errors(matches!(columns, CsvColumns::Inferred)),
            (None, CsvColumns::Inferred) => CsvReadOptions::default()
                .with_infer_schema_length(Some(10_000))
                .with_ignore_errors(true),
            (None, CsvColumns::Typed(types)) => CsvReadOptions::default()
                .with_schema(Some(std::sync::Arc::new(text_schema(header, &types[..])))),
        };
        let read = options.with_has_header(false).into_reader_with_file_handle(Cursor::new(csv));
        let mut frame = match read.finish() {
            Ok(frame) => frame,
            Err(_) if matches!(&self.columns, CsvColumns::Typed(t) if !t.is_empty()) => {
                return Ok(false)
            }
            Err(e) => {
                return Err(JobError::Failed(format!("reading the well-formed CSV records: {e}")))
            }
        };
        if self.schema.is_none() {
            frame.set_column_names(header).map_err(JobError::failed)?;
            self.schema = Some(frame.schema().clone());
        }
        self.add(frame)
    }

    /// [`Rows::parse`] for `csv` known to hold one record per line without quotes: cut at line
    /// ends into pieces that Polars parses side by side, without its own pass over the block to
    /// find where records end. Any surprise (a value that does not parse, a row count that
    /// differs from the line count) leaves the block to [`Rows::parse`], which decides.
    fn parse_plain(&mut self, header: &[String], csv: &[u8]) -> Result<bool, JobError> {
        let CsvColumns::Typed(types) = &self.columns else { return self.parse(header, csv) };
        if csv.is_empty() {
            return Ok(true);
        }
        let schema = match &self.schema {
            Some(schema) => schema.clone(),
            None => std::sync::Arc::new(text_schema(header, types)),
        };
        let Some(frame) = parse_plain_pieces(&schema, csv) else { return self.parse(header, csv) };
        self.schema = Some(schema);
        self.add(frame)
    }

    /// Adds `frame`'s rows after those parsed so far.
    fn add(&mut self, frame: DataFrame) -> Result<bool, JobError> {
        match &mut self.frame {
            Some(all) => {
                all.vstack_mut_owned(frame).map_err(JobError::failed)?;
            }
            None => self.frame = Some(frame),
        }
        Ok(true)
    }

    /// The columns read with their declared type.
    fn typed_columns(&self) -> Vec<String> {
        match &self.columns {
            CsvColumns::Typed(types) => types.iter().map(|(c, _)| c.clone()).collect(),
            CsvColumns::Inferred => vec![],
        }
    }
}

fn cannot_read(name: &str) -> impl Fn(std::io::Error) -> JobError + '_ {
    move |e| JobError::Failed(format!("cannot read `{name}`: {e}"))
}

fn read_file(path: &Path, name: &str) -> Result<Vec<u8>, JobError> {
    std::fs::read(path).map_err(cannot_read(name))
}

/// Reads from `file` until `buffer` holds `len` bytes; true when the file ended first.
fn fill(file: &mut std::fs::File, buffer: &mut Vec<u8>, len: usize) -> std::io::Result<bool> {
    let Some(wanted) = len.checked_sub(buffer.len()).filter(|n| *n > 0) else {
        return Ok(false);
    };
    file.take(wanted as u64).read_to_end(buffer)?;
    Ok(buffer.len() < len)
}

/// Reads one CSV file a block at a time into `gathered` and `rows`: lines are checked and
/// parsed block by block while the file has no quote and no carriage return; from the first
/// block with one, the rest of the file goes through the `csv` crate's reader, which knows
/// quoting. False when a value does not parse as its declared type (see [`Rows::parse`]).
fn gather_csv(
    gathered: &mut Gathered,
    rows: &mut Rows,
    file: u32,
    source: &Source,
    block: usize,
) -> Result<bool, JobError> {
    let name = source.name.as_str();
    let mut reader = std::fs::File::open(&source.path).map_err(cannot_read(name))?;
    let mut buffer = Vec::with_capacity(block);
    let mut width = None; // fields in this file's header, once read
    let mut next_line = 1; // the line number the buffer starts with
    let mut wanted = block.max(3); // the first read holds a byte-order mark whole
    let mut first = true;
    loop {
        let ended = fill(&mut reader, &mut buffer, wanted).map_err(cannot_read(name))?;
        if std::mem::take(&mut first) && buffer.starts_with(b"\xef\xbb\xbf") {
            buffer.drain(..3);
        }
        let cut = match memchr::memrchr(b'\n', &buffer) {
            _ if ended => buffer.len(),
            Some(last) => last + 1,
            None => {
                // A line longer than a block: read on.
                wanted = buffer.len() + block;
                continue;
            }
        };
        wanted = block;
        if memchr::memchr2(b'"', b'\r', &buffer[..cut]).is_some() {
            reader.read_to_end(&mut buffer).map_err(cannot_read(name))?;
            gather_quoted(gathered, file, name, &buffer, width, next_line)?;
            return Ok(true);
        }
        let mut body = &buffer[..cut];
        let width = match width {
            Some(width) => width,
            None if body.is_empty() => return Ok(true),
            None => {
                let header_end = memchr::memchr(b'\n', body).unwrap_or(body.len());
                let fields = body[..header_end].split(|b| *b == b',').collect::<Vec<_>>();
                let header = header_of(&csv::ByteRecord::from(fields), name)?;
                let fields = *width.insert(header.len());
                take_header(gathered, header, name)?;
                body = &body[(header_end + 1).min(body.len())..];
                next_line += 1;
                fields
            }
        };
        let (all_good, lines) = gather_plain_lines(gathered, file, name, body, width, next_line);
        next_line += lines;
        let header = gathered.header.as_deref().unwrap_or_default();
        if all_good && gathered.csv.is_empty() {
            // Every line of the block is good: parsed as it is, not copied.
            if !rows.parse_plain(header, body)? {
                return Ok(false);
            }
        } else {
            if all_good {
                gathered.csv.extend_from_slice(body);
                end_line(&mut gathered.csv);
            }
            if gathered.csv.len() >= block {
                if !rows.parse(header, &gathered.csv)? {
                    return Ok(false);
                }
                gathered.csv.clear();
            }
        }
        buffer.drain(..cut);
        if ended {
            return Ok(true);
        }
    }
}

/// Checks the records of a CSV file from `first_line` on (the header too when `width` is not
/// known yet) with the `csv` crate's reader, keeping the good ones (re-encoded) and setting
/// the others aside.
fn gather_quoted(
    gathered: &mut Gathered,
    file: u32,
    name: &str,
    bytes: &[u8],
    mut width: Option<usize>,
    mut first_line: i64,
) -> Result<(), JobError> {
    let mut writer = csv::WriterBuilder::new().from_writer(std::mem::take(&mut gathered.csv));
    let mut start = 0; // byte offset the reader below started at
    'restart: while start < bytes.len() {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[start..]);
        let mut record = csv::ByteRecord::new();
        loop {
            let at = reader.position().clone();
            let more = reader
                .read_byte_record(&mut record)
                .map_err(|e| JobError::Failed(format!("`{name}`: cannot read CSV: {e}")))?;
            if !more {
                break 'restart;
            }
            let mut line =
                first_line + record.position().map_or(at.line(), |p| p.line()) as i64 - 1;
            let mut record_start = start + record.position().map_or(0, |p| p.byte() as usize);
            // The reader counts the blank lines it skipped as the record's start.
            while let Some(b'\n' | b'\r') = bytes.get(record_start) {
                line += i64::from(bytes[record_start] == b'\n');
                record_start += 1;
            }
            let Some(expected) = width else {
                let header = header_of(&record, name)?;
                width = Some(header.len());
                take_header(gathered, header, name)?;
                continue;
            };
            let problem = if record.len() != expected {
                Some(format!("expected {expected} fields, found {}", record.len()))
            } else {
                record
                    .iter()
                    .position(|field| std::str::from_utf8(field).is_err())
                    .map(|i| format!("field {} is not valid UTF-8", i + 1))
            };
            let Some(reason) = problem else {
                writer.write_byte_record(&record).map_err(JobError::failed)?;
                gathered.files.push(file);
                gathered.lines.push(line);
                continue;
            };
            let this_line_end = line_end(bytes, record_start);
            gathered.malformed.push(Malformed {
                file: name.to_string(),
                line,
                raw: String::from_utf8_lossy(&bytes[record_start..this_line_end]).into_owned(),
                reason,
            });
            let spanned = first_line + reader.position().line() as i64 - 1 - line;
            if spanned > 1 && record.len() != expected {
                // The record ran over several lines (an opening quote never closed): only its
                // first line is lost; reading resumes on the next one.
                start = next_line_start(bytes, record_start);
                first_line = line + 1;
                continue 'restart;
            }
        }
    }
    gathered.csv = writer.into_inner().map_err(JobError::failed)?;
    Ok(())
}

/// Takes the header of a file as the header of all, or checks it against the first file's.
fn take_header(gathered: &mut Gathered, header: Vec<String>, name: &str) -> Result<(), JobError> {
    match &gathered.header {
        None => {
            gathered.header = Some(header);
            Ok(())
        }
        Some(first) if *first != header => Err(JobError::Failed(format!(
            "`{name}` has the columns {header:?}, unlike the first file's {first:?}"
        ))),
        Some(_) => Ok(()),
    }
}

/// The offset of the line after the one `from` is on.
fn next_line_start(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| from + i + 1)
}

/// The offset of the end of the line starting at `from` (before its `\r\n` or `\n`).
fn line_end(bytes: &[u8], from: usize) -> usize {
    let end = bytes[from..].iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| from + i);
    if end > from && bytes[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

fn header_of(record: &csv::ByteRecord, name: &str) -> Result<Vec<String>, JobError> {
    record
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let text = std::str::from_utf8(field).map_err(|_| {
                JobError::Failed(format!("`{name}`: header field {} is not valid UTF-8", i + 1))
            })?;
            Ok(text.trim().to_string())
        })
        .collect()
}

/// Reads JSON-lines files: one object per line; blank lines are skipped.
pub fn read_json_lines(sources: &[Source]) -> Result<Records, JobError> {
    let (mut good, mut files, mut lines, mut malformed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (index, source) in sources.iter().enumerate() {
        let bytes = read_file(&source.path, &source.name)?;
        for (number, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let reason = match std::str::from_utf8(raw) {
                Err(_) => Some("not valid UTF-8".to_string()),
                Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(serde_json::Value::Object(_)) => None,
                    Ok(_) => Some("not a JSON object".to_string()),
                    Err(e) => Some(format!("malformed JSON: {e}")),
                },
            };
            match reason {
                None => {
                    good.extend_from_slice(raw);
                    good.push(b'\n');
                    files.push(index as u32);
                    lines.push(number as i64 + 1);
                }
                Some(reason) => malformed.push(Malformed {
                    file: source.name.clone(),
                    line: number as i64 + 1,
                    raw: String::from_utf8_lossy(raw).into_owned(),
                    reason,
                }),
            }
        }
    }
    let frame = if good.is_empty() {
        DataFrame::empty()
    } else {
        // Types from every record, not the first hundred: a field null at first (an
        // optional value) may hold values further down.
        JsonReader::new(Cursor::new(good))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(None)
            .finish()
            .map_err(|e| JobError::Failed(format!("reading the well-formed JSON lines: {e}")))?
    };
    with_origin(frame, sources, &files, &lines, malformed, vec![])
}

/// Adds the file and line columns to the rows read from the good records.
fn with_origin(
    mut frame: DataFrame,
    sources: &[Source],
    files: &[u32],
    lines: &[i64],
    malformed: Vec<Malformed>,
    typed: Vec<String>,
) -> Result<Records, JobError> {
    if frame.height() != lines.len() && frame.width() > 0 {
        return Err(JobError::Failed(format!(
            "read {} rows from {} well-formed records",
            frame.height(),
            lines.len()
        )));
    }
    if frame.width() > 0 {
        let file = match files.first() {
            // All from one file (the usual case): one value, not a string per row.
            Some(first) if files.iter().all(|f| f == first) => {
                let name = sources[*first as usize].name.as_str();
                let value = AnyValue::StringOwned(name.into());
                Column::new_scalar(
                    FILE_COLUMN.into(),
                    Scalar::new(DataType::String, value),
                    lines.len(),
                )
            }
            _ => {
                let names: Vec<&str> =
                    files.iter().map(|f| sources[*f as usize].name.as_str()).collect();
                Series::new(FILE_COLUMN.into(), names).into_column()
            }
        };
        frame.with_column(file)?;
        frame.with_column(Series::new(LINE_COLUMN.into(), lines).into_column())?;
    }
    Ok(Records { frame, malformed, typed })
}

#[cfg(test)]
mod tests {
    use super::plain_lines::line_chunks;
    use super::*;

    fn read(text: &[u8]) -> Records {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.csv");
        std::fs::write(&path, text).unwrap();
        read_csv(&[Source { path, name: "raw/orders.csv".into() }], CsvColumns::Typed(vec![]))
            .unwrap()
    }

    fn column(records: &Records, name: &str) -> Vec<String> {
        let column = records.frame.column(name).unwrap().cast(&DataType::String).unwrap();
        column.str().unwrap().iter().map(|v| v.unwrap_or("∅").to_string()).collect()
    }

    #[test]
    fn bad_records_are_set_aside_with_their_line_and_the_rest_is_read() {
        let records = read(
            b"id,name,amount\n1,a,10\n2,\"b,20\n3,c,30,extra\n4,\xff,40\n5,\"multi\nline\",50\n6,f\n7,g,70\n",
        );
        assert_eq!(column(&records, "id"), ["1", "5", "7"]);
        assert_eq!(column(&records, "name"), ["a", "multi\nline", "g"]);
        assert_eq!(column(&records, LINE_COLUMN), ["2", "6", "9"]);
        assert_eq!(column(&records, FILE_COLUMN), ["raw/orders.csv"; 3]);
        let bad: Vec<(i64, &str)> =
            records.malformed.iter().map(|m| (m.line, m.reason.as_str())).collect();
        assert_eq!(
            bad,
            [
                (3, "expected 3 fields, found 2"),
                (4, "expected 3 fields, found 4"),
                (5, "field 2 is not valid UTF-8"),
                (8, "expected 3 fields, found 2"),
            ]
        );
        assert_eq!(records.malformed[0].raw, "2,\"b,20");
    }

    /// The line checker (files without quotes) and the `csv` reader (a quoted header name
    /// sends the file there) find the same rows, lines and malformed records.
    #[test]
    fn plain_files_are_read_like_quoted_ones() {
        let body = b"1,a,10\n\n3,c,30,extra\n4,\xff,40\n6,f\n7,g,70";
        let plain = read(&[&b"id,name,amount\n"[..], body].concat());
        let quoted = read(&[&b"\"id\",name,amount\n"[..], body].concat());
        for name in ["id", "name", "amount", LINE_COLUMN] {
            assert_eq!(column(&plain, name), column(&quoted, name), "{name}");
        }
        assert_eq!(column(&plain, LINE_COLUMN), ["2", "7"]);
        assert_eq!(plain.malformed, quoted.malformed);
        assert_eq!(plain.malformed.len(), 3);
    }

    #[test]
    fn a_large_plain_file_is_checked_in_chunks_with_the_right_lines() {
        let mut text = b"id,value\n".to_vec();
        for i in 0..300_000u32 {
            if i % 100_000 == 99_999 {
                text.extend_from_slice(format!("{i}\n").as_bytes());
            } else {
                text.extend_from_slice(format!("{i},{}\n", i * 2).as_bytes());
            }
        }
        assert!(line_chunks(&text, 4).len() > 1, "the test needs several chunks");
        let records = read(&text);
        assert_eq!(records.frame.height(), 300_000 - 3);
        let bad: Vec<i64> = records.malformed.iter().map(|m| m.line).collect();
        assert_eq!(bad, [100_001, 200_001, 300_001]);
        let lines = column(&records, LINE_COLUMN);
        let ids = column(&records, "id");
        assert_eq!((lines[150_000].as_str(), ids[150_000].as_str()), ("150003", "150001"));
    }

    /// Files read a few bytes at a time give what one read gives: lines cut across blocks, a
    /// quote that sends the rest of the file to the `csv` reader, a value that does not fit
    /// its type in a later block.
    #[test]
    fn reading_in_small_blocks_gives_what_one_read_gives() {
        let dir = tempfile::tempdir().unwrap();
        let texts: [&[u8]; 5] = [
            b"\xef\xbb\xbfid,name,amount\n1,a,10\n2,b\n\n3,c,30\n4,\xff,40\n5,e,50",
            b"id,name,amount\n1,a,10\n2,b,20\n3,\"c,\nc\",30\n4,d\n5,e,50\n",
            b"id,name,amount\n1,a,10\n2,b,20\n3,c,30\n4,d,x\n5,e,50\n",
            b"id,name,amount\n1,a-much-longer-name-than-a-block,10\n2,b,20\n",
            b"id,name,amount\n",
        ];
        for (t, text) in texts.iter().enumerate() {
            let path = dir.path().join(format!("{t}.csv"));
            std::fs::write(&path, text).unwrap();
            let second = dir.path().join(format!("{t}-again.csv"));
            std::fs::write(&second, text).unwrap();
            let sources = [
                Source { path, name: format!("raw/{t}.csv") },
                Source { path: second, name: format!("raw/{t}-again.csv") },
            ];
            let types = || CsvColumns::Typed(vec![("amount".into(), DataType::Int64)]);
            let whole = read_csv(&sources, types()).unwrap();
            for block in [1, 4, 9, 16, 40] {
                let blocks = read_csv_in_blocks(&sources, types(), block).unwrap();
                let what = format!("text {t}, blocks of {block}");
                assert_eq!(blocks.frame, whole.frame, "{what}");
                assert_eq!(blocks.malformed, whole.malformed, "{what}");
                assert_eq!(blocks.typed, whole.typed, "{what}");
            }
            let inferred = read_csv_in_blocks(&sources, CsvColumns::Inferred, 9).unwrap();
            assert_eq!(inferred.frame.height(), whole.frame.height(), "text {t}");
        }
    }

    #[test]
    fn plain_lines_parsed_in_pieces_give_what_polars_reader_gives() {
        let mut csv = String::new();
        for i in 0..400_000 {
            csv.push_str(&format!(
                "{i},name {i},{}.5,{}\n",
                i % 97,
                if i % 13 == 0 { "" } else { "x" }
            ));
        }
        let csv = csv.trim_end().as_bytes(); // a file may end without a line end
        let pieces = line_chunks(csv, 16);
        assert!(pieces.len() > 8, "{} pieces", pieces.len());
        assert_eq!(pieces.concat(), csv, "every byte, in order");
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.ends_with(b"\n")));

        let header: Vec<String> = ["id", "name", "amount", "flag"].map(String::from).to_vec();
        let types = vec![("id".into(), DataType::Int64), ("amount".into(), DataType::Float64)];
        let schema = std::sync::Arc::new(text_schema(&header, &types));
        let pieces = parse_plain_pieces(&schema, csv).expect("parsed in pieces");
        let mut whole = Rows::new(CsvColumns::Typed(types.clone()));
        assert!(whole.parse(&header, csv).unwrap());
        assert_eq!(pieces, whole.frame.unwrap());

        let bad = b"1,a,2.5,x\n2,b,oops,x\n";
        assert!(parse_plain_pieces(&schema, bad).is_none(), "a value that does not parse");
        let mut rows = Rows::new(CsvColumns::Typed(types));
        assert!(!rows.parse_plain(&header, bad).unwrap(), "left to `parse`, which says no");
    }

    #[test]
    fn declared_types_are_read_directly_unless_a_value_does_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.csv");
        let types = || CsvColumns::Typed(vec![("id".into(), DataType::Int64)]);
        let source = || vec![Source { path: path.clone(), name: "raw/orders.csv".into() }];
        std::fs::write(&path, "id,name\n1,a\n,b\n3,c\n").unwrap();
        let records = read_csv(&source(), types()).unwrap();
        assert_eq!(records.typed, ["id"]);
        assert_eq!(records.frame.column("id").unwrap().dtype(), &DataType::Int64);
        assert_eq!(column(&records, "id"), ["1", "∅", "3"]);

        std::fs::write(&path, "id,name\n1,a\nx,b\n3,c\n").unwrap();
        let records = read_csv(&source(), types()).unwrap();
        assert!(records.typed.is_empty());
        assert_eq!(column(&records, "id"), ["1", "x", "3"], "read as text, to be typed by row");
    }

    #[test]
    fn an_empty_file_and_a_header_only_file_both_give_no_rows() {
        for text in [&b""[..], b"id,name\n", b"id,name", b"\xef\xbb\xbfid,name\r\n"] {
            let records = read(text);
            assert_eq!(records.frame.height(), 0, "{text:?}");
            assert!(records.malformed.is_empty());
        }
    }

    #[test]
    fn json_lines_keep_their_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, b"{\"id\": 1}\n\n[1]\n{\"id\": 2\n{\"id\": \"\xff\"}\n{\"id\": 3}\n")
            .unwrap();
        let records = read_json_lines(&[Source { path, name: "raw/events.jsonl".into() }]).unwrap();
        assert_eq!(column(&records, LINE_COLUMN), ["1", "6"]);
        let bad: Vec<i64> = records.malformed.iter().map(|m| m.line).collect();
        assert_eq!(bad, [3, 4, 5]);
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let missing = Source { path: "/nonexistent/x.csv".into(), name: "raw/x.csv".into() };
        let Err(error) = read_csv(&[missing], CsvColumns::Typed(vec![])) else {
            panic!("read a missing file")
        };
        assert!(error.to_string().contains("cannot read `raw/x.csv`"), "{error}");
    }
}
