//! Ad-platform audiences (Meta custom audiences, Google Ads Customer Match): the port audience-sync
//! uses, the people and destinations it sends, and the configured connector behind it.
//!
//! Same shape as `crm/`: per vendor a `config.rs` (typed, secrets by reference), a `request.rs` (pure
//! request builders and response parsers) and a `client.rs` (HTTP through [`crate::connector`]).
//! [`normalize`] holds each platform's normalization and hashing rules; [`ports`] the membership
//! ledger's port.

pub mod google;
pub mod meta;
pub mod normalize;
pub mod ports;

#[cfg(feature = "http-client")]
mod connector;
#[cfg(feature = "http-client")]
pub use connector::{AudienceSecrets, AudienceSetupError, Audiences};

use std::fmt;
#[cfg(feature = "http-client")]
use std::future::Future;

use serde::{Deserialize, Serialize};

pub use crate::crm::RecordedRequest;

/// Whether a platform audience is changed or only shown what would be sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Send the changes.
    Apply,
    /// Record the exact requests (Google's with `validateOnly`), send nothing.
    #[default]
    DryRun,
}

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Add,
    Remove,
}

impl Op {
    /// `add` or `remove`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Remove => "remove",
        }
    }
}

/// What the person agreed to, as the configured consent reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Granted,
    Denied,
    /// Never answered.
    Unspecified,
}

impl ConsentStatus {
    /// Google's `ConsentStatus` enum value.
    pub fn google(&self) -> &'static str {
        match self {
            ConsentStatus::Granted => "GRANTED",
            ConsentStatus::Denied => "DENIED",
            ConsentStatus::Unspecified => "UNSPECIFIED",
        }
    }
}

/// One person to add or remove: raw identifiers, normalized and hashed per platform when a request is
/// built. `Debug` prints only the consent: no identifier, raw or hashed.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    /// The profile's key (SHA-256 of the email): the ledger key, never sent.
    pub profile_key: String,
    pub email: String,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
    pub consent: ConsentStatus,
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person")
            .field("consent", &self.consent)
            .finish_non_exhaustive()
    }
}

/// One audience on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "snake_case")]
pub enum PlatformAudience {
    /// A Meta custom audience.
    Meta { audience_id: String },
    /// A Google Ads Customer Match user list.
    Google {
        customer_id: String,
        user_list_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        login_customer_id: Option<String>,
    },
}

impl PlatformAudience {
    /// A stable key: `meta:<audience id>` or `google:<customer id>:<user list id>`.
    pub fn key(&self) -> String {
        match self {
            PlatformAudience::Meta { audience_id } => format!("meta:{audience_id}"),
            PlatformAudience::Google {
                customer_id,
                user_list_id,
                ..
            } => format!("google:{customer_id}:{user_list_id}"),
        }
    }

    /// `meta` or `google`.
    pub fn platform(&self) -> &'static str {
        match self {
            PlatformAudience::Meta { .. } => "meta",
            PlatformAudience::Google { .. } => "google",
        }
    }
}

/// A platform audience and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub audience: PlatformAudience,
    pub mode: Mode,
}

/// What one sync of one destination did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upload {
    /// People the platform refused, by their index in the input, with its reason (permanent).
    pub failed: Vec<(usize, String)>,
    /// People with no identifier the platform can match (left out of the request), by index.
    pub unmatchable: Vec<usize>,
    /// People not done because a later request of the upload failed, with that (retryable) failure;
    /// the people before them are done.
    pub unfinished: Vec<usize>,
    pub unfinished_reason: Option<String>,
    /// The requests as sent (credentials redacted) in dry-run; empty otherwise.
    pub requests: Vec<RecordedRequest>,
    /// HTTP calls made (0 in dry-run).
    pub calls: u32,
    /// Google: the offline user data job's resource name.
    pub job: Option<String>,
    /// Meta: `num_received` summed over the requests.
    pub received: u64,
    /// Meta: `num_invalid_entries` summed over the requests.
    pub invalid: u64,
}

/// The state of a Google offline user data job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Still pending or running.
    Running,
    Succeeded,
    /// Failed, with Google's failure reason.
    Failed(String),
}

/// Sends membership changes to the platforms.
#[cfg(feature = "http-client")]
pub trait AudienceConnector: Send + Sync {
    /// Adds or removes `people` on one destination, in as few requests as the platform allows. In
    /// dry-run, records the requests instead. No call starts past `deadline`.
    fn sync(
        &self,
        destination: &Destination,
        op: Op,
        people: &[Person],
        deadline: crate::connector::Deadline,
    ) -> impl Future<Output = Result<Upload, crate::connector::ConnectorError>> + Send;

    /// The status of a Google job created by an earlier sync.
    fn job_status(
        &self,
        audience: &PlatformAudience,
        job: &str,
        deadline: crate::connector::Deadline,
    ) -> impl Future<Output = Result<JobStatus, crate::connector::ConnectorError>> + Send;
}
