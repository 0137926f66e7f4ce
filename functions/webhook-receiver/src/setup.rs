//! Cold start: the receiver's settings from the environment, every client (AWS SDK config, secrets,
//! DynamoDB, SQS: the leads queue and the email queue), and the receiver built from them.

use fluxo::adapters::dynamodb::{DynamoEventStore, DynamoIntakeStore};
use fluxo::adapters::sources::DynamoSources;
use fluxo::adapters::sqs::SqsQueue;
use fluxo::config::live::{LiveConfig, StartError};
use fluxo::config::source::SourceError;
use fluxo::ports::{SystemClock, ThreadRandomness};
use fluxo::secrets::SecretStore;
use fluxo::settings::{self, Env, SettingError, Source};

use crate::cors::{AllowedOrigins, RedirectTarget};
use crate::events::EventPorts;
use crate::intake::Receiver;
use crate::sources::{Sources, SourcesError};

/// The receiver as deployed: DynamoDB intake records and source records, the SQS leads queue, the
/// e-commerce events' records and the SQS email queue, the wall clock.
pub type LiveReceiver = Receiver<
    DynamoIntakeStore,
    SqsQueue,
    SystemClock,
    ThreadRandomness,
    DynamoSources,
    EventPorts<DynamoEventStore, SqsQueue>,
>;

