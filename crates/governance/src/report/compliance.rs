//! Each requirement of compliance.md §6 and where its evidence is: the
//! report's sections, the ledger's entry kinds, and the commands that
//! reproduce it — with what this run's evidence says about it.

use serde::Serialize;

use super::sections as s;
use super::{Evidence, RightsView};

/// One requirement of compliance.md §6.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    /// The requirement, as compliance.md words it.
    pub requirement: &'static str,
    /// Its regulatory sources.
    pub sources: &'static str,
    /// The report sections holding its evidence (anchors).
    pub sections: &'static [&'static str],
    /// The ledger entry kinds that record it.
    pub ledger: &'static str,
    /// The commands that show or re-check it.
    pub commands: &'static str,
    /// What this run's evidence says.
    pub status: String,
}

/// The requirements, in compliance.md's order, with this run's status.
pub fn requirements(e: &Evidence) -> Vec<Requirement> {
    let scan = &e.scan;
    let accounts = e.tokens.len();
    let sites = e.tokens.iter().filter(|t| t.site.is_some()).count();
    let verified = match &e.ledger.verified {
        Ok(v) => format!(
            "ledger verified: {} entries, {} signed checkpoint(s)",
            v.entries, v.checkpoints
        ),
        Err(err) => format!("LEDGER DOES NOT VERIFY: {err}"),
    };
    let overdue = e.tokens.iter().filter(|t| t.overdue).count();
    let rotations: std::collections::BTreeSet<&str> = scan
        .rotations
        .iter()
        .map(|r| r.rotation_id.as_str())
        .collect();
    let rights = match &e.rights {
        RightsView::Checked { studies } => format!(
            "rights checked now: {} finding(s) in {} study(ies)",
            studies.iter().map(|s| s.findings.len()).sum::<usize>(),
            studies.len()
        ),
        RightsView::Unavailable { reason } => format!("rights not checked: {reason}"),
        RightsView::FromLedger => format!(
            "{} study(ies) with a recorded rights check",
            scan.rights_checks.len()
        ),
    };
    let reconciled: u64 = scan.reconciles.values().map(|r| r.findings).sum();
    vec![
        Requirement {
            requirement: "Every token maps to one accountable identity; no shared accounts",
            sources: "21 CFR 11.300(a), ICH E6(R3) 4.3.8, Annex 11 §12",
            sections: &[s::TOKENS, s::RIGHTS, s::KEYS],
            ledger: "request (client, account, site)",
            commands: "sites; rights check (shared-account, shared-token findings); keys list",
            status: format!(
                "{accounts} service account(s), {sites} bound to a site; {} client key(s)",
                e.keys.len()
            ),
        },
        Requirement {
            requirement: "Audit entry per API call: who, what, when (UTC), outcome, records touched",
            sources: "21 CFR 11.10(e), ICH E6(R3) 4.2.2, Annex 11 §12.4",
            sections: &[s::ACTIVITY, s::LEDGER],
            ledger: "request, response, denied",
            commands: "ledger tail; ledger show SEQ; trace RECORD",
            status: format!(
                "{} forwarded request(s), {} refused attempt(s) recorded",
                scan.requests_total, scan.denied_total
            ),
        },
        Requirement {
            requirement: "Changes must not obscure prior entries; the trail cannot be disabled",
            sources: "21 CFR 11.10(e), ICH E6(R3) 4.2.2(b)",
            sections: &[s::LEDGER],
            ledger: "every entry is a Merkle leaf; signed checkpoints; alert (ledger outage)",
            commands: "ledger verify; ledger prove inclusion|consistency",
            status: verified.clone(),
        },
        Requirement {
            requirement: "Reason for change on data changes",
            sources: "Annex 11 §9, ICH E6(R3) 4.2.2",
            sections: &[s::ACTIVITY],
            ledger: "request.reason (required for writes where policy asks)",
            commands: "ledger tail; trace RECORD",
            status: format!("{} request(s) carried a reason", scan.requests_with_reason),
        },
        Requirement {
            requirement: "Access grants and revocations recorded",
            sources: "Annex 11 §12.3, ICH E6(R3) 4.2.2(a)(i)",
            sections: &[s::KEYS, s::RIGHTS, s::ROTATIONS, s::REAUTH],
            ledger: "secret, key, admin, rights, rotation, reauth",
            commands: "secrets history NAME; keys list; rights plan|apply; reauth status",
            status: format!(
                "{} secret/key/admin entr(ies), {} rights change(s), {} reauth entr(ies)",
                scan.access_changes, scan.rights_changes, scan.reauth_entries
            ),
        },
        Requirement {
            requirement: "Periodic recall/revision of credentials; loss management",
            sources: "21 CFR 11.300(b)(c)",
            sections: &[s::TOKENS, s::ROTATIONS, s::REAUTH],
            ledger: "rotation (each state), secret, reauth",
            commands: "rotate status; rotate start|run --emergency; reauth status; sop",
            status: format!(
                "{overdue} token(s) overdue; {} rotation(s) in the ledger",
                rotations.len()
            ),
        },
        Requirement {
            requirement: "Urgent detection and reporting of misuse",
            sources: "21 CFR 11.300(d), ICH E6(R3) 4.3.3",
            sections: &[s::FINDINGS, s::RECONCILE, s::ACTIVITY],
            ledger: "reconcile, alert, denied",
            commands: "reconcile --since T; the dashboard",
            status: format!(
                "{} study(ies) reconciled, {reconciled} discrepancy(ies) in their latest runs; {} alert(s)",
                scan.reconciles.len(),
                scan.alerts_total
            ),
        },
        Requirement {
            requirement: "Retained at least as long as the records; available for inspection; readable copies",
            sources: "21 CFR 11.10(b)(c)(e), Annex 11 §7/§17",
            sections: &[s::LEDGER],
            ledger: "the ledger itself (JSON Lines, C2SP signed notes)",
            commands: "ledger export; ledger verify --from-export; this report",
            status: verified,
        },
        Requirement {
            requirement: "Regular, risk-based review of audit trails and access",
            sources: "Annex 11 §9/§11, ICH E6(R3) 4.2.3/4.3.8",
            sections: &[s::REVIEWS, s::RIGHTS, s::REAUTH],
            ledger: "review, rights (check), reauth",
            commands: "review sign; rights check; reauth status; this report",
            status: format!("{} review(s) recorded; {rights}", scan.reviews.len()),
        },
        Requirement {
            requirement: "Validated system, tested security measures",
            sources: "21 CFR 11.10(a), ICH E6(R3) 4.3.3-4.3.4",
            sections: &[s::LEDGER],
            ledger: "header (format version, origin)",
            commands: "validation-pack --out DIR; scripts/test",
            status: "see the validation pack for this release's test results".into(),
        },
    ]
}
