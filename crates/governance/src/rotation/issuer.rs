//! Issuers: whatever makes REDCap regenerate an account's token and hands
//! over the new value.
//!
//! - `manual` (in the CLI, which owns the terminal): a person follows the
//!   printed steps ([`manual_steps`], which the SOP writes too) in REDCap's UI and types the token at a no-echo prompt
//!   or pipes it on standard input — never on the command line;
//! - [`SandboxIssuer`]: redcap-sandbox's admin endpoint
//!   (`POST /sandbox/projects/{pid}/users/{u}/token/regenerate`);
//! - [`CommandIssuer`]: an institution's program prints the token on
//!   standard output; its standard error is shown; its environment holds
//!   nothing of ours (only `PATH`, `LANG` and `HOME`).
//!
//! Every issuer's answer goes straight into the escrow: the caller
//! escrows it before anything else happens.

use std::process::Stdio;

use secrets::SecretValue;
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

/// Whose token to regenerate.
#[derive(Debug, Clone)]
pub struct Target {
    /// The `[[account]]` name.
    pub account: String,
    /// Its REDCap username.
    pub username: String,
    /// The REDCap project id.
    pub project_id: u64,
    /// The account's first token (`accounts enroll`): created, not
    /// regenerated.
    pub first: bool,
    /// Where the account stands while its token is regenerated (what the
    /// gateway does with its requests meanwhile).
    pub role: Role,
}

/// Where an account stands while its token is regenerated: what the
/// gateway does with its requests meanwhile (the `manual` issuer's and the
/// SOP's step text, [`manual_steps`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Role {
    /// Single-account mode: the gateway holds the account's requests until
    /// the switch.
    #[default]
    Single,
    /// Dual mode, first leg: this account is the pair's standby; the
    /// gateway keeps serving with `active`, nothing is held.
    Standby {
        /// The pair's active member, serving meanwhile.
        active: String,
    },
    /// Dual mode, second leg: this account was the active member; the
    /// gateway already serves with `serving` (the regenerated standby),
    /// nothing is held.
    PreviousActive {
        /// The member now serving.
        serving: String,
    },
}

/// Why an issuer gave no token. Never holds a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IssueError(pub String);

/// Obtains a new token for an account. REDCap kills the old one at that
/// moment.
#[async_trait::async_trait]
pub trait Issuer: Send + Sync {
    /// `manual`, `sandbox` or `command`.
    fn name(&self) -> &'static str;

    /// What to do when obtaining fails, for the error message.
    fn fix(&self) -> String;

    /// Regenerates the token of `target` and returns the new value.
    async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError>;
}

/// The steps a person takes in REDCap's UI to regenerate the token of
/// REDCap user `username` in `project` (a project id, or words naming it):
/// the administrator's Control Center path. The `manual` issuer prints
/// them, numbered; the SOP (`crate::sop`) writes the same text, so the
/// document and the tool never disagree. `role` says what the gateway
/// does with the account's requests meanwhile: holds them (single mode),
/// or serves them with the pair's other member (dual mode).
pub fn manual_steps(
    redcap_api_url: &str,
    username: &str,
    project: &str,
    role: &Role,
) -> [String; 4] {
    let base = redcap_base(redcap_api_url);
    let meanwhile = match role {
        Role::Single => "the gateway holds the account's requests meanwhile".to_string(),
        Role::Standby { active } => format!(
            "this account is the pair's standby: nothing is held, the gateway keeps serving with the active member `{active}`"
        ),
        Role::PreviousActive { serving } => format!(
            "this account was the pair's active member: nothing is held, the gateway already serves with `{serving}`, regenerated a moment ago"
        ),
    };
    [
        format!("Sign in to {base}/ as a REDCap administrator."),
        format!(
            "Control Center → API Tokens ({base}/ControlCenter/user_api_tokens.php); find user `{username}`, project {project}."
        ),
        format!(
            "Regenerate the token and confirm. REDCap deactivates the old token at once ({meanwhile})."
        ),
        "Copy the new token and paste it at redcap-warden's prompt (it is not echoed), or pipe it on standard input.".into(),
    ]
}

