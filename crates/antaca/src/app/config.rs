//! The `serve` configuration: defaults, then a TOML file, then `ANTACA_<KEY>`
//! environment variables, then command-line flags. Secrets never print.

use super::{BoxError, ServeOptions};
use crate::engine::EngineConfig;
use crate::iso_server::IsoConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// The default engine memory budget, MiB.
pub const MEMORY_BUDGET_MB: u64 = 1024;

/// What a cached transaction costs, bytes (the record, its strings, the
/// map's slot and the eviction queue's), to size the cache from the budget.
pub const TXN_CACHE_ENTRY_BYTES: u64 = 640;

/// What `--print-config` shows instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Every `serve` option; field names are the TOML keys, `ANTACA_<KEY>` their variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory (store and data key).
    pub data: PathBuf,
    /// The store's backend: sled or fjall.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::store::Backend>,
    /// The store backend's memory budget, bytes (sled's page cache; fjall's
    /// block cache and memtables); 0: a quarter of `memory_budget_mb`.
    pub store_cache_bytes: u64,
    /// The engine's memory budget, MiB: a quarter for the transaction cache,
    /// a quarter for the store backend (unless `store_cache_bytes` is set),
    /// the rest for the log's overlay, the batch in flight and the portfolio.
    pub memory_budget_mb: u64,
    /// ISO 8583 listen address.
    pub iso_listen: String,
    /// HTTP listen address.
    pub http_listen: String,
    /// TLS listen address of the partner channel; empty: no TLS listener.
    pub secure_listen: String,
    /// ISO 8583 dialect: a built-in spec name or a spec file.
    pub spec: String,
    /// Portfolio to load into the empty store before serving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portfolio: Option<PathBuf>,
    /// Length header: binary2 or ascii4.
    pub length_header: String,
    /// Largest ISO 8583 frame, in bytes.
    pub max_frame: usize,
    /// Most ISO 8583 connections at once.
    pub max_connections: usize,
    /// Most requests in flight on one ISO 8583 connection.
    pub max_in_flight: usize,
    /// Seconds an ISO 8583 connection may stay silent with nothing in flight.
    pub idle_timeout_secs: u64,
    /// Seconds a begun ISO 8583 frame has to arrive whole.
    pub read_timeout_secs: u64,
    /// Seconds a client has to take its responses.
    pub write_timeout_secs: u64,
    /// Most requests committed in one batch.
    pub engine_batch_max: usize,
    /// Most requests waiting for the writer (backpressure beyond).
    pub engine_queue_depth: usize,
    /// Days an authorization hold blocks funds.
    pub hold_expiry_days: u64,
    /// Seconds between sweeps of expired holds.
    pub sweep_interval_secs: u64,
    /// Minutes an app session lasts.
    pub customer_session_minutes: u64,
    /// Minutes an admin session lasts.
    pub admin_session_minutes: u64,
    /// Most HTTP connections at once on the plain listener.
    pub http_max_connections: usize,
    /// Largest JSON request body, in bytes.
    pub http_body_limit: usize,
    /// Seconds to send the request headers.
    pub http_header_timeout_secs: u64,
    /// Seconds to send the request body.
    pub http_body_timeout_secs: u64,
    /// SMTP relay HOST:PORT for partner notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<String>,
    /// Sender address of notifications.
    pub smtp_from: String,
    /// Seconds an SMTP delivery may take.
    pub smtp_timeout_secs: u64,
    /// Seconds between looks at the outbox.
    pub notify_interval_secs: u64,
    /// Days a delivered notification is kept (under `outbox-sent/`).
    pub outbox_sent_retention_days: u64,
    /// eKYC provider endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekyc_url: Option<String>,
    /// The URL the eKYC provider calls back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekyc_callback_url: Option<String>,
    /// The eKYC provider's API key (secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekyc_api_key: Option<String>,
    /// The eKYC callback signing secret (secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ekyc_callback_secret: Option<String>,
    /// Seconds an eKYC provider call may take.
    pub ekyc_timeout_secs: u64,
    /// Name of the variable holding the zone PIN key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zpk_hex_env: Option<String>,
    /// The zone PIN key itself, 32 or 48 hex digits (secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zpk_hex: Option<String>,
    /// Log format: human or json.
    pub log_format: LogFormat,
    /// Log filter (tracing directives, e.g. "info,antaca=debug").
    pub log_filter: String,
}

