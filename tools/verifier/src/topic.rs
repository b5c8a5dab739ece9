//! Reading a topic from its start to its current end, partition by partition, without joining
//! a consumer group: how the verifier counts deliveries, how the walkthrough shows the
//! message the relay published for one order (`outbox-verify messages TOPIC KEY [SINCE]`), and
//! where each key landed (`outbox-verify partitions TOPIC`).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};

use outbox::kafka::KafkaConfig;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Headers},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use serde::Serialize;
use uuid::Uuid;

use crate::VerifyError;

/// A message as the verifier sees it: its key and its `id` and `type` headers.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub key: Vec<u8>,
    pub id: Option<Uuid>,
    pub event_type: Option<String>,
}

/// Every message of `topic`, partition by partition, up to the end.
pub fn read_all(kafka: &KafkaConfig, topic: &str) -> Result<Vec<Delivery>, VerifyError> {
    read(kafka, topic, None, |message| {
        Some(Delivery {
            key: message.key().unwrap_or_default().to_vec(),
            id: id_header(message),
            event_type: header(message, outbox::envelope::header::TYPE).map(str::to_owned),
        })
    })
}

/// The `id` header, as a UUID.
fn id_header(message: &BorrowedMessage<'_>) -> Option<Uuid> {
    header(message, outbox::envelope::header::ID).and_then(|v| Uuid::parse_str(v).ok())
}

/// Where a message landed: its partition, key and `id` header.
#[derive(Debug, Serialize)]
pub struct Placement {
    pub partition: i32,
    pub key: String,
    pub id: Option<Uuid>,
}

/// The placement of every message of `topic`: whether every relay put a key on one partition
/// (`outbox-verify partitions TOPIC`).
pub fn placements(kafka: &KafkaConfig, topic: &str) -> Result<Vec<Placement>, VerifyError> {
    read(kafka, topic, None, |message| {
        Some(Placement {
            partition: message.partition(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            id: id_header(message),
        })
    })
}

/// One message, whole, as a reader would want to see it.
#[derive(Debug, Serialize)]
pub struct Peeked {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    /// The payload as JSON, or as text when it is not JSON.
    pub payload: serde_json::Value,
}

/// Every message of `topic` whose key is `key`, in offset order; with `since`, only from the
/// first message of each partition stamped at or after it (a long topic is not read whole).
pub fn messages_with_key(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Peeked>, VerifyError> {
    read(kafka, topic, since, |message| {
        (message.key() == Some(key.as_bytes())).then(|| Peeked {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: key.to_owned(),
            headers: message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            let value = String::from_utf8_lossy(x.value.unwrap_or_default());
                            (x.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            payload: message
                .payload()
                .map(|p| {
                    serde_json::from_slice(p).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(p).into_owned())
                    })
                })
                .unwrap_or(serde_json::Value::Null),
        })
    })
}

/// The offset of the partition's first message stamped at or after `since`; `None` when there
/// is none. A broker that cannot answer by time gets the whole partition read (`Some(0)`).
fn first_offset_since(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    since: DateTime<Utc>,
) -> Option<i64> {
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition_offset(topic, partition, Offset::Offset(since.timestamp_millis()))
        .ok()?;
    let found = consumer.offsets_for_times(wanted, Duration::from_secs(10));
    match found.map(|f| f.find_partition(topic, partition).map(|p| p.offset())) {
        Ok(Some(Offset::Offset(offset))) => Some(offset),
        Ok(Some(Offset::End)) => None,
        _ => Some(0),
    }
}

/// A header's value as text, without the quotes a header converter may add (Debezium's JSON
/// converter writes a string header as a JSON string).
fn header<'m>(message: &'m BorrowedMessage<'_>, name: &str) -> Option<&'m str> {
    message.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(|v| v.trim_matches('"'))
    })
}

/// What `keep` makes of every message of `topic`, partition by partition, from the start (or
/// the first message at or after `since`) up to the end each partition had when the read began.
fn read<T>(
    kafka: &KafkaConfig,
    topic: &str,
    since: Option<DateTime<Utc>>,
    mut keep: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
) -> Result<Vec<T>, VerifyError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", format!("verify-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut out = Vec::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        let low = match since {
            Some(since) => match first_offset_since(&consumer, topic, partition, since) {
                Some(offset) => offset.max(low),
                // Nothing stamped that late: nothing to read here.
                None => high,
            },
            None => low,
        };
        if high <= low {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        let mut next = low;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while next < high && std::time::Instant::now() < deadline {
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message?;
            next = message.offset() + 1;
            out.extend(keep(&message));
        }
        // A partial read would count deliveries short: say so instead.
        if next < high {
            return Err(VerifyError::Incomplete {
                topic: topic.to_owned(),
                partition,
                read_to: next,
                end: high,
            });
        }
    }
    Ok(out)
}
