//! The price table (`infra/prices.toml`) and the arithmetic of the bill: line items (a quantity of a
//! priced unit, charged to a function and a service), summed per function and per service.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::paths;

/// One list price: `usd` for `per` units.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub per: f64,
    pub unit: String,
    pub source: String,
    pub read_on: String,
}

impl Price {
    /// The price of one unit.
    pub fn unit_usd(&self) -> f64 {
        self.usd / self.per
    }
}

/// Which price a line item uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PriceKey {
    LambdaGbSecond,
    LambdaRequest,
    ApiGatewayHttpRequest,
    DynamodbWriteRequestUnit,
    DynamodbReadRequestUnit,
    SqsRequest,
    S3PutRequest,
    S3GetRequest,
    CloudwatchLogsIngestedGb,
}

/// `infra/prices.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    pub region: String,
    pub architecture: String,
    pub lambda_gb_second: Price,
    pub lambda_request: Price,
    pub api_gateway_http_request: Price,
    pub dynamodb_write_request_unit: Price,
    pub dynamodb_read_request_unit: Price,
    pub sqs_request: Price,
    pub s3_put_request: Price,
    pub s3_get_request: Price,
    pub cloudwatch_logs_ingested_gb: Price,
}

impl PriceTable {
    /// `infra/prices.toml` of the repository.
    pub fn path() -> std::path::PathBuf {
        paths::root().join("infra").join("prices.toml")
    }

    /// Reads and checks a price table: every price positive, with a source URL and a date.
    pub fn load(path: &Path) -> Result<PriceTable> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    pub fn parse(text: &str) -> Result<PriceTable> {
        let table: PriceTable = toml::from_str(text)?;
        for (name, p) in table.all() {
            if !(p.usd > 0.0 && p.per > 0.0) {
                bail!("{name}: usd and per must be positive");
            }
            if !p.source.starts_with("https://") {
                bail!("{name}: source must be the https URL the price was read from");
            }
            if chrono::NaiveDate::parse_from_str(&p.read_on, "%Y-%m-%d").is_err() {
                bail!("{name}: read_on must be the date the price was read (YYYY-MM-DD)");
            }
        }
        Ok(table)
    }

    /// Every price, with its key in the file.
    pub fn all(&self) -> Vec<(&'static str, &Price)> {
        vec![
            ("lambda_gb_second", &self.lambda_gb_second),
            ("lambda_request", &self.lambda_request),
            ("api_gateway_http_request", &self.api_gateway_http_request),
            (
                "dynamodb_write_request_unit",
                &self.dynamodb_write_request_unit,
            ),
            (
                "dynamodb_read_request_unit",
                &self.dynamodb_read_request_unit,
            ),
            ("sqs_request", &self.sqs_request),
            ("s3_put_request", &self.s3_put_request),
            ("s3_get_request", &self.s3_get_request),
            (
                "cloudwatch_logs_ingested_gb",
                &self.cloudwatch_logs_ingested_gb,
            ),
        ]
    }

    pub fn get(&self, key: PriceKey) -> &Price {
        match key {
            PriceKey::LambdaGbSecond => &self.lambda_gb_second,
            PriceKey::LambdaRequest => &self.lambda_request,
            PriceKey::ApiGatewayHttpRequest => &self.api_gateway_http_request,
            PriceKey::DynamodbWriteRequestUnit => &self.dynamodb_write_request_unit,
            PriceKey::DynamodbReadRequestUnit => &self.dynamodb_read_request_unit,
            PriceKey::SqsRequest => &self.sqs_request,
            PriceKey::S3PutRequest => &self.s3_put_request,
            PriceKey::S3GetRequest => &self.s3_get_request,
            PriceKey::CloudwatchLogsIngestedGb => &self.cloudwatch_logs_ingested_gb,
        }
    }
}

/// One item of the bill: `quantity` units of `price`, charged to `function` under `service`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub function: String,
    pub service: &'static str,
    /// What was counted, e.g. `write request units`.
    pub what: String,
    pub quantity: f64,
    pub price: PriceKey,
}

/// A bill: line items, merged by (function, service, what).
#[derive(Debug, Clone, Default)]
pub struct Bill {
    pub lines: Vec<Line>,
}

impl Bill {
    /// Adds `quantity` to the line (function, service, what), creating it if new.
    pub fn add(
        &mut self,
        function: &str,
        service: &'static str,
        what: &str,
        quantity: f64,
        price: PriceKey,
    ) {
        if quantity == 0.0 {
            return;
        }
        match self
            .lines
            .iter_mut()
            .find(|l| l.function == function && l.service == service && l.what == what)
        {
            Some(l) => l.quantity += quantity,
            None => self.lines.push(Line {
                function: function.to_string(),
                service,
                what: what.to_string(),
                quantity,
                price,
            }),
        }
    }