impl Default for Config {
    fn default() -> Self {
        let serve = ServeOptions::default();
        let iso = IsoConfig::default();
        let engine = EngineConfig::default();
        let http = crate::http::HttpConfig::default();
        Config {
            data: serve.data,
            store: serve.store.backend,
            store_cache_bytes: 0,
            memory_budget_mb: MEMORY_BUDGET_MB,
            iso_listen: serve.iso_listen,
            http_listen: serve.http_listen,
            secure_listen: serve.secure_listen.unwrap_or_default(),
            spec: serve.spec,
            portfolio: None,
            length_header: "binary2".into(),
            max_frame: iso.max_frame,
            max_connections: iso.max_connections,
            max_in_flight: iso.max_in_flight,
            idle_timeout_secs: iso.idle_timeout.as_secs(),
            read_timeout_secs: iso.read_timeout.as_secs(),
            write_timeout_secs: iso.write_timeout.as_secs(),
            engine_batch_max: engine.batch_max,
            engine_queue_depth: engine.queue_depth,
            hold_expiry_days: engine.hold_expiry.as_secs() / (24 * 3600),
            sweep_interval_secs: serve.sweep_interval.as_secs(),
            customer_session_minutes: http.customer_session.as_secs() / 60,
            admin_session_minutes: http.admin_session.as_secs() / 60,
            http_max_connections: http.max_connections,
            http_body_limit: http.body_limit,
            http_header_timeout_secs: http.header_timeout.as_secs(),
            http_body_timeout_secs: http.body_timeout.as_secs(),
            smtp: None,
            smtp_from: "antaca@localhost".into(),
            smtp_timeout_secs: 30,
            notify_interval_secs: serve.notify_interval.as_secs(),
            outbox_sent_retention_days: serve.outbox_sent_retention.as_secs() / (24 * 3600),
            ekyc_url: None,
            ekyc_callback_url: None,
            ekyc_api_key: None,
            ekyc_callback_secret: None,
            ekyc_timeout_secs: 10,
            zpk_hex_env: None,
            zpk_hex: None,
            log_format: LogFormat::Human,
            log_filter: "info".into(),
        }
    }
}

/// Every key, in file order.
pub const KEYS: &[&str] = &[
    "data",
    "store",
    "store_cache_bytes",
    "memory_budget_mb",
    "iso_listen",
    "http_listen",
    "secure_listen",
    "spec",
    "portfolio",
    "length_header",
    "max_frame",
    "max_connections",
    "max_in_flight",
    "idle_timeout_secs",
    "read_timeout_secs",
    "write_timeout_secs",
    "engine_batch_max",
    "engine_queue_depth",
    "hold_expiry_days",
    "sweep_interval_secs",
    "customer_session_minutes",
    "admin_session_minutes",
    "http_max_connections",
    "http_body_limit",
    "http_header_timeout_secs",
    "http_body_timeout_secs",
    "smtp",
    "smtp_from",
    "smtp_timeout_secs",
    "notify_interval_secs",
    "outbox_sent_retention_days",
    "ekyc_url",
    "ekyc_callback_url",
    "ekyc_api_key",
    "ekyc_callback_secret",
    "ekyc_timeout_secs",
    "zpk_hex_env",
    "zpk_hex",
    "log_format",
    "log_filter",
];

/// Keys that never print.
pub const SECRET_KEYS: &[&str] = &["ekyc_api_key", "ekyc_callback_secret", "zpk_hex"];

/// Keys whose values are whole numbers.
fn numeric(key: &str) -> bool {
    key.ends_with("_secs")
        || key.ends_with("_minutes")
        || key.ends_with("_days")
        || key.starts_with("max_")
        || matches!(
            key,
            "engine_batch_max"
                | "engine_queue_depth"
                | "http_max_connections"
                | "http_body_limit"
                | "store_cache_bytes"
                | "memory_budget_mb"
        )
}

/// The environment variable of a key: `ANTACA_` and the key in capitals.
pub fn env_name(key: &str) -> String {
    format!("ANTACA_{}", key.to_ascii_uppercase())
}

fn check_keys(table: &toml::Table, origin: &str) -> Result<(), BoxError> {
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!("{origin}: unknown key `{key}`").into());
        }
    }
    Ok(())
}