/// The steps a person takes to create the *first* token of REDCap user
/// `username` in `project` (`accounts enroll` with the `manual` issuer):
/// the Control Center's "create API token" for the user.
pub fn manual_create_steps(redcap_api_url: &str, username: &str, project: &str) -> [String; 4] {
    let base = redcap_base(redcap_api_url);
    [
        format!("Sign in to {base}/ as a REDCap administrator."),
        format!(
            "Control Center → API Tokens ({base}/ControlCenter/user_api_tokens.php): create an API token for user `{username}` in project {project}, with API Export (and API Import only if its profile allows it) and Mobile App unticked."
        ),
        "Confirm. If the user already had a token there, regenerate it instead: no token redcap-warden did not obtain may stay valid.".into(),
        "Copy the new token and paste it at redcap-warden's prompt (it is not echoed), or pipe it on standard input.".into(),
    ]
}

/// The steps a person takes in REDCap's UI to retire REDCap user
/// `username` from `project` (`accounts retire`): delete its token, then
/// remove the user from the project.
pub fn manual_retire_steps(redcap_api_url: &str, username: &str, project: &str) -> [String; 4] {
    let base = redcap_base(redcap_api_url);
    [
        format!("Sign in to {base}/ as a REDCap administrator."),
        format!(
            "Control Center → API Tokens ({base}/ControlCenter/user_api_tokens.php); find user `{username}`, project {project}; delete the token and confirm."
        ),
        format!(
            "In project {project}: User Rights → user `{username}` → Remove user (this also removes any token REDCap still holds for it)."
        ),
        "Then run `redcap-warden accounts retire` again with the same account and reason: it proves the token dead and retires the secret.".into(),
    ]
}

/// REDCap's base address: its API address without the trailing `api/`.
pub fn redcap_base(redcap_api_url: &str) -> &str {
    let base = redcap_api_url.trim_end_matches('/');
    base.strip_suffix("/api").unwrap_or(base)
}

/// redcap-sandbox's admin endpoint.
pub struct SandboxIssuer {
    base: String,
    secret: Zeroizing<String>,
    http: reqwest::Client,
}

impl SandboxIssuer {
    /// The sandbox at `base` (e.g. `http://127.0.0.1:8480`), with its
    /// `--admin-secret`.
    pub fn new(base: &str, secret: Zeroizing<String>) -> SandboxIssuer {
        SandboxIssuer {
            base: base.trim_end_matches('/').to_string(),
            secret,
            http: reqwest::Client::new(),
        }
    }
}

#[async_trait::async_trait]
impl Issuer for SandboxIssuer {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn fix(&self) -> String {
        format!(
            "check that redcap-sandbox answers at {} with the admin secret of [rotation] sandbox_admin_secret_file, then resume the rotation",
            self.base
        )
    }

    async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
        let token = format!(
            "{}/sandbox/projects/{}/users/{}/token",
            self.base, target.project_id, target.username
        );
        let regenerate = format!("{token}/regenerate");
        if target.first {
            // A token that already exists (an administrator made it
            // before enrolment) is regenerated: none that we did not
            // obtain stays valid.
            match self.call(reqwest::Method::POST, &token).await? {
                Answer::Ok(body) => return token_of(&token, &body),
                Answer::Refused(status, _) if status == reqwest::StatusCode::CONFLICT => {}
                Answer::Refused(status, why) => {
                    return Err(IssueError(format!("{token} answered {status}: {why}")));
                }
            }
        }
        match self.call(reqwest::Method::POST, &regenerate).await? {
            Answer::Ok(body) => token_of(&regenerate, &body),
            Answer::Refused(status, why) => {
                Err(IssueError(format!("{regenerate} answered {status}: {why}")))
            }
        }
    }
}

/// What an admin endpoint answered.
enum Answer {
    /// 2xx, with its body (which may hold a token).
    Ok(Zeroizing<Vec<u8>>),
    /// Another status, with the sandbox's `error` text (never a token).
    Refused(reqwest::StatusCode, String),
}

