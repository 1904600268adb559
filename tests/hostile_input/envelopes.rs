//! 1. Envelope decoding, exactly as the decode stage calls it.

use super::*;

/// Longest quarantine or route-fault reason accepted: a reason is a sentence that quotes
/// at most 80 characters of any received field (each escaped to at most 10 bytes), never
/// a copy of the input.
const MAX_REASON_BYTES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Aggregate,
    Result,
    Reminder,
}

impl Kind {
    fn info(self) -> MessageInfo {
        let (stream, subject) = match self {
            Kind::Aggregate => ("AGGREGATE_EVENTS", "aggregate.acme.order.OrderPlaced"),
            Kind::Result => ("WORKFLOW_EVENTS", "workflow.result.acme.charge_card"),
            Kind::Reminder => ("WORKFLOW_EVENTS", "workflow.timer.acme.order_fulfilment"),
        };
        MessageInfo {
            stream: stream.into(),
            seq: 7,
            delivered: 1,
            forgiven: 0,
            subject: subject.into(),
            published_ms: 0,
        }
    }

    /// A valid envelope of this kind (docs/contracts.md §2), field by field, in order.
    fn fields(self) -> Vec<(&'static str, Value)> {
        let common_tail = [
            ("payload", json!({"total": 42, "items": [1, 2]})),
            (
                "metadata",
                json!({"correlation_id": "o-1", "saga_name": "x"}),
            ),
        ];
        let mut fields = match self {
            Kind::Aggregate => vec![
                ("event_id", json!("e-1")),
                ("tenant_id", json!("acme")),
                ("aggregate_type", json!("order")),
                ("aggregate_id", json!("o-1")),
                ("event_type", json!("OrderPlaced")),
                ("version", json!(3)),
                ("occurred_at", json!("2026-11-27T10:00:00Z")),
            ],
            Kind::Result => vec![
                ("event_id", json!("r-1")),
                ("tenant_id", json!("acme")),
                ("command_id", json!("c-1")),
                ("effect_name", json!("charge_card")),
                ("result_type", json!("failed")),
                ("error", json!({"kind": "declined", "message": "no"})),
                ("attempts", json!(2)),
                ("timestamp", json!("2026-11-27T10:00:02Z")),
            ],
            Kind::Reminder => vec![
                ("event_id", json!("t-1")),
                ("tenant_id", json!("acme")),
                ("saga_name", json!("order_fulfilment")),
                ("correlation_id", json!("o-1")),
                ("name", json!("payment_timeout")),
                ("due_at", json!("2026-11-27T10:15:00Z")),
            ],
        };
        fields.extend(common_tail);
        fields
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Aggregate => &[
                "event_id",
                "aggregate_type",
                "aggregate_id",
                "event_type",
                "occurred_at",
            ],
            Kind::Result => &[
                "event_id",
                "command_id",
                "effect_name",
                "result_type",
                "timestamp",
            ],
            Kind::Reminder => &["event_id", "saga_name", "correlation_id", "name", "due_at"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Aggregate => "aggregate",
            Kind::Result => "result",
            Kind::Reminder => "reminder",
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    select(vec![Kind::Aggregate, Kind::Result, Kind::Reminder])
}

fn example_catalog() -> &'static SagaCatalog {
    static CATALOG: OnceLock<SagaCatalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manifests/example/sagas.yaml");
        SagaCatalog::load(&[path], 20_000, &Limits::default()).expect("example manifest")
    })
}

fn default_cfg() -> DecodeConfig {
    DecodeConfig::from_settings(&Settings::default())
}

/// A JSON object written from raw field texts, so that a field can hold text no JSON
/// value can (`1e400`, invalid UTF-8, nesting past the parser's limit).
fn body_of(fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (key, raw)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(raw);
    }
    out.push(b'}');
    out
}

