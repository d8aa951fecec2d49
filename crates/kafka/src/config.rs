//! Service settings: brokers, topics, delivery mode, batching, pass-through librdkafka properties.

use std::collections::BTreeMap;

use omnistitch_model::Channel;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How outputs and input offsets are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Kafka transactions: outputs, changelog and input offsets commit atomically.
    #[default]
    ExactlyOnce,
    /// Idempotent producer; input offsets are committed once every output is acknowledged.
    AtLeastOnce,
}

impl Mode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ExactlyOnce => "exactly_once",
            Mode::AtLeastOnce => "at_least_once",
        }
    }
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Email events in.
    pub email: String,
    /// Chat events in.
    pub chat: String,
    /// Phone events in.
    pub phone: String,
    /// Social events in.
    pub social: String,
    /// Timeline entries out (key = profile id).
    pub timeline: String,
    /// Profiles out, compacted (key = profile id; tombstone when merged away).
    pub profiles: String,
    /// Profile merges out (key = absorbed profile id).
    pub merges: String,
    /// Interventions out (key = profile id).
    pub interventions: String,
    /// Records that could not be processed: original bytes, reason in headers.
    pub deadletter: String,
    /// Changelog of the state (compacted; one partition per input partition).
    pub changelog: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            email: "cx.email.v1".into(),
            chat: "cx.chat.v1".into(),
            phone: "cx.phone.v1".into(),
            social: "cx.social.v1".into(),
            timeline: "cx.timeline.v1".into(),
            profiles: "cx.profiles.v1".into(),
            merges: "cx.merges.v1".into(),
            interventions: "cx.interventions.v1".into(),
            deadletter: "cx.deadletter.v1".into(),
            changelog: "omnistitch.changelog.v1".into(),
        }
    }
}

impl Topics {
    /// The input topic of `channel`.
    pub fn input(&self, channel: Channel) -> &str {
        match channel {
            Channel::Email => &self.email,
            Channel::Chat => &self.chat,
            Channel::Phone => &self.phone,
            Channel::Social => &self.social,
        }
    }

    /// Input topics in merge order: ties in event time go to the channel listed first
    /// (alphabetical, as `replay` orders its files).
    pub fn inputs(&self) -> [(Channel, &str); 4] {
        MERGE_ORDER.map(|c| (c, self.input(c)))
    }

    /// Output topics: timeline, profiles, merges, interventions, dead letters.
    pub fn outputs(&self) -> [&str; 5] {
        [&self.timeline, &self.profiles, &self.merges, &self.interventions, &self.deadletter]
    }

    /// Whether `name` is one of the compacted topics (profiles, changelog).
    pub fn is_compacted(&self, name: &str) -> bool {
        name == self.profiles || name == self.changelog
    }

    fn all(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.inputs().iter().map(|(_, t)| *t).collect();
        all.extend(self.outputs());
        all.push(&self.changelog);
        all
    }
}

/// Channels in the order the merge breaks event-time ties (file-name order of `replay`).
pub const MERGE_ORDER: [Channel; 4] = [Channel::Chat, Channel::Email, Channel::Phone, Channel::Social];

