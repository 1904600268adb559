//! The command line, declared with clap's derive: every subcommand answers `--help`
//! (and `-h`) with its options, a mistyped flag is answered with the closest valid one,
//! and `runner completions SHELL` prints a completion script from the same declaration.
//! Usage errors exit 2 (clap's code, and the code this parser had before clap).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::admin::AdminArgs;

/// `runner --version` and `runner version`: the package version and the commit it was
/// built from (build.rs; "unknown" without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("RUNNER_GIT_SHA"),
    ")"
);

const AFTER_HELP: &str = "\
Settings come from the file (--config or RUNNER_CONFIG), then RUNNER_* environment
variables (README.md, \"Settings\"). Logs: RUNNER_LOG (filter, default info),
RUNNER_LOG_FORMAT=json for JSON lines.
Exit codes: 0 success, 1 failure, 2 usage error; `test` and `shadow` have their own
(README.md, \"Operating the Runner\").";

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version = VERSION,
    about = "Sagas, transactional outbox, effects and durable timers over NATS JetStream",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the pipeline stages of the configured mode and run until stopped
    Run(RunArgs),
    /// Validate settings, manifests and programs; warn about the deployment they describe
    ///
    /// Warns of a loopback Gateway with a remote NATS, and of one replica on a NATS
    /// cluster (asked of the server).
    Check(ConfigArgs),
    /// Run one program transition and print its output (a saga author's debugger)
    Eval(EvalArgs),
    /// Run the saga test files (docs/saga-tests.md) and report each case
    ///
    /// Exit code 0: every case passed; 1: a case failed; 2: a test file is invalid.
    Test(TestArgs),
    /// Replay a recorded stream range through the version in force and a candidate
    ///
    /// Side by side; reports the transitions that differ, and writes, publishes and acks
    /// nothing. Exit code 0: no differences; 1: differences; 2: error.
    Shadow(ShadowArgs),
    /// Ask the ops port's GET /health; exit 0 on 200, 1 otherwise (the image's HEALTHCHECK)
    Healthcheck(HealthcheckArgs),
    /// Run the example order saga end to end against a throwaway nats-server
    #[cfg(feature = "dev")]
    Demo(DemoArgs),
    /// Measure throughput and latency next to raw JetStream rates of the same server
    #[cfg(feature = "dev")]
    Bench(BenchArgs),
    /// (dev builds only: cargo run --release --features dev -- demo)
    #[cfg(not(feature = "dev"))]
    Demo(DevOnlyArgs),
    /// (dev builds only: cargo run --release --features dev -- bench)
    #[cfg(not(feature = "dev"))]
    Bench(DevOnlyArgs),
    /// Operate running Runners through their ops ports (instances, quarantine, dead
    /// letters, drain, reload, replay...)
    Admin(AdminArgs),
    /// Print the version and the git commit it was built from
    Version,
    /// Print a shell completion script (e.g. `runner completions bash > /etc/bash_completion.d/runner`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct ConfigArgs {
    /// Settings file (.toml or .json)
    #[arg(long, value_name = "FILE", env = "RUNNER_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct RunArgs {
    /// Settings file (.toml or .json)
    #[arg(long, value_name = "FILE", env = "RUNNER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The mode to run (overrides the settings' `mode`)
    #[arg(long, value_name = "MODE", value_parser = ["saga", "effect", "combined"])]
    pub mode: Option<String>,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct EvalArgs {
    /// The program (.yaml, .yml or .json)
    #[arg(long, value_name = "FILE")]
    pub program: PathBuf,
    /// The event envelope (.json or .yaml)
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
    /// The instance state before the event [default: null, a new instance]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// The ctx object [default: built from the event]
    #[arg(long, value_name = "FILE")]
    pub ctx: Option<PathBuf>,
    /// The gas budget
    #[arg(long, value_name = "N", default_value = "20000", value_parser = positive)]
    pub gas: u64,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct TestArgs {
    /// A test file, or a directory searched for `tests/` directories [default: manifests]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct ShadowArgs {
    /// The saga
    #[arg(long, value_name = "NAME")]
    pub saga: String,
    /// The candidate version (in --candidate, else in the configured manifests)
    #[arg(long, value_name = "N", value_parser = positive_u32)]
    pub version: u32,
    /// Saga manifest holding the candidate [default: the configured ones]
    #[arg(long, value_name = "FILE")]
    pub candidate: Option<PathBuf>,
    /// First stream sequence
    #[arg(long, value_name = "SEQ", value_parser = positive)]
    pub from: u64,
    /// Last stream sequence [default: the stream's end]
    #[arg(long, value_name = "SEQ", value_parser = positive)]
    pub to: Option<u64>,
    /// The stream
    #[arg(long, value_name = "S", default_value = "aggregate", value_parser = ["aggregate", "workflow"])]
    pub stream: String,
    /// Most events read
    #[arg(long, value_name = "N", default_value_t = crate::shadow::DEFAULT_LIMIT, value_parser = positive)]
    pub limit: u64,
    /// Settings file (.toml or .json)
    #[arg(long, value_name = "FILE", env = "RUNNER_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct HealthcheckArgs {
    /// Ask this URL instead [default: /health of ops.listen in the settings]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Settings file (.toml or .json)
    #[arg(long, value_name = "FILE", env = "RUNNER_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Dev builds only: cargo run --release --features dev -- demo
#[cfg(feature = "dev")]
#[derive(Debug, Args, PartialEq, Eq)]
pub struct DemoArgs {
    /// Use this NATS server instead of starting one
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
}

/// Dev builds only: cargo run --release --features dev -- bench
#[cfg(feature = "dev")]
#[derive(Debug, Args, PartialEq, Eq)]
pub struct BenchArgs {
    /// Events of the saga, relay and effect phases
    #[arg(long, value_name = "N", default_value = "20000", value_parser = positive)]
    pub events: u64,
    /// Orders of the workflow phase
    #[arg(long, value_name = "N", default_value = "5000", value_parser = positive)]
    pub workflows: u64,
    /// Their rate per second
    #[arg(long, value_name = "R", default_value = "1000", value_parser = positive)]
    pub rate: u64,
    /// Events the backlog phase's own runner process drains
    #[arg(long, value_name = "N", default_value = "100000", value_parser = positive)]
    pub backlog: u64,
    /// Seconds of the soak phase, at --rate events/s [default 600], and of the retention
    /// phase, at --rate orders/s [default 1200]
    #[arg(long, value_name = "N", value_parser = positive)]
    pub soak_secs: Option<u64>,
    /// What the retention phase keeps, and how long (seconds)
    #[arg(long, value_name = "N", default_value = "120", value_parser = positive)]
    pub retention_secs: u64,
    /// Comma list of saga,relay,effects,scheduler,workflow,floor,backlog,soak,retention
    /// [default: all but soak and retention]
    #[arg(long, value_name = "S")]
    pub sections: Option<String>,
    /// Use this NATS server instead of starting one
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
}

#[cfg(feature = "dev")]
impl BenchArgs {
    pub fn options(self) -> crate::bench::Options {
        crate::bench::Options {
            events: self.events,
            workflows: self.workflows,
            rate: self.rate,
            backlog: self.backlog,
            soak_secs: self.soak_secs,
            retention_secs: self.retention_secs,
            sections: self
                .sections
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_else(crate::bench::default_sections),
            nats_url: self.nats_url,
        }
    }
}

/// `demo` or `bench` in a build without the `dev` feature: whatever options come with
/// it, the answer is how to get a build that has it.
#[cfg(not(feature = "dev"))]
#[derive(Debug, Args, PartialEq, Eq)]
pub struct DevOnlyArgs {
    #[arg(hide = true, num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub ignored: Vec<String>,
}

impl ShadowArgs {
    pub fn options(self) -> crate::shadow::Options {
        crate::shadow::Options {
            config: self.config,
            saga: self.saga,
            version: self.version,
            candidate: self.candidate,
            stream: self.stream,
            from: self.from,
            to: self.to,
            limit: self.limit,
        }
    }
}

/// Parses a whole command line (the program's name first). `Err` is clap's: a usage
/// error, or the help or version text it was asked for (`Error::exit` prints either).
pub fn parse<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)
}

/// A whole number above zero.
fn positive(raw: &str) -> Result<u64, String> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("needs a positive integer, got {raw:?}"))
}

