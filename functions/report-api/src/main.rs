//! report-api's entry point: wiring only. The logic is in `handler.rs`.

use lambda_http::{Error, Request, run, service_fn};
use report_api::{Settings, build};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let settings = Settings::from_env()?;
    let sdk_config = fluxo::adapters::load_aws_config().await;
    let reports = build(&sdk_config, &settings)?;
    let reports = &reports;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(reports.handle(request).await)
    }))
    .await
}
