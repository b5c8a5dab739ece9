use invoice_service::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> Result<(), shared::StartupError> {
    shared::telemetry::init("invoice-service");
    let app = Application::build(Config::from_env()?).await?;
    app.run(shared::shutdown::on_signal()).await
}
