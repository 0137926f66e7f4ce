//! Request bodies: JSON, urlencoded forms and multipart forms (text fields only), decoded into raw fields.

use std::collections::HashMap;

use bytes::Bytes;
use fluxo::domain::intake::{RawFields, RawValue};

/// Most fields one body may carry. Every field counts: each key of a JSON object (nested ones too), each
/// `key=value` pair of a form, each part of a multipart body, repeated keys included.
pub const MAX_FIELDS: usize = 200;

/// Why a body could not be read. Messages never quote the sender's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "Content-Type is required: send application/json, application/x-www-form-urlencoded or multipart/form-data"
    )]
    MissingContentType,
    #[error(
        "unsupported Content-Type: send application/json, application/x-www-form-urlencoded or multipart/form-data"
    )]
    UnsupportedMediaType,
    #[error("body is not valid JSON (line {line}, column {column})")]
    MalformedJson { line: usize, column: usize },
    #[error("JSON body must be an object of fields")]
    NotAnObject,
    #[error("body is not valid UTF-8")]
    InvalidUtf8,
    #[error("multipart body has no boundary in its Content-Type")]
    MissingBoundary,
    #[error("multipart body is malformed")]
    MalformedMultipart,
    #[error("file uploads are not accepted; send text fields only")]
    FileUpload,
    #[error("body is empty")]
    Empty,
    #[error("body has more than {max} fields")]
    TooManyFields { max: usize },
}

/// The media types the receiver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Json,
    UrlEncoded,
    Multipart,
}

/// Picks the body kind from the Content-Type header.
pub fn kind_of(content_type: Option<&str>) -> Result<Kind, BodyError> {
    let content_type = content_type.ok_or(BodyError::MissingContentType)?;
    let mime: mime::Mime = content_type
        .parse()
        .map_err(|_| BodyError::UnsupportedMediaType)?;
    match (
        mime.type_().as_str(),
        mime.subtype().as_str(),
        mime.suffix().map(|s| s.as_str()),
    ) {
        ("application", "json", _) | ("application", _, Some("json")) | ("text", "json", _) => {
            Ok(Kind::Json)
        }
        ("application", "x-www-form-urlencoded", _) => Ok(Kind::UrlEncoded),
        ("multipart", "form-data", _) => Ok(Kind::Multipart),
        _ => Err(BodyError::UnsupportedMediaType),
    }
}

/// Decodes a body into fields, in the order they were sent.
pub async fn decode(content_type: Option<&str>, body: &[u8]) -> Result<RawFields, BodyError> {
    let kind = kind_of(content_type)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Empty);
    }
    match kind {
        Kind::Json => decode_json(body),
        Kind::UrlEncoded => decode_urlencoded(body),
        Kind::Multipart => {
            let boundary = content_type
                .and_then(|ct| multer::parse_boundary(ct).ok())
                .ok_or(BodyError::MissingBoundary)?;
            decode_multipart(body, boundary).await
        }
    }
}

fn to_raw(value: serde_json::Value) -> RawValue {
    match value {
        serde_json::Value::Null => RawValue::Null,
        serde_json::Value::Bool(b) => RawValue::Bool(b),
        serde_json::Value::Number(n) => RawValue::Number(n.to_string()),
        serde_json::Value::String(s) => RawValue::Text(s),
        serde_json::Value::Array(_) => RawValue::List,
        serde_json::Value::Object(map) => {
            RawValue::Object(map.into_iter().map(|(k, v)| (k, to_raw(v))).collect())
        }
    }
}

fn decode_json(body: &[u8]) -> Result<RawFields, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        if e.classify() == serde_json::error::Category::Io {
            BodyError::InvalidUtf8
        } else {
            BodyError::MalformedJson {
                line: e.line(),
                column: e.column(),
            }
        }
    })?;
    if !value.is_object() {
        return Err(BodyError::NotAnObject);
    }
    if json_field_count(&value) > MAX_FIELDS {
        return Err(BodyError::TooManyFields { max: MAX_FIELDS });
    }
    match value {
        serde_json::Value::Object(map) => {
            Ok(map.into_iter().map(|(k, v)| (k, to_raw(v))).collect())
        }
        _ => Err(BodyError::NotAnObject),
    }
}

/// Text fields in the order they were first sent; repeated keys (checkbox groups) are joined with ", ".
///
/// Each key is found through an index, so joining is linear in the number of fields, and at most
/// `max_fields` fields (repeats included) are read.
pub struct FieldCollector {
    fields: RawFields,
    positions: HashMap<String, usize>,
    seen: usize,
    max_fields: usize,
}

