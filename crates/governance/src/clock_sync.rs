//! Whether the host clock is synchronised: every ledger entry carries this
//! host's time, and "contemporaneous" (ALCOA+) and "unambiguous date and
//! time" (ICH E6(R3) 4.2.2) mean nothing on a clock that drifts. The
//! gateway asks at start and records the answer; an unsynchronised clock,
//! or one nobody can vouch for, raises an alert.
//!
//! The kernel's own flag (`adjtimex(2)`'s `STA_UNSYNC`) needs a system
//! call this workspace cannot make without `unsafe`, so the system probe
//! asks the tools that read it, in order: `timedatectl` (systemd),
//! `chronyc tracking` (chrony), `adjtimex --print` (the kernel flag
//! itself, where the `adjtimex` package is installed). Each gets two
//! seconds; the first that answers decides. The probe is a trait so tests
//! inject the answer.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClockSync {
    /// Synchronised, as `source` says.
    Synchronised {
        /// Which tool said so, with its words.
        source: String,
    },
    /// Not synchronised, as `source` says.
    Unsynchronised {
        /// Which tool said so, with its words.
        source: String,
    },
    /// No tool could tell.
    Unknown {
        /// What was tried and why each gave no answer.
        tried: String,
    },
}

impl ClockSync {
    /// Whether the clock is known to be synchronised.
    pub fn is_synchronised(&self) -> bool {
        matches!(self, ClockSync::Synchronised { .. })
    }

    /// One sentence for the ledger and the alert.
    pub fn describe(&self) -> String {
        match self {
            ClockSync::Synchronised { source } => {
                format!("the host clock is synchronised ({source})")
            }
            ClockSync::Unsynchronised { source } => format!(
                "the host clock is NOT synchronised ({source}): ledger times may drift from REDCap's and from UTC; fix: enable NTP (systemd-timesyncd or chrony)"
            ),
            ClockSync::Unknown { tried } => format!(
                "whether the host clock is synchronised cannot be told ({tried}); fix: run an NTP client (systemd-timesyncd or chrony) whose state timedatectl or chronyc can report"
            ),
        }
    }
}

/// Asks whether the host clock is synchronised. Blocking.
pub trait SyncProbe: Send + Sync {
    /// The answer now.
    fn probe(&self) -> ClockSync;
}

/// Asks the host's tools (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

impl SyncProbe for SystemProbe {
    fn probe(&self) -> ClockSync {
        let mut tried = Vec::new();
        let asks: [Ask; 3] = [
            (
                "timedatectl",
                &["show", "-p", "NTPSynchronized", "--value"],
                parse_timedatectl,
            ),
            ("chronyc", &["-n", "tracking"], parse_chronyc),
            ("adjtimex", &["--print"], parse_adjtimex),
        ];
        for (program, args, parse) in asks {
            match run(program, args) {
                Ok(out) => match parse(&out) {
                    Some(true) => {
                        return ClockSync::Synchronised {
                            source: format!("{program} {}", args.join(" ")),
                        };
                    }
                    Some(false) => {
                        return ClockSync::Unsynchronised {
                            source: format!("{program} {}", args.join(" ")),
                        };
                    }
                    None => tried.push(format!("{program}: no answer in its output")),
                },
                Err(e) => tried.push(format!("{program}: {e}")),
            }
        }
        ClockSync::Unknown {
            tried: tried.join("; "),
        }
    }
}

/// A tool to ask: its program, arguments, and the reading of its output
/// (`Some(true)`: synchronised).
type Ask = (
    &'static str,
    &'static [&'static str],
    fn(&str) -> Option<bool>,
);

/// A fixed answer (tests, and hosts whose operator vouches for the clock
/// otherwise).
#[derive(Debug, Clone)]
pub struct FixedProbe(pub ClockSync);

impl SyncProbe for FixedProbe {
    fn probe(&self) -> ClockSync {
        self.0.clone()
    }
}

/// Runs `program` with a clean environment (no secret could be in it) and
/// two seconds to answer; its standard output, if it exited 0.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "not installed".to_string(),
            _ => e.to_string(),
        })?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut out = String::new();
                if let Some(mut stdout) = child.stdout.take() {
                    use std::io::Read;
                    let _ = stdout.read_to_string(&mut out);
                }
                return if status.success() {
                    Ok(out)
                } else {
                    Err(format!("exited with {status}"))
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no answer in 2 s".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `yes` / `no`.
fn parse_timedatectl(out: &str) -> Option<bool> {
    match out.trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// `Leap status     : Normal` (synchronised) or `Not synchronised`.
fn parse_chronyc(out: &str) -> Option<bool> {
    let status = out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "Leap status").then(|| v.trim().to_string())
    })?;
    Some(status != "Not synchronised")
}

/// `status: 8193`: the kernel's flags; `STA_UNSYNC` is 0x40.
fn parse_adjtimex(out: &str) -> Option<bool> {
    const STA_UNSYNC: u64 = 0x40;
    let status: u64 = out.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "status").then(|| v.trim().parse().ok())?
    })?;
    Some(status & STA_UNSYNC == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tools_answers_are_read() {
        assert_eq!(parse_timedatectl("yes\n"), Some(true));
        assert_eq!(parse_timedatectl("no\n"), Some(false));
        assert_eq!(parse_timedatectl(""), None);
        let chrony = "Reference ID    : 00000000 ()\nStratum         : 0\nLeap status     : Not synchronised\n";
        assert_eq!(parse_chronyc(chrony), Some(false));
        assert_eq!(
            parse_chronyc(&chrony.replace("Not synchronised", "Normal")),
            Some(true)
        );
        assert_eq!(parse_chronyc("Stratum : 2\n"), None);
        assert_eq!(
            parse_adjtimex("    mode: 0\n  offset: 0\n  status: 64\n"),
            Some(false)
        );
        assert_eq!(parse_adjtimex("  status: 8193\n"), Some(true));
        assert_eq!(parse_adjtimex("  status: 8257\n"), Some(false));
        assert_eq!(parse_adjtimex("nothing\n"), None);
    }

    #[test]
    fn the_system_probe_always_answers_and_says_what_it_tried() {
        // Whatever this host has, the probe returns (no tool hangs it) and
        // an unknown answer names what was tried.
        if let ClockSync::Unknown { tried } = SystemProbe.probe() {
            assert!(tried.contains("timedatectl"), "{tried}");
            assert!(tried.contains("chronyc"), "{tried}");
        }
    }

    #[test]
    fn each_answer_says_what_to_do() {
        let s = ClockSync::Unsynchronised {
            source: "chronyc -n tracking".into(),
        };
        assert!(!s.is_synchronised());
        assert!(s.describe().contains("fix:"));
        assert!(
            ClockSync::Unknown { tried: "x".into() }
                .describe()
                .contains("fix:")
        );
    }
}
