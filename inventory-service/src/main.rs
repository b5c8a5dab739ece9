use inventory_service::{config, startup::Application};

#[tokio::main]
async fn main() -> Result<(), shared::StartupError> {
    shared::telemetry::init("inventory-service");
    let app = Application::build(config::from_env()?).await?;
    app.run(shared::shutdown::on_signal()).await
}
