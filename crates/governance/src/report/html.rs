//! The evidence as one self-contained HTML page: CSS inline, charts inline
//! SVG, no script, no font, no link to anything outside the page — so the
//! file reads the same offline, in ten years, and on paper.

use std::fmt::Write;

use jiff::Timestamp;

use super::compliance;
use super::scan::LedgerScan;
use super::sections as s;
use super::svg;
use super::{Evidence, LiveMetrics, RightsView, minute};
use crate::rights::Severity;

/// How the page is framed.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The page's title.
    pub title: String,
    /// Reload the page every so many seconds (the dashboard).
    pub refresh_seconds: Option<u32>,
}

/// HTML-escapes `text` (element content and attribute values).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;margin:0;background:#fff}
main{max-width:1000px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;border-bottom:2px solid #d0d7de;padding-bottom:4px;margin-top:32px}
.meta{color:#57606a;margin:0 0 16px}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d8dee4;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f6f8fa;padding:8px;border:1px solid #d8dee4;white-space:pre-wrap;word-break:break-all}
.sev{font-weight:700;text-transform:uppercase;font-size:12px;padding:1px 6px;border-radius:3px}
.sev-critical{background:#cf222e;color:#fff}
.sev-high{background:#fb8500;color:#fff}
.sev-warning{background:#eac54f;color:#1b1f24}
.ok-text{color:#1a7f37;font-weight:600}
.bad-text{color:#cf222e;font-weight:600}
.none{color:#57606a;font-style:italic}
nav a{margin-right:12px}
.chart{max-width:100%;height:auto;display:block;margin:8px 0}
.chart .lbl,.chart .val,.chart .axis{font:12px system-ui,sans-serif;fill:#1b1f24}
.chart .axis{fill:#57606a}
.chart .ok{fill:#2da44e}.chart .warn{fill:#d4a72c}.chart .bad{fill:#cf222e}
.chart .period{stroke:#1b1f24;stroke-width:2}
.chart .base{stroke:#8c959f}
.chart .req{fill:#0969da}.chart .den{fill:#cf222e}.chart .lat{fill:#8250df}
@media print{main{max-width:none;padding:0}nav{display:none}h2{break-after:avoid}tr,svg,pre{break-inside:avoid}a{color:inherit;text-decoration:none}}
"#;

/// The page's head: nothing may be fetched (the policy says so to the
/// browser too), and an optional refresh.
fn head(h: &mut String, page: &Page) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
    );
    if let Some(n) = page.refresh_seconds {
        let _ = write!(h, "<meta http-equiv=\"refresh\" content=\"{n}\">");
    }
    let _ = write!(
        h,
        "<title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&page.title)
    );
}

/// The page's content security policy: inline style only, nothing
/// fetched, no script.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// A page of the gateway's live counters alone, with `note` saying why
/// the rest of the evidence is not there.
pub fn render_live(live: &LiveMetrics, note: &str, page: &Page) -> String {
    let mut h = String::new();
    head(&mut h, page);
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"bad-text\" id=\"no-evidence\">{}</p>",
        esc(&page.title),
        esc(note)
    );
    live_section(&mut h, live);
    h.push_str("</main></body></html>\n");
    h
}

/// The whole page.
pub fn render(e: &Evidence, page: &Page) -> String {
    let mut h = String::new();
    head(&mut h, page);
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"meta\">Generated {} from <code>{}</code> · REDCap time zone {} · redcap-warden {}</p>",
        esc(&page.title),
        esc(&minute(e.generated_at)),
        esc(&e.config_path),
        esc(&e.redcap_time_zone),
        env!("CARGO_PKG_VERSION"),
    );
    h.push_str("<nav>");
    for (id, name) in [
        (s::FINDINGS, "Findings"),
        (s::TOKENS, "Tokens"),
        (s::ROTATIONS, "Rotations"),
        (s::RIGHTS, "Rights"),
        (s::REAUTH, "Re-authorisation"),
        (s::LEDGER, "Ledger"),
        (s::RECONCILE, "Reconciliation"),
        (s::KEYS, "Client keys"),
        (s::ACTIVITY, "Activity"),
        (s::REVIEWS, "Reviews"),
        (s::COMPLIANCE, "Compliance"),
    ] {
        let _ = write!(h, "<a href=\"#{id}\">{name}</a>");
    }
    h.push_str("</nav>");
    findings(&mut h, e);
    if let Some(live) = &e.live {
        live_section(&mut h, live);
    }
    tokens(&mut h, e);
    rotations(&mut h, &e.scan);
    rights(&mut h, e);
    reauth(&mut h, e);
    ledger(&mut h, e);
    reconcile(&mut h, &e.scan);
    keys(&mut h, e);
    activity(&mut h, &e.scan);
    reviews(&mut h, &e.scan);
    compliance_map(&mut h, e);
    h.push_str("</main></body></html>\n");
    h
}

fn section(h: &mut String, id: &str, title: &str, source: &str) {
    let _ = write!(
        h,
        "<section id=\"{id}\"><h2>{}</h2><p class=\"meta\">{}</p>",
        esc(title),
        source
    );
}

fn table(h: &mut String, head: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        let _ = write!(h, "<p class=\"none\">{}</p>", esc(empty));
        return;
    }
    h.push_str("<table><thead><tr>");
    for c in head {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr></thead><tbody>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{c}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>");
}

fn sev(s: Severity) -> String {
    format!("<span class=\"sev sev-{s}\">{s}</span>")
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "never".to_string(), |t| esc(&minute(t)))
}

fn findings(h: &mut String, e: &Evidence) {
    section(
        h,
        s::FINDINGS,
        "Findings",
        "Most severe first; each links to the section with its evidence. <code>report</code> exits 1 when one is critical.",
    );
    let rows: Vec<Vec<String>> = e
        .findings()
        .iter()
        .map(|f| {
            vec![
                sev(f.severity),
                format!("<a href=\"#{}\">{}</a>", f.section, f.section),
                esc(&f.text),
            ]
        })
        .collect();
    if rows.is_empty() {
        h.push_str("<p class=\"ok-text\" id=\"no-findings\">No findings.</p>");
    } else {
        table(h, &["Severity", "Section", "Finding"], &rows, "");
    }
    h.push_str("</section>");
}

fn live_section(h: &mut String, live: &LiveMetrics) {
    section(
        h,
        "live",
        "Gateway, live",
        "From the running gateway's counters (the same as <code>/metrics</code>), per minute since it started (the last hour).",
    );
    let _ = write!(
        h,
        "<p>{} request(s) answered, {} refused since start; ledger {}{}</p>",
        live.requests_total,
        live.denied_total,
        if live.ledger_degraded {
            "<span class=\"bad-text\">DEGRADED (requests refused)</span>"
        } else {
            "<span class=\"ok-text\">writing</span>"
        },
        if live.held_accounts.is_empty() {
            String::new()
        } else {
            format!(
                "; held for a cut-over: {}",
                esc(&live.held_accounts.join(", "))
            )
        }
    );
    let pts = |f: &dyn Fn(&super::LiveMinute) -> f64| -> Vec<(Timestamp, f64)> {
        live.minutes.iter().map(|m| (m.at, f(m))).collect()
    };
    h.push_str("<h3>Request rate (per minute)</h3>");
    h.push_str(&svg::series(
        "Requests per minute",
        "req/min",
        "req",
        &pts(&|m| m.requests as f64),
    ));
    h.push_str("<h3>Denials (per minute)</h3>");
    h.push_str(&svg::series(
        "Denied requests per minute",
        "denied/min",
        "den",
        &pts(&|m| m.denied as f64),
    ));
    h.push_str("<h3>Mean latency</h3>");
    h.push_str(&svg::series(
        "Mean latency per minute",
        "ms",
        "lat",
        &pts(&|m| m.mean_latency_ms),
    ));
    h.push_str("</section>");
}

fn tokens(h: &mut String, e: &Evidence) {
    section(
        h,
        s::TOKENS,
        "Token inventory",
        "Each account's current token by fingerprint (never its value), its age against its rotation period. Source: the secrets store's version history and the rotation journals — <code>rotate status</code>.",
    );
    h.push_str(&svg::token_ages(&e.tokens));
    let rows: Vec<Vec<String>> = e
        .tokens
        .iter()
        .map(|t| {
            vec![
                esc(&t.account),
                esc(&format!(
                    "{}{}",
                    t.study,
                    t.site
                        .as_deref()
                        .map(|s| format!(" / {s}"))
                        .unwrap_or_default()
                )),
                t.fingerprint
                    .as_deref()
                    .map_or("<span class=\"none\">none</span>".into(), |f| {
                        format!("<code>{}</code>", esc(f))
                    }),
                t.age_days.map_or("-".into(), |d| format!("{d} d")),
                format!("{} d", t.rotate_every_days),
                match (t.due, t.overdue) {
                    (Some(d), true) => {
                        format!("<span class=\"bad-text\">{} OVERDUE</span>", when(Some(d)))
                    }
                    (d, false) => when(d),
                    (None, true) => "-".into(),
                },
                t.open_rotation
                    .as_ref()
                    .map_or("-".into(), |r| esc(&format!("{} ({})", r.id, r.state))),
            ]
        })
        .collect();
    table(
        h,
        &[
            "Account",
            "Study / site",
            "Fingerprint",
            "Age",
            "Period",
            "Due",
            "Open rotation",
        ],
        &rows,
        "No [[account]] is configured.",
    );
    h.push_str("</section>");
}

fn rotations(h: &mut String, scan: &LedgerScan) {
    section(
        h,
        s::ROTATIONS,
        "Rotation timeline",
        "Every state change of every rotation, newest first. Source: the ledger's <code>rotation</code> entries (the journals in <code>&lt;data_dir&gt;/rotation/</code> hold the same).",
    );
    let rows: Vec<Vec<String>> = scan
        .rotations
        .iter()
        .rev()
        .map(|r| {
            vec![
                esc(&minute(r.ts)),
                esc(&r.account),
                format!("<code>{}</code>", esc(&r.rotation_id)),
                esc(&format!("{} → {}", r.from, r.to)),
                esc(&r.operator),
                esc(&r.detail),
                r.seq.to_string(),
            ]
        })
        .collect();
    table(
        h,
        &[
            "When", "Account", "Rotation", "State", "By", "Detail", "Entry",
        ],
        &rows,
        "No rotation is recorded in the ledger.",
    );
    h.push_str("</section>");
}

fn rights(h: &mut String, e: &Evidence) {
    section(
        h,
        s::RIGHTS,
        "Rights drift",
        "Live REDCap rights and DAGs of the governed accounts against their profiles. Source: <code>rights check</code> (read through each study's rights manager).",
    );
    match &e.rights {
        RightsView::Checked { studies } => {
            for st in studies {
                let rows: Vec<Vec<String>> = st
                    .findings
                    .iter()
                    .map(|f| {
                        vec![
                            sev(f.severity),
                            esc(f.account.as_deref().unwrap_or("(not governed)")),
                            esc(&f.username),
                            format!("<code>{}</code>", esc(f.code)),
                            esc(&f.detail),
                            esc(&f.risk),
                        ]
                    })
                    .collect();
                let _ = write!(h, "<h3>Study {}</h3>", esc(&st.study));
                table(
                    h,
                    &[
                        "Severity",
                        "Account",
                        "REDCap user",
                        "Code",
                        "Detail",
                        "Risk",
                    ],
                    &rows,
                    "Every governed account is within its profile.",
                );
            }
        }
        RightsView::Unavailable { reason } => {
            let _ = write!(
                h,
                "<p class=\"bad-text\">Rights could not be checked: {}</p>",
                esc(reason)
            );
        }
        RightsView::FromLedger => {}
    }
    h.push_str("<h3>Latest recorded checks</h3>");
    let rows: Vec<Vec<String>> = e
        .scan
        .rights_checks
        .iter()
        .map(|(study, r)| {
            vec![
                esc(study),
                esc(&minute(r.ts)),
                esc(&r.operator),
                r.findings.to_string(),
                format!("<code>{}</code>", esc(&r.line)),
                r.seq.to_string(),
            ]
        })
        .collect();
    table(
        h,
        &["Study", "When", "By", "Findings", "Recorded", "Entry"],
        &rows,
        "No rights check is recorded in the ledger.",
    );
    h.push_str("</section>");
}

fn reauth(h: &mut String, e: &Evidence) {
    section(
        h,
        s::REAUTH,
        "Re-authorisation",
        "Accounts a named person must re-approve, or that lapse when idle. Source: the ledger's <code>reauth</code> and <code>request</code> entries — <code>reauth status</code>.",
    );
    let rows: Vec<Vec<String>> = e
        .reauth
        .iter()
        .map(|r| {
            vec![
                esc(&r.account),
                r.due.map_or("-".into(), |d| d.to_string()),
                r.last_approval
                    .as_ref()
                    .map_or("never".into(), |(ts, by, _)| {
                        esc(&format!(
                            "{} by {}",
                            minute(*ts),
                            by.as_deref().unwrap_or("?")
                        ))
                    }),
                when(r.last_use),
                match &r.lapsed {
                    None => "<span class=\"ok-text\">active</span>".into(),
                    Some(c) => format!(
                        "<span class=\"bad-text\">LAPSED</span>: {}",
                        esc(&c.to_string())
                    ),
                },
            ]
        })
        .collect();
    table(
        h,
        &["Account", "Due", "Last approval", "Last use", "Status"],
        &rows,
        "No account has reauth_every_days or lapse_after_inactive_days.",
    );
    h.push_str("</section>");
}

fn ledger(h: &mut String, e: &Evidence) {
    section(
        h,
        s::LEDGER,
        "Ledger verification",
        "Every leaf and root recomputed and every checkpoint signature checked against the pinned verifier key — <code>ledger verify</code>.",
    );
    let l = &e.ledger;
    let _ = write!(
        h,
        "<p>Ledger <code>{}</code>, verifier key <code>{}</code></p>",
        esc(&l.place),
        esc(&l.verifier_key)
    );
    match &l.verified {
        Ok(v) => {
            let _ = write!(
                h,
                "<p class=\"ok-text\" id=\"ledger-verified\">Verified: {} entries, {} signed checkpoint(s); the last signs {} entries ({} after it not yet signed).</p><p>Root <code>{}</code></p>",
                v.entries,
                v.checkpoints,
                v.anchored,
                v.unanchored,
                esc(&v.root)
            );
        }
        Err(err) => {
            let _ = write!(
                h,
                "<p class=\"bad-text\" id=\"ledger-failed\">FAILED: {}</p>",
                esc(err)
            );
        }
    }
    if let super::VerifiedHow::Incremental {
        full_at,
        new_entries,
    } = &l.how
    {
        let _ = write!(
            h,
            "<p class=\"meta\" id=\"ledger-incremental\">This look verified the {new_entries} entries and the checkpoints appended since the last one, onto the prefix verified in full at {}; the whole ledger is verified again every 10 minutes.</p>",
            super::minute(*full_at)
        );
    }
    if let Some(why) = &l.changed {
        let _ = write!(
            h,
            "<p class=\"bad-text\" id=\"ledger-changed\">The verified ledger changed under the dashboard: {}. It was verified in full again (above).</p>",
            esc(why)
        );
    }
    h.push_str("<h3>Latest signed checkpoint</h3>");
    match &l.latest_checkpoint {
        Some(note) => {
            let _ = write!(
                h,
                "<p class=\"meta\">A C2SP signed note: origin, tree size, root hash (base64) and the Ed25519 signature. Check it with the verifier key above.</p><pre id=\"checkpoint\">{}</pre>",
                esc(note)
            );
        }
        None => h.push_str("<p class=\"none\">No checkpoint has been signed yet.</p>"),
    }
    h.push_str("</section>");
}

fn reconcile(h: &mut String, scan: &LedgerScan) {
    section(
        h,
        s::RECONCILE,
        "Reconciliation with REDCap's log",
        "The latest <code>reconcile</code> run of each study: REDCap's Export Logging paired with the ledger (rows redacted). Source: the ledger's <code>reconcile</code> entries; the findings themselves: <code>reconcile --since T --until T</code>.",
    );
    let rows: Vec<Vec<String>> = scan
        .reconciles
        .iter()
        .map(|(study, r)| {
            vec![
                esc(study),
                esc(&format!("{} to {}", r.window_start, r.window_end)),
                if r.findings > 0 {
                    format!("<span class=\"bad-text\">{}</span>", r.findings)
                } else {
                    "0".into()
                },
                esc(&r.summary),
                r.seq.to_string(),
            ]
        })
        .collect();
    table(
        h,
        &["Study", "Window", "Findings", "Summary", "Entry"],
        &rows,
        "No reconciliation is recorded in the ledger; run `redcap-warden reconcile --since T`.",
    );
    h.push_str("</section>");
}

fn keys(h: &mut String, e: &Evidence) {
    section(
        h,
        s::KEYS,
        "Client keys",
        "The gateway's client keys by id (the gateway keeps only their hashes), with age and last use — <code>keys list</code>.",
    );
    let rows: Vec<Vec<String>> = e
        .keys
        .iter()
        .map(|k| {
            let age = e.generated_at.duration_since(k.issued_at).as_hours() / 24;
            vec![
                esc(&k.client),
                format!("<code>{}</code>", esc(&k.id)),
                esc(&k.state),
                format!("{age} d"),
                esc(&minute(k.issued_at)),
                esc(&minute(k.expires_at)),
                when(k.last_used),
                esc(&k.issued_by),
            ]
        })
        .collect();
    table(
        h,
        &[
            "Client",
            "Key id",
            "State",
            "Age",
            "Issued",
            "Expires",
            "Last used",
            "By",
        ],
        &rows,
        "No client key has been issued.",
    );
    h.push_str("</section>");
}

/// Buckets of the ledger's per-minute activity, at most 60 over its span.
fn buckets(scan: &LedgerScan) -> Vec<(Timestamp, super::ActivityMinute)> {
    let (Some((&first, _)), Some((&last, _))) = (
        scan.activity.first_key_value(),
        scan.activity.last_key_value(),
    ) else {
        return Vec::new();
    };
    let span = last - first + 1;
    let width = [1, 5, 15, 60, 360, 1440]
        .into_iter()
        .find(|w| span / w < 60)
        .unwrap_or(1440);
    let start = first - first.rem_euclid(width);
    let n = ((last - start) / width + 1) as usize;
    let mut out: Vec<(Timestamp, super::ActivityMinute)> = (0..n)
        .map(|i| {
            let at = Timestamp::from_second((start + i as i64 * width) * 60)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            (at, super::ActivityMinute::default())
        })
        .collect();
    for (m, a) in &scan.activity {
        let i = ((m - start) / width) as usize;
        if let Some((_, b)) = out.get_mut(i) {
            b.requests += a.requests;
            b.denied += a.denied;
            b.responses += a.responses;
            b.latency_ms += a.latency_ms;
        }
    }
    out
}

fn activity(h: &mut String, scan: &LedgerScan) {
    section(
        h,
        s::ACTIVITY,
        "Activity and alerts",
        "Forwarded requests, refused attempts and latency over the last week of the ledger, and its alerts. Source: the ledger's <code>request</code>, <code>response</code>, <code>denied</code> and <code>alert</code> entries.",
    );
    let _ = write!(
        h,
        "<p>{} entries from {} to {}: {} forwarded request(s), {} refused attempt(s), {} alert(s).</p>",
        scan.entries,
        when(scan.first),
        when(scan.last),
        scan.requests_total,
        scan.denied_total,
        scan.alerts_total
    );
    let b = buckets(scan);
    let pts = |f: &dyn Fn(&super::ActivityMinute) -> f64| -> Vec<(Timestamp, f64)> {
        b.iter().map(|(at, a)| (*at, f(a))).collect()
    };
    h.push_str("<h3>Request rate</h3>");
    h.push_str(&svg::series(
        "Forwarded requests per bucket",
        "requests",
        "req",
        &pts(&|a| a.requests as f64),
    ));
    h.push_str("<h3>Denials</h3>");
    h.push_str(&svg::series(
        "Refused attempts per bucket",
        "denied",
        "den",
        &pts(&|a| a.denied as f64),
    ));
    h.push_str("<h3>Mean latency</h3>");
    h.push_str(&svg::series(
        "Mean latency per bucket",
        "ms",
        "lat",
        &pts(&|a| {
            if a.responses == 0 {
                0.0
            } else {
                a.latency_ms as f64 / a.responses as f64
            }
        }),
    ));
    h.push_str("<h3>Latest alerts</h3>");
    let rows: Vec<Vec<String>> = scan
        .alerts
        .iter()
        .rev()
        .map(|a| {
            vec![
                esc(&minute(a.ts)),
                format!("<code>{}</code>", esc(&a.code)),
                esc(&a.message),
                a.seq.to_string(),
            ]
        })
        .collect();
    table(
        h,
        &["When", "Code", "Message", "Entry"],
        &rows,
        "No alert is recorded.",
    );
    h.push_str("</section>");
}

fn reviews(h: &mut String, scan: &LedgerScan) {
    section(
        h,
        s::REVIEWS,
        "Audit-trail reviews",
        "Signed reviews of the audit trail. Source: the ledger's <code>review</code> entries.",
    );
    let rows: Vec<Vec<String>> = scan
        .reviews
        .iter()
        .rev()
        .map(|r| {
            vec![
                esc(&minute(r.ts)),
                esc(&r.reviewer),
                esc(&r.scope),
                esc(&r.outcome),
                r.seq.to_string(),
            ]
        })
        .collect();
    table(
        h,
        &["When", "Reviewer", "Scope", "Outcome", "Entry"],
        &rows,
        "No review is recorded in the ledger.",
    );
    h.push_str("</section>");
}

fn compliance_map(h: &mut String, e: &Evidence) {
    section(
        h,
        s::COMPLIANCE,
        "Compliance map",
        "Each requirement of compliance.md §6, where its evidence is in this report and in the ledger, the commands that show it, and what this run found.",
    );
    let rows: Vec<Vec<String>> = compliance::requirements(e)
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<strong>{}</strong><br><span class=\"meta\">{}</span>",
                    esc(r.requirement),
                    esc(r.sources)
                ),
                r.sections
                    .iter()
                    .map(|s| format!("<a href=\"#{s}\">{s}</a>"))
                    .collect::<Vec<_>>()
                    .join(", "),
                esc(r.ledger),
                format!("<code>{}</code>", esc(r.commands)),
                esc(&r.status),
            ]
        })
        .collect();
    table(
        h,
        &[
            "Requirement",
            "In this report",
            "In the ledger",
            "Commands",
            "This run",
        ],
        &rows,
        "",
    );
    h.push_str("</section>");
}