impl FieldCollector {
    /// An empty collector that refuses more than `max_fields` fields.
    pub fn new(max_fields: usize) -> Self {
        FieldCollector {
            fields: RawFields::new(),
            positions: HashMap::new(),
            seen: 0,
            max_fields,
        }
    }

    /// Adds one field, joining it to an earlier one with the same key.
    pub fn push(&mut self, key: String, value: String) -> Result<(), BodyError> {
        self.seen += 1;
        if self.seen > self.max_fields {
            return Err(BodyError::TooManyFields {
                max: self.max_fields,
            });
        }
        match self.positions.get(&key) {
            Some(&i) => {
                if let Some((_, RawValue::Text(existing))) = self.fields.get_mut(i)
                    && !value.trim().is_empty()
                {
                    if !existing.trim().is_empty() {
                        existing.push_str(", ");
                    }
                    existing.push_str(&value);
                }
            }
            None => {
                self.positions.insert(key.clone(), self.fields.len());
                self.fields.push((key, RawValue::Text(value)));
            }
        }
        Ok(())
    }

    /// The fields collected.
    pub fn finish(self) -> RawFields {
        self.fields
    }
}

/// Counts a JSON value's fields: an object's keys, recursively.
fn json_field_count(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => {
            map.len() + map.values().map(json_field_count).sum::<usize>()
        }
        _ => 0,
    }
}

fn decode_urlencoded(body: &[u8]) -> Result<RawFields, BodyError> {
    // Percent-decoded bytes must be UTF-8; a lossy decode would silently change what was sent.
    std::str::from_utf8(body).map_err(|_| BodyError::InvalidUtf8)?;
    let mut fields = FieldCollector::new(MAX_FIELDS);
    for (key, value) in form_urlencoded::parse(body) {
        if key.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
            return Err(BodyError::InvalidUtf8);
        }
        fields.push(key.into_owned(), value.into_owned())?;
    }
    Ok(fields.finish())
}

