//! Command-line parsing: a handful of subcommands with `--flag value` options. Small
//! enough that a parser crate would not pay for itself.

use std::collections::HashMap;
use std::path::PathBuf;

pub const USAGE: &str = "\
runner — sagas, transactional outbox, effects and durable timers over NATS JetStream

USAGE:
    runner <COMMAND> [OPTIONS]

COMMANDS:
    run     Start the pipeline stages of the configured mode and run until stopped
              --config FILE   settings file (.toml or .json); also $RUNNER_CONFIG
              --mode MODE     saga | effect | combined (overrides the settings)
    check   Validate settings, manifests and programs; warn about the deployment they describe
              (a loopback Gateway with a remote NATS; one replica on a NATS cluster, asked of the server)
              --config FILE
    eval    Run one program transition and print its output (a saga author's debugger)
              --program FILE  program (.yaml, .yml or .json)
              --event FILE    event envelope (.json or .yaml)
              --state FILE    instance state before the event (default: null, a new instance)
              --ctx FILE      ctx object (default: built from the event)
              --gas N         gas budget (default 20000)
    demo    Run the example order saga end to end against a throwaway nats-server
            (dev builds only: cargo run --release --features dev -- demo)
              --nats-url URL  use this server instead of starting one
    bench   Measure throughput and latency next to raw JetStream rates of the same server
            (dev builds only: cargo run --release --features dev -- bench)
              --events N      events of the saga, relay and effect phases (default 20000)
              --workflows N   orders of the workflow phase (default 5000)
              --rate R        their rate per second (default 1000)
              --backlog N     events the backlog phase's own runner process drains (default 100000)
              --soak-secs N   seconds of the soak phase, at --rate events/s (default 600), and of
                              the retention phase, at --rate orders/s (default 1200)
              --retention-secs N  what the retention phase keeps, and how long (default 120)
              --sections S    comma list of saga,relay,effects,scheduler,workflow,floor,backlog,
                              soak,retention (default all but soak and retention)
              --nats-url URL  use this server instead of starting one
    test    Run the saga test files (docs/saga-tests.md) and report each case
              [PATH]          a test file, or a directory searched for `tests/` directories
                              (default: manifests)
    shadow  Replay a recorded stream range through the version in force and a candidate
            side by side; report differing transitions (writes, publishes, acks nothing)
              --saga NAME     the saga
              --version N     the candidate version (in --candidate, else the configured manifests)
              --candidate FILE  saga manifest holding the candidate (default: the configured ones)
              --from SEQ      first stream sequence
              --to SEQ        last one (default: the stream's end)
              --stream S      aggregate (default) or workflow
              --limit N       most events read (default 100000)
              --config FILE   settings file; also $RUNNER_CONFIG
            Exit code 0: no differences; 1: differences; 2: error
    healthcheck  Ask the ops port's GET /health; exit 0 on 200, 1 otherwise (the image's HEALTHCHECK)
              --url URL       ask this URL instead (default: from ops.listen in the settings)
              --config FILE   settings file; also $RUNNER_CONFIG
    help    Print this text

Settings come from the file, then RUNNER_* environment variables (see README.md).
Logs: RUNNER_LOG (filter, default info), RUNNER_LOG_FORMAT=json for JSON lines.
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        config: Option<PathBuf>,
        mode: Option<String>,
    },
    Check {
        config: Option<PathBuf>,
    },
    Eval {
        program: PathBuf,
        event: PathBuf,
        state: Option<PathBuf>,
        ctx: Option<PathBuf>,
        gas: u64,
    },
    #[cfg(feature = "dev")]
    Demo {
        nats_url: Option<String>,
    },
    #[cfg(feature = "dev")]
    Bench(crate::bench::Options),
    /// `demo` or `bench` in a build without the `dev` feature: answered with how to get
    /// them, whatever options came with it.
    #[cfg(not(feature = "dev"))]
    DevOnly(&'static str),
    Healthcheck {
        url: Option<String>,
        config: Option<PathBuf>,
    },
    Test {
        path: Option<PathBuf>,
    },
    Shadow(crate::shadow::Options),
    Help,
}

