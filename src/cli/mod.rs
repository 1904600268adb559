//! The `runner` command line: parsing in [`args`], one function per subcommand.

mod args;
mod eval;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use args::{parse, Command, USAGE};

use crate::manifest::SagaCatalog;
use crate::nats_io;
use crate::pipeline::Pipeline;
use crate::program::Limits;
use crate::settings::Settings;
use crate::store::Store;

/// Runs the command line; returns the process exit code.
pub fn main_with(args: &[String]) -> i32 {
    let command = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let result = match command {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Check { config } => check(config.as_deref()),
        Command::Run { config, mode } => run(config.as_deref(), mode.as_deref()),
        Command::Eval {
            program,
            event,
            state,
            ctx,
            gas,
        } => eval::eval(&program, &event, state.as_deref(), ctx.as_deref(), gas),
        Command::Demo { nats_url } => crate::demo::run(nats_url.as_deref()),
        Command::Bench { events, nats_url } => crate::bench::run(events, nats_url.as_deref()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Program limits from the settings.
pub fn limits(settings: &Settings) -> Limits {
    Limits {
        max_depth: settings.programs.max_depth,
        max_output_bytes: settings.programs.max_output_bytes,
        max_state_bytes: settings.programs.max_state_bytes,
        ..Limits::default()
    }
}

/// Loads and compiles the saga manifests named by the settings.
pub fn load_catalog(settings: &Settings) -> Result<SagaCatalog, String> {
    SagaCatalog::load(
        &settings.manifests.sagas,
        settings.programs.gas,
        &limits(settings),
    )
    .map_err(|e| e.to_string())
}

fn load_settings(config: Option<&Path>, mode: Option<&str>) -> Result<Settings, String> {
    let mut settings = Settings::from_process(config).map_err(|e| e.to_string())?;
    if let Some(mode) = mode {
        settings.mode = mode.parse()?;
        settings.validate().map_err(|e| e.to_string())?;
    }
    Ok(settings)
}

fn check(config: Option<&Path>) -> Result<(), String> {
    let settings = load_settings(config, None)?;
    println!(
        "settings: ok (mode {:?}, store {}, nats {})",
        settings.mode,
        settings.storage.path.display(),
        settings.nats.url
    );
    if settings.mode.runs_sagas() || !settings.manifests.sagas.is_empty() {
        let catalog = load_catalog(&settings)?;
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
        }
    }
    println!("check passed");
    Ok(())
}

fn run(config: Option<&Path>, mode: Option<&str>) -> Result<(), String> {
    crate::logging::init();
    let settings = load_settings(config, mode)?;
    if !settings.mode.runs_sagas() {
        return Err("mode effect has no stages yet: the effect worker pool is not built (issue #4); use saga or combined".into());
    }
    let catalog = Arc::new(load_catalog(&settings)?);
    let map_size = (settings.storage.map_size_mib as usize).saturating_mul(1024 * 1024);
    let store = Arc::new(Store::open(&settings.storage.path, map_size).map_err(|e| e.to_string())?);
    let nc = nats_io::connect(&settings.nats.url, "runner").map_err(|e| e.to_string())?;
    let mode = settings.mode;
    let pipeline = Pipeline::start(settings, store, catalog, nc).map_err(|e| e.to_string())?;
    log::info!(mode = format!("{mode:?}"); "runner started");
    loop {
        std::thread::sleep(Duration::from_secs(10));
        let s = pipeline.stats();
        log::info!(fetched = s.fetched, transitions = s.transitions, acked = s.acked, quarantined = s.quarantined,
            ignored = s.ignored, duplicates = s.duplicates, commit_failures = s.commit_failures,
            intake_stopped = pipeline.intake().is_stopped(); "progress");
    }
}
