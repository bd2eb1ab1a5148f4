//! Hooks run after the switch — the SOP's "redeploy" step: a command or a
//! webhook is told which rotation made which token `current`, by
//! fingerprint, never the token. A hook that fails stops the rotation in
//! `switched`; `rotate resume` runs it again, so a hook must be safe to
//! repeat.

use std::process::Stdio;
use std::time::Duration;

/// What a hook is told.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Switched {
    /// The rotation.
    pub rotation_id: String,
    /// The `[[account]]`.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// The REDCap project.
    pub project_id: u64,
    /// The secret now holding the new token as `current`.
    pub secret: String,
    /// The new token's fingerprint.
    pub fingerprint: String,
}

/// Something to run once the new token is `current`.
#[async_trait::async_trait]
pub trait Hook: Send + Sync {
    /// The hook as messages name it.
    fn describe(&self) -> String;
    /// Runs it; `Err` says why it failed.
    async fn run(&self, event: &Switched) -> Result<(), String>;
}

/// A program (`[rotation] after_switch`): `{account}`, `{username}`,
/// `{project_id}`, `{rotation_id}`, `{secret}` and `{fingerprint}` in its
/// arguments are replaced; its environment holds only `PATH`, `LANG` and
/// `HOME`; its standard error is shown; it must exit 0.
pub struct CommandHook {
    argv: Vec<String>,
}

impl CommandHook {
    /// `argv[0]` run with `argv[1..]`.
    pub fn new(argv: Vec<String>) -> CommandHook {
        CommandHook { argv }
    }
}

#[async_trait::async_trait]
impl Hook for CommandHook {
    fn describe(&self) -> String {
        format!(
            "the after_switch command `{}`",
            self.argv.first().map_or("", String::as_str)
        )
    }

    async fn run(&self, e: &Switched) -> Result<(), String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("[rotation] after_switch is empty".into());
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{account}", &e.account)
                    .replace("{username}", &e.username)
                    .replace("{project_id}", &e.project_id.to_string())
                    .replace("{rotation_id}", &e.rotation_id)
                    .replace("{secret}", &e.secret)
                    .replace("{fingerprint}", &e.fingerprint)
            })
            .collect();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for keep in ["PATH", "LANG", "HOME"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let status = cmd
            .status()
            .await
            .map_err(|err| format!("cannot run `{program}`: {err}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`{program}` failed ({status})"))
        }
    }
}

/// A webhook (`[rotation] after_switch_webhook`): `POST` of [`Switched`]
/// as JSON; any 2xx answer is success.
pub struct WebhookHook {
    url: String,
    http: reqwest::Client,
}

impl WebhookHook {
    /// POSTs to `url`, each call given at most 30 seconds.
    pub fn new(url: &str) -> WebhookHook {
        WebhookHook {
            url: url.to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

#[async_trait::async_trait]
impl Hook for WebhookHook {
    fn describe(&self) -> String {
        format!("the after_switch webhook {}", self.url)
    }

    async fn run(&self, e: &Switched) -> Result<(), String> {
        let resp = self
            .http
            .post(&self.url)
            .json(e)
            .send()
            .await
            .map_err(|err| format!("no answer: {}", err.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("it answered {}", resp.status()))
        }
    }
}
