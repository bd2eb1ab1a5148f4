//! The webhook: each alert POSTed as JSON ([`super::Alert`]); any 2xx is
//! delivery. A failure (no answer in the timeout, or another status) is
//! tried again after 1, 2, 4 … s (at most 60 s apart), `retries` times.
//! Redirects are not followed: the secret header goes only where the
//! configuration says.

use std::time::Duration;

use zeroize::Zeroizing;

use super::Alert;

pub(super) struct Webhook {
    url: String,
    header: Option<(String, Zeroizing<String>)>,
    retries: u32,
    http: reqwest::Client,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        header: Option<(String, Zeroizing<String>)>,
        timeout: Duration,
        retries: u32,
    ) -> Webhook {
        Webhook {
            url: url.to_string(),
            header,
            retries,
            http: reqwest::Client::builder()
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// POSTs `alert` until it is taken or the retries are spent; `Err`
    /// says the last failure (never the secret).
    pub(super) async fn post(&self, alert: &Alert) -> Result<(), String> {
        let mut wait = Duration::from_secs(1);
        let mut attempt = 0;
        loop {
            let failure = match self.once(alert).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if attempt >= self.retries {
                return Err(format!(
                    "{failure} (tried {} time(s)); {}",
                    attempt + 1,
                    self.url
                ));
            }
            attempt += 1;
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    async fn once(&self, alert: &Alert) -> Result<(), String> {
        let mut req = self.http.post(&self.url).json(alert);
        if let Some((name, value)) = &self.header {
            let mut v = reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| "the webhook secret is not a valid header value".to_string())?;
            v.set_sensitive(true);
            req = req.header(name.as_str(), v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("no answer: {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("it answered {}", resp.status()))
        }
    }
}
