//! webhook-receiver entry point: wiring only; the logic lives in the library.

use fluxo::adapters::{dynamodb::DynamoIntakeStore, load_aws_config, sqs::SqsQueue};
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::secrets::SecretStore;
use lambda_http::Error;
use webhook_receiver::{Receiver, ReceiverConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fluxo::observability::init_tracing();
    let config = ReceiverConfig::from_source(&fluxo::settings::Env)?;
    let aws = load_aws_config().await;
    fluxo::domain::fingerprint::install_from(&SecretStore::from_sdk_config(&aws)).await?;
    fluxo::analytics::install_queue("webhook-receiver", &aws);
    let store = DynamoIntakeStore::from_sdk_config(&aws, &config.leads_table);
    let queue = SqsQueue::from_sdk_config(&aws, &config.leads_queue_url);
    let receiver = Receiver::new(config, store, queue, SystemClock, ThreadRandomness);
    webhook_receiver::dispatch::run(&receiver).await
}