    /// The cost of one line.
    pub fn cost(&self, prices: &PriceTable, line: &Line) -> f64 {
        line.quantity * prices.get(line.price).unit_usd()
    }

    /// The total in USD.
    pub fn total(&self, prices: &PriceTable) -> f64 {
        self.lines.iter().map(|l| self.cost(prices, l)).sum()
    }

    /// USD per function.
    pub fn by_function(&self, prices: &PriceTable) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry(l.function.clone()).or_default() += self.cost(prices, l);
        }
        out
    }

    /// USD per service.
    pub fn by_service(&self, prices: &PriceTable) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry(l.service.to_string()).or_default() += self.cost(prices, l);
        }
        out
    }

    /// Quantities per (service, what), summed over functions.
    pub fn quantities(&self) -> BTreeMap<(String, String), f64> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry((l.service.to_string(), l.what.clone()))
                .or_default() += l.quantity;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::load(&PriceTable::path()).unwrap()
    }

    #[test]
    fn the_price_table_parses_and_every_price_has_a_source_and_a_date() {
        let t = table();
        assert_eq!(t.region, "us-east-1");
        assert_eq!(t.architecture, "arm64");
        for (name, p) in t.all() {
            assert!(p.source.starts_with("https://aws.amazon.com/"), "{name}");
            assert_eq!(p.read_on, "2026-11-29", "{name}");
            assert!(!p.unit.is_empty(), "{name}");
        }
        assert_eq!(t.lambda_request.unit_usd(), 0.20 / 1e6);
        assert_eq!(t.dynamodb_write_request_unit.unit_usd(), 0.625 / 1e6);
        assert_eq!(t.s3_put_request.unit_usd(), 0.005 / 1e3);
    }

    #[test]
    fn a_price_without_a_source_or_date_is_refused() {
        let text = std::fs::read_to_string(PriceTable::path()).unwrap();
        let no_source = text.replacen(
            "source = \"https://aws.amazon.com/lambda/pricing/\"",
            "source = \"\"",
            1,
        );
        assert!(PriceTable::parse(&no_source).is_err());
        let no_date = text.replacen("read_on = \"2026-11-29\"", "read_on = \"last week\"", 1);
        assert!(PriceTable::parse(&no_date).is_err());
        let unknown = format!("{text}\n[lambda_surprise]\nusd = 1\n");
        assert!(PriceTable::parse(&unknown).is_err());
    }

    #[test]
    fn the_bill_multiplies_quantities_by_unit_prices_and_sums_them_per_function_and_service() {
        let t = table();
        let mut bill = Bill::default();
        // 1,000 invocations at 128 MB x 10 ms = 1.25 GB-s.
        bill.add(
            "lead-router",
            "Lambda",
            "invocations",
            1000.0,
            PriceKey::LambdaRequest,
        );
        bill.add(
            "lead-router",
            "Lambda",
            "GB-seconds",
            1.25,
            PriceKey::LambdaGbSecond,
        );
        bill.add(
            "lead-router",
            "DynamoDB",
            "write request units",
            4000.0,
            PriceKey::DynamodbWriteRequestUnit,
        );
        bill.add(
            "lead-router",
            "DynamoDB",
            "write request units",
            1000.0,
            PriceKey::DynamodbWriteRequestUnit,
        );
        bill.add(
            "webhook-receiver",
            "SQS",
            "requests",
            1000.0,
            PriceKey::SqsRequest,
        );
        bill.add(
            "webhook-receiver",
            "SQS",
            "requests",
            0.0,
            PriceKey::SqsRequest,
        );
        assert_eq!(bill.lines.len(), 4);
        let router = 1000.0 * 0.20 / 1e6 + 1.25 * 0.0000133334 + 5000.0 * 0.625 / 1e6;
        let receiver = 1000.0 * 0.40 / 1e6;
        let by_function = bill.by_function(&t);
        assert!((by_function["lead-router"] - router).abs() < 1e-12);
        assert!((by_function["webhook-receiver"] - receiver).abs() < 1e-12);
        assert!((bill.total(&t) - router - receiver).abs() < 1e-12);
        let by_service = bill.by_service(&t);
        assert!((by_service["DynamoDB"] - 5000.0 * 0.625 / 1e6).abs() < 1e-12);
        assert_eq!(
            bill.quantities()[&("DynamoDB".to_string(), "write request units".to_string())],
            5000.0
        );
    }
}
