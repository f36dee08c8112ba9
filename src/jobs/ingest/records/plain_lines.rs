//! Lines of CSV files without quotes or carriage returns, where every line is one record (what
//! most exports are): a block of them is checked on every core (a record has as many fields as
//! its commas plus one, and is UTF-8), and a block whose lines are all good is parsed by Polars
//! in pieces cut at line ends, side by side, without Polars' own pass over the block to find
//! where records end.
//!
//! This module neither reads files nor knows quoting: `records` reads the blocks, decides which
//! go here, and sends everything else through the `csv` crate's reader.

use polars::prelude::{DataFrame, SchemaRef};

use super::{Gathered, Malformed};

/// Checks a block of lines of a file without quotes and carriage returns, `body`, whose first
/// line is line `first_line` of the file: every line is a record whose fields are its commas'
/// count plus one. The lines are checked in parallel, a chunk per core. Good lines are added
/// to `gathered.csv`, unless all are (`true`: the caller takes `body` as it is). Returns that,
/// and the number of lines.
pub(super) fn gather_plain_lines(
    gathered: &mut Gathered,
    file: u32,
    name: &str,
    body: &[u8],
    width: usize,
    first_line: i64,
) -> (bool, i64) {
    let chunks = line_chunks(body, std::thread::available_parallelism().map_or(1, |n| n.get()));
    let checked: Vec<PlainChunk> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| scope.spawn(move || check_plain_lines(chunk, width)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a CSV line checker panicked")).collect()
    });
    let all_good = checked.iter().all(|c| c.good.is_none());
    let mut line = first_line;
    for (chunk, result) in chunks.iter().zip(checked) {
        gathered.lines.extend(result.lines.iter().map(|l| line + l));
        gathered.malformed.extend(result.malformed.into_iter().map(|(number, raw, reason)| {
            Malformed { file: name.to_string(), line: line + number, raw, reason }
        }));
        line += result.line_count;
        if !all_good {
            // Every chunk but the last ends with its line's newline; kept lines each have theirs.
            gathered.csv.extend_from_slice(result.good.as_deref().unwrap_or(chunk));
        }
    }
    gathered.files.resize(gathered.lines.len(), file);
    end_line(&mut gathered.csv);
    (all_good, line - first_line)
}

/// Ends `csv` with a newline, unless it is empty.
pub(super) fn end_line(csv: &mut Vec<u8>) {
    if csv.last().is_some_and(|b| *b != b'\n') {
        csv.push(b'\n');
    }
}

/// What checking one chunk of plain CSV lines found; line numbers count from 0 at its start.
struct PlainChunk {
    /// The good lines, when some line was not (otherwise the chunk is good as it is).
    good: Option<Vec<u8>>,
    lines: Vec<i64>,
    malformed: Vec<(i64, String, String)>,
    line_count: i64,
}

fn check_plain_lines(chunk: &[u8], width: usize) -> PlainChunk {
    let all_utf8 = std::str::from_utf8(chunk).is_ok();
    let mut out =
        PlainChunk { good: None, lines: Vec::new(), malformed: Vec::new(), line_count: 0 };
    let mut start = 0;
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let line = &chunk[start..end];
        let number = out.line_count;
        out.line_count += 1;
        let fields = memchr::memchr_iter(b',', line).count() + 1;
        let problem = if line.is_empty() {
            // A blank line is no record (as the `csv` reader has it).
            Some(None)
        } else if fields != width {
            Some(Some(format!("expected {width} fields, found {fields}")))
        } else if all_utf8 {
            None
        } else {
            line.split(|b| *b == b',')
                .position(|field| std::str::from_utf8(field).is_err())
                .map(|i| Some(format!("field {} is not valid UTF-8", i + 1)))
        };
        match problem {
            None => {
                out.lines.push(number);
                if let Some(good) = &mut out.good {
                    good.extend_from_slice(line);
                    good.push(b'\n');
                }
            }
            Some(reason) => {
                if out.good.is_none() {
                    // The lines before this one were all good: the copy starts with them.
                    out.good = Some(chunk[..start].to_vec());
                }
                if let Some(reason) = reason {
                    let raw = String::from_utf8_lossy(line).into_owned();
                    out.malformed.push((number, raw, reason));
                }
            }
        }
        start = end + 1;
    }
    out
}

/// `body` cut into about `parts` pieces, each ending at the end of a line.
pub(super) fn line_chunks(body: &[u8], parts: usize) -> Vec<&[u8]> {
    const MIN_CHUNK: usize = 1 << 20;
    let parts = parts.clamp(1, body.len() / MIN_CHUNK + 1);
    let mut chunks = Vec::with_capacity(parts);
    let mut start = 0;
    for part in 1..=parts {
        if start >= body.len() {
            break;
        }
        let target = (body.len() * part / parts).max(start);
        let end = if part == parts {
            body.len()
        } else {
            memchr::memchr(b'\n', &body[target..]).map_or(body.len(), |i| target + i + 1)
        };
        chunks.push(&body[start..end]);
        start = end;
    }
    chunks
}

/// Pieces a block of plain lines is cut into per core (each at least 1 MiB, `line_chunks`),
/// so that the work evens out across the cores.
const PIECES_PER_CORE: usize = 4;

/// The rows of `csv`, lines of plain records, typed by `schema`: parsed in pieces side by side
/// and stacked in order. `None` when a piece fails to parse (or its parser panics) or gives
/// another number of rows than it has lines.
pub(super) fn parse_plain_pieces(schema: &SchemaRef, csv: &[u8]) -> Option<DataFrame> {
    use polars::io::csv::read::_csv_read_internal::{cast_columns, prepare_csv_schema, read_chunk};
    use polars::prelude::CsvParseOptions;
    let (mut parsed_schema, mut to_cast) = (schema.clone(), Vec::new());
    prepare_csv_schema(&mut parsed_schema, &mut to_cast).ok()?;
    let columns: Vec<usize> = (0..parsed_schema.len()).collect();
    let options = CsvParseOptions::default();
    let parse = |piece: &[u8]| -> Option<DataFrame> {
        let lines =
            memchr::memchr_iter(b'\n', piece).count() + usize::from(!piece.ends_with(b"\n"));
        let mut frame = read_chunk(
            piece,
            &options,
            &parsed_schema,
            false,
            &columns,
            0,
            lines,
            None,
            usize::MAX,
            piece.len(),
            Some(0),
        )
        .ok()?;
        cast_columns(&mut frame, &to_cast, false, false).ok()?;
        (frame.height() == lines).then_some(frame)
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pieces = line_chunks(csv, cores * PIECES_PER_CORE);
    let parsed: Vec<Option<DataFrame>> = std::thread::scope(|scope| {
        let handles: Vec<_> = pieces.iter().map(|piece| scope.spawn(|| parse(piece))).collect();
        handles.into_iter().map(|h| h.join().ok().flatten()).collect()
    });
    let mut frames = parsed.into_iter();
    let mut all = frames.next()??;
    for frame in frames {
        all.vstack_mut_owned(frame?).ok()?;
    }
    Some(all)
}
