//! Consumer lag against a real broker: what a group has not committed, partition by partition.

use std::time::Duration;

use outbox::kafka::LagProbe;
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer},
    ClientConfig, Offset, TopicPartitionList,
};

#[tokio::test]
async fn lag_is_what_the_group_has_not_committed() {
    let kafka = testkit::kafka();
    let topic = kafka.topic_for("lagged");
    // Keys spread the messages over the partitions; how many lands where does not matter.
    let written = rand::random_range(7..12i64);
    for i in 0..written {
        testkit::produce(&kafka, &topic, &format!("k{i}"), b"{}", &[]).await;
    }
    let probe = LagProbe::new(&kafka, "ledger", vec![topic.clone()]).unwrap();
    let before = tokio::task::spawn_blocking({
        let probe = LagProbe::new(&kafka, "ledger", vec![topic.clone()]).unwrap();
        move || probe.read(Duration::from_secs(10))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(before.group, kafka.group_id("ledger"));
    assert_eq!(before.partitions.len(), kafka.partitions as usize);
    assert_eq!(
        before.total, written,
        "a group that never committed lags by everything"
    );
    assert!(before.partitions.iter().all(|p| p.committed.is_none()));

    // The group commits partition 0 up to its end, and one message of the busiest other.
    let busiest = before
        .partitions
        .iter()
        .filter(|p| p.partition != 0 && p.end > 0)
        .max_by_key(|p| p.end)
        .map(|p| p.partition);
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .set("group.id", kafka.group_id("ledger"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    let end_of = |partition: i32| {
        before
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .unwrap()
            .end
    };
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(end_of(0)))
        .unwrap();
    if let Some(p) = busiest {
        offsets
            .add_partition_offset(&topic, p, Offset::Offset(1))
            .unwrap();
    }
    group.commit(&offsets, CommitMode::Sync).unwrap();

    let after = tokio::task::spawn_blocking(move || probe.read(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    let committed = end_of(0) + i64::from(busiest.is_some());
    assert_eq!(after.total, written - committed);
    let zero = after.partitions.iter().find(|p| p.partition == 0).unwrap();
    assert_eq!((zero.committed, zero.lag), (Some(end_of(0)), 0));
}

#[tokio::test]
async fn a_topic_that_does_not_exist_is_an_error_not_a_lag_of_zero() {
    let kafka = testkit::kafka();
    let probe = LagProbe::new(&kafka, "ledger", vec![kafka.topic_for("nowhere")]).unwrap();
    let read = tokio::task::spawn_blocking(move || probe.read(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(read.is_err(), "{read:?}");
}
