//! Creates the template's tables and queues on a local AWS endpoint (moto) and describes them as [`StackInfo`].
//!
//! Integration tests use it like this:
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! // `cargo xtask test` exports FLUXO_IT_STACK (the shared stack) and FLUXO_IT_AWS_ENDPOINT (moto).
//! let shared = xtask::stack::StackInfo::load_from_env()?;
//! let table = shared.table("LeadsTable")?;
//! // A test that needs resources of its own makes an isolated copy under a unique prefix:
//! let endpoint = std::env::var(xtask::stack::ENV_AWS_ENDPOINT)?;
//! let sdk = xtask::stack::local_sdk_config(&endpoint).await;
//! let mine = xtask::stack::provision(&sdk, &xtask::paths::template(), "t-dup-").await?;
//! let queue_url = &mine.queue("LeadsQueue")?.url;
//! # let _ = (table, queue_url); Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use fluxo::adapters::signed::{Service, SignedClient, encode};
use serde::{Deserialize, Serialize};

use crate::template::{
    Expr, LOCAL_ACCOUNT, LOCAL_REGION, QueueSpec, Resolver, TableSpec, Template,
};

/// Path of the stack JSON file, for integration tests.
pub const ENV_STACK: &str = "FLUXO_IT_STACK";
/// The local AWS endpoint (moto), e.g. `http://127.0.0.1:4566`.
pub const ENV_AWS_ENDPOINT: &str = "FLUXO_IT_AWS_ENDPOINT";
/// The local API base URL (cargo lambda watch), e.g. `http://127.0.0.1:9000`; routes are `/leads`, `/leads/{source}`, `/events`.
pub const ENV_API_URL: &str = "FLUXO_IT_API_URL";
/// The Lambda invoke API base URL (same server as the API).
pub const ENV_INVOKE_URL: &str = "FLUXO_IT_INVOKE_URL";

/// The provisioned local resources, by logical id. Serialized as
/// `{"tables": {"LeadsTable": "name"}, "queues": {"LeadsQueue": {"url": "...", "arn": "...", "name": "..."}},
/// "buckets": {"ConfigBucket": "name"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    pub tables: BTreeMap<String, String>,
    pub queues: BTreeMap<String, QueueInfo>,
    #[serde(default)]
    pub buckets: BTreeMap<String, String>,
}

/// A local queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub url: String,
    pub arn: String,
    #[serde(default)]
    pub name: String,
}

impl StackInfo {
    /// Reads the file named by `FLUXO_IT_STACK`.
    pub fn load_from_env() -> Result<StackInfo> {
        let path = std::env::var(ENV_STACK).map_err(|_| {
            anyhow!("{ENV_STACK} is not set: run the integration tests through `cargo xtask test`")
        })?;
        StackInfo::load(Path::new(&path))
    }

    /// Reads a stack file.
    pub fn load(path: &Path) -> Result<StackInfo> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a stack file", path.display()))
    }

    /// Writes a stack file.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// A table's local name.
    pub fn table(&self, logical_id: &str) -> Result<&str> {
        self.tables
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no table {logical_id} in the local stack"))
    }

    /// A bucket's local name.
    pub fn bucket(&self, logical_id: &str) -> Result<&str> {
        self.buckets
            .get(logical_id)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no bucket {logical_id} in the local stack"))
    }

    /// A queue's URL, ARN and name.
    pub fn queue(&self, logical_id: &str) -> Result<&QueueInfo> {
        self.queues
            .get(logical_id)
            .ok_or_else(|| anyhow!("no queue {logical_id} in the local stack"))
    }

    /// A resolver that answers `Ref`/`Fn::GetAtt` with these local resources and the given parameter values.
    pub fn resolver(&self, parameters: BTreeMap<String, String>) -> Resolver {
        let mut r = Resolver {
            parameters,
            ..Resolver::default()
        };
        for (id, name) in &self.tables {
            r.refs.insert(id.clone(), name.clone());
            let arn = format!("arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{name}");
            r.attributes.insert((id.clone(), "Arn".into()), arn);
        }
        for (id, name) in &self.buckets {
            r.refs.insert(id.clone(), name.clone());
            r.attributes
                .insert((id.clone(), "Arn".into()), format!("arn:aws:s3:::{name}"));
        }
        for (id, q) in &self.queues {
            r.refs.insert(id.clone(), q.url.clone());
            r.attributes
                .insert((id.clone(), "Arn".into()), q.arn.clone());
            r.attributes
                .insert((id.clone(), "QueueUrl".into()), q.url.clone());
            r.attributes
                .insert((id.clone(), "QueueName".into()), q.name.clone());
        }
        r
    }
}

