//! Reads the SAM template (infra/template.yaml) into the specs the local stack needs: tables, queues, functions and their event sources.
//!
//! Both intrinsic forms are understood: long form (`Ref: X`, `Fn::GetAtt: [X, Arn]`, `Fn::Sub: ...`) and
//! short tags (`!Ref X`, `!GetAtt X.Arn`, `!Sub ...`). Short tags are rewritten to the long form while
//! parsing, so everything downstream sees one shape.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

/// AWS pseudo parameters, as the local stack answers them.
pub const LOCAL_REGION: &str = "us-east-1";
/// moto's default account id.
pub const LOCAL_ACCOUNT: &str = "123456789012";

/// A parsed template: parameters and resources, with `Globals.Function` merged into each function.
#[derive(Debug, Clone, Default)]
pub struct Template {
    pub parameters: BTreeMap<String, Parameter>,
    pub resources: BTreeMap<String, Resource>,
}

/// A template parameter.
#[derive(Debug, Clone, Default)]
pub struct Parameter {
    pub default: Option<String>,
    pub description: Option<String>,
}

/// A resource: its type, properties and metadata (both `Value::Null` when absent).
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: String,
    pub properties: Value,
    pub metadata: Value,
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
    pub name: Option<Value>,
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
    /// `Environment.Variables`, unresolved.
    pub environment: BTreeMap<String, Value>,
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
    pub batch_size: u32,
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

impl Template {
    /// Reads and parses a template file.
    pub fn load(path: &Path) -> Result<Template> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Template::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Template> {
        let yaml: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).context("the template is not valid YAML")?;
        let root = yaml_to_json(yaml)?;
        let root = root
            .as_object()
            .ok_or_else(|| anyhow!("the template is not a mapping"))?;

        let mut parameters = BTreeMap::new();
        if let Some(params) = root.get("Parameters").and_then(Value::as_object) {
            for (name, p) in params {
                parameters.insert(
                    name.clone(),
                    Parameter {
                        default: p.get("Default").and_then(scalar_string),
                        description: p.get("Description").and_then(scalar_string),
                    },
                );
            }
        }

        let globals = root
            .get("Globals")
            .and_then(|g| g.get("Function"))
            .cloned()
            .unwrap_or(Value::Null);
        let mut resources = BTreeMap::new();
        let resource_map = root
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("the template has no Resources"))?;
        for (id, r) in resource_map {
            let kind = r
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("resource {id} has no Type"))?
                .to_string();
            let mut properties = r.get("Properties").cloned().unwrap_or(Value::Null);
            if kind == "AWS::Serverless::Function" {
                properties = merge_globals(&globals, properties);
                resolve_event_parameters(&mut properties, &parameters);
            }
            let metadata = r.get("Metadata").cloned().unwrap_or(Value::Null);
            resources.insert(
                id.clone(),
                Resource {
                    kind,
                    properties,
                    metadata,
                },
            );
        }
        Ok(Template {
            parameters,
            resources,
        })
    }

    fn of_kind<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Resource)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.kind == kind)
    }

    /// Every `AWS::DynamoDB::Table`.
    pub fn tables(&self) -> Result<Vec<TableSpec>> {
        self.of_kind("AWS::DynamoDB::Table")
            .map(|(id, r)| table_spec(id, &r.properties).with_context(|| format!("table {id}")))
            .collect()
    }

    /// Every `AWS::S3::Bucket`.
    pub fn buckets(&self) -> Vec<BucketSpec> {
        self.of_kind("AWS::S3::Bucket")
            .map(|(id, r)| BucketSpec {
                logical_id: id.clone(),
                name: r.properties.get("BucketName").cloned(),
            })
            .collect()
    }

    /// Every `AWS::SQS::Queue`, dead-letter queues before the queues that redrive to them.
    pub fn queues(&self) -> Result<Vec<QueueSpec>> {
        let mut pending: Vec<QueueSpec> = self
            .of_kind("AWS::SQS::Queue")
            .map(|(id, r)| queue_spec(id, &r.properties).with_context(|| format!("queue {id}")))
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
        self.of_kind("AWS::Serverless::Function")
            .map(|(id, r)| function_spec(id, r).with_context(|| format!("function {id}")))
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
}

