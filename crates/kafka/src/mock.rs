//! librdkafka's in-process mock cluster, for the embedded mode, tests and benchmarks.

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, DefaultProducerContext, Producer};
use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Most changelog bytes between snapshots on the mock cluster, whose partitions keep about
/// 5 MiB each (older records disappear).
pub const MOCK_SNAPSHOT_BYTES: u64 = 1 << 20;

/// A mock cluster with the service's topics; it lives as long as this value.
pub struct EmbeddedCluster {
    /// The client whose handle owns the cluster (`test.mock.num.brokers`).
    owner: BaseProducer,
}

impl EmbeddedCluster {
    /// Starts `brokers` mock brokers on loopback ports and creates every topic of `config`
    /// (with `config.partitions` partitions). Consumer groups form at once (no initial
    /// rebalance delay).
    pub fn start(brokers: i32, config: &KafkaConfig) -> Result<Self, KafkaError> {
        let owner: BaseProducer = ClientConfig::new().set("test.mock.num.brokers", brokers.to_string()).create()?;
        let this = EmbeddedCluster { owner };
        this.no_initial_rebalance_delay();
        crate::topics::create_on_mock(&this.cluster(), config)?;
        Ok(this)
    }

    /// The cluster, for fault injection.
    pub fn cluster(&self) -> MockCluster<'_, DefaultProducerContext> {
        self.owner.client().mock_cluster().expect("the owner was created with test.mock.num.brokers")
    }

    /// `bootstrap.servers` of the cluster.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster().bootstrap_servers()
    }

    /// A service configuration for this cluster (snapshots at least every [`MOCK_SNAPSHOT_BYTES`]): its brokers, offsets mirrored through the
    /// consumer (the mock accepts but does not store transactional offsets), and short fetch
    /// waits (a mock broker holds a fetch of an empty partition for the whole
    /// `fetch.wait.max.ms`, 500 ms by default, even when records arrive meanwhile; a real broker
    /// answers as soon as they do).
    pub fn service_config(&self, mut config: KafkaConfig) -> KafkaConfig {
        config.bootstrap_servers = self.bootstrap_servers();
        config.mirror_offsets = true;
        config.replication = 1;
        // A mock partition keeps about 5 MiB: a snapshot at least every MiB keeps the newest
        // one and what came after it within that.
        if config.snapshot_bytes > 0 {
            config.snapshot_bytes = config.snapshot_bytes.min(MOCK_SNAPSHOT_BYTES);
        }
        config.properties.entry("fetch.wait.max.ms".into()).or_insert_with(|| "5".into());
        config
    }

    /// Sets the group coordinator's initial rebalance delay to 0 (3 s by default on the mock).
    #[allow(unsafe_code)]
    fn no_initial_rebalance_delay(&self) {
        // rdkafka has no safe wrapper for this knob. SAFETY: the handle belongs to `self.owner`,
        // alive for the whole call; the returned cluster pointer is owned by that handle, and the
        // call only stores an integer in it.
        unsafe {
            let cluster = rdkafka::bindings::rd_kafka_handle_mock_cluster(self.owner.client().native_ptr());
            if !cluster.is_null() {
                rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{BaseRecord, ThreadedProducer};
    use rdkafka::Message;
    use std::time::{Duration, Instant};

    /// Producers compress with whatever codec they like: the service's consumer reads every
    /// one Kafka defines (a codec the client was built without makes it skip the batch).
    #[test]
    fn the_consumer_reads_every_compression_codec() {
        let base = KafkaConfig { partitions: 1, ..Default::default() };
        let cluster = EmbeddedCluster::start(1, &base).unwrap();
        let config = cluster.service_config(base);
        let topic = config.topics.email.as_str();
        let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
        for codec in codecs {
            let producer: ThreadedProducer<DefaultProducerContext> =
                config.client().set("compression.type", codec).create().unwrap();
            let value = format!("{codec} ").repeat(200);
            producer.send(BaseRecord::<str, str>::to(topic).key(codec).payload(&value)).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
        let consumer: BaseConsumer = config.consumer().create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut read = Vec::new();
        let started = Instant::now();
        while read.len() < codecs.len() && started.elapsed() < Duration::from_secs(20) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                    assert_eq!(m.payload().unwrap(), format!("{key} ").repeat(200).as_bytes());
                    read.push(key);
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
                Some(Err(e)) => panic!("consumer error: {e}"),
            }
        }
        assert_eq!(read, codecs, "every codec's record, in order");
    }
}
