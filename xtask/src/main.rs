//! `cargo xtask`: Fluxo's task runner (demo, dev, test, package, bench, check-config, init-time, invoke).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use xtask::deploy::{ConfigCommand, DeployOptions, Target};
use xtask::dev::DevOptions;
use xtask::tools::InvokeOptions;

const USAGE: &str = "\
usage: cargo xtask <command>

  deploy [--stack NAME] [--guided] [--config FILE] [--region R] [--profile P] [--parameter-overrides S]
                                  sam build + sam deploy to AWS, push the config, print the API URL
  config push FILE [--stack NAME | --local]
                                  validate FILE and upload it as the deployed config (new version)
  config pull [--out FILE] [--stack NAME | --local]
                                  fetch the deployed config
  demo [--config FILE]            start the local stack, post sample leads, show what happened, stop
  dev [--config FILE] [--moto-port N] [--api-port N] [--schedule] [--param Name=Value]...
                                  run the local stack in the foreground until Ctrl-C
  test [--config FILE]            fmt, clippy, template checks, unit and integration tests
  package                         release arm64 bootstraps with cargo-lambda, and their sizes
  bench [ARGS...]                 cargo bench --workspace ARGS
  check-config FILE               validate a Fluxo config file
  init-time [--runs N]            cold-start time to the first runtime API request vs. hello-world
  invoke FUNCTION [--scheduled] [--payload JSON] [--invoke-url URL]
                                  invoke a function of a running `cargo xtask dev`
  optimizer revert CAMPAIGN [--entity ID] [--force] | optimizer run [--time RFC3339]   [--invoke-url URL]
                                  revert a campaign's last bid change, or run the optimizer now, on `cargo xtask dev`
";

enum Command {
    Deploy(DeployOptions),
    Config(ConfigCommand, Target),
    Text(&'static str),
    Demo(Option<PathBuf>),
    Dev(DevOptions),
    Test(Option<PathBuf>),
    Package,
    Bench(Vec<String>),
    CheckConfig(PathBuf),
    InitTime(usize),
    Invoke(InvokeOptions),
    Optimizer(Vec<String>),
    Help,
}

fn value(args: &mut std::slice::Iter<'_, String>, flag: &str) -> Result<String> {
    args.next()
        .cloned()
        .ok_or_else(|| anyhow!("{flag} needs a value"))
}

fn port(args: &mut std::slice::Iter<'_, String>, flag: &str) -> Result<u16> {
    let v = value(args, flag)?;
    v.parse().with_context(|| format!("{flag} {v}: not a port"))
}

fn parse(args: &[String]) -> Result<Command> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let mut it = rest.iter();
    let mut config = None;
    let wants_help = rest.iter().any(|a| a == "--help" || a == "-h");
    match name.as_str() {
        "deploy" if wants_help => Ok(Command::Text(xtask::deploy::DEPLOY_USAGE)),
        "config" if wants_help => Ok(Command::Text(xtask::deploy::CONFIG_USAGE)),
        "deploy" => {
            let mut opts = DeployOptions::default();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--stack" | "--stack-name" => opts.stack = Some(value(&mut it, a)?),
                    "--guided" | "-g" => opts.guided = true,
                    "--config" => opts.config = Some(PathBuf::from(value(&mut it, a)?)),
                    "--region" => opts.region = Some(value(&mut it, a)?),
                    "--profile" => opts.profile = Some(value(&mut it, a)?),
                    "--parameter-overrides" => opts.parameter_overrides = Some(value(&mut it, a)?),
                    other => {
                        bail!("unknown option {other} for deploy (see cargo xtask deploy --help)")
                    }
                }
            }
            Ok(Command::Deploy(opts))
        }
        "config" => {
            let mut target = Target::default();
            let mut file = None;
            let mut out = None;
            let action = it
                .next()
                .cloned()
                .ok_or_else(|| anyhow!("usage: cargo xtask config push FILE | config pull"))?;
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--stack" | "--stack-name" => target.stack = Some(value(&mut it, a)?),
                    "--local" => target.local = true,
                    "--endpoint" => target.endpoint = Some(value(&mut it, a)?),
                    "--region" => target.region = Some(value(&mut it, a)?),
                    "--profile" => target.profile = Some(value(&mut it, a)?),
                    "--out" if action == "pull" => out = Some(PathBuf::from(value(&mut it, a)?)),
                    f if !f.starts_with('-') && action == "push" && file.is_none() => {
                        file = Some(PathBuf::from(f))
                    }
                    other => bail!("unknown argument {other} for config {action}"),
                }
            }
            if target.local && target.stack.is_some() {
                bail!("--local and --stack exclude each other");
            }
            match action.as_str() {
                "push" => {
                    let file =
                        file.ok_or_else(|| anyhow!("usage: cargo xtask config push FILE"))?;
                    Ok(Command::Config(ConfigCommand::Push(file), target))
                }
                "pull" => Ok(Command::Config(ConfigCommand::Pull(out), target)),
                other => bail!("unknown config command {other} (push or pull)"),
            }
        }
        "demo" | "test" => {
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--config" => config = Some(PathBuf::from(value(&mut it, a)?)),
                    other => bail!("unknown option {other} for {name}"),
                }
            }
            Ok(if name == "demo" {
                Command::Demo(config)
            } else {
                Command::Test(config)
            })
        }
        "dev" => {
            let mut opts = DevOptions::default();
            let mut params = BTreeMap::new();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--config" => opts.config = Some(PathBuf::from(value(&mut it, a)?)),
                    "--moto-port" => opts.moto_port = Some(port(&mut it, a)?),
                    "--api-port" => opts.api_port = Some(port(&mut it, a)?),
                    "--schedule" => opts.schedules = true,
                    "--param" => {
                        let v = value(&mut it, a)?;
                        let (k, val) = v
                            .split_once('=')
                            .ok_or_else(|| anyhow!("--param takes Name=Value"))?;
                        params.insert(k.to_string(), val.to_string());
                    }
                    other => bail!("unknown option {other} for dev"),
                }
            }
            opts.parameters = params;
            Ok(Command::Dev(opts))
        }
        "package" => Ok(Command::Package),
        "bench" => Ok(Command::Bench(rest.to_vec())),
        "check-config" => match rest {
            [file] => Ok(Command::CheckConfig(PathBuf::from(file))),
            _ => bail!("usage: cargo xtask check-config FILE"),
        },
        "init-time" => {
            let mut runs = 20;
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--runs" => {
                        runs = value(&mut it, a)?
                            .parse()
                            .context("--runs takes a number")?
                    }
                    other => bail!("unknown option {other} for init-time"),
                }
            }
            Ok(Command::InitTime(runs.max(1)))
        }
        "invoke" => {
            let mut opts = InvokeOptions::default();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--scheduled" => opts.scheduled = true,
                    "--payload" => opts.payload = Some(value(&mut it, a)?),
                    "--invoke-url" => opts.invoke_url = Some(value(&mut it, a)?),
                    f if !f.starts_with('-') && opts.function.is_empty() => {
                        opts.function = f.to_string()
                    }
                    other => bail!("unknown argument {other} for invoke"),
                }
            }
            if opts.function.is_empty() {
                bail!("usage: cargo xtask invoke FUNCTION [--scheduled] [--payload JSON]");
            }
            Ok(Command::Invoke(opts))
        }
        "optimizer" => Ok(Command::Optimizer(rest.to_vec())),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => bail!("unknown command {other}"),
    }
}

