//! `cargo xtask deploy` (SAM build + deploy + config push) and `cargo xtask config push|pull`: the config
//! is data in the stack's config bucket, validated before it is uploaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use aws_config::SdkConfig;
use fluxo::adapters::s3::{Fetched, S3Objects, Stored};

use crate::stack::{self, StackInfo};
use crate::template::Template;
use crate::{local, paths, proc, venv};

/// The template's config bucket and the parameter naming the object's key.
pub const CONFIG_BUCKET: &str = "ConfigBucket";
const CONFIG_KEY_PARAMETER: &str = "ConfigKey";
/// The template's default `FingerprintKeyParameter`: the SSM SecureString holding the key of the email
/// fingerprints, which every function reads at cold start.
pub const FINGERPRINT_KEY_PARAMETER: &str = "/fluxo/fingerprint-key";
/// The stack name when neither `--stack` nor samconfig.toml names one.
pub const DEFAULT_STACK: &str = "fluxo";

/// The long help of `cargo xtask deploy`.
pub const DEPLOY_ABOUT: &str = "\
Deploys Fluxo to your AWS account, then uploads its config:
  1. validates the config (default config/fluxo.toml) before anything is built;
  2. sam build --beta-features (in infra/): cargo-lambda builds each function's arm64 release bootstrap;
  3. sam deploy: with --guided, SAM asks for the stack name, region and every template parameter
     (Stage, AllowedOrigins, ...) and saves the answers in infra/samconfig.toml, which later deploys
     reuse; without --guided and without infra/samconfig.toml, the stack is NAME (default fluxo) with
     the template's defaults, --resolve-s3 and CAPABILITY_IAM;
  4. creates the key of the email fingerprints, an SSM SecureString (FingerprintKeyParameter, default
     /fluxo/fingerprint-key) of 32 random bytes, unless it exists; an existing key is never replaced;
  5. pushes the config to the stack's config bucket (as `cargo xtask config push`);
  6. prints the API URL and what to do next.

Needs AWS credentials (environment variables or a profile with keys in ~/.aws). The SAM CLI, cargo-lambda
and zig are installed into .venv-sam and .venv on first use.";

/// The long help of `cargo xtask config`.
pub const CONFIG_ABOUT: &str = "\
push  validates FILE (errors as file:line:col: field: message), uploads it to the stack's config bucket and
      prints the new version; running functions pick it up within a minute. An invalid file is not uploaded.
pull  prints the deployed config (or writes it to --out FILE).";

/// Where a config command acts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// The deployed stack (default: samconfig.toml's stack_name, else fluxo)
    #[arg(
        long,
        visible_alias = "stack-name",
        value_name = "NAME",
        conflicts_with = "local"
    )]
    pub stack: Option<String>,
    /// The local stack of `cargo xtask dev` (moto at --endpoint, default http://127.0.0.1:4566)
    #[arg(long)]
    pub local: bool,
    /// moto's URL, with --local
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// AWS region of the deployed stack
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile (keys in ~/.aws)
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// `cargo xtask config ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE and upload it as the deployed config (a new version)
    Push {
        /// The config file, e.g. config/fluxo.toml
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Print the deployed config (or write it to --out FILE)
    Pull {
        /// Write the config to FILE instead of printing it
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
}

/// Options of `cargo xtask deploy`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DeployOptions {
    /// The stack's name (default: samconfig.toml's stack_name, else fluxo)
    #[arg(long, visible_alias = "stack-name", value_name = "NAME")]
    pub stack: Option<String>,
    /// Let SAM ask for the stack name, region and parameters, and save them in infra/samconfig.toml
    #[arg(long, short = 'g')]
    pub guided: bool,
    /// The config to validate and push (default config/fluxo.toml)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// AWS region
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile (keys in ~/.aws)
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Template parameters for sam deploy, e.g. 'Stage=prod AllowedOrigins=https://example.com'
    #[arg(long, value_name = "'Key=Value ...'", allow_hyphen_values = true)]
    pub parameter_overrides: Option<String>,
}

/// Where the config object lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigObject {
    pub bucket: String,
    pub key: String,
}

/// Validates `file` and uploads it. Nothing is uploaded if it is invalid.
pub async fn push(sdk: &SdkConfig, object: &ConfigObject, file: &Path) -> Result<(String, Stored)> {
    let loaded = fluxo::config::load_file(file).map_err(|e| anyhow!("{e}"))?;
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let s3 = S3Objects::from_sdk_config(sdk)?;
    let stored = s3
        .put(&object.bucket, &object.key, text)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ok((loaded.version, stored))
}

