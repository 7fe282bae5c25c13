//! berthd: the Berth daemon.

mod config;
mod listen;
mod notify;
mod reload;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::config::{Args, Settings};

fn main() {
    // `--print-manpage` (for packaging): the man page, generated from these very flags.
    if std::env::args().nth(1).as_deref() == Some("--print-manpage") {
        let _ = clap_mangen::Man::new(<Args as clap::CommandFactory>::command())
            .section("8")
            .render(&mut std::io::stdout());
        return;
    }
    let args = Args::parse();
    let settings = match Settings::load(args.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            std::process::exit(1);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!(
            "{}={lvl},berth_daemon={lvl},berth_server={lvl},berth_buildkit={lvl}",
            "berthd",
            lvl = settings.log_level
        ))
    });
    // The filter can change on a reload (debug, log-level): behind a reload layer.
    use tracing_subscriber::prelude::*;
    let (filter, filter_handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    // Few malloc arenas: glibc makes one per thread that allocates (up to 8 per core), and the
    // blocking pool's many short-lived threads would each leave one holding freed memory.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    // Two workers: the API is I/O-bound and blocking work has its own pool. Keeps idle RSS small.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(64)
        .thread_keep_alive(Duration::from_secs(10))
        .enable_all()
        .build()
        .expect("tokio runtime");
    let set_level: Box<dyn Fn(&str) + Send + Sync> = Box::new(move |lvl: &str| {
        if std::env::var("BERTH_LOG").is_err() {
            let f = tracing_subscriber::EnvFilter::new(format!(
                "berthd={lvl},berth_daemon={lvl},berth_server={lvl},berth_buildkit={lvl}"
            ));
            let _ = filter_handle.reload(f);
        }
    });
    if let Err(e) = rt.block_on(run(settings, args, set_level)) {
        tracing::error!("{e:#}");
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

async fn run(s: Settings, args: Args, set_level: Box<dyn Fn(&str) + Send + Sync>) -> Result<()> {
    // Handlers first: a SIGTERM that arrives while we start must still end in a clean shutdown.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Checked before anything is made on disk.
    let userns_remap = match &s.userns_remap {
        Some(spec) => {
            let r = berth_daemon::remap::resolve(spec).map_err(|e| anyhow::anyhow!("userns-remap: {}", e.message))?;
            tracing::info!(spec = %spec, uids = ?r.uids, gids = ?r.gids, "containers run in user namespaces");
            Some(r)
        }
        None => None,
    };
    std::fs::create_dir_all(&s.data_root).with_context(|| format!("create {}", s.data_root.display()))?;
    std::fs::create_dir_all(&s.exec_root).with_context(|| format!("create {}", s.exec_root.display()))?;
    let _lock = config::lock_data_root(&s.data_root)?;
    let listeners = listen::open_all(&s.hosts, s.tls.as_ref()).await?;
    if let Some(p) = &s.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("write pidfile {}", p.display()))?;
    }
    // Shims run from a sealed in-memory copy: nothing a container reaches through /proc/<pid>/exe
    // can rewrite the binary on the host (CVE-2019-5736). The fd lives as long as berthd.
    let sealed_shim = berth_sys::process::sealed_copy(&s.shim_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let shim_exec =
        std::path::PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&sealed_shim)));
    let mut warnings = listen::warnings(&s.hosts, s.tls.as_ref());
    let favored = if s.cgroup_favordynmods {
        let dir = s.exec_root.join("favordynmods");
        match tokio::task::spawn_blocking(move || berth_sys::dynmods::favor(&dir)).await? {
            Ok(f) => {
                tracing::info!(how = ?f, "cgroup migrations favored (favordynmods)");
                Some(f)
            }
            Err(e) => {
                // A speed setting: containers run as well without it, so berthd starts and says so.
                tracing::warn!("{}", e.message);
                warnings.push(format!("WARNING: {}", e.message));
                None
            }
        }
    } else {
        None
    };
    let daemon = berth_daemon::Daemon::open(berth_daemon::DaemonConfig {
        data_root: s.data_root.clone(),
        exec_root: s.exec_root.clone(),
        cgroup_parent: s.cgroup_parent.clone(),
        shim_exec: shim_exec.clone(),
        shim_path: s.shim_path.clone(),
        bridge: s.bridge.clone(),
        bip: s.bip,
        pools: s.pools.clone(),
        distribution: s.distribution.clone(),
        init_path: s.init_path.clone(),
        log_opts: s.log_opts.clone(),
        log_driver: s.log_driver.clone(),
        labels: s.labels.clone(),
        debug: s.debug,
        warnings,
        // Where journald listens: systemd's socket, unless the environment names another.
        journal_socket: std::env::var_os("BERTH_JOURNAL_SOCKET").map(std::path::PathBuf::from),
        userns_remap,
        cdi_spec_dirs: s.cdi_spec_dirs.clone(),
        host_gateway_ip: s.host_gateway_ip,
        default_bridge_ipv6: s.default_bridge_ipv6,
    })
    .await;
    let daemon = match daemon {
        Ok(d) => d,
        Err(e) => {
            release_favor(favored).await;
            anyhow::bail!("{e}");
        }
    };
    let app = berth_server::app(&daemon);
    if let Some(addr) = s.metrics_addr {
        let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("metrics address {addr}"))?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics are served without authentication to anyone who reaches this address");
        }
        tokio::spawn(serve_metrics(l, daemon.clone()));
        tracing::info!(%addr, "metrics at /metrics");
    }
    tokio::spawn(trim_when_idle());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for l in listeners {
        servers.push(tokio::spawn(listen::serve(l, app.clone(), stop_rx.clone())));
    }
    tracing::info!(hosts = ?s.hosts, data_root = %s.data_root.display(), "berthd ready");
    notify::notify(&format!("READY=1\nMAINPID={}", std::process::id()));

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut file = reload::file_keys(&args.config_file);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break }
            _ = hup.recv() => {
                notify::notify("RELOADING=1");
                match reload::plan(&args, &file) {
                    Ok((plan, now)) => {
                        set_level(&plan.settings.log_level);
                        daemon.reload(&reload::reload_of(&plan.settings));
                        tracing::info!(applied = ?plan.applied, "SIGHUP: {} reloaded", args.config_file.display());
                        if !plan.need_restart.is_empty() {
                            tracing::warn!(keys = ?plan.need_restart, "SIGHUP: these changes take effect at the next start of berthd");
                        }
                        file = now;
                    }
                    Err(e) => tracing::error!("SIGHUP: {} not reloaded: {e:#}", args.config_file.display()),
                }
                notify::notify("READY=1");
            }
        }
    }
    notify::notify("STOPPING=1");
    let _ = stop_tx.send(true);
    // Long streams (events, logs -f, attach) would hold a graceful shutdown forever: bound it.
    let _ = tokio::time::timeout(Duration::from_secs(3), futures_join(servers)).await;
    daemon.shutdown().await;
    release_favor(favored).await;
    for h in &s.hosts {
        if let Some(p) = h.strip_prefix("unix://") {
            let _ = std::fs::remove_file(p);
        }
    }
    if let Some(p) = &s.pidfile {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("berthd stopped");
    Ok(())
}

