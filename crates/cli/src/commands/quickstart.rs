//! `quickstart`: the whole procedure on one machine, with nothing to
//! install. It starts redcap-sandbox (a REDCap API emulator) and the
//! gateway with the embedded defaults, and on first run seeds a three-site
//! study: a project with two Data Access Groups, one least-privilege
//! service account per site bound to its DAG (and a rights manager and a
//! log reader, the project's creator removed, so `rights check` starts
//! clean and `reconcile` can read REDCap's log), their tokens in the
//! age-encrypted store, and a client key per site application in a 0600
//! file. It prints the gateway's URL and a PyCap snippet, and serves until
//! Ctrl-C. Run it again in the same directory to pick up where it stopped.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use redcap_sandbox::{Config as SandboxConfig, Server};
use secrets::{Label, SecretName, SecretValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Outcome;
use crate::args::{Args, Command};
use crate::operator::Operator;
use crate::store::{load_config, open_store};

/// The sites of the demo study: (site name, DAG label, service account).
pub(super) const SITES: [(&str, &str, &str); 3] = [
    ("site-a", "Site A", "svc_heart_site_a"),
    ("site-b", "Site B", "svc_heart_site_b"),
    ("site-c", "Site C", "svc_heart_site_c"),
];

/// The study's rights-manager account (no site, no DAG).
const RIGHTS_MANAGER: &str = "svc_heart_rights";

/// The study's log-reader account (no site, no DAG): reads REDCap's log
/// for `reconcile` and the API-only check of `rights check`.
const LOG_READER: &str = "svc_heart_log";

/// The sandbox's own credentials (it plays REDCap; these are test
/// credentials, kept in a 0600 file so a restart finds them).
#[derive(Serialize, Deserialize)]
struct SandboxCredentials {
    super_token: String,
    admin_secret: String,
}

pub struct Listen {
    pub sandbox: std::net::SocketAddr,
    pub gateway: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    /// Whether `--sandbox-listen` was given (else a later run serves the
    /// sandbox where warden.toml's `[redcap] url` says it is).
    pub sandbox_given: bool,
}

impl Listen {
    /// The addresses given, else the defaults: fixed ports for the
    /// quickstart (its README snippet names them), free ones for the tour
    /// (so it runs beside a quickstart, and in CI).
    pub fn chosen(
        sandbox: Option<std::net::SocketAddr>,
        gateway: Option<std::net::SocketAddr>,
        admin: Option<std::net::SocketAddr>,
        tour: bool,
    ) -> anyhow::Result<Listen> {
        let free = || -> anyhow::Result<std::net::SocketAddr> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
        };
        let pick = |given: Option<std::net::SocketAddr>, port: u16| match (given, tour) {
            (Some(a), _) => Ok(a),
            (None, true) => free(),
            (None, false) => Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        };
        Ok(Listen {
            sandbox_given: sandbox.is_some(),
            sandbox: pick(sandbox, 8480)?,
            gateway: pick(gateway, 8470)?,
            admin: pick(admin, 8471)?,
        })
    }
}

pub fn run(args: &Args, dir: Option<&Path>, listen: Listen, tour: bool) -> anyhow::Result<Outcome> {
    let listen = &listen;
    let operator = Operator::current(args.operator.as_deref())?;
    let dir = dir.unwrap_or(Path::new(if tour {
        "warden-tour"
    } else {
        "warden-quickstart"
    }));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let config_path = dir.join("warden.toml");
    let fresh = !config_path.exists();
    if tour && !fresh {
        bail!(
            "{} already holds an installation; the tour starts from nothing: remove the directory, or choose another with --dir",
            dir.display()
        );
    }
    if fresh && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty and holds no quickstart; choose an empty directory with --dir",
            dir.display()
        );
    }
    // A later run serves the sandbox where the installation expects it (a
    // tour's, on the port it was given).
    let mut listen = Listen { ..*listen };
    if !fresh
        && !listen.sandbox_given
        && let Some(addr) = sandbox_addr(&config_path)
    {
        listen.sandbox = addr;
    }
    let listen = &listen;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let credentials = sandbox_credentials(dir)?;
        let mut sc = SandboxConfig::for_tests(dir.join("sandbox"));
        sc.listen = listen.sandbox;
        sc.super_token = Some(credentials.super_token.clone());
        sc.admin_secret = Some(credentials.admin_secret.clone());
        let sandbox = Server::start(sc).await.with_context(|| {
            format!(
                "starting redcap-sandbox on {} (choose another port with --sandbox-listen)",
                listen.sandbox
            )
        })?;
        let result = async {
            if fresh {
                seed(dir, &config_path, &sandbox, &credentials, listen, &operator).await?;
            }
            let config = load_config(&config_path)?;
            let store = open_store(&config)?;
            let gateway = super::serve::start_gateway(&config, store, &operator).await?;
            if tour {
                let toured = super::tour::run(&super::tour::Installation {
                    dir,
                    config_path: &config_path,
                    sandbox_url: &sandbox.api_url,
                    gateway: gateway.addr,
                    operator: &operator,
                })
                .await;
                gateway.shutdown().await?;
                return toured;
            }
            print_welcome(dir, &config_path, &sandbox, &gateway);
            super::serve::shutdown_signal().await;
            eprintln!("stopping the gateway and the sandbox");
            gateway.shutdown().await?;
            anyhow::Ok(Outcome::Clean)
        }
        .await;
        sandbox.stop().await.ok();
        result
    })
}

