//! The ledger's own threads (the file ledger's committer and checkpoint
//! signer, the PostgreSQL writer) run under Linux's `SCHED_BATCH` policy.
//!
//! Their work comes in batches and waits on the disk or the database; the
//! threads that feed them (the gateway's request workers) wait on them in
//! turn. Under the default policy each wake-up of a ledger thread — an
//! entry queued, an I/O completed, several per `fdatasync` — preempted the
//! worker that was running, a context switch and back for every one. A
//! `SCHED_BATCH` thread keeps its fair share of the CPU but never preempts
//! on waking: it runs on an idle CPU at once (a lone request waits no
//! longer), and on a busy one when the running thread next waits, which
//! makes batches larger rather than requests slower. Measured on the
//! gateway benchmark (#10 item 5, `docs/benchmarks.md`): the request
//! worker's involuntary context switches fell from 0.9 to 0.08 per request.
//!
//! The policy is a hint: where it cannot be set (another OS, a seccomp
//! filter) the thread runs under the default policy, and a thread whose
//! nice value an administrator changed is left as it is.

use std::io;
use std::thread::{Builder, JoinHandle};

/// Spawns a ledger thread named `name` running `f` under `SCHED_BATCH`.
pub(crate) fn spawn<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().name(name.into()).spawn(move || {
        let _ = enter_batch_policy();
        f()
    })
}

/// Puts the calling thread under `SCHED_BATCH` (nice value unchanged); the
/// error says why not.
#[cfg(target_os = "linux")]
fn enter_batch_policy() -> Result<(), String> {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityOsValue};
    // Setting the policy also sets the nice value, to the one given: only
    // a thread at the default 0 is changed.
    let nice = rustix::process::getpriority_process(None).map_err(|e| e.to_string())?;
    if nice != 0 {
        return Err(format!("the thread's nice value is {nice}, not 0"));
    }
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Os(ThreadPriorityOsValue::default()),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch),
    )
    .map_err(|e| format!("{e:?}"))
}

/// Not Linux: the default policy.
#[cfg(not(target_os = "linux"))]
fn enter_batch_policy() -> Result<(), String> {
    Err("SCHED_BATCH is Linux's".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };

    #[test]
    fn a_ledger_thread_runs_under_sched_batch_with_its_name_and_nice_value() {
        let before = rustix::process::getpriority_process(None).unwrap();
        let spawner = thread_schedule_policy().unwrap();
        let (policy, name, nice) = super::spawn("ledger-test", || {
            (
                thread_schedule_policy().unwrap(),
                std::thread::current().name().map(str::to_string),
                rustix::process::getpriority_process(None).unwrap(),
            )
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(name.as_deref(), Some("ledger-test"));
        assert_eq!(nice, before, "the nice value is kept");
        if before == 0 {
            assert_eq!(
                policy,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Batch)
            );
        }
        // The spawning thread is untouched.
        assert_eq!(thread_schedule_policy().unwrap(), spawner);
    }
}
