//! audience-sync's entry point: tracing, `setup` builds everything, `run(service_fn(...))`.

use std::time::SystemTime;

use audience_sync::handler::{handle, invocation_deadline};
use audience_sync::setup;
use aws_lambda_events::event::sqs::SqsEvent;
use fluxo::config::live::LiveConfig;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. Tracing, JSON when the runtime asks for it; no personal data is ever logged.
    fluxo::observability::init_tracing();

    // 2. Settings, config and clients, once per cold start. A bad setting or config fails here, by name.
    let (cold, source) = setup::cold_start().await?;
    let rebuild = |loaded: fluxo::config::LoadedConfig| setup::rebuild(&cold, loaded);
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
