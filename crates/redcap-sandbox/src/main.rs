//! `redcap-sandbox`: run the REDCap emulator, or drive its admin endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use redcap::RedcapVersion;
use redcap_sandbox::{Config, Server};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(
    name = "redcap-sandbox",
    version,
    about = "A faithful REDCap API emulator for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REDCap API on /api/ and the admin endpoints on /sandbox/.
    Serve(ServeArgs),
    /// Call the admin endpoints of a running sandbox.
    Admin(AdminArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory holding the state (created if missing); survives restarts.
    #[arg(long)]
    data: PathBuf,
    /// A 64-hex super token for the `site_admin` administrator account.
    #[arg(long, conflicts_with = "super_token_file")]
    super_token: Option<String>,
    /// Read the super token from this file (a trailing newline is removed).
    #[arg(long)]
    super_token_file: Option<PathBuf>,
    /// Secret guarding /sandbox/ (Authorization: Bearer <secret>).
    #[arg(long, env = "REDCAP_SANDBOX_ADMIN_SECRET")]
    admin_secret: Option<String>,
    /// The URL clients reach the sandbox at (written into page-view rows).
    #[arg(long)]
    public_url: Option<String>,
    /// Server time zone for log timestamps (IANA name); default: the system's.
    #[arg(long)]
    timezone: Option<String>,
    /// REDCap version to play; selects encodings (bitmask form rights ≥ 15.6).
    #[arg(long, default_value = "15.7.6")]
    redcap_version: RedcapVersion,
    /// Ban an IP for good after more than N API requests in 60 seconds
    /// (REDCap's page_hit_threshold_per_minute); off unless given.
    #[arg(long, value_name = "N")]
    page_hit_threshold: Option<u32>,
    /// An IP the rate limiter never counts (repeatable).
    #[arg(long, value_name = "IP")]
    rate_limit_exempt: Vec<std::net::IpAddr>,
}

#[derive(clap::Args)]
struct AdminArgs {
    /// Base URL of the sandbox, e.g. http://127.0.0.1:8080/.
    #[arg(
        long,
        env = "REDCAP_SANDBOX_URL",
        default_value = "http://127.0.0.1:8080/"
    )]
    url: String,
    /// The admin secret the sandbox was started with.
    #[arg(long, env = "REDCAP_SANDBOX_ADMIN_SECRET")]
    secret: String,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create (or update) an account.
    CreateUser {
        username: String,
        /// Make the account a REDCap administrator.
        #[arg(long)]
        admin: bool,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        firstname: String,
        #[arg(long, default_value = "")]
        lastname: String,
    },
    /// Add a user to a project (or update them) with an Import Users row.
    AddUser {
        project: u64,
        username: String,
        /// Rights as a JSON object in Export Users shape, e.g. '{"api_export":1,"forms":{"f":1}}'.
        #[arg(long, default_value = "{}")]
        rights: String,
        /// Unique DAG name; leaving it out removes the user from their DAG (as REDCap does).
        #[arg(long)]
        dag: Option<String>,
        /// Project access expiry, YYYY-MM-DD.
        #[arg(long)]
        expiration: Option<String>,
    },
    /// Create a user's project token.
    CreateToken { project: u64, username: String },
    /// Show a user's project token.
    ShowToken { project: u64, username: String },
    /// Regenerate a user's project token in place (the old one dies at once).
    RegenerateToken { project: u64, username: String },
    /// Delete a user's project token.
    DeleteToken { project: u64, username: String },
    /// Issue (or replace) a user's super token.
    SuperToken { username: String },
    /// Suspend an account: its tokens stop working.
    Suspend { username: String },
    /// Lift a suspension.
    Unsuspend { username: String },
    /// Set (YYYY-MM-DD) or clear (`none`) a user's project expiration.
    SetExpiration {
        project: u64,
        username: String,
        date: String,
    },
    /// Rename a DAG (its unique name is recomputed).
    RenameDag {
        project: u64,
        group_id: u64,
        name: String,
    },
    /// Record a web-UI page view by a user.
    PageView { project: u64, username: String },
    /// List projects and their users.
    ListProjects,
    /// Set a project's status: 0 development, 1 production, 2 analysis/cleanup.
    SetStatus { project: u64, status: u8 },
    /// Define a report (REDCap does it in its web UI): its fields and
    /// filter logic; prints the new `report_id`.
    DefineReport {
        project: u64,
        title: String,
        /// Field names, comma-separated (none: the record ID field).
        #[arg(long, value_delimiter = ',')]
        fields: Vec<String>,
        /// REDCap filter logic, e.g. "[age] > 40".
        #[arg(long, default_value = "")]
        filter_logic: String,
    },
    /// List IPs banned by the rate limiter.
    BannedIps,
    /// Lift an IP ban.
    Unban { ip: String },
    /// Switch the whole API on or off (`on` / `off`).
    Api { state: OnOff },
    /// List a project's surveys.
    Surveys { project: u64 },
    /// Make an instrument a survey (surveys are switched on for the project).
    EnableSurvey {
        project: u64,
        form: String,
        /// The survey's title (default: the instrument's label).
        #[arg(long, default_value = "")]
        title: String,
        /// Turn "Save & Return Later" on (return codes).
        #[arg(long)]
        save_and_return: bool,
        /// Let respondents edit completed responses.
        #[arg(long)]
        edit_completed_response: bool,
        /// Put the survey in the survey queue of every event that holds it.
        #[arg(long)]
        queue: bool,
        /// Keep the settings but mark the survey inactive.
        #[arg(long)]
        disabled: bool,
    },
    /// Record a respondent's submission of a survey for an existing record.
    SurveyResponse {
        project: u64,
        form: String,
        record: String,
        /// Unique event name (longitudinal projects; default: the first event).
        #[arg(long, default_value = "")]
        event: String,
        /// Repeat instance (default 1).
        #[arg(long)]
        instance: Option<i64>,
        /// Started but not completed.
        #[arg(long)]
        partial: bool,
        /// Submit time `YYYY-MM-DD HH:MM:SS` (default: now).
        #[arg(long)]
        time: Option<String>,
        /// The participant's email address.
        #[arg(long)]
        email: Option<String>,
        /// The participant's identifier.
        #[arg(long)]
        identifier: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Admin(args) => admin(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redcap-sandbox: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let super_token = match (&args.super_token, &args.super_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the super token file {}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        (None, None) => None,
    };
    let timezone = match &args.timezone {
        Some(name) => {
            jiff::tz::TimeZone::get(name).with_context(|| format!("unknown time zone {name:?}"))?
        }
        None => jiff::tz::TimeZone::system(),
    };
    let config = Config {
        listen: args.listen,
        data: args.data,
        super_token,
        admin_secret: args.admin_secret,
        public_url: args.public_url,
        timezone,
        version: args.redcap_version,
        page_hit_threshold: args.page_hit_threshold,
        rate_limit_exempt: args.rate_limit_exempt,
        clock_offset: jiff::SignedDuration::ZERO,
    };
    let server = Server::start(config).await?;
    eprintln!("redcap-sandbox: REDCap API at {}", server.api_url);
    shutdown_signal().await?;
    eprintln!("redcap-sandbox: stopping");
    server.stop().await
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Calls one admin endpoint and prints its JSON answer.
async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    use AdminAction as A;
    let (method, path, body): (reqwest::Method, String, Option<Value>) = match args.action {
        A::CreateUser {
            username,
            admin,
            email,
            firstname,
            lastname,
        } => (
            reqwest::Method::POST,
            "/sandbox/users".into(),
            Some(
                json!({"username": username, "administrator": admin, "email": email, "firstname": firstname, "lastname": lastname}),
            ),
        ),
        A::AddUser {
            project,
            username,
            rights,
            dag,
            expiration,
        } => {
            let mut row: serde_json::Map<String, Value> =
                serde_json::from_str(&rights).context("--rights is not a JSON object")?;
            row.insert("username".into(), username.into());
            if let Some(d) = dag {
                row.insert("data_access_group".into(), d.into());
            }
            if let Some(e) = expiration {
                row.insert("expiration".into(), e.into());
            }
            (
                reqwest::Method::POST,
                format!("/sandbox/projects/{project}/users"),
                Some(Value::Object(row)),
            )
        }
        A::CreateToken { project, username } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/users/{username}/token"),
            None,
        ),
        A::ShowToken { project, username } => (
            reqwest::Method::GET,
            format!("/sandbox/projects/{project}/users/{username}/token"),
            None,
        ),
        A::RegenerateToken { project, username } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/users/{username}/token/regenerate"),
            None,
        ),
        A::DeleteToken { project, username } => (
            reqwest::Method::DELETE,
            format!("/sandbox/projects/{project}/users/{username}/token"),
            None,
        ),
        A::SuperToken { username } => (
            reqwest::Method::POST,
            format!("/sandbox/users/{username}/super-token"),
            None,
        ),
        A::Suspend { username } => (
            reqwest::Method::POST,
            format!("/sandbox/users/{username}/suspend"),
            None,
        ),
        A::Unsuspend { username } => (
            reqwest::Method::POST,
            format!("/sandbox/users/{username}/unsuspend"),
            None,
        ),
        A::SetExpiration {
            project,
            username,
            date,
        } => {
            let expiration = if date == "none" {
                Value::Null
            } else {
                Value::String(date)
            };
            (
                reqwest::Method::PUT,
                format!("/sandbox/projects/{project}/users/{username}/expiration"),
                Some(json!({"expiration": expiration})),
            )
        }
        A::RenameDag {
            project,
            group_id,
            name,
        } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/dags/{group_id}/rename"),
            Some(json!({"name": name})),
        ),
        A::PageView { project, username } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/page-view"),
            Some(json!({"username": username})),
        ),
        A::ListProjects => (reqwest::Method::GET, "/sandbox/projects".into(), None),
        A::SetStatus { project, status } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/status"),
            Some(json!({ "status": status })),
        ),
        A::DefineReport {
            project,
            title,
            fields,
            filter_logic,
        } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/reports"),
            Some(json!({ "title": title, "fields": fields, "filter_logic": filter_logic })),
        ),
        A::Api { state } => (
            reqwest::Method::POST,
            "/sandbox/system".into(),
            Some(json!({ "api_enabled": matches!(state, OnOff::On) })),
        ),
        A::BannedIps => (reqwest::Method::GET, "/sandbox/banned-ips".into(), None),
        A::Unban { ip } => (
            reqwest::Method::DELETE,
            format!("/sandbox/banned-ips/{ip}"),
            None,
        ),
        A::Surveys { project } => (
            reqwest::Method::GET,
            format!("/sandbox/projects/{project}/surveys"),
            None,
        ),
        A::EnableSurvey {
            project,
            form,
            title,
            save_and_return,
            edit_completed_response,
            queue,
            disabled,
        } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/surveys"),
            Some(json!({
                "form": form,
                "title": title,
                "enabled": !disabled,
                "save_and_return": save_and_return,
                "edit_completed_response": edit_completed_response,
                "queue": queue,
            })),
        ),
        A::SurveyResponse {
            project,
            form,
            record,
            event,
            instance,
            partial,
            time,
            email,
            identifier,
        } => (
            reqwest::Method::POST,
            format!("/sandbox/projects/{project}/surveys/{form}/responses"),
            Some(json!({
                "record": record,
                "event": event,
                "instance": instance,
                "completed": !partial,
                "time": time,
                "email": email,
                "identifier": identifier,
            })),
        ),
    };
    let url = format!("{base}{path}");
    let mut req = client.request(method, &url).bearer_auth(&args.secret);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    println!("{text}");
    Ok(())
}
