//! `runner admin`: a client of the ops ports' admin API (README.md, "Operating the
//! Runner"). Each command asks every ops port given (`--url`, repeatable, or
//! `--urls-file`: one per saga shard) at once and merges what they answer: each row
//! says which port it came from. Human tables by default, `--json` for scripts. Exit
//! code 0 when every port answered 2xx, 1 when one did not (its reason on stderr),
//! 2 for a command that could not be put together (usage, token, URLs).

mod client;
mod commands;
mod render;
mod table;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use client::Client;

/// Why a command could not be sent at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no admin token: give --token-file FILE or set RUNNER_ADMIN_TOKEN_FILE ({0})")]
    NoToken(String),
    #[error("cannot read the admin token file {path}: {source}")]
    TokenRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the admin token file {path} is empty")]
    TokenEmpty { path: PathBuf },
    #[error("no ops port to ask: give --url URL or --urls-file FILE ({0})")]
    NoUrl(String),
    #[error("cannot read the URL list {path}: {source}")]
    UrlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not an ops port URL: give http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    #[error(
        "{count} ops ports given; at most {} are asked at once",
        targets::MAX_URLS
    )]
    TooManyUrls { count: usize },
    #[error("{0}")]
    Usage(String),
}

/// The help heading of the options every admin command takes.
const CONNECTION: &str = "Ops port options";

#[derive(Debug, Args)]
#[command(
    after_help = "The token is read from the file, never from the command line, and never printed.\n\
Exit codes: 0 every ops port answered 2xx; 1 one did not (its reason on stderr); 2 usage error."
)]
pub struct AdminArgs {
    /// An ops port's base URL, e.g. http://runner-saga-shard-a:9090; repeat for every
    /// shard [default: ops.listen of the settings]
    #[arg(long, value_name = "URL", global = true, help_heading = CONNECTION)]
    pub url: Vec<String>,
    /// A file listing ops port URLs, one a line (`#` starts a comment)
    #[arg(long, value_name = "FILE", global = true, help_heading = CONNECTION)]
    pub urls_file: Option<PathBuf>,
    /// The file holding the admin bearer token [default: ops.admin_token_file of the
    /// settings]
    #[arg(
        long,
        value_name = "FILE",
        env = "RUNNER_ADMIN_TOKEN_FILE",
        global = true,
        help_heading = CONNECTION
    )]
    pub token_file: Option<PathBuf>,
    /// Print the answers as JSON (one document) instead of tables
    #[arg(long, global = true, help_heading = CONNECTION)]
    pub json: bool,
    /// Seconds one request may take (connect, send, answer)
    #[arg(long, value_name = "SECS", default_value = "40", global = true, help_heading = CONNECTION, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Saga instances: list a saga's instances, show one
    #[command(subcommand)]
    Instances(InstancesCommand),
    /// Quarantined messages: list, retry, discard
    #[command(subcommand)]
    Quarantine(RecordsCommand),
    /// Dead-lettered outbox items: list, retry (redrive), discard
    #[command(subcommand)]
    Deadletters(RecordsCommand),
    /// Stop taking work and finish what is in flight; the process stays up
    Drain {
        /// Wait up to SECS for every port's /ready to report drained
        #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
        wait: Option<u64>,
    },
    /// Restart the pipeline of a drained process
    Resume,
    /// Load the manifests again; put them in force only if every one is valid
    Reload,
    /// Deliver a saga's events again from a stream sequence (drained process only)
    Replay(ReplayArgs),
    /// Move chosen instances to their saga's newest version (drained process only)
    Migrate(MigrateArgs),
    /// What the store holds: space, keys and bytes per keyspace and tenant, held records
    Store {
        /// Keys walked at most
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// One page of a saga's instances (every port's, merged)
    List(ListArgs),
    /// One instance: state, timers, outbox and transition history
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The tenant (`_`: the single tenant)
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// The saga
    #[arg(long, value_name = "NAME")]
    pub saga: String,
    /// Only instances of this status
    #[arg(long, value_parser = ["active", "completed", "failed", "faulted"])]
    pub status: Option<String>,
    /// Only instances on this saga version
    #[arg(long, value_name = "N")]
    pub version: Option<u32>,
    /// Only instances with a timer due before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub timer_before: Option<String>,
    /// Start after this cursor (the `next` of an earlier page; one --url only)
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// Instances per page (1-1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Follow every port's pages to the end (at most 100 pages each)
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The tenant (`_`: the single tenant)
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// The saga
    #[arg(long, value_name = "NAME")]
    pub saga: String,
    /// The instance's correlation id
    pub correlation: String,
}

#[derive(Debug, Subcommand)]
pub enum RecordsCommand {
    /// List the records the filters select
    List(Selection),
    /// Retry the records the filters select (quarantine: run the message again;
    /// dead letters: put the item back in the outbox)
    Retry(Selection),
    /// Delete the records the filters select
    Discard {
        #[command(flatten)]
        selection: Selection,
        /// Discard every record of the tenant when no filter narrows the selection
        #[arg(long)]
        all: bool,
    },
}

/// Which records: the tenant, narrowed by every filter given.
#[derive(Debug, Args, Clone)]
pub struct Selection {
    /// The tenant (`_`: the single tenant)
    #[arg(long, value_name = "T", required_unless_present = "unattributed")]
    pub tenant: Option<String>,
    /// Quarantine records whose tenant was in doubt, instead of a tenant's
    #[arg(long, conflicts_with = "tenant")]
    pub unattributed: bool,
    /// Only this saga's
    #[arg(long, value_name = "NAME")]
    pub saga: Option<String>,
    /// Only this kind (quarantine: decode, program...; dead letters: effect, aggregate)
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only records whose reason contains this text
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Exactly this record (its KEY in a list); repeatable
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Records per call (1-1000)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The tenant
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// The saga
    #[arg(long, value_name = "NAME")]
    pub saga: String,
    /// The first stream sequence delivered again
    #[arg(long, value_name = "SEQ")]
    pub from_seq: u64,
    /// The stream [default: the aggregate events stream]
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,
    /// The saga's name again: a replay is never started by accident
    #[arg(long, value_name = "SAGA")]
    pub confirm: String,
    /// Replay even events older than the dedupe horizon (they may be applied again)
    #[arg(long)]
    pub past_horizon: bool,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The tenant
    #[arg(long, value_name = "T")]
    pub tenant: String,
    /// The saga
    #[arg(long, value_name = "NAME")]
    pub saga: String,
    /// The instances' correlation ids
    #[arg(required = true)]
    pub correlations: Vec<String>,
}

/// Runs `runner admin …`; returns the exit code.
pub fn main(args: AdminArgs) -> i32 {
    let prepared = targets::urls(&args.url, args.urls_file.as_deref()).and_then(|urls| {
        let token = targets::token(args.token_file.as_deref())?;
        Ok((urls, token))
    });
    let (urls, token) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let client = Client::new(token, Duration::from_secs(args.timeout));
    let ctx = commands::Context {
        client: &client,
        urls: &urls,
        json: args.json,
    };
    match commands::execute(&ctx, args.command) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}
