//! `kind = "noop"`: does nothing and succeeds. Useful to join branches and in tests.

use serde::Deserialize;

use super::{Job, JobContext, JobError, Outputs};

/// `noop` takes no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoopConfig {}

pub struct Noop;

impl Job for Noop {
    const KIND: &'static str = "noop";
    type Config = NoopConfig;

    async fn run(&self, _config: NoopConfig, _ctx: JobContext) -> Result<Outputs, JobError> {
        Ok(Outputs::new())
    }
}
