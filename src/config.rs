//! Configuration: one [`Config`] tree read from TOML (`config/vacd.toml` by default), with every
//! key overridable by an environment variable `VACD_<SECTION>__<KEY>` (for example
//! `VACD_HTTP__LISTEN=0.0.0.0:8080`, `VACD_DATABASE__URL=postgres://…`).
//!
//! Loading is two steps: [`Config::load`] merges defaults, file and environment and rejects
//! unknown keys and wrong types; [`Config::validate`] checks values that serde cannot (URLs,
//! ranges). Every error names the key, so `vacd check-config` tells an admin exactly what to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Where the configuration came from, or what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(String),
    #[error("`{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
    pub demo: DemoConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address for HTTP, the admin API and the websockets.
    pub listen: SocketAddr,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path?mode=rwc` (embedded default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of a login token, in seconds.
    pub token_ttl_seconds: u64,
    /// Bearer token of the operator, the only caller who may create, list and delete tenants.
    /// Empty disables those operations.
    pub operator_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `vacd=debug,info`.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Seed the demo tenant (see README) at start if it does not exist yet.
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/vacd.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_seconds: 12 * 3600,
            operator_token: String::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file, then `VACD_*` environment variables.
    pub fn load(path: &Path) -> Result<Config, Error> {
        if !path.exists() {
            return Err(Error::Missing(path.to_path_buf()));
        }
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(path))
            .merge(Env::prefixed("VACD_").split("__"))
            .extract()
            .map_err(|e| Error::Parse(describe(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(Error::Invalid {
                key: "database.url",
                problem: format!("`{url}` is neither a sqlite: nor a postgres:// URL"),
            });
        }
        if self.database.max_connections == 0 {
            return Err(Error::Invalid {
                key: "database.max_connections",
                problem: "must be at least 1".into(),
            });
        }
        if self.auth.token_ttl_seconds < 60 {
            return Err(Error::Invalid {
                key: "auth.token_ttl_seconds",
                problem: "must be at least 60".into(),
            });
        }
        if self.http.max_body_bytes < 1024 {
            return Err(Error::Invalid {
                key: "http.max_body_bytes",
                problem: "must be at least 1024".into(),
            });
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| Error::Invalid {
            key: "log.level",
            problem: e.to_string(),
        })?;
        Ok(())
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth.token_ttl_seconds)
    }
}

/// Figment's errors carry the key path; render every one of them on its own line.
fn describe(errors: figment::Error) -> String {
    errors
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("`{}`: ", e.path.join("."))
            };
            let origin = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            format!("{key}{}{origin}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    /// The message with which `toml` is rejected.
    fn rejection(toml: &str) -> String {
        let mut message = String::new();
        figment::Jail::expect_with(|jail| {
            jail.create_file("vacd.toml", toml)?;
            let err = Config::load(Path::new("vacd.toml")).expect_err("config must be rejected");
            message = err.to_string();
            Ok(())
        });
        message
    }

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vacd.toml");
        let config = Config::load(&path).expect("config/vacd.toml loads");
        assert!(config.demo.enabled);
        assert!(config.http.listen.ip().is_loopback());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = rejection("[http]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n");
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = rejection("[database]\nmax_connections = \"many\"\n");
        assert!(err.contains("database.max_connections"), "{err}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = rejection("[database]\nurl = \"mysql://x\"\n");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn environment_overrides_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("vacd.toml", "[http]\nlisten = \"127.0.0.1:1\"\n")?;
            jail.set_env("VACD_HTTP__LISTEN", "127.0.0.1:2");
            jail.set_env("VACD_DATABASE__MAX_CONNECTIONS", "3");
            let config = Config::load(Path::new("vacd.toml")).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen.port(), 2);
            assert_eq!(config.database.max_connections, 3);
            Ok(())
        });
    }
}
