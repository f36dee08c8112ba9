//! The demo broker `lakeward standalone` starts when no Kafka cluster is configured:
//! librdkafka's mock cluster, listening on localhost so that any Kafka client can reach it.
//! **Demo only**: it keeps everything in memory, loses it all when the process stops, and
//! offers no topic administration (its topics are made here, up front).

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

use super::{Brokers, StreamError};

/// A running demo broker; dropping it stops it.
pub struct DemoBroker {
    brokers: Brokers,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DemoBroker {
    /// Starts a one-broker mock cluster holding `topics` (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> Result<DemoBroker, StreamError> {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, n)| (t.to_string(), *n)).collect();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        // The mock cluster is not `Send`: one thread owns it for its whole life.
        let thread = std::thread::Builder::new()
            .name("demo-kafka".into())
            .spawn(move || {
                let started = MockCluster::new(1).and_then(|cluster| {
                    for (topic, partitions) in &topics {
                        cluster.create_topic(topic, *partitions, 1)?;
                    }
                    Ok(cluster)
                });
                match started {
                    Ok(cluster) => {
                        let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                        let _ = stop_rx.recv();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| StreamError::Kafka(format!("cannot start the demo broker: {e}")))?;
        let servers = ready_rx
            .recv()
            .map_err(|_| StreamError::Kafka("the demo broker did not start".into()))?
            .map_err(|e| StreamError::Kafka(format!("cannot start the demo broker: {e}")))?;
        Ok(DemoBroker {
            brokers: Brokers::new(&servers)?,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn brokers(&self) -> &Brokers {
        &self.brokers
    }
}

impl Drop for DemoBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