/// Replaces `Ref: <parameter>` in the numbers of a function's event sources (`BatchSize`,
/// `MaximumBatchingWindowInSeconds`) with the parameter's default, as the local stack deploys them.
fn resolve_event_parameters(properties: &mut Value, parameters: &BTreeMap<String, Parameter>) {
    let Some(events) = properties.get_mut("Events").and_then(Value::as_object_mut) else {
        return;
    };
    for event in events.values_mut() {
        let Some(props) = event.get_mut("Properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for key in ["BatchSize", "MaximumBatchingWindowInSeconds"] {
            let default = props
                .get(key)
                .and_then(|v| v.get("Ref"))
                .and_then(Value::as_str)
                .and_then(|name| parameters.get(name))
                .and_then(|p| p.default.clone());
            if let Some(d) = default {
                props.insert(key.to_string(), Value::String(d));
            }
        }
    }
}

/// Converts YAML to JSON, rewriting CloudFormation short tags to their long form.
fn yaml_to_json(v: serde_yaml_ng::Value) -> Result<Value> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().map(Value::from).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(seq.into_iter().map(yaml_to_json).collect::<Result<_>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = yaml_to_json(tagged.value)?;
            let (key, value) = match tag {
                "Ref" => ("Ref".to_string(), inner),
                "Condition" => ("Condition".to_string(), inner),
                "GetAtt" => {
                    let value = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((res, attr)) => {
                                Value::Array(vec![Value::from(res), Value::from(attr)])
                            }
                            None => bail!("!GetAtt {s} is not of the form Resource.Attribute"),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_string(), value)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut m = Map::new();
            m.insert(key, value);
            Value::Object(m)
        }
    })
}

/// Merges `Globals.Function` under a function's properties (the function wins; `Environment.Variables` merge per key).
fn merge_globals(globals: &Value, properties: Value) -> Value {
    let (Some(g), Value::Object(mut props)) = (globals.as_object(), properties.clone()) else {
        return properties;
    };
    for (k, gv) in g {
        match props.get_mut(k) {
            None => {
                props.insert(k.clone(), gv.clone());
            }
            Some(pv) if k == "Environment" => {
                let gvars = gv
                    .get("Variables")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let mut vars = gvars;
                if let Some(own) = pv.get("Variables").and_then(Value::as_object) {
                    for (vk, vv) in own {
                        vars.insert(vk.clone(), vv.clone());
                    }
                }
                let mut env = Map::new();
                env.insert("Variables".into(), Value::Object(vars));
                *pv = Value::Object(env);
            }
            Some(_) => {}
        }
    }
    Value::Object(props)
}

/// A scalar (string, number, bool) as a string.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar_u64(v: Option<&Value>) -> Result<Option<u64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let s = scalar_string(v).ok_or_else(|| anyhow!("expected a number, found {v}"))?;
            s.parse::<u64>()
                .map(Some)
                .map_err(|_| anyhow!("expected a number, found {s:?}"))
        }
    }
}

fn bool_of(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => default,
    }
}

fn key_schema(v: Option<&Value>) -> Result<Vec<(String, String)>> {
    let items = v
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("KeySchema is missing"))?;
    items
        .iter()
        .map(|k| {
            let name = k.get("AttributeName").and_then(scalar_string);
            let kind = k.get("KeyType").and_then(scalar_string);
            name.zip(kind)
                .ok_or_else(|| anyhow!("KeySchema entry needs AttributeName and KeyType"))
        })
        .collect()
}

fn index_specs(v: Option<&Value>) -> Result<Vec<IndexSpec>> {
    let Some(items) = v.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|i| {
            let name = i
                .get("IndexName")
                .and_then(scalar_string)
                .ok_or_else(|| anyhow!("an index has no IndexName"))?;
            let projection = i.get("Projection");
            Ok(IndexSpec {
                key_schema: key_schema(i.get("KeySchema"))
                    .with_context(|| format!("index {name}"))?,
                projection: projection
                    .and_then(|p| p.get("ProjectionType"))
                    .and_then(scalar_string)
                    .unwrap_or_else(|| "ALL".to_string()),
                non_key_attributes: projection
                    .and_then(|p| p.get("NonKeyAttributes"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(scalar_string).collect())
                    .unwrap_or_default(),
                name,
            })
        })
        .collect()
}

