//! The hostile request corpus against the running receiver: every request must get a 4xx (never a 5xx)
//! and leave nothing stored.

use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One hostile request.
pub struct Case {
    pub name: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// Sent as raw bytes over TCP (for what an HTTP client refuses to send).
    pub raw: Option<Vec<u8>>,
}

fn case(name: &str, ct: Option<&str>, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.to_string(),
        content_type: ct.map(str::to_string),
        body: body.into(),
        headers: Vec::new(),
        raw: None,
    }
}

const MP: &str = "multipart/form-data; boundary=XyZ";

/// The corpus.
pub fn corpus() -> Vec<Case> {
    let json = Some("application/json");
    let form = Some("application/x-www-form-urlencoded");
    let valid_json = r#"{"email":"hostile@exemplo.com","nome":"H"}"#;
    let mut v = vec![
        case("no content type", None, valid_json),
        case("text/plain", Some("text/plain"), valid_json),
        case(
            "xml",
            Some("application/xml"),
            "<lead><email>a@b.com</email></lead>",
        ),
        case("json sent as a form", form, valid_json),
        case("a form sent as json", json, "email=a%40b.com&nome=x"),
        case(
            "mixed content types",
            Some("application/json, multipart/form-data"),
            valid_json,
        ),
        case("content type garbage", Some(";;;=\u{7f}"), valid_json),
        case("empty json", json, ""),
        case("json array", json, "[{\"email\":\"a@b.com\"}]"),
        case("json string", json, "\"a@b.com\""),
        case("truncated json", json, "{\"email\":\"a@b.com\""),
        case(
            "invalid utf-8 in json",
            json,
            b"{\"email\":\"a\xff\xfe@b.com\"}".to_vec(),
        ),
        case(
            "invalid utf-8 in a form",
            form,
            b"email=a\xff%40b.com&nome=\xc3\x28".to_vec(),
        ),
        case(
            "utf-16 json",
            json,
            "{\"email\":\"a@b.com\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>(),
        ),
        case(
            "json nested 10,000 deep",
            json,
            format!(
                "{{\"email\":\"a@b.com\",\"x\":{}1{}}}",
                "[".repeat(10_000),
                "]".repeat(10_000)
            ),
        ),
        case(
            "objects nested 10,000 deep",
            json,
            format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
        ),
        case("100,000 json fields", json, {
            let fields: Vec<String> = (0..100_000).map(|i| format!("\"f{i}\":1")).collect();
            format!("{{\"email\":\"a@b.com\",{}}}", fields.join(","))
        }),
        case(
            "100,000 form fields",
            form,
            (0..100_000)
                .map(|i| format!("f{i}=1"))
                .collect::<Vec<_>>()
                .join("&"),
        ),
        case(
            "100,000 repeats of one field",
            form,
            "email=a%40b.com&".repeat(100_000),
        ),
        case(
            "huge number as the email",
            json,
            format!("{{\"email\":{}}}", "9".repeat(100_000)),
        ),
        case("1e999999 as the email", json, "{\"email\":1e999999}"),
        case(
            "huge number with no email",
            json,
            "{\"nome\":1e400,\"telefone\":123456789012345678901234567890}",
        ),
        case(
            "multipart without a boundary",
            Some("multipart/form-data"),
            "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.com\r\n--XyZ--\r\n",
        ),
        case(
            "multipart with another boundary",
            Some("multipart/form-data; boundary=Other"),
            "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.com\r\n--XyZ--\r\n",
        ),
        case(
            "multipart never closed",
            Some(MP),
            "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.com",
        ),
        case(
            "multipart with a file",
            Some(MP),
            "--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@b.com\r\n--XyZ\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--XyZ--\r\n",
        ),
        case(
            "multipart part without a name",
            Some(MP),
            "--XyZ\r\nContent-Disposition: form-data\r\n\r\na@b.com\r\n--XyZ--\r\n",
        ),
        case(
            "multipart boundary inside a value",
            Some(MP),
            "--XyZ\r\nContent-Disposition: form-data; name=\"nome\"\r\n\r\nx--XyZ\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nnot-an-email\r\n--XyZ--\r\n",
        ),
        case("multipart with 10,000 parts", Some(MP), {
            let mut s = String::new();
            for i in 0..10_000 {
                s.push_str(&format!(
                    "--XyZ\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n1\r\n"
                ));
            }
            s.push_str("--XyZ--\r\n");
            s
        }),
        case(
            "multipart header flood",
            Some(MP),
            format!(
                "--XyZ\r\n{}Content-Disposition: form-data; name=\"email\"\r\n\r\na@b.com\r\n--XyZ--\r\n",
                "X-A: b\r\n".repeat(20_000)
            ),
        ),
        case(
            "_redirect to another origin",
            form,
            "email=a%40b.com&_redirect=https%3A%2F%2Fevil.example%2F",
        ),
        case(
            "_redirect javascript:",
            form,
            "email=a%40b.com&_redirect=javascript%3Aalert(1)",
        ),
        case(
            "_redirect protocol-relative",
            form,
            "email=a%40b.com&_redirect=%2F%2Fevil.example",
        ),
        case(
            "_redirect with userinfo",
            form,
            "email=a%40b.com&_redirect=https%3A%2F%2Flocalhost%40evil.example%2F",
        ),
        case(
            "_redirect with CRLF",
            form,
            "email=a%40b.com&_redirect=https%3A%2F%2Fevil.example%2F%0D%0ASet-Cookie%3A%20a%3Db",
        ),
        case(
            "_redirect data:",
            json,
            "{\"email\":\"a@b.com\",\"_redirect\":\"data:text/html,<script>alert(1)</script>\"}",
        ),
        case(
            "_redirect twice",
            form,
            "email=a%40b.com&_redirect=https%3A%2F%2Fa.example&_redirect=https%3A%2F%2Fevil.example",
        ),
        case(
            "_redirect as an object",
            json,
            "{\"email\":\"a@b.com\",\"_redirect\":{\"href\":\"https://evil.example\"}}",
        ),
        case(
            "header injection in the email",
            form,
            "email=a%40b.com%0D%0ABcc%3A%20x%40evil.example",
        ),
        case(
            "script as the email",
            json,
            "{\"email\":\"<script>alert(1)</script>@b.com\"}",
        ),
        case(
            "email as a list",
            json,
            "{\"email\":[\"a@b.com\",\"c@d.com\"]}",
        ),
        case(
            "consent as a list",
            json,
            "{\"email\":\"a@b.com\",\"consent\":[true]}",
        ),
    ];
    let mut long_key = case("Idempotency-Key of 10,000 characters", json, valid_json);
    long_key
        .headers
        .push(("idempotency-key".into(), "k".repeat(10_000)));
    v.push(long_key);
    v.push(Case {
        name: "CRLF header injection (raw)".into(),
        content_type: None,
        body: Vec::new(),
        headers: Vec::new(),
        raw: Some(
            format!(
                "POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: a\r\n\rSet-Cookie: b\r\nContent-Length: {}\r\n\r\n{valid_json}",
                valid_json.len()
            )
            .into_bytes(),
        ),
    });
    v.push(Case {
        name: "NUL in a header (raw)".into(),
        content_type: None,
        body: Vec::new(),
        headers: Vec::new(),
        raw: Some(
            format!(
                "POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\u{0}text/html\r\nContent-Length: {}\r\n\r\n{valid_json}",
                valid_json.len()
            )
            .into_bytes(),
        ),
    });
    v.push(Case {
        name: "Content-Length smaller than the body (raw)".into(),
        content_type: None,
        body: Vec::new(),
        headers: Vec::new(),
        raw: Some(
            format!(
                "POST /leads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{valid_json}"
            )
            .into_bytes(),
        ),
    });
    v
}

