//! Run alerts (`wandb.alert`): delivered by the server to Slack or email as configured there.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::error::Result;
use super::graphql::NOTIFY_SCRIPTABLE_RUN_ALERT;
use super::run::Run;

/// How serious an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertLevel {
    Info,
    Warn,
    Error,
}

impl AlertLevel {
    fn as_graphql(self) -> &'static str {
        match self {
            AlertLevel::Info => "INFO",
            AlertLevel::Warn => "WARN",
            AlertLevel::Error => "ERROR",
        }
    }
}

/// The official client's default: the server drops repeats of the same title within a minute.
pub const DEFAULT_ALERT_WAIT: Duration = Duration::from_secs(60);

impl Run {
    /// Sends an alert; repeats of the same title within [`DEFAULT_ALERT_WAIT`] are dropped by
    /// the server.
    pub async fn alert(&self, title: &str, text: &str, level: AlertLevel) -> Result<()> {
        self.alert_with_wait(title, text, level, DEFAULT_ALERT_WAIT)
            .await
    }

    /// Sends an alert, asking the server to drop repeats of `title` within `wait`.
    pub async fn alert_with_wait(
        &self,
        title: &str,
        text: &str,
        level: AlertLevel,
        wait: Duration,
    ) -> Result<()> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            notify_scriptable_run_alert: Option<Payload>,
        }
        #[derive(Deserialize)]
        struct Payload {
            success: bool,
        }
        let variables = json!({
            "entityName": self.entity(),
            "projectName": self.project(),
            "runName": self.id(),
            "title": title,
            "text": text,
            "severity": level.as_graphql(),
            "waitDuration": u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let transport = self.client().transport();
        let data: Data = transport
            .graphql(&NOTIFY_SCRIPTABLE_RUN_ALERT, variables)
            .await?;
        match data.notify_scriptable_run_alert {
            Some(Payload { success: true }) => Ok(()),
            _ => Err(transport.unexpected(
                &NOTIFY_SCRIPTABLE_RUN_ALERT,
                format!("the server did not accept alert {title:?}"),
            )),
        }
    }
}
