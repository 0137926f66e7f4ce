//! Quiet steps: a tool's output goes to a log file under `.fluxo/logs/`, the terminal gets one progress line
//! per step with its elapsed time, and on failure the log's tail and its path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Lines of the log shown when a step fails.
pub const TAIL_LINES: usize = 30;

/// `.fluxo/logs/<name>`, its folder created.
pub fn log_path(name: &str) -> Result<PathBuf> {
    let dir = crate::paths::state_dir().join("logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.join(name))
}

/// Starts `log` afresh, with a first line saying what it is.
pub fn start_log(log: &Path, what: &str) -> Result<()> {
    std::fs::write(log, format!("# {what}\n"))
        .with_context(|| format!("cannot write {}", log.display()))
}

/// Runs `cmd` as the step `title`: its output is appended to `log`, the terminal shows
/// `  • title ... ✓ 12.3s`. On failure it shows the last [`TAIL_LINES`] lines of the log and its path.
pub fn run_logged(title: &str, cmd: &mut Command, log: &Path) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    writeln!(file, "\n$ {cmd:?}")?;
    let err = file.try_clone()?;
    print!("  • {title} ... ");
    let _ = std::io::stdout().flush();
    let started = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::from(err))
        .status();
    let elapsed = started.elapsed().as_secs_f64();
    match status {
        Ok(s) if s.success() => {
            println!("✓ {elapsed:.1}s");
            Ok(())
        }
        outcome => {
            println!("✗ {elapsed:.1}s");
            let why = match outcome {
                Ok(s) => s.to_string(),
                Err(e) => format!("cannot run {:?}: {e}", cmd.get_program()),
            };
            show_tail(log);
            bail!("{title} failed ({why}); full log: {}", log.display())
        }
    }
}

/// Prints the last lines of `log`, indented, and where the whole log is.
pub fn show_tail(log: &Path) {
    let lines = tail(log, TAIL_LINES);
    if !lines.is_empty() {
        println!("    ┆ last {} lines of {}:", lines.len(), log.display());
        for line in lines {
            println!("    ┆ {line}");
        }
    }
}

/// The last `n` lines of a file (none if it cannot be read).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(path) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_log(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-progress-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(name);
        start_log(&log, "test").unwrap();
        log
    }

    #[test]
    fn a_steps_output_goes_to_its_log_not_the_terminal() {
        let log = temp_log("ok.log");
        run_logged(
            "saying hello",
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            &log,
        )
        .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("# test\n"), "{text}");
        assert!(text.contains("out\n") && text.contains("err\n"), "{text}");
    }

    #[test]
    fn a_failed_step_names_its_log_and_the_log_keeps_everything() {
        let log = temp_log("fail.log");
        let err = run_logged(
            "failing",
            Command::new("sh").args(["-c", "seq 1 100; exit 3"]),
            &log,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("failing failed (exit status: 3)"), "{err}");
        assert!(err.contains(&log.display().to_string()), "{err}");
        let last = tail(&log, TAIL_LINES);
        assert_eq!(last.len(), TAIL_LINES);
        assert_eq!(last.first().map(String::as_str), Some("71"));
        assert_eq!(last.last().map(String::as_str), Some("100"));
    }

    #[test]
    fn a_program_that_cannot_start_fails_the_step() {
        let log = temp_log("missing.log");
        let err = run_logged("missing", &mut Command::new("/nonexistent/tool"), &log).unwrap_err();
        assert!(err.to_string().contains("cannot run"), "{err}");
    }
}