/// The address of `[redcap] url` in an installation's warden.toml, when
/// it is a loopback address (the quickstart's own sandbox).
fn sandbox_addr(config_path: &Path) -> Option<std::net::SocketAddr> {
    let config = load_config(config_path).ok()?;
    let url = config.config.redcap.url();
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority
        .parse::<std::net::SocketAddr>()
        .ok()
        .filter(|a| a.ip().is_loopback())
}

/// Creates `path` with `text`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn sandbox_credentials(dir: &Path) -> anyhow::Result<SandboxCredentials> {
    let path = dir.join("sandbox-credentials.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged; start again in an empty directory",
                path.display()
            )
        });
    }
    let creds = SandboxCredentials {
        super_token: random_hex(32),
        admin_secret: random_hex(24),
    };
    write_private(&path, &serde_json::to_string_pretty(&creds)?)?;
    Ok(creds)
}

/// Upper case, as REDCap writes its tokens.
fn random_hex(bytes: usize) -> String {
    durable::random_hex(bytes).to_ascii_uppercase()
}

/// A small REDCap client for seeding the sandbox.
struct Seeder {
    http: reqwest::Client,
    api: String,
    base: String,
    admin_secret: String,
}

impl Seeder {
    async fn api(&self, params: &[(&str, &str)]) -> anyhow::Result<String> {
        let r = self.http.post(&self.api).form(params).send().await?;
        let status = r.status();
        let body = r.text().await?;
        if !status.is_success() {
            bail!(
                "seeding the sandbox: {} answered {status}: {body}",
                params.iter().find(|p| p.0 == "content").map_or("", |p| p.1)
            );
        }
        Ok(body)
    }

    async fn admin(&self, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin_secret);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("seeding the sandbox: {path} answered {status}: {v}");
        }
        Ok(v)
    }
}