/// What one field of an envelope is replaced with.
#[derive(Debug, Clone)]
enum Mutation {
    Remove,
    /// Text the JSON parser must refuse, and the words its reason must contain.
    Unparsable(Vec<u8>, &'static str),
    /// A well-formed JSON value.
    Json(Value),
}

fn unparsable() -> BoxedStrategy<(Vec<u8>, &'static str)> {
    let text = |s: &str, why: &'static str| (s.as_bytes().to_vec(), why);
    prop_oneof![
        (1u32..10).prop_map(|k| (
            format!("{k}e{}", 309 + k * 50).into_bytes(),
            "number out of range"
        )),
        Just(text("-1e400", "number out of range")),
        (130usize..20_000)
            .prop_map(|n| (nested_lists(n, "").into_bytes(), "recursion limit exceeded")),
        (130usize..3_000).prop_map(|n| {
            let text = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
            (text.into_bytes(), "recursion limit exceeded")
        }),
        // Bytes that never occur in UTF-8, inside a string.
        prop::collection::vec(0xf8u8..=0xff, 1..64).prop_map(|bytes| {
            let mut raw = b"\"".to_vec();
            raw.extend(bytes);
            raw.push(b'"');
            (raw, "body is not valid JSON")
        }),
        select(vec![
            text("\"\\ud800\"", "body is not valid JSON"),
            text("NaN", "body is not valid JSON"),
            text("Infinity", "body is not valid JSON"),
            text("01", "body is not valid JSON"),
            text("+1", "body is not valid JSON"),
            text(".5", "body is not valid JSON"),
            text("\"unterminated", "body is not valid JSON"),
            text("[1,]", "body is not valid JSON"),
            text("'single'", "body is not valid JSON"),
            text("\"tab\tinside\"", "body is not valid JSON"),
        ]),
    ]
    .boxed()
}

/// JSON values meant to break one envelope field: every type, edge numbers (including
/// 20-digit integers), deep (but parseable) nesting, huge strings and arrays.
fn hostile_field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => json_value(),
        3 => hostile_string().prop_map(Value::String),
        2 => hostile_number(),
        1 => select(vec![
            "123456789012345678901",
            "18446744073709551616",
            "-9223372036854775809",
            "1e-400",
            "1E+300",
        ])
        .prop_map(|t| serde_json::from_str(t).expect("parseable number")),
        1 => (1usize..120).prop_map(|n| {
            serde_json::from_str(&nested_lists(n, "1")).expect("nesting under the limit")
        }),
        1 => (0usize..20_000).prop_map(|n| Value::Array(vec![json!(1); n])),
        1 => select(vec![json!(null), json!(true), json!([]), json!({}), json!(""), json!(0)]),
    ]
    .boxed()
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        1 => Just(Mutation::Remove),
        2 => unparsable().prop_map(|(raw, why)| Mutation::Unparsable(raw, why)),
        6 => hostile_field_value().prop_map(Mutation::Json),
    ]
    .boxed()
}

/// What decoding a mutated envelope must give.
#[derive(Debug)]
enum Expect {
    /// Quarantined with this kind, the reason containing these words.
    Quarantine(QuarantineKind, String),
    /// Either outcome is right (the value is acceptable, or refused further on), as long
    /// as every reason is clear and bounded.
    Anything,
}

fn quarantine(kind: QuarantineKind, words: impl Into<String>) -> Expect {
    Expect::Quarantine(kind, words.into())
}

