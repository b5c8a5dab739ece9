use console::{config::Config, startup::Application};

#[tokio::main]
async fn main() -> Result<(), service_kit::StartupError> {
    service_kit::telemetry::init("flow-console");
    let app = Application::build(Config::from_env()?).await?;
    app.run(service_kit::shutdown::on_signal()).await
}