/// `[kafka]`: how the service talks to the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Consumer group; instances of one deployment share it.
    pub group_id: String,
    /// Delivery guarantee.
    pub mode: Mode,
    /// Transactional id of this instance (exactly_once); default `<group_id>-<HOSTNAME>`.
    pub transactional_id: Option<String>,
    /// Longest time input waits before its outputs are committed (the transaction interval).
    pub commit_interval_ms: u64,
    /// Most input records per transaction.
    pub max_batch: usize,
    /// How long the event-time merge waits for an input partition that has neither data nor
    /// reached its end before going on without it (order is then no longer reproducible).
    pub merge_max_wait_ms: u64,
    /// Longest an event's time may be ahead of its record's timestamp (clocks of producers
    /// disagree a little). An event further ahead is dead-lettered (`future_time`): it would
    /// move every event-time clock (retention, watermarks, due timers) forward for good.
    pub max_ahead_ms: u64,
    /// A tenant of a caught-up shard with no event for this long (wall clock) has its event-time
    /// clock moved on as wall-clock time passes, from its latest event time, so its timers
    /// (first-response SLAs, abandoned contacts) fire on time instead of at its next event; at
    /// most once per this interval per tenant, up to its timer horizon (in `exactly_once` each
    /// move is in the changelog). 0 turns it off (the default: then outputs depend on the input
    /// alone, as `replay`'s).
    pub idle_clock_ms: u64,
    /// Changelog bytes (accepted events) after which a shard writes a snapshot of its state to
    /// the changelog, in the transaction of its next commit: a restore reads the newest
    /// snapshot the committed offsets cover and re-applies only the events after it. Never
    /// before as many bytes as the last snapshot took (writing snapshots costs at most as much
    /// as the changelog itself). 0: no snapshots (every restore re-applies the whole changelog).
    pub snapshot_bytes: u64,
    /// Longest the loop restores shards before it serves the group again: the shards left, and
    /// the rest of a long restore, wait for the next round (their partitions unpolled). The group counts an instance that has
    /// not polled for `max.poll.interval.ms` as gone, so keep this well below it.
    pub restore_slice_ms: u64,
    /// Also commit input offsets through the consumer after each transaction. Needed on brokers
    /// that accept but do not store transactional offsets (librdkafka's mock cluster); leave off
    /// on real Kafka, where the transaction stores them.
    pub mirror_offsets: bool,
    /// Longest time to wait for the cluster in blocking calls (transactions, restore).
    pub request_timeout_ms: u64,
    /// Longest the loop may go without moving before `/healthz` reports it stalled (a wedged
    /// instance, for the orchestrator to restart); 0: four request timeouts. At least three
    /// request timeouts: a few cluster calls, each bounded by one, may come between two signs
    /// of progress.
    pub liveness_timeout_ms: u64,
    /// Create missing topics at start (through the admin API) instead of refusing to start.
    pub create_topics: bool,
    /// Partitions of topics the service creates (inputs, outputs, changelog).
    pub partitions: i32,
    /// Replication factor of topics the service creates.
    pub replication: i32,
    /// Any librdkafka property for every client (security.protocol, sasl.*, ssl.* ...); a
    /// number or boolean is taken as its text.
    #[serde(deserialize_with = "property_values")]
    pub properties: BTreeMap<String, String>,
    /// Topic names.
    pub topics: Topics,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "omnistitch".into(),
            mode: Mode::ExactlyOnce,
            transactional_id: None,
            commit_interval_ms: 100,
            max_batch: 20_000,
            merge_max_wait_ms: 10_000,
            max_ahead_ms: 300_000,
            restore_slice_ms: 30_000,
            idle_clock_ms: 0,
            snapshot_bytes: 16 << 20,
            mirror_offsets: false,
            request_timeout_ms: 30_000,
            liveness_timeout_ms: 0,
            create_topics: false,
            partitions: 6,
            replication: 3,
            properties: BTreeMap::new(),
            topics: Topics::default(),
        }
    }
}

