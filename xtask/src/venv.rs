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

    /// Applies the known fixes ([`MOTO_FIXES`]) to the installed packages of this venv.
    fn fix(&self) -> Result<()> {
        if self.dir != TOOLS.dir {
            return Ok(());
        }
        let Ok(lib) = std::fs::read_dir(self.path().join("lib")) else {
            return Ok(());
        };
        for python in lib.flatten() {
            for fix in &MOTO_FIXES {
                let file = python.path().join("site-packages").join(fix.file);
                if let Ok(text) = std::fs::read_to_string(&file)
                    && let Some(fixed) = fix.apply(&text)
                {
                    std::fs::write(&file, fixed)
                        .with_context(|| format!("cannot write {}", file.display()))?;
                    println!("  ✓ moto: {} (see xtask/src/venv.rs)", fix.what);
                }
            }
        }
        Ok(())
    }
}

/// One edit of an installed file: every `from` becomes `to`. Idempotent: a no-op once `to` is in, or
/// `from` is gone.
#[derive(Debug)]
struct Fix {
    file: &'static str,
    what: &'static str,
    from: &'static str,
    to: &'static str,
}

impl Fix {
    /// The fixed text, or `None` when there is nothing to fix.
    fn apply(&self, text: &str) -> Option<String> {
        (text.contains(self.from) && !text.contains(self.to))
            .then(|| text.replace(self.from, self.to))
    }
}

/// The fixes to moto 5.2.5, each keeping its behaviour:
/// - Its `TransactWriteItems` deep-copies every table it touches, whole, before each transaction (its
///   roll-back copy), once per item of the transaction. A 100-item transaction on a table of a few
///   thousand items took minutes. Under the load, every lead's transaction copied a table that grew
///   with each lead: moto reached 4.4 GB and answered about 12 requests a second. Backing up only the items
///   the transaction touches, and putting those back on a roll-back, restores the same state.
/// - Its DynamoDB backend is not thread-safe, and its server runs one thread per request. Under the
///   load (64 concurrent requests), that copy raced with other requests' writes, and moto answered 500
///   (`dictionary changed size during iteration`) 371 times. One lock around each DynamoDB request
///   makes moto apply them one at a time, as DynamoDB applies the writes to one item. SQS requests stay
///   concurrent: a long poll would hold the lock.
/// - Its SQS `SendMessage` and `ReceiveMessage` build every attribute of the queue (each count walks
///   every message in it) to read one setting, so each call grows with the queue. With the load's
///   thousands of messages, that was most of moto's time. They now read the one setting; the value is
///   the same.
const MOTO_FIXES: [Fix; 7] = [
    Fix {
        file: MOTO_DYNAMODB_MODELS,
        what: "TransactWriteItems backs up the items it touches, not whole tables",
        from: "            if table_name and table_name in self.tables:\n                original_table_state[table_name] = copy.deepcopy(\n                    self.tables[table_name]\n                )\n",
        to: MOTO_BACKUP_ITEMS,
    },
    Fix {
        file: MOTO_DYNAMODB_MODELS,
        what: "TransactWriteItems backs up the items it touches (over the earlier per-table fix)",
        from: "            if table_name and table_name in self.tables and table_name not in original_table_state:\n                original_table_state[table_name] = copy.deepcopy(\n                    self.tables[table_name]\n                )\n",
        to: MOTO_BACKUP_ITEMS,
    },
    Fix {
        file: MOTO_DYNAMODB_MODELS,
        what: "a roll-back puts the backed-up items back",
        from: "self.tables[table_name] = original_table_state[table_name]\n",
        to: "_fluxo_restore(self.tables[table_name], original_table_state[table_name])\n",
    },
    Fix {
        file: MOTO_DYNAMODB_MODELS,
        what: "the roll-back's helper",
        from: "\nclass DynamoDBBackend(BaseBackend, TaggableResourcesMixin):\n",
        to: r#"
def _fluxo_restore(table: Any, backups: Any) -> None:
    # Added by Fluxo's xtask (xtask/src/venv.rs): puts back the items a failed transaction touched.
    for hash_key, range_key, old in reversed(backups):
        if old is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = old
        else:
            table.items[hash_key] = old


class DynamoDBBackend(BaseBackend, TaggableResourcesMixin):
"#,
    },
    Fix {
        file: "moto/dynamodb/responses.py",
        what: "one DynamoDB request at a time",
        from: "        self.body = getattr(self, \"params\", {})\n        return super().call_action()\n",
        to: "        self.body = getattr(self, \"params\", {})\n        with DynamoHandler.fluxo_one_at_a_time:\n            return super().call_action()\n\n    # Added by Fluxo's xtask: see xtask/src/venv.rs.\n    fluxo_one_at_a_time = __import__(\"threading\").RLock()\n",
    },
    Fix {
        file: "moto/sqs/models.py",
        what: "SendMessage reads the one queue setting it needs",
        from: "        if queue.attributes.get(\"ContentBasedDeduplication\") == \"true\":\n",
        to: "        if queue.fifo_queue and getattr(queue, \"content_based_deduplication\", None) == \"true\":\n",
    },
    Fix {
        file: "moto/sqs/models.py",
        what: "ReceiveMessage reads the one queue setting it needs",
        from: "        retention_period = self.get_queue_attributes(\n            queue_name, [\"MessageRetentionPeriod\"]\n        )[\"MessageRetentionPeriod\"]\n",
        to: "        retention_period = self.get_queue(queue_name).message_retention_period\n",
    },
];

