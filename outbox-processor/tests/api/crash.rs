//! A relay that dies between the broker's ack and its mark: the event goes out again, and the
//! consumer still applies it once.

use std::time::Duration;

use chrono::Utc;
use contracts::{OrderLine, OrderPlaced};
use outbox::{
    relay::RelaySettings,
    relay::{Outlet, Relay},
};
use testkit::Spawned;
use uuid::Uuid;

#[tokio::test]
async fn a_relay_killed_between_ack_and_mark_republishes_and_inventory_applies_once() {
    let kafka = testkit::kafka();
    // The orders side: an outbox with one OrderPlaced.
    let (_, orders) = testkit::fresh_outbox_database().await;
    let order_id = Uuid::now_v7();
    let mut tx = orders.begin().await.unwrap();
    let placed = OrderPlaced {
        order_id,
        customer_id: "cust-42".into(),
        items: vec![OrderLine {
            sku: "KEYBOARD-01".into(),
            quantity: 3,
        }],
        placed_at: Utc::now(),
    };
    let event_id = outbox::Writer::default()
        .write_in_tx(&mut tx, &placed, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The consuming side: a real inventory-service.
    let mut config = testkit::postgres_service_config().await;
    config.kafka = kafka.clone();
    let inventory = inventory_service::startup::Application::build(config)
        .await
        .unwrap();
    let inventory_pool = inventory.pool();
    let service = Spawned::spawn(inventory.port(), |shutdown| inventory.run(shutdown));

    let relay = || {
        Relay::new(
            "orders".into(),
            orders.clone(),
            RelaySettings::default(),
            Outlet::new(
                std::sync::Arc::new(outbox::kafka::KafkaBroker::new(
                    outbox::kafka::Producer::new(outbox::kafka::producer_config(&kafka)).unwrap(),
                    kafka.clone(),
                )),
                kafka.topics(),
            ),
        )
    };
    // The first relay publishes, the broker acknowledges, and the relay dies before marking:
    // its transaction never commits (as when the process is killed).
    let doomed = relay();
    let claim = doomed.claim().await.unwrap().expect("a row to claim");
    doomed.publish(&claim).await;
    drop(claim);
    let unpublished: i64 =
        sqlx::query_scalar("select count(*) from outbox where published_at is null")
            .fetch_one(&orders)
            .await
            .unwrap();
    assert_eq!(unpublished, 1, "the mark was lost with the crash");

    // Its replacement publishes the row again.
    assert_eq!(relay().relay_batch().await.unwrap().published, 1);
    let copies =
        testkit::read_topic(&kafka, &kafka.topic_for("order"), 3, Duration::from_secs(5)).await;
    assert_eq!(
        copies.len(),
        2,
        "published twice: at least once, never lost"
    );
    for copy in &copies {
        assert_eq!(testkit::header(copy, "id"), Some(event_id.to_string()));
    }

    // Inventory saw both copies and applied one.
    let http = testkit::http();
    let product = || testkit::get_json(&http, format!("{}/products/KEYBOARD-01", service.address));
    testkit::eventually(Duration::from_secs(20), || async {
        (product().await["reserved"] == 3).then_some(())
    })
    .await
    .expect("the order was reserved");
    // A later event under the same key: once it is applied, the second copy was handled too.
    let sentinel = OrderPlaced {
        order_id: Uuid::now_v7(),
        customer_id: "cust-42".into(),
        items: vec![OrderLine {
            sku: "CABLE-USBC".into(),
            quantity: 1,
        }],
        placed_at: Utc::now(),
    };
    testkit::publish_event_with_key(&kafka, &order_id.to_string(), Uuid::now_v7(), &sentinel).await;
    testkit::eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar("select count(*) from processed_events")
            .fetch_one(&inventory_pool)
            .await
            .unwrap();
        (n == 2).then_some(())
    })
    .await
    .expect("the sentinel was processed");
    assert_eq!(product().await["on_hand"], 97);
    let answers: i64 =
        sqlx::query_scalar("select count(*) from outbox where type = 'StockReserved'")
            .fetch_one(&inventory_pool)
            .await
            .unwrap();
    assert_eq!(answers, 2, "one for the order, one for the sentinel");
    let dead = testkit::read_topic(
        &kafka,
        &kafka.dead_letter_topic("inventory-service"),
        1,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        dead.is_empty(),
        "the duplicate was skipped, not dead-lettered"
    );
}
