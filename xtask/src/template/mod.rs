//! Reads the SAM template (infra/template.yaml) into the specs the local stack needs: tables, queues,
//! buckets, functions and their event sources.
//!
//! - [`intrinsic`]: values that may be intrinsic functions ([`Expr`]); short tags (`!Ref X`) are
//!   rewritten to the long form (`Ref: X`) while reading, so everything downstream sees one shape.
//! - [`model`]: the typed serde model of the SAM subset Fluxo uses. Other resource types are kept as
//!   `Unmodeled` and other properties are ignored.
//! - [`resolve`]: the [`Resolver`] of intrinsics against the local stack.
//!
//! This module turns the model into specs: `Globals.Function` merged into each function, defaults
//! applied, dead-letter queues ordered before the queues that redrive to them.

pub mod intrinsic;
pub mod model;
pub mod resolve;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

pub use intrinsic::Expr;
pub use resolve::Resolver;

use model::{Document, Event, FunctionDef, Resource};

/// AWS pseudo parameters, as the local stack answers them.
pub const LOCAL_REGION: &str = "us-east-1";
/// moto's default account id.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// Lambda's largest SQS batch (standard queues) and batching window.
pub const MAX_SQS_BATCH_SIZE: u32 = 10_000;
pub const MAX_SQS_BATCHING_WINDOW_SECS: u32 = 300;

/// A parsed template: its parameters and its typed resources.
#[derive(Debug, Clone)]
pub struct Template {
    pub parameters: BTreeMap<String, Parameter>,
    document: Document,
}

/// A template parameter.
#[derive(Debug, Clone, Default)]
pub struct Parameter {
    pub default: Option<String>,
    pub description: Option<String>,
}

/// A DynamoDB table to create locally.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub logical_id: String,
    /// `TableName` when it is a plain string, else the logical id.
    pub name: String,
    /// `(attribute, HASH | RANGE)`.
    pub key_schema: Vec<(String, String)>,
    /// `(attribute, S | N | B)`.
    pub attributes: Vec<(String, String)>,
    pub global_indexes: Vec<IndexSpec>,
    pub local_indexes: Vec<IndexSpec>,
    /// `PAY_PER_REQUEST` or `PROVISIONED`.
    pub billing_mode: String,
    pub ttl_attribute: Option<String>,
}

/// An S3 bucket to create locally.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    pub logical_id: String,
    /// `BucketName` as written (an intrinsic is resolved against the parameters), if any.
    pub name: Option<Expr>,
}

/// A secondary index.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection: String,
    pub non_key_attributes: Vec<String>,
}

/// An SQS queue to create locally.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSpec {
    pub logical_id: String,
    /// `QueueName` when it is a plain string, else the logical id (plus `.fifo` for FIFO queues).
    pub name: String,
    /// SQS attributes as strings (`VisibilityTimeout`, `MessageRetentionPeriod`, ...), redrive excluded.
    pub attributes: BTreeMap<String, String>,
    pub redrive: Option<Redrive>,
    /// `RedriveAllowPolicy` as JSON text, if any.
    pub redrive_allow_policy: Option<String>,
}

/// A queue's redrive policy, with the dead-letter queue as a logical id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// A Lambda function and how it is triggered.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// The cargo binary (from `Metadata.BuildProperties.Binary`), also its name under `cargo lambda watch`.
    pub binary: String,
    pub timeout_secs: u64,
    /// `Environment.Variables` (`Globals.Function`'s merged under the function's own), unresolved.
    pub environment: BTreeMap<String, Expr>,
    /// `(event name, source)`.
    pub events: Vec<(String, EventSource)>,
}

/// One entry of a function's `Events`.
#[derive(Debug, Clone, PartialEq)]
pub enum EventSource {
    Sqs(SqsSource),
    Schedule(ScheduleSource),
    Http { method: String, path: String },
    Other(String),
}

/// An SQS event source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSource {
    /// Logical id of the queue.
    pub queue: String,
    /// 1 to [`MAX_SQS_BATCH_SIZE`] (default 10).
    pub batch_size: u32,
    /// 0 to [`MAX_SQS_BATCHING_WINDOW_SECS`].
    pub max_batching_window_secs: u32,
    pub report_batch_item_failures: bool,
    pub enabled: bool,
}

