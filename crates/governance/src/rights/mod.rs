//! Rights as code (#11): profiles say which REDCap rights an account may
//! hold (deny by default), live rights read through a study's rights
//! manager are compared with them, and a plan brings them back within.

pub mod check;
pub mod plan;
pub mod profile;

pub use check::{
    Finding, Governed, LiveDag, LiveProject, Severity, SiteBinding, SiteToken, administrator,
    check_account, digest, renamed_dags, rights_beyond, shared_accounts, shared_tokens, ungoverned,
};
pub use plan::{AccountPlan, Change, PlanBlocked, enrolment_row, plan_account};
pub use profile::{Profile, ProfileError, built_in, resolve};

#[cfg(test)]
mod tests;
