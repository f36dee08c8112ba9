//! Where a job reports metrics for `/metrics` (records ingested, consumer lag, commit time):
//! the worker stores them with the try's result, counters added to what earlier tries
//! reported, gauges replacing it. Cheap to clone; shared by the job's threads.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::domain::{MetricKind, MetricSample};

#[derive(Clone, Default)]
pub struct Metrics(Arc<Mutex<Vec<MetricSample>>>);

impl Metrics {
    fn push(&self, kind: MetricKind, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let labels: BTreeMap<String, String> =
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sample = MetricSample { name: name.into(), help: help.into(), kind, labels, value };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(sample);
    }

    /// Adds `value` to the counter `name{labels}`.
    pub fn count(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(MetricKind::Counter, name, help, labels, value);
    }

    /// Sets the gauge `name{labels}` to `value`.
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.push(MetricKind::Gauge, name, help, labels, value);
    }

    /// The samples so far, leaving none behind.
    pub fn take(&self) -> Vec<MetricSample> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
