//! invoice-service against a real MongoDB-protocol server and Kafka.

use std::time::Duration;

use chrono::Utc;
use contracts::{OrderConfirmed, PricedLine};
use invoice_service::{config::Config, startup::Application};
use mongodb::{bson::doc, Database};
use outbox::kafka::KafkaConfig;
use serde_json::Value;
use testkit::Spawned;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

struct TestApp {
    address: String,
    db: Database,
    kafka: KafkaConfig,
    http: reqwest::Client,
    _service: Spawned,
}

async fn spawn_app() -> TestApp {
    let config = Config {
        http: service_kit::config::HttpConfig::local(0),
        mongodb_uri: testkit::mongo_uri().into(),
        mongodb_database: format!("invoices_test_{}", Uuid::new_v4().simple()),
        kafka: testkit::kafka(),
    };
    let kafka = config.kafka.clone();
    let app = Application::build(config)
        .await
        .expect("invoice-service builds");
    let db = app.database();
    let service = Spawned::spawn(app.port(), |shutdown| app.run(shutdown));
    TestApp {
        address: service.address.clone(),
        db,
        kafka,
        http: testkit::http(),
        _service: service,
    }
}

impl TestApp {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET")
    }

    async fn invoices_for(&self, order_id: Uuid) -> u64 {
        self.db
            .collection::<mongodb::bson::Document>("invoices")
            .count_documents(doc! { "order_id": order_id.to_string() })
            .await
            .expect("count")
    }

    async fn wait_for_invoice(&self, order_id: Uuid) {
        testkit::eventually(WAIT, || async {
            (self.invoices_for(order_id).await > 0).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("no invoice for {order_id}"));
    }
}

fn confirmed(order_id: Uuid) -> OrderConfirmed {
    OrderConfirmed {
        order_id,
        customer_id: "cust-42".into(),
        currency: "EUR".into(),
        lines: vec![
            PricedLine {
                sku: "KEYBOARD-01".into(),
                quantity: 2,
                unit_price_cents: 8999,
                line_total_cents: 17998,
            },
            PricedLine {
                sku: "MOUSE-01".into(),
                quantity: 1,
                unit_price_cents: 2999,
                line_total_cents: 2999,
            },
        ],
        total_cents: 20997,
        confirmed_at: Utc::now(),
    }
}

#[tokio::test]
async fn order_confirmed_delivered_twice_makes_one_invoice() {
    let app = spawn_app().await;
    let order_id = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    testkit::publish_event(&app.kafka, event_id, &confirmed(order_id)).await;
    testkit::publish_event(&app.kafka, event_id, &confirmed(order_id)).await;
    // Redelivered under another event id too (e.g. re-emitted by the producer): still one.
    testkit::publish_event(&app.kafka, Uuid::now_v7(), &confirmed(order_id)).await;
    // Same key, later: once its invoice exists, the messages before it were handled.
    let sentinel = confirmed(Uuid::now_v7());
    testkit::publish_event_with_key(&app.kafka, &order_id.to_string(), Uuid::now_v7(), &sentinel)
        .await;
    app.wait_for_invoice(sentinel.order_id).await;

    assert_eq!(app.invoices_for(order_id).await, 1);
    let invoice: Value = app
        .get(&format!("/invoices/{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(invoice["total_cents"], 20997);
    assert_eq!(invoice["currency"], "EUR");
    assert_eq!(invoice["lines"][0]["line_total_cents"], 17998);
    assert_eq!(invoice["event_id"], event_id.to_string());

    let list: Value = app.get("/invoices").await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn other_order_events_are_ignored_and_bad_ones_dead_lettered() {
    let app = spawn_app().await;
    let topic = app.kafka.topic_for("order");
    let order_id = Uuid::now_v7();
    let key = order_id.to_string();
    let placed = serde_json::json!({"order_id": order_id, "customer_id": "c", "items": [], "placed_at": Utc::now()});
    testkit::produce(
        &app.kafka,
        &topic,
        &key,
        placed.to_string().as_bytes(),
        &[("id", &Uuid::now_v7().to_string()), ("type", "OrderPlaced")],
    )
    .await;
    testkit::produce(
        &app.kafka,
        &topic,
        &key,
        b"{\"total_cents\":\"lots\"}",
        &[
            ("id", &Uuid::now_v7().to_string()),
            ("type", "OrderConfirmed"),
        ],
    )
    .await;
    testkit::publish_event(&app.kafka, Uuid::now_v7(), &confirmed(order_id)).await;
    app.wait_for_invoice(order_id).await;

    let dead = testkit::read_topic(
        &app.kafka,
        &app.kafka.dead_letter_topic("invoice-service"),
        1,
        WAIT,
    )
    .await;
    assert_eq!(
        dead.len(),
        1,
        "only the malformed OrderConfirmed is dead-lettered"
    );
    assert!(testkit::header(&dead[0], "dlq-reason")
        .unwrap()
        .contains("does not parse"));

    assert_eq!(
        app.get(&format!("/invoices/{}", Uuid::now_v7()))
            .await
            .status(),
        404
    );
    assert_eq!(app.get("/invoices/not-a-uuid").await.status(), 404);
    assert_eq!(app.get("/invoices?limit=1000").await.status(), 400);
    assert_eq!(app.get("/health").await.status(), 200);
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["paths"]["/invoices/{order_id}"]["get"]["responses"]["404"].is_object());
    assert!(doc["paths"]["/invoices"]["get"]["responses"]["400"].is_object());
}
