//! xtask library: the local stack (moto + cargo lambda watch + event-source mapping) and the task runner's commands.

pub mod chaos;
pub mod cost;
pub mod demo;
pub mod demo_audience;
pub mod demo_email;
pub mod demo_optimizer;
pub mod demo_reports;
pub mod demo_router;
pub mod demo_sources;
pub mod deploy;
pub mod dev;
pub mod erase;
pub mod esm;
pub mod events;
pub mod init_time;
pub mod local;
pub mod optimizer;
pub mod paths;
pub mod perf;
pub mod proc;
pub mod progress;
pub mod rehearsal;
pub mod runtime_api;
pub mod stack;
pub mod template;
pub mod testing;
pub mod tools;
pub mod venv;

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
