//! The config as runtime data (S3 on moto), Secrets Manager with caching, and upgrades: a message written in
//! the current (v1) format is routed by this build's router built from the bucket's config.

use std::time::Duration;

use fluxo::adapters::s3::S3Objects;
use fluxo::adapters::signed::{Service, SignedClient};
use fluxo::config::live::LiveConfig;
use fluxo::config::source::{BUILT_IN_NAME, ConfigSource, Location, Poll};
use fluxo::domain::fingerprint::FingerprintKey;
use fluxo::secrets::{SecretError, SecretRef, SecretStore};
use lead_router::{Settings, SqsEvent, build};
use serde_json::{Value, json};
use xtask::deploy::{ConfigObject, ensure_fingerprint_key, push};
use xtask::stack::StackInfo;

use crate::support;

const DEMO: &str = "../config/examples/demo.toml";
/// A lead message as the receiver writes it today (envelope v1). Kept verbatim: a later build must still
/// route it, since messages written before an upgrade are read after it.
const LEAD_ACCEPTED_V1: &str = include_str!("../fixtures/lead-accepted-v1.json");

fn object(stack: &StackInfo) -> ConfigObject {
    ConfigObject {
        bucket: stack.bucket("ConfigBucket").unwrap().to_string(),
        key: "fluxo.toml".into(),
    }
}

fn s3_location(object: &ConfigObject) -> Location {
    Location::S3 {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
    }
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fluxo-it-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_stack_without_a_deployed_config_runs_the_built_in_default() {
    let (sdk, stack) = support::isolated_stack("cfg-none").await;
    let mut source = ConfigSource::from_sdk_config(s3_location(&object(&stack)), &sdk).unwrap();
    let loaded = source.load().await.unwrap();
    assert_eq!(loaded.origin, BUILT_IN_NAME);
    assert_eq!(loaded.config.lead_router.rules.len(), 2);
    assert!(loaded.config.optimizer.campaigns.is_empty());
}

#[tokio::test]
async fn a_pushed_config_is_read_once_and_re_read_only_when_its_version_changes() {
    let (sdk, stack) = support::isolated_stack("cfg-etag").await;
    let object = object(&stack);
    let (version, stored) = push(&sdk, &object, std::path::Path::new(DEMO))
        .await
        .unwrap();
    assert!(
        stored.version_id.is_some(),
        "the config bucket is versioned"
    );
    let mut source = ConfigSource::from_sdk_config(s3_location(&object), &sdk).unwrap();
    let loaded = source.load().await.unwrap();
    assert_eq!(loaded.version, version);
    assert!(
        loaded
            .origin
            .starts_with(&format!("s3://{}/fluxo.toml", object.bucket)),
        "{}",
        loaded.origin
    );
    assert_eq!(loaded.config.optimizer.campaigns.len(), 4);
    // Same ETag: a 304, nothing parsed.
    assert!(matches!(source.poll().await.unwrap(), Poll::Unchanged));
}

#[tokio::test]
async fn an_invalid_file_is_refused_before_upload_and_pull_returns_the_deployed_one() {
    let (sdk, stack) = support::isolated_stack("cfg-push").await;
    let object = object(&stack);
    push(&sdk, &object, std::path::Path::new(DEMO))
        .await
        .unwrap();
    let bad = write_temp("bad-push.toml", "[lead_router]\nmode = \"sometimes\"\n");
    let err = push(&sdk, &object, &bad).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2:8: lead_router.mode:", bad.display())),
        "{err}"
    );
    let deployed = xtask::deploy::pull(&sdk, &object).await.unwrap().unwrap();
    assert_eq!(deployed, std::fs::read_to_string(DEMO).unwrap());
}

/// Receives what the router fanned out to the email queue.
async fn email_sequences(sdk: &aws_config::SdkConfig, stack: &StackInfo) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let out = sqs
        .receive_message()
        .queue_url(&stack.queue("EmailQueue").unwrap().url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .filter_map(|m| serde_json::from_str::<Value>(m.body()?).ok())
        .filter_map(|v| v["sequence"].as_str().map(str::to_string))
        .collect()
}

fn sqs_event(body: &str, id: &str) -> SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": id, "receiptHandle": id, "body": body, "eventSource": "aws:sqs",
        "attributes": {"ApproximateReceiveCount": "1"}
    }]}))
    .unwrap()
}

