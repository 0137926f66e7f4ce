//! The offline deploy rehearsal of `cargo xtask test`: the template, transformed as `sam deploy` does,
//! created as one CloudFormation stack on a fresh moto (xtask/rehearsal/cfn_on_moto.py does the checks),
//! and `sam build` through cargo-lambda with cfn-lint on the built template.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::proc::{self, Guard};
use crate::template::Template;
use crate::{paths, venv};

/// Starts a moto of its own, runs the rehearsal script against it, stops it.
pub async fn cfn_on_moto() -> Result<()> {
    let root = paths::root();
    let port = proc::free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = paths::state_dir().join("logs").join("moto-rehearsal.log");
    std::fs::create_dir_all(paths::state_dir().join("logs"))?;
    let file = std::fs::File::create(&log)?;
    let mut moto = Guard::spawn(
        "moto_server",
        proc::command(venv::TOOLS.bin("moto_server"), &root)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file)),
    )?;
    let outcome = async {
        proc::wait_for_http(
            &format!("{url}/moto-api/"),
            &mut moto,
            Duration::from_secs(60),
        )
        .await?;
        proc::run(
            "the CloudFormation rehearsal on moto",
            proc::command(venv::SAM.bin("python"), &root)
                .arg(root.join("xtask").join("rehearsal").join("cfn_on_moto.py"))
                .arg(paths::template())
                .arg(&url)
                .env("AWS_DEFAULT_REGION", "us-east-1"),
        )
        .await
    }
    .await;
    moto.stop(Duration::from_secs(5)).await;
    outcome
}

/// `sam build` of the template, each function built by cargo-lambda (`SAM_BUILD_MODE=debug`, so no
/// release LTO build), then cfn-lint on the built template. This machine has no aarch64 standard library,
/// so the rehearsal builds a copy of the template switched from arm64 to x86_64; everything else is the
/// template as deployed.
pub async fn sam_build() -> Result<()> {
    let root = paths::root();
    let dir = paths::state_dir().join("rehearsal");
    std::fs::create_dir_all(&dir)?;
    let text = std::fs::read_to_string(paths::template())?;
    let code_uri = format!("CodeUri: {}/", root.display());
    let rewritten = text
        .replace("      - arm64", "      - x86_64")
        .replace("CodeUri: ../", &code_uri);
    if !rewritten.contains("- x86_64") || !rewritten.contains(&code_uri) {
        bail!(
            "the template no longer has the Architectures and CodeUri lines the rehearsal rewrites"
        );
    }
    let template = dir.join("template.yaml");
    let build_dir = dir.join("build");
    std::fs::write(&template, rewritten)?;
    proc::run(
        "sam build",
        proc::command(venv::SAM.bin("sam"), &dir)
            .args(["build", "--beta-features", "--template-file"])
            .arg(&template)
            .arg("--build-dir")
            .arg(&build_dir)
            .env("SAM_BUILD_MODE", "debug")
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("PATH", venv::TOOLS.path_env()),
    )
    .await?;
    for f in Template::load(&paths::template())?.functions()? {
        let bootstrap = build_dir.join(&f.logical_id).join("bootstrap");
        if !bootstrap.is_file() {
            bail!("sam build made no {}", bootstrap.display());
        }
        println!("  ✓ {}: {}", f.binary, bootstrap.display());
    }
    proc::run(
        "cfn-lint on the built template",
        proc::command(venv::TOOLS.bin("cfn-lint"), &root).arg(build_dir.join("template.yaml")),
    )
    .await?;
    println!("  ✓ the built template passes cfn-lint");
    Ok(())
}
