//! The SAM subset the local stack reads, as serde types: parameters, `Globals.Function`, and the
//! resources it creates or runs (DynamoDB tables, SQS queues, S3 buckets, functions and their events).
//!
//! Every other resource type (alarms, log groups, APIs, Glue, ...) and every property not listed here is
//! read as [`Resource::Unmodeled`] or ignored: the template may grow without xtask knowing each addition.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

use super::intrinsic::{Expr, scalar_text};

/// The template file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Document {
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterDef>,
    #[serde(default)]
    pub globals: Globals,
    pub resources: BTreeMap<String, Resource>,
}

/// A template parameter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParameterDef {
    #[serde(default)]
    pub default: Option<Scalar>,
    #[serde(default)]
    pub description: Option<String>,
}

/// `Globals`: only `Function` matters locally.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Globals {
    #[serde(default)]
    pub function: FunctionGlobals,
}

/// `Globals.Function`: what a function inherits unless it sets it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionGlobals {
    #[serde(default)]
    pub timeout: Option<Count>,
    #[serde(default)]
    pub code_uri: Option<CodeUri>,
    #[serde(default)]
    pub environment: Option<Environment>,
}

/// A resource, by its `Type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawResource")]
pub enum Resource {
    Table(TableProps),
    Queue(Box<QueueProps>),
    Bucket(BucketProps),
    Function(Box<FunctionDef>),
    /// A type the local stack does not create (its `Type`).
    Unmodeled(String),
}

/// A resource as written: its type and the parts the typed variants read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawResource {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
    #[serde(default)]
    metadata: Value,
}

/// Reads `value` as `T`, naming the path of what is wrong (`RedrivePolicy.maxReceiveCount: ...`).
fn typed<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, String> {
    let value = if value.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        value
    };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("{what}: {}", e.inner())
        } else {
            format!("{what}.{path}: {}", e.inner())
        }
    })
}

impl TryFrom<RawResource> for Resource {
    type Error = String;

    fn try_from(r: RawResource) -> Result<Resource, String> {
        Ok(match r.kind.as_str() {
            "AWS::DynamoDB::Table" => Resource::Table(typed("Properties", r.properties)?),
            "AWS::SQS::Queue" => Resource::Queue(Box::new(typed("Properties", r.properties)?)),
            "AWS::S3::Bucket" => Resource::Bucket(typed("Properties", r.properties)?),
            "AWS::Serverless::Function" => Resource::Function(Box::new(FunctionDef {
                properties: typed("Properties", r.properties)?,
                metadata: typed("Metadata", r.metadata)?,
            })),
            _ => Resource::Unmodeled(r.kind),
        })
    }
}

/// A string, number or boolean, as text (`Default: 65536` and `Default: "65536"` read alike).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Scalar(pub String);

impl TryFrom<Value> for Scalar {
    type Error = String;

    fn try_from(v: Value) -> Result<Scalar, String> {
        scalar_text(&v)
            .map(Scalar)
            .ok_or_else(|| format!("expected a string, number or boolean, found {v}"))
    }
}

/// A whole number, written as a number or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Count(pub u64);

impl TryFrom<Value> for Count {
    type Error = String;

    fn try_from(v: Value) -> Result<Count, String> {
        scalar_text(&v)
            .and_then(|s| s.parse().ok())
            .map(Count)
            .ok_or_else(|| format!("expected a number, found {v}"))
    }
}

/// A boolean, written as `true` or `"true"` (any case); any other string is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub struct Flag(pub bool);

impl TryFrom<Value> for Flag {
    type Error = String;

    fn try_from(v: Value) -> Result<Flag, String> {
        match v {
            Value::Bool(b) => Ok(Flag(b)),
            Value::String(s) => Ok(Flag(s.eq_ignore_ascii_case("true"))),
            other => Err(format!("expected true or false, found {other}")),
        }
    }
}

// ------------------------------------------------------------------------------------------ DynamoDB

/// `AWS::DynamoDB::Table` properties.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableProps {
    #[serde(default)]
    pub table_name: Option<Expr>,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    #[serde(default)]
    pub local_secondary_indexes: Vec<IndexDef>,
    #[serde(default)]
    pub billing_mode: Option<String>,
    #[serde(default)]
    pub time_to_live_specification: Option<TimeToLive>,
}

/// `AttributeDefinitions` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    pub attribute_name: String,
    pub attribute_type: String,
}

/// `KeySchema` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyElement {
    pub attribute_name: String,
    pub key_type: String,
}

/// A global or local secondary index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyElement>,
    #[serde(default)]
    pub projection: Projection,
}