#[tokio::test]
async fn the_router_runs_the_buckets_config_keeps_the_last_good_one_and_reads_v1_messages() {
    let (sdk, stack) = support::isolated_stack("cfg-live").await;
    let object = object(&stack);
    push(&sdk, &object, std::path::Path::new(DEMO))
        .await
        .unwrap();
    let settings = Settings::from_source(&[
        ("LEADS_TABLE", stack.table("LeadsTable").unwrap()),
        ("EMAIL_QUEUE_URL", &stack.queue("EmailQueue").unwrap().url),
        (
            "AUDIENCE_QUEUE_URL",
            &stack.queue("AudienceQueue").unwrap().url,
        ),
        ("LEADS_QUEUE_URL", &stack.queue("LeadsQueue").unwrap().url),
    ])
    .unwrap();
    let secrets = SecretStore::from_sdk_config(&sdk);
    let rebuild = |loaded: fluxo::config::LoadedConfig| build(&sdk, &settings, &secrets, loaded);
    let source = ConfigSource::from_sdk_config(s3_location(&object), &sdk).unwrap();
    let live = LiveConfig::start(source, "it", &rebuild)
        .await
        .unwrap()
        .with_interval(Duration::ZERO);
    let first = live.version().await;

    // Section 5: the frozen v1 message, as the previous build wrote it.
    let router = live.current(&rebuild).await;
    let response = router.handle(sqs_event(LEAD_ACCEPTED_V1, "m-1")).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "the v1 message is routed: {:?}",
        response.batch_item_failures
    );
    assert_eq!(
        email_sequences(&sdk, &stack).await,
        vec!["nutricao_interesse_software_a"]
    );

    // A bad version reaches the bucket (written around `config push`): the router keeps the last good one.
    let s3 = S3Objects::from_sdk_config(&sdk).unwrap();
    s3.put(
        &object.bucket,
        &object.key,
        b"[lead_router]\nmode = \"sometimes\"\n".to_vec(),
    )
    .await
    .unwrap();
    let _ = live.current(&rebuild).await;
    assert_eq!(live.version().await, first);
    let rejected = live.rejected().await.unwrap();
    assert!(
        rejected.starts_with(&format!(
            "s3://{}/fluxo.toml:2:8: lead_router.mode:",
            object.bucket
        )),
        "{rejected}"
    );

    // A fixed version is taken at the next look.
    let fixed = std::fs::read_to_string(DEMO)
        .unwrap()
        .replace("nutricao_interesse_software_a", "nutricao_software_a_v2");
    push(&sdk, &object, &write_temp("fixed.toml", &fixed))
        .await
        .unwrap();
    let router = live.current(&rebuild).await;
    assert_ne!(live.version().await, first);
    assert!(live.rejected().await.is_none());
    let second = LEAD_ACCEPTED_V1
        .replace("v1-upgrade@exemplo.com", "v1-upgrade-2@exemplo.com")
        .replace("01KAV9FT000000000000000007", "01KAV9FT000000000000000008");
    let response = router.handle(sqs_event(&second, "m-2")).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        email_sequences(&sdk, &stack).await,
        vec!["nutricao_software_a_v2"]
    );
}

/// Creates or updates a secret on moto through the same signed client.
async fn put_secret(sdk: &aws_config::SdkConfig, name: &str, value: &str) {
    let client = SignedClient::from_sdk_config(sdk).unwrap();
    let url = format!("{}/", client.endpoint_override().unwrap());
    for (target, body) in [
        (
            "secretsmanager.CreateSecret",
            json!({"Name": name, "SecretString": value}),
        ),
        (
            "secretsmanager.PutSecretValue",
            json!({"SecretId": name, "SecretString": value}),
        ),
    ] {
        let headers = [
            ("content-type", "application/x-amz-json-1.1".to_string()),
            ("x-amz-target", target.to_string()),
        ];
        let reply = client
            .send(
                Service::SecretsManager,
                "POST",
                &url,
                &headers,
                body.to_string().into_bytes(),
            )
            .await
            .unwrap();
        if reply.status == 200 {
            return;
        }
    }
    panic!("could not create secret {name}");
}

#[tokio::test]
async fn secrets_manager_secrets_are_read_and_cached() {
    let sdk = support::sdk().await;
    let name = format!("fluxo/crm/{}", support::unique_prefix("sm"));
    put_secret(&sdk, &name, "first-token").await;
    let reference: SecretRef = toml::from_str(&format!("secretsmanager = \"{name}\"")).unwrap();

    let cached = SecretStore::from_sdk_config(&sdk);
    assert_eq!(cached.resolve(&reference).await.unwrap(), "first-token");
    put_secret(&sdk, &name, "rotated-token").await;
    assert_eq!(
        cached.resolve(&reference).await.unwrap(),
        "first-token",
        "read once, then served from the cache"
    );
    let fresh = SecretStore::from_sdk_config(&sdk).with_ttl(Duration::ZERO);
    assert_eq!(fresh.resolve(&reference).await.unwrap(), "rotated-token");

    let missing: SecretRef =
        toml::from_str("secretsmanager = \"fluxo/crm/does-not-exist\"").unwrap();
    assert!(matches!(
        fresh.resolve(&missing).await,
        Err(SecretError::NotFound(_))
    ));
}

#[tokio::test]
async fn the_deploy_creates_the_fingerprint_key_once_and_never_replaces_it() {
    let sdk = support::sdk().await;
    let name = format!("/{}/fingerprint-key", support::unique_prefix("fp"));
    let read = |sdk: aws_config::SdkConfig, name: String| async move {
        SecretStore::from_sdk_config(&sdk)
            .resolve(&SecretRef {
                ssm: Some(name),
                ..Default::default()
            })
            .await
            .unwrap()
    };

    assert!(ensure_fingerprint_key(&sdk, &name).await.unwrap());
    let first = read(sdk.clone(), name.clone()).await;
    assert_eq!(first.len(), 64, "32 random bytes, hex");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    let key = FingerprintKey::parse(&first).unwrap();

    assert!(!ensure_fingerprint_key(&sdk, &name).await.unwrap());
    assert_eq!(
        read(sdk.clone(), name.clone()).await,
        first,
        "never replaced"
    );

    // The key is a real HMAC key: two addresses, two fingerprints; one address, one fingerprint.
    assert_eq!(key.fingerprint(b"ana@x.com"), key.fingerprint(b"ana@x.com"));
    assert_ne!(key.fingerprint(b"ana@x.com"), key.fingerprint(b"bia@x.com"));
}