/// An EventBridge schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSource {
    /// `rate(1 hour)` or `cron(...)`.
    pub expression: String,
    pub enabled: bool,
}

/// Replaces `Ref: <parameter>` in the numbers of functions' event sources (`BatchSize`,
/// `MaximumBatchingWindowInSeconds`) with the parameter's default, as the local stack deploys them.
fn resolve_event_parameters(root: &mut serde_json::Value) {
    let defaults: BTreeMap<String, serde_json::Value> = root
        .get("Parameters")
        .and_then(serde_json::Value::as_object)
        .map(|params| {
            params
                .iter()
                .filter_map(|(k, p)| p.get("Default").map(|d| (k.clone(), d.clone())))
                .collect()
        })
        .unwrap_or_default();
    let Some(resources) = root
        .get_mut("Resources")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for resource in resources.values_mut() {
        let Some(events) = resource
            .pointer_mut("/Properties/Events")
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        for event in events.values_mut() {
            let Some(props) = event
                .get_mut("Properties")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            for key in ["BatchSize", "MaximumBatchingWindowInSeconds"] {
                let default = props
                    .get(key)
                    .and_then(|v| v.get("Ref"))
                    .and_then(serde_json::Value::as_str)
                    .and_then(|name| defaults.get(name))
                    .cloned();
                if let Some(d) = default {
                    props.insert(key.to_string(), d);
                }
            }
        }
    }
}

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Template> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Template::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Template> {
        let mut json = intrinsic::read_yaml(text)?;
        resolve_event_parameters(&mut json);
        let document: Document = serde_path_to_error::deserialize(json).map_err(|e| {
            let path = e.path().to_string();
            anyhow!("{path}: {}", e.inner())
        })?;
        let parameters = document
            .parameters
            .iter()
            .map(|(name, p)| {
                (
                    name.clone(),
                    Parameter {
                        default: p.default.clone().map(|d| d.0),
                        description: p.description.clone(),
                    },
                )
            })
            .collect();
        Ok(Template {
            parameters,
            document,
        })
    }

    /// Every resource's logical id and type (`AWS::SQS::Queue`, ...).
    pub fn resource_types(&self) -> BTreeMap<String, String> {
        self.document
            .resources
            .iter()
            .map(|(id, r)| {
                let kind = match r {
                    Resource::Table(_) => "AWS::DynamoDB::Table",
                    Resource::Queue(_) => "AWS::SQS::Queue",
                    Resource::Bucket(_) => "AWS::S3::Bucket",
                    Resource::Function(_) => "AWS::Serverless::Function",
                    Resource::Unmodeled(kind) => kind,
                };
                (id.clone(), kind.to_string())
            })
            .collect()
    }

    /// Every `AWS::DynamoDB::Table`.
    pub fn tables(&self) -> Result<Vec<TableSpec>> {
        Ok(self
            .document
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Table(p) => Some(table_spec(id, p)),
                _ => None,
            })
            .collect())
    }

    /// Every `AWS::S3::Bucket`.
    pub fn buckets(&self) -> Vec<BucketSpec> {
        self.document
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Bucket(p) => Some(BucketSpec {
                    logical_id: id.clone(),
                    name: p.bucket_name.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Every `AWS::SQS::Queue`, dead-letter queues before the queues that redrive to them.
    pub fn queues(&self) -> Result<Vec<QueueSpec>> {
        let mut pending: Vec<QueueSpec> = self
            .document
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Queue(p) => {
                    Some(queue_spec(id, p).with_context(|| format!("queue {id}")))
                }
                _ => None,
            })
            .collect::<Result<_>>()?;
        let mut ordered: Vec<QueueSpec> = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let ready = pending.iter().position(|q| match &q.redrive {
                None => true,
                Some(r) => ordered.iter().any(|o| o.logical_id == r.dead_letter_queue),
            });
            match ready {
                Some(i) => ordered.push(pending.remove(i)),
                None => {
                    let ids: Vec<&str> = pending.iter().map(|q| q.logical_id.as_str()).collect();
                    bail!(
                        "queues {ids:?} redrive to a dead-letter queue that is not an AWS::SQS::Queue of this template (or form a cycle)"
                    );
                }
            }
        }
        Ok(ordered)
    }

    /// Every `AWS::Serverless::Function`.
    pub fn functions(&self) -> Result<Vec<FunctionSpec>> {
        self.document
            .resources
            .iter()
            .filter_map(|(id, r)| match r {
                Resource::Function(f) => Some(
                    self.function_spec(id, f)
                        .with_context(|| format!("function {id}")),
                ),
                _ => None,
            })
            .collect()
    }

    /// Finds a function by logical id or binary name.
    pub fn function(&self, name: &str) -> Result<FunctionSpec> {
        let all = self.functions()?;
        let names: Vec<String> = all.iter().map(|f| f.binary.clone()).collect();
        all.into_iter()
            .find(|f| f.logical_id == name || f.binary == name)
            .ok_or_else(|| anyhow!("no function {name:?} in the template (functions: {names:?})"))
    }

    /// Parameter defaults, with `overrides` on top. Parameters without a default and not overridden are left out.
    pub fn parameter_values(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut values: BTreeMap<String, String> = self
            .parameters
            .iter()
            .filter_map(|(k, p)| p.default.clone().map(|d| (k.clone(), d)))
            .collect();
        for (k, v) in overrides {
            values.insert(k.clone(), v.clone());
        }
        values
    }

    /// Teaches `resolver` the local names of what the local stack runs but does not provision (the
    /// functions, as `cargo lambda watch` names them) and of what it neither provisions nor runs (see
    /// [`Resolver::unprovisioned`]).
    pub fn add_local_names(&self, resolver: &mut Resolver) -> Result<()> {
        for f in self.functions()? {
            let arn = format!(
                "arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{}",
                f.binary
            );
            resolver.refs.insert(f.logical_id.clone(), f.binary.clone());
            resolver
                .attributes
                .insert((f.logical_id.clone(), "Arn".into()), arn);
        }
        for (id, kind) in self.resource_types() {
            let known = resolver.refs.contains_key(&id)
                || resolver.attributes.keys().any(|(r, _)| *r == id);
            if !known {
                resolver.unprovisioned.insert(id, kind);
            }
        }
        Ok(())
    }

    fn function_spec(&self, id: &str, f: &FunctionDef) -> Result<FunctionSpec> {
        let p = &f.properties;
        let globals = &self.document.globals.function;
        let code_uri = p.code_uri.as_ref().or(globals.code_uri.as_ref());
        let binary = f
            .metadata
            .build_properties
            .as_ref()
            .and_then(|b| b.binary.clone())
            .or_else(|| match code_uri {
                Some(model::CodeUri::Path(c)) => c
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .filter(|c| !c.is_empty() && *c != "." && *c != "..")
                    .map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| {
                anyhow!("set Metadata.BuildProperties.Binary to the function's cargo binary")
            })?;
        let mut environment = globals
            .environment
            .as_ref()
            .map(|e| e.variables.clone())
            .unwrap_or_default();
        if let Some(own) = &p.environment {
            environment.extend(own.variables.clone());
        }
        let events = p
            .events
            .iter()
            .map(|(name, e)| {
                event_source(e, &self.parameter_values(&BTreeMap::new()))
                    .with_context(|| format!("event {name}"))
                    .map(|s| (name.clone(), s))
            })
            .collect::<Result<_>>()?;
        Ok(FunctionSpec {
            logical_id: id.to_string(),
            binary,
            timeout_secs: p.timeout.or(globals.timeout).map_or(3, |t| t.0),
            environment,
            events,
        })
    }
}

