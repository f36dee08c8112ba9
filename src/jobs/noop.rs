//! `kind = "noop"`: does nothing and succeeds. Useful to join branches and in tests.

use serde::Deserialize;

use super::{Job, JobContext, JobError};

/// `noop` takes no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopConfig {}

pub struct Noop;

impl Job for Noop {
    const KIND: &'static str = "noop";
    type Config = NoopConfig;
    type Output = ();

    async fn run(&self, _config: NoopConfig, _ctx: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}