/// Parses `args` (without the program name). Errors are usage messages.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let Some((name, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let allowed: &[&str] = match name.as_str() {
        "run" => &["config", "mode"],
        "check" => &["config"],
        "eval" => &["program", "event", "state", "ctx", "gas"],
        #[cfg(not(feature = "dev"))]
        "demo" => return Ok(Command::DevOnly("demo")),
        #[cfg(not(feature = "dev"))]
        "bench" => return Ok(Command::DevOnly("bench")),
        #[cfg(feature = "dev")]
        "demo" => &["nats-url"],
        #[cfg(feature = "dev")]
        "bench" => &[
            "events",
            "workflows",
            "rate",
            "backlog",
            "soak-secs",
            "retention-secs",
            "sections",
            "nats-url",
        ],
        "healthcheck" => &["url", "config"],
        "shadow" => &[
            "config",
            "saga",
            "version",
            "candidate",
            "stream",
            "from",
            "to",
            "limit",
        ],
        "test" => return test_command(rest),
        "help" | "--help" | "-h" => return Ok(Command::Help),
        other => return Err(format!("unknown command {other:?}")),
    };
    let mut opts = flags(rest, allowed)?;
    let mut take = |k: &str| opts.remove(k);
    let command = match name.as_str() {
        "run" => Command::Run {
            config: take("config").map(PathBuf::from),
            mode: take("mode"),
        },
        "check" => Command::Check {
            config: take("config").map(PathBuf::from),
        },
        "eval" => Command::Eval {
            program: take("program")
                .map(PathBuf::from)
                .ok_or("eval needs --program FILE")?,
            event: take("event")
                .map(PathBuf::from)
                .ok_or("eval needs --event FILE")?,
            state: take("state").map(PathBuf::from),
            ctx: take("ctx").map(PathBuf::from),
            gas: number(take("gas"), "gas", 20_000)?,
        },
        #[cfg(feature = "dev")]
        "demo" => Command::Demo {
            nats_url: take("nats-url"),
        },
        "healthcheck" => Command::Healthcheck {
            url: take("url"),
            config: take("config").map(PathBuf::from),
        },
        "shadow" => Command::Shadow(crate::shadow::Options {
            config: take("config").map(PathBuf::from),
            saga: take("saga").ok_or("shadow needs --saga NAME")?,
            version: u32::try_from(number(
                Some(take("version").ok_or("shadow needs --version N")?),
                "version",
                1,
            )?)
            .map_err(|_| "--version is too large".to_string())?,
            candidate: take("candidate").map(PathBuf::from),
            stream: take("stream").unwrap_or_else(|| "aggregate".into()),
            from: number(
                Some(take("from").ok_or("shadow needs --from SEQ")?),
                "from",
                1,
            )?,
            to: take("to").map(|t| number(Some(t), "to", 1)).transpose()?,
            limit: number(take("limit"), "limit", crate::shadow::DEFAULT_LIMIT)?,
        }),
        #[cfg(feature = "dev")]
        "bench" => Command::Bench(crate::bench::Options {
            events: number(take("events"), "events", 20_000)?,
            workflows: number(take("workflows"), "workflows", 5_000)?,
            rate: number(take("rate"), "rate", 1_000)?,
            backlog: number(take("backlog"), "backlog", 100_000)?,
            soak_secs: take("soak-secs")
                .map(|v| positive(v, "soak-secs"))
                .transpose()?,
            retention_secs: number(take("retention-secs"), "retention-secs", 120)?,
            sections: take("sections")
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_else(crate::bench::default_sections),
            nats_url: take("nats-url"),
        }),
        // `allowed` above answered every other name already.
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(command)
}

/// `test [PATH]`: the one subcommand with a positional argument.
fn test_command(rest: &[String]) -> Result<Command, String> {
    match rest {
        [] => Ok(Command::Test { path: None }),
        [flag, ..] if flag.starts_with("--") => Err(format!("unknown option {flag}")),
        [path] => Ok(Command::Test {
            path: Some(PathBuf::from(path)),
        }),
        [_, extra, ..] => Err(format!(
            "test takes one path, got another argument {extra:?}"
        )),
    }
}

fn number(raw: Option<String>, name: &str, default: u64) -> Result<u64, String> {
    raw.map_or(Ok(default), |v| positive(v, name))
}

/// `v` as a positive integer, else an error naming `--{name}`.
fn positive(v: String, name: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--{name} needs a positive integer, got {v:?}"))
}

fn flags(rest: &[String], allowed: &[&str]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (key, value) = match flag.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = it.next().ok_or_else(|| format!("--{flag} needs a value"))?;
                (flag.to_string(), v.clone())
            }
        };
        if !allowed.contains(&key.as_str()) {
            return Err(format!("unknown option --{key}"));
        }
        if out.insert(key.clone(), value).is_some() {
            return Err(format!("--{key} given twice"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_subcommands_and_options() {
        assert_eq!(parse(&[]).unwrap(), Command::Help);
        assert_eq!(
            parse(&args("run --config a.toml --mode=saga")).unwrap(),
            Command::Run {
                config: Some("a.toml".into()),
                mode: Some("saga".into())
            }
        );
        assert_eq!(
            parse(&args("eval --program p.yaml --event e.json")).unwrap(),
            Command::Eval {
                program: "p.yaml".into(),
                event: "e.json".into(),
                state: None,
                ctx: None,
                gas: 20_000
            }
        );
        assert_eq!(
            parse(&args(
                "bench --events 500 --sections saga,workflow --rate 200"
            ))
            .unwrap(),
            Command::Bench(crate::bench::Options {
                events: 500,
                workflows: 5_000,
                rate: 200,
                backlog: 100_000,
                soak_secs: None,
                retention_secs: 120,
                sections: vec!["saga".into(), "workflow".into()],
                nats_url: None
            })
        );
        assert_eq!(parse(&args("test")).unwrap(), Command::Test { path: None });
        assert_eq!(
            parse(&args("test manifests/example")).unwrap(),
            Command::Test {
                path: Some("manifests/example".into())
            }
        );
        assert_eq!(
            parse(&args("healthcheck")).unwrap(),
            Command::Healthcheck {
                url: None,
                config: None
            }
        );
        assert_eq!(
            parse(&args(
                "healthcheck --url http://127.0.0.1:9090/health --config r.toml"
            ))
            .unwrap(),
            Command::Healthcheck {
                url: Some("http://127.0.0.1:9090/health".into()),
                config: Some("r.toml".into())
            }
        );
    }

    #[test]
    fn rejects_bad_usage_with_a_message() {
        assert!(parse(&args("launch"))
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse(&args("run --turbo 1"))
            .unwrap_err()
            .contains("--turbo"));
        assert!(parse(&args("eval --event e.json"))
            .unwrap_err()
            .contains("--program"));
        assert!(parse(&args("bench --events zero"))
            .unwrap_err()
            .contains("positive integer"));
        assert!(parse(&args("run --config"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&args("healthcheck --mode saga"))
            .unwrap_err()
            .contains("--mode"));
        assert!(parse(&args("healthcheck --url"))
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(&args("test a b")).unwrap_err().contains("one path"));
        assert!(parse(&args("test --verbose"))
            .unwrap_err()
            .contains("--verbose"));
        assert!(parse(&args("check --config a --config b"))
            .unwrap_err()
            .contains("twice"));
    }
}
