//! `secrets put | list | history | check | migrate | passphrase`. No
//! command prints a value or a passphrase.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};
use std::collections::BTreeMap;

use secrets::{
    FINGERPRINT_KEY_SECRET, Fingerprint, FingerprintKey, Label, SecretName, SecretStore,
    SecretValue, Selector, StoreError, VersionId, VersionMeta,
};
use serde_json::json;
use warden_config::SecretsBackend;
use zeroize::Zeroizing;

use ledger::EntryKind;

use crate::Outcome;
use crate::args::Args;
use crate::operator::Operator;
use crate::store::{
    file_store_options, load_config, open_backend, open_store, prompt_secret, unlock_identity,
};

/// Names under `warden/` hold the tool's own keys and are written only by
/// the tool.
const RESERVED_PREFIX: &str = "warden/";

pub fn put(args: &Args, name: &str, reason: &str, label: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let name = SecretName::new(name).map_err(anyhow::Error::msg)?;
    if name.as_str().starts_with(RESERVED_PREFIX) {
        bail!(
            "`{name}` is reserved for redcap-warden's own keys (names under `{RESERVED_PREFIX}`); choose another name"
        );
    }
    let reason = super::reason(reason)?;
    let label: Label = label.parse().map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    // Open the ledger before changing anything: a change that cannot be
    // recorded is not made.
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let value = read_value(&name)?;
    let (version, fingerprint) = rt.block_on(store_version(
        &*store, &trail, &name, value, label, &reason, &operator,
    ))?;
    rt.block_on(trail.close())?;
    if args.json {
        println!(
            "{}",
            json!({"name": name, "version": version, "label": label, "fingerprint": fingerprint, "operator": operator})
        );
    } else {
        println!("Stored `{name}` version {version} as {label} ({fingerprint}) by {operator}.");
    }
    Ok(Outcome::Clean)
}

/// Writes a version (with its fingerprint and the operator's reason) and
/// its ledger entry. The caller opened `trail` before reading the value, so
/// nothing is stored that could not be recorded.
pub async fn store_version(
    store: &dyn SecretStore,
    trail: &governance::audit::AuditTrail,
    name: &SecretName,
    value: SecretValue,
    label: Label,
    reason: &str,
    operator: &Operator,
) -> anyhow::Result<(VersionId, Fingerprint)> {
    let key = FingerprintKey::load(store).await.with_context(|| {
        format!("reading the fingerprint key `{FINGERPRINT_KEY_SECRET}` (was the store set up with `redcap-warden init`?)")
    })?;
    let fingerprint = key.fingerprint(&value);
    let meta = VersionMeta {
        operator: operator.to_string(),
        at: jiff::Timestamp::now(),
        reason: reason.to_string(),
        fingerprint: Some(fingerprint.to_string()),
        rotation_id: None,
    };
    let version = store.put(name, value, meta, label).await?;
    trail
        .record(EntryKind::Secret {
            operator: operator.to_string(),
            name: name.to_string(),
            version: version.0.clone(),
            action: format!("put ({label})"),
            fingerprint: Some(fingerprint.to_string()),
            reason: reason.to_string(),
        })
        .await
        .with_context(|| {
            format!("`{name}` version {version} was stored but its ledger entry could not be written; record it by hand and check the ledger")
        })?;
    Ok((version, fingerprint))
}

/// The value from a no-echo prompt on a terminal, otherwise all of standard
/// input with one trailing line break removed (REDCap refuses a token with a
/// trailing newline, and `echo … |` adds one).
fn read_value(name: &SecretName) -> anyhow::Result<SecretValue> {
    let mut raw = Zeroizing::new(String::new());
    if std::io::stdin().is_terminal() {
        *raw = rpassword::prompt_password(format!("Value for `{name}` (not echoed): "))
            .context("reading the value from the terminal")?;
    } else {
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("reading the value from standard input")?;
        if raw.ends_with('\n') {
            raw.pop();
            if raw.ends_with('\r') {
                raw.pop();
            }
        }
    }
    if raw.is_empty() {
        bail!("the value is empty; type it at the prompt or pipe it on standard input");
    }
    if raw.chars().any(|c| c.is_control()) {
        bail!(
            "the value contains control characters (a line break inside it?); give the value on one line"
        );
    }
    Ok(SecretValue::new(raw.to_string()))
}

