//! Well-known paths of the checkout.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `infra/template.yaml`.
pub fn template() -> PathBuf {
    root().join("infra").join("template.yaml")
}

/// `.fluxo/` (git-ignored): logs and stack files of local runs.
pub fn state_dir() -> PathBuf {
    root().join(".fluxo")
}

/// The sample payloads the demo posts.
pub fn fixtures() -> PathBuf {
    root().join("xtask").join("fixtures")
}