/// The outcome the contract prescribes when `field` of a `kind` envelope is replaced by
/// `value` (`None`: removed), all else being valid.
fn expected(kind: Kind, field: &str, value: Option<&Value>) -> Expect {
    use QuarantineKind::{Decode, TenantAccess};
    let value = value.filter(|v| !v.is_null());
    let envelope = |problem: String| {
        let reason = format!("not a valid {} envelope: {problem}", kind.name());
        quarantine(Decode, reason)
    };
    if kind.required().contains(&field) {
        let Some(value) = value else {
            return envelope(format!("missing field `{field}`"));
        };
        let Some(text) = value.as_str() else {
            return envelope(format!("field `{field}` must be a string"));
        };
        let time_field = kind.required()[kind.required().len() - 1];
        return if field == "event_id" && EventId::new(text).is_err() {
            quarantine(Decode, "invalid event id")
        } else if field == time_field && parse_rfc3339_ms(text).is_err() {
            quarantine(Decode, "event time is not RFC 3339")
        } else if field == "result_type"
            && !["succeeded", "failed", "timed_out", "rejected"].contains(&text)
        {
            envelope("field `result_type` must be succeeded".into())
        } else {
            Expect::Anything
        };
    }
    match (field, value) {
        (_, None) => Expect::Anything,
        ("tenant_id", Some(Value::String(t))) if t.is_empty() => Expect::Anything,
        ("tenant_id", Some(Value::String(t))) if TenantId::new(t).is_err() => {
            quarantine(TenantAccess, "invalid tenant id")
        }
        // The subject (tenant acme) names the tenant: the body may only agree.
        ("tenant_id", Some(Value::String(t))) if t != "acme" => {
            quarantine(TenantAccess, "disagrees with the subject's tenant")
        }
        ("tenant_id", Some(Value::String(_))) => Expect::Anything,
        ("tenant_id", Some(_)) => envelope("field `tenant_id` must be a string".into()),
        ("metadata", Some(m @ Value::Object(_)))
            if m.to_string().len() > default_cfg().max_metadata_bytes =>
        {
            quarantine(Decode, "pipeline.max_metadata_bytes")
        }
        ("metadata", Some(Value::Object(_))) => Expect::Anything,
        ("metadata", Some(_)) => envelope("field `metadata` must be an object".into()),
        ("version", Some(v)) if kind == Kind::Aggregate && !v.is_u64() => {
            envelope("field `version` must be a non-negative integer".into())
        }
        _ => Expect::Anything,
    }
}

/// Checks what every decode result must satisfy, whatever the input: bounded, named
/// reasons and bounded copies of the input.
fn check_bounded(decoded: &Decoded) -> Result<(), TestCaseError> {
    match decoded {
        Decoded::Quarantine(record, _) => check_record(record),
        Decoded::Event(event) => {
            prop_assert!(event.routes.len() <= example_catalog().sagas.len());
            for fault in &event.route_faults {
                prop_assert_eq!(fault.saga.as_str(), "order_fulfilment");
                check_reason(&fault.reason)?;
            }
            Ok(())
        }
    }
}

fn check_reason(reason: &str) -> Result<(), TestCaseError> {
    prop_assert!(!reason.trim().is_empty(), "empty reason");
    prop_assert!(
        reason.len() <= MAX_REASON_BYTES,
        "reason of {} bytes: {}…",
        reason.len(),
        reason.chars().take(200).collect::<String>()
    );
    Ok(())
}

fn check_record(record: &QuarantineRecord) -> Result<(), TestCaseError> {
    check_reason(&record.reason)?;
    // Invalid UTF-8 shows as U+FFFD (3 bytes) per byte at most.
    prop_assert!(record.body_excerpt.len() <= 3 * QUARANTINE_EXCERPT_BYTES);
    prop_assert!(record
        .event_id
        .as_ref()
        .is_none_or(|e| e.chars().count() <= 128));
    prop_assert!(record
        .correlation_id
        .as_ref()
        .is_none_or(|c| c.chars().count() <= 128));
    Ok(())
}

fn check_expected(decoded: &Decoded, expect: &Expect) -> Result<(), TestCaseError> {
    check_bounded(decoded)?;
    if let Expect::Quarantine(kind, words) = expect {
        match decoded {
            Decoded::Quarantine(record, _) => {
                prop_assert_eq!(record.kind, *kind, "reason: {}", record.reason);
                prop_assert!(
                    record.reason.contains(words.as_str()),
                    "{:?} not in the reason {:?}",
                    words,
                    record.reason
                );
            }
            Decoded::Event(event) => {
                prop_assert!(
                    false,
                    "expected a quarantine ({words}), got event {}",
                    event.event_id
                )
            }
        }
    }
    Ok(())
}

