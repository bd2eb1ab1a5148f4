//! The sections of `warden.toml`, one type each, and the checks serde cannot
//! express. Every struct denies unknown keys: a misspelt key is an error, not
//! a silently ignored line.

use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer};

/// `[redcap]`: the REDCap server whose tokens are governed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedcapSection {
    /// The API endpoint, ending in `/api/` as REDCap's clients require.
    pub url: String,
    /// The REDCap server's time zone, from its IANA name. REDCap writes its
    /// log timestamps in server-local time without a zone, to the minute;
    /// reconciliation needs this to compare them with the ledger's UTC.
    #[serde(deserialize_with = "time_zone")]
    pub time_zone: TimeZone,
}

impl RedcapSection {
    /// The configured API endpoint (`[redcap] url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The configured zone.
    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }
}

fn time_zone<'de, D: Deserializer<'de>>(d: D) -> Result<TimeZone, D::Error> {
    let name = String::deserialize(d)?;
    parse_time_zone(&name).map_err(serde::de::Error::custom)
}

/// REDCap's API lives at `<base>/api/`; https is required except on
/// loopback, where the sandbox and tests run.
pub(crate) fn check_redcap_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("`{raw}` is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{raw}` uses plain http to a non-loopback host; tokens would cross the network unencrypted"
            ));
        }
        other => {
            return Err(format!(
                "`{raw}` has scheme `{other}`; REDCap is reached over https"
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL carries a user name or password; credentials never go in warden.toml".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{raw}` has a query or fragment; REDCap's API takes neither"
        ));
    }
    if !url.path().ends_with("/api/") {
        return Err(format!(
            "`{raw}` does not end in `/api/`; REDCap's API endpoint is the `api/` folder of the REDCap base URL"
        ));
    }
    Ok(())
}

/// A zone by its IANA name.
pub(crate) fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name)
        .map_err(|_| format!("`{name}` is not a time zone name known to the IANA database"))
}