fn key_schema(keys: &[model::KeyElement]) -> Vec<(String, String)> {
    keys.iter()
        .map(|k| (k.attribute_name.clone(), k.key_type.clone()))
        .collect()
}

fn index_specs(indexes: &[model::IndexDef]) -> Vec<IndexSpec> {
    indexes
        .iter()
        .map(|i| IndexSpec {
            name: i.index_name.clone(),
            key_schema: key_schema(&i.key_schema),
            projection: i
                .projection
                .projection_type
                .clone()
                .unwrap_or_else(|| "ALL".to_string()),
            non_key_attributes: i.projection.non_key_attributes.clone(),
        })
        .collect()
}

fn table_spec(id: &str, p: &model::TableProps) -> TableSpec {
    TableSpec {
        logical_id: id.to_string(),
        name: p
            .table_name
            .as_ref()
            .and_then(Expr::literal)
            .unwrap_or(id)
            .to_string(),
        key_schema: key_schema(&p.key_schema),
        attributes: p
            .attribute_definitions
            .iter()
            .map(|a| (a.attribute_name.clone(), a.attribute_type.clone()))
            .collect(),
        global_indexes: index_specs(&p.global_secondary_indexes),
        local_indexes: index_specs(&p.local_secondary_indexes),
        billing_mode: p
            .billing_mode
            .clone()
            .unwrap_or_else(|| "PROVISIONED".to_string()),
        ttl_attribute: p
            .time_to_live_specification
            .as_ref()
            .filter(|t| t.enabled.is_some_and(|e| e.0))
            .and_then(|t| t.attribute_name.clone()),
    }
}