fn quarantined(decoded: Decoded) -> QuarantineRecord {
    match decoded {
        Decoded::Quarantine(record, _) => *record,
        Decoded::Event(event) => panic!("expected a quarantine, got event {}", event.event_id),
    }
}

fn unknown_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(("x_[a-z]{1,8}", json_value()), 0..3)
}

proptest! {
    #![proptest_config(config(CASES))]

    /// One field of an otherwise valid envelope is removed or replaced by something
    /// hostile; unknown extra fields must change nothing (forward compatibility).
    #[test]
    fn a_mutated_envelope_is_quarantined_with_a_reason_naming_the_problem(
        kind in kind(),
        pick in any::<prop::sample::Index>(),
        mutation in mutation(),
        extra in unknown_fields(),
    ) {
        let valid = kind.fields();
        let field = valid[pick.index(valid.len())].0;
        let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
        let mut expect = Expect::Anything;
        for (name, value) in &valid {
            if *name != field {
                raw.push((name.to_string(), value.to_string().into_bytes()));
                continue;
            }
            match &mutation {
                Mutation::Remove => expect = expected(kind, field, None),
                Mutation::Unparsable(text, why) => {
                    raw.push((name.to_string(), text.clone()));
                    expect = quarantine(QuarantineKind::Decode, *why);
                }
                Mutation::Json(v) => {
                    raw.push((name.to_string(), v.to_string().into_bytes()));
                    expect = expected(kind, field, Some(v));
                }
            }
        }
        raw.extend(extra.iter().map(|(k, v)| (k.clone(), v.to_string().into_bytes())));
        let body = body_of(&raw);
        let cfg = default_cfg();
        prop_assume!(body.len() <= cfg.max_message_bytes);
        let decoded = decode(&cfg, example_catalog(), &kind.info(), None, &body);
        check_expected(&decoded, &expect)?;
    }

    /// Bytes from nowhere: never an event, always a decode quarantine.
    #[test]
    fn arbitrary_bytes_are_quarantined(
        kind in kind(),
        body in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let decoded = decode(&default_cfg(), example_catalog(), &kind.info(), None, &body);
        check_bounded(&decoded)?;
        let record = quarantined(decoded);
        prop_assert_eq!(record.kind, QuarantineKind::Decode);
        prop_assert!(
            record.reason.starts_with("body is not") || record.reason.starts_with("not a valid"),
            "{}", record.reason
        );
    }

    /// Any JSON document as the body: non-objects and objects without the envelope's
    /// fields are refused by name; nothing panics, however deep or wide.
    #[test]
    fn arbitrary_json_documents_are_refused_by_name(kind in kind(), doc in json_value()) {
        let body = doc.to_string().into_bytes();
        let cfg = default_cfg();
        let decoded = decode(&cfg, example_catalog(), &kind.info(), None, &body);
        let expect = if body.len() > cfg.max_message_bytes {
            quarantine(QuarantineKind::Decode, "exceeds the limit")
        } else if !doc.is_object() {
            quarantine(QuarantineKind::Decode, "body is not a JSON object")
        } else if doc.get("event_id").is_some_and(Value::is_string) {
            // Some other required field is missing: refused, for a reason checked below.
            Expect::Anything
        } else {
            expected(kind, "event_id", doc.get("event_id"))
        };
        check_expected(&decoded, &expect)?;
    }

    /// A body over `pipeline.max_message_bytes` is refused before it is parsed.
    #[test]
    fn oversized_bodies_are_refused_before_parsing(
        kind in kind(),
        limit in 1024usize..8192,
        excess in 1usize..20_000,
        filler in select(vec![b' ', b'[', b'{', 0xff]),
    ) {
        let mut cfg = default_cfg();
        cfg.max_message_bytes = limit;
        let valid: Vec<(String, Vec<u8>)> = kind
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
            .collect();
        let mut body = body_of(&valid);
        body.splice(1..1, std::iter::repeat_n(filler, limit + excess));
        let decoded = decode(&cfg, example_catalog(), &kind.info(), None, &body);
        check_bounded(&decoded)?;
        let record = quarantined(decoded);
        prop_assert_eq!(record.kind, QuarantineKind::Decode);
        let words = format!("message of {} bytes exceeds the limit of {limit} bytes", body.len());
        prop_assert_eq!(record.reason, words);
    }

    /// Body and `x-tenant-id` header: each must be absent or agree with the subject's
    /// tenant (acme), and be a valid id; otherwise a tenant-access quarantine, filed under
    /// no tenant, whose reason stays short however long the claimed tenants are.
    #[test]
    fn hostile_tenants_in_body_and_header_are_refused(
        kind in kind(),
        body_tenant in prop::option::of(hostile_string()),
        header in prop::option::of(hostile_string()),
    ) {
        let mut fields: Vec<(String, Vec<u8>)> = kind
            .fields()
            .into_iter()
            .filter(|(k, _)| *k != "tenant_id")
            .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
            .collect();
        if let Some(t) = &body_tenant {
            fields.push(("tenant_id".into(), Value::String(t.clone()).to_string().into_bytes()));
        }
        let body = body_of(&fields);
        let cfg = default_cfg();
        prop_assume!(body.len() <= cfg.max_message_bytes);
        let decoded = decode(&cfg, example_catalog(), &kind.info(), header.as_deref(), &body);
        let (b, h) = (body_tenant.as_deref().unwrap_or(""), header.as_deref().unwrap_or(""));
        // The header is checked first, then the body.
        let expect = [h, b]
            .into_iter()
            .filter(|claim| !claim.is_empty())
            .find_map(|claim| match TenantId::new(claim) {
                Err(_) => Some(quarantine(QuarantineKind::TenantAccess, "invalid tenant id")),
                Ok(t) if t.as_str() != "acme" => {
                    Some(quarantine(QuarantineKind::TenantAccess, "disagrees with the subject"))
                }
                Ok(_) => None,
            })
            .unwrap_or(Expect::Anything);
        check_expected(&decoded, &expect)?;
        if let Decoded::Quarantine(record, _) = &decoded {
            prop_assert_eq!(record.filing_tenant(), None, "filed under no tenant");
        }
        if let (Expect::Anything, Decoded::Quarantine(record, _)) = (&expect, &decoded) {
            prop_assert!(false, "unexpected quarantine: {}", record.reason);
        }
    }

    /// Whatever a result's `metadata.correlation_id` holds, the correlate expression
    /// routes it, ignores it (null, "") or names why it cannot — briefly.
    #[test]
    fn hostile_correlation_values_route_or_fault_briefly(correlation in json_value()) {
        let mut fields: Vec<(String, Vec<u8>)> = Kind::Result
            .fields()
            .into_iter()
            .filter(|(k, _)| *k != "metadata")
            .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
            .collect();
        let metadata = json!({ "correlation_id": correlation });
        fields.push(("metadata".into(), metadata.to_string().into_bytes()));
        let body = body_of(&fields);
        // Routing is the point here, not the metadata bound (its own property below).
        let cfg = DecodeConfig { max_metadata_bytes: usize::MAX, ..default_cfg() };
        prop_assume!(body.len() <= cfg.max_message_bytes);
        let decoded = decode(&cfg, example_catalog(), &Kind::Result.info(), None, &body);
        check_bounded(&decoded)?;
        let Decoded::Event(event) = decoded else {
            return Err(TestCaseError::fail("a valid result envelope was quarantined"));
        };
        let (routes, faults) = (event.routes.len(), event.route_faults.len());
        match &correlation {
            Value::Null => prop_assert_eq!((routes, faults), (0, 0)),
            Value::String(s) if s.is_empty() => prop_assert_eq!((routes, faults), (0, 0)),
            Value::String(s) if CorrelationId::new(s).is_ok() => {
                prop_assert_eq!((routes, faults), (1, 0));
                prop_assert_eq!(event.routes[0].correlation.as_str(), s.as_str());
            }
            Value::Number(n) => {
                prop_assert_eq!((routes, faults), (1, 0));
                // As the number reads back: without serde_json's `float_roundtrip`
                // feature a float can read back one ulp off what was written.
                let read: Value = serde_json::from_str(&n.to_string()).expect("a number");
                prop_assert_eq!(event.routes[0].correlation.as_str(), read.to_string());
            }
            Value::String(_) => {
                prop_assert_eq!((routes, faults), (0, 1));
                prop_assert!(event.route_faults[0].reason.contains("invalid correlation id"));
            }
            _ => {
                prop_assert_eq!((routes, faults), (0, 1));
                let reason = &event.route_faults[0].reason;
                prop_assert!(reason.contains("not a string"), "{}", reason);
            }
        }
    }

    /// The subject names the tenant: whatever its tenant token, an envelope whose body
    /// says acme is taken only on acme's subject; anywhere else (another tenant, no
    /// token, a token that is no tenant id) it is a tenant violation filed under no
    /// tenant, and never attributed to the tenant the body claims.
    #[test]
    fn the_subjects_tenant_token_is_the_authority(kind in kind(), token in hostile_string()) {
        let mut info = kind.info();
        let prefix = match kind {
            Kind::Aggregate => "aggregate",
            Kind::Result => "workflow.result",
            Kind::Reminder => "workflow.timer",
        };
        let rest = info.subject[prefix.len() + 1..].split_once('.').map(|(_, r)| r).unwrap_or("");
        info.subject = format!("{prefix}.{token}.{rest}");
        let body = envelope_with(kind, "tenant_id", json!("acme"));
        let decoded = decode(&default_cfg(), example_catalog(), &info, None, &body);
        check_bounded(&decoded)?;
        let subject_token = token.split('.').next().unwrap_or("");
        match &decoded {
            Decoded::Event(event) => {
                prop_assert_eq!(subject_token, "acme");
                prop_assert_eq!(event.tenant.as_str(), "acme");
            }
            Decoded::Quarantine(record, _) => {
                prop_assert!(subject_token != "acme", "acme's own envelope refused: {}", record.reason);
                prop_assert_eq!(record.filing_tenant(), None, "{}", record.reason);
            }
        }
    }

    /// Metadata is bounded at decode: an envelope whose serialised `metadata` is over
    /// `pipeline.max_metadata_bytes` is a decode quarantine of the tenant that sent it;
    /// at or under it, the envelope is taken.
    #[test]
    fn metadata_over_the_bound_is_refused_at_decode(
        kind in kind(),
        filler in 0usize..40_000,
    ) {
        let metadata = json!({"correlation_id": "o-1", "blob": "m".repeat(filler)});
        let size = metadata.to_string().len();
        let body = envelope_with(kind, "metadata", metadata);
        let cfg = default_cfg();
        let decoded = decode(&cfg, example_catalog(), &kind.info(), None, &body);
        check_bounded(&decoded)?;
        match &decoded {
            Decoded::Quarantine(record, _) => {
                prop_assert!(size > cfg.max_metadata_bytes, "{}", record.reason);
                prop_assert_eq!(record.kind, QuarantineKind::Decode);
                prop_assert!(record.reason.contains("max_metadata_bytes"), "{}", record.reason);
                prop_assert_eq!(record.filing_tenant().map(|t| t.as_str()), Some("acme"));
            }
            Decoded::Event(_) => prop_assert!(size <= cfg.max_metadata_bytes),
        }
    }

    /// Deliveries beyond `max_deliver` (less the ones the process caused itself) are
    /// quarantined whatever the body, naming the count.
    #[test]
    fn over_delivered_messages_are_quarantined(
        kind in kind(),
        delivered in prop_oneof![0u64..20, any::<u64>()],
        forgiven in prop_oneof![0u64..20, any::<u64>()],
        garbage in any::<bool>(),
    ) {
        let cfg = default_cfg();
        let mut info = kind.info();
        info.delivered = delivered;
        info.forgiven = forgiven;
        let body: Vec<u8> = if garbage {
            b"\xff{".to_vec()
        } else {
            let valid: Vec<(String, Vec<u8>)> = kind
                .fields()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
                .collect();
            body_of(&valid)
        };
        let decoded = decode(&cfg, example_catalog(), &info, None, &body);
        check_bounded(&decoded)?;
        if delivered.saturating_sub(forgiven) > cfg.max_deliver {
            let record = quarantined(decoded);
            prop_assert_eq!(record.kind, QuarantineKind::MaxDeliver);
            let words = format!("delivered {delivered} times");
            prop_assert!(record.reason.contains(&words), "{}", record.reason);
        } else if garbage {
            prop_assert!(quarantined(decoded).reason.starts_with("body is not valid JSON"));
        } else {
            prop_assert!(matches!(decoded, Decoded::Event(_)));
        }
    }
}

