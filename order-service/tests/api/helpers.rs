use order_service::startup::Application;
use outbox::kafka::KafkaConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use testkit::Spawned;

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub kafka: KafkaConfig,
    pub http: reqwest::Client,
    _service: Spawned,
}

/// Starts order-service on a free port with a fresh database and its own topics.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(testkit::postgres_service_config().await).await
}

/// Starts order-service with `config` (built by `testkit::postgres_service_config`).
pub async fn spawn_app_with(config: service_kit::config::PostgresServiceConfig) -> TestApp {
    let kafka = config.kafka.clone();
    let app = Application::build(config.into())
        .await
        .expect("order-service builds");
    let pool = app.pool();
    let service = Spawned::spawn(app.port(), |shutdown| app.run(shutdown));
    TestApp {
        address: service.address.clone(),
        pool,
        kafka,
        http: testkit::http(),
        _service: service,
    }
}

impl TestApp {
    /// `POST /orders` with `body`, not sent yet.
    pub fn order_request(&self, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/orders", self.address))
            .json(body)
    }

    pub async fn post_order(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.order_request(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST /orders")
    }

    pub async fn get_order(&self, id: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/orders/{id}", self.address))
            .send()
            .await
            .expect("GET /orders/{id}")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    /// Places a valid order and returns its JSON.
    pub async fn place_order(&self) -> Value {
        let response = self.post_order(&valid_order(), None).await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("order JSON")
    }
}

pub fn valid_order() -> Value {
    json!({
        "customer_id": "cust-42",
        "items": [{"sku": "KEYBOARD-01", "quantity": 2}, {"sku": "MOUSE-01", "quantity": 1}]
    })
}
