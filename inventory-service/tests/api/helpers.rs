use std::time::Duration;

use inventory_service::{config::Config, startup::Application};
use serde_json::Value;
use shared::{config::KafkaConfig, testing};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

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
        .expect("inventory-service builds");
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
        testing::eventually(WAIT, || async {
            (self.count("select count(*) from processed_events").await >= n).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{n} events were not processed in time"));
    }
}