/// A setting that cannot work; the message names the key.
#[derive(Debug, Error, PartialEq)]
pub enum KafkaConfigError {
    /// A required value is empty.
    #[error("kafka.{0} must not be empty")]
    Empty(&'static str),
    /// A number out of range.
    #[error("kafka.{key} must be {expected}, got {got}")]
    Range {
        /// Key.
        key: &'static str,
        /// What is allowed.
        expected: &'static str,
        /// What was given.
        got: i64,
    },
    /// Two roles share a topic.
    #[error("kafka.topics: topic {0:?} is used twice")]
    DuplicateTopic(String),
    /// A pass-through property the service must own.
    #[error("kafka.properties.{0} is set by the service ({1}); remove it")]
    Reserved(String, &'static str),
    /// Two pass-through properties that librdkafka reads as one (a name and its alias):
    /// which of them a client took would be down to chance.
    #[error("kafka.properties.{0} and kafka.properties.{1} name the same librdkafka property; keep one")]
    Alias(String, String),
    /// A pass-through property librdkafka refuses (unknown, or a value out of its range). The
    /// value is not repeated: it may be a secret.
    #[error("kafka.properties.{key}: {reason}")]
    Property {
        /// The property.
        key: String,
        /// librdkafka's reason, without the value.
        reason: String,
    },
    /// A pass-through property that contradicts what the service sets.
    #[error("kafka.properties.{key} must be {expected} ({why})")]
    Conflict {
        /// The property.
        key: String,
        /// What is allowed.
        expected: String,
        /// Why.
        why: &'static str,
    },
    /// `exactly_once` without a transactional id or a host name to make one of.
    #[error("kafka.transactional_id is not set and no host name (HOSTNAME) to derive it from: set it, stable and unique per instance")]
    NoTransactionalId,
}

/// The least `message.max.bytes` the service accepts: twice a changelog batch, above the
/// largest record a valid event makes.
pub const MIN_MESSAGE_BYTES: usize = 512 * 1024;

/// Properties the service sets itself: overriding them would break its guarantees.
const RESERVED: [(&str, &str); 14] = [
    ("auto.commit.enable", "offsets are committed with the outputs"),
    ("group.protocol", "the classic protocol's range assignor co-partitions the inputs"),
    ("group.remote.assignor", "the classic protocol's range assignor co-partitions the inputs"),
    ("enable.auto.commit", "offsets are committed with the outputs"),
    ("enable.auto.offset.store", "offsets are committed with the outputs"),
    ("isolation.level", "inputs and changelog are read committed"),
    ("transactional.id", "set kafka.transactional_id"),
    ("enable.idempotence", "always on"),
    ("group.id", "set kafka.group_id"),
    ("bootstrap.servers", "set kafka.bootstrap_servers"),
    ("partition.assignment.strategy", "co-partitioned inputs need the range assignor"),
    ("enable.partition.eof", "the event-time merge needs end-of-partition events"),
    ("transaction.timeout.ms", "twice kafka.request_timeout_ms, at least 60000"),
    ("statistics.interval.ms", "the consumer lag metric is read from the statistics"),
];

/// librdkafka's other names for its properties (its CONFIGURATION.md, "Alias for"): alias,
/// then the name librdkafka keeps.
const ALIASES: [(&str, &str); 11] = [
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    ("sasl.oauthbearer.client.credentials.client.id", "sasl.oauthbearer.client.id"),
    ("sasl.oauthbearer.client.credentials.client.secret", "sasl.oauthbearer.client.secret"),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
];

/// Pass-through property values: text, or a TOML number or boolean as its text (librdkafka
/// reads text; an unquoted `"sasl.password" = 1234` must not fail with the value quoted).
fn property_values<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Integer(i64),
        Float(f64),
        Boolean(bool),
    }
    let map = BTreeMap::<String, Value>::deserialize(d)?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::Text(t) => t,
                Value::Integer(i) => i.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Boolean(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// The name librdkafka keeps for property `key` (itself unless it is an alias).
fn canonical(key: &str) -> &str {
    let key = key.trim();
    ALIASES.iter().find(|(alias, _)| *alias == key).map_or(key, |(_, name)| name)
}

/// `text` with every occurrence of `value` hidden (when the value is long enough to find).
fn hide(text: &str, value: &str) -> String {
    let value = value.trim();
    if value.len() < 2 {
        return text.to_string();
    }
    text.replace(value, "<value>")
}

impl KafkaConfig {
    /// The pass-through property named `key` (or by an alias of it), as set.
    fn property(&self, key: &str) -> Option<(&str, &str)> {
        let name = canonical(key);
        self.properties.iter().find(|(k, _)| canonical(k) == name).map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The pass-through properties: no two name one librdkafka property, none is reserved,
    /// librdkafka takes each, and none contradicts what the service sets.
    fn validate_properties(&self) -> Result<(), KafkaConfigError> {
        let mut names: BTreeMap<&str, &str> = BTreeMap::new();
        for key in self.properties.keys() {
            if let Some(other) = names.insert(canonical(key), key) {
                return Err(KafkaConfigError::Alias(other.to_string(), key.to_string()));
            }
        }
        for (key, why) in RESERVED {
            if let Some((set, _)) = self.property(key) {
                return Err(KafkaConfigError::Reserved(set.to_string(), why));
            }
        }
        for (key, value) in &self.properties {
            let mut one = ClientConfig::new();
            one.set(key, value);
            if let Err(e) = one.create_native_config() {
                let reason = match e {
                    rdkafka::error::KafkaError::ClientConfig(_, desc, _, _) => desc,
                    other => other.to_string(),
                };
                return Err(KafkaConfigError::Property { key: key.clone(), reason: hide(&reason, value) });
            }
        }
        // A record may wait for delivery no longer than its transaction may stay open.
        let timeout = self.transaction_timeout().as_millis();
        if let (Mode::ExactlyOnce, Some((key, value))) = (self.mode, self.property("message.timeout.ms")) {
            if value.trim().parse::<u128>().map_or(true, |ms| ms == 0 || ms > timeout) {
                return Err(KafkaConfigError::Conflict {
                    key: key.to_string(),
                    expected: format!("1..={timeout}"),
                    why: "in exactly_once at most the transaction timeout, twice kafka.request_timeout_ms, at least 60000",
                });
            }
        }
        self.validate_producer_properties()
    }

    /// Producer properties the idempotent producer and the compacted outputs rely on: checked
    /// here, so that start fails naming them rather than with the client's words.
    fn validate_producer_properties(&self) -> Result<(), KafkaConfigError> {
        type Check = (&'static str, fn(&str) -> bool, &'static str, &'static str);
        const CHECKS: [Check; 4] = [
            (
                "partitioner",
                |v| {
                    matches!(
                        v.trim(),
                        "consistent" | "consistent_random" | "murmur2" | "murmur2_random" | "fnv1a" | "fnv1a_random"
                    )
                },
                "a partitioner hashing the key (consistent_random, murmur2_random, fnv1a_random ...)",
                "a profile's records and tombstones must land in one partition of the compacted profiles topic",
            ),
            (
                "acks",
                |v| v.trim().eq_ignore_ascii_case("all") || v.trim() == "-1",
                "all",
                "the idempotent producer needs every in-sync replica's acknowledgement",
            ),
            (
                "max.in.flight",
                |v| v.trim().parse::<i32>().is_ok_and(|n| (1..=5).contains(&n)),
                "1..=5",
                "the idempotent producer keeps order with at most five requests in flight",
            ),
            (
                "retries",
                // The client reads a 32-bit number: a larger one would wrap.
                |v| v.trim().parse::<i32>().is_ok_and(|n| n > 0),
                "at least 1",
                "the idempotent producer retries what it could not deliver",
            ),
        ];
        for (name, ok, expected, why) in CHECKS {
            if let Some((key, value)) = self.property(name) {
                if !ok(value) {
                    return Err(KafkaConfigError::Conflict {
                        key: key.to_string(),
                        expected: expected.to_string(),
                        why,
                    });
                }
            }
        }
        Ok(())
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), KafkaConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(KafkaConfigError::Empty("bootstrap_servers"));
        }
        if self.group_id.trim().is_empty() {
            return Err(KafkaConfigError::Empty("group_id"));
        }
        let range = |key, expected, ok: bool, got: i64| {
            if ok {
                Ok(())
            } else {
                Err(KafkaConfigError::Range { key, expected, got })
            }
        };
        range(
            "commit_interval_ms",
            "1..=60000",
            (1..=60_000).contains(&self.commit_interval_ms),
            self.commit_interval_ms as i64,
        )?;
        range("max_batch", "1..=1000000", (1..=1_000_000).contains(&self.max_batch), self.max_batch as i64)?;
        // At 0 a partition just assigned, with nothing fetched yet, would be passed over at
        // once (the order would depend on fetch timing); past an hour a partition without a
        // leader would hold its shard up for that long.
        range(
            "merge_max_wait_ms",
            "100..=3600000",
            (100..=3_600_000).contains(&self.merge_max_wait_ms),
            i64::try_from(self.merge_max_wait_ms).unwrap_or(i64::MAX),
        )?;
        const MONTH_MS: u64 = 31 * 24 * 3_600_000;
        range("max_ahead_ms", "1..=2678400000", (1..=MONTH_MS).contains(&self.max_ahead_ms), self.max_ahead_ms as i64)?;
        range(
            "idle_clock_ms",
            "0 (off) or 100..=86400000",
            self.idle_clock_ms == 0 || (100..=86_400_000).contains(&self.idle_clock_ms),
            self.idle_clock_ms as i64,
        )?;
        range(
            "snapshot_bytes",
            "0 (off) or 65536..=17179869184",
            self.snapshot_bytes == 0 || (1 << 16..=1 << 34).contains(&self.snapshot_bytes),
            self.snapshot_bytes as i64,
        )?;
        // At most 450 s: the transaction timeout (twice this) must stay within the brokers'
        // default transaction.max.timeout.ms (900 s), and a restore's start (up to three request
        // timeouts) within max.poll.interval.ms.
        range(
            "request_timeout_ms",
            "1000..=450000",
            (1000..=450_000).contains(&self.request_timeout_ms),
            i64::try_from(self.request_timeout_ms).unwrap_or(i64::MAX),
        )?;
        // A round lasts up to a commit interval, and its commit up to a request timeout: longer
        // together than a transaction may stay open, the coordinator aborts every transaction
        // of a busy round, and the service rewinds for ever.
        let timeout_ms = self.transaction_timeout().as_millis() as u64;
        range(
            "commit_interval_ms",
            "below the transaction timeout (twice kafka.request_timeout_ms, at least 60000) less kafka.request_timeout_ms",
            self.commit_interval_ms.saturating_add(self.request_timeout_ms) < timeout_ms,
            self.commit_interval_ms as i64,
        )?;
        range(
            "liveness_timeout_ms",
            "0 (four request timeouts) or at least three kafka.request_timeout_ms",
            self.liveness_timeout_ms == 0 || self.liveness_timeout_ms >= self.request_timeout_ms.saturating_mul(3),
            self.liveness_timeout_ms as i64,
        )?;
        let max_poll_interval =
            self.properties.get("max.poll.interval.ms").and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(300_000);
        range(
            "restore_slice_ms",
            "at most half of max.poll.interval.ms (default 300000)",
            self.restore_slice_ms <= max_poll_interval / 2,
            self.restore_slice_ms as i64,
        )?;
        // A restore's start (the committed offsets, then the changelog's stable end, waited for
        // up to a transaction timeout and a request timeout) runs between two polls of the group.
        let restore_start = timeout_ms.saturating_add(self.request_timeout_ms.saturating_mul(2));
        range(
            "request_timeout_ms",
            "such that the transaction timeout plus two request timeouts stay below max.poll.interval.ms (default 300000)",
            restore_start < max_poll_interval,
            i64::try_from(self.request_timeout_ms).unwrap_or(i64::MAX),
        )?;
        // A valid event takes up to about 240 KB (its texts and recipient lists at their limits)
        // in its timeline record and changelog entry, and a changelog batch up to 256 KiB: a
        // smaller limit would refuse such a record for good, and its batch would be retried
        // for ever.
        let max_message = self.max_message_bytes();
        range(
            "properties.message.max.bytes",
            "at least 524288",
            max_message >= MIN_MESSAGE_BYTES,
            i64::try_from(max_message).unwrap_or(i64::MAX),
        )?;
        range("partitions", ">= 1", self.partitions >= 1, self.partitions as i64)?;
        range("replication", ">= 1", self.replication >= 1, self.replication as i64)?;
        let mut seen = std::collections::HashSet::new();
        for t in self.topics.all() {
            if t.trim().is_empty() {
                return Err(KafkaConfigError::Empty("topics.*"));
            }
            if !seen.insert(t) {
                return Err(KafkaConfigError::DuplicateTopic(t.to_string()));
            }
        }
        self.validate_properties()?;
        if self.transactional_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(KafkaConfigError::Empty("transactional_id (leave it unset to derive one)"));
        }
        if self.mode == Mode::ExactlyOnce && self.transactional_id().is_none() {
            return Err(KafkaConfigError::NoTransactionalId);
        }
        Ok(())
    }

    /// The transactional id of this instance: `transactional_id`, else `<group_id>-<host>`
    /// with the host from `HOSTNAME`, the kernel's host name, or the `hostname` command
    /// (systems without `/proc`); `None` without any (two instances sharing a made-up id
    /// would fence each other).
    pub fn transactional_id(&self) -> Option<String> {
        if let Some(id) = &self.transactional_id {
            return Some(id.clone());
        }
        let named = |h: String| Some(h.trim().to_string()).filter(|h| !h.is_empty());
        let host = std::env::var("HOSTNAME")
            .ok()
            .and_then(named)
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().and_then(named))
            .or_else(|| {
                let out = std::process::Command::new("hostname").output().ok().filter(|o| o.status.success())?;
                String::from_utf8(out.stdout).ok().and_then(named)
            })?;
        Some(format!("{}-{}", self.group_id, host))
    }