async fn execute(command: Command) -> Result<bool> {
    match command {
        Command::Deploy(opts) => xtask::deploy::deploy(opts).await?,
        Command::Config(command, target) => xtask::deploy::config(command, target).await?,
        Command::Text(text) => print!("{text}"),
        Command::Demo(config) => xtask::demo::run(config).await?,
        Command::Dev(opts) => xtask::dev::run(opts).await?,
        Command::Test(config) => xtask::testing::run(config).await?,
        Command::Package => xtask::tools::package().await?,
        Command::Bench(args) => xtask::tools::bench(&args).await?,
        Command::CheckConfig(path) => return Ok(xtask::tools::check_config(&path)),
        Command::InitTime(runs) => xtask::init_time::run(runs).await?,
        Command::Invoke(opts) => xtask::tools::invoke(opts).await?,
        Command::Optimizer(args) => xtask::optimizer::run(&args).await?,
        Command::Help => print!("{USAGE}"),
    }
    Ok(true)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let is_dev = matches!(command, Command::Dev(_));
    let outcome = runtime.block_on(async {
        if is_dev {
            // dev handles Ctrl-C itself, to stop the stack in order.
            return Some(execute(command).await);
        }
        tokio::select! {
            r = execute(command) => Some(r),
            _ = xtask::shutdown_signal() => None,
        }
    });
    // Dropping the runtime drops any unfinished command, whose process guards stop their children.
    drop(runtime);
    match outcome {
        Some(Ok(true)) => ExitCode::SUCCESS,
        Some(Ok(false)) => ExitCode::FAILURE,
        Some(Err(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
        None => {
            eprintln!("interrupted: stopped everything that was started");
            ExitCode::from(130)
        }
    }
}
