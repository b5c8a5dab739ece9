use order_service::{config::Config, startup::Application};
use serde_json::{json, Value};
use shared::{config::KafkaConfig, testing};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub kafka: KafkaConfig,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts order-service on a free port with a fresh database and its own topics.
pub async fn spawn_app() -> TestApp {
    let config = Config {
        port: 0,
        database_url: testing::fresh_database().await,
        database_max_connections: 5,
        kafka: testing::kafka(),
    };
    let kafka = config.kafka.clone();
    let app = Application::build(config)
        .await
        .expect("order-service builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        address,
        pool,
        kafka,
        http: testing::http(),
        shutdown,
    }
}

impl TestApp {
    pub async fn post_order(
        &self,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/orders", self.address))
            .json(body);
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
