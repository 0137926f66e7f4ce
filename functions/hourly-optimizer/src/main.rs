//! hourly-optimizer entry point: tracing, `setup` builds everything, `run(service_fn(...))`.

use fluxo::config::live::LiveConfig;
use fluxo::ports::SystemClock;
use hourly_optimizer::{handler, setup};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let (cold, source) = setup::cold_start().await?;
    // The engine is rebuilt from each new config version (checked at most once a minute).
    let build = |loaded: fluxo::config::LoadedConfig| setup::build(&cold, loaded);
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
