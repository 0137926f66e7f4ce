//! The local stack: moto, the template's tables and queues, the built functions under `cargo lambda watch`, and the event-source mapping.
//!
//! Function environment: `cargo lambda watch` starts each function as a child that inherits watch's own
//! environment (plus `--env-var`s and `[package.metadata.lambda.env]`). xtask therefore resolves every
//! function's `Environment.Variables` from the template and gives watch their union, together with the
//! local AWS settings. Each function reads distinct variable names, so the union is unambiguous; a clash
//! with a different value is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use aws_config::SdkConfig;
use tokio::task::JoinSet;

use crate::proc::{self, Guard};
use crate::stack::{self, StackInfo};
use crate::template::{EventSource, LOCAL_REGION, Template};
use crate::{esm, paths, venv};

/// Default ports.
pub const DEFAULT_MOTO_PORT: u16 = 4566;
pub const DEFAULT_API_PORT: u16 = 9000;

/// How to pick a port.
#[derive(Debug, Clone, Copy)]
pub enum PortChoice {
    /// This port; fail if it is busy.
    Exactly(u16),
    /// This port if free, else any free port.
    Prefer(u16),
    /// Any free port.
    Any,
}

impl PortChoice {
    fn pick(self, what: &str) -> Result<u16> {
        match self {
            PortChoice::Exactly(p) if proc::port_is_free(p) => Ok(p),
            PortChoice::Exactly(p) => {
                bail!("port {p} for {what} is busy: stop what uses it or pass another port")
            }
            PortChoice::Prefer(p) if proc::port_is_free(p) => Ok(p),
            PortChoice::Prefer(_) | PortChoice::Any => proc::free_port(),
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub moto_port: PortChoice,
    pub api_port: PortChoice,
    /// The config pushed to the local config bucket, as `cargo xtask config push` does on AWS. `None`
    /// deploys none: the functions then run the built-in default.
    pub config: Option<PathBuf>,
    /// Template parameter overrides.
    pub parameters: BTreeMap<String, String>,
    /// Reload functions when the code changes (dev), or not (demo, tests).
    pub reload: bool,
    /// Invoke scheduled functions on their `rate(...)` interval.
    pub schedules: bool,
    /// Start the event-source mapping right away (the demo starts it later, after peeking at the queues).
    pub event_sources: bool,
    /// Show the children's output on the terminal; otherwise it goes to `.fluxo/logs/`.
    pub show_output: bool,
    /// A label for log and stack file names.
    pub label: String,
    /// Extra variables for every function, on top of the template's (local secrets, e.g. `CRM_TOKEN`).
    /// Functions also inherit the caller's environment.
    pub extra_env: BTreeMap<String, String>,
    /// Instances of each function that watch may run at once (its `--concurrency`), as Lambda runs one
    /// execution environment per concurrent request. 1 is watch's default: one instance, requests queued.
    pub instances: u32,
}

/// A running local stack. Dropping it stops everything; prefer [`RunningStack::stop`].
#[derive(Debug)]
pub struct RunningStack {
    pub moto_url: String,
    pub api_url: String,
    pub invoke_url: String,
    pub info: StackInfo,
    pub stack_file: PathBuf,
    pub sdk: SdkConfig,
    pub template: Template,
    pub logs: Vec<PathBuf>,
    moto: Guard,
    watch: Guard,
    tasks: JoinSet<()>,
    schedules: bool,
    /// The queues whose event-source mapping runs, and whether the schedules run.
    started_queues: std::collections::BTreeSet<String>,
    schedules_started: bool,
}

fn output_to(show: bool, log: &Path) -> Result<(Stdio, Stdio)> {
    if show {
        return Ok((Stdio::inherit(), Stdio::inherit()));
    }
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = file.try_clone()?;
    Ok((Stdio::from(file), Stdio::from(err)))
}

/// The demo's sample config: the local fake platform and a dry-run CRM.
pub fn demo_config() -> PathBuf {
    paths::root()
        .join("config")
        .join("examples")
        .join("demo.toml")
}

/// Builds every function binary, as `cargo lambda watch` will run them, so watch starts without compiling.
pub async fn build_functions() -> Result<()> {
    println!(
        "▶ Building the functions (the first build compiles the AWS SDKs: 3-5 minutes on 2 cores)"
    );
    // Same package selection and profile as watch's `cargo run --bin <name>` (the default members),
    // so the features unify the same way and nothing is rebuilt when watch starts a function.
    proc::run(
        "cargo build --bins",
        proc::command("cargo", &paths::root()).args(["build", "--bins"]),
    )
    .await
}

/// The union of every function's resolved environment, plus the local AWS settings.
pub fn function_environment(
    template: &Template,
    info: &StackInfo,
    parameters: &BTreeMap<String, String>,
    moto_url: &str,
) -> Result<BTreeMap<String, String>> {
    let mut resolver = info.resolver(template.parameter_values(parameters));
    template.add_local_names(&mut resolver)?;
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for f in template.functions()? {
        for (k, v) in resolver
            .environment(&f.environment)
            .with_context(|| format!("function {}", f.logical_id))?
        {
            if let Some(prev) = env.get(&k).filter(|prev| **prev != v) {
                bail!(
                    "environment variable {k} is {prev:?} for {} but {v:?} for {}: the local stack gives all functions one environment",
                    owner.get(&k).map(String::as_str).unwrap_or("?"),
                    f.logical_id
                );
            }
            owner.insert(k.clone(), f.logical_id.clone());
            env.insert(k, v);
        }
    }
    env.insert("AWS_ENDPOINT_URL".into(), moto_url.to_string());
    env.insert("AWS_REGION".into(), LOCAL_REGION.into());
    env.insert("AWS_DEFAULT_REGION".into(), LOCAL_REGION.into());
    env.insert("AWS_ACCESS_KEY_ID".into(), "test".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "test".into());
    // In AWS the key of the email fingerprints is an SSM SecureString; locally it comes from the
    // environment: the developer's own `FINGERPRINT_KEY`, or a fixed local one.
    env.insert(
        "FINGERPRINT_KEY".into(),
        std::env::var("FINGERPRINT_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty())
            .unwrap_or_else(|| LOCAL_FINGERPRINT_KEY.to_string()),
    );
    // The dashboard's secret (SSM in AWS): the developer's own `REPORT_TOKEN`, or a fixed local one.
    env.insert("REPORT_TOKEN".into(), local_report_token());
    Ok(env)
}

/// The dashboard secret of the local stack: `REPORT_TOKEN` if set, else a fixed local one.
pub fn local_report_token() -> String {
    std::env::var("REPORT_TOKEN")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .unwrap_or_else(|| "fluxo-local-dashboard-token".to_string())
}

/// The fingerprint key of every local stack that is not given one: local data is not secret.
const LOCAL_FINGERPRINT_KEY: &str = "fluxo-local-stack-fingerprint-key";

/// The AWS half of the local stack: moto with the template's tables, queues and buckets, and the config
/// pushed. `cargo xtask bench` runs the release binaries against it directly, without watch.
#[derive(Debug)]
pub struct AwsStack {
    pub moto_url: String,
    pub sdk: SdkConfig,
    pub info: StackInfo,
    pub template: Template,
    pub stack_file: PathBuf,
    /// The functions' environment (the union of the template's, plus the local AWS settings).
    pub env: BTreeMap<String, String>,
    pub moto: Guard,
    pub logs: Vec<PathBuf>,
}

/// Starts moto, provisions the template and pushes `config` (if any), as [`start`] does before watch.
pub async fn start_aws(
    moto_port: PortChoice,
    config: Option<&Path>,
    parameters: &BTreeMap<String, String>,
    label: &str,
) -> Result<AwsStack> {
    let root = paths::root();
    let logs_dir = paths::state_dir().join("logs");
    std::fs::create_dir_all(&logs_dir)?;
    let template = Template::load(&paths::template())?;
    if let Some(c) = config
        && !c.exists()
    {
        bail!("config file {} does not exist", c.display());
    }
    let moto_port = moto_port.pick("moto")?;
    let moto_url = format!("http://127.0.0.1:{moto_port}");
    let mut logs = Vec::new();

    println!("▶ Starting moto on {moto_url}");
    let moto_log = logs_dir.join(format!("moto-{label}.log"));
    let (out, err) = output_to(false, &moto_log)?;
    logs.push(moto_log);
    let mut moto = Guard::spawn(
        "moto_server",
        proc::command(venv::TOOLS.bin("moto_server"), &root)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err),
    )?;
    proc::wait_for_http(
        &format!("{moto_url}/moto-api/"),
        &mut moto,
        Duration::from_secs(60),
    )
    .await?;
    println!("  ✓ moto is up");

    println!("▶ Creating tables, queues and buckets from infra/template.yaml");
    let sdk = stack::local_sdk_config(&moto_url).await;
    let info = stack::provision_template(&sdk, &template, "").await?;
    for (id, name) in &info.tables {
        println!("  ✓ table {id}: {name}");
    }
    for (id, q) in &info.queues {
        println!("  ✓ queue {id}: {}", q.url);
    }
    for (id, name) in &info.buckets {
        println!("  ✓ bucket {id}: {name}");
    }
    if let Some(config) = config {
        let object = crate::deploy::local_object(&info, &template, parameters)?;
        let (version, _) = crate::deploy::push(&sdk, &object, config).await?;
        println!(
            "  ✓ config {} pushed to s3://{}/{} (version {version})",
            config.display(),
            object.bucket,
            object.key
        );
    }
    let stack_file = paths::state_dir().join(format!("stack-{label}.json"));
    info.save(&stack_file)?;
    let env = function_environment(&template, &info, parameters, &moto_url)?;
    Ok(AwsStack {
        moto_url,
        sdk,
        info,
        template,
        stack_file,
        env,
        moto,
        logs,
    })
}

/// Starts moto, provisions the template, builds and serves the functions, and starts the event-source mapping.
pub async fn start(opts: StackOptions) -> Result<RunningStack> {
    let root = paths::root();
    let moto_port = opts.moto_port.pick("moto")?;
    let api_port = opts.api_port.pick("cargo lambda watch")?;
    if moto_port == api_port {
        bail!("moto and the API need different ports");
    }
    let api_url = format!("http://127.0.0.1:{api_port}");
    let aws = start_aws(
        PortChoice::Exactly(moto_port),
        opts.config.as_deref(),
        &opts.parameters,
        &opts.label,
    )
    .await?;
    let AwsStack {
        moto_url,
        sdk,
        info,
        template,
        stack_file,
        env,
        moto,
        mut logs,
    } = aws;
    let logs_dir = paths::state_dir().join("logs");

    build_functions().await?;

    println!("▶ Starting cargo lambda watch on {api_url}");
    let watch_log = logs_dir.join(format!("watch-{}.log", opts.label));
    let (out, err) = output_to(opts.show_output, &watch_log)?;
    if !opts.show_output {
        logs.push(watch_log);
    }
    let mut cmd = proc::command(venv::TOOLS.bin("cargo-lambda"), &root);
    cmd.args([
        "lambda",
        "watch",
        "--invoke-address",
        "127.0.0.1",
        "--invoke-port",
        &api_port.to_string(),
    ]);
    if !opts.reload {
        cmd.arg("--ignore-changes");
    }
    if opts.instances > 1 {
        cmd.args(["--concurrency", &opts.instances.to_string()]);
    }
    cmd.env("PATH", venv::TOOLS.path_env())
        .envs(&env)
        .envs(&opts.extra_env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mut watch = Guard::spawn("cargo lambda watch", &mut cmd)?;
    // A TCP probe: an HTTP request to an unrouted path makes watch log an error.
    proc::wait_for_port(api_port, &mut watch, Duration::from_secs(120)).await?;
    println!("  ✓ cargo lambda watch is up");

    let mut stack = RunningStack {
        moto_url,
        invoke_url: api_url.clone(),
        api_url,
        info,
        stack_file,
        sdk,
        template,
        logs,
        moto,
        watch,
        tasks: JoinSet::new(),
        schedules: opts.schedules,
        started_queues: Default::default(),
        schedules_started: false,
    };
    if opts.event_sources {
        stack.start_event_sources()?;
    }
    Ok(stack)
}

impl RunningStack {
    /// Starts the local event-source mapping (SQS pollers, and schedules if asked for). Idempotent.
    pub fn start_event_sources(&mut self) -> Result<()> {
        self.start_mappings(None)
    }

    /// Starts the SQS pollers of the named queues only (template logical ids, e.g. `LeadsQueue`), so
    /// a demo step can show what a function queued before its consumer takes it. Idempotent.
    pub fn start_event_sources_for(&mut self, queues: &[&str]) -> Result<()> {
        self.start_mappings(Some(queues))
    }

    fn start_mappings(&mut self, only: Option<&[&str]>) -> Result<()> {
        let mappings: Vec<_> = esm::sqs_mappings(&self.template, &self.info)?
            .into_iter()
            .filter(|m| !self.started_queues.contains(&m.queue_id))
            .filter(|m| only.is_none_or(|q| q.contains(&m.queue_id.as_str())))
            .collect();
        let schedules = if self.schedules && only.is_none() && !self.schedules_started {
            esm::schedule_mappings(&self.template)?
        } else {
            Vec::new()
        };
        if mappings.is_empty() && schedules.is_empty() {
            return Ok(());
        }
        println!("▶ Starting the local event-source mapping");
        let started: Vec<String> = mappings.iter().map(|m| m.queue_id.clone()).collect();
        self.schedules_started |= !schedules.is_empty();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        esm::start(
            &mut self.tasks,
            sqs,
            self.invoke_url.clone(),
            mappings,
            schedules,
        )?;
        self.started_queues.extend(started);
        Ok(())
    }

    /// Starts each function that has an HTTP route or an SQS source, so the first real request does not wait
    /// for watch to start it. HTTP functions get a harmless `GET` (answered 405 or 404), SQS functions an
    /// empty batch. Scheduled-only functions are left alone: invoking them would run them.
    pub async fn warm_up(&mut self) -> Result<()> {
        println!("▶ Starting the functions under watch");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()?;
        for f in self.template.functions()? {
            let http_path = f.events.iter().find_map(|(_, e)| match e {
                EventSource::Http { path, .. } => Some(path.clone()),
                _ => None,
            });
            let sqs = f
                .events
                .iter()
                .any(|(_, e)| matches!(e, EventSource::Sqs(_)));
            let started = if let Some(path) = http_path {
                let path = fill_path_parameters(&path);
                http.get(format!("{}{path}", self.api_url))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            } else if sqs {
                http.post(esm::invoke_url(&self.invoke_url, &f.binary))
                    .json(&serde_json::json!({"Records": []}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            } else {
                // Scheduled functions: an empty payload is refused before any work, which still
                // starts (and, if needed, compiles) the process, so the first real invocation does
                // not spend its deadline waiting for a build.
                http.post(esm::invoke_url(&self.invoke_url, &f.binary))
                    .json(&serde_json::json!({}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            };
            match started {
                Ok(status) => println!("  ✓ {} answers (HTTP {status})", f.binary),
                Err(e) => bail!("{} did not start under cargo lambda watch: {e}", f.binary),
            }
        }
        Ok(())
    }

    /// Prints where everything is.
    pub fn print_urls(&self) {
        println!();
        println!(
            "  API          {}/leads   (and /leads/{{source}}, /events)",
            self.api_url
        );
        println!(
            "  invoke API   {}/2015-03-31/functions/<name>/invocations",
            self.invoke_url
        );
        println!(
            "  AWS (moto)   {}   (AWS_ENDPOINT_URL, region us-east-1, any credentials)",
            self.moto_url
        );
        println!("  stack file   {}", self.stack_file.display());
        for l in &self.logs {
            println!("  log          {}", l.display());
        }
    }

    /// Fails if moto or watch has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(s) = self.moto.try_exited() {
            bail!("moto exited ({s})");
        }
        if let Some(s) = self.watch.try_exited() {
            bail!("cargo lambda watch exited ({s})");
        }
        Ok(())
    }

    /// Stops the event-source mapping, watch (and its functions), then moto.
    pub async fn stop(mut self) {
        println!("▶ Stopping the local stack");
        self.tasks.shutdown().await;
        self.watch.stop(Duration::from_secs(10)).await;
        self.moto.stop(Duration::from_secs(5)).await;
        println!("  ✓ stopped");
    }
}

/// `/leads/{source}` -> `/leads/warmup`.
fn fill_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "warmup" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::QueueInfo;

    #[test]
    fn fills_path_parameters_for_warm_up_requests() {
        assert_eq!(fill_path_parameters("/leads/{source}"), "/leads/warmup");
        assert_eq!(fill_path_parameters("/leads"), "/leads");
    }

    #[test]
    fn gives_functions_their_template_environment_and_the_local_aws_settings() {
        let template = Template::load(&paths::template()).unwrap();
        // Every table and queue of the template, named as `cargo xtask dev` names them.
        let mut info = StackInfo::default();
        for t in template.tables().unwrap() {
            info.tables.insert(t.logical_id.clone(), t.name.clone());
        }
        for q in template.queues().unwrap() {
            info.queues.insert(
                q.logical_id.clone(),
                QueueInfo {
                    url: format!("http://127.0.0.1:1/123456789012/{}", q.name),
                    arn: format!("arn:aws:sqs:us-east-1:123456789012:{}", q.name),
                    name: q.name.clone(),
                },
            );
        }
        info.buckets
            .insert("ConfigBucket".into(), "local-config".into());
        let params = BTreeMap::from([("DefaultCountry".to_string(), "BR".to_string())]);
        let env = function_environment(&template, &info, &params, "http://127.0.0.1:1").unwrap();
        assert_eq!(env["LEADS_TABLE"], "LeadsTable");
        assert_eq!(
            env["LEADS_QUEUE_URL"],
            "http://127.0.0.1:1/123456789012/LeadsQueue"
        );
        assert_eq!(env["DEFAULT_COUNTRY"], "BR");
        assert_eq!(env["MAX_BODY_BYTES"], "65536");
        assert_eq!(env["HONEYPOT_FIELD"], "_gotcha");
        assert_eq!(env["AWS_ENDPOINT_URL"], "http://127.0.0.1:1");
        assert_eq!(env["FLUXO_CONFIG_BUCKET"], "local-config");
        assert_eq!(env["FLUXO_CONFIG_KEY"], "fluxo.toml");
        assert!(!env.contains_key("FLUXO_CONFIG"));
    }
}
