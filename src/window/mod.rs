//! Event-time windows: which windows an event falls in (tumbling or hopping), the aggregates
//! kept per window and key (counts, sums, extremes, distinct counts, quantile sketches), the
//! watermark that closes windows, late events, and the state that carries open windows from
//! one try to the next. Pure computation over Arrow batches: it reads and writes no files and
//! knows no tables (the `window` task kind does that).

mod engine;
pub mod sketch;
mod spec;
mod state;

use thiserror::Error;

use crate::domain::ErrorClass;

pub use engine::{Added, Closed, Windower};
pub use spec::{Comparison, Condition, Literal, Measure, Windows};
pub use state::{Definition, LatePolicy, SavedState};

#[derive(Debug, Error)]
pub enum WindowError {
    #[error("the input has no column `{0}`")]
    MissingColumn(String),
    #[error("column `{column}` is {found}, expected {expected}")]
    WrongType { column: String, found: String, expected: &'static str },
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error(
        "the window definition (windows, keys, aggregates, lateness or late policy) changed \
         since its state was saved: write to a new table, or drop this one to start over"
    )]
    DefinitionChanged,
}

impl WindowError {
    pub fn class(&self) -> ErrorClass {
        match self {
            WindowError::Arrow(_) => ErrorClass::Bug,
            _ => ErrorClass::Definition,
        }
    }
}

#[cfg(test)]
mod tests;
