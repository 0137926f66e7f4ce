//! `cargo xtask`: Fluxo's task runner. This file parses the command line (clap) and dispatches; each
//! command's options and logic live in its module.

use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use xtask::{chaos, cost, demo, deploy, dev, init_time, optimizer, perf, testing, tools};

/// Fluxo's task runner: the local stack, checks, packaging and deployment.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// sam build + sam deploy to AWS, push the config, print the API URL
    #[command(long_about = deploy::DEPLOY_ABOUT)]
    Deploy(deploy::DeployOptions),
    /// Push or pull the deployed config (a file in the stack's config bucket)
    #[command(subcommand, long_about = deploy::CONFIG_ABOUT)]
    Config(deploy::ConfigCommand),
    /// Start the local stack, post sample leads, show what happened, stop
    Demo(demo::DemoArgs),
    /// Run the local stack in the foreground until Ctrl-C
    Dev(dev::DevOptions),
    /// fmt, clippy, template checks, unit and integration tests
    Test(testing::TestArgs),
    /// Reliability harness: faults, duplicates, kills, hostile input and load, then the ledger check
    Chaos(chaos::ChaosArgs),
    /// Measured AWS bill per million leads: 1,000 leads and one optimizer run on the local stack
    Cost(cost::CostArgs),
    /// Release arm64 bootstraps with cargo-lambda, and their sizes
    Package,
    /// Performance budget: criterion, sizes, cold starts and peak memory of every function, one table
    Bench(perf::BenchArgs),
    /// Where a function's bytes go, per crate (cargo bloat on a release build with symbols)
    Bloat(perf::bloat::BloatArgs),
    /// Validate a Fluxo config file
    CheckConfig(tools::CheckConfigArgs),
    /// Cold-start time of every function to its first runtime API request vs. hello-world
    InitTime(init_time::InitTimeArgs),
    /// Invoke a function of a running `cargo xtask dev`
    Invoke(tools::InvokeOptions),
    /// Erase a person (email platforms, audiences, Fluxo's records) on a running `cargo xtask dev`
    Erase(xtask::erase::EraseArgs),
    /// Revert a campaign's last bid change, or run the optimizer now, on `cargo xtask dev`
    Optimizer(optimizer::OptimizerArgs),
}

async fn execute(command: Command) -> Result<bool> {
    match command {
        Command::Deploy(opts) => deploy::deploy(opts).await?,
        Command::Config(command) => deploy::config(command).await?,
        Command::Demo(args) => demo::run(args.config).await?,
        Command::Dev(opts) => dev::run(opts).await?,
        Command::Test(args) => testing::run(args.config).await?,
        Command::Chaos(args) => return chaos::run(args).await,
        Command::Cost(args) => return cost::run(args).await,
        Command::Package => tools::package().await?,
        Command::Bench(args) => return perf::run(args).await,
        Command::Bloat(args) => perf::bloat::run(args).await?,
        Command::CheckConfig(args) => return Ok(tools::check_config(&args.file)),
        Command::InitTime(args) => init_time::run(args).await?,
        Command::Invoke(opts) => tools::invoke(opts).await?,
        Command::Erase(args) => xtask::erase::run(args).await?,
        Command::Optimizer(args) => optimizer::run(args).await?,
    }
    Ok(true)
}

