//! A running function's config: loaded at cold start, re-read at most once a minute, swapped in only
//! when the new version validates and builds. A refused version leaves the last good one running, and
//! is logged and counted (`Fluxo/ConfigRejected`, alarmed in the template) until it is fixed.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::LoadedConfig;
use super::source::{ConfigSource, Poll, SourceError};

/// How often a running function looks for a new config version, at most.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How soon a function builds the version in use again while part of it could not be built.
pub const DEGRADED_RETRY: Duration = Duration::from_secs(15);
/// The metric counted while the deployed config is refused.
pub const REJECTED_METRIC: &str = "ConfigRejected";

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E: std::error::Error + 'static> {
    /// The config is unreadable or invalid (`file:line:col: field: message`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The config is valid but what it describes could not be built (a secret, a client).
    #[error(transparent)]
    Build(E),
}

struct State<T> {
    source: ConfigSource,
    current: Arc<T>,
    /// The version in use, kept to build it again while part of it is degraded.
    loaded: LoadedConfig,
    version: String,
    next_check: Instant,
    /// The error of the deployed version, while it is refused.
    rejected: Option<String>,
}

/// What a function builds from its config (router, engine), kept current.
pub struct LiveConfig<T> {
    state: Mutex<State<T>>,
    function: &'static str,
    interval: Duration,
}

impl<T> std::fmt::Debug for LiveConfig<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("function", &self.function)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<T> LiveConfig<T> {
    /// Loads the config and builds `T` from it. `function` names the metric's dimension.
    pub async fn start<F, Fut, E>(
        mut source: ConfigSource,
        function: &'static str,
        build: F,
    ) -> Result<Self, StartError<E>>
    where
        F: FnOnce(LoadedConfig) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::error::Error + 'static,
    {
        let loaded = source.load().await?;
        let version = loaded.version.clone();
        tracing::info!(config = %loaded.origin, config_version = %version, "config loaded");
        let current = build(loaded.clone()).await.map_err(StartError::Build)?;
        Ok(LiveConfig {
            state: Mutex::new(State {
                source,
                current: Arc::new(current),
                loaded,
                version,
                next_check: Instant::now() + DEFAULT_INTERVAL,
                rejected: None,
            }),
            function,
            interval: DEFAULT_INTERVAL,
        })
    }