/// First run: the study in the sandbox, then warden's own setup around it.
async fn seed(
    dir: &Path,
    config_path: &Path,
    sandbox: &Server,
    credentials: &SandboxCredentials,
    listen: &Listen,
    operator: &Operator,
) -> anyhow::Result<()> {
    let s = Seeder {
        http: reqwest::Client::new(),
        api: sandbox.api_url.clone(),
        base: format!("http://{}", sandbox.addr),
        admin_secret: credentials.admin_secret.clone(),
    };
    let project = json!([{"project_title": "HEART-2 multi-site trial (quickstart)", "purpose": 2}])
        .to_string();
    let owner = s
        .api(&[
            ("token", &credentials.super_token),
            ("content", "project"),
            ("format", "json"),
            ("data", &project),
        ])
        .await?;
    let owner = owner.trim().to_string();
    let info: Value = serde_json::from_str(
        &s.api(&[
            ("token", &owner),
            ("content", "project"),
            ("format", "json"),
        ])
        .await?,
    )?;
    let pid = info["project_id"]
        .as_u64()
        .context("project info without project_id")?;
    let metadata = json!([
        {"field_name": "record_id", "form_name": "enrolment", "field_type": "text", "field_label": "Participant ID"},
        {"field_name": "enrol_date", "form_name": "enrolment", "field_type": "text", "field_label": "Enrolment date", "text_validation_type_or_show_slider_number": "date_ymd"},
        {"field_name": "age", "form_name": "enrolment", "field_type": "text", "field_label": "Age", "text_validation_type_or_show_slider_number": "integer"},
        {"field_name": "visit_date", "form_name": "visit", "field_type": "text", "field_label": "Visit date", "text_validation_type_or_show_slider_number": "date_ymd"},
        {"field_name": "sbp", "form_name": "visit", "field_type": "text", "field_label": "Systolic BP", "text_validation_type_or_show_slider_number": "integer"}
    ]);
    s.api(&[
        ("token", &owner),
        ("content", "metadata"),
        ("format", "json"),
        ("data", &metadata.to_string()),
    ])
    .await?;
    let dags: Vec<Value> = SITES
        .iter()
        .map(|(_, label, _)| json!({"data_access_group_name": label, "unique_group_name": ""}))
        .collect();
    s.api(&[
        ("token", &owner),
        ("content", "dag"),
        ("action", "import"),
        ("format", "json"),
        ("data", &Value::Array(dags).to_string()),
    ])
    .await?;
    let dags: Vec<Value> = serde_json::from_str(
        &s.api(&[("token", &owner), ("content", "dag"), ("format", "json")])
            .await?,
    )?;
    let dag = |label: &str| -> anyhow::Result<(String, u64)> {
        let d = dags
            .iter()
            .find(|d| d["data_access_group_name"] == label)
            .context("a seeded DAG is missing")?;
        Ok((
            d["unique_group_name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            d["data_access_group_id"]
                .as_u64()
                .context("DAG without id")?,
        ))
    };
    let records = json!([
        {"record_id": "1", "enrol_date": "2026-01-12", "age": "61", "redcap_data_access_group": dag("Site A")?.0},
        {"record_id": "2", "enrol_date": "2026-02-03", "age": "57", "redcap_data_access_group": dag("Site A")?.0},
        {"record_id": "3", "enrol_date": "2026-02-19", "age": "70", "redcap_data_access_group": dag("Site B")?.0},
        {"record_id": "4", "enrol_date": "2026-03-02", "age": "49", "redcap_data_access_group": dag("Site C")?.0}
    ]);
    s.api(&[
        ("token", &owner),
        ("content", "record"),
        ("format", "json"),
        ("data", &records.to_string()),
    ])
    .await?;

    // One least-privilege account per site, bound to its DAG (redcap-api.md §11).
    let expiration = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365))
        .strftime("%Y-%m-%d")
        .to_string();
    let mut tokens = Vec::new();
    for (site, label, username) in SITES {
        let (unique, _) = dag(label)?;
        s.admin(
            &format!("/sandbox/projects/{pid}/users"),
            Some(json!({
                "username": username, "expiration": expiration, "data_access_group": unique,
                "api_export": 1, "api_import": 1, "record_create": 1,
                "record_delete": 0, "record_rename": 0, "user_rights": 0, "design": 0,
                "data_access_groups": 0, "mobile_app": 0,
                "forms": {"enrolment": 1, "visit": 1}, "forms_export": {"enrolment": 1, "visit": 1}
            })),
        )
        .await?;
        let t = s
            .admin(
                &format!("/sandbox/projects/{pid}/users/{username}/token"),
                None,
            )
            .await?;
        let token = t["token"]
            .as_str()
            .context("the sandbox issued no token")?
            .to_string();
        tokens.push((site, SecretValue::new(token)));
    }

    // The study's rights manager (profile "rights-manager"): `rights check`
    // reads every account's rights through it.
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({
            "username": RIGHTS_MANAGER, "expiration": expiration,
            "api_export": 1, "api_import": 1, "user_rights": 1, "data_access_groups": 1,
            "record_create": 0, "record_delete": 0, "record_rename": 0, "design": 0,
            "mobile_app": 0, "forms": {"enrolment": 0, "visit": 0},
            "forms_export": {"enrolment": 0, "visit": 0}
        })),
    )
    .await?;
    let t = s
        .admin(
            &format!("/sandbox/projects/{pid}/users/{RIGHTS_MANAGER}/token"),
            None,
        )
        .await?;
    let manager_token = t["token"]
        .as_str()
        .context("the sandbox issued no token")?
        .to_string();
    // The study's log reader (profile "log-reader"): API Export, Logging,
    // and the de-identified export right Export Logging demands.
    s.admin(
        &format!("/sandbox/projects/{pid}/users"),
        Some(json!({
            "username": LOG_READER, "expiration": expiration,
            "api_export": 1, "api_import": 0, "logging": 1, "user_rights": 0,
            "data_access_groups": 0, "record_create": 0, "record_delete": 0,
            "record_rename": 0, "design": 0, "mobile_app": 0,
            "forms": {"enrolment": 0, "visit": 0},
            "forms_export": {"enrolment": 2, "visit": 2}
        })),
    )
    .await?;
    let t = s
        .admin(
            &format!("/sandbox/projects/{pid}/users/{LOG_READER}/token"),
            None,
        )
        .await?;
    let reader_token = t["token"]
        .as_str()
        .context("the sandbox issued no token")?
        .to_string();
    // The project's creator (the super token's user) holds every right,
    // API access included: as in a real handover, the governed accounts
    // remain and the creator leaves, so `rights check` starts clean.
    let users: Vec<Value> = serde_json::from_str(
        &s.api(&[
            ("token", &manager_token),
            ("content", "user"),
            ("format", "json"),
        ])
        .await?,
    )?;
    let ours = |u: &str| {
        u == RIGHTS_MANAGER || u == LOG_READER || SITES.iter().any(|(_, _, name)| *name == u)
    };
    for user in &users {
        let name = user["username"].as_str().unwrap_or_default();
        if !ours(name) {
            // Deleting users needs Delete Record too (redcap-api.md §4.1),
            // which the rights manager rightly lacks: the creator removes
            // itself.
            s.api(&[
                ("token", &owner),
                ("content", "user"),
                ("action", "delete"),
                ("format", "json"),
                ("users[0]", name),
            ])
            .await?;
        }
    }
    tokens.push(("rights", SecretValue::new(manager_token)));
    tokens.push(("log", SecretValue::new(reader_token)));

    // warden's setup: config with the study, store, ledger, tokens, keys.
    let mut extra = format!(
        "\n[gateway]\nlisten = \"{}\"\nadmin_listen = \"{}\"\n\n[[study]]\nname = \"heart2\"\nproject_id = {pid}\nrights_manager = \"heart2-rights\"\nlog_reader = \"heart2-log\"\n",
        listen.gateway, listen.admin
    );
    for (site, label, _) in SITES {
        extra.push_str(&format!(
            "\n[[study.site]]\nname = \"{site}\"\ndag_id = {}\n",
            dag(label)?.1
        ));
    }
    // The rights seeded above: site-data-import plus full-data export.
    extra.push_str("\n[[profile]]\nname = \"heart2-site\"\nextends = \"site-data-import\"\nforms_export = [\"*:full_data_set\"]\n");
    for (site, _, username) in SITES {
        extra.push_str(&format!(
            "\n[[account]]\nname = \"heart2-{site}\"\nusername = \"{username}\"\nsecret = \"redcap/heart2/{site}\"\nstudy = \"heart2\"\nsite = \"{site}\"\nprofile = \"heart2-site\"\n"
        ));
    }
    extra.push_str(&format!(
        "\n[[account]]\nname = \"heart2-rights\"\nusername = \"{RIGHTS_MANAGER}\"\nsecret = \"redcap/heart2/rights\"\nstudy = \"heart2\"\nprofile = \"rights-manager\"\n"
    ));
    extra.push_str(&format!(
        "\n[[account]]\nname = \"heart2-log\"\nusername = \"{LOG_READER}\"\nsecret = \"redcap/heart2/log\"\nstudy = \"heart2\"\nprofile = \"log-reader\"\n"
    ));
    for (site, _, _) in SITES {
        extra.push_str(&format!(
            "\n[[client]]\nname = \"{site}-app\"\naccount = \"heart2-{site}\"\nallow = [\"record:export\", \"record:import\", \"metadata:export\", \"exportFieldNames\", \"instrument\", \"project\", \"version\"]\n# PyCap cannot send a reason header; production clients should use \"required\".\nwrite_reason = \"optional\"\n"
        ));
    }
    // Rotations regenerate tokens through the sandbox's admin endpoint (in
    // REDCap a person does it in the Control Center: issuer "manual"), so
    // `rotate run heart2-site-a --reason R` works here as it stands.
    write_private(
        &dir.join("sandbox-admin-secret"),
        &format!("{}\n", credentials.admin_secret),
    )?;
    extra.push_str(&format!(
        "\n[rotation]\n# The demo's REDCap is redcap-sandbox; against a real REDCap use \"manual\" (or \"command\").\nissuer = \"sandbox\"\nsandbox_url = \"{}\"\nsandbox_admin_secret_file = \"sandbox-admin-secret\"\n",
        s.base
    ));
    // A demonstration SOP (`redcap-warden sop --out sop`): the roles are
    // placeholders for an institution to replace.
    extra.push_str(&format!(
        "\n[sop]\ndocument_id = \"SOP-QUICKSTART\"\nversion = \"0.1\"\nowner = {{ name = \"{op}\", deputy = \"(deputy owner)\" }}\napprover = {{ name = \"(approver)\", deputy = \"(deputy approver)\" }}\noperator = {{ name = \"{op}\", deputy = \"(deputy operator)\" }}\nredcap_admin = {{ name = \"(REDCap administrator)\", deputy = \"(deputy administrator)\" }}\n\n[[sop.revision]]\nversion = \"0.1\"\ndate = \"{date}\"\nauthor = \"{op}\"\nchange = \"generated by quickstart\"\n",
        op = operator.login,
        date = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC).date(),
    ));
    // `init` runs its own runtime: give it a thread of its own.
    let (path, url, op) = (
        config_path.to_path_buf(),
        sandbox.api_url.clone(),
        operator.clone(),
    );
    tokio::task::spawn_blocking(move || super::init::create(&path, &url, Some("UTC"), &extra, &op))
        .await??;
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let trail = crate::store::open_trail(&config, &*store).await?;
    for (site, token) in tokens {
        let name = SecretName::new(&format!("redcap/heart2/{site}")).map_err(anyhow::Error::msg)?;
        super::secrets::store_version(
            &*store,
            &trail,
            &name,
            token,
            Label::Current,
            "quickstart: service account token",
            operator,
        )
        .await?;
    }
    trail.close().await?;
    drop(store);
    std::fs::create_dir_all(dir.join("keys"))?;
    for (site, _, _) in SITES {
        let path: PathBuf = dir.join("keys").join(format!("{site}-app.key"));
        let args = Args {
            config: config_path.to_path_buf(),
            json: false,
            log_format: crate::args::LogFormat::Text,
            operator: operator.stated_name.clone(),
            command: Command::Serve,
        };
        let client = format!("{site}-app");
        // `keys issue` runs its own runtime: give it a thread of its own.
        tokio::task::spawn_blocking(move || {
            super::keys::issue(
                &args,
                &client,
                None,
                Some(&path),
                "quickstart: site application key",
            )
        })
        .await??;
    }
    Ok(())
}