fn positive_u32(raw: &str) -> Result<u32, String> {
    let n = positive(raw)?;
    u32::try_from(n).map_err(|_| format!("{n} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parsed(line: &str) -> Command {
        let args = std::iter::once("runner").chain(line.split_whitespace());
        parse(args)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .command
            .expect("a subcommand")
    }

    fn refused(line: &str) -> String {
        let args = std::iter::once("runner").chain(line.split_whitespace());
        match parse(args) {
            Ok(cli) => panic!("{line} was accepted: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_every_existing_invocation() {
        assert!(parse(["runner"]).unwrap().command.is_none());
        match parsed("run --config a.toml --mode=saga") {
            Command::Run(a) => assert_eq!(
                a,
                RunArgs {
                    config: Some("a.toml".into()),
                    mode: Some("saga".into())
                }
            ),
            other => panic!("{other:?}"),
        }
        match parsed("eval --program p.yaml --event e.json") {
            Command::Eval(a) => assert_eq!(
                a,
                EvalArgs {
                    program: "p.yaml".into(),
                    event: "e.json".into(),
                    state: None,
                    ctx: None,
                    gas: 20_000
                }
            ),
            other => panic!("{other:?}"),
        }
        match parsed("bench --events 500 --sections saga,workflow --rate 200") {
            Command::Bench(a) => assert_eq!(
                a.options(),
                crate::bench::Options {
                    events: 500,
                    workflows: 5_000,
                    rate: 200,
                    backlog: 100_000,
                    soak_secs: None,
                    retention_secs: 120,
                    sections: vec!["saga".into(), "workflow".into()],
                    nats_url: None
                }
            ),
            other => panic!("{other:?}"),
        }
        match parsed("test") {
            Command::Test(a) => assert_eq!(a.path, None),
            other => panic!("{other:?}"),
        }
        match parsed("test manifests/example") {
            Command::Test(a) => assert_eq!(a.path, Some("manifests/example".into())),
            other => panic!("{other:?}"),
        }
        match parsed("healthcheck --url http://127.0.0.1:9090/health --config r.toml") {
            Command::Healthcheck(a) => assert_eq!(
                a,
                HealthcheckArgs {
                    url: Some("http://127.0.0.1:9090/health".into()),
                    config: Some("r.toml".into())
                }
            ),
            other => panic!("{other:?}"),
        }
        match parsed("shadow --saga s --version 2 --from 3 --to 9 --config c.toml") {
            Command::Shadow(a) => {
                let o = a.options();
                assert_eq!(
                    (o.saga.as_str(), o.version, o.from, o.to, o.stream.as_str()),
                    ("s", 2, 3, Some(9), "aggregate")
                );
                assert_eq!(o.limit, crate::shadow::DEFAULT_LIMIT);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_usage_with_a_message() {
        assert!(refused("launch").contains("unrecognized subcommand"));
        assert!(refused("run --turbo 1").contains("--turbo"));
        assert!(refused("run --confg a.toml").contains("--config"));
        assert!(refused("eval --event e.json").contains("--program"));
        assert!(refused("bench --events zero").contains("positive integer"));
        assert!(refused("run --config").contains("a value is required"));
        assert!(refused("run --mode turbo").contains("saga"));
        assert!(refused("healthcheck --mode saga").contains("--mode"));
        assert!(refused("test a b").contains("unexpected argument"));
        assert!(refused("test --verbose").contains("--verbose"));
        assert!(refused("check --config a --config b").contains("cannot be used multiple times"));
        assert!(refused("shadow --saga s --version 0 --from 1").contains("positive"));
    }
}
