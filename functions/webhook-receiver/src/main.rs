//! webhook-receiver entry point: tracing, the cold-start set-up, the runtime loop. Nothing else.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let live = webhook_receiver::setup::start().await?;
    webhook_receiver::handler::run(&live).await
}
