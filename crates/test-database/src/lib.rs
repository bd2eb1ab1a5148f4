//! The test database every PostgreSQL test uses: one rule for the gateway's,
//! the ledger's and the command line's tests.

#![warn(missing_docs)]

/// The test database's URL (`WARDEN_TEST_DATABASE_URL`, which scripts/test
/// sets after starting PostgreSQL). Without it the test named `test` prints
/// a notice and is skipped (`None`) — or, under CI, fails: there a skip
/// would pass a test that never ran.
pub fn url(test: &str) -> Option<String> {
    match std::env::var("WARDEN_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => panic!(
            "{test}: WARDEN_TEST_DATABASE_URL is not set under CI; run the tests through scripts/test, which starts PostgreSQL and sets it"
        ),
        _ => {
            eprintln!(
                "{test}: skipped: WARDEN_TEST_DATABASE_URL is not set (scripts/test starts PostgreSQL and sets it)"
            );
            None
        }
    }
}