fn queue_spec(id: &str, p: &model::QueueProps) -> Result<QueueSpec> {
    // Only literal attributes have a local meaning; encryption settings have none.
    let literal = |e: &Option<Expr>| e.as_ref().and_then(Expr::literal).map(str::to_string);
    let mut attributes = BTreeMap::new();
    for (name, value) in [
        ("VisibilityTimeout", &p.visibility_timeout),
        ("MessageRetentionPeriod", &p.message_retention_period),
        ("DelaySeconds", &p.delay_seconds),
        ("MaximumMessageSize", &p.maximum_message_size),
        (
            "ReceiveMessageWaitTimeSeconds",
            &p.receive_message_wait_time_seconds,
        ),
        ("FifoQueue", &p.fifo_queue),
        ("ContentBasedDeduplication", &p.content_based_deduplication),
    ] {
        if let Some(v) = literal(value) {
            attributes.insert(name.to_string(), v);
        }
    }
    let fifo = literal(&p.fifo_queue).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut name = p
        .queue_name
        .as_ref()
        .and_then(Expr::literal)
        .unwrap_or(id)
        .to_string();
    if fifo && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    let redrive = match &p.redrive_policy {
        None => None,
        Some(policy) => Some(Redrive {
            dead_letter_queue: policy
                .dead_letter_target_arn
                .referenced_resource()
                .ok_or_else(|| anyhow!("RedrivePolicy.deadLetterTargetArn must be Fn::GetAtt [Queue, Arn] of a queue in this template"))?
                .to_string(),
            max_receive_count: u32::try_from(policy.max_receive_count.0)
                .context("maxReceiveCount is too large")?,
        }),
    };
    let redrive_allow_policy = match &p.redrive_allow_policy {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    };
    Ok(QueueSpec {
        logical_id: id.to_string(),
        name,
        attributes,
        redrive,
        redrive_allow_policy,
    })
}

/// A number, or a `Ref` to a template parameter (its default).
fn count(expr: Option<&Expr>, parameters: &BTreeMap<String, String>) -> Result<Option<u64>> {
    let text = match expr {
        None => return Ok(None),
        Some(Expr::Ref(name)) => parameters
            .get(name)
            .ok_or_else(|| anyhow!("parameter {name} has no default"))?
            .as_str(),
        Some(e) => e
            .literal()
            .ok_or_else(|| anyhow!("expected a number or a parameter Ref, found {e:?}"))?,
    };
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| anyhow!("expected a number, found {text:?}"))
}

