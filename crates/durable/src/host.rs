//! What the tool asks of the host besides files: its name and random
//! bytes. One place for each, so every crate names the machine the same
//! way (a ledger's origin, a signer lease's holder) and draws randomness
//! the same way.

/// This machine's host name, or `localhost` when it has none usable in an
/// origin (empty, or characters other than ASCII letters, digits, `-`
/// and `.`).
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        })
        .unwrap_or_else(|| "localhost".into())
}

/// `n` random bytes from the operating system, as lower-case hex. The
/// bytes are wiped once encoded; wrap the answer in `Zeroizing` (and
/// upper-case it in place with `make_ascii_uppercase`) when it is a secret.
///
/// # Panics
///
/// If the operating system's random source fails: nothing sensible can be
/// done without it.
pub fn random_hex(n: usize) -> String {
    let mut bytes = zeroize::Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    hex::encode(&*bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_hex_is_hex_of_n_fresh_bytes() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, random_hex(16));
        assert_eq!(random_hex(0), "");
    }

    #[test]
    fn host_name_is_usable_in_an_origin() {
        let h = host_name();
        assert!(!h.is_empty());
        assert!(
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
    }
}
