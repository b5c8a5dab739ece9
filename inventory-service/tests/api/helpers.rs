use std::time::Duration;

use inventory_service::startup::Application;
use outbox::kafka::KafkaConfig;
use serde_json::Value;
use sqlx::PgPool;
use testkit::Spawned;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub kafka: KafkaConfig,
    pub http: reqwest::Client,
    _service: Spawned,
}

/// Starts inventory-service on a free port with a fresh database and its own topics.
pub async fn spawn_app() -> TestApp {
    let config = testkit::postgres_service_config().await;
    let kafka = config.kafka.clone();
    let app = Application::build(config)
        .await
        .expect("inventory-service builds");
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
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("GET")
    }

    pub async fn product(&self, sku: &str) -> Value {
        self.get(&format!("/products/{sku}"))
            .await
            .json()
            .await
            .expect("product JSON")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .expect(sql)
    }

    pub async fn wait_for_inbox(&self, n: i64) {
        testkit::eventually(WAIT, || async {
            (self.count("select count(*) from processed_events").await >= n).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{n} events were not processed in time"));
    }
}
