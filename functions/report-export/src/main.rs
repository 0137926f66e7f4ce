//! report-export's entry point: wiring only. The logic is in `handler.rs` and `export.rs`.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use report_export::{Settings, build};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let settings = Settings::from_env()?;
    let sdk_config = fluxo::adapters::load_aws_config().await;
    let exporter = build(&sdk_config, &settings)?;
    let exporter = &exporter;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(report_export::handler::handle(exporter, event.payload).await)
    }))
    .await
}