fn table_spec(id: &str, p: &Value) -> Result<TableSpec> {
    let attributes = p
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("AttributeDefinitions is missing"))?
        .iter()
        .map(|a| {
            let name = a.get("AttributeName").and_then(scalar_string);
            let kind = a.get("AttributeType").and_then(scalar_string);
            name.zip(kind).ok_or_else(|| {
                anyhow!("AttributeDefinitions entry needs AttributeName and AttributeType")
            })
        })
        .collect::<Result<_>>()?;
    let ttl = p.get("TimeToLiveSpecification");
    let ttl_attribute = ttl
        .filter(|t| bool_of(t.get("Enabled"), false))
        .and_then(|t| t.get("AttributeName"))
        .and_then(scalar_string);
    Ok(TableSpec {
        logical_id: id.to_string(),
        name: p
            .get("TableName")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_string(),
        key_schema: key_schema(p.get("KeySchema"))?,
        attributes,
        global_indexes: index_specs(p.get("GlobalSecondaryIndexes"))?,
        local_indexes: index_specs(p.get("LocalSecondaryIndexes"))?,
        billing_mode: p
            .get("BillingMode")
            .and_then(scalar_string)
            .unwrap_or_else(|| "PROVISIONED".to_string()),
        ttl_attribute,
    })
}

/// The logical id behind `Fn::GetAtt: [X, Arn]`, `!GetAtt X.Arn` or `Ref: X`.
pub fn referenced_resource(v: &Value) -> Option<String> {
    if let Some(att) = v.get("Fn::GetAtt") {
        return match att {
            Value::Array(parts) => parts.first().and_then(Value::as_str).map(str::to_string),
            Value::String(s) => s.split('.').next().map(str::to_string),
            _ => None,
        };
    }
    v.get("Ref").and_then(Value::as_str).map(str::to_string)
}

/// SQS attributes the local queue keeps; encryption settings have no local meaning.
const QUEUE_ATTRIBUTES: [&str; 7] = [
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
];

