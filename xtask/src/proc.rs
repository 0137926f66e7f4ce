//! Child processes that never outlive xtask: each runs in its own process group, stopped on drop, error and Ctrl-C.

use std::net::TcpListener;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A running child process group. Dropping it stops the whole group (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct Guard {
    name: String,
    child: Option<Child>,
    pgid: Option<Pid>,
}

impl Guard {
    /// Spawns `cmd` in a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Guard> {
        cmd.process_group(0).kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw);
        Ok(Guard {
            name: name.to_string(),
            child: Some(child),
            pgid,
        })
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The process name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the child to exit (its group is cleaned up afterwards).
    pub async fn wait(&mut self) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("process already stopped")?;
        let status = child
            .wait()
            .await
            .with_context(|| format!("waiting for {}", self.name))?;
        self.child = None;
        self.signal(Signal::SIGKILL);
        Ok(status)
    }

    /// `Some(status)` if the child has exited.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Asks the group to stop (SIGTERM), then kills it after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            self.signal(Signal::SIGTERM);
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                self.signal(Signal::SIGKILL);
                let _ = child.wait().await;
            }
        }
        // Grandchildren in the same group that ignored SIGTERM.
        self.signal(Signal::SIGKILL);
        self.pgid = None;
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            // ESRCH (group already gone) is the normal case after a clean exit.
            let _ = killpg(pgid, signal);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            self.signal(Signal::SIGKILL);
            return;
        };
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(Signal::SIGKILL);
        let _ = child.start_kill();
    }
}

/// Runs a command to completion in its own process group (so Ctrl-C stops it through xtask), inheriting stdio.
pub async fn run(name: &str, cmd: &mut Command) -> Result<()> {
    let mut guard = Guard::spawn(name, cmd.stdin(Stdio::null()))?;
    let status = guard.wait().await?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}

/// A `tokio::process::Command` for a program, run from `dir`.
pub fn command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(dir);
    cmd
}

/// Whether nothing listens on 127.0.0.1:`port`.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port that is free right now on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls 127.0.0.1:`port` until it accepts a TCP connection, the process exits, or `timeout` passes.
pub async fn wait_for_port(port: u16, guard: &mut Guard, timeout: Duration) -> Result<()> {
    let target = format!("port {port}");
    poll_until(
        guard,
        timeout,
        ("listening on", "listen on", &target),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await
}

/// Polls `url` until it answers any HTTP status, the process exits, or `timeout` passes.
pub async fn wait_for_http(url: &str, guard: &mut Guard, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    poll_until(
        guard,
        timeout,
        ("answering on", "answer on", url),
        || async { client.get(url).send().await.is_ok() },
    )
    .await
}

/// The one poll loop: asks `ready` every 200 ms until it says yes, `guard`'s process exits, or `timeout`
/// passes. `(before, never, target)` word the errors: "NAME exited (STATUS) before {before} {target}" and
/// "NAME did not {never} {target} within Ns".
async fn poll_until<F, Fut>(
    guard: &mut Guard,
    timeout: Duration,
    (before, never, target): (&str, &str, &str),
    mut ready: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if ready().await {
            return Ok(());
        }
        if let Some(status) = guard.try_exited() {
            bail!(
                "{} exited ({status}) before {before} {target}",
                guard.name()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} did not {never} {target} within {}s",
                guard.name(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(secs: &str) -> Guard {
        Guard::spawn("sleep", Command::new("sleep").arg(secs)).unwrap()
    }

    #[tokio::test]
    async fn waiting_for_a_port_returns_once_it_listens() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut guard = sleeper("30");
        wait_for_port(port, &mut guard, Duration::from_secs(5))
            .await
            .unwrap();
        guard.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn waiting_gives_up_after_the_timeout_and_names_the_port() {
        let port = free_port().unwrap();
        let mut guard = sleeper("30");
        let err = wait_for_port(port, &mut guard, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("sleep did not listen on port {port} within 0s")
        );
        guard.stop(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn waiting_stops_when_the_process_exits() {
        let port = free_port().unwrap();
        let mut guard = sleeper("0");
        let err = wait_for_http(
            &format!("http://127.0.0.1:{port}/"),
            &mut guard,
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("sleep exited (exit status: 0) before answering on http://127.0.0.1:"),
            "{err}"
        );
    }
}
