//! webhook-receiver entry point: tracing, the cold-start set-up, the runtime loop. Nothing else.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let receiver = webhook_receiver::setup::start().await?;
    webhook_receiver::handler::run(&receiver).await
}