fn print_welcome(dir: &Path, config: &Path, sandbox: &Server, gateway: &gateway::RunningGateway) {
    let key = dir.join("keys/site-a-app.key");
    println!();
    println!(
        "redcap-sandbox (a REDCap API emulator): {}",
        sandbox.api_url
    );
    println!(
        "redcap-warden gateway:                  http://{}/api/",
        gateway.addr
    );
    println!(
        "client keys (mode 0600):                {}/keys/site-a-app.key, site-b-app.key, site-c-app.key",
        dir.display()
    );
    println!();
    println!("Use REDCap through the gateway with PyCap (pip install pycap):");
    println!();
    println!("python3 - <<'PY'");
    println!("from redcap import Project");
    println!("key = open({:?}).read().strip()", key.display().to_string());
    println!("project = Project(\"http://{}/api/\", key)", gateway.addr);
    println!("print(project.export_records())   # site A sees only site A's participants");
    println!("PY");
    println!();
    println!(
        "Every call is in the ledger:  redcap-warden --config {} ledger tail",
        config.display()
    );
    println!(
        "Check the ledger:             redcap-warden --config {} ledger verify",
        config.display()
    );
    println!(
        "Check the accounts' rights:   redcap-warden --config {} rights check",
        config.display()
    );
    // From now on: what the seeding itself did (users added, DAGs made)
    // would be access changes.
    println!(
        "Pair REDCap's log with it:    redcap-warden --config {} reconcile --since {}",
        config.display(),
        jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    println!("Ctrl-C stops the gateway and the sandbox; run quickstart again to resume.");
}