fn queue_spec(id: &str, p: &Value) -> Result<QueueSpec> {
    let mut attributes = BTreeMap::new();
    for name in QUEUE_ATTRIBUTES {
        if let Some(v) = p.get(name).and_then(scalar_string) {
            attributes.insert(name.to_string(), v);
        }
    }
    let fifo = bool_of(p.get("FifoQueue"), false);
    let mut name = p
        .get("QueueName")
        .and_then(Value::as_str)
        .unwrap_or(id)
        .to_string();
    if fifo && !name.ends_with(".fifo") {
        name.push_str(".fifo");
    }
    let redrive = match p.get("RedrivePolicy") {
        None | Some(Value::Null) => None,
        Some(policy) => {
            let target = policy
                .get("deadLetterTargetArn")
                .and_then(referenced_resource)
                .ok_or_else(|| anyhow!("RedrivePolicy.deadLetterTargetArn must be Fn::GetAtt [Queue, Arn] of a queue in this template"))?;
            let max = scalar_u64(policy.get("maxReceiveCount"))?
                .ok_or_else(|| anyhow!("RedrivePolicy.maxReceiveCount is missing"))?;
            Some(Redrive {
                dead_letter_queue: target,
                max_receive_count: u32::try_from(max).context("maxReceiveCount is too large")?,
            })
        }
    };
    let redrive_allow_policy = match p.get("RedriveAllowPolicy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
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

fn function_spec(id: &str, r: &Resource) -> Result<FunctionSpec> {
    let p = &r.properties;
    let binary = r
        .metadata
        .get("BuildProperties")
        .and_then(|b| b.get("Binary"))
        .and_then(scalar_string)
        .or_else(|| {
            p.get("CodeUri")
                .and_then(Value::as_str)
                .and_then(|c| c.trim_end_matches('/').rsplit('/').next())
                .filter(|c| !c.is_empty() && *c != "." && *c != "..")
                .map(str::to_string)
        })
        .ok_or_else(|| {
            anyhow!("set Metadata.BuildProperties.Binary to the function's cargo binary")
        })?;
    let environment = p
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let mut events = Vec::new();
    if let Some(map) = p.get("Events").and_then(Value::as_object) {
        for (name, e) in map {
            let kind = e.get("Type").and_then(Value::as_str).unwrap_or_default();
            let ep = e.get("Properties").cloned().unwrap_or(Value::Null);
            let source = match kind {
                "SQS" => {
                    let queue = ep
                        .get("Queue")
                        .and_then(referenced_resource)
                        .ok_or_else(|| anyhow!("event {name}: Queue must be Fn::GetAtt [Queue, Arn] of a queue in this template"))?;
                    let batch_size = scalar_u64(ep.get("BatchSize"))?.unwrap_or(10);
                    let window = scalar_u64(ep.get("MaximumBatchingWindowInSeconds"))?.unwrap_or(0);
                    let report = ep
                        .get("FunctionResponseTypes")
                        .and_then(Value::as_array)
                        .is_some_and(|a| {
                            a.iter()
                                .any(|t| t.as_str() == Some("ReportBatchItemFailures"))
                        });
                    EventSource::Sqs(SqsSource {
                        queue,
                        batch_size: u32::try_from(batch_size).unwrap_or(u32::MAX),
                        max_batching_window_secs: u32::try_from(window).unwrap_or(u32::MAX),
                        report_batch_item_failures: report,
                        enabled: bool_of(ep.get("Enabled"), true),
                    })
                }
                "Schedule" | "ScheduleV2" => {
                    let expression = ep
                        .get("Schedule")
                        .or_else(|| ep.get("ScheduleExpression"))
                        .and_then(scalar_string)
                        .ok_or_else(|| anyhow!("event {name}: Schedule expression is missing"))?;
                    let enabled = match ep.get("State").and_then(Value::as_str) {
                        Some(state) => state.eq_ignore_ascii_case("ENABLED"),
                        None => bool_of(ep.get("Enabled"), true),
                    };
                    EventSource::Schedule(ScheduleSource {
                        expression,
                        enabled,
                    })
                }
                "HttpApi" | "Api" => EventSource::Http {
                    method: ep
                        .get("Method")
                        .and_then(scalar_string)
                        .unwrap_or_else(|| "ANY".into()),
                    path: ep
                        .get("Path")
                        .and_then(scalar_string)
                        .unwrap_or_else(|| "/".into()),
                },
                other => EventSource::Other(other.to_string()),
            };
            events.push((name.clone(), source));
        }
    }
    Ok(FunctionSpec {
        logical_id: id.to_string(),
        binary,
        timeout_secs: scalar_u64(p.get("Timeout"))?.unwrap_or(3),
        environment,
        events,
    })
}

/// Resolves intrinsic functions against the local stack's names, URLs and ARNs.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    /// Parameter values.
    pub parameters: BTreeMap<String, String>,
    /// What `Ref: <logical id>` returns (table name, queue URL, ...).
    pub refs: BTreeMap<String, String>,
    /// What `Fn::GetAtt: [<logical id>, <attribute>]` returns.
    pub attributes: BTreeMap<(String, String), String>,
}

impl Resolver {
    /// Resolves a value to a string.
    pub fn resolve(&self, v: &Value) -> Result<String> {
        if let Some(s) = scalar_string(v) {
            return Ok(s);
        }
        let obj = v.as_object().ok_or_else(|| anyhow!("cannot resolve {v}"))?;
        if obj.len() != 1 {
            bail!("cannot resolve {v}");
        }
        if let Some(name) = obj.get("Ref") {
            let name = name
                .as_str()
                .ok_or_else(|| anyhow!("Ref takes a name, found {name}"))?;
            return self.reference(name);
        }
        if let Some(att) = obj.get("Fn::GetAtt") {
            let (res, attr) = match att {
                Value::Array(parts) => match parts.as_slice() {
                    [Value::String(r), Value::String(a)] => (r.clone(), a.clone()),
                    _ => bail!("Fn::GetAtt takes [Resource, Attribute], found {att}"),
                },
                Value::String(s) => {
                    let (r, a) = s
                        .split_once('.')
                        .ok_or_else(|| anyhow!("Fn::GetAtt {s} is not Resource.Attribute"))?;
                    (r.to_string(), a.to_string())
                }
                _ => bail!("Fn::GetAtt takes [Resource, Attribute], found {att}"),
            };
            return self.attribute(&res, &attr);
        }
        if let Some(sub) = obj.get("Fn::Sub") {
            return match sub {
                Value::String(s) => self.substitute(s, &BTreeMap::new()),
                Value::Array(parts) => match parts.as_slice() {
                    [Value::String(s), Value::Object(vars)] => {
                        let vars = vars
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), self.resolve(v)?)))
                            .collect::<Result<BTreeMap<_, _>>>()?;
                        self.substitute(s, &vars)
                    }
                    _ => bail!("Fn::Sub takes a string or [string, {{variables}}], found {sub}"),
                },
                _ => bail!("Fn::Sub takes a string or [string, {{variables}}], found {sub}"),
            };
        }
        if let Some(join) = obj.get("Fn::Join") {
            let (sep, items) = match join.as_array().map(Vec::as_slice) {
                Some([Value::String(sep), Value::Array(items)]) => (sep, items),
                _ => bail!("Fn::Join takes [separator, [values]], found {join}"),
            };
            let parts = items
                .iter()
                .map(|i| self.resolve(i))
                .collect::<Result<Vec<_>>>()?;
            return Ok(parts.join(sep));
        }
        bail!("intrinsic {v} is not supported by the local stack")
    }

    fn reference(&self, name: &str) -> Result<String> {
        let pseudo = match name {
            "AWS::Region" => Some(LOCAL_REGION),
            "AWS::AccountId" => Some(LOCAL_ACCOUNT),
            "AWS::Partition" => Some("aws"),
            "AWS::URLSuffix" => Some("amazonaws.com"),
            "AWS::StackName" => Some("fluxo-local"),
            _ => None,
        };
        if let Some(p) = pseudo {
            return Ok(p.to_string());
        }
        self.parameters
            .get(name)
            .or_else(|| self.refs.get(name))
            .cloned()
            .ok_or_else(|| anyhow!("Ref {name}: no parameter value or local resource of that name"))
    }

    fn attribute(&self, resource: &str, attribute: &str) -> Result<String> {
        self.attributes
            .get(&(resource.to_string(), attribute.to_string()))
            .cloned()
            .ok_or_else(|| {
                anyhow!("Fn::GetAtt {resource}.{attribute} is not known to the local stack")
            })
    }

    /// `Fn::Sub`: `${Name}`, `${Resource.Attr}`, `${!Literal}`.
    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("Fn::Sub {text:?}: unclosed ${{"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.get(name) {
                out.push_str(v);
            } else if let Some((res, attr)) = name.split_once('.') {
                out.push_str(&self.attribute(res, attr)?);
            } else {
                out.push_str(&self.reference(name)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Resolves a function's environment variables.
    pub fn environment(&self, vars: &BTreeMap<String, Value>) -> Result<BTreeMap<String, String>> {
        vars.iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    self.resolve(v)
                        .with_context(|| format!("environment variable {k}"))?,
                ))
            })
            .collect()
    }
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
        let t = template();
        let router = &t.resources["Router"].properties;
        assert_eq!(
            router["Environment"]["Variables"]["TABLE"],
            json!({"Ref": "Table"})
        );
        assert_eq!(
            router["Events"]["Leads"]["Properties"]["Queue"],
            json!({"Fn::GetAtt": ["MainQueue", "Arn"]})
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
        let err = resolver().resolve(&json!({"Ref": "Nope"})).unwrap_err();
        assert!(err.to_string().contains("Nope"));
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
}