    /// Whether an event at `event_time` is too far ahead of its record's timestamp `ts` (ms;
    /// none, or not positive: no check).
    pub fn too_far_ahead(&self, event_time: i64, ts: Option<i64>) -> bool {
        ts.is_some_and(|ts| ts > 0 && event_time > ts.saturating_add(self.max_ahead_ms as i64))
    }

    /// How long a transaction may stay open before the coordinator aborts it.
    pub fn transaction_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.request_timeout_ms * 2).max(60_000))
    }

    /// Longest silence of the loop counted as alive (`liveness_timeout_ms`, or its default).
    pub fn liveness_timeout(&self) -> std::time::Duration {
        match self.liveness_timeout_ms {
            0 => std::time::Duration::from_millis(self.request_timeout_ms.saturating_mul(4)),
            ms => std::time::Duration::from_millis(ms),
        }
    }

    /// Largest record the producer sends: `message.max.bytes` among the properties, else
    /// the client's default (1,000,000).
    pub fn max_message_bytes(&self) -> usize {
        self.properties.get("message.max.bytes").and_then(|v| v.trim().parse().ok()).unwrap_or(1_000_000)
    }

    /// Settings every client shares: brokers and the pass-through properties.
    pub fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        // Client logs go to tracing, which filters them; librdkafka's debug contexts (the
        // `debug` property) need the debug level to be heard at all.
        let debug = self.properties.contains_key("debug");
        c.set_log_level(if debug { RDKafkaLogLevel::Debug } else { RDKafkaLogLevel::Info });
        c
    }

    /// The input consumer: group member, manual offsets, read committed, end-of-partition events.
    pub fn consumer(&self) -> ClientConfig {
        let mut c = self.client();
        self.strip(&mut c, PRODUCER_ONLY);
        c.set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("partition.assignment.strategy", "range")
            .set("enable.partition.eof", "true")
            .set("statistics.interval.ms", "5000");
        set_default(&mut c, &self.properties, "auto.offset.reset", "earliest");
        set_default(&mut c, &self.properties, "fetch.queue.backoff.ms", "10");
        // Every partition has a queue of its own, and librdkafka then prefetches up to this
        // much into each (its default is 64 MiB): a member with 32 shards waiting for their
        // restores would hold 8 GiB of records fetched ahead.
        set_default(&mut c, &self.properties, "queued.max.messages.kbytes", "8192");
        c
    }

    /// The output producer: idempotent, transactional in exactly_once mode, lz4, delivery reports
    /// for failures only.
    pub fn producer(&self) -> ClientConfig {
        let mut c = self.client();
        self.strip(&mut c, CONSUMER_ONLY);
        c.set("enable.idempotence", "true");
        if self.mode == Mode::ExactlyOnce {
            // Validated at start: without an id the client refuses transactions.
            if let Some(id) = self.transactional_id() {
                c.set("transactional.id", id);
            }
            c.set("transaction.timeout.ms", self.transaction_timeout().as_millis().to_string());
        }
        set_default(&mut c, &self.properties, "compression.type", "lz4");
        // Outputs wait for the transaction's commit anyway: 5 ms of batching (not 2) makes
        // produce requests larger and fewer, for a few ms of latency.
        set_default(&mut c, &self.properties, "linger.ms", "5");
        // Only failures matter to the service (it waits for the queue to empty, then checks
        // for failures): a report per delivered record is work for nothing.
        set_default(&mut c, &self.properties, "delivery.report.only.error", "true");
        set_default(&mut c, &self.properties, "queue.buffering.max.messages", "1000000");
        set_default(&mut c, &self.properties, "queue.buffering.max.kbytes", "1048576");
        c
    }

    /// A reader of the changelog outside the group (restore).
    pub fn changelog_reader(&self) -> ClientConfig {
        let mut c = self.client();
        self.strip(&mut c, PRODUCER_ONLY);
        c.set("group.id", format!("{}-restore", self.group_id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            // An offset the log no longer has (retention took its start while a restore was
            // spread over rounds) goes on from what is left, not from the end (the client's
            // default, or an `auto.offset.reset` meant for the inputs): that would skip the rest.
            .set("auto.offset.reset", "earliest");
        set_default(&mut c, &self.properties, "fetch.queue.backoff.ms", "10");
        c
    }
}

impl KafkaConfig {
    /// Leaves out of `c` the pass-through properties among `keys` (those of the other client
    /// type): one `[kafka.properties]` table serves every client, and librdkafka warns at every
    /// start about a property its client type ignores.
    fn strip(&self, c: &mut ClientConfig, keys: &[&str]) {
        for k in self.properties.keys().filter(|k| keys.contains(&k.as_str())) {
            c.remove(k);
        }
    }
}

/// librdkafka's consumer-only global properties (`C` in its CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// librdkafka's producer-only properties (`P` in its CONFIGURATION.md).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

fn set_default(c: &mut ClientConfig, props: &BTreeMap<String, String>, key: &str, value: &str) {
    if !props.keys().any(|k| canonical(k) == canonical(key)) {
        c.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_the_documented_topics() {
        let c = KafkaConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.topics.input(Channel::Phone), "cx.phone.v1");
        assert!(c.topics.is_compacted("cx.profiles.v1"));
        assert!(!c.topics.is_compacted("cx.timeline.v1"));
    }

    #[test]
    fn bad_settings_are_named() {
        let mut c = KafkaConfig { commit_interval_ms: 0, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("commit_interval_ms"));
        c.commit_interval_ms = 100;
        c.topics.merges = c.topics.timeline.clone();
        assert_eq!(c.validate(), Err(KafkaConfigError::DuplicateTopic("cx.timeline.v1".into())));
        let mut c = KafkaConfig::default();
        c.properties.insert("enable.auto.commit".into(), "true".into());
        assert!(c.validate().unwrap_err().to_string().contains("enable.auto.commit"));
        // The service sets these itself; a value of the user's would be silently overridden.
        for key in ["transaction.timeout.ms", "statistics.interval.ms"] {
            let mut c = KafkaConfig::default();
            c.properties.insert(key.into(), "1000".into());
            assert!(c.validate().unwrap_err().to_string().contains(key), "{key}");
        }
        // A round and its commit must fit in a transaction's lifetime (60 s by default).
        let c = KafkaConfig { commit_interval_ms: 40_000, ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("transaction timeout"));
        let c = KafkaConfig { commit_interval_ms: 40_000, request_timeout_ms: 10_000, ..Default::default() };
        c.validate().unwrap();
        let c = KafkaConfig { bootstrap_servers: " ".into(), ..Default::default() };
        assert_eq!(c.validate(), Err(KafkaConfigError::Empty("bootstrap_servers")));
        // A record limit that a valid event's records or a changelog batch could pass.
        let mut c = KafkaConfig::default();
        c.properties.insert("message.max.bytes".into(), "200000".into());
        assert!(c.validate().unwrap_err().to_string().contains("message.max.bytes"));
        c.properties.insert("message.max.bytes".into(), "524288".into());
        c.validate().unwrap();
    }

    /// librdkafka reads an alias as its property: a reserved property is refused under any
    /// name, two names of one property are refused, and a default is not set over an alias.
    #[test]
    fn aliases_of_properties_are_one_property() {
        let with = |pairs: &[(&str, &str)]| {
            let mut c = KafkaConfig::default();
            for (k, v) in pairs {
                c.properties.insert(k.to_string(), v.to_string());
            }
            c
        };
        let err = with(&[("metadata.broker.list", "127.0.0.1:1")]).validate().unwrap_err().to_string();
        assert!(err.contains("metadata.broker.list is set by the service"), "{err}");
        let err = with(&[("compression.codec", "gzip"), ("compression.type", "zstd")]).validate().unwrap_err();
        assert_eq!(err, KafkaConfigError::Alias("compression.codec".into(), "compression.type".into()));
        let c = with(&[("compression.codec", "gzip"), ("queue.buffering.max.ms", "20")]);
        c.validate().unwrap();
        let producer = c.producer();
        assert_eq!(producer.get("compression.type"), None, "the user's alias is not overridden");
        assert_eq!(producer.get("linger.ms"), None);
        assert_eq!(producer.get("compression.codec"), Some("gzip"));
    }

    /// A property librdkafka refuses is named at start, without its value (it may be a
    /// secret); one that contradicts the transaction timeout is named too.
    #[test]
    fn refused_properties_are_named_without_their_value() {
        let mut c = KafkaConfig::default();
        c.properties.insert("socket.timeout.ms".into(), "SECRET-not-a-number".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with("kafka.properties.socket.timeout.ms: "), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
        let mut c = KafkaConfig::default();
        c.properties.insert("sasl.passwrd".into(), "SECRET-typo".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("sasl.passwrd") && !err.contains("SECRET"), "{err}");
        let mut c = KafkaConfig::default();
        c.properties.insert("delivery.timeout.ms".into(), "120000".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("delivery.timeout.ms must be 1..=60000"), "{err}");
        c.mode = Mode::AtLeastOnce;
        c.validate().unwrap();
        c.properties.insert("delivery.timeout.ms".into(), "30000".into());
        c.mode = Mode::ExactlyOnce;
        c.validate().unwrap();
    }

    /// Producer properties that would break the idempotent producer or scatter a profile's
    /// records over partitions are refused at start, under any of their names.
    #[test]
    fn producer_properties_that_break_the_outputs_are_refused() {
        for (key, bad, good) in [
            ("partitioner", "random", "murmur2_random"),
            ("acks", "1", "all"),
            ("acks", "0", "ALL"),
            ("retries", "4294967296", "2147483647"),
            ("request.required.acks", "0", "-1"),
            ("max.in.flight", "6", "5"),
            ("max.in.flight.requests.per.connection", "100", "1"),
            ("retries", "0", "10"),
            ("message.send.max.retries", "0", "3"),
        ] {
            let mut c = KafkaConfig::default();
            c.properties.insert(key.into(), bad.into());
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("kafka.properties.{key} must be ")), "{err}");
            c.properties.insert(key.into(), good.into());
            c.validate().unwrap();
        }
    }

    /// A blank transactional id is refused at start (not by the first transaction), and a
    /// request timeout that would overflow, outlive the brokers' transaction limit or block
    /// a restore past the group's poll interval is refused.
    #[test]
    fn blank_ids_and_extreme_timeouts_are_refused() {
        for id in ["", "   "] {
            let c = KafkaConfig { transactional_id: Some(id.into()), ..Default::default() };
            assert!(c.validate().unwrap_err().to_string().contains("transactional_id"), "{id:?}");
        }
        for ms in [999, 100_000, 450_001, 4_294_967_296] {
            let c = KafkaConfig { request_timeout_ms: ms, ..Default::default() };
            assert!(c.validate().unwrap_err().to_string().contains("request_timeout_ms"), "{ms}");
        }
        let mut c = KafkaConfig { request_timeout_ms: 100_000, liveness_timeout_ms: 0, ..Default::default() };
        c.properties.insert("max.poll.interval.ms".into(), "900000".into());
        c.validate().unwrap();
        for ms in [0, 99, 3_600_001] {
            let c = KafkaConfig { merge_max_wait_ms: ms, ..Default::default() };
            assert!(c.validate().unwrap_err().to_string().contains("merge_max_wait_ms"), "{ms}");
        }
        assert!(KafkaConfig { merge_max_wait_ms: 3_600_000, ..Default::default() }.validate().is_ok());
    }

    #[test]
    fn an_event_far_ahead_of_its_record_is_too_far() {
        let c = KafkaConfig { max_ahead_ms: 1_000, ..Default::default() };
        assert!(!c.too_far_ahead(10_000, Some(9_000)), "exactly the allowance");
        assert!(c.too_far_ahead(10_001, Some(9_000)));
        assert!(!c.too_far_ahead(5_000, Some(9_000)), "behind is fine (a backfill)");
        assert!(!c.too_far_ahead(i64::MAX, None) && !c.too_far_ahead(i64::MAX, Some(-1)), "no timestamp, no check");
        assert!(!c.too_far_ahead(i64::MAX, Some(i64::MAX)), "no overflow");
        assert!(KafkaConfig { max_ahead_ms: 0, ..Default::default() }.validate().is_err());
        assert!(KafkaConfig { idle_clock_ms: 50, ..Default::default() }.validate().is_err());
        assert!(KafkaConfig { idle_clock_ms: 30_000, ..Default::default() }.validate().is_ok());
        assert!(KafkaConfig { restore_slice_ms: 200_000, ..Default::default() }.validate().is_err());
        assert!(KafkaConfig { liveness_timeout_ms: 60_000, ..Default::default() }.validate().is_err());
        let alive = KafkaConfig { liveness_timeout_ms: 90_000, ..Default::default() };
        assert_eq!(alive.validate(), Ok(()));
        assert_eq!(alive.liveness_timeout(), std::time::Duration::from_secs(90));
        assert_eq!(KafkaConfig::default().liveness_timeout(), std::time::Duration::from_secs(120));
        let mut long_polls = KafkaConfig { restore_slice_ms: 200_000, ..Default::default() };
        long_polls.properties.insert("max.poll.interval.ms".into(), "900000".into());
        long_polls.validate().unwrap();
    }

    #[test]
    fn the_transactional_id_is_the_configured_one_else_group_and_host() {
        let c = KafkaConfig { group_id: "g".into(), ..Default::default() };
        let derived = c.transactional_id().expect("a Linux host has a name");
        assert!(derived.len() > 2 && derived.starts_with("g-"), "{derived}");
        let c = KafkaConfig { transactional_id: Some("g-pod-0".into()), ..c };
        assert_eq!(c.transactional_id().as_deref(), Some("g-pod-0"));
        assert_eq!(c.producer().get("transactional.id"), Some("g-pod-0"));
    }

    #[test]
    fn pass_through_properties_reach_clients_and_service_keys_win() {
        let mut c = KafkaConfig::default();
        c.properties.insert("security.protocol".into(), "SASL_SSL".into());
        c.properties.insert("compression.type".into(), "zstd".into());
        let p = c.producer();
        assert_eq!(p.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(p.get("compression.type"), Some("zstd"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert!(p.get("transactional.id").is_some());
        let c = KafkaConfig { mode: Mode::AtLeastOnce, ..c };
        assert_eq!(c.producer().get("transactional.id"), None);
        assert_eq!(c.consumer().get("isolation.level"), Some("read_committed"));
        assert_eq!(c.consumer().get("auto.offset.reset"), Some("earliest"));
        assert_eq!(c.consumer().get("queued.max.messages.kbytes"), Some("8192"), "8 MiB ahead per partition");
    }

    /// One properties table serves every client: each gets the ones of its type and the shared
    /// ones (librdkafka warned at every start about the others).
    #[test]
    fn each_client_takes_the_properties_of_its_type() {
        let mut c = KafkaConfig::default();
        for (k, v) in [
            ("fetch.wait.max.ms", "5"),
            ("queued.max.messages.kbytes", "16384"),
            ("linger.ms", "20"),
            ("client.id", "x"),
        ] {
            c.properties.insert(k.into(), v.into());
        }
        let (p, consumer, reader) = (c.producer(), c.consumer(), c.changelog_reader());
        assert_eq!((p.get("fetch.wait.max.ms"), p.get("queued.max.messages.kbytes")), (None, None));
        assert_eq!((p.get("linger.ms"), p.get("client.id")), (Some("20"), Some("x")));
        assert_eq!((consumer.get("fetch.wait.max.ms"), consumer.get("linger.ms")), (Some("5"), None));
        assert_eq!((reader.get("queued.max.messages.kbytes"), reader.get("linger.ms")), (Some("16384"), None));
        assert_eq!(consumer.get("client.id"), Some("x"));
    }

    /// The inputs may start from their end; a restore never does.
    #[test]
    fn the_changelog_reader_goes_on_from_the_earliest_offset_whatever_the_inputs_do() {
        let mut c = KafkaConfig::default();
        c.properties.insert("auto.offset.reset".into(), "latest".into());
        assert_eq!(c.consumer().get("auto.offset.reset"), Some("latest"));
        assert_eq!(c.changelog_reader().get("auto.offset.reset"), Some("earliest"));
    }
}