    /// Looks for a new version every `interval` instead of every minute (tests).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self.state.get_mut().next_check = Instant::now() + interval;
        self
    }

    /// The version in use.
    pub async fn version(&self) -> String {
        self.state.lock().await.version.clone()
    }

    /// The current `T`, after looking for a new config version if the interval has passed. A new version
    /// is built with `build`; if it is invalid or fails to build, the current `T` stays.
    pub async fn current<F, Fut, E>(&self, build: F) -> Arc<T>
    where
        F: FnOnce(LoadedConfig) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        self.current_retrying(build, |_| false).await
    }

    /// As [`LiveConfig::current`], and while `degraded` says part of the current `T` could not be built
    /// (a secret created after the deploy, SSM briefly down), the version in use is built again every
    /// [`DEGRADED_RETRY`], so that part starts working without a new version or a cold start.
    pub async fn current_retrying<F, Fut, E>(
        &self,
        build: F,
        degraded: impl Fn(&T) -> bool,
    ) -> Arc<T>
    where
        F: FnOnce(LoadedConfig) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Display,
    {
        let mut state = self.state.lock().await;
        let now = Instant::now();
        if now < state.next_check {
            return state.current.clone();
        }
        state.next_check = now + self.interval;
        match state.source.poll().await {
            Ok(Poll::Unchanged) => {
                if state.rejected.is_some() {
                    self.count_rejected();
                } else if degraded(&state.current) {
                    match build(state.loaded.clone()).await {
                        Ok(next) => {
                            if degraded(&next) {
                                tracing::warn!(config_version = %state.version, "part of the config version in use still cannot be built");
                            } else {
                                tracing::info!(config_version = %state.version, "the config version in use is now fully built");
                            }
                            state.current = Arc::new(next);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, config_version = %state.version, "building the version in use again failed");
                        }
                    }
                }
            }
            Ok(Poll::Changed(result)) => match *result {
                Ok(loaded) => {
                    let version = loaded.version.clone();
                    let origin = loaded.origin.clone();
                    match build(loaded.clone()).await {
                        Ok(next) => {
                            tracing::info!(
                                config = %origin,
                                config_version = %version,
                                previous_version = %state.version,
                                "new config version in use"
                            );
                            state.current = Arc::new(next);
                            state.loaded = loaded;
                            state.version = version;
                            state.rejected = None;
                        }
                        Err(e) => self.reject(&mut state, format!("{origin}: {e}")),
                    }
                }
                Err(e) => self.reject(&mut state, e.to_string()),
            },
            Err(e) => {
                tracing::warn!(error = %e, config_version = %state.version, "config not re-read; keeping the current version");
            }
        }
        if degraded(&state.current) {
            state.next_check = state.next_check.min(now + DEGRADED_RETRY);
        }
        state.current.clone()
    }

    fn reject(&self, state: &mut State<T>, error: String) {
        tracing::error!(
            %error,
            config_version = %state.version,
            "the deployed config was refused; keeping the last good version"
        );
        state.rejected = Some(error);
        self.count_rejected();
    }

    fn count_rejected(&self) {
        crate::observability::count("Fluxo", self.function, REJECTED_METRIC, 1);
    }

    /// The error of the deployed version while it is refused.
    pub async fn rejected(&self) -> Option<String> {
        self.state.lock().await.rejected.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::Location;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot build")]
    struct Never;

    async fn mode_of(loaded: LoadedConfig) -> Result<String, Never> {
        Ok(format!("{:?}", loaded.config.lead_router.mode))
    }

    #[tokio::test]
    async fn a_bad_new_version_keeps_the_last_good_one_and_a_fixed_one_is_taken() {
        let dir = std::env::temp_dir().join(format!("fluxo-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"first_match\"\n").unwrap();
        let source = ConfigSource::local(Location::File(path.clone()));
        let live = LiveConfig::start(source, "test", mode_of)
            .await
            .unwrap()
            .with_interval(Duration::ZERO);
        let good = live.version().await;
        assert_eq!(*live.current(mode_of).await, "FirstMatch");

        std::fs::write(&path, "[lead_router]\nmode = \"sometimes\"\n").unwrap();
        assert_eq!(*live.current(mode_of).await, "FirstMatch");
        assert_eq!(live.version().await, good);
        let error = live.rejected().await.unwrap();
        assert!(error.contains("f.toml:2:8: lead_router.mode:"), "{error}");

        std::fs::write(&path, "[lead_router]\nmode = \"accumulate\"\n").unwrap();
        assert_eq!(*live.current(mode_of).await, "Accumulate");
        assert_ne!(live.version().await, good);
        assert!(live.rejected().await.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_cold_start_with_an_invalid_config_fails_with_the_located_error() {
        let dir = std::env::temp_dir().join(format!("fluxo-live-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"sometimes\"\n").unwrap();
        let source = ConfigSource::local(Location::File(path.clone()));
        let err = LiveConfig::start(source, "test", mode_of)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("{}:2:8: lead_router.mode:", path.display())),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn within_the_interval_the_source_is_not_read_again() {
        let dir = std::env::temp_dir().join(format!("fluxo-live-int-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"first_match\"\n").unwrap();
        let source = ConfigSource::local(Location::File(path.clone()));
        let live = LiveConfig::start(source, "test", mode_of).await.unwrap();
        std::fs::write(&path, "[lead_router]\nmode = \"accumulate\"\n").unwrap();
        assert_eq!(*live.current(mode_of).await, "FirstMatch");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_degraded_part_is_built_again_from_the_version_in_use() {
        let dir = std::env::temp_dir().join(format!("fluxo-live-deg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.toml");
        std::fs::write(&path, "[lead_router]\nmode = \"first_match\"\n").unwrap();
        let source = ConfigSource::local(Location::File(path.clone()));
        // The first build lacks a part (a secret not there yet); later builds have it.
        let builds = std::sync::atomic::AtomicUsize::new(0);
        let build = |loaded: LoadedConfig| {
            let n = builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let mode = mode_of(loaded).await?;
                Ok::<_, Never>(if n == 0 {
                    format!("{mode}+missing")
                } else {
                    mode
                })
            }
        };
        let live = LiveConfig::start(source, "test", build)
            .await
            .unwrap()
            .with_interval(Duration::ZERO);
        let version = live.version().await;
        let degraded = |t: &String| t.ends_with("+missing");
        assert_eq!(*live.current_retrying(build, degraded).await, "FirstMatch");
        assert_eq!(live.version().await, version);
        // Healthy now: no further build.
        let _ = live.current_retrying(build, degraded).await;
        assert_eq!(builds.load(std::sync::atomic::Ordering::SeqCst), 2);
        let _ = std::fs::remove_dir_all(dir);
    }
}
