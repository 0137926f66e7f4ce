//! email-trigger's entry point: wiring only. The logic is in `handler.rs` and `trigger.rs`.

use email_trigger::handler::handle;
use email_trigger::setup;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let live = setup::start().await?;
    let live = &live;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move { handle(live, event).await },
    ))
    .await
}