/// Everything built at cold start: the receiver, the secret store, and the sources of the current
/// config version (re-read from the config bucket at most once a minute).
pub struct Live {
    pub receiver: LiveReceiver,
    pub secrets: SecretStore,
    pub sources: LiveConfig<Sources>,
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ColdStart(#[from] fluxo::lambda::ColdStartError),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Fingerprint(#[from] fluxo::domain::fingerprint::FingerprintSetupError),
    #[error(transparent)]
    Config(#[from] SourceError),
    #[error(transparent)]
    Sources(#[from] StartError<SourcesError>),
}

/// Everything a cold start does: settings, the AWS clients, the fingerprint key, the config (its
/// `[[sources]]`, secrets resolved) and the receiver. A bad setting, config or secret fails here, by name.
pub async fn start() -> Result<Live, SetupError> {
    let (cold, config) = fluxo::lambda::Start::new("webhook-receiver")
        .with_fingerprint()
        .with_analytics()
        .run(Settings::from_env)
        .await?;
    let fluxo::lambda::ColdStart {
        settings,
        sdk_config: aws,
        secrets,
    } = cold;
    let sources = LiveConfig::start(config, "webhook-receiver", |loaded| {
        crate::sources::build_owned(&secrets, loaded)
    })
    .await?;
    let store = DynamoIntakeStore::from_sdk_config(&aws, &settings.leads_table);
    let source_store = DynamoSources::from_sdk_config(&aws, &settings.leads_table);
    let queue = SqsQueue::from_sdk_config(&aws, &settings.leads_queue_url);
    let email_queue_url = settings
        .email_queue_url
        .clone()
        .ok_or(SettingError::Missing {
            name: "EMAIL_QUEUE_URL",
        })?;
    let events = DynamoEventStore::from_sdk_config(&aws, &settings.leads_table);
    let email_queue = SqsQueue::from_sdk_config(&aws, email_queue_url);
    let receiver = Receiver::new(settings, store, queue, SystemClock, ThreadRandomness)
        .with_source_store(source_store)
        .with_events(events, email_queue);
    Ok(Live {
        receiver,
        secrets,
        sources,
    })
}

/// The largest `MAX_BODY_BYTES` accepted. A stored lead keeps the raw body beside its normalized
/// envelope in one DynamoDB item (at most 400 KB) and the envelope travels as one SQS message (at most
/// 256 KiB): a larger body could never be stored.
pub const MAX_BODY_BYTES_LIMIT: usize = 128 * 1024;

/// Everything the receiver needs to know, validated at cold start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LEADS_TABLE`: the DynamoDB table for intake records.
    pub leads_table: String,
    /// `LEADS_QUEUE_URL`: the SQS leads queue.
    pub leads_queue_url: String,
    /// `EMAIL_QUEUE_URL`: the SQS email queue `POST /events` sends e-commerce events to. Required by the
    /// deployed function ([`start`] fails without it); optional here so that lead-only set-ups (unit
    /// tests) can build settings without it.
    pub email_queue_url: Option<String>,
    /// `MAX_BODY_BYTES`: larger bodies get 413. Default 64 KiB, at most [`MAX_BODY_BYTES_LIMIT`].
    pub max_body_bytes: usize,
    /// `HONEYPOT_FIELD`: the field bots fill in. Default `_gotcha`.
    pub honeypot_field: String,
    /// `ALLOWED_ORIGINS`: comma-separated origins (`https://site.com`), or `*`. Empty: no CORS.
    pub allowed_origins: AllowedOrigins,
    /// `THANK_YOU_URL`: where plain HTML forms are sent after a submission, if they name no `_redirect`.
    pub thank_you_url: Option<RedirectTarget>,
    /// `DEFAULT_COUNTRY`: ISO 3166 alpha-2 code for national phone numbers (e.g. `BR`).
    pub default_country: Option<rlibphonenumber::Region>,
    /// `DEDUP_WINDOW_SECS`: submissions without an `Idempotency-Key` that carry the same content within
    /// this many seconds of the first one are one request. Default 600; 0 turns de-duplication off.
    pub dedup_window_secs: u64,
    /// `RAW_RETENTION_DAYS`: how long raw requests are kept (DynamoDB TTL). Default 90.
    pub raw_retention_days: u32,
    /// `ENQUEUE_CLAIM_SECS`: how long one request holds the right to queue a stored lead. Default 30.
    pub enqueue_claim_secs: u32,
    /// `UNQUEUED_ALERT_SECS`: a stored lead still not queued this long after it was received is counted
    /// in the `LeadsUnqueued` metric, which the template alarms on. Default 300.
    pub unqueued_alert_secs: u32,
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_source(&Env)
    }

    /// Reads and validates every setting; the error names the first bad one.
    pub fn from_source(src: &impl Source) -> Result<Self, SettingError> {
        let default_country = settings::optional(src, "DEFAULT_COUNTRY")?
            .map(|code| {
                code.to_uppercase()
                    .parse::<rlibphonenumber::Region>()
                    .map_err(|_| SettingError::Invalid {
                        name: "DEFAULT_COUNTRY",
                        problem: "must be an ISO 3166 alpha-2 country code such as BR or US".into(),
                    })
            })
            .transpose()?;
        let allowed_origins = AllowedOrigins::parse(&settings::list(src, "ALLOWED_ORIGINS")?)
            .map_err(|problem| SettingError::Invalid {
                name: "ALLOWED_ORIGINS",
                problem,
            })?;
        let thank_you_url = settings::optional(src, "THANK_YOU_URL")?
            .map(|url| {
                RedirectTarget::parse(&url).ok_or_else(|| SettingError::Invalid {
                    name: "THANK_YOU_URL",
                    problem: "must be an absolute http or https URL".into(),
                })
            })
            .transpose()?;
        let max_body_bytes = settings::parsed(src, "MAX_BODY_BYTES", 64 * 1024)?;
        if max_body_bytes == 0 || max_body_bytes > MAX_BODY_BYTES_LIMIT {
            return Err(SettingError::Invalid {
                name: "MAX_BODY_BYTES",
                problem: format!(
                    "must be between 1 and {MAX_BODY_BYTES_LIMIT}: a larger body cannot be stored in one DynamoDB item and queued as one SQS message"
                ),
            });
        }
        Ok(Settings {
            leads_table: settings::required(src, "LEADS_TABLE")?,
            leads_queue_url: settings::required(src, "LEADS_QUEUE_URL")?,
            email_queue_url: settings::optional(src, "EMAIL_QUEUE_URL")?,
            max_body_bytes,
            honeypot_field: fluxo::domain::intake::normalize_key(
                &settings::optional(src, "HONEYPOT_FIELD")?.unwrap_or_else(|| "_gotcha".into()),
            ),
            allowed_origins,
            thank_you_url,
            default_country,
            dedup_window_secs: settings::parsed(src, "DEDUP_WINDOW_SECS", 600)?,
            raw_retention_days: settings::parsed(src, "RAW_RETENTION_DAYS", 90)?,
            enqueue_claim_secs: settings::parsed(src, "ENQUEUE_CLAIM_SECS", 30)?,
            unqueued_alert_secs: settings::parsed(src, "UNQUEUED_ALERT_SECS", 300)?,
        })
    }

    /// The intake options derived from these settings.
    pub fn intake_settings(&self) -> fluxo::domain::intake::IntakeSettings {
        fluxo::domain::intake::IntakeSettings {
            default_country: self.default_country,
            honeypot_field: self.honeypot_field.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_documented_values() {
        let c = Settings::from_source(&[("LEADS_TABLE", "t"), ("LEADS_QUEUE_URL", "q")]).unwrap();
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.honeypot_field, "_gotcha");
        assert_eq!(c.dedup_window_secs, 600);
        assert!(c.default_country.is_none());
    }

    #[test]
    fn a_bad_country_code_names_the_setting() {
        let err = Settings::from_source(&[
            ("LEADS_TABLE", "t"),
            ("LEADS_QUEUE_URL", "q"),
            ("DEFAULT_COUNTRY", "Brasil"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("DEFAULT_COUNTRY"), "{err}");
    }

    #[test]
    fn the_table_is_required() {
        let err = Settings::from_source(&[("LEADS_QUEUE_URL", "q")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting LEADS_TABLE is required but not set"
        );
    }

    #[test]
    fn a_relative_thank_you_url_is_refused() {
        let err = Settings::from_source(&[
            ("LEADS_TABLE", "t"),
            ("LEADS_QUEUE_URL", "q"),
            ("THANK_YOU_URL", "/obrigado"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("THANK_YOU_URL"), "{err}");
    }

    #[test]
    fn a_max_body_size_that_could_never_be_stored_is_refused() {
        for too_big in ["131073", "6291456"] {
            let err = Settings::from_source(&[
                ("LEADS_TABLE", "t"),
                ("LEADS_QUEUE_URL", "q"),
                ("MAX_BODY_BYTES", too_big),
            ])
            .unwrap_err();
            assert!(err.to_string().contains("MAX_BODY_BYTES"), "{err}");
        }
        let at_limit = Settings::from_source(&[
            ("LEADS_TABLE", "t"),
            ("LEADS_QUEUE_URL", "q"),
            ("MAX_BODY_BYTES", "131072"),
        ])
        .unwrap();
        assert_eq!(at_limit.max_body_bytes, MAX_BODY_BYTES_LIMIT);
    }
}