impl Config {
    /// Defaults, overlaid by the TOML text `file` (if any), then by `env` (a
    /// lookup of variable names). Unknown keys and bad values are errors that
    /// name the key (never its value).
    pub fn resolve(
        file: Option<(&str, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, BoxError> {
        let mut table = match toml::Value::try_from(Config::default()) {
            Ok(toml::Value::Table(table)) => table,
            _ => return Err("the default configuration is not a table".into()),
        };
        if let Some((origin, text)) = file {
            // The parser's message quotes the offending line, which may hold a secret:
            // report only where it is.
            let file: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                let at = e.span().map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!(" at line {line}")
                });
                format!("{origin}: not valid TOML{}", at.unwrap_or_default())
            })?;
            check_keys(&file, origin)?;
            // Types are checked key by key, so that an error names its key.
            for (key, value) in file {
                let mut one = toml::Table::new();
                one.insert(key.clone(), value.clone());
                toml::Value::Table(one).try_into::<Config>().map_err(|e| {
                    if SECRET_KEYS.contains(&key.as_str()) {
                        format!("{origin}: key `{key}`: invalid value")
                    } else {
                        format!("{origin}: key `{key}`: {}", e.message())
                    }
                })?;
                table.insert(key, value);
            }
        }
        for key in KEYS {
            let name = env_name(key);
            let Some(raw) = env(&name) else { continue };
            let value = if numeric(key) {
                let n: i64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: `{key}` is a whole number"))?;
                toml::Value::Integer(n)
            } else {
                toml::Value::String(raw)
            };
            let mut one = toml::Table::new();
            one.insert(key.to_string(), value.clone());
            toml::Value::Table(one).try_into::<Config>().map_err(|e| {
                if SECRET_KEYS.contains(key) {
                    format!("{name}: invalid value")
                } else {
                    format!("{name}: {}", e.message())
                }
            })?;
            table.insert(key.to_string(), value);
        }
        toml::Value::Table(table)
            .try_into::<Config>()
            .map_err(|e| format!("configuration: {}", e.message()).into())
    }

    /// The effective configuration as TOML, secrets replaced by [`REDACTED`].
    pub fn to_redacted_toml(&self) -> Result<String, BoxError> {
        let mut shown = self.clone();
        for secret in [
            &mut shown.ekyc_api_key,
            &mut shown.ekyc_callback_secret,
            &mut shown.zpk_hex,
        ] {
            if secret.is_some() {
                *secret = Some(REDACTED.to_string());
            }
        }
        Ok(toml::to_string(&shown)?)
    }

    /// The serve options this configuration describes (the zone PIN key is read separately).
    pub fn to_serve_options(&self) -> Result<ServeOptions, BoxError> {
        let header = super::parse_length_header(&self.length_header)
            .map_err(|e| format!("length_header: {e}"))?;
        let secs = Duration::from_secs;
        let positive = |key: &str, n: u64| -> Result<u64, BoxError> {
            if n == 0 {
                Err(format!("{key} must be at least 1").into())
            } else {
                Ok(n)
            }
        };
        for (key, n) in [
            ("max_frame", self.max_frame),
            ("max_connections", self.max_connections),
            ("max_in_flight", self.max_in_flight),
            ("engine_batch_max", self.engine_batch_max),
            ("engine_queue_depth", self.engine_queue_depth),
            ("http_max_connections", self.http_max_connections),
            ("http_body_limit", self.http_body_limit),
        ] {
            positive(key, n as u64)?;
        }
        let budget = positive("memory_budget_mb", self.memory_budget_mb)?.saturating_mul(1 << 20);
        Ok(ServeOptions {
            data: self.data.clone(),
            store: crate::store::StoreConfig {
                backend: self.store,
                cache_bytes: if self.store_cache_bytes == 0 {
                    budget / 4
                } else {
                    self.store_cache_bytes
                },
                ..crate::store::StoreConfig::default()
            },
            iso_listen: self.iso_listen.clone(),
            http_listen: self.http_listen.clone(),
            secure_listen: (!self.secure_listen.is_empty()).then(|| self.secure_listen.clone()),
            spec: self.spec.clone(),
            portfolio: self.portfolio.clone(),
            iso: IsoConfig {
                header,
                max_frame: self.max_frame,
                max_connections: self.max_connections,
                max_in_flight: self.max_in_flight,
                idle_timeout: secs(positive("idle_timeout_secs", self.idle_timeout_secs)?),
                read_timeout: secs(positive("read_timeout_secs", self.read_timeout_secs)?),
                write_timeout: secs(positive("write_timeout_secs", self.write_timeout_secs)?),
            },
            engine: EngineConfig {
                hold_expiry: secs(self.hold_expiry_days.saturating_mul(24 * 3600)),
                batch_max: self.engine_batch_max,
                queue_depth: self.engine_queue_depth,
                txn_cache: usize::try_from(budget / 4 / TXN_CACHE_ENTRY_BYTES)
                    .unwrap_or(usize::MAX)
                    .max(1),
            },
            sweep_interval: secs(positive("sweep_interval_secs", self.sweep_interval_secs)?),
            http: crate::http::HttpConfig {
                customer_session: secs(self.customer_session_minutes.saturating_mul(60)),
                admin_session: secs(self.admin_session_minutes.saturating_mul(60)),
                header_timeout: secs(positive(
                    "http_header_timeout_secs",
                    self.http_header_timeout_secs,
                )?),
                body_timeout: secs(positive(
                    "http_body_timeout_secs",
                    self.http_body_timeout_secs,
                )?),
                max_connections: self.http_max_connections,
                body_limit: self.http_body_limit,
                kyc_provider: self.ekyc()?,
                ..crate::http::HttpConfig::default()
            },
            smtp: match &self.smtp {
                Some(relay) => Some(self.smtp_config(relay)?),
                None => None,
            },
            notify_interval: secs(positive("notify_interval_secs", self.notify_interval_secs)?),
            outbox_sent_retention: secs(self.outbox_sent_retention_days.saturating_mul(24 * 3600)),
            zpk: None,
        })
    }

    fn smtp_config(
        &self,
        relay: &str,
    ) -> Result<crate::integrations::notify::SmtpConfig, BoxError> {
        let (host, port) = relay.rsplit_once(':').ok_or("smtp is HOST:PORT")?;
        let port = port.parse().map_err(|_| "smtp: the port is a number")?;
        Ok(crate::integrations::notify::SmtpConfig {
            host: host.to_string(),
            port,
            from: self.smtp_from.clone(),
            timeout: Duration::from_secs(self.smtp_timeout_secs),
        })
    }

    fn ekyc(&self) -> Result<Option<crate::integrations::kyc_provider::ProviderConfig>, BoxError> {
        let Some(url) = &self.ekyc_url else {
            return Ok(None);
        };
        let callback_url = self
            .ekyc_callback_url
            .clone()
            .ok_or("ekyc_url needs ekyc_callback_url (--ekyc-callback-url)")?;
        let api_key = self
            .ekyc_api_key
            .clone()
            .ok_or("ekyc_url needs ekyc_api_key (set ANTACA_EKYC_API_KEY)")?;
        let secret = self
            .ekyc_callback_secret
            .clone()
            .ok_or("ekyc_url needs ekyc_callback_secret (set ANTACA_EKYC_CALLBACK_SECRET)")?;
        Ok(Some(crate::integrations::kyc_provider::ProviderConfig {
            url: url.clone(),
            api_key,
            callback_secret: secret.into_bytes(),
            callback_url,
            timeout: Duration::from_secs(self.ekyc_timeout_secs),
        }))
    }

    /// The zone PIN key: `zpk_hex`, else the variable `zpk_hex_env` names; errors never echo it.
    pub fn zone_pin_key(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::security::pinblock::ZonePinKey>, BoxError> {
        let (hex, origin) = match (&self.zpk_hex, &self.zpk_hex_env) {
            (Some(hex), _) => (hex.clone(), "zpk_hex".to_string()),
            (None, Some(var)) => (
                env(var).ok_or_else(|| format!("--zpk-hex-env: set {var} to the zone PIN key"))?,
                format!("--zpk-hex-env: {var}"),
            ),
            (None, None) => return Ok(None),
        };
        crate::security::pinblock::ZonePinKey::from_hex(hex.trim())
            .map(Some)
            .map_err(|e| format!("{origin}: {e}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn keys_are_exactly_the_fields() {
        let all = Config {
            portfolio: Some("p".into()),
            smtp: Some("s:1".into()),
            ekyc_url: Some("u".into()),
            ekyc_callback_url: Some("c".into()),
            ekyc_api_key: Some("k".into()),
            ekyc_callback_secret: Some("s".into()),
            zpk_hex_env: Some("V".into()),
            zpk_hex: Some("00".into()),
            ..Config::default()
        };
        let toml::Value::Table(table) = toml::Value::try_from(&all).expect("table") else {
            panic!("not a table")
        };
        let fields: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        keys.sort_unstable();
        let mut fields = fields;
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn defaults_file_then_env() {
        let text = "max_frame = 4096\niso_listen = \"0.0.0.0:9000\"\nlog_format = \"json\"\n";
        let env = |name: &str| match name {
            "ANTACA_ISO_LISTEN" => Some("127.0.0.1:7000".to_string()),
            "ANTACA_MAX_IN_FLIGHT" => Some("12".to_string()),
            _ => None,
        };
        let config = Config::resolve(Some(("f.toml", text)), env).expect("config");
        assert_eq!(config.max_frame, 4096);
        assert_eq!(config.iso_listen, "127.0.0.1:7000");
        assert_eq!(config.max_in_flight, 12);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.http_listen, Config::default().http_listen);
        let options = config.to_serve_options().expect("options");
        assert_eq!(options.iso.max_frame, 4096);
    }

    #[test]
    fn outbox_sent_retention_defaults_to_30_days_and_is_set_in_days() {
        let config = Config::resolve(None, no_env).expect("config");
        assert_eq!(config.outbox_sent_retention_days, 30);
        let options = config.to_serve_options().expect("options");
        assert_eq!(options.outbox_sent_retention, Duration::from_hours(30 * 24));
        assert_eq!(
            options.outbox_sent_retention,
            crate::integrations::notify::SENT_RETENTION_DEFAULT
        );
        let text = config.to_redacted_toml().expect("toml");
        assert!(text.contains("outbox_sent_retention_days = 30"), "{text}");
        let env =
            |name: &str| (name == "ANTACA_OUTBOX_SENT_RETENTION_DAYS").then(|| "7".to_string());
        let options = Config::resolve(Some(("f.toml", "outbox_sent_retention_days = 2\n")), env)
            .expect("config")
            .to_serve_options()
            .expect("options");
        assert_eq!(options.outbox_sent_retention, Duration::from_hours(7 * 24));
    }

    #[test]
    fn the_store_is_sled_by_default_and_chosen_by_its_key() {
        let config = Config::resolve(None, no_env).expect("config");
        assert_eq!(config.store, None, "the directory's own, else fjall");
        let options = config.to_serve_options().expect("options");
        assert_eq!(options.store.backend, None);
        assert_eq!(options.store.cache_bytes, crate::store::CACHE_BYTES_DEFAULT);
        let env = |name: &str| match name {
            "ANTACA_STORE" => Some("fjall".to_string()),
            "ANTACA_STORE_CACHE_BYTES" => Some("1048576".to_string()),
            _ => None,
        };
        let options = Config::resolve(Some(("f.toml", "store = \"sled\"\n")), env)
            .expect("config")
            .to_serve_options()
            .expect("options");
        assert_eq!(options.store.backend, Some(crate::store::Backend::Fjall));
        assert_eq!(options.store.cache_bytes, 1 << 20);
        let env = |name: &str| (name == "ANTACA_STORE").then(|| "rocks".to_string());
        let e = Config::resolve(None, env).expect_err("unknown backend");
        assert!(e.to_string().contains("ANTACA_STORE"), "{e}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e =
            Config::resolve(Some(("f.toml", "max_frmae = 1\n")), no_env).expect_err("unknown key");
        assert!(e.to_string().contains("max_frmae"), "{e}");
        let e = Config::resolve(Some(("f.toml", "max_frame = \"big\"\n")), no_env)
            .expect_err("bad type");
        assert!(e.to_string().contains("max_frame"), "{e}");
        let env = |name: &str| (name == "ANTACA_MAX_FRAME").then(|| "lots".to_string());
        let e = Config::resolve(None, env).expect_err("bad env");
        assert!(e.to_string().contains("ANTACA_MAX_FRAME"), "{e}");
    }

    #[test]
    fn secrets_never_print() {
        let env = |name: &str| match name {
            "ANTACA_EKYC_API_KEY" => Some("key-123456".to_string()),
            "ANTACA_EKYC_CALLBACK_SECRET" => Some("secret-987".to_string()),
            "ANTACA_ZPK_HEX" => Some("0123456789ABCDEFFEDCBA9876543210".to_string()),
            _ => None,
        };
        let config = Config::resolve(None, env).expect("config");
        let text = config.to_redacted_toml().expect("toml");
        assert!(!text.contains("key-123456") && !text.contains("secret-987"));
        assert!(!text.contains("0123456789ABCDEF"));
        assert!(text.contains(REDACTED));
        // The printed text reads back (precedence aside, it is a valid file).
        Config::resolve(Some(("printed", &text)), no_env).expect("reads back");
    }
}
