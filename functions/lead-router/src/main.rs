//! lead-router's entry point: wiring only. The logic is in `handler.rs`.

use std::time::SystemTime;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use lead_router::handler::invocation_deadline;
use lead_router::{Settings, build};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. Tracing, JSON when the runtime asks for it; no personal data is ever logged.
    fluxo::observability::init_tracing();

    // 2. Settings, config and clients, once per cold start. A bad setting fails here, by name.
    let settings = Settings::from_env()?;
    let sdk_config = fluxo::adapters::load_aws_config().await;
    let router = build(&sdk_config, &settings).await?;
    let router = &router;

    // 3. The handler borrows them for every batch, and stops new work a margin before Lambda's deadline.
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = invocation_deadline(event.context.deadline, SystemTime::now());
        Ok::<_, Error>(router.handle_until(event.payload, deadline).await)
    }))
    .await
}
