//! S3 objects through SigV4-signed REST calls: the deployed config is one small object, read at cold start
//! and re-read with a conditional GET (`If-None-Match`), which costs one request and no body when unchanged.
//! The analytics lake writes its Parquet files with [`S3Objects::put_object`] and lists partitions with
//! [`S3Objects::list`] (ListObjectsV2).

use super::signed::{Service, SignedClient, SignedError, SignedReply, encode, encode_key};
use crate::error::{ErrorClass, Retryable};

/// An S3 call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum S3Error {
    /// S3 refused the request (access denied, no such bucket, bad request): the deployment must be fixed.
    #[error("S3 refused {operation} s3://{bucket}/{key}: HTTP {status} {code}")]
    Rejected {
        operation: &'static str,
        bucket: String,
        key: String,
        status: u16,
        code: String,
    },
    /// S3 could not be reached or answered 5xx.
    #[error("S3 unavailable for {operation} s3://{bucket}/{key}: {problem}")]
    Unavailable {
        operation: &'static str,
        bucket: String,
        key: String,
        problem: String,
    },
    #[error(transparent)]
    Signing(SignedError),
}

impl Retryable for S3Error {
    fn class(&self) -> ErrorClass {
        match self {
            S3Error::Unavailable { .. } => ErrorClass::Retryable,
            S3Error::Rejected { .. } => ErrorClass::Permanent,
            S3Error::Signing(e) => e.class(),
        }
    }
}

/// The answer to a (conditional) GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object, its ETag and its version id (when the bucket is versioned).
    Object {
        body: Vec<u8>,
        etag: String,
        version_id: Option<String>,
    },
    /// `304 Not Modified`: the ETag given is still current.
    NotModified,
    /// No such key in the bucket.
    Missing,
}

/// What a PUT stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub etag: String,
    pub version_id: Option<String>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: String,
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct ListPage {
    objects: Vec<Listed>,
    /// The continuation token, when the listing is truncated.
    next: Option<String>,
}

