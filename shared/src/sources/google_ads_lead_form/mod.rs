//! Google Ads lead form webhooks: a JSON `WebhookLead` whose `google_key` is the shared secret (checked in
//! constant time), `user_column_data` mapped to Fluxo's fields, the campaign ids kept for attribution.

pub mod config;
pub mod request;
