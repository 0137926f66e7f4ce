//! hourly-optimizer entry point: wiring only; the logic lives in the library.

use std::sync::Arc;

use fluxo::adapters::{journal::DynamoOptimizerStore, load_aws_config};
use fluxo::config::live::LiveConfig;
use fluxo::config::source::{ConfigSource, Location};
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::secrets::SecretStore;
use hourly_optimizer::{handler, wiring};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let env = fluxo::settings::Env;
    let table = fluxo::settings::required(&env, "OPTIMIZER_TABLE")?;
    let aws = load_aws_config().await;
    let secret_store = SecretStore::from_sdk_config(&aws);
    fluxo::analytics::install_queue("hourly-optimizer", &aws);
    fluxo::domain::fingerprint::install_from(&secret_store).await?;
    let secrets = wiring::Secrets::Ssm(secret_store);
    let store = DynamoOptimizerStore::from_sdk_config(&aws, table);
    // The engine is rebuilt from each new config version (checked at most once a minute).
    let build = |loaded: fluxo::config::LoadedConfig| {
        let (store, secrets) = (store.clone(), &secrets);
        async move {
            let clock = Arc::new(SystemClock);
            wiring::engine(&loaded, store, secrets, clock, Arc::new(ThreadRandomness)).await
        }
    };
    let source = ConfigSource::from_sdk_config(Location::from_settings(&env)?, &aws)?;
    let live = LiveConfig::start(source, "hourly-optimizer", &build).await?;
    let (live, build) = (&live, &build);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let engine = live.current(build).await;
            let deadline = Some(event.context.deadline);
            handler::handle_until(&engine, event.payload, &SystemClock, deadline).await
        },
    ))
    .await
}
