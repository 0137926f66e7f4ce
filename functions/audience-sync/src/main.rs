//! audience-sync's entry point: wiring only. The use case is in `sync.rs`, the Lambda entry in
//! `handler.rs`.

use std::time::SystemTime;

use audience_sync::handler::{handle, invocation_deadline};
use audience_sync::{Settings, build};
use aws_lambda_events::event::sqs::SqsEvent;
use fluxo::config::live::LiveConfig;
use fluxo::config::source::{ConfigSource, Location};
use fluxo::secrets::SecretStore;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. Tracing, JSON when the runtime asks for it; no personal data is ever logged.
    fluxo::observability::init_tracing();

    // 2. Settings, config and clients, once per cold start. A bad setting or config fails here, by name.
    let settings = Settings::from_env()?;
    let sdk_config = fluxo::adapters::load_aws_config().await;
    let secrets = SecretStore::from_sdk_config(&sdk_config);
    let source = ConfigSource::from_sdk_config(
        Location::from_settings(&fluxo::settings::Env)?,
        &sdk_config,
    )?;
    let rebuild =
        |loaded: fluxo::config::LoadedConfig| build(&sdk_config, &settings, &secrets, loaded);
    let live = LiveConfig::start(source, "audience-sync", &rebuild).await?;
    let (live, rebuild) = (&live, &rebuild);

    // 3. Every batch uses the current config version and stops starting new work before the deadline.
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let syncer = live.current(rebuild).await;
        let deadline = invocation_deadline(event.context.deadline, SystemTime::now());
        Ok::<_, Error>(handle(&syncer, event.payload, deadline).await)
    }))
    .await
}