/// The body of a valid envelope of `kind` with `field` set to `value`.
fn envelope_with(kind: Kind, field: &str, value: Value) -> Vec<u8> {
    let fields: Vec<(String, Vec<u8>)> = kind
        .fields()
        .into_iter()
        .map(|(k, v)| {
            let v = if k == field { value.clone() } else { v };
            (k.to_string(), v.to_string().into_bytes())
        })
        .collect();
    body_of(&fields)
}

fn decode_body(kind: Kind, header: Option<&str>, body: &[u8]) -> Decoded {
    decode(
        &default_cfg(),
        example_catalog(),
        &kind.info(),
        header,
        body,
    )
}

#[test]
fn ten_thousand_open_brackets_are_a_decode_quarantine() {
    for text in [
        "[".repeat(10_000),
        nested_lists(10_000, ""),
        "{\"a\":".repeat(10_000),
    ] {
        let record = quarantined(decode_body(Kind::Aggregate, None, text.as_bytes()));
        assert_eq!(record.kind, QuarantineKind::Decode);
        assert!(
            record
                .reason
                .starts_with("body is not valid JSON: recursion limit exceeded"),
            "{}",
            record.reason
        );
        assert_eq!(record.body_excerpt.len(), QUARANTINE_EXCERPT_BYTES);
    }
}

