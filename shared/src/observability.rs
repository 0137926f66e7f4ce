//! Logging and metrics: structured JSON logs without personal data, and CloudWatch embedded-metric lines.

use std::io::Write;

/// Starts tracing the way the Lambda runtime expects: `AWS_LAMBDA_LOG_FORMAT` (JSON or text) and
/// `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG` are honoured, and every line carries the request id of the
/// invocation span.
#[cfg(feature = "lambda")]
pub fn init_tracing() {
    lambda_runtime::tracing::init_default_subscriber();
}

/// Writes one CloudWatch Embedded Metric Format line to stdout: a count of `value` for `metric`.
///
/// CloudWatch turns these lines into metrics with no API call, so counting costs nothing at run time.
pub fn count(namespace: &str, function: &str, metric: &str, value: u64) {
    let line = emf_line(
        namespace,
        function,
        metric,
        value,
        chrono::Utc::now().timestamp_millis(),
    );
    let mut out = std::io::stdout().lock();
    // A metric line that cannot be written is not worth failing a request for.
    let _ = writeln!(out, "{line}");
}

/// The EMF JSON for one count.
pub fn emf_line(
    namespace: &str,
    function: &str,
    metric: &str,
    value: u64,
    timestamp_ms: i64,
) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Function"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}]
            }]
        },
        "Function": function,
        metric: value
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_the_metric_and_its_value() {
        let line = emf_line("Fluxo", "webhook-receiver", "SpamRejected", 1, 5);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["SpamRejected"], 1);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "SpamRejected"
        );
        assert_eq!(v["_aws"]["Timestamp"], 5);
    }
}