/// An index's `Projection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Projection {
    #[serde(default)]
    pub projection_type: Option<String>,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

/// `TimeToLiveSpecification`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLive {
    #[serde(default)]
    pub attribute_name: Option<String>,
    #[serde(default)]
    pub enabled: Option<Flag>,
}

// ----------------------------------------------------------------------------------------------- SQS

/// `AWS::SQS::Queue` properties. The attributes are kept as written: only literal values have a local
/// meaning.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueProps {
    #[serde(default)]
    pub queue_name: Option<Expr>,
    #[serde(default)]
    pub visibility_timeout: Option<Expr>,
    #[serde(default)]
    pub message_retention_period: Option<Expr>,
    #[serde(default)]
    pub delay_seconds: Option<Expr>,
    #[serde(default)]
    pub maximum_message_size: Option<Expr>,
    #[serde(default)]
    pub receive_message_wait_time_seconds: Option<Expr>,
    #[serde(default)]
    pub fifo_queue: Option<Expr>,
    #[serde(default)]
    pub content_based_deduplication: Option<Expr>,
    #[serde(default)]
    pub redrive_policy: Option<RedrivePolicy>,
    /// JSON text or an object.
    #[serde(default)]
    pub redrive_allow_policy: Option<Value>,
}

/// A queue's `RedrivePolicy`.
#[derive(Debug, Clone, Deserialize)]
pub struct RedrivePolicy {
    #[serde(rename = "deadLetterTargetArn")]
    pub dead_letter_target_arn: Expr,
    #[serde(rename = "maxReceiveCount")]
    pub max_receive_count: Count,
}

// ------------------------------------------------------------------------------------------------ S3

/// `AWS::S3::Bucket` properties.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BucketProps {
    #[serde(default)]
    pub bucket_name: Option<Expr>,
}

// ----------------------------------------------------------------------------------------- functions

/// `AWS::Serverless::Function`: properties and metadata.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    pub properties: FunctionProps,
    pub metadata: FunctionMetadata,
}

/// `AWS::Serverless::Function` properties.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionProps {
    #[serde(default)]
    pub code_uri: Option<CodeUri>,
    #[serde(default)]
    pub timeout: Option<Count>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub events: BTreeMap<String, Event>,
}

/// `CodeUri`: a local folder (the only form that names a cargo package) or an S3 location.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CodeUri {
    Path(String),
    Location(IgnoredAny),
}

/// `Environment`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    #[serde(default)]
    pub variables: BTreeMap<String, Expr>,
}

/// A function's `Metadata`: cargo-lambda's build properties.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionMetadata {
    #[serde(default)]
    pub build_properties: Option<BuildProperties>,
}

/// `Metadata.BuildProperties`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildProperties {
    #[serde(default)]
    pub binary: Option<String>,
}

/// One entry of a function's `Events`, by its `Type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawEvent")]
pub enum Event {
    Sqs(SqsEvent),
    /// `Schedule` (EventBridge rule) or `ScheduleV2` (EventBridge Scheduler).
    Schedule(ScheduleEvent),
    /// `HttpApi` or `Api`.
    Http(HttpEvent),
    /// Any other event type (its `Type`).
    Unmodeled(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawEvent {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(default)]
    properties: Value,
}

impl TryFrom<RawEvent> for Event {
    type Error = String;

    fn try_from(e: RawEvent) -> Result<Event, String> {
        Ok(match e.kind.as_str() {
            "SQS" => Event::Sqs(typed("Properties", e.properties)?),
            "Schedule" | "ScheduleV2" => Event::Schedule(typed("Properties", e.properties)?),
            "HttpApi" | "Api" => Event::Http(typed("Properties", e.properties)?),
            _ => Event::Unmodeled(e.kind),
        })
    }
}

/// An `SQS` event source (an event-source mapping).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SqsEvent {
    pub queue: Expr,
    /// A number, or a `Ref` to a parameter (its default is used locally).
    #[serde(default)]
    pub batch_size: Option<Expr>,
    /// A number, or a `Ref` to a parameter.
    #[serde(default)]
    pub maximum_batching_window_in_seconds: Option<Expr>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    #[serde(default)]
    pub enabled: Option<Flag>,
}

/// A `Schedule` (`Schedule`, `Enabled` or `State`) or `ScheduleV2` (`ScheduleExpression`, `State`) event.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduleEvent {
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub schedule_expression: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub enabled: Option<Flag>,
}

/// An `HttpApi` or `Api` route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpEvent {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
}