#[test]
fn a_body_one_byte_over_the_default_limit_is_refused() {
    let limit = default_cfg().max_message_bytes;
    let pad = limit + 1 - envelope_with(Kind::Aggregate, "payload", json!("")).len();
    let body = envelope_with(Kind::Aggregate, "payload", json!("x".repeat(pad)));
    assert_eq!(body.len(), limit + 1);
    let record = quarantined(decode_body(Kind::Aggregate, None, &body));
    assert_eq!(
        record.reason,
        format!(
            "message of {} bytes exceeds the limit of {limit} bytes",
            limit + 1
        )
    );
    // One byte less is decoded.
    let body = envelope_with(Kind::Aggregate, "payload", json!("x".repeat(pad - 1)));
    assert!(matches!(
        decode_body(Kind::Aggregate, None, &body),
        Decoded::Event(_)
    ));
}

#[test]
fn huge_numbers_in_an_envelope_are_named() {
    for (raw, words) in [
        ("1e400", "number out of range"),
        ("-1e400", "number out of range"),
        (
            "123456789012345678901",
            "field `version` must be a non-negative integer",
        ),
        ("-1", "field `version` must be a non-negative integer"),
        ("1.5", "field `version` must be a non-negative integer"),
    ] {
        let mut fields: Vec<(String, Vec<u8>)> = Kind::Aggregate
            .fields()
            .into_iter()
            .filter(|(k, _)| *k != "version")
            .map(|(k, v)| (k.to_string(), v.to_string().into_bytes()))
            .collect();
        fields.push(("version".into(), raw.as_bytes().to_vec()));
        let record = quarantined(decode_body(Kind::Aggregate, None, &body_of(&fields)));
        assert!(record.reason.contains(words), "{raw}: {}", record.reason);
    }
    // u64::MAX is a valid version.
    let body = envelope_with(Kind::Aggregate, "version", json!(u64::MAX));
    assert!(matches!(
        decode_body(Kind::Aggregate, None, &body),
        Decoded::Event(_)
    ));
}

