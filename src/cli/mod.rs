//! The `runner` command line: parsing in [`args`] (clap), one function per subcommand,
//! the ops port's client in [`admin`].

mod admin;
mod args;
mod deployment;
mod eval;
mod healthcheck;
mod supervise;

pub use supervise::EXIT_SILENT_NATS;

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;

pub use args::{parse, Cli, Command, VERSION};

use crate::error::Error;
use crate::nats_io;
use crate::settings::Settings;
use crate::stages::Pipeline;
use crate::store::Store;

/// Exit code of a usage error (clap's, and this command line's before clap).
pub const EXIT_USAGE: i32 = 2;

/// Runs the command line (`args` as the process got them, the program's name first);
/// returns the process exit code.
pub fn main_with<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match parse(args) {
        Ok(c) => c,
        // --help and --version come this way too: clap prints them to stdout and
        // answers 0; usage errors go to stderr with 2.
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let Some(command) = cli.command else {
        // No subcommand: the overview, as `--help` prints it.
        let _ = Cli::command().print_help();
        return 0;
    };
    let result = match command {
        Command::Check(a) => check(a.config.as_deref()),
        Command::Run(a) => run(a.config.as_deref(), a.mode.as_deref()),
        Command::Eval(a) => eval::eval(
            &a.program,
            &a.event,
            a.state.as_deref(),
            a.ctx.as_deref(),
            a.gas,
        )
        .map_err(Error::Other),
        #[cfg(feature = "dev")]
        Command::Demo(a) => crate::demo::run(a.nats_url.as_deref()).map_err(Error::Other),
        // A usage error's code: this build has no such command.
        #[cfg(not(feature = "dev"))]
        Command::Demo(_) => {
            eprintln!("error: {}", dev_only("demo"));
            return EXIT_USAGE;
        }
        #[cfg(not(feature = "dev"))]
        Command::Bench(_) => {
            eprintln!("error: {}", dev_only("bench"));
            return EXIT_USAGE;
        }
        Command::Healthcheck(a) => healthcheck::healthcheck(a.url.as_deref(), a.config.as_deref()),
        #[cfg(feature = "dev")]
        Command::Bench(a) => crate::bench::run(&a.options()).map_err(Error::Other),
        // Exit codes of its own: 1 for failed cases, 2 for invalid test files.
        Command::Test(a) => return crate::sagatest::main(a.path.as_deref()),
        Command::Shadow(a) => return shadow(&a.options()),
        Command::Admin(a) => return admin::main(a),
        Command::Version => {
            println!("runner {VERSION}");
            Ok(())
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "runner", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not a failure to report.
            use std::io::Write;
            let _ = std::io::stdout().write_all(&script);
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

// Catalog loading is the library's (the ops port's reload and `runner shadow` use it
// too); re-exported for the subcommands and tests that reach it here.
pub use crate::pipeline::{catalogs_for_mode, limits, load_catalog, load_effects};

/// What `runner demo` and `runner bench` answer in a build without the `dev` feature.
#[cfg(not(feature = "dev"))]
fn dev_only(name: &str) -> String {
    format!(
        "`runner {name}` is not in this build: it runs on the test rig (a throwaway \
         nats-server, which the shipped image does not have), which only builds with the \
         `dev` feature; from a checkout of the repository, with nats-server on the PATH or \
         in RUNNER_NATS_SERVER_BIN: cargo run --release --features dev -- {name}"
    )
}

/// How `runner run` opens its store: the map and the retention the settings ask for.
/// Sweeping waits two ack waits after start-up, so messages a predecessor left unacked
/// come back first and still find their markers.
pub fn store_options(settings: &Settings) -> crate::store::StoreOptions {
    let mib = |m: u64| (m as usize).saturating_mul(1 << 20);
    let r = &settings.retention;
    crate::store::StoreOptions {
        map_size: mib(settings.storage.map_size_mib),
        max_size: mib(settings.storage.max_size_mib),
        retention: crate::store::Retention {
            finished_instances: Duration::from_secs(r.finished_instances_secs),
            dedupe: Duration::from_secs(r.dedupe_secs),
            effect_records: Duration::from_secs(r.effect_records_secs),
            sweep_batch: r.sweep_batch,
            sweep_delay: settings.ack_wait() * 2,
            history: r.history_bound(),
        },
        max_readers: crate::store::StoreOptions::readers_for(settings.effects.workers),
    }
}

/// `runner shadow`: 0 no differences, 1 differences, 2 the run failed.
fn shadow(options: &crate::shadow::Options) -> i32 {
    crate::logging::init();
    let report = load_settings(options.config.as_deref(), None)
        .map_err(|e| e.to_string())
        .and_then(|settings| crate::shadow::run(options, &settings));
    match report {
        Ok(report) => crate::shadow::print(&report),
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn load_settings(config: Option<&Path>, mode: Option<&str>) -> Result<Settings, Error> {
    let mut settings = Settings::from_process(config)?;
    if let Some(mode) = mode {
        settings.mode = mode
            .parse()
            .map_err(|e: crate::settings::UnknownMode| Error::Other(format!("--mode: {e}")))?;
        settings.validate()?;
    }
    Ok(settings)
}

fn check(config: Option<&Path>) -> Result<(), Error> {
    let settings = load_settings(config, None)?;
    println!(
        "settings: ok (mode {:?}, store {}, nats {})",
        settings.mode,
        settings.storage.path.display(),
        settings.nats.url
    );
    // Which credentials and TLS files, never what they hold; each is read and checked.
    nats_io::ClientOptions::load(&settings.nats)?;
    println!(
        "nats: auth {}; tls {}; files: ok",
        settings.nats.auth_summary(),
        settings.nats.tls_summary()
    );
    let r = &settings.retention;
    println!(
        "retention: finished instances {} s, dedupe markers {} s, effect records {} s; store map {} MiB growing to {} MiB",
        r.finished_instances_secs,
        r.dedupe_secs,
        r.effect_records_secs,
        settings.storage.map_size_mib,
        settings.storage.max_size_mib
    );
    let mut warnings = deployment::offline_warnings(&settings);
    match deployment::probe_nats(&settings.nats.url) {
        Ok((at, info)) => {
            let cluster = match &info.cluster {
                Some(name) => format!("JetStream cluster {name:?}"),
                None => "no cluster".into(),
            };
            println!(
                "nats: {at} answered (server {} {}, {cluster})",
                info.server_name, info.version
            );
            warnings.extend(deployment::server_warnings(&settings, &at, &info));
        }
        Err(e) => println!("nats: not reached ({e}); the cluster checks were skipped"),
    }
    if settings.mode.runs_sagas() || !settings.manifests.sagas.is_empty() {
        let catalog = load_catalog(&settings)?;
        warnings.extend(crate::pipeline::trigger_warnings(&settings, &catalog));
        for saga in &catalog.sagas {
            println!(
                "saga {} v{}: ok ({} triggers, gas {}, compensation: {}) from {}",
                saga.name,
                saga.version,
                saga.triggers.len(),
                saga.gas,
                if saga.compensation.is_some() {
                    "yes"
                } else {
                    "no"
                },
                saga.source.display()
            );
            let own = |d: Option<Duration>| d.map(|d| format!("{} s", d.as_secs()));
            if let (None, None) = (saga.retention.finished_instances, saga.retention.dedupe) {
                continue;
            }
            println!(
                "saga {} retention: finished instances {}, dedupe markers {}",
                saga.name,
                own(saga.retention.finished_instances).unwrap_or("as settings".into()),
                own(saga.retention.dedupe).unwrap_or("as settings".into()),
            );
        }
    }
    if !settings.manifests.effects.is_empty() {
        let effects = load_effects(&settings)?;
        for def in effects.effects.values() {
            println!(
                "effect {}: ok (provider {}, timeout {} ms, {} attempts, concurrency {})",
                def.name,
                def.provider_name,
                def.timeout.as_millis(),
                def.retry.max_attempts,
                def.concurrency
            );
        }
    }
    for warning in &warnings {
        println!("warning: {warning}");
    }
    println!("check passed");
    Ok(())
}

fn run(config: Option<&Path>, mode: Option<&str>) -> Result<(), Error> {
    crate::logging::init();
    let mut settings = load_settings(config, mode)?;
    // The NATS credentials and certificates are read before anything else is touched:
    // a missing or unusable file stops start-up naming its setting.
    let nats_options = nats_io::ClientOptions::load(&settings.nats)?;
    // Before any HTTP agent is built (the effect providers' at catalog load).
    crate::https::install(&settings.tls.ca_file)
        .map_err(|e| Error::Other(format!("tls.ca_file: {e}")))?;
    crate::crash::validate().map_err(|e| Error::Other(e.to_string()))?;
    let (catalog, effects) = catalogs_for_mode(&settings)?;
    let admin_token = crate::ops::read_admin_token(&settings.ops.admin_token_file)
        .map_err(|e| Error::Other(e.to_string()))?;
    // SIGTERM (Swarm stopping a task) and SIGINT drain instead of killing.
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, signalled.clone())
            .map_err(|e| Error::Other(format!("cannot handle signal {signal}: {e}")))?;
    }
    // Held until the process ends, and taken before the store is touched. Effect-mode
    // workers may share a store (their records are idempotent); saga runners may not.
    let _writer_lock = if settings.mode.runs_sagas() {
        Some(crate::store::WriterLock::acquire(&settings.storage.path)?)
    } else {
        None
    };
    let store = Arc::new(Store::open_with(
        &settings.storage.path,
        &store_options(&settings),
    )?);
    if settings.mode.runs_sagas() {
        crate::saga::versions::check_in_use(&store, &catalog)
            .map_err(|e| Error::Other(e.to_string()))?;
    }
    let link = Arc::new(nats_io::Link::default());
    let nc = nats_io::connect_linked(&nats_options, "runner", link.clone())?;
    let (mode, listen, deadline, unresponsive_ms) = (
        settings.mode,
        settings.ops.listen.clone(),
        Duration::from_millis(settings.ops.drain_deadline_ms),
        settings.nats.unresponsive_exit_ms,
    );
    let placement = if settings.tenancy.placement_bucket.is_empty() || !mode.runs_sagas() {
        None
    } else {
        let t = &settings.tenancy;
        let placement = crate::placement::Placement::open(
            &nc,
            &t.placement_bucket,
            &t.shard,
            settings.streams.replicas,
        )
        .map_err(|e| Error::Other(e.to_string()))?;
        Some(supervise::Shards::start(
            placement,
            store.clone(),
            &mut settings,
        )?)
    };
    let catalogs = crate::pipeline::Catalogs::new(catalog, effects);
    let pipeline = Pipeline::start_with(
        settings.clone(),
        store.clone(),
        catalogs.clone(),
        nc.clone(),
    )?;
    // After the pipeline made sure the consumers exist, so its first look finds them.
    // (Consumers of effects a reload adds are not in its lag metrics until a restart.)
    let consumers = crate::ops::consumers_for(&settings, &catalogs.effects());
    let probe = crate::ops::NatsProbe::start(nc.clone(), consumers)
        .map_err(|e| Error::Other(format!("cannot start the NATS probe: {e}")))?;
    let control = crate::ops::Control::new(pipeline.shared().clone(), nc.clone());
    let _ops = if listen.is_empty() {
        None
    } else {
        let state = crate::ops::OpsState {
            control: control.clone(),
            probe: probe.clone(),
            admin_token,
        };
        Some(
            crate::ops::OpsServer::start(&listen, state)
                .map_err(|e| Error::Other(e.to_string()))?,
        )
    };
    log::info!(mode = format!("{mode:?}"); "runner started");
    supervise::Supervisor {
        settings,
        store,
        catalogs,
        nc,
        control,
        signalled,
        drain_deadline: deadline,
        placement,
        silence: supervise::Silence::new(probe, link, Duration::from_millis(unresponsive_ms)),
    }
    .run(pipeline)
}
