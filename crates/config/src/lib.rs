//! Airlock's configuration: `airlock.yaml` read into a validated [`Config`] snapshot.
//!
//! Parsing happens in two steps, as in vector's config compiler: the YAML text becomes a tree
//! whose nodes remember their line and column ([`yaml`]), and a walker turns that tree into
//! typed, validated values, collecting *every* error with its key path and location instead of
//! stopping at the first. A `Config` therefore only exists when the whole file is valid.
//!
//! Invariant: this crate reads no environment and opens no sockets; secrets are referenced
//! (env var name or file path), never held here.

pub mod civil;
mod duration;
mod model;
pub mod yaml;

pub use duration::{format_duration, parse_duration};
pub use model::{
    ApiKeySource, ApprovalWebhook, ApprovalsConfig, AuditConfig, Config, Durability, Http2, Limits,
    OidcIssuer, OnStoreFailure, SessionConfig, StoreUrl, TelemetryConfig, UiConfig, UpstreamConfig,
    WebhookFormat, is_https_or_loopback,
};
pub use yaml::{ConfigError, ConfigErrors};

/// Parse configuration text. `source` names the file in error messages.
pub fn parse(source: &str, text: &str) -> Result<Config, ConfigErrors> {
    model::parse(source, text)
}

/// A secret value (API key, token) that never prints. `Debug` and `Display` show a placeholder,
/// so a secret cannot reach a log line through formatting by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The raw value. Call only where the secret is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Fuzz entry: any text either parses or reports errors; never a panic.
pub fn fuzz_parse(data: &[u8]) {
    let _ = parse("fuzz.yaml", &String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-ant-very-secret");
        assert!(!format!("{s:?} {s}").contains("very-secret"));
        assert_eq!(s.expose(), "sk-ant-very-secret");
    }
}
