//! hourly-optimizer entry point: wiring only; the logic lives in the library.

use std::sync::Arc;

use fluxo::adapters::{journal::DynamoOptimizerStore, load_aws_config};
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::secrets::SsmSecrets;
use hourly_optimizer::{handler, wiring};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let env = fluxo::settings::Env;
    let config = wiring::load_config(&env)?;
    let table = fluxo::settings::required(&env, "OPTIMIZER_TABLE")?;
    let aws = load_aws_config().await;
    let secrets = wiring::Secrets::Ssm(SsmSecrets::new(aws_sdk_ssm::Client::new(&aws)));
    let store = DynamoOptimizerStore::from_sdk_config(&aws, table);
    let engine = wiring::engine(
        &config,
        store,
        &secrets,
        Arc::new(SystemClock),
        Arc::new(ThreadRandomness),
    )
    .await?;
    let engine = &engine;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let deadline = Some(event.context.deadline);
            handler::handle_until(engine, event.payload, &SystemClock, deadline).await
        },
    ))
    .await
}
