//! `serve`: the gateway in the foreground.

use std::sync::Arc;

use anyhow::Context;
use gateway::RunningGateway;
use governance::{audit, signing_key};
use secrets::{FingerprintKey, SecretStore};
use warden_config::LoadedConfig;

use crate::Outcome;
use crate::args::{Args, LogFormat};
use crate::operator::Operator;
use crate::store::{load_config, open_store};

pub fn run(args: &Args) -> anyhow::Result<Outcome> {
    log_to_stderr(args.log_format);
    let operator = Operator::current(args.operator.as_deref())?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let running = start_gateway(&config, store.clone(), &operator).await?;
        // REDCap's log against the ledger, on a schedule (docs/reconcile.md).
        let reconciling =
            super::reconcile::spawn_schedule(config.clone(), store.clone(), operator.to_string());
        let sweeper = tokio::spawn(sweep_daily(config.clone(), store.clone(), operator.to_string()));
        let overdue = tokio::spawn(overdue_daily(config.clone(), store));
        let format = args.log_format;
        say(
            format,
            &format!(
                "redcap-warden gateway: REDCap API at http://{}/api/ (forwarding to {})",
                running.addr,
                config.config.redcap.url()
            ),
        );
        say(
            format,
            &format!(
                "admin: http://{}/health, dashboard http://{}/dashboard (the admin credential is the password); stop with Ctrl-C, reload with SIGHUP",
                running.admin_addr, running.admin_addr
            ),
        );
        serve_until_stopped(&running, &operator.to_string()).await;
        crate::notify::tell("STOPPING=1");
        if let Some(task) = reconciling {
            task.abort();
        }
        sweeper.abort();
        overdue.abort();
        say(
            format,
            "stopping: draining requests, signing a final checkpoint",
        );
        running.shutdown().await?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Clean)
}

/// Re-authorisation's sweep (`reauth sweep`) inside the gateway: once at
/// start, then every 24 hours (an hour after a failed one). It records
/// through the gateway's own admin listener, as any command does while the
/// gateway holds the ledger. Nothing runs when no account is re-authorised.
/// The ledger is read once in all: each sweep takes in only the entries
/// written since the one before.
async fn sweep_daily(config: LoadedConfig, store: Arc<dyn SecretStore>, operator: String) {
    if super::reauth::governed(&config).next().is_none() {
        return;
    }
    let clock = governance::clock::configured();
    // The ledger's facts so far: each sweep reads only the entries since.
    let mut facts = governance::reauth::LedgerFacts::default();
    loop {
        let next = match super::reauth::sweep_once(&config, &*store, &operator, &*clock, &mut facts)
            .await
        {
            Ok(lapsed) => {
                for (account, cause) in lapsed {
                    tracing::warn!(account = %account, "re-authorisation lapsed: {cause}");
                }
                24 * 3600
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the re-authorisation sweep failed; it runs again in an hour");
                3600
            }
        };
        tokio::time::sleep(std::time::Duration::from_secs(next)).await;
    }
}

/// Tells the service manager the gateway is ready (`READY=1`, when started
/// with `Type=notify`), then waits for Ctrl-C or SIGTERM. Each SIGHUP
/// meanwhile reloads as `reload` does, framed by `RELOADING=1` and
/// `READY=1`. The handlers are installed before `READY=1`, so a SIGHUP
/// right after it reloads instead of ending the process.
async fn serve_until_stopped(running: &RunningGateway, operator: &str) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut hup = signal(SignalKind::hangup()).expect("installing a SIGHUP handler");
    crate::notify::tell("READY=1\nSTATUS=serving");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                crate::notify::tell("RELOADING=1\nSTATUS=reloading warden.toml");
                match running.reload(operator, "SIGHUP").await {
                    Ok(done) => {
                        tracing::info!(
                            changes = %done.changes.join("; "),
                            recorded = done.recorded,
                            "reloaded on SIGHUP"
                        );
                        for r in &done.restart_required {
                            tracing::warn!(change = %r, "needs a restart to take effect");
                        }
                    }
                    Err(e) => tracing::error!(
                        error = %e,
                        "SIGHUP: not reloaded; the gateway keeps the configuration it had"
                    ),
                }
                crate::notify::tell("READY=1\nSTATUS=serving");
            }
        }
    }
}

/// A line for the operator: as is in text mode, a log event in JSON mode
/// (so stderr stays one JSON object a line).
fn say(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => eprintln!("{line}"),
        LogFormat::Json => tracing::info!("{line}"),
    }
}