pub fn list(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let rt = super::runtime()?;
    let mut rows = Vec::new();
    for name in rt.block_on(store.list())? {
        let history = rt.block_on(store.history(&name))?;
        let current = history.iter().find(|v| v.labels.contains(&Label::Current));
        let pending = history.iter().find(|v| v.labels.contains(&Label::Pending));
        rows.push(json!({
            "name": name,
            "versions": history.len(),
            "current": current.map(|v| json!({
                "version": v.version, "fingerprint": v.meta.fingerprint, "at": v.meta.at, "operator": v.meta.operator,
            })),
            "pending": pending.map(|v| &v.version),
        }));
    }
    if args.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(Outcome::Clean);
    }
    if rows.is_empty() {
        println!("No secrets in {}.", store.describe());
        return Ok(Outcome::Clean);
    }
    println!(
        "{:<36} {:>7} {:<21} {:<20} {:<8} BY",
        "NAME", "CURRENT", "FINGERPRINT", "WRITTEN (UTC)", "PENDING"
    );
    for r in &rows {
        let c = &r["current"];
        println!(
            "{:<36} {:>7} {:<21} {:<20} {:<8} {}",
            r["name"].as_str().unwrap_or_default(),
            c["version"].as_str().unwrap_or("-"),
            c["fingerprint"].as_str().unwrap_or("-"),
            c["at"]
                .as_str()
                .map(super::short_time)
                .unwrap_or_else(|| "-".into()),
            r["pending"].as_str().unwrap_or("-"),
            c["operator"].as_str().unwrap_or("-"),
        );
    }
    Ok(Outcome::Clean)
}

pub fn history(args: &Args, name: &str) -> anyhow::Result<Outcome> {
    let name = SecretName::new(name).map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let history = super::runtime()?.block_on(store.history(&name))?;
    if args.json {
        println!("{}", serde_json::to_string(&history)?);
        return Ok(Outcome::Clean);
    }
    println!(
        "{:>7} {:<17} {:<20} {:<21} {:<24} REASON",
        "VERSION", "LABELS", "WRITTEN (UTC)", "FINGERPRINT", "BY"
    );
    for v in history {
        let labels: Vec<&str> = v.labels.iter().map(|l| l.as_str()).collect();
        println!(
            "{:>7} {:<17} {:<20} {:<21} {:<24} {}{}",
            v.version.0,
            if labels.is_empty() {
                "-".to_string()
            } else {
                labels.join(",")
            },
            super::short_time(&v.meta.at.to_string()),
            v.meta.fingerprint.as_deref().unwrap_or("-"),
            v.meta.operator,
            v.meta.reason,
            v.meta
                .rotation_id
                .map(|r| format!(" (rotation {r})"))
                .unwrap_or_default(),
        );
    }
    Ok(Outcome::Clean)
}

