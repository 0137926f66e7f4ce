//! One release binary run as Lambda runs it: its own process, the stack's environment, 128 MB declared,
//! and events from the local Runtime API. Reads its peak resident memory from `/proc`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::paths;
use crate::proc::{self, Guard};
use crate::runtime_api::{Answer, RuntimeApi};

/// The variables Lambda sets for every function, for a local run.
pub fn lambda_variables(name: &str, runtime_api: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), name.to_string()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "128".into()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("AWS_LAMBDA_LOG_STREAM_NAME".into(), "bench".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{name}"),
        ),
    ])
}

/// A function process fed by its own Runtime API.
pub struct Function {
    pub name: String,
    api: RuntimeApi,
    guard: Guard,
    sent: usize,
}

impl Function {
    /// Starts `binary` with `env` (the stack's) and the Lambda variables, with `events` already queued
    /// on its Runtime API; its output goes to `.fluxo/logs/bench-NAME.log`. The events go first: a
    /// `GET /next` that finds none is held open (as Lambda holds an idle environment), so a runtime
    /// that starts faster than a large event is serialized would wait for good.
    pub async fn start(
        name: &str,
        binary: &Path,
        env: &BTreeMap<String, String>,
        events: &[Value],
    ) -> Result<Function> {
        let api = RuntimeApi::start().await;
        for e in events {
            api.push(e)?;
        }
        let logs = paths::state_dir().join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::create(logs.join(format!("bench-{name}.log")))?;
        let mut cmd = proc::command(binary, &paths::root());
        cmd.envs(env)
            .envs(lambda_variables(name, &api.address()))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        let guard = Guard::spawn(name, &mut cmd)?;
        Ok(Function {
            name: name.to_string(),
            api,
            guard,
            sent: events.len(),
        })
    }

    /// Waits for the answers to every event given to [`Function::start`].
    pub async fn answers(&mut self, timeout: Duration) -> Result<Vec<Answer>> {
        let answers = self
            .api
            .wait_for_answers(self.sent, timeout)
            .await
            .with_context(|| format!("{} (log: .fluxo/logs/bench-{}.log)", self.name, self.name))?;
        if let Some(status) = self.guard.try_exited() {
            bail!("{} exited ({status})", self.name);
        }
        Ok(answers)
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        let pid = self.guard.pid().context("the function is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        vm_hwm(&status).context("no VmHWM line in /proc/PID/status")
    }

    pub async fn stop(mut self) {
        self.guard.stop(Duration::from_millis(500)).await;
    }
}

/// `VmHWM:   12345 kB` -> bytes.
pub fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peak_resident_size_from_proc_status() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(vm_hwm(status), Some(2 * 1024 * 1024));
        assert_eq!(vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn gives_the_function_lambdas_variables_at_128_mb() {
        let v = lambda_variables("lead-router", "127.0.0.1:9");
        assert_eq!(v["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9");
        assert_eq!(v["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
        assert_eq!(v["AWS_LAMBDA_LOG_GROUP_NAME"], "/aws/lambda/lead-router");
    }
}