fn event_source(e: &Event, parameters: &BTreeMap<String, String>) -> Result<EventSource> {
    Ok(match e {
        Event::Sqs(s) => {
            let queue = s
                .queue
                .referenced_resource()
                .ok_or_else(|| {
                    anyhow!("Queue must be Fn::GetAtt [Queue, Arn] of a queue in this template")
                })?
                .to_string();
            let batch_size = count(s.batch_size.as_ref(), parameters)?.unwrap_or(10);
            if !(1..=u64::from(MAX_SQS_BATCH_SIZE)).contains(&batch_size) {
                bail!("BatchSize {batch_size} is outside 1..={MAX_SQS_BATCH_SIZE}");
            }
            let window =
                count(s.maximum_batching_window_in_seconds.as_ref(), parameters)?.unwrap_or(0);
            if window > u64::from(MAX_SQS_BATCHING_WINDOW_SECS) {
                bail!(
                    "MaximumBatchingWindowInSeconds {window} is above {MAX_SQS_BATCHING_WINDOW_SECS}"
                );
            }
            EventSource::Sqs(SqsSource {
                queue,
                batch_size: u32::try_from(batch_size)?,
                max_batching_window_secs: u32::try_from(window)?,
                report_batch_item_failures: s
                    .function_response_types
                    .iter()
                    .any(|t| t == "ReportBatchItemFailures"),
                enabled: s.enabled.is_none_or(|e| e.0),
            })
        }
        Event::Schedule(s) => {
            let expression = s
                .schedule
                .clone()
                .or_else(|| s.schedule_expression.clone())
                .ok_or_else(|| anyhow!("Schedule expression is missing"))?;
            let enabled = match &s.state {
                Some(state) => state.eq_ignore_ascii_case("ENABLED"),
                None => s.enabled.is_none_or(|e| e.0),
            };
            EventSource::Schedule(ScheduleSource {
                expression,
                enabled,
            })
        }
        Event::Http(h) => EventSource::Http {
            method: h.method.clone().unwrap_or_else(|| "ANY".into()),
            path: h.path.clone().unwrap_or_else(|| "/".into()),
        },
        Event::Unmodeled(kind) => EventSource::Other(kind.clone()),
    })
}