pub fn check(args: &Args) -> anyhow::Result<Outcome> {
    let config = load_config(&args.config)?;
    let store = match open_store(&config) {
        Ok(store) => store,
        // A store that cannot even be opened is the check's finding.
        Err(e) => {
            if args.json {
                println!("{}", json!({"ok": false, "error": format!("{e:#}")}));
            } else {
                println!("FAIL {e:#}");
            }
            return Ok(Outcome::Findings);
        }
    };
    let report = super::runtime()?.block_on(store.check())?;
    if args.json {
        println!("{}", json!({"ok": report.ok(), "report": report}));
    } else {
        println!("{}", report.store);
        for item in &report.items {
            let fix = item
                .fix
                .as_deref()
                .map(|f| format!("; fix: {f}"))
                .unwrap_or_default();
            println!(
                "  {} {}{fix}",
                if item.ok { "ok  " } else { "FAIL" },
                item.what
            );
        }
    }
    Ok(if report.ok() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// One secret's copy, as `migrate` reports it.
struct Copied {
    name: SecretName,
    versions: usize,
    already_there: bool,
}

/// `secrets migrate --to BACKEND`: copies every live secret of the
/// configured store, oldest version first, into the store configured under
/// `[secrets.BACKEND]`, gives the copies the same labels, then reads every
/// version back from both and compares fingerprints, metadata and labels.
/// A secret whose copy already matches is left alone, so a run that
/// stopped half-way can be repeated.
pub fn migrate(args: &Args, to: &str, reason: &str) -> anyhow::Result<Outcome> {
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let to: SecretsBackend = to.parse().map_err(anyhow::Error::msg)?;
    let config = load_config(&args.config)?;
    let from = config.config.secrets.backend;
    if from == to {
        bail!(
            "[secrets] backend is already `{to}`; migrate copies from the configured backend into another one",
            to = to.as_str()
        );
    }
    let source = open_store(&config)?;
    let dest = open_backend(&config, to)?;
    let rt = super::runtime()?;
    let trail = rt.block_on(crate::store::open_trail(&config, &*source))?;
    let key = rt
        .block_on(FingerprintKey::load(&*source))
        .with_context(|| {
            format!("reading the fingerprint key `{FINGERPRINT_KEY_SECRET}` from the source store")
        })?;
    let copied = rt.block_on(async {
        let mut copied = Vec::new();
        for name in source.list().await? {
            // The ledger's witness is not a secret but the latest checkpoint,
            // rewritten by every writer that holds the store: it changes
            // while this command records, and the first writer to open with
            // the new store writes it there (`ledger verify` reports "none
            // yet" until then).
            if name.as_str() == governance::witness::WITNESS_SECRET {
                continue;
            }
            let c = migrate_one(&*source, &*dest, &key, &name).await?;
            let history = dest.history(&name).await?;
            let current = history.iter().find(|v| v.labels.contains(&Label::Current));
            if !c.already_there {
                trail
                    .record(EntryKind::Secret {
                        operator: operator.to_string(),
                        name: name.to_string(),
                        version: current.map_or("-".into(), |v| v.version.0.clone()),
                        action: format!(
                            "migrate ({} versions from {} to {})",
                            c.versions,
                            from.as_str(),
                            to.as_str()
                        ),
                        fingerprint: current.and_then(|v| v.meta.fingerprint.clone()),
                        reason: reason.clone(),
                    })
                    .await
                    .with_context(|| format!("`{name}` was copied but its ledger entry could not be written; record it by hand and check the ledger"))?;
            }
            copied.push(c);
        }
        anyhow::Ok(copied)
    })?;
    rt.block_on(trail.close())?;
    let versions: usize = copied.iter().map(|c| c.versions).sum();
    if args.json {
        println!(
            "{}",
            json!({
                "from": source.describe(), "to": dest.describe(), "verified": true,
                "secrets": copied.iter().map(|c| json!({
                    "name": c.name, "versions": c.versions,
                    "status": if c.already_there { "already-present" } else { "copied" },
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        for c in &copied {
            println!(
                "{} `{}` ({} version{})",
                if c.already_there {
                    "already present"
                } else {
                    "copied"
                },
                c.name,
                c.versions,
                if c.versions == 1 { "" } else { "s" }
            );
        }
        println!(
            "Migrated {} secret(s), {versions} version(s), from {} to {}.",
            copied.len(),
            source.describe(),
            dest.describe()
        );
        println!("Verified: every version's fingerprint, metadata and labels match the source.");
        println!(
            "Next: set `backend = \"{}\"` under [secrets] in {}, run `redcap-warden secrets check`, and keep the old store until you no longer need it.",
            to.as_str(),
            config.path.display()
        );
    }
    Ok(Outcome::Clean)
}

async fn migrate_one(
    source: &dyn SecretStore,
    dest: &dyn SecretStore,
    key: &FingerprintKey,
    name: &SecretName,
) -> anyhow::Result<Copied> {
    let history = source.history(name).await?;
    match dest.history(name).await {
        Ok(_) => {
            let differences = compare(source, dest, key, name).await?;
            if differences.is_empty() {
                return Ok(Copied {
                    name: name.clone(),
                    versions: history.len(),
                    already_there: true,
                });
            }
            bail!(
                "`{name}` already exists in {} and differs from the source ({}); nothing of it was changed; remove it there (or choose another prefix) and run migrate again",
                dest.describe(),
                differences.join("; ")
            );
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Oldest first, each as `pending` so no copy is `current` before the
    // labels are set to match the source.
    let mut ids: BTreeMap<VersionId, VersionId> = BTreeMap::new();
    for v in history.iter().rev() {
        let s = source
            .get(name, &Selector::Version(v.version.clone()))
            .await?;
        let id = dest.put(name, s.value, s.meta, Label::Pending).await?;
        ids.insert(v.version.clone(), id);
    }
    let holder = |label: Label| {
        history
            .iter()
            .find(|v| v.labels.contains(&label))
            .map(|v| ids[&v.version].clone())
    };
    let current = holder(Label::Current);
    let previous = holder(Label::Previous);
    let pending = holder(Label::Pending);
    match (&current, &previous) {
        // Making the old one current first lets the move to the new current
        // push it to `previous`, as on every backend.
        (Some(c), Some(p)) => {
            dest.move_label(name, Label::Current, p).await?;
            dest.move_label(name, Label::Current, c).await?;
        }
        (Some(c), None) => dest.move_label(name, Label::Current, c).await?,
        (None, Some(p)) => dest.move_label(name, Label::Previous, p).await?,
        (None, None) => {}
    }
    match &pending {
        Some(p) => dest.move_label(name, Label::Pending, p).await?,
        None => dest.remove_label(name, Label::Pending).await?,
    }
    let differences = compare(source, dest, key, name).await?;
    if !differences.is_empty() {
        bail!(
            "`{name}` was copied to {} but does not read back the same ({}); the source is unchanged; remove the copy there and run migrate again",
            dest.describe(),
            differences.join("; ")
        );
    }
    Ok(Copied {
        name: name.clone(),
        versions: history.len(),
        already_there: false,
    })
}

/// What differs between the source's and the destination's history of
/// `name`, version by version in order: fingerprints of the values (under
/// the store's fingerprint key), metadata and labels. Empty when equal.
/// Never names a value.
async fn compare(
    source: &dyn SecretStore,
    dest: &dyn SecretStore,
    key: &FingerprintKey,
    name: &SecretName,
) -> anyhow::Result<Vec<String>> {
    let a = source.history(name).await?;
    let b = dest.history(name).await?;
    let mut differences = Vec::new();
    if a.len() != b.len() {
        differences.push(format!(
            "{} version(s) in the source, {} in the destination",
            a.len(),
            b.len()
        ));
        return Ok(differences);
    }
    for (i, (va, vb)) in a.iter().zip(&b).enumerate() {
        let n = a.len() - i;
        if va.labels != vb.labels {
            differences.push(format!(
                "version #{n} has labels {:?} in the source, {:?} in the destination",
                va.labels, vb.labels
            ));
        }
        if va.meta != vb.meta {
            differences.push(format!("version #{n} has different metadata"));
        }
        let sa = source
            .get(name, &Selector::Version(va.version.clone()))
            .await?;
        let sb = dest
            .get(name, &Selector::Version(vb.version.clone()))
            .await?;
        let (fa, fb) = (key.fingerprint(&sa.value), key.fingerprint(&sb.value));
        if fa != fb {
            differences.push(format!(
                "version #{n} has fingerprint {fa} in the source, {fb} in the destination"
            ));
        }
    }
    Ok(differences)
}

/// A new passphrase: asked twice without echo on a terminal, otherwise the
/// first line of standard input. At least [`MIN_PASSPHRASE_CHARS`]
/// characters, no control characters.
///
/// [`MIN_PASSPHRASE_CHARS`]: secrets::file::MIN_PASSPHRASE_CHARS
pub fn read_new_passphrase(what: &str) -> anyhow::Result<secrets::file::SecretString> {
    use secrets::file::{ExposeSecret, MIN_PASSPHRASE_CHARS};
    let passphrase = if std::io::stdin().is_terminal() {
        let first = prompt_secret(&format!("New passphrase for {what} (not echoed): "))?;
        let again = prompt_secret("The same passphrase again: ")?;
        if first.expose_secret() != again.expose_secret() {
            bail!("the two passphrases differ; nothing was changed; run the command again");
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the passphrase from standard input")?;
        let trimmed = line.strip_suffix('\n').unwrap_or(&line);
        let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
        secrets::file::SecretString::from(trimmed.to_string())
    };
    let chars = passphrase.expose_secret().chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase has {chars} character(s); use at least {MIN_PASSPHRASE_CHARS} (a few random words make a good one); nothing was changed"
        );
    }
    if passphrase.expose_secret().chars().any(char::is_control) {
        bail!(
            "the passphrase contains control characters; give it on one line; nothing was changed"
        );
    }
    Ok(passphrase)
}

/// `secrets passphrase [--remove] --reason R`: adds, changes or removes the
/// passphrase protecting the file store's identity. The identity file is
/// rewritten atomically (0600 temporary file, sync, rename, directory
/// sync); the key, and so the store, stay the same. Recorded in the ledger.
pub fn passphrase(args: &Args, reason: &str, remove: bool) -> anyhow::Result<Outcome> {
    use secrets::file::{PassphraseSource, PrivateOsFs, load_identity, replace_identity_file};
    let operator = Operator::current(args.operator.as_deref())?;
    let reason = super::reason(reason)?;
    let config = load_config(&args.config)?;
    let opts = file_store_options(&config);
    let path = opts.identity.clone();
    let describe = format!("age file store {}", opts.path.display());
    // One change at a time.
    let _lock = durable::lock_exclusive(&durable::lock_path_for(&path))
        .with_context(|| format!("locking the identity {}", path.display()))?;
    let identity = unlock_identity(&config)
        .with_context(|| format!("unlocking the identity {}", path.display()))?;
    let was_protected = identity.is_protected();
    if remove && !was_protected {
        bail!(
            "the identity {} has no passphrase; nothing to remove",
            path.display()
        );
    }
    // The ledger is opened before anything changes: a change that cannot
    // be recorded is not made.
    let store: std::sync::Arc<dyn SecretStore> = match config.config.secrets.backend {
        SecretsBackend::File => std::sync::Arc::new(secrets::FileStore::open_with_identity(
            opts.clone(),
            identity.clone(),
        )?),
        _ => open_store(&config)?,
    };
    let rt = super::runtime()?;
    let trail = rt.block_on(crate::store::open_trail(&config, &*store))?;
    let new = if remove {
        None
    } else {
        Some(read_new_passphrase(&format!(
            "the secrets-store identity {}",
            path.display()
        ))?)
    };
    replace_identity_file(&PrivateOsFs, &path, &identity, new.as_ref()).with_context(|| {
        format!(
            "rewriting the identity {} (the previous file is intact unless this says the directory sync failed)",
            path.display()
        )
    })?;
    // Read it back as the next command will.
    let sources: Vec<PassphraseSource> = new
        .iter()
        .map(|p| PassphraseSource::Given {
            passphrase: p.clone(),
            from: "just set".into(),
        })
        .collect();
    let reread = load_identity(&path, &describe, &sources)?;
    if reread.public_key() != identity.public_key() || reread.is_protected() != new.is_some() {
        bail!(
            "the rewritten identity {} does not read back as the same key; restore it from backup before using the store",
            path.display()
        );
    }
    let action = match (was_protected, new.is_some()) {
        (false, true) => "identity passphrase set",
        (true, true) => "identity passphrase changed",
        _ => "identity passphrase removed",
    };
    rt.block_on(trail.record(EntryKind::Key {
        operator: operator.to_string(),
        action: action.into(),
        key_name: super::init::identity_key_name(&path, &identity.public_key()),
        verifier_key: None,
        reason: reason.clone(),
    }))
    .with_context(|| {
        format!("{action} on {} but its ledger entry could not be written; record it by hand and check the ledger", path.display())
    })?;
    rt.block_on(trail.close())?;
    let passphrase_file = config
        .config
        .secrets
        .file
        .passphrase_file
        .as_ref()
        .map(|f| config.resolve(f));
    if args.json {
        println!(
            "{}",
            json!({"identity": path, "action": action, "protected": new.is_some(), "operator": operator})
        );
        return Ok(Outcome::Clean);
    }
    println!("{}: {action} by {operator}.", path.display());
    match (&passphrase_file, new.is_some()) {
        (Some(f), true) => println!(
            "Write the new passphrase into {} (mode 0600) before the gateway next starts.",
            f.display()
        ),
        (Some(f), false) => println!(
            "{} is no longer needed: remove it and the passphrase_file line from {}.",
            f.display(),
            config.path.display()
        ),
        (None, true) => println!(
            "`serve` needs the passphrase: set [secrets.file] passphrase_file to a mode-0600 file holding it, or pass the systemd credential `{}`.",
            secrets::file::PASSPHRASE_CREDENTIAL
        ),
        (None, false) => {}
    }
    println!(
        "The key did not change. Backups of the old identity file still open with the old {} — replace them with this file.",
        if was_protected {
            "passphrase"
        } else {
            "file alone"
        }
    );
    Ok(Outcome::Clean)
}