impl SandboxIssuer {
    async fn call(&self, method: reqwest::Method, url: &str) -> Result<Answer, IssueError> {
        let resp = self
            .http
            .request(method, url)
            .bearer_auth(self.secret.as_str())
            .send()
            .await
            .map_err(|e| IssueError(format!("no answer from {url}: {}", e.without_url())))?;
        let status = resp.status();
        let body = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| {
                    IssueError(format!("reading the answer of {url}: {}", e.without_url()))
                })?
                .to_vec(),
        );
        if status.is_success() {
            return Ok(Answer::Ok(body));
        }
        // The sandbox's errors are `{"error": "..."}` and never hold a token.
        let why = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Answer::Refused(status, why))
    }

    /// Deletes `target`'s token and removes the user from the project
    /// (what `accounts retire` asks a REDCap administrator to do), through
    /// the admin endpoints. Either already done counts as done. Returns
    /// what happened, for the ledger (the answers carry the deleted
    /// token's value: they are dropped unread).
    pub async fn retire(&self, target: &Target) -> Result<String, IssueError> {
        let user = format!(
            "{}/sandbox/projects/{}/users/{}",
            self.base, target.project_id, target.username
        );
        let token = format!("{user}/token");
        let mut done = Vec::new();
        for (url, did, already) in [
            (
                &token,
                "deleted its API token",
                "it had no API token (already deleted)",
            ),
            (
                &user,
                "removed the user from the project",
                "it was not a user of the project (already removed)",
            ),
        ] {
            match self.call(reqwest::Method::DELETE, url).await? {
                Answer::Ok(_) => done.push(did),
                Answer::Refused(status, _) if status == reqwest::StatusCode::NOT_FOUND => {
                    done.push(already)
                }
                Answer::Refused(status, why) => {
                    return Err(IssueError(format!("{url} answered {status}: {why}")));
                }
            }
        }
        Ok(format!(
            "the sandbox's admin endpoints: {} of `{}` in project {}",
            done.join(", then "),
            target.username,
            target.project_id
        ))
    }
}

fn token_of(url: &str, body: &[u8]) -> Result<SecretValue, IssueError> {
    #[derive(serde::Deserialize)]
    struct Issued {
        token: String,
    }
    let answer: Issued = serde_json::from_slice(body)
        .map_err(|_| IssueError(format!("{url} answered 200 without a token field")))?;
    Ok(SecretValue::new(answer.token))
}

/// An institution's program that regenerates the token and prints it.
pub struct CommandIssuer {
    argv: Vec<String>,
}

impl CommandIssuer {
    /// `argv[0]` run with `argv[1..]`; `{account}`, `{username}`,
    /// `{project_id}` and `{action}` (`create` for an account's first
    /// token, `regenerate` otherwise) in the arguments are replaced.
    pub fn new(argv: Vec<String>) -> CommandIssuer {
        CommandIssuer { argv }
    }
}

#[async_trait::async_trait]
impl Issuer for CommandIssuer {
    fn name(&self) -> &'static str {
        "command"
    }

    fn fix(&self) -> String {
        "fix the program named in [rotation] command (its standard error is shown above), then resume the rotation".into()
    }

    async fn obtain(&self, target: &Target) -> Result<SecretValue, IssueError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(IssueError("[rotation] command is empty".into()));
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{account}", &target.account)
                    .replace("{username}", &target.username)
                    .replace("{project_id}", &target.project_id.to_string())
                    .replace(
                        "{action}",
                        if target.first { "create" } else { "regenerate" },
                    )
            })
            .collect();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&args)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for keep in ["PATH", "LANG", "HOME"] {
            if let Some(v) = std::env::var_os(keep) {
                cmd.env(keep, v);
            }
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| IssueError(format!("cannot run `{program}`: {e}")))?;
        let mut out = Zeroizing::new(Vec::new());
        if let Some(mut stdout) = child.stdout.take() {
            stdout
                .read_to_end(&mut out)
                .await
                .map_err(|e| IssueError(format!("reading the output of `{program}`: {e}")))?;
        }
        let status = child
            .wait()
            .await
            .map_err(|e| IssueError(format!("waiting for `{program}`: {e}")))?;
        if !status.success() {
            return Err(IssueError(format!("`{program}` failed ({status})")));
        }
        let text = std::str::from_utf8(&out)
            .map_err(|_| IssueError(format!("`{program}` printed something that is not text")))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(IssueError(format!("`{program}` printed nothing")));
        }
        if token.lines().count() > 1 {
            return Err(IssueError(format!(
                "`{program}` printed more than one line; it must print the token alone"
            )));
        }
        Ok(SecretValue::new(token.to_string()))
    }
}
