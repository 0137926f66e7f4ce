//! The one AWS error classifier: every adapter (DynamoDB, SQS, SSM through their SDKs; S3 and Secrets
//! Manager through signed calls) sorts a failure into retryable or permanent here, the same way.
//!
//! Retryable: throttling and transient server codes, HTTP 5xx and 429, timeouts, unreachable services and
//! unreadable responses. Permanent: every other service error (validation, access denied, not found,
//! condition failures) and a request the SDK could not build (`ConstructionFailure`: retrying the same
//! input cannot help).

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::ErrorClass;

/// Error codes AWS services answer for throttling or transient trouble on their side.
const TRANSIENT_CODES: &[&str] = &[
    // DynamoDB
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionInProgressException",
    "InternalServerError",
    // SQS
    "RequestThrottled",
    "KmsThrottled",
    "InternalError",
    // SSM (also InternalServerError)
    "TooManyUpdates",
    // Secrets Manager
    "InternalServiceError",
    // S3
    "SlowDown",
    "RequestTimeout",
    // Every service
    "ThrottlingException",
    "Throttling",
    "ServiceUnavailable",
    "InternalFailure",
];

/// A failed AWS call, classified. `message` names the code and the service's message (never a value
/// from the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsFailure {
    pub class: ErrorClass,
    /// The service's error code, when it answered with one.
    pub code: Option<String>,
    pub message: String,
}

/// The class of a service's answer, from its error code and HTTP status (either may be unknown).
pub fn class_of(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    let transient_status = status.is_some_and(|s| s >= 500 || s == 429);
    let transient_code =
        code.is_some_and(|c| TRANSIENT_CODES.contains(&c) || c.contains("Throttl"));
    if transient_status || transient_code {
        ErrorClass::Retryable
    } else {
        ErrorClass::Permanent
    }
}

/// Classifies an SDK error (any AWS SDK crate).
pub fn classify<E>(err: &SdkError<E, Response>) -> AwsFailure
where
    E: ProvideErrorMetadata,
{
    let (class, message) = match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown");
            let status = service.raw().status().as_u16();
            return AwsFailure {
                class: class_of(Some(code), Some(status)),
                code: Some(code.to_string()),
                message: format!("{code}: {}", inner.message().unwrap_or("")),
            };
        }
        SdkError::TimeoutError(_) => (ErrorClass::Retryable, "timed out"),
        SdkError::DispatchFailure(_) => (ErrorClass::Retryable, "could not reach the service"),
        SdkError::ResponseError(_) => (ErrorClass::Retryable, "unreadable response"),
        SdkError::ConstructionFailure(_) => (ErrorClass::Permanent, "request could not be built"),
        _ => (ErrorClass::Permanent, "unknown SDK error"),
    };
    AwsFailure {
        class,
        code: None,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service_error(code: &str, status: u16) -> SdkError<ErrorMetadata, Response> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        SdkError::service_error(meta, raw)
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_whatever_the_service() {
        for code in [
            "ProvisionedThroughputExceededException",
            "RequestThrottled",
            "ThrottlingException",
            "KmsThrottled",
            "SomeNewThrottlingCode",
        ] {
            assert_eq!(
                classify(&service_error(code, 400)).class,
                ErrorClass::Retryable,
                "{code}"
            );
        }
        assert_eq!(
            classify(&service_error("Whatever", 503)).class,
            ErrorClass::Retryable
        );
        assert_eq!(class_of(Some("SlowDown"), Some(503)), ErrorClass::Retryable);
        assert_eq!(class_of(None, Some(429)), ErrorClass::Retryable);
    }

    #[test]
    fn client_errors_are_permanent_and_named() {
        let failure = classify(&service_error("ValidationException", 400));
        assert_eq!(failure.class, ErrorClass::Permanent);
        assert_eq!(failure.code.as_deref(), Some("ValidationException"));
        assert_eq!(failure.message, "ValidationException: m");
        assert_eq!(
            class_of(Some("AccessDeniedException"), Some(400)),
            ErrorClass::Permanent
        );
    }

    #[test]
    fn a_request_that_could_not_be_built_is_permanent_and_transport_trouble_is_retryable() {
        let built: SdkError<ErrorMetadata, Response> =
            SdkError::construction_failure("missing field");
        assert_eq!(classify(&built).class, ErrorClass::Permanent);
        let timeout: SdkError<ErrorMetadata, Response> = SdkError::timeout_error("slow");
        assert_eq!(classify(&timeout).class, ErrorClass::Retryable);
    }
}
