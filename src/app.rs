//! The runnable application: binds the listener, serves, runs the background workers, shuts down
//! gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::service::Services;

pub struct Application {
    listener: TcpListener,
    router: Router,
    services: Services,
}

impl Application {
    /// Opens the database and binds the configured address (port 0 picks a free port).
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let services = Services::open(config, false).await?;
        Self::with_services(services).await
    }

    /// Binds and builds the router. Without a configured `public_url`, links point at the address
    /// actually bound (so port 0 works).
    pub async fn with_services(mut services: Services) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(services.config.listen).await?;
        if services.config.public_url.is_none() {
            let mut config = (*services.config).clone();
            config.public_url = Some(format!("http://{}", listener.local_addr()?));
            services.config = std::sync::Arc::new(config);
        }
        let router = crate::web::router(services.clone(), crate::telemetry::metrics_handle());
        // Default interest needs the base rate of the current half-year (entered by the operator).
        crate::service::dunning::warn_if_base_rate_missing(&services, services.clock.now().date_naive()).await?;
        Ok(Application { listener, router, services })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish (bounded by
    /// `shutdown_grace_secs`) and closes the database pools.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (worker_stop_tx, worker_stop) = tokio::sync::watch::channel(false);
        let jobs = self.services.config.job_worker.then(|| {
            let name = format!("jobs-{}-{}", std::process::id(), crate::secrets::random_alphanumeric(6));
            tokio::spawn(crate::workers::Worker::new(self.services.clone(), &name).run(worker_stop.clone()))
        });
        let dispatcher = if self.services.config.webhook_worker {
            let worker = format!("{}-{}", std::process::id(), crate::secrets::random_alphanumeric(6));
            let d = crate::service::webhooks::Dispatcher::new(self.services.clone(), &worker)?;
            Some(tokio::spawn(d.run(worker_stop)))
        } else {
            None
        };
        let grace = Duration::from_secs(self.services.config.shutdown_grace_secs);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits = crate::web::server::Limits::of(&self.services.config);
        let server = crate::web::server::serve(self.listener, self.router, limits, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut stop_rx2 = stop_rx.clone();
        tokio::select! {
            r = server => r?,
            _ = async move {
                let _ = stop_rx2.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("shutdown grace period over; dropping in-flight requests"),
        }
        // The workers finish the round they are in (their attempts are recorded), then stop.
        let _ = worker_stop_tx.send(true);
        for w in [dispatcher, jobs].into_iter().flatten() {
            let _ = tokio::time::timeout(grace, w).await;
        }
        self.services.db.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
