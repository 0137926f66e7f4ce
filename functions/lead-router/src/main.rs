//! lead-router's entry point: wiring only. The logic is in `handler.rs`.

use std::time::SystemTime;

use aws_lambda_events::event::sqs::SqsEvent;
use fluxo::config::live::LiveConfig;
use fluxo::config::source::{ConfigSource, Location};
use fluxo::secrets::SecretStore;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use lead_router::handler::invocation_deadline;
use lead_router::{Settings, build};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. Tracing, JSON when the runtime asks for it; no personal data is ever logged.
    fluxo::observability::init_tracing();

    // 2. Settings, config and clients, once per cold start. A bad setting or config fails here, by name.
    let settings = Settings::from_env()?;
    let sdk_config = fluxo::adapters::load_aws_config().await;
    let secrets = SecretStore::from_sdk_config(&sdk_config);
    fluxo::analytics::install_queue("lead-router", &sdk_config);
    fluxo::domain::fingerprint::install_from(&secrets).await?;
    let source = ConfigSource::from_sdk_config(
        Location::from_settings(&fluxo::settings::Env)?,
        &sdk_config,
    )?;
    let rebuild =
        |loaded: fluxo::config::LoadedConfig| build(&sdk_config, &settings, &secrets, loaded);
    let live = LiveConfig::start(source, "lead-router", &rebuild).await?;
    let (live, rebuild) = (&live, &rebuild);

    // 3. Every batch uses the current router (a new config version is picked up within a minute), and
    //    stops starting new work a margin before Lambda's deadline.
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let router = live.current(rebuild).await;
        let deadline = invocation_deadline(event.context.deadline, SystemTime::now());
        Ok::<_, Error>(router.handle_until(event.payload, deadline).await)
    }))
    .await
}