async fn decode_multipart(body: &[u8], boundary: String) -> Result<RawFields, BodyError> {
    let bytes = Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = FieldCollector::new(MAX_FIELDS);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) => return Err(BodyError::MalformedMultipart),
        };
        if field.file_name().is_some() {
            return Err(BodyError::FileUpload);
        }
        let name = field
            .name()
            .map(str::to_string)
            .ok_or(BodyError::MalformedMultipart)?;
        let raw = field
            .bytes()
            .await
            .map_err(|_| BodyError::MalformedMultipart)?;
        let value = String::from_utf8(raw.to_vec()).map_err(|_| BodyError::InvalidUtf8)?;
        fields.push(name, value)?;
    }
    Ok(fields.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fields: &RawFields, key: &str) -> Option<String> {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| match v {
                RawValue::Text(t) => Some(t.clone()),
                _ => None,
            })
    }

    #[tokio::test]
    async fn json_objects_are_read_field_by_field() {
        let fields = decode(
            Some("application/json; charset=utf-8"),
            br#"{"nome":"Jo\u00e3o","n":5,"ok":true}"#,
        )
        .await
        .unwrap();
        assert_eq!(text(&fields, "nome").as_deref(), Some("João"));
        assert!(fields.contains(&("n".into(), RawValue::Number("5".into()))));
        assert!(fields.contains(&("ok".into(), RawValue::Bool(true))));
    }

    #[tokio::test]
    async fn malformed_json_reports_where() {
        let err = decode(Some("application/json"), b"{\"email\": ")
            .await
            .unwrap_err();
        assert!(
            matches!(err, BodyError::MalformedJson { line: 1, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn json_that_is_not_an_object_is_refused() {
        assert_eq!(
            decode(Some("application/json"), b"[1,2]")
                .await
                .unwrap_err(),
            BodyError::NotAnObject
        );
        assert_eq!(
            decode(Some("application/json"), b"\"x\"")
                .await
                .unwrap_err(),
            BodyError::NotAnObject
        );
    }

    #[tokio::test]
    async fn urlencoded_forms_decode_plus_and_percent() {
        let fields = decode(
            Some("application/x-www-form-urlencoded"),
            b"nome=Jo%C3%A3o+da+Silva&email=joao%40exemplo.com&i=a&i=b",
        )
        .await
        .unwrap();
        assert_eq!(text(&fields, "nome").as_deref(), Some("João da Silva"));
        assert_eq!(text(&fields, "email").as_deref(), Some("joao@exemplo.com"));
        assert_eq!(text(&fields, "i").as_deref(), Some("a, b"));
    }

    #[tokio::test]
    async fn urlencoded_with_invalid_utf8_is_refused() {
        let err = decode(Some("application/x-www-form-urlencoded"), b"nome=%FF")
            .await
            .unwrap_err();
        assert_eq!(err, BodyError::InvalidUtf8);
    }

    #[tokio::test]
    async fn multipart_text_fields_are_read() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nana@exemplo.com\r\n--XyZ\r\nContent-Disposition: form-data; name=\"empresa\"\r\n\r\nEmpresa X\r\n--XyZ--\r\n";
        let fields = decode(Some("multipart/form-data; boundary=XyZ"), body.as_bytes())
            .await
            .unwrap();
        assert_eq!(text(&fields, "email").as_deref(), Some("ana@exemplo.com"));
        assert_eq!(text(&fields, "empresa").as_deref(), Some("Empresa X"));
    }

    #[tokio::test]
    async fn multipart_files_are_refused() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n--XyZ--\r\n";
        let err = decode(Some("multipart/form-data; boundary=XyZ"), body.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(err, BodyError::FileUpload);
    }

    #[tokio::test]
    async fn multipart_without_a_boundary_is_refused() {
        let err = decode(Some("multipart/form-data"), b"x").await.unwrap_err();
        assert_eq!(err, BodyError::MissingBoundary);
    }

    #[tokio::test]
    async fn other_media_types_are_unsupported() {
        assert_eq!(
            decode(Some("text/plain"), b"x").await.unwrap_err(),
            BodyError::UnsupportedMediaType
        );
        assert_eq!(
            decode(Some("not a type"), b"x").await.unwrap_err(),
            BodyError::UnsupportedMediaType
        );
        assert_eq!(
            decode(None, b"x").await.unwrap_err(),
            BodyError::MissingContentType
        );
    }

    #[tokio::test]
    async fn an_empty_body_is_refused() {
        assert_eq!(
            decode(Some("application/json"), b"  ").await.unwrap_err(),
            BodyError::Empty
        );
    }

    #[tokio::test]
    async fn a_body_with_more_fields_than_the_cap_is_refused_in_every_format() {
        let form = (0..=MAX_FIELDS)
            .map(|i| format!("f{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        let err = decode(Some("application/x-www-form-urlencoded"), form.as_bytes())
            .await
            .unwrap_err();
        assert_eq!(err, BodyError::TooManyFields { max: MAX_FIELDS });
        assert_eq!(err.to_string(), "body has more than 200 fields");

        // Repeated keys count too: they are fields the receiver has to read.
        let repeated = vec!["i=a"; MAX_FIELDS + 1].join("&");
        assert_eq!(
            decode(
                Some("application/x-www-form-urlencoded"),
                repeated.as_bytes()
            )
            .await
            .unwrap_err(),
            BodyError::TooManyFields { max: MAX_FIELDS }
        );

        let json = format!(
            "{{{}}}",
            (0..=MAX_FIELDS)
                .map(|i| format!("\"f{i}\":\"v\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            decode(Some("application/json"), json.as_bytes())
                .await
                .unwrap_err(),
            BodyError::TooManyFields { max: MAX_FIELDS }
        );

        let multipart: String = (0..=MAX_FIELDS)
            .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n"))
            .collect::<String>()
            + "--B--\r\n";
        assert_eq!(
            decode(
                Some("multipart/form-data; boundary=B"),
                multipart.as_bytes()
            )
            .await
            .unwrap_err(),
            BodyError::TooManyFields { max: MAX_FIELDS }
        );

        // Exactly the cap is fine.
        let at_cap = (0..MAX_FIELDS)
            .map(|i| format!("f{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            decode(Some("application/x-www-form-urlencoded"), at_cap.as_bytes())
                .await
                .unwrap()
                .len(),
            MAX_FIELDS
        );
    }

    #[test]
    fn joining_repeated_keys_is_linear_in_the_number_of_fields() {
        // 200,000 distinct keys: a linear search per key (the old join) needs ~2e10 comparisons and
        // minutes; an index needs milliseconds. The bound is loose for a loaded machine.
        let n = 200_000;
        let started = std::time::Instant::now();
        let mut fields = FieldCollector::new(usize::MAX);
        for i in 0..n {
            fields.push(format!("key{i}"), "v".into()).unwrap();
        }
        fields.push("key7".into(), "w".into()).unwrap();
        let fields = fields.finish();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(fields.len(), n);
        assert_eq!(fields[7].1, RawValue::Text("v, w".into()));
    }
}
