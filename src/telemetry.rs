//! The `log` configuration section and the service's telemetry set-up (logs, traces, metrics).

use serde::{Deserialize, Serialize};
use service_kit::{
    LogFormat, Profile,
    telemetry::{Telemetry, TelemetryError},
};

/// Logging settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
}

impl LogConfig {
    /// Text lines in `local`, JSON in `cloud`.
    pub fn for_profile(profile: Profile) -> Self {
        Self {
            format: match profile {
                Profile::Local => LogFormat::Text,
                Profile::Cloud => LogFormat::Json,
            },
        }
    }
}

/// Installs the service's log subscriber, trace exporter and metrics recorder.
pub fn init(config: &LogConfig) -> Result<Telemetry, TelemetryError> {
    service_kit::telemetry::init(config.format, "valkey-sessions")
}
