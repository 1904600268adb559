//! Structured logs on `env_logger`. Fields are `log` key-values
//! (`log::warn!(tenant_id = t, correlation_id = c, trace_id = x; "message quarantined")`);
//! `RUNNER_LOG_FORMAT=json` prints one JSON object per line, otherwise `key=value` text.
//! `RUNNER_LOG` sets the filter (env_logger syntax, default `info`). The NATS client's
//! own `nats::jetstream` lines are off unless the filter names that module: it logs
//! every failed API call at error level, expected ones too ("consumer not found" while
//! checking whether to create it), and every failure it reports reaches the Runner,
//! which logs it with its context.

use std::io::Write;

use log::kv::{Key, Value, VisitSource};

/// Installs the logger with `info` as the default filter.
pub fn init() {
    init_with_default("info");
}

/// Installs the logger once; later calls are no-ops (tests call it freely).
/// `default_filter` applies when `RUNNER_LOG` is not set.
pub fn init_with_default(default_filter: &str) {
    let json = std::env::var("RUNNER_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let mut filter = std::env::var("RUNNER_LOG").unwrap_or_else(|_| default_filter.into());
    if !filter.contains("nats::jetstream") {
        filter.push_str(",nats::jetstream=off");
    }
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter);
    if json {
        builder.format(|buf, record| {
            let mut line = serde_json::Map::new();
            line.insert("ts".into(), buf.timestamp_millis().to_string().into());
            line.insert("level".into(), record.level().as_str().into());
            line.insert("target".into(), record.target().into());
            line.insert("msg".into(), record.args().to_string().into());
            let mut fields = JsonFields(&mut line);
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", serde_json::Value::Object(line))
        });
    } else {
        builder.format(|buf, record| {
            write!(
                buf,
                "{} {:5} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )?;
            let mut fields = TextFields(String::new());
            let _ = record.key_values().visit(&mut fields);
            writeln!(buf, "{}", fields.0)
        });
    }
    let _ = builder.try_init();
}

struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            n.into()
        } else if let Some(n) = value.to_i64() {
            n.into()
        } else if let Some(b) = value.to_bool() {
            b.into()
        } else {
            value.to_string().into()
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}

struct TextFields(String);

impl<'kvs> VisitSource<'kvs> for TextFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let text = value.to_string();
        if text.contains([' ', '"', '=']) || text.is_empty() {
            self.0.push_str(&format!(" {key}={text:?}"));
        } else {
            self.0.push_str(&format!(" {key}={text}"));
        }
        Ok(())
    }
}