/// Fetches the deployed config's text; `None` when none is deployed.
pub async fn pull(sdk: &SdkConfig, object: &ConfigObject) -> Result<Option<String>> {
    let s3 = S3Objects::from_sdk_config(sdk)?;
    match s3
        .get(&object.bucket, &object.key, None)
        .await
        .map_err(|e| anyhow!("{e}"))?
    {
        Fetched::Object { body, .. } => Ok(Some(
            String::from_utf8(body).context("the deployed config is not UTF-8")?,
        )),
        Fetched::Missing | Fetched::NotModified => Ok(None),
    }
}

/// The config object of a local stack: its bucket and the template's `ConfigKey`.
pub fn local_object(
    info: &StackInfo,
    template: &Template,
    parameters: &BTreeMap<String, String>,
) -> Result<ConfigObject> {
    Ok(ConfigObject {
        bucket: info.bucket(CONFIG_BUCKET)?.to_string(),
        key: template
            .parameter_values(parameters)
            .get(CONFIG_KEY_PARAMETER)
            .cloned()
            .unwrap_or_else(|| fluxo::config::source::DEFAULT_KEY.to_string()),
    })
}

/// `stack_name` from infra/samconfig.toml (`[default.deploy.parameters]` or `[default.global.parameters]`).
fn samconfig_stack_name(samconfig: &Path) -> Option<String> {
    let text = std::fs::read_to_string(samconfig).ok()?;
    let doc: toml::Table = toml::from_str(&text).ok()?;
    let default = doc.get("default")?;
    ["deploy", "global"].iter().find_map(|cmd| {
        default
            .get(cmd)?
            .get("parameters")?
            .get("stack_name")?
            .as_str()
            .map(str::to_string)
    })
}

fn samconfig() -> PathBuf {
    paths::root().join("infra").join("samconfig.toml")
}

fn stack_name(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .or_else(|| samconfig_stack_name(&samconfig()))
        .unwrap_or_else(|| DEFAULT_STACK.to_string())
}

async fn aws_sdk(region: Option<&str>, profile: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_string()));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

fn sam(args: &[&str], region: Option<&str>, profile: Option<&str>) -> tokio::process::Command {
    let mut cmd = proc::command(venv::SAM.bin("sam"), &paths::root().join("infra"));
    cmd.args(args)
        .env("SAM_CLI_TELEMETRY", "0")
        .env("PATH", venv::TOOLS.path_env());
    if let Some(r) = region {
        cmd.args(["--region", r]);
    }
    if let Some(p) = profile {
        cmd.args(["--profile", p]);
    }
    cmd
}

