//! Shared set-up for the integration tests: the local stack's endpoints and isolated resource copies.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::SdkConfig;
use xtask::stack::{self, StackInfo};

/// The moto endpoint of the test stack. Fails loudly outside `cargo xtask test`.
pub fn aws_endpoint() -> String {
    std::env::var(stack::ENV_AWS_ENDPOINT).unwrap_or_else(|_| {
        panic!(
            "{} is not set: run the integration tests with `cargo xtask test`",
            stack::ENV_AWS_ENDPOINT
        )
    })
}

/// The local API base URL (cargo lambda watch).
pub fn api_url() -> String {
    std::env::var(stack::ENV_API_URL).unwrap_or_else(|_| {
        panic!(
            "{} is not set: run the integration tests with `cargo xtask test`",
            stack::ENV_API_URL
        )
    })
}

/// SDK config for the test stack's moto.
pub async fn sdk() -> SdkConfig {
    stack::local_sdk_config(&aws_endpoint()).await
}

/// A unique resource-name prefix for one test.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let stamp = chrono::Utc::now().timestamp_millis() % 100_000_000;
    format!("it{}{stamp}{n}-{test}-", std::process::id() % 10_000)
}

/// Tables and queues of the template, created for one test only.
pub async fn isolated_stack(test: &str) -> (SdkConfig, StackInfo) {
    let sdk = sdk().await;
    let info = stack::provision(&sdk, &xtask::paths::template(), &unique_prefix(test))
        .await
        .expect("provisioning an isolated copy of the template's resources");
    (sdk, info)
}

/// Every item in a table (tests only hold a handful).
pub async fn scan_all(
    sdk: &SdkConfig,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let client = aws_sdk_dynamodb::Client::new(sdk);
    client
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec()
}

/// Receives every message currently on a queue, leaving them in flight for `visibility` seconds.
pub async fn drain(
    sdk: &SdkConfig,
    queue_url: &str,
    visibility: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    let client = aws_sdk_sqs::Client::new(sdk);
    let mut all = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let batch = out.messages().to_vec();
        if batch.is_empty() {
            break;
        }
        all.extend(batch);
    }
    all
}
