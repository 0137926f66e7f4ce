//! Finds the running function binary of this stack (by its executable and the endpoint in its
//! environment, so no other stack's process is ever touched) and SIGKILLs it.

use std::path::PathBuf;

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A function process of one local stack.
#[derive(Debug, Clone)]
pub struct Target {
    /// The binary `cargo lambda watch` runs, e.g. `target/debug/lead-router`.
    pub binary: PathBuf,
    /// `AWS_ENDPOINT_URL` as this stack gives it to its functions.
    pub endpoint: String,
    /// A source file of the function, touched after a kill so watch restarts it.
    pub source: PathBuf,
}

/// The pids of the target's running processes.
pub fn pids(target: &Target) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted_env = format!("AWS_ENDPOINT_URL={}", target.endpoint);
    let binary = std::fs::canonicalize(&target.binary).unwrap_or_else(|_| target.binary.clone());
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == wanted_env.as_bytes()))
        })
        .collect()
}

/// `cargo lambda watch` (1.9) does not start a function again after its process died: every later
/// invocation hangs. Touching a source file of the function makes watch (run with reloads on) restart
/// it, as Lambda would start a new execution environment; cargo relinks it first.
pub fn restart_under_watch(source: &std::path::Path) -> Result<()> {
    let file = std::fs::File::options().append(true).open(source)?;
    file.set_modified(std::time::SystemTime::now())?;
    Ok(())
}

/// SIGKILLs every running process of the target; returns their pids.
pub fn sigkill(target: &Target) -> Result<Vec<i32>> {
    let found = pids(target);
    for pid in &found {
        kill(Pid::from_raw(*pid), Signal::SIGKILL)?;
    }
    Ok(found)
}