/// Who answered a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// The receiver (its answers carry `x-content-type-options: nosniff`).
    Receiver,
    /// The local emulator (`cargo lambda watch`) or the HTTP layer, before any function ran.
    Emulator,
    /// Nobody: the client could not send it, or the connection closed without an answer.
    NoAnswer,
}

/// One case's answer: the HTTP status (0 when there was none) and who gave it.
pub async fn send(http: &reqwest::Client, api: &str, c: &Case) -> Result<(u16, From)> {
    if let Some(raw) = &c.raw {
        let status = send_raw(api, raw).await?;
        let from = if status == 0 {
            From::NoAnswer
        } else {
            From::Emulator
        };
        return Ok((status, from));
    }
    let mut r = http.post(format!("{api}/leads")).body(c.body.clone());
    if let Some(ct) = &c.content_type {
        r = r.header("content-type", ct);
    }
    for (k, v) in &c.headers {
        r = r.header(k, v);
    }
    Ok(match r.send().await {
        Ok(resp) => {
            let receiver = resp
                .headers()
                .get("x-content-type-options")
                .is_some_and(|v| v == "nosniff");
            let from = if receiver {
                From::Receiver
            } else {
                From::Emulator
            };
            (resp.status().as_u16(), from)
        }
        Err(_) => (0, From::NoAnswer),
    })
}

async fn send_raw(api: &str, raw: &[u8]) -> Result<u16> {
    let addr = api.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(raw).await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}
