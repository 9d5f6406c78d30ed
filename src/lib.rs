//! capi-ws: a thread-per-core WebSocket gateway for services discovered in Consul, compatible
//! with CAPI's WebSocket support. `main.rs` only dispatches; the pipeline lives in `data/`
//! (per-core data plane) and `control/` (blocking control-plane threads); they meet only in the
//! published [`snapshot::Snapshot`].

pub mod cli;
pub mod config;
pub mod control;
pub mod data;
pub mod demo;
pub mod echo;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod rt;
pub mod snapshot;

/// Dispatch a parsed command line; returns the process exit code.
pub fn run_cli(cli: cli::Cli) -> i32 {
    match cli.command {
        None => run(&cli.run),
        Some(cli::Command::Demo(args)) => demo::run_demo(&args),
        Some(cli::Command::Echo(args)) => {
            logging::init("info", config::LogFormat::Text);
            match echo::run_echo(&args) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("capi-ws echo: {e:#}");
                    2
                }
            }
        }
        Some(cli::Command::Check(args)) => config::check_main(&args),
    }
}

/// `capi-ws [flags]`: the gateway on the config file (or the embedded default).
pub fn run(args: &cli::RunArgs) -> i32 {
    match config::resolve(args) {
        Ok(settings) => {
            // SIGHUP re-reads the same file with the same flags.
            let args = args.clone();
            let reload: control::signals::Reloader = Box::new(move || config::resolve(&args));
            serve_with(settings, Some(reload), |_| {})
        }
        Err(e) => {
            eprintln!("capi-ws: invalid configuration:\n{e}");
            2
        }
    }
}

/// Start the control plane and the workers, announce readiness, then serve until the process
/// ends. `on_ready` runs once every worker listens (the demo prints its URLs there).
pub fn serve(settings: config::Settings, on_ready: impl FnOnce(&data::worker::Workers)) -> i32 {
    serve_with(settings, None, on_ready)
}

/// [`serve`] with a SIGHUP reloader (None: SIGHUP only logs that there is nothing to reload).
pub fn serve_with(
    settings: config::Settings,
    reload: Option<control::signals::Reloader>,
    on_ready: impl FnOnce(&data::worker::Workers),
) -> i32 {
    logging::init(&settings.log_level, settings.log_format);
    for key in &settings.unknown_keys {
        tracing::debug!("config key {key} is not used by capi-ws; ignored");
    }
    let driver = match rt::resolve_driver(settings.driver) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("capi-ws: {e}");
            return 2;
        }
    };
    if settings.driver == config::DriverChoice::Auto && driver == rt::DriverKind::Epoll {
        tracing::warn!("io_uring is not available here; using the epoll driver");
    }
    let capacity = limits::raise_nofile();
    let worker_count = data::worker::resolve_worker_count(&settings);
    let control = control::Control::new(settings, worker_count);
    // JWT keys (DESIGN §5): first attempt of every source before the workers start.
    let _jwks = match control::jwks::start(&control) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("capi-ws: cannot start the key refresh threads: {e:#}");
            return 1;
        }
    };
    let _consul_threads = control::consul::start(&control);
    let settings = control.settings();
    let workers = match data::worker::start_workers(&settings, &control, driver) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("capi-ws: {e:#}");
            return 1;
        }
    };
    let admin_addr = match control::admin::start_admin(
        std::sync::Arc::clone(&control),
        &settings.ops.admin_address,
        settings.admin_port,
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capi-ws: {e:#}");
            return 1;
        }
    };
    // Readiness is a promise (STYLE §2): handlers first, then the line tests and operators wait for.
    if let Err(e) = control::signals::start_signals(std::sync::Arc::clone(&control), reload) {
        eprintln!("capi-ws: {e:#}");
        return 1;
    }
    control
        .readiness
        .workers
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(
        driver = driver.as_str(),
        workers = workers.threads.len(),
        capacity_connections = capacity,
        "listening ws={} admin={}",
        workers.ws_addr,
        admin_addr
    );
    on_ready(&workers);
    for t in workers.threads {
        let _ = t.join();
    }
    0
}
