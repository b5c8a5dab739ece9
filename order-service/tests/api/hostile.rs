//! What careless and hostile clients get: a problem for every error, limits checked before
//! any work that grows with the request, and health that tells liveness from readiness.

use serde_json::json;
use testkit::answer;

use crate::helpers::{spawn_app, spawn_app_with, valid_order, TestApp};

async fn nothing_written(app: &TestApp) {
    assert_eq!(app.count("select count(*) from orders").await, 0);
    assert_eq!(app.count("select count(*) from outbox").await, 0);
}

#[tokio::test]
async fn an_order_sent_as_a_json_array_is_refused() {
    let app = spawn_app().await;
    // serde would read a struct from an array of its fields, in order.
    for body in [
        json!(["cust-42", [{"sku": "KEYBOARD-01", "quantity": 1}]]),
        json!("cust-42"),
        json!(42),
    ] {
        let answer = answer(app.order_request(&body)).await;
        assert!(answer.is_problem(422), "{body}: {answer:?}");
    }
    nothing_written(&app).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app().await;
    let mut order = valid_order();
    order["padding"] = json!("x".repeat(service_kit::config::HttpConfig::DEFAULT_BODY_LIMIT));
    let answer = answer(app.order_request(&order)).await;
    assert!(answer.is_problem(413), "{answer:?}");
    nothing_written(&app).await;
}

#[tokio::test]
async fn too_many_lines_are_refused_with_one_error_whatever_the_lines_hold() {
    let app = spawn_app().await;
    // Within the body limit, so the order is read and validated: distinct lines, and lines
    // that are each invalid twice over. Either way one error for the line count, none per line.
    for lines in [
        (0..1_500)
            .map(|i| json!({"sku": format!("S{i}"), "quantity": 1}))
            .collect::<Vec<_>>(),
        (0..1_500)
            .map(|_| json!({"sku": "!", "quantity": 0}))
            .collect(),
    ] {
        let body = json!({"customer_id": "cust-42", "items": lines});
        let answer = answer(app.order_request(&body)).await;
        assert!(answer.is_problem(422), "{answer:?}");
        assert_eq!(
            answer.body["errors"],
            json!([{"field": "items", "message": "must hold 1 to 50 lines"}])
        );
    }
    nothing_written(&app).await;
}

#[tokio::test]
async fn framework_errors_are_problems_too() {
    let app = spawn_app().await;
    let base = &app.address;
    let not_allowed = answer(app.http.delete(format!("{base}/orders"))).await;
    assert!(not_allowed.is_problem(405), "{not_allowed:?}");
    assert_eq!(not_allowed.allow.as_deref(), Some("GET,HEAD,POST"));

    let no_route = answer(app.http.get(format!("{base}/nowhere"))).await;
    assert!(no_route.is_problem(404), "{no_route:?}");

    let not_json = answer(
        app.http
            .post(format!("{base}/orders"))
            .header("content-type", "text/plain")
            .body(valid_order().to_string()),
    )
    .await;
    assert!(not_json.is_problem(415), "{not_json:?}");

    // A NUL character cannot name an order (and PostgreSQL would refuse it).
    let nul = answer(app.http.get(format!("{base}/orders/%00"))).await;
    assert!(nul.is_problem(404), "{nul:?}");
    nothing_written(&app).await;
}

#[tokio::test]
async fn orders_are_taken_and_the_service_is_ready_while_the_broker_is_away() {
    let mut config = testkit::postgres_service_config().await;
    config.kafka.brokers = "127.0.0.1:1".into(); // nothing listens there
    let app = spawn_app_with(config).await;
    let base = &app.address;

    let live = answer(app.http.get(format!("{base}/health/live"))).await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (200, Some("ok"))
    );
    for path in ["/health/ready", "/health"] {
        let report = answer(app.http.get(format!("{base}{path}"))).await;
        assert_eq!(report.status, 200, "{path}: {report:?}");
        let checks = report.body["checks"].as_array().unwrap();
        let kafka = checks.iter().find(|c| c["name"] == "kafka").unwrap();
        assert_eq!(
            (kafka["ok"].as_bool(), kafka["required"].as_bool()),
            (Some(false), Some(false))
        );
        let postgres = checks.iter().find(|c| c["name"] == "postgres").unwrap();
        assert_eq!(
            (postgres["ok"].as_bool(), postgres["required"].as_bool()),
            (Some(true), Some(true))
        );
    }
    // The point of the outbox: the order is taken, its event waits in the outbox.
    let response = app.post_order(&valid_order(), None).await;
    assert_eq!(response.status(), 201);
    assert_eq!(app.count("select count(*) from outbox").await, 1);
}

#[tokio::test]
async fn the_openapi_document_states_every_limit_the_code_enforces() {
    let app = spawn_app().await;
    let doc = testkit::get_json(&app.http, format!("{}/openapi.json", app.address)).await;
    let schemas = &doc["components"]["schemas"];
    let order = &schemas["CreateOrderRequest"]["properties"];
    assert_eq!(order["customer_id"]["minLength"], 1);
    assert_eq!(order["customer_id"]["maxLength"], 64);
    assert!(order["customer_id"]["pattern"].is_string());
    assert_eq!(order["items"]["minItems"], 1);
    assert_eq!(order["items"]["maxItems"], 50);
    let item = &schemas["CreateOrderItem"]["properties"];
    assert_eq!(item["sku"]["maxLength"], 32);
    assert_eq!(item["quantity"]["minimum"], 1);
    assert_eq!(item["quantity"]["maximum"], 1_000_000);

    let post = &doc["paths"]["/orders"]["post"];
    let key = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(key["schema"]["maxLength"], 255);
    assert!(key["schema"]["pattern"].is_string());
    assert!(post["responses"]["413"].is_object());
    let limit = doc["paths"]["/orders"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap()
        .clone();
    assert_eq!(
        (
            limit["schema"]["minimum"].clone(),
            limit["schema"]["maximum"].clone()
        ),
        (json!(1), json!(100))
    );
    for path in ["/health", "/health/live", "/health/ready"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
}
