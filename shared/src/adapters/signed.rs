//! SigV4-signed HTTPS requests to AWS APIs that Fluxo calls only once in a while (S3 objects, Secrets
//! Manager), without linking a whole SDK crate for each: the signer is `aws-sigv4`, already linked by the
//! SDK runtime, and the HTTP client is `reqwest`, trusting only the AWS root CAs as the SDK clients do.
//!
//! Credentials, region and endpoint override (`AWS_ENDPOINT_URL`, moto locally) come from the shared
//! [`aws_config::SdkConfig`], exactly as the SDK clients get them.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;

use crate::error::{ErrorClass, Retryable};

static AWS_TLS: crate::connector::SharedTls = crate::connector::SharedTls::new();

/// AWS endpoints: only the AWS root CAs, as the SDK clients trust (see [`super::load_aws_config`]). No
/// system certificate store is read.
fn aws_tls() -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::connector::crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(aws_roots()?)
            .with_no_client_auth(),
    )
}

fn aws_roots() -> Result<rustls::RootCertStore, rustls::Error> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(super::AWS_ROOT_CAS.as_bytes()) {
        let cert = cert.map_err(|e| rustls::Error::General(format!("bundled AWS root CA: {e}")))?;
        roots.add(cert)?;
    }
    Ok(roots)
}

/// A request that could not be sent or signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// No credentials, no region, or the request could not be signed: the deployment must be fixed.
    #[error("cannot sign the request: {0}")]
    Setup(String),
    /// The service could not be reached (timeout, connection refused).
    #[error("service unreachable: {0}")]
    Transport(String),
}

impl Retryable for SignedError {
    fn class(&self) -> ErrorClass {
        match self {
            SignedError::Setup(_) => ErrorClass::Permanent,
            SignedError::Transport(_) => ErrorClass::Retryable,
        }
    }
}

/// A response read in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SignedReply {
    /// A header value, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy), for error messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How a service wants its requests signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// S3: `x-amz-content-sha256`, no double encoding, no path normalization.
    S3,
    /// Secrets Manager (JSON 1.1 protocol).
    SecretsManager,
}

impl Service {
    fn signing_name(self) -> &'static str {
        match self {
            Service::S3 => "s3",
            Service::SecretsManager => "secretsmanager",
        }
    }

    fn settings(self) -> SigningSettings {
        let mut s = SigningSettings::default();
        if self == Service::S3 {
            s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            s.percent_encoding_mode = PercentEncodingMode::Single;
            s.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        s
    }
}

/// Signs and sends requests with the credentials of an [`aws_config::SdkConfig`].
#[derive(Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    region: Option<String>,
    endpoint_override: Option<String>,
}

impl std::fmt::Debug for SignedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedClient")
            .field("region", &self.region)
            .field("endpoint_override", &self.endpoint_override)
            .finish_non_exhaustive()
    }
}

impl SignedClient {
    /// Takes credentials, region and endpoint override from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Result<Self, SignedError> {
        let tls = crate::connector::shared_tls(&AWS_TLS, aws_tls);
        let http = crate::connector::with_tls(reqwest::Client::builder(), tls)
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("fluxo/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SignedError::Setup(e.to_string()))?;
        Ok(SignedClient {
            http,
            credentials: config.credentials_provider(),
            region: config.region().map(|r| r.as_ref().to_string()),
            endpoint_override: config
                .endpoint_url()
                .map(|u| u.trim_end_matches('/').to_string()),
        })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> Result<&str, SignedError> {
        self.region
            .as_deref()
            .ok_or_else(|| SignedError::Setup("no AWS region is configured".into()))
    }

    /// The endpoint override (`AWS_ENDPOINT_URL`), when one is set.
    pub fn endpoint_override(&self) -> Option<&str> {
        self.endpoint_override.as_deref()
    }

    /// Signs and sends one request; `headers` are signed too.
    pub async fn send(
        &self,
        service: Service,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<SignedReply, SignedError> {
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| SignedError::Setup("no AWS credentials are configured".into()))?;
        let credentials = provider
            .provide_credentials()
            .await
            .map_err(|e| SignedError::Setup(format!("AWS credentials: {e}")))?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region()?)
            .name(service.signing_name())
            .time(SystemTime::now())
            .settings(service.settings())
            .build()
            .map_err(|e| SignedError::Setup(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| SignedError::Setup(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| SignedError::Setup(e.to_string()))?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| SignedError::Setup(e.to_string()))?;
        let mut request = self.http.request(method, url);
        for (k, v) in headers {
            request = request.header(*k, v.as_str());
        }
        for (k, v) in instructions.headers() {
            request = request.header(k, v);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SignedError::Transport(e.without_url().to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|e| SignedError::Transport(e.without_url().to_string()))?
            .to_vec();
        Ok(SignedReply {
            status,
            headers,
            body,
        })
    }
}

/// Percent-encodes one path segment or query value the way SigV4 expects (RFC 3986 unreserved kept).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes an object key, keeping its `/` separators.
pub fn encode_key(key: &str) -> String {
    key.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_endpoints_trust_only_the_five_bundled_aws_roots() {
        assert_eq!(aws_roots().expect("the bundled roots parse").len(), 5);
        let shared = crate::connector::shared_tls(&AWS_TLS, aws_tls).expect("built");
        assert_eq!(
            shared.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn keys_keep_their_slashes_and_escape_the_rest() {
        assert_eq!(encode_key("a b/c+d.toml"), "a%20b/c%2Bd.toml");
        assert_eq!(encode("x~y_z-1"), "x~y_z-1");
    }

    /// AWS's documented S3 example ("GET Object", Signature Version 4 examples in the S3 API reference):
    /// the signature our settings produce must be the documented one, or S3 would answer 403.
    #[test]
    fn the_s3_signing_settings_reproduce_the_documented_get_object_example() {
        let credentials = aws_credential_types::Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "example",
        );
        let identity = credentials.into();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600); // 20130524T000000Z
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(time)
            .settings(Service::S3.settings())
            .build()
            .unwrap()
            .into();
        let headers = [("range", "bytes=0-9")];
        let signable = SignableRequest::new(
            "GET",
            "https://examplebucket.s3.amazonaws.com/test.txt",
            headers.iter().copied(),
            SignableBody::Bytes(&[]),
        )
        .unwrap();
        let (_, signature) = sign(signable, &params).unwrap().into_parts();
        assert_eq!(
            signature,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