/// The text of the first `<tag>...</tag>` in `xml`, XML entities decoded.
fn element<'a>(xml: &'a str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let (_, rest) = xml.split_once(open.as_str())?;
    let (text, _): (&'a str, _) = rest.split_once(close.as_str())?;
    Some(
        text.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Reads a ListObjectsV2 XML answer.
fn parse_list(xml: &str) -> ListPage {
    let objects = xml
        .split("<Contents>")
        .skip(1)
        .filter_map(|chunk| {
            let chunk = chunk.split("</Contents>").next().unwrap_or_default();
            Some(Listed {
                key: element(chunk, "Key")?,
                size: element(chunk, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                etag: element(chunk, "ETag").unwrap_or_default(),
            })
        })
        .collect();
    let truncated = element(xml, "IsTruncated").is_some_and(|t| t == "true");
    ListPage {
        objects,
        next: if truncated {
            element(xml, "NextContinuationToken")
        } else {
            None
        },
    }
}

/// S3 object calls.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: SignedClient,
}

/// The XML `<Code>` of an S3 error body, if any.
fn error_code(reply: &SignedReply) -> String {
    let text = reply.text();
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_string())
        .unwrap_or_default()
}

impl S3Objects {
    /// Builds the client from the shared AWS config.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Result<Self, S3Error> {
        Ok(S3Objects {
            client: SignedClient::from_sdk_config(config).map_err(S3Error::Signing)?,
        })
    }

    /// The URL of a bucket, or of a key in it: path style on an endpoint override (moto), virtual-hosted
    /// style on AWS.
    fn url(&self, bucket: &str, key: Option<&str>) -> Result<String, S3Error> {
        let path = key.map(encode_key).unwrap_or_default();
        match self.client.endpoint_override() {
            Some(endpoint) => Ok(format!("{endpoint}/{}/{path}", encode(bucket))),
            None => {
                let region = self.client.region().map_err(S3Error::Signing)?;
                Ok(format!("https://{bucket}.s3.{region}.amazonaws.com/{path}"))
            }
        }
    }

    fn rejected(operation: &'static str, bucket: &str, key: &str, reply: &SignedReply) -> S3Error {
        let code = error_code(reply);
        if super::errors::class_of(Some(&code), Some(reply.status)) == ErrorClass::Retryable {
            return S3Error::Unavailable {
                operation,
                bucket: bucket.into(),
                key: key.into(),
                problem: format!("HTTP {} {code}", reply.status),
            };
        }
        S3Error::Rejected {
            operation,
            bucket: bucket.into(),
            key: key.into(),
            status: reply.status,
            code,
        }
    }

    fn transport(operation: &'static str, bucket: &str, key: &str, e: SignedError) -> S3Error {
        match e {
            SignedError::Transport(problem) => S3Error::Unavailable {
                operation,
                bucket: bucket.into(),
                key: key.into(),
                problem,
            },
            other => S3Error::Signing(other),
        }
    }

    /// GETs an object; with `if_none_match`, answers [`Fetched::NotModified`] when that ETag is current.
    pub async fn get(
        &self,
        bucket: &str,
        key: &str,
        if_none_match: Option<&str>,
    ) -> Result<Fetched, S3Error> {
        let url = self.url(bucket, Some(key))?;
        let headers: Vec<(&str, String)> = if_none_match
            .map(|etag| vec![("if-none-match", etag.to_string())])
            .unwrap_or_default();
        let reply = self
            .client
            .send(Service::S3, "GET", &url, &headers, Vec::new())
            .await
            .map_err(|e| Self::transport("GetObject", bucket, key, e))?;
        match reply.status {
            200 => Ok(Fetched::Object {
                etag: reply.header("etag").unwrap_or_default().to_string(),
                version_id: reply.header("x-amz-version-id").map(str::to_string),
                body: reply.body,
            }),
            304 => Ok(Fetched::NotModified),
            404 if error_code(&reply) != "NoSuchBucket" => Ok(Fetched::Missing),
            _ => Err(Self::rejected("GetObject", bucket, key, &reply)),
        }
    }

    /// PUTs a TOML object and answers its ETag and version id.
    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<Stored, S3Error> {
        self.put_object(bucket, key, body, "application/toml").await
    }

    /// PUTs an object of any content type (a PUT to an existing key replaces it).
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<Stored, S3Error> {
        let url = self.url(bucket, Some(key))?;
        let headers = [("content-type", content_type.to_string())];
        let reply = self
            .client
            .send(Service::S3, "PUT", &url, &headers, body)
            .await
            .map_err(|e| Self::transport("PutObject", bucket, key, e))?;
        if reply.status != 200 {
            return Err(Self::rejected("PutObject", bucket, key, &reply));
        }
        Ok(Stored {
            etag: reply.header("etag").unwrap_or_default().to_string(),
            version_id: reply.header("x-amz-version-id").map(str::to_string),
        })
    }

    /// Lists every object under `prefix` (ListObjectsV2, following continuation tokens), from the first
    /// key after `start_after` when given.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Listed>, S3Error> {
        let base = self.url(bucket, None)?;
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // SigV4 wants the query parameters sorted by name.
            let mut url = format!("{base}?");
            if let Some(t) = &token {
                url.push_str(&format!("continuation-token={}&", encode(t)));
            }
            url.push_str(&format!("list-type=2&prefix={}", encode(prefix)));
            if let Some(after) = start_after.filter(|_| token.is_none()) {
                url.push_str(&format!("&start-after={}", encode(after)));
            }
            let reply = self
                .client
                .send(Service::S3, "GET", &url, &[], Vec::new())
                .await
                .map_err(|e| Self::transport("ListObjectsV2", bucket, prefix, e))?;
            if reply.status != 200 {
                return Err(Self::rejected("ListObjectsV2", bucket, prefix, &reply));
            }
            let page = parse_list(&reply.text());
            all.extend(page.objects);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_page_gives_keys_sizes_etags_and_the_continuation_token() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>b</Name><Prefix>leads/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok/1=</NextContinuationToken><Contents><Key>leads/dt=2026-11-28/part-a.zstd.parquet</Key><LastModified>2026-11-28T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>1234</Size></Contents><Contents><Key>a&amp;b</Key><ETag>"d"</ETag><Size>5</Size></Contents></ListBucketResult>"#;
        let page = parse_list(xml);
        assert_eq!(page.objects.len(), 2);
        assert_eq!(
            page.objects[0].key,
            "leads/dt=2026-11-28/part-a.zstd.parquet"
        );
        assert_eq!(page.objects[0].size, 1234);
        assert_eq!(page.objects[0].etag, "\"abc\"");
        assert_eq!(page.objects[1].key, "a&b");
        assert_eq!(page.next.as_deref(), Some("tok/1="));
        let last =
            parse_list("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
        assert!(last.objects.is_empty() && last.next.is_none());
    }

    #[test]
    fn the_error_code_is_read_from_the_xml_body() {
        let reply = SignedReply {
            status: 404,
            headers: vec![],
            body: b"<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>".to_vec(),
        };
        assert_eq!(error_code(&reply), "NoSuchBucket");
        let err = S3Objects::rejected("GetObject", "b", "k", &reply);
        assert_eq!(err.class(), ErrorClass::Permanent);
        let busy = SignedReply {
            status: 503,
            headers: vec![],
            body: b"<Error><Code>SlowDown</Code></Error>".to_vec(),
        };
        assert_eq!(
            S3Objects::rejected("GetObject", "b", "k", &busy).class(),
            ErrorClass::Retryable
        );
    }
}
