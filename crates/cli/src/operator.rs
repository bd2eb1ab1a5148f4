//! Who is acting. The operator of every state-changing command is the OS
//! login of the process, read from the kernel's real user id and the
//! password database — never from `$USER`, which anyone can set. When the
//! command runs under sudo, `SUDO_USER` names the person behind it and is
//! recorded too. A name typed with `--operator` is added beside the login;
//! it can never replace it.

use std::fmt;

use anyhow::{Context, bail};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator {
    /// The OS account the process runs as.
    pub login: String,
    /// The account that invoked sudo, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    /// A name the operator typed, recorded beside the login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stated_name: Option<String>,
}

impl Operator {
    /// The operator of this process.
    pub fn current(stated_name: Option<&str>) -> anyhow::Result<Operator> {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .with_context(|| format!("cannot look up user id {uid} in the password database"))?
            .with_context(|| {
                format!("user id {uid} has no entry in the password database; run as a named account so actions are attributable")
            })?;
        Operator::new(user.name, std::env::var("SUDO_USER").ok(), stated_name)
    }

    fn new(
        login: String,
        sudo_user: Option<String>,
        stated_name: Option<&str>,
    ) -> anyhow::Result<Operator> {
        let stated_name = match stated_name.map(str::trim) {
            None => None,
            Some("") => {
                bail!("--operator was given an empty name; give your name or leave the flag out")
            }
            Some(n) if n.chars().any(char::is_control) => {
                bail!("--operator contains control characters; give a plain name")
            }
            Some(n) if n.chars().count() > 200 => bail!("--operator is longer than 200 characters"),
            Some(n) => Some(n.to_string()),
        };
        let sudo_user = sudo_user.filter(|s| !s.is_empty() && *s != login);
        Ok(Operator {
            login,
            sudo_user,
            stated_name,
        })
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.login)?;
        if let Some(s) = &self.sudo_user {
            write!(f, " (via sudo by {s})")?;
        }
        if let Some(n) = &self.stated_name {
            write!(f, " as {n:?}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_os_login_is_always_the_operator() {
        let op = Operator::current(Some("Dr. Ada Smith")).unwrap();
        let expected = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        assert_eq!(op.login, expected);
        assert_eq!(op.stated_name.as_deref(), Some("Dr. Ada Smith"));
    }

    #[test]
    fn a_stated_name_is_added_never_substituted() {
        let op = Operator::new("svc".into(), Some("alice".into()), Some("  Bob  ")).unwrap();
        assert_eq!(op.to_string(), "svc (via sudo by alice) as \"Bob\"");
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            serde_json::json!({"login": "svc", "sudo_user": "alice", "stated_name": "Bob"})
        );
    }

    #[test]
    fn sudo_to_oneself_and_empty_sudo_user_are_not_recorded() {
        assert_eq!(
            Operator::new("a".into(), Some("a".into()), None)
                .unwrap()
                .sudo_user,
            None
        );
        assert_eq!(
            Operator::new("a".into(), Some(String::new()), None)
                .unwrap()
                .sudo_user,
            None
        );
    }

    #[test]
    fn bad_stated_names_are_refused_with_a_reason() {
        for bad in ["", "   ", "a\nb", &"x".repeat(201)] {
            let e = Operator::new("a".into(), None, Some(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains("--operator"), "{e}");
        }
    }
}