/// SDK config for a local endpoint: region us-east-1, dummy credentials.
pub async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(LOCAL_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "fluxo-local",
        ))
        .load()
        .await
}

/// Creates every table, queue and bucket of the template, each named `name_prefix` + its local name
/// (a bucket: its resolved `BucketName` without a prefix, `prefix` + logical id with one).
/// Existing ones are kept, so provisioning twice is harmless.
pub async fn provision(
    sdk: &SdkConfig,
    template_path: &Path,
    name_prefix: &str,
) -> Result<StackInfo> {
    let template = Template::load(template_path)?;
    provision_template(sdk, &template, name_prefix).await
}

/// [`provision`] for an already parsed template.
pub async fn provision_template(
    sdk: &SdkConfig,
    template: &Template,
    name_prefix: &str,
) -> Result<StackInfo> {
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut info = StackInfo::default();
    for table in template.tables()? {
        let name = format!("{name_prefix}{}", table.name);
        create_table(&ddb, &table, &name)
            .await
            .with_context(|| format!("creating table {} ({name})", table.logical_id))?;
        info.tables.insert(table.logical_id.clone(), name);
    }
    for queue in template.queues()? {
        let name = format!("{name_prefix}{}", queue.name);
        let created = create_queue(&sqs, &queue, &name, &info)
            .await
            .with_context(|| format!("creating queue {} ({name})", queue.logical_id))?;
        info.queues.insert(queue.logical_id.clone(), created);
    }
    let buckets = template.buckets();
    if !buckets.is_empty() {
        let s3 = SignedClient::from_sdk_config(sdk)?;
        let resolver = StackInfo::default().resolver(template.parameter_values(&BTreeMap::new()));
        for bucket in buckets {
            let name = local_bucket_name(
                &resolver,
                &bucket.logical_id,
                bucket.name.as_ref(),
                name_prefix,
            )?;
            create_versioned_bucket(&s3, &name)
                .await
                .with_context(|| format!("creating bucket {} ({name})", bucket.logical_id))?;
            info.buckets.insert(bucket.logical_id, name);
        }
    }
    Ok(info)
}

/// Creates a versioned bucket on the local stack (on AWS the template creates it); an existing bucket of
/// the caller's is kept. Plain SigV4-signed S3 calls: the functions link no S3 SDK, and neither does this.
async fn create_versioned_bucket(s3: &SignedClient, bucket: &str) -> Result<()> {
    let url = match s3.endpoint_override() {
        Some(endpoint) => format!("{endpoint}/{}/", encode(bucket)),
        None => format!("https://{bucket}.s3.{}.amazonaws.com/", s3.region()?),
    };
    let region = s3.region()?;
    let body = if region == "us-east-1" {
        Vec::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
        .into_bytes()
    };
    let reply = s3.send(Service::S3, "PUT", &url, &[], body).await?;
    if reply.status != 200 && s3_error_code(&reply.text()) != "BucketAlreadyOwnedByYou" {
        return Err(anyhow!(
            "CreateBucket {bucket}: HTTP {} {}",
            reply.status,
            s3_error_code(&reply.text())
        ));
    }
    let versioning = "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>Enabled</Status></VersioningConfiguration>";
    let reply = s3
        .send(
            Service::S3,
            "PUT",
            &format!("{url}?versioning="),
            &[],
            versioning.as_bytes().to_vec(),
        )
        .await?;
    if reply.status != 200 {
        return Err(anyhow!(
            "PutBucketVersioning {bucket}: HTTP {} {}",
            reply.status,
            s3_error_code(&reply.text())
        ));
    }
    Ok(())
}

/// The `<Code>` of an S3 XML error body (empty when there is none).
fn s3_error_code(xml: &str) -> String {
    xml.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_default()
}

/// A valid S3 bucket name for the local copy of a template bucket.
fn local_bucket_name(
    resolver: &Resolver,
    logical_id: &str,
    name: Option<&Expr>,
    prefix: &str,
) -> Result<String> {
    let raw = match (name, prefix) {
        (Some(n), "") => resolver.resolve(n)?,
        _ => format!("{prefix}{logical_id}"),
    };
    let mut name: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(63);
    Ok(name.trim_matches('-').to_string())
}

fn key_schema(keys: &[(String, String)]) -> Result<Vec<KeySchemaElement>> {
    keys.iter()
        .map(|(name, kind)| {
            Ok(KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::from(kind.as_str()))
                .build()?)
        })
        .collect()
}

fn projection(kind: &str, non_key: &[String]) -> Projection {
    let mut p = Projection::builder().projection_type(ProjectionType::from(kind));
    for a in non_key {
        p = p.non_key_attributes(a);
    }
    p.build()
}