/// Overdue rotations, once at start and then every 24 hours: each account
/// past its `rotate_every_days` is an `alert` (`rotation.overdue`),
/// recorded through the gateway's admin listener like any command's
/// entry — and so sent to the webhook and syslog (`[alerts]`).
async fn overdue_daily(config: LoadedConfig, store: Arc<dyn SecretStore>) {
    loop {
        let alerts = super::rotate::overdue_alerts(&config, &*store, jiff::Timestamp::now()).await;
        if !alerts.is_empty() {
            let recorded = async {
                let trail = crate::store::open_trail(&config, &*store).await?;
                for a in alerts {
                    trail.record(a).await?;
                }
                anyhow::Ok(trail.close().await?)
            };
            if let Err(e) = recorded.await {
                tracing::error!(error = %format!("{e:#}"), "overdue rotations could not be recorded");
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
    }
}

/// The gateway's own log lines (an outage, a reopen, a quarantine that
/// could not be saved…) go to stderr, where the service manager keeps them;
/// `RUST_LOG` chooses how much (default `info`). `--log-format json` writes
/// one JSON object a line (`timestamp`, `level`, `target`, `message`, the
/// event's fields). They never hold a token.
fn log_to_stderr(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// Opens the ledger with the signing key from the store and starts the
/// gateway's listeners.
pub async fn start_gateway(
    config: &LoadedConfig,
    store: Arc<dyn SecretStore>,
    operator: &Operator,
) -> anyhow::Result<RunningGateway> {
    let (signing, _) = signing_key::load_signing_key(config, &*store).await?;
    let fingerprint = FingerprintKey::load(&*store)
        .await
        .context("reading the fingerprint key")?;
    // The configured backend: the file ledger, or PostgreSQL.
    // The witness of the latest checkpoint is kept in the store too
    // (docs/ledger.md §11): the gateway opens its writer with it.
    let ledger_config = config.clone();
    let witness_store = store.clone();
    // `[alerts]`: one sender for the writer's own alerts and the gateway's.
    let alerts = governance::alerts::Alerts::from_config(config, &*store).await;
    let writer_alerts = alerts.clone();
    let open_ledger: gateway::LedgerOpener = Arc::new(move || {
        audit::open_writer_with(
            &ledger_config,
            signing.clone(),
            Some(std::time::Duration::from_secs(1)),
            audit::WriterOptions {
                store: Some(witness_store.clone()),
                alerts: writer_alerts.clone(),
                ..Default::default()
            },
        )
    });
    let keys = gateway::cluster::key_file(config)?;
    let running = gateway::start(gateway::Services {
        config: config.clone(),
        store: store.clone(),
        fingerprint,
        open_ledger,
        keys,
        operator: operator.to_string(),
        alerts,
        clock: Arc::new(governance::clock_sync::SystemProbe),
    })
    .await?;
    // The dashboard shows what `report` gathers.
    running.set_evidence_source(Arc::new(super::report::DashboardEvidence::new(
        config.clone(),
        store,
    )));
    Ok(running)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `reload`: POST /admin/reload on the running gateway.
pub fn reload(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let gw = &config.config.gateway;
    let token_file = config.resolve(&gw.admin_token_file);
    let token = std::fs::read_to_string(&token_file).with_context(|| {
        format!(
            "reading the gateway's admin credential {} (has the gateway been started?)",
            token_file.display()
        )
    })?;
    let url = format!("http://{}/admin/reload", gw.admin_listen);
    let answer: serde_json::Value = super::runtime()?.block_on(async {
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .with_context(|| {
                format!("no gateway answers at {url}; is `redcap-warden serve` running?")
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .context("the gateway's answer is not JSON")?;
        if !status.is_success() {
            anyhow::bail!(
                "the gateway did not reload ({status}): {}",
                body["error"].as_str().unwrap_or_default()
            );
        }
        anyhow::Ok(body)
    })?;
    if args.json {
        println!("{answer}");
        return Ok(Outcome::Clean);
    }
    let changes = answer["changes"].as_array().cloned().unwrap_or_default();
    if changes.is_empty() {
        println!("Reloaded; warden.toml is unchanged.");
    } else {
        println!("Reloaded; changes:");
        for c in &changes {
            println!("  {}", c.as_str().unwrap_or_default());
        }
    }
    for r in answer["restart_required"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        println!(
            "needs a restart to take effect: {}",
            r.as_str().unwrap_or_default()
        );
    }
    Ok(Outcome::Clean)
}
