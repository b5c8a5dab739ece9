use order_service::{config, startup::Application};

#[tokio::main]
async fn main() -> Result<(), service_kit::StartupError> {
    service_kit::telemetry::init("order-service");
    let app = Application::build(config::from_env()?).await?;
    app.run(service_kit::shutdown::on_signal()).await
}
