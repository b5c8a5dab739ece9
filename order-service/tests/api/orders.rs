//! The request path: the order and its outbox row, together or not at all.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, valid_order};

#[tokio::test]
async fn a_placed_order_and_its_outbox_row_commit_together() {
    let app = spawn_app().await;

    let response = app.post_order(&valid_order(), None).await;

    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(
        location,
        format!("/orders/{}", order["id"].as_str().unwrap())
    );

    let (aggregatetype, aggregateid, event_type, payload): (String, String, String, Value) =
        sqlx::query_as("select aggregatetype, aggregateid, type, payload from outbox")
            .fetch_one(&app.pool)
            .await
            .expect("exactly one outbox row");
    assert_eq!(aggregatetype, "order");
    assert_eq!(aggregateid, order["id"].as_str().unwrap());
    assert_eq!(event_type, "OrderPlaced");
    assert_eq!(payload["order_id"], order["id"]);
    assert_eq!(
        payload["items"][0],
        json!({"sku": "KEYBOARD-01", "quantity": 2})
    );
    assert_eq!(app.count("select count(*) from orders").await, 1);
}

/// `OUTBOX_REMOVE_AFTER_INSERT=true` (for Debezium): the transaction inserts the event and
/// deletes it again, so the table stays empty and the committed WAL holds the insert, which is
/// what a log-tailing relay publishes. The WAL is read with `pg_walinspect`.
#[tokio::test]
async fn a_removed_row_leaves_its_insert_in_the_wal_and_the_table_empty() {
    let mut config = testkit::postgres_service_config().await;
    config.writer = outbox::Writer::new(outbox::AfterInsert::Remove);
    let app = spawn_app_with(config).await;
    sqlx::query("create extension if not exists pg_walinspect")
        .execute(&app.pool)
        .await
        .expect("pg_walinspect (PostgreSQL's contrib)");
    let before: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    for _ in 0..3 {
        app.place_order().await;
    }

    assert_eq!(app.count("select count(*) from orders").await, 3);
    assert_eq!(app.count("select count(*) from outbox").await, 0);
    let records: Vec<String> = sqlx::query_scalar(
        "select record_type from pg_get_wal_records_info($1::pg_lsn, pg_current_wal_lsn())
         where resource_manager = 'Heap' and block_ref like '%/' ||
           (select oid from pg_database where datname = current_database()) || '/' ||
           pg_relation_filenode('outbox') || ' %'
         order by start_lsn",
    )
    .bind(&before)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let inserts = records.iter().filter(|r| r.starts_with("INSERT")).count();
    let deletes = records.iter().filter(|r| r.starts_with("DELETE")).count();
    assert_eq!(
        (inserts, deletes),
        (3, 3),
        "outbox WAL records: {records:?}"
    );
}

/// The embedded relay polls the table, so with rows removed it would never publish: refused.
#[tokio::test]
async fn an_embedded_relay_is_refused_when_rows_are_removed() {
    let mut service = testkit::postgres_service_config().await;
    service.writer = outbox::Writer::new(outbox::AfterInsert::Remove);
    let config = order_service::config::Config {
        service,
        relay: order_service::config::Publisher::Embedded(Box::new(
            order_service::config::EmbeddedRelayConfig {
                settings: Default::default(),
                mode: service_kit::relay_mode::RelayMode::Polling,
            },
        )),
    };

    let refused = order_service::startup::Application::build(config).await;

    let error = refused
        .err()
        .expect("an embedded relay with removed rows is refused");
    assert!(
        error.to_string().contains("OUTBOX_REMOVE_AFTER_INSERT"),
        "{error}"
    );
}