/// The deployed stack's outputs, through `sam list stack-outputs`.
async fn stack_outputs(
    stack: &str,
    region: Option<&str>,
    profile: Option<&str>,
) -> Result<BTreeMap<String, String>> {
    let out = sam(
        &[
            "list",
            "stack-outputs",
            "--stack-name",
            stack,
            "--output",
            "json",
        ],
        region,
        profile,
    )
    .output()
    .await
    .context("cannot run sam")?;
    if !out.status.success() {
        bail!(
            "sam list stack-outputs --stack-name {stack} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_outputs(&String::from_utf8_lossy(&out.stdout))
}

/// `[{"OutputKey": "...", "OutputValue": "..."}, ...]` as a map.
fn parse_outputs(json: &str) -> Result<BTreeMap<String, String>> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(json).context("sam list stack-outputs did not print JSON")?;
    Ok(list
        .iter()
        .filter_map(|o| {
            Some((
                o.get("OutputKey")?.as_str()?.to_string(),
                o.get("OutputValue")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

fn object_of(outputs: &BTreeMap<String, String>, stack: &str) -> Result<ConfigObject> {
    Ok(ConfigObject {
        bucket: outputs
            .get("ConfigBucketName")
            .cloned()
            .ok_or_else(|| anyhow!("stack {stack} has no ConfigBucketName output: deploy it with this version of the template (cargo xtask deploy)"))?,
        key: outputs
            .get("ConfigKey")
            .cloned()
            .unwrap_or_else(|| fluxo::config::source::DEFAULT_KEY.to_string()),
    })
}

/// Resolves a target to an SDK config and the config object.
async fn resolve(target: &Target) -> Result<(SdkConfig, ConfigObject, String)> {
    if target.local {
        let endpoint = target
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", local::DEFAULT_MOTO_PORT));
        let stack_file = paths::state_dir().join("stack-dev.json");
        let info = StackInfo::load(&stack_file)
            .with_context(|| "is `cargo xtask dev` running? it writes .fluxo/stack-dev.json")?;
        let template = Template::load(&paths::template())?;
        let object = local_object(&info, &template, &BTreeMap::new())?;
        let sdk = stack::local_sdk_config(&endpoint).await;
        return Ok((sdk, object, format!("the local stack at {endpoint}")));
    }
    venv::ensure(&[venv::TOOLS, venv::SAM])?;
    let name = stack_name(target.stack.as_deref());
    let outputs = stack_outputs(&name, target.region.as_deref(), target.profile.as_deref()).await?;
    let object = object_of(&outputs, &name)?;
    let sdk = aws_sdk(target.region.as_deref(), target.profile.as_deref()).await;
    Ok((sdk, object, format!("stack {name}")))
}

/// `cargo xtask config push|pull`.
pub async fn config(command: ConfigCommand) -> Result<()> {
    let target = match &command {
        ConfigCommand::Push { file, target } => {
            // Refuse a bad file before looking anything up.
            fluxo::config::load_file(file).map_err(|e| anyhow!("{e}"))?;
            target
        }
        ConfigCommand::Pull { target, .. } => target,
    };
    let (sdk, object, what) = resolve(target).await?;
    match command {
        ConfigCommand::Push { file, .. } => {
            let (version, stored) = push(&sdk, &object, &file).await?;
            println!(
                "✓ {} pushed to s3://{}/{} ({what})",
                file.display(),
                object.bucket,
                object.key
            );
            println!("  config version {version}");
            if let Some(v) = stored.version_id {
                println!("  S3 version id  {v}");
            }
            println!("  Running functions pick it up within a minute.");
        }
        ConfigCommand::Pull { out, .. } => match pull(&sdk, &object).await? {
            Some(text) => match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!(
                        "✓ s3://{}/{} (version {}) written to {}",
                        object.bucket,
                        object.key,
                        fluxo::config::version_of(&text),
                        path.display()
                    );
                }
                None => print!("{text}"),
            },
            None => bail!(
                "no config is deployed at s3://{}/{} ({what}): the functions run the built-in default",
                object.bucket,
                object.key
            ),
        },
    }
    Ok(())
}

/// The fingerprint key's parameter name: `FingerprintKeyParameter=...` in the overrides, else the default.
fn fingerprint_key_parameter(overrides: Option<&str>) -> String {
    overrides
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.trim_matches(['"', '\'']) == "FingerprintKeyParameter")
        .map(|(_, v)| v.trim_matches(['"', '\'']).to_string())
        .unwrap_or_else(|| FINGERPRINT_KEY_PARAMETER.to_string())
}

/// Creates the fingerprint key (32 random bytes, hex, as an SSM SecureString) unless it exists. An existing
/// key is never replaced: changing it would change every stored fingerprint. Returns whether it created one.
pub async fn ensure_fingerprint_key(sdk: &SdkConfig, name: &str) -> Result<bool> {
    use aws_sdk_ssm::error::ProvideErrorMetadata;
    let ssm = aws_sdk_ssm::Client::new(sdk);
    match ssm.get_parameter().name(name).send().await {
        Ok(_) => return Ok(false),
        Err(e) if e.code() == Some("ParameterNotFound") => {}
        Err(e) => bail!(
            "cannot read SSM parameter {name}: {}",
            e.code().unwrap_or("unreachable")
        ),
    }
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?,
        &mut bytes,
    )
    .context("cannot read /dev/urandom")?;
    match ssm
        .put_parameter()
        .name(name)
        .description("Fluxo: key of the email fingerprints in logs and records. Never change it.")
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .value(hex::encode(bytes))
        .overwrite(false)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        // Created meanwhile by someone else: theirs stands.
        Err(e) if e.code() == Some("ParameterAlreadyExists") => Ok(false),
        Err(e) => bail!(
            "cannot create SSM parameter {name}: {}",
            e.code().unwrap_or("unreachable")
        ),
    }
}

/// `cargo xtask deploy`.
pub async fn deploy(opts: DeployOptions) -> Result<()> {
    let root = paths::root();
    let config = opts
        .config
        .clone()
        .unwrap_or_else(|| root.join("config").join("fluxo.toml"));
    let loaded = fluxo::config::load_file(&config).map_err(|e| anyhow!("{e}"))?;
    println!(
        "✓ {} is valid (version {})",
        config.display(),
        loaded.version
    );
    venv::ensure(&[venv::TOOLS, venv::SAM])?;
    let (region, profile) = (opts.region.as_deref(), opts.profile.as_deref());

    println!("\n▶ sam build --beta-features (cargo-lambda: arm64 release bootstraps)");
    proc::run(
        "sam build",
        &mut sam(&["build", "--beta-features"], None, None),
    )
    .await?;

    let has_samconfig = samconfig().exists();
    let stack = stack_name(opts.stack.as_deref());
    let mut args: Vec<String> = vec!["deploy".into(), "--no-fail-on-empty-changeset".into()];
    if opts.guided {
        args.push("--guided".into());
    }
    if opts.stack.is_some() || !has_samconfig {
        args.extend(["--stack-name".into(), stack.clone()]);
    }
    if !has_samconfig && !opts.guided {
        args.extend([
            "--resolve-s3".into(),
            "--capabilities".into(),
            "CAPABILITY_IAM".into(),
        ]);
    }
    if let Some(p) = &opts.parameter_overrides {
        args.extend(["--parameter-overrides".into(), p.clone()]);
    }
    println!("\n▶ sam {}", args.join(" "));
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    proc::run("sam deploy", &mut sam(&arg_refs, region, profile)).await?;

    // A guided deploy may have named the stack itself: read it back from samconfig.toml.
    let stack = if opts.stack.is_none() && opts.guided {
        stack_name(None)
    } else {
        stack
    };
    let outputs = stack_outputs(&stack, region, profile).await?;
    let object = object_of(&outputs, &stack)?;
    let sdk = aws_sdk(region, profile).await;
    // The functions refuse to start without the fingerprint key; nothing has invoked them yet.
    let key_parameter = fingerprint_key_parameter(opts.parameter_overrides.as_deref());
    if ensure_fingerprint_key(&sdk, &key_parameter).await? {
        println!("\n✓ created the fingerprint key, SSM SecureString {key_parameter}");
    } else {
        println!("\n✓ fingerprint key {key_parameter} exists (never change it)");
    }
    println!(
        "\n▶ Pushing {} to s3://{}/{}",
        config.display(),
        object.bucket,
        object.key
    );
    let (version, _) = push(&sdk, &object, &config).await?;
    println!("  ✓ config version {version}");

    let api = outputs.get("LeadsApiUrl").cloned().unwrap_or_default();
    println!("\n✓ Fluxo is deployed as stack {stack}.");
    println!("  API        {api}   (point your forms and lead-ad webhooks at it)");
    println!("  config     s3://{}/{}", object.bucket, object.key);
    println!("\nNext:");
    println!("  • Store the secrets your config names, e.g.");
    println!(
        "      aws ssm put-parameter --type SecureString --name /fluxo/crm/token --value '...'"
    );
    println!(
        "  • Edit config/fluxo.toml (connectors, campaigns), then: cargo xtask config push config/fluxo.toml --stack {stack}"
    );
    println!(
        "  • Try it: curl -si -X POST {api} -H 'content-type: application/json' -d '{{\"email\": \"ana@example.com\"}}'"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_key_parameter_can_be_overridden() {
        assert_eq!(fingerprint_key_parameter(None), FINGERPRINT_KEY_PARAMETER);
        assert_eq!(
            fingerprint_key_parameter(Some("Stage=prod FingerprintKeyParameter=/acme/fp")),
            "/acme/fp"
        );
        assert_eq!(
            fingerprint_key_parameter(Some("FingerprintKeyParameter=\"/acme/fp2\"")),
            "/acme/fp2"
        );
    }

    #[test]
    fn the_stack_name_comes_from_samconfig_deploy_or_global_parameters() {
        let dir = std::env::temp_dir().join(format!("fluxo-samconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samconfig.toml");
        std::fs::write(
            &file,
            "version = 0.1\n[default.deploy.parameters]\nstack_name = \"fluxo-prod\"\nresolve_s3 = true\n",
        )
        .unwrap();
        assert_eq!(samconfig_stack_name(&file).as_deref(), Some("fluxo-prod"));
        std::fs::write(
            &file,
            "version = 0.1\n[default.global.parameters]\nstack_name = \"g\"\n",
        )
        .unwrap();
        assert_eq!(samconfig_stack_name(&file).as_deref(), Some("g"));
        assert_eq!(samconfig_stack_name(&dir.join("none.toml")), None);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_config_object_is_read_from_the_stack_outputs() {
        let outputs = parse_outputs(
            r#"[{"OutputKey": "ConfigBucketName", "OutputValue": "fluxo-config-dev-1-us-east-1", "Description": "x"},
                {"OutputKey": "ConfigKey", "OutputValue": "fluxo.toml"}]"#,
        )
        .unwrap();
        assert_eq!(
            object_of(&outputs, "s").unwrap(),
            ConfigObject {
                bucket: "fluxo-config-dev-1-us-east-1".into(),
                key: "fluxo.toml".into()
            }
        );
        assert!(object_of(&BTreeMap::new(), "old").is_err());
    }
}
