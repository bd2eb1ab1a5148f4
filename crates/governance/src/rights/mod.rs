//! Rights as code (#11): profiles say which REDCap rights an account may
//! hold (deny by default), and live rights read through a study's rights
//! manager are compared with them.

pub mod check;
pub mod profile;

pub use check::{
    Finding, Governed, LiveDag, LiveProject, Severity, SiteToken, check_account, digest,
    rights_beyond, shared_tokens, ungoverned,
};
pub use profile::{Profile, ProfileError, built_in, resolve};

#[cfg(test)]
mod tests;