async fn create_table(ddb: &aws_sdk_dynamodb::Client, spec: &TableSpec, name: &str) -> Result<()> {
    let provisioned = spec.billing_mode != "PAY_PER_REQUEST";
    let throughput = || {
        ProvisionedThroughput::builder()
            .read_capacity_units(5)
            .write_capacity_units(5)
            .build()
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(spec.billing_mode.as_str()))
        .set_key_schema(Some(key_schema(&spec.key_schema)?));
    for (attr, kind) in &spec.attributes {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()?,
        );
    }
    if provisioned {
        req = req.provisioned_throughput(throughput()?);
    }
    for gsi in &spec.global_indexes {
        let mut b = GlobalSecondaryIndex::builder()
            .index_name(&gsi.name)
            .set_key_schema(Some(key_schema(&gsi.key_schema)?))
            .projection(projection(&gsi.projection, &gsi.non_key_attributes));
        if provisioned {
            b = b.provisioned_throughput(throughput()?);
        }
        req = req.global_secondary_indexes(b.build()?);
    }
    for lsi in &spec.local_indexes {
        req = req.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(&lsi.name)
                .set_key_schema(Some(key_schema(&lsi.key_schema)?))
                .projection(projection(&lsi.projection, &lsi.non_key_attributes))
                .build()?,
        );
    }
    match req.send().await {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => return Ok(()),
        Err(e) => return Err(anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e))),
    }
    if let Some(attr) = &spec.ttl_attribute {
        ddb.update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attr)
                    .enabled(true)
                    .build()?,
            )
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
    }
    Ok(())
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    spec: &QueueSpec,
    name: &str,
    done: &StackInfo,
) -> Result<QueueInfo> {
    let mut req = sqs.create_queue().queue_name(name);
    for (k, v) in &spec.attributes {
        req = req.attributes(QueueAttributeName::from(k.as_str()), v);
    }
    if let Some(redrive) = &spec.redrive {
        let dlq = done.queue(&redrive.dead_letter_queue)?;
        let policy = serde_json::json!({
            "deadLetterTargetArn": dlq.arn,
            "maxReceiveCount": redrive.max_receive_count,
        });
        req = req.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    if let Some(allow) = &spec.redrive_allow_policy {
        req = req.attributes(QueueAttributeName::RedriveAllowPolicy, allow);
    }
    let out = req
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let url = out
        .queue_url()
        .ok_or_else(|| anyhow!("CreateQueue returned no URL"))?
        .to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| anyhow!(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
    let arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow!("GetQueueAttributes returned no QueueArn"))?;
    Ok(QueueInfo {
        url,
        arn,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_error_code_is_read_from_the_xml_body() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>BucketAlreadyOwnedByYou</Code><Message>m</Message></Error>";
        assert_eq!(s3_error_code(xml), "BucketAlreadyOwnedByYou");
        assert_eq!(s3_error_code(""), "");
    }

    #[test]
    fn round_trips_the_stack_file_shape() {
        let json = r#"{"tables":{"LeadsTable":"LeadsTable"},"queues":{"LeadsQueue":{"url":"http://127.0.0.1:4566/123456789012/LeadsQueue","arn":"arn:aws:sqs:us-east-1:123456789012:LeadsQueue"}}}"#;
        let info: StackInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.table("LeadsTable").unwrap(), "LeadsTable");
        assert_eq!(
            info.queue("LeadsQueue").unwrap().arn,
            "arn:aws:sqs:us-east-1:123456789012:LeadsQueue"
        );
        assert!(info.queue("Nope").is_err());
    }

    #[test]
    fn resolves_refs_to_local_names_urls_and_arns() {
        let mut info = StackInfo::default();
        info.tables
            .insert("LeadsTable".into(), "p-LeadsTable".into());
        info.queues.insert(
            "LeadsQueue".into(),
            QueueInfo {
                url: "http://q/LeadsQueue".into(),
                arn: "arn:q".into(),
                name: "LeadsQueue".into(),
            },
        );
        let r = info.resolver(BTreeMap::new());
        assert_eq!(
            r.resolve(&Expr::Ref("LeadsTable".into())).unwrap(),
            "p-LeadsTable"
        );
        assert_eq!(
            r.resolve(&Expr::Ref("LeadsQueue".into())).unwrap(),
            "http://q/LeadsQueue"
        );
        assert_eq!(
            r.resolve(&Expr::GetAtt {
                resource: "LeadsTable".into(),
                attribute: "Arn".into()
            })
            .unwrap(),
            "arn:aws:dynamodb:us-east-1:123456789012:table/p-LeadsTable"
        );
    }
}