/// Regression: the reasons below quoted the hostile field whole (a 1 MB tenant id gave a
/// 1 MB quarantine reason), and the record kept a megabyte-long event id.
#[test]
fn reasons_quote_hostile_fields_briefly() {
    let huge = "x".repeat(500_000);
    let body = envelope_with(Kind::Aggregate, "tenant_id", json!(huge));
    let record = quarantined(decode_body(Kind::Aggregate, Some("acme"), &body));
    assert_eq!(record.kind, QuarantineKind::TenantAccess);
    assert!(
        record
            .reason
            .starts_with("body tenant: invalid tenant id \"xxx"),
        "{}",
        record.reason
    );
    assert!(
        record.reason.ends_with("…\": is too long"),
        "{}",
        record.reason
    );
    assert!(record.reason.len() < 200, "{} bytes", record.reason.len());
    let body = envelope_with(
        Kind::Aggregate,
        "tenant_id",
        json!(format!("g{}", "x".repeat(60))),
    );
    let record = quarantined(decode_body(Kind::Aggregate, None, &body));
    assert!(
        record
            .reason
            .ends_with("disagrees with the subject's tenant \"acme\""),
        "{}",
        record.reason
    );
    assert!(record.reason.len() < 200, "{} bytes", record.reason.len());

    let body = envelope_with(Kind::Result, "result_type", json!(huge));
    let record = quarantined(decode_body(Kind::Result, None, &body));
    assert!(record
        .reason
        .contains("field `result_type` must be succeeded"));
    assert!(record.reason.len() < 300, "{} bytes", record.reason.len());

    let body = envelope_with(Kind::Result, "metadata", json!({"correlation_id": [huge]}));
    // Over the default metadata bound: refused, naming only sizes.
    let record = quarantined(decode_body(Kind::Result, None, &body));
    assert!(
        record.reason.contains("max_metadata_bytes"),
        "{}",
        record.reason
    );
    assert!(record.reason.len() < 200, "{} bytes", record.reason.len());
    let wide = DecodeConfig {
        max_metadata_bytes: usize::MAX,
        ..default_cfg()
    };
    let decoded = decode(&wide, example_catalog(), &Kind::Result.info(), None, &body);
    let Decoded::Event(event) = decoded else {
        panic!("a valid result envelope was quarantined");
    };
    let reason = &event.route_faults[0].reason;
    assert!(
        reason.starts_with("correlate expression gave [\"xxx"),
        "{reason}"
    );
    assert!(reason.ends_with("…, not a string"), "{reason}");
    assert!(reason.len() < 200, "{} bytes", reason.len());

    let body = envelope_with(Kind::Aggregate, "event_id", json!(huge));
    let record = quarantined(decode_body(Kind::Aggregate, None, &body));
    assert!(
        record.reason.starts_with("invalid event id"),
        "{}",
        record.reason
    );
    assert_eq!(record.event_id.map(|e| e.len()), Some(128));
}