/// Unmounts berthd's favordynmods hierarchy, if it mounted one.
async fn release_favor(favored: Option<berth_sys::dynmods::Favored>) {
    if let Some(f) = favored {
        match tokio::task::spawn_blocking(move || berth_sys::dynmods::release(&f)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("cgroup-favordynmods: {}", e.message),
            Err(e) => tracing::warn!("cgroup-favordynmods: {e}"),
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

/// `GET /metrics` (Prometheus/OpenMetrics text) on its own listener, as dockerd's `metrics-addr`.
async fn serve_metrics(l: tokio::net::TcpListener, daemon: berth_daemon::Daemon) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let d = daemon.clone();
            async move {
                berth_daemon::metrics::get().events_subscribers.set(d.events.subscribers() as i64);
                (
                    [("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    d.system.metrics().await,
                )
            }
        }),
    );
    if let Err(e) = axum::serve(l, app).await {
        tracing::error!("metrics listener: {e}");
    }
}

/// Gives memory back in two steps once the API goes idle after work, as the shims do
/// (`berth_sys::memory`). After 5 s: freed heap (a burst of requests leaves glibc's arenas holding
/// memory the daemon no longer uses). After a minute: the code that ran, too — it stays in the page
/// cache, but the first request after it faults back what it runs (measured: a `run --rm` 10–15 ms
/// slower), so that waits until the daemon is idle, not between two commands of a session.
async fn trim_when_idle() {
    const TICK: Duration = Duration::from_secs(5);
    const SHED_CODE_AFTER: u32 = 12; // ticks: one minute
    let (mut last_seen, mut idle_ticks) = (0, 0u32);
    loop {
        tokio::time::sleep(TICK).await;
        let now = berth_server::requests_served();
        idle_ticks = if now == last_seen { idle_ticks.saturating_add(1) } else { 0 };
        last_seen = now;
        if idle_ticks == 1 {
            let _ = tokio::task::spawn_blocking(berth_sys::memory::trim_heap).await;
        } else if idle_ticks == SHED_CODE_AFTER {
            let _ = tokio::task::spawn_blocking(berth_sys::memory::shed).await;
        }
    }
}
