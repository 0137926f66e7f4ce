//! AWS adapters. Only this module tree knows SDK types.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(all(feature = "dynamodb", feature = "sqs"))]
pub mod email;
pub mod errors;
#[cfg(feature = "dynamodb")]
pub mod journal;
#[cfg(feature = "dynamodb")]
pub(crate) mod ledger;
#[cfg(feature = "dynamodb")]
pub mod memberships;
#[cfg(feature = "dynamodb")]
pub mod profiles;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(feature = "sigv4")]
pub mod signed;
#[cfg(feature = "dynamodb")]
pub mod sources;
#[cfg(feature = "sqs")]
pub mod sqs;
#[cfg(feature = "ssm")]
pub mod ssm;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

/// The root CAs behind every AWS service endpoint's certificate (Amazon Trust Services: Amazon Root CA
/// 1-4 and Starfield Services Root G2), as PEM.
const AWS_ROOT_CAS: &str = include_str!("aws_roots.pem");

/// Loads the AWS config once at cold start. `AWS_ENDPOINT_URL` (moto locally) is honoured by the SDK.
///
/// The HTTPS client trusts only the AWS root CAs. Reading and parsing the whole system certificate
/// store instead costs several milliseconds of every cold start, and AWS endpoints never need it.
pub async fn load_aws_config() -> aws_config::SdkConfig {
    with_aws_roots(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .load()
        .await
}

fn with_aws_roots(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AWS_ROOT_CAS.as_bytes());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .unwrap_or_else(|error| {
            tracing::warn!(%error, "the AWS-roots TLS set-up could not be built; trusting the system's roots");
            TlsContext::default()
        });
    loader.http_client(
        aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(context)
            .build_https(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_roots_are_the_five_amazon_trust_services_cas() {
        assert_eq!(
            AWS_ROOT_CAS.matches("-----BEGIN CERTIFICATE-----").count(),
            5
        );
        assert_eq!(AWS_ROOT_CAS.matches("-----END CERTIFICATE-----").count(), 5);
    }

    #[tokio::test]
    async fn the_aws_config_loads_with_the_aws_roots_client() {
        let config = load_aws_config().await;
        assert!(config.http_client().is_some());
    }
}