const MOTO_DYNAMODB_MODELS: &str = "moto/dynamodb/models/__init__.py";

/// The per-item backup, in `transact_write_items`'s loop over its items (`op` is the operation).
const MOTO_BACKUP_ITEMS: &str = r#"            if table_name and table_name in self.tables:
                # Fluxo's xtask (xtask/src/venv.rs): back up the item, not the whole table.
                try:
                    table = self.tables[table_name]
                    keys = op.get("Key") or {
                        attr: op["Item"][attr]
                        for attr in (table.hash_key_attr, table.range_key_attr)
                        if attr is not None
                    }
                    hash_key, range_key = self.get_keys_value(table, keys)
                    original_table_state.setdefault(table_name, []).append(  # type: ignore
                        (hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key)))
                    )
                except Exception:  # noqa: E722 the operation reports its own error below
                    pass
"#;

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
    fn each_moto_fix_applies_once_and_is_idempotent() {
        for fix in &MOTO_FIXES {
            let original = format!("def f(self):\n{}    pass\n", fix.from);
            let fixed = fix.apply(&original).unwrap();
            assert!(fixed.contains(fix.to), "{}", fix.what);
            assert_eq!(fix.apply(&fixed), None, "{}", fix.what);
            assert_eq!(fix.apply("unrelated"), None, "{}", fix.what);
        }
    }

    #[test]
    fn the_installed_moto_takes_every_fix() {
        let Ok(lib) = std::fs::read_dir(TOOLS.path().join("lib")) else {
            return;
        };
        for python in lib.flatten() {
            let files: std::collections::BTreeSet<&str> =
                MOTO_FIXES.iter().map(|f| f.file).collect();
            for file in files {
                let Ok(mut text) =
                    std::fs::read_to_string(python.path().join("site-packages").join(file))
                else {
                    continue;
                };
                let fixes = || MOTO_FIXES.iter().filter(|f| f.file == file);
                for fix in fixes() {
                    text = fix.apply(&text).unwrap_or(text);
                }
                for fix in fixes() {
                    assert!(
                        text.contains(fix.to),
                        "moto changed under the fix '{}': review MOTO_FIXES in venv.rs",
                        fix.what
                    );
                }
            }
        }
    }
}
