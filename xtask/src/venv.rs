//! Python virtual environments with the pinned tools, created and updated by xtask itself.
//!
//! aws-sam-cli, checkov and moto pin conflicting versions of shared packages, so each gets its own venv.
//! A stamp file holds the hash of the requirements file, so an unchanged venv costs nothing on re-runs.
//! The installers' output goes to `.fluxo/logs/install-venv*.log`; the terminal shows one line per step.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::{paths, progress};

/// One virtual environment and its pinned requirements.
#[derive(Debug, Clone, Copy)]
pub struct Venv {
    /// Folder under the workspace root.
    pub dir: &'static str,
    /// Requirements file, relative to the workspace root.
    pub requirements: &'static str,
    pub what: &'static str,
}

/// moto, cargo-lambda, ziglang and cfn-lint.
pub const TOOLS: Venv = Venv {
    dir: ".venv",
    requirements: "xtask/requirements/tools.txt",
    what: "moto, cargo-lambda, ziglang, cfn-lint",
};

/// aws-sam-cli.
pub const SAM: Venv = Venv {
    dir: ".venv-sam",
    requirements: "xtask/requirements/sam.txt",
    what: "aws-sam-cli",
};

/// checkov.
pub const CHECKOV: Venv = Venv {
    dir: ".venv-checkov",
    requirements: "xtask/requirements/checkov.txt",
    what: "checkov",
};

const STAMP: &str = ".fluxo-requirements.sha256";

impl Venv {
    /// The venv's folder.
    pub fn path(&self) -> PathBuf {
        paths::root().join(self.dir)
    }

    /// A program in the venv's `bin/`.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.path().join("bin").join(program)
    }

    /// `PATH` with this venv's `bin/` first (so `cargo lambda` finds `cargo-lambda` and `python3 -m ziglang` works).
    pub fn path_env(&self) -> std::ffi::OsString {
        let mut parts = vec![self.path().join("bin")];
        if let Some(old) = std::env::var_os("PATH") {
            parts.extend(std::env::split_paths(&old));
        }
        std::env::join_paths(parts).unwrap_or_default()
    }

    /// Creates the venv and installs its requirements unless the stamp says they are already in.
    pub fn ensure(&self) -> Result<()> {
        let root = paths::root();
        let requirements = root.join(self.requirements);
        let text = std::fs::read(&requirements)
            .with_context(|| format!("cannot read {}", requirements.display()))?;
        let hash = hex::encode(Sha256::digest(&text));
        let stamp = self.path().join(STAMP);
        let python = self.bin("python");
        if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hash) {
            println!("  ✓ {} ({}) is up to date", self.dir, self.what);
            return self.fix();
        }
        // pip prints ~100 lines on a first install: they go to the log, the terminal gets one line per step.
        let log = progress::log_path(&format!("install{}.log", self.dir.replace('.', "-")))?;
        progress::start_log(&log, &format!("{} ({})", self.dir, self.what))?;
        if !python.exists() {
            let host = host_python()?;
            progress::run_logged(
                &format!("creating {} for {}", self.dir, self.what),
                Command::new(&host).args(["-m", "venv"]).arg(self.path()),
                &log,
            )
            .with_context(|| format!("install Python 3 with its venv module ({host} -m venv)"))?;
        }
        progress::run_logged(
            &format!(
                "installing pinned {} into {} (first time: a minute or two)",
                self.what, self.dir
            ),
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--progress-bar",
                    "off",
                    "-r",
                ])
                .arg(&requirements),
            &log,
        )?;
        std::fs::write(&stamp, format!("{hash}\n"))
            .with_context(|| format!("cannot write {}", stamp.display()))?;
        self.fix()
    }

    /// Applies the known fixes to the installed packages of this venv (today: moto's transactions).
    fn fix(&self) -> Result<()> {
        if self.dir != TOOLS.dir {
            return Ok(());
        }
        let Ok(lib) = std::fs::read_dir(self.path().join("lib")) else {
            return Ok(());
        };
        for python in lib.flatten() {
            let file = python
                .path()
                .join("site-packages/moto/dynamodb/models/__init__.py");
            if let Ok(text) = std::fs::read_to_string(&file)
                && let Some(fixed) = fix_moto_transactions(&text)
            {
                std::fs::write(&file, fixed)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                println!(
                    "  ✓ moto: TransactWriteItems copies each table once (see xtask/src/venv.rs)"
                );
            }
        }
        Ok(())
    }
}

/// moto 5.2.5's `TransactWriteItems` deep-copies a whole table once per item of the transaction (its
/// roll-back copy), so a 100-item transaction on a table of a few thousand items takes minutes, and the
/// copy races with concurrent writes (`dictionary changed size during iteration`, a 500). Every copy is
/// taken before any write, so they are identical: copying each table once keeps moto's behaviour. The
/// fix is applied to the installed file, idempotently; it is a no-op once moto no longer has the line.
const MOTO_COPY_PER_ITEM: &str = "            if table_name and table_name in self.tables:\n                original_table_state[table_name] = copy.deepcopy(";
const MOTO_COPY_PER_TABLE: &str = "            if table_name and table_name in self.tables and table_name not in original_table_state:\n                original_table_state[table_name] = copy.deepcopy(";

/// The fixed text of moto's `dynamodb/models/__init__.py`, or `None` when there is nothing to fix.
fn fix_moto_transactions(text: &str) -> Option<String> {
    text.contains(MOTO_COPY_PER_ITEM)
        .then(|| text.replacen(MOTO_COPY_PER_ITEM, MOTO_COPY_PER_TABLE, 1))
}

/// Ensures each venv, in order.
pub fn ensure(venvs: &[Venv]) -> Result<()> {
    println!("▶ Python tools (pinned, in git-ignored venvs)");
    for v in venvs {
        v.ensure()?;
    }
    Ok(())
}

fn host_python() -> Result<String> {
    for candidate in ["python3", "python"] {
        if Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(candidate.to_string());
        }
    }
    bail!("Python 3 is needed (python3 or python on PATH) to install the pinned local tools")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_transactions_copy_each_table_once_and_the_fix_is_idempotent() {
        let original = format!(
            "def transact_write_items(self):\n{MOTO_COPY_PER_ITEM}\n    self.tables[table_name]\n)\n"
        );
        let fixed = fix_moto_transactions(&original).unwrap();
        assert!(fixed.contains("table_name not in original_table_state"));
        assert_eq!(fix_moto_transactions(&fixed), None);
        assert_eq!(fix_moto_transactions("unrelated"), None);
    }

    #[test]
    fn the_installed_moto_has_the_line_the_fix_expects_or_is_already_fixed() {
        let Ok(lib) = std::fs::read_dir(TOOLS.path().join("lib")) else {
            return;
        };
        for python in lib.flatten() {
            let file = python
                .path()
                .join("site-packages/moto/dynamodb/models/__init__.py");
            if let Ok(text) = std::fs::read_to_string(&file) {
                assert!(
                    text.contains(MOTO_COPY_PER_ITEM) || text.contains(MOTO_COPY_PER_TABLE),
                    "moto changed its TransactWriteItems: review the fix in venv.rs"
                );
            }
        }
    }
}