/// The interval of a `rate(N unit)` expression; `None` for `cron(...)` and anything else.
pub fn rate_interval(expression: &str) -> Option<std::time::Duration> {
    let inner = expression.trim().strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.trim().split_once(' ')?;
    let n: u64 = n.trim().parse().ok()?;
    let secs = match unit.trim().trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(n * secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SNIPPET: &str = r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Greeting:
    Type: String
    Default: hello
  Limit:
    Type: Number
    Default: 5
Globals:
  Function:
    Timeout: 7
    Environment:
      Variables:
        SHARED: from-globals
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: fluxo-leads
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - { AttributeName: pk, AttributeType: S }
        - { AttributeName: sk, AttributeType: S }
        - { AttributeName: email_fp, AttributeType: S }
      KeySchema:
        - { AttributeName: pk, KeyType: HASH }
        - { AttributeName: sk, KeyType: RANGE }
      GlobalSecondaryIndexes:
        - IndexName: by-email
          KeySchema:
            - { AttributeName: email_fp, KeyType: HASH }
          Projection: { ProjectionType: KEYS_ONLY }
      TimeToLiveSpecification: { AttributeName: expires_at, Enabled: true }
  MainQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 180
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt MainDlq.Arn
        maxReceiveCount: 5
  MainDlq:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  Router:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: lead-router
    Properties:
      CodeUri: ../functions/lead-router
      Timeout: 30
      Environment:
        Variables:
          TABLE: !Ref Table
          QUEUE_URL:
            Ref: MainQueue
          DLQ_ARN:
            Fn::GetAtt: [MainDlq, Arn]
          GREETING: !Sub "${Greeting}, ${AWS::Region} ${MainQueue.QueueName} ${!kept}"
          LIMIT: { Ref: Limit }
      Events:
        Leads:
          Type: SQS
          Properties:
            Queue: !GetAtt MainQueue.Arn
            BatchSize: 25
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
  Optimizer:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties:
        Binary: hourly-optimizer
    Properties:
      CodeUri: ../functions/hourly-optimizer
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
"#;

    fn template() -> Template {
        Template::parse(SNIPPET).unwrap()
    }

    fn resolver() -> Resolver {
        let t = template();
        let mut r = Resolver {
            parameters: t
                .parameter_values(&BTreeMap::from([("Limit".to_string(), "9".to_string())])),
            ..Resolver::default()
        };
        r.refs.insert("Table".into(), "fluxo-leads".into());
        r.refs
            .insert("MainQueue".into(), "http://localhost/q/MainQueue".into());
        r.attributes.insert(
            ("MainDlq".into(), "Arn".into()),
            "arn:aws:sqs:us-east-1:123456789012:MainDlq".into(),
        );
        r.attributes
            .insert(("MainQueue".into(), "QueueName".into()), "MainQueue".into());
        r
    }

    #[test]
    fn rewrites_short_tags_to_long_form_intrinsics() {
        let router = template().function("Router").unwrap();
        assert_eq!(router.environment["TABLE"], Expr::Ref("Table".into()));
        assert_eq!(
            router.environment["QUEUE_URL"],
            Expr::Ref("MainQueue".into())
        );
        assert_eq!(
            router.environment["DLQ_ARN"],
            Expr::GetAtt {
                resource: "MainDlq".into(),
                attribute: "Arn".into()
            }
        );
    }

    #[test]
    fn reads_tables_with_keys_indexes_and_ttl() {
        let tables = template().tables().unwrap();
        assert_eq!(tables.len(), 1);
        let t = &tables[0];
        assert_eq!(t.name, "fluxo-leads");
        assert_eq!(
            t.key_schema,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(t.attributes.len(), 3);
        assert_eq!(t.global_indexes[0].name, "by-email");
        assert_eq!(t.global_indexes[0].projection, "KEYS_ONLY");
        assert_eq!(t.billing_mode, "PAY_PER_REQUEST");
        assert_eq!(t.ttl_attribute.as_deref(), Some("expires_at"));
    }

    #[test]
    fn orders_dead_letter_queues_before_the_queues_that_redrive_to_them() {
        let queues = template().queues().unwrap();
        let ids: Vec<&str> = queues.iter().map(|q| q.logical_id.as_str()).collect();
        assert_eq!(ids, vec!["MainDlq", "MainQueue"]);
        let main = &queues[1];
        assert_eq!(main.name, "MainQueue");
        assert_eq!(main.attributes["VisibilityTimeout"], "180");
        assert_eq!(
            main.redrive,
            Some(Redrive {
                dead_letter_queue: "MainDlq".into(),
                max_receive_count: 5
            })
        );
    }

    #[test]
    fn reads_sqs_and_schedule_event_sources_generically() {
        let t = template();
        let router = t.function("lead-router").unwrap();
        assert_eq!(router.logical_id, "Router");
        assert_eq!(router.timeout_secs, 30);
        assert_eq!(
            router.events,
            vec![(
                "Leads".to_string(),
                EventSource::Sqs(SqsSource {
                    queue: "MainQueue".into(),
                    batch_size: 25,
                    max_batching_window_secs: 2,
                    report_batch_item_failures: true,
                    enabled: true,
                })
            )]
        );
        let optimizer = t.function("Optimizer").unwrap();
        assert_eq!(optimizer.binary, "hourly-optimizer");
        assert_eq!(
            optimizer.timeout_secs, 7,
            "Globals.Function.Timeout applies"
        );
        assert_eq!(
            optimizer.events,
            vec![(
                "Hourly".to_string(),
                EventSource::Schedule(ScheduleSource {
                    expression: "rate(1 hour)".into(),
                    enabled: true
                })
            )]
        );
    }

    #[test]
    fn resolves_environment_against_local_resources_and_parameters() {
        let t = template();
        let env = resolver()
            .environment(&t.function("Router").unwrap().environment)
            .unwrap();
        assert_eq!(env["TABLE"], "fluxo-leads");
        assert_eq!(env["QUEUE_URL"], "http://localhost/q/MainQueue");
        assert_eq!(env["DLQ_ARN"], "arn:aws:sqs:us-east-1:123456789012:MainDlq");
        assert_eq!(env["GREETING"], "hello, us-east-1 MainQueue ${kept}");
        assert_eq!(env["LIMIT"], "9", "overrides beat defaults");
        assert_eq!(env["SHARED"], "from-globals");
    }

    #[test]
    fn names_what_it_cannot_resolve() {
        let err = resolver().resolve(&Expr::Ref("Nope".into())).unwrap_err();
        assert!(err.to_string().contains("Nope"));
        let err = resolver()
            .resolve(&Expr::Unsupported(json!({"Fn::If": ["C", "a", "b"]})))
            .unwrap_err();
        assert!(err.to_string().contains("Fn::If"), "{err}");
    }

    #[test]
    fn reads_rate_expressions() {
        assert_eq!(
            rate_interval("rate(1 hour)"),
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            rate_interval("rate(5 minutes)"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(rate_interval("cron(0 * * * ? *)"), None);
    }

    #[test]
    fn parses_the_project_template() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
        let t = Template::load(&path).unwrap();
        let receiver = t.function("webhook-receiver").unwrap();
        assert_eq!(receiver.logical_id, "WebhookReceiverFunction");
        assert!(
            t.tables()
                .unwrap()
                .iter()
                .any(|t| t.logical_id == "LeadsTable")
        );
        let queues = t.queues().unwrap();
        // Dead-letter queues are created before the queues that redrive to them.
        let pos = |id: &str| queues.iter().position(|q| q.logical_id == id).unwrap();
        assert!(pos("LeadsDeadLetterQueue") < pos("LeadsQueue"));
        assert!(pos("EmailDeadLetterQueue") < pos("EmailQueue"));
    }

    #[test]
    fn reads_the_project_templates_functions_events_and_resources_typed() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
        let t = Template::load(&path).unwrap();
        let functions = t.functions().unwrap();
        assert!(functions.len() >= 3, "{functions:?}");
        let router = t.function("lead-router").unwrap();
        assert_eq!(router.logical_id, "LeadRouterFunction");
        assert_eq!(router.timeout_secs, 30);
        assert!(router.events.iter().any(|(_, e)| matches!(
            e,
            EventSource::Sqs(s) if s.queue == "LeadsQueue" && s.report_batch_item_failures && s.enabled
        )));
        let receiver = t.function("webhook-receiver").unwrap();
        assert!(receiver.events.iter().any(
            |(_, e)| matches!(e, EventSource::Http { path, .. } if path == "/leads/{source}")
        ));
        assert!(
            receiver
                .events
                .iter()
                .any(|(_, e)| matches!(e, EventSource::Schedule(s) if s.enabled))
        );
        assert_eq!(
            receiver.environment["LEADS_TABLE"],
            Expr::Ref("LeadsTable".into())
        );
        assert!(t.buckets().iter().any(|b| b.logical_id == "ConfigBucket"
            && matches!(b.name, Some(Expr::Sub { .. }))));
        let leads = t
            .tables()
            .unwrap()
            .into_iter()
            .find(|t| t.logical_id == "LeadsTable")
            .unwrap();
        assert_eq!(leads.ttl_attribute.as_deref(), Some("expires_at"));
        assert!(leads.global_indexes.iter().any(|i| i.name == "Unqueued"));
        // Alarms, log groups, topics and the API are kept, untyped, and ignored.
        let types = t.resource_types();
        assert_eq!(types["LeadsDeadLetterQueueAlarm"], "AWS::CloudWatch::Alarm");
        assert_eq!(types["HttpApi"], "AWS::Serverless::HttpApi");
        assert_eq!(
            t.parameter_values(&BTreeMap::new())["MaxBodyBytes"],
            "65536"
        );
    }

    const UNMODELED: &str = r#"
Resources:
  Lake:
    Type: AWS::S3::Bucket
  LakeDatabase:
    Type: AWS::Glue::Database
    Properties:
      CatalogId: !Ref AWS::AccountId
      DatabaseInput: { Name: fluxo_lake }
  Reports:
    Type: AWS::Athena::WorkGroup
    Properties: { Name: fluxo, WorkGroupConfiguration: { EnforceWorkGroupConfiguration: true } }
  Bulk:
    Type: AWS::SQS::Queue
    Properties:
      SqsManagedSseEnabled: true
      Tags: [{ Key: team, Value: growth }]
  Reporter:
    Type: AWS::Serverless::Function
    Condition: Whatever
    Metadata:
      BuildProperties: { Binary: daily-report }
      SamResourceId: Reporter
    Properties:
      CodeUri: ../functions/daily-report
      Policies: [AWSLambdaBasicExecutionRole]
      Environment:
        Variables:
          DATABASE: !Ref LakeDatabase
          WORKGROUP_ARN: !GetAtt Reports.Arn
          LAKE: !Ref Lake
          SELF: !GetAtt Reporter.Arn
      Events:
        Bulk:
          Type: SQS
          Properties:
            Queue: !GetAtt Bulk.Arn
            BatchSize: 10000
            MaximumBatchingWindowInSeconds: 300
            ScalingConfig: { MaximumConcurrency: 2 }
        Nightly:
          Type: ScheduleV2
          Properties: { ScheduleExpression: "cron(0 3 * * ? *)", State: DISABLED }
        Uploaded:
          Type: S3
          Properties: { Bucket: !Ref Lake, Events: s3:ObjectCreated:* }
"#;

    #[test]
    fn tolerates_resource_types_properties_and_events_it_does_not_model() {
        let t = Template::parse(UNMODELED).unwrap();
        assert_eq!(t.resource_types()["LakeDatabase"], "AWS::Glue::Database");
        assert_eq!(t.buckets().len(), 1);
        let f = t.function("daily-report").unwrap();
        assert_eq!(f.timeout_secs, 3, "Lambda's default timeout");
        let kinds: Vec<&EventSource> = f.events.iter().map(|(_, e)| e).collect();
        assert_eq!(
            kinds,
            vec![
                &EventSource::Sqs(SqsSource {
                    queue: "Bulk".into(),
                    batch_size: 10_000,
                    max_batching_window_secs: 300,
                    report_batch_item_failures: false,
                    enabled: true,
                }),
                &EventSource::Schedule(ScheduleSource {
                    expression: "cron(0 3 * * ? *)".into(),
                    enabled: false
                }),
                &EventSource::Other("S3".into()),
            ]
        );
    }

    #[test]
    fn resolves_resources_the_local_stack_does_not_create_to_placeholders() {
        let t = Template::parse(UNMODELED).unwrap();
        let mut info = crate::stack::StackInfo::default();
        info.buckets.insert("Lake".into(), "local-lake".into());
        let mut r = info.resolver(BTreeMap::new());
        t.add_local_names(&mut r).unwrap();
        let env = r
            .environment(&t.function("Reporter").unwrap().environment)
            .unwrap();
        assert_eq!(env["DATABASE"], "LakeDatabase");
        assert_eq!(
            env["WORKGROUP_ARN"],
            "arn:aws:athena:us-east-1:123456789012:Reports"
        );
        assert_eq!(
            env["LAKE"], "local-lake",
            "provisioned resources keep their local names"
        );
        assert_eq!(
            env["SELF"],
            "arn:aws:lambda:us-east-1:123456789012:function:daily-report"
        );
    }

    #[test]
    fn refuses_sqs_batches_lambda_would_refuse() {
        for (batch, window, what) in [
            ("10001", "1", "BatchSize 10001"),
            ("0", "1", "BatchSize 0"),
            ("10", "301", "MaximumBatchingWindowInSeconds 301"),
        ] {
            let text = UNMODELED
                .replace("BatchSize: 10000", &format!("BatchSize: {batch}"))
                .replace(
                    "MaximumBatchingWindowInSeconds: 300",
                    &format!("MaximumBatchingWindowInSeconds: {window}"),
                );
            let err = Template::parse(&text).unwrap().functions().unwrap_err();
            assert!(format!("{err:#}").contains(what), "{err:#}");
        }
    }

    #[test]
    fn names_the_resource_and_property_that_is_malformed() {
        let text = SNIPPET.replace("maxReceiveCount: 5", "maxReceiveCount: lots");
        let err = format!("{:#}", Template::parse(&text).unwrap_err());
        assert!(err.contains("Resources.MainQueue"), "{err}");
        assert!(err.contains("RedrivePolicy.maxReceiveCount"), "{err}");
        assert!(err.contains("expected a number"), "{err}");
        let text = SNIPPET.replace(
            "Type: AWS::DynamoDB::Table",
            "Type: AWS::DynamoDB::Table\n    Properties: {}",
        );
        assert!(Template::parse(&text).is_err(), "a table needs its keys");
    }
}