#[tokio::test]
async fn a_failing_outbox_insert_rolls_the_order_back() {
    let app = spawn_app().await;
    // Inject a failure after the order insert: the outbox insert itself fails.
    sqlx::raw_sql(
        "create function fail_outbox() returns trigger language plpgsql as $$
         begin raise exception 'injected outbox failure'; end $$;
         create trigger fail_outbox before insert on outbox
         for each row execute function fail_outbox();",
    )
    .execute(&app.pool)
    .await
    .unwrap();

    let response = app.post_order(&valid_order(), None).await;

    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body.get("detail").is_none(), "no internals leak: {body}");
    assert_eq!(
        app.count("select count(*) from orders").await,
        0,
        "order rolled back"
    );
    assert_eq!(app.count("select count(*) from order_items").await, 0);
    assert_eq!(app.count("select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn invalid_orders_get_a_problem_and_write_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"customer_id": "", "items": []}), 422, "customer_id"),
        (
            json!({"customer_id": "c", "items": [{"sku": "A", "quantity": 0}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"customer_id": "c", "items": [{"sku": "A", "quantity": "x"}]}),
            422,
            "",
        ),
        (json!({"customer_id": "c"}), 422, ""),
    ];
    for (body, status, field) in cases {
        let response = app.post_order(&body, None).await;
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], status);
        if !field.is_empty() {
            assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        }
    }
    let syntax_error = app
        .http
        .post(format!("{}/orders", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(syntax_error.status(), 400);
    let bad_key = app.post_order(&valid_order(), Some("has spaces")).await;
    assert_eq!(bad_key.status(), 400);
    assert_eq!(app.count("select count(*) from orders").await, 0);
    assert_eq!(app.count("select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn a_retried_post_with_the_same_idempotency_key_returns_the_first_order() {
    let app = spawn_app().await;
    let first: Value = app
        .post_order(&valid_order(), Some("key-1"))
        .await
        .json()
        .await
        .unwrap();

    let retry = app.post_order(&valid_order(), Some("key-1")).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let second: Value = retry.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);

    let other = json!({"customer_id": "cust-42", "items": [{"sku": "MOUSE-01", "quantity": 9}]});
    let reused = app.post_order(&other, Some("key-1")).await;
    assert_eq!(reused.status(), 422);

    assert_eq!(app.count("select count(*) from orders").await, 1);
    assert_eq!(app.count("select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_order() {
    let app = spawn_app().await;
    let body = valid_order();
    let requests = (0..8).map(|_| app.post_order(&body, Some("same-key")));
    let responses = futures::future::join_all(requests).await;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), 201);
        let order: Value = response.json().await.unwrap();
        ids.insert(order["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.count("select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn orders_are_read_back_one_by_one_and_newest_first() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.place_order().await["id"].as_str().unwrap().to_owned());
    }

    let one: Value = app.get_order(&ids[1]).await.json().await.unwrap();
    assert_eq!(one["id"], ids[1]);
    assert_eq!(one["items"].as_array().unwrap().len(), 2);

    let page = testkit::get_json(&app.http, format!("{}/orders?limit=2", app.address)).await;
    let first_page: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(first_page, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next = testkit::get_json(
        &app.http,
        format!("{}/orders?limit=2&cursor={cursor}", app.address),
    )
    .await;
    assert_eq!(next["items"][0]["id"], ids[0]);
    assert!(next.get("next_cursor").is_none());

    assert_eq!(
        app.get_order(&uuid::Uuid::now_v7().to_string())
            .await
            .status(),
        404
    );
    assert_eq!(app.get_order("not-a-uuid").await.status(), 404);
    let bad_limit = app
        .http
        .get(format!("{}/orders?limit=0", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_limit.status(), 400);
}

#[tokio::test]
async fn health_reports_database_and_broker() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"].as_array().unwrap().len(), 2);
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}

#[tokio::test]
async fn the_openapi_description_documents_every_endpoint_and_its_errors() {
    let app = spawn_app().await;
    let doc = testkit::get_json(&app.http, format!("{}/openapi.json", app.address)).await;
    let post = &doc["paths"]["/orders"]["post"];
    for status in ["201", "400", "415", "422", "500"] {
        assert!(
            post["responses"][status].is_object(),
            "POST /orders documents {status}"
        );
    }
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateOrderRequest"
    );
    assert!(doc["components"]["schemas"]["CreateOrderRequest"]["example"].is_object());
    assert!(doc["paths"]["/orders/{id}"]["get"]["responses"]["404"].is_object());
    assert!(doc["paths"]["/orders"]["get"].is_object());
    assert!(doc["paths"]["/health"]["get"].is_object());
}
