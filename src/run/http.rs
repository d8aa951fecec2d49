//! `/metrics`, `/healthz` and `/readyz` over HTTP, and the signals that stop the service.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use omnistitch_kafka::{Health, ServiceMetrics};

#[derive(Clone)]
struct AppState {
    metrics: Arc<ServiceMetrics>,
    health: Arc<Health>,
}

async fn metrics_text(State(s): State<AppState>) -> impl IntoResponse {
    s.metrics.loop_silence_seconds.set(s.health.silent_for(Instant::now()).as_secs_f64());
    s.metrics.loop_silence_limit_seconds.set(s.health.stall_limit().as_secs_f64());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render())
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, String) {
    match s.health.stalled_for(Instant::now()) {
        None => (StatusCode::OK, "ok\n".into()),
        Some(silent) => {
            tracing::error!(silent_s = silent.as_secs(), "the processing loop has not moved: reporting unhealthy");
            let text = format!("stalled: the processing loop has not moved for {} s\n", silent.as_secs());
            (StatusCode::SERVICE_UNAVAILABLE, text)
        }
    }
}

async fn readyz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    if s.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: joining the group or restoring state\n")
    }
}

/// The routes.
fn router(metrics: Arc<ServiceMetrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

/// Binds `addr` now (so a taken port fails the start), then serves on a thread of its own, which
/// also turns SIGTERM and SIGINT into `stop`. Returns the bound address.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<ServiceMetrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding the HTTP port {addr}"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // The handlers are installed here, before `serve` returns: a SIGTERM that arrives once the
    // service has said it is serving is always a polite stop, never the default kill.
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = runtime.enter();
        (
            signal(SignalKind::terminate()).context("listening for SIGTERM")?,
            signal(SignalKind::interrupt()).context("listening for SIGINT")?,
        )
    };
    std::thread::Builder::new().name("http".into()).spawn(move || {
        runtime.block_on(async move {
            let stop_on_signal = stop.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight work"),
                    _ = int.recv() => tracing::info!("SIGINT: finishing in-flight work"),
                }
                stop_on_signal.store(true, Ordering::Release);
                // The handlers stay installed: a second signal while the last commit is still
                // being retried is an operator who will not wait, so it stops the process now
                // (exit 130: the uncommitted batch is re-emitted on the next start, as after
                // any crash).
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::warn!("second signal: exiting without finishing in-flight work");
                std::process::exit(130);
            });
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "HTTP listener");
                    return;
                }
            };
            if let Err(e) = axum::serve(listener, router(metrics, health)).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
    })?;
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn healthz_fails_once_the_loop_is_silent_past_its_limit() {
        let health = Arc::new(Health::default());
        health.set_stall_limit(Duration::from_secs(60));
        let state = AppState { metrics: Arc::new(ServiceMetrics::new()), health: health.clone() };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (status, body) = runtime.block_on(healthz(State(state.clone())));
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        health.set_stall_limit(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(1_200));
        let (status, body) = runtime.block_on(healthz(State(state.clone())));
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.starts_with("stalled: the processing loop has not moved for 1 s"), "{body}");
        // Scrapes show the silence too, for alerts before the orchestrator acts.
        runtime.block_on(metrics_text(State(state.clone())));
        assert!(state.metrics.loop_silence_seconds.get() >= 1.2);
        assert_eq!(state.metrics.loop_silence_limit_seconds.get(), 1.0);
        health.beat();
        assert_eq!(runtime.block_on(healthz(State(state))).0, StatusCode::OK);
    }
}
