//! The offline deploy rehearsal of `cargo xtask test`: the template, transformed as `sam deploy` does,
//! created as one CloudFormation stack on a fresh moto (xtask/rehearsal/cfn_on_moto.py does the checks).

use std::process::Stdio;
use std::time::Duration;

use anyhow::Result;

use crate::proc::{self, Guard};
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