fn main() -> ExitCode {
    let Some(command) = Cli::parse().command else {
        // `cargo xtask` alone prints the list of commands.
        let _ = Cli::command().print_help();
        return ExitCode::SUCCESS;
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cargo xtask").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_has_help() {
        let cli = Cli::command();
        let names: Vec<String> = cli
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert!(names.len() >= 11, "{names:?}");
        for name in names {
            for flag in ["--help", "-h"] {
                let err = parse(&format!("{name} {flag}")).expect_err("help is an early exit");
                assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{name} {flag}");
                assert!(
                    err.to_string().contains("Usage: cargo xtask"),
                    "{name}: {err}"
                );
            }
        }
        for nested in [
            "config push",
            "config pull",
            "optimizer revert",
            "optimizer run",
        ] {
            let err = parse(&format!("{nested} --help")).expect_err("help");
            assert_eq!(err.kind(), ErrorKind::DisplayHelp, "{nested}");
        }
    }

    #[test]
    fn deploy_help_explains_the_steps() {
        let help = parse("deploy --help").expect_err("help").to_string();
        assert!(help.contains("sam build --beta-features"), "{help}");
        assert!(help.contains("--parameter-overrides"), "{help}");
    }

    #[test]
    fn a_mistyped_command_is_an_error_that_suggests_the_right_one() {
        let err = parse("dmeo").expect_err("typo");
        assert_eq!(err.kind(), ErrorKind::InvalidSubcommand);
        let text = err.to_string();
        assert!(
            text.contains("similar subcommand") && text.contains("'demo'"),
            "{text}"
        );
    }

    #[test]
    fn a_mistyped_option_is_an_error_that_suggests_the_right_one() {
        let err = parse("dev --shedule").expect_err("typo");
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
        let text = err.to_string();
        assert!(text.contains("--schedule"), "{text}");
        let err = parse("demo --confg x.toml").expect_err("typo");
        assert!(err.to_string().contains("--config"), "{err}");
    }

    #[test]
    fn the_readme_command_lines_parse() {
        // Concrete command lines from README.md and docs/, word for word.
        for line in [
            "demo",
            "test",
            "chaos",
            "chaos --profile long",
            "cost",
            "dev",
            "dev --param DefaultCountry=BR",
            "dev --config config/examples/demo.toml --moto-port 4566 --api-port 9000 --schedule",
            "invoke hourly-optimizer --scheduled",
            "invoke lead-router --payload {} --invoke-url http://127.0.0.1:9000",
            "optimizer revert brand-search --entity 555 --force",
            "optimizer run",
            "optimizer run --time 2026-11-27T20:00:00Z --invoke-url http://x",
            "check-config config/fluxo.toml",
            "package",
            "bench",
            "bench -p hourly-optimizer --bench optimizer",
            "bench --skip-criterion --runs 5",
            "bench --skip-criterion --binaries target/release",
            "bloat",
            "bloat lead-router -n 20",
            "init-time",
            "init-time --runs 5",
            "deploy",
            "deploy --guided",
            "deploy -g",
            "deploy --stack fluxo-prod --parameter-overrides Stage=prod",
            "deploy --stack-name x --config c.toml --region eu-west-1 --profile p",
            "config push config/fluxo.toml",
            "config push config/fluxo.toml --stack NAME",
            "config push config/fluxo.toml --local --endpoint http://127.0.0.1:4566",
            "config pull",
            "config pull --out FILE --stack NAME",
            "config pull --local",
        ] {
            assert!(parse(line).is_ok(), "{line}: {:?}", parse(line).err());
        }
    }

    #[test]
    fn options_reach_the_commands_as_before() {
        let Ok(Cli {
            command: Some(Command::Dev(dev)),
        }) = parse("dev --param DefaultCountry=BR --param Stage=dev --api-port 9100 --schedule")
        else {
            panic!("dev did not parse");
        };
        assert_eq!(dev.api_port, Some(9100));
        assert!(dev.schedules);
        assert_eq!(
            dev.parameters,
            vec![
                ("DefaultCountry".to_string(), "BR".to_string()),
                ("Stage".to_string(), "dev".to_string())
            ]
        );
        let Ok(Cli {
            command: Some(Command::Bench(bench)),
        }) = parse("bench -p fluxo --bench intake")
        else {
            panic!("bench did not parse");
        };
        assert_eq!(bench.args, ["-p", "fluxo", "--bench", "intake"]);
        let Ok(Cli {
            command: Some(Command::InitTime(init)),
        }) = parse("init-time")
        else {
            panic!("init-time did not parse");
        };
        assert_eq!(init.runs, 20);
        assert!(init.binaries.is_none());
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for line in [
            "dev --param DefaultCountry",
            "dev --api-port ninety",
            "config push",
            "config push f.toml --local --stack s",
            "config fetch",
            "invoke",
            "check-config",
            "init-time --runs many",
            "optimizer revert",
            "optimizer run --time yesterday",
        ] {
            assert!(parse(line).is_err(), "{line} was accepted");
        }
    }
}
