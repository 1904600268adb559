//! Partial matching of an expectation against what a step did (docs/saga-tests.md).
//!
//! - An object matches when every key it lists matches; keys it does not list are not
//!   looked at. An expected `null` also matches a missing key.
//! - A list matches element by element and must have as many elements: `[]` asserts
//!   "none", and one expected command asserts exactly one command.
//! - Scalars must be equal; numbers compare by value (`1` matches `1.0`).
//! - Two operators, written like program operations (an object with one `$` key):
//!   `{$exact: X}` must equal X whole (no partial matching below it, extra keys fail)
//!   and `{$contains: [A, B]}` needs a list holding, in any order, distinct elements
//!   matching A and B (partially), other elements allowed; `{$contains: "text"}` needs
//!   a string holding that text (for quarantine reasons and faults).

use serde_json::{Map, Value};

/// One difference: where, what was expected, what was there (both rendered as JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `state.step`, `commands[0].payload.amount`…
    pub path: String,
    pub expected: String,
    pub actual: String,
}

/// Rendered values longer than this many characters are clipped: a diff line must stay
/// readable.
const MAX_RENDERED: usize = 240;

/// What a missing key or element is shown as.
const MISSING: &str = "(missing)";

/// Every difference between `expected` and `actual` (none: they match). `path` names
/// the compared value in the differences (`state`).
pub fn compare(expected: &Value, actual: Option<&Value>, path: &str) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut path = path.to_string();
    walk(expected, actual, &mut path, &mut out);
    out
}

/// A matcher in an expectation that is misspelt or misused; `at` names where
/// (`expect.state.a[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpectError {
    #[error("{at}: $contains takes a list or a string")]
    ContainsArgument { at: String },
    #[error(
        "{at}: unknown matcher {op} (there are $exact and $contains; to expect an object \
         with a single `$` key literally, write {{$exact: {{...}}}})"
    )]
    UnknownMatcher { at: String, op: String },
}

/// Checks the operators in an expectation before anything runs, so a misspelt one is a
/// problem of the test file rather than a failing case. `at` names `expected`.
pub fn check_expected(expected: &Value, at: &str) -> Result<(), ExpectError> {
    match operator(expected) {
        Some(("$exact", _)) => Ok(()),
        Some(("$contains", Value::Array(items))) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_expected(v, &format!("{at}.$contains[{i}]"))),
        Some(("$contains", Value::String(_))) => Ok(()),
        Some(("$contains", _)) => Err(ExpectError::ContainsArgument { at: at.to_string() }),
        Some((op, _)) => Err(ExpectError::UnknownMatcher {
            at: at.to_string(),
            op: op.to_string(),
        }),
        None => match expected {
            Value::Object(map) => map
                .iter()
                .try_for_each(|(k, v)| check_expected(v, &format!("{at}{}", key_segment(k)))),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check_expected(v, &format!("{at}[{i}]"))),
            _ => Ok(()),
        },
    }
}

/// `{$op: arg}`: an object with a single key starting with `$`.
fn operator(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    k.starts_with('$').then_some((k.as_str(), v))
}

fn walk(expected: &Value, actual: Option<&Value>, path: &mut String, out: &mut Vec<Mismatch>) {
    match operator(expected) {
        Some(("$exact", want)) => {
            if !actual.is_some_and(|a| same(want, a)) {
                out.push(mismatch(path, render(want), actual));
            }
            return;
        }
        Some(("$contains", Value::Array(wanted))) => {
            contains(wanted, actual, path, out);
            return;
        }
        Some(("$contains", Value::String(text))) => {
            if !actual
                .and_then(Value::as_str)
                .is_some_and(|a| a.contains(text.as_str()))
            {
                out.push(mismatch(
                    path,
                    format!("a string containing {}", Value::from(text.as_str())),
                    actual,
                ));
            }
            return;
        }
        // Anything else was rejected by `check_expected`; compared literally if not.
        _ => {}
    }
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => {}
        (Value::Object(want), Some(Value::Object(have))) => object(want, have, path, out),
        (Value::Array(want), Some(Value::Array(have))) => {
            if want.len() != have.len() {
                // Element diffs after an extra or a missing element would all be noise:
                // the whole list is shown instead.
                out.push(Mismatch {
                    path: path.clone(),
                    expected: format!("{} element(s): {}", want.len(), render(expected)),
                    actual: format!("{} element(s): {}", have.len(), render_clipped(actual)),
                });
                return;
            }
            for (i, (w, h)) in want.iter().zip(have).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(w, Some(h), path, out);
                path.truncate(len);
            }
        }
        // Scalars (containers of different kinds never are the same).
        (want, Some(have)) if same(want, have) => {}
        (want, have) => out.push(mismatch(path, render(want), have)),
    }
}

fn object(
    want: &Map<String, Value>,
    have: &Map<String, Value>,
    path: &mut String,
    out: &mut Vec<Mismatch>,
) {
    for (k, w) in want {
        let len = path.len();
        path.push_str(&key_segment(k));
        walk(w, have.get(k), path, out);
        path.truncate(len);
    }
}

/// `$contains`: each wanted element must match a distinct element of the list.
fn contains(wanted: &[Value], actual: Option<&Value>, path: &str, out: &mut Vec<Mismatch>) {
    let Some(Value::Array(have)) = actual else {
        out.push(mismatch(
            path,
            format!(
                "a list containing {}",
                render(&Value::Array(wanted.to_vec()))
            ),
            actual,
        ));
        return;
    };
    // Which wanted element may take which element: then a maximum matching (augmenting
    // paths), so `[{a: 1}, {a: 1, b: 2}]` is found in `[{a: 1, b: 2}, {a: 1}]` even
    // though a first fit would give the first element to the looser pattern.
    let fits: Vec<Vec<bool>> = wanted
        .iter()
        .map(|w| {
            have.iter()
                .map(|h| compare(w, Some(h), "").is_empty())
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; have.len()];
    for (i, w) in wanted.iter().enumerate() {
        let mut seen = vec![false; have.len()];
        if !augment(i, &fits, &mut owner, &mut seen) {
            out.push(Mismatch {
                path: path.to_string(),
                expected: format!("an element matching {}", render(w)),
                actual: format!("none left among {}", render_clipped(actual)),
            });
        }
    }
}

/// Finds an element for wanted element `i`, moving earlier claims along if needed.
fn augment(i: usize, fits: &[Vec<bool>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for j in 0..owner.len() {
        if !fits[i][j] || seen[j] {
            continue;
        }
        seen[j] = true;
        let free = match owner[j] {
            None => true,
            Some(k) => augment(k, fits, owner, seen),
        };
        if free {
            owner[j] = Some(i);
            return true;
        }
    }
    false
}

/// Deep equality, numbers by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        (Value::Number(x), Value::Number(y)) => {
            // Integers exactly (an f64 cannot hold every i64); a float on either side by
            // value, so `100` written in a test matches `100.0` from a program.
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        _ => a == b,
    }
}

fn mismatch(path: &str, expected: String, actual: Option<&Value>) -> Mismatch {
    Mismatch {
        path: path.to_string(),
        expected,
        actual: render_clipped(actual),
    }
}

/// `.key`, or `["odd key"]` when the key is not a plain word.
fn key_segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::from(key))
    }
}

fn render(value: &Value) -> String {
    clip(value.to_string())
}

fn render_clipped(value: Option<&Value>) -> String {
    value.map_or_else(|| MISSING.to_string(), render)
}

fn clip(text: String) -> String {
    crate::envelope::clip_to(&text, MAX_RENDERED)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn diff(expected: Value, actual: Value) -> Vec<Mismatch> {
        compare(&expected, Some(&actual), "state")
    }

    fn paths(m: &[Mismatch]) -> Vec<&str> {
        m.iter().map(|m| m.path.as_str()).collect()
    }

    #[test]
    fn objects_match_on_the_keys_they_list() {
        let actual = json!({"step": "paid", "total": 4200, "extra": {"deep": [1, 2]}});
        assert!(diff(json!({"step": "paid"}), actual.clone()).is_empty());
        assert!(diff(json!({}), actual.clone()).is_empty());
        assert!(diff(json!({"extra": {}}), actual.clone()).is_empty());
        let m = diff(json!({"step": "charging", "total": 4200}), actual.clone());
        assert_eq!(
            m,
            vec![Mismatch {
                path: "state.step".into(),
                expected: "\"charging\"".into(),
                actual: "\"paid\"".into()
            }]
        );
        // Every difference is reported, not just the first.
        let m = diff(json!({"step": 1, "total": 1, "nope": "x"}), actual);
        assert_eq!(paths(&m), ["state.nope", "state.step", "state.total"]);
        assert_eq!(m[0].actual, "(missing)");
    }

    #[test]
    fn null_matches_null_or_missing_but_nothing_else() {
        let actual = json!({"a": null, "b": 0});
        assert!(diff(json!({"a": null, "missing": null}), actual.clone()).is_empty());
        assert_eq!(paths(&diff(json!({"b": null}), actual)), ["state.b"]);
        assert_eq!(compare(&json!(1), None, "x")[0].actual, "(missing)");
    }

    #[test]
    fn lists_match_element_wise_and_by_length() {
        let actual = json!([{"effect_name": "charge_card", "payload": {"amount": 42}}]);
        assert!(diff(json!([{"effect_name": "charge_card"}]), actual.clone()).is_empty());
        let m = diff(json!([{"payload": {"amount": 43}}]), actual.clone());
        assert_eq!(paths(&m), ["state[0].payload.amount"]);
        assert_eq!((m[0].expected.as_str(), m[0].actual.as_str()), ("43", "42"));
        // `[]` asserts that there is nothing.
        let m = diff(json!([]), actual.clone());
        assert_eq!(paths(&m), ["state"]);
        assert!(m[0].expected.starts_with("0 element(s)"), "{m:?}");
        assert!(m[0].actual.starts_with("1 element(s): [{"), "{m:?}");
        assert!(diff(json!([]), json!([])).is_empty());
        // Order counts.
        assert_eq!(paths(&diff(json!(["a", "b"]), json!(["b", "a"]))).len(), 2);
    }

    #[test]
    fn scalars_compare_by_value_and_type() {
        assert!(diff(json!(100), json!(100.0)).is_empty());
        assert!(diff(json!(0.5), json!(0.5)).is_empty());
        assert_eq!(diff(json!("1"), json!(1)).len(), 1);
        assert_eq!(diff(json!(true), json!("true")).len(), 1);
        assert_eq!(diff(json!(u64::MAX), json!(i64::MAX)).len(), 1);
        let m = diff(json!({"a": 1}), json!("text"));
        assert_eq!(
            (m[0].expected.as_str(), m[0].actual.as_str()),
            ("{\"a\":1}", "\"text\"")
        );
    }

    #[test]
    fn exact_needs_the_whole_value() {
        let actual = json!({"step": "paid", "total": 4200});
        assert!(diff(
            json!({"$exact": {"step": "paid", "total": 4200.0}}),
            actual.clone()
        )
        .is_empty());
        let m = diff(json!({"$exact": {"step": "paid"}}), actual.clone());
        assert_eq!(paths(&m), ["state"]);
        assert_eq!(m[0].expected, "{\"step\":\"paid\"}");
        assert_eq!(m[0].actual, "{\"step\":\"paid\",\"total\":4200}");
        // Nested: partial around it, exact inside it.
        assert!(diff(json!({"step": {"$exact": "paid"}}), actual.clone()).is_empty());
        // An object whose one key starts with `$`, matched literally.
        assert!(diff(json!({"$exact": {"$weird": 1}}), json!({"$weird": 1})).is_empty());
        assert_eq!(diff(json!({"$exact": null}), json!({})).len(), 1);
    }

    #[test]
    fn contains_matches_distinct_elements_in_any_order() {
        let actual = json!([
            {"command_type": "MarkPaid", "n": 1},
            {"command_type": "Notify", "n": 2},
            {"command_type": "Notify", "n": 3}
        ]);
        let want = |items: Value| json!({"$contains": items});
        assert!(diff(
            want(json!([{"command_type": "Notify"}, {"command_type": "MarkPaid"}])),
            actual.clone()
        )
        .is_empty());
        assert!(diff(want(json!([])), actual.clone()).is_empty());
        assert!(diff(
            want(json!([{"command_type": "Notify"}, {"command_type": "Notify"}])),
            actual.clone()
        )
        .is_empty());
        // Each expected element needs an element of its own.
        let m = diff(
            want(json!([{"command_type": "MarkPaid"}, {"command_type": "MarkPaid"}])),
            actual.clone(),
        );
        assert_eq!(paths(&m), ["state"]);
        assert!(
            m[0].expected.contains("MarkPaid") && m[0].actual.starts_with("none left among"),
            "{m:?}"
        );
        // Not first fit: the looser pattern leaves the element the stricter one needs.
        let pair = json!([{"a": 1, "b": 2}, {"a": 1}]);
        assert!(diff(want(json!([{"a": 1}, {"a": 1, "b": 2}])), pair.clone()).is_empty());
        assert_eq!(diff(want(json!([{"b": 2}, {"b": 2}])), pair).len(), 1);
        let m = diff(want(json!(["x"])), json!("not a list"));
        assert!(m[0].expected.starts_with("a list containing"), "{m:?}");
        // On a string: a substring.
        assert!(diff(want(json!("declined")), json!("card_declined by bank")).is_empty());
        let m = diff(want(json!("timeout")), json!("card_declined"));
        assert_eq!(m[0].expected, "a string containing \"timeout\"");
        assert_eq!(diff(want(json!("1")), json!(1)).len(), 1);
    }

    #[test]
    fn paths_quote_keys_that_are_not_plain_words() {
        let m = diff(
            json!({"a.b": {"c d": [0, 1]}}),
            json!({"a.b": {"c d": [0, 2]}}),
        );
        assert_eq!(paths(&m), [r#"state["a.b"]["c d"][1]"#]);
    }

    #[test]
    fn long_values_are_clipped_on_a_character_boundary() {
        let long = "é".repeat(400);
        let m = diff(json!("x"), json!(long));
        assert!(m[0].actual.ends_with('…'));
        assert_eq!(m[0].actual.chars().count(), MAX_RENDERED + 1);
    }

    #[test]
    fn unknown_operators_are_problems_of_the_file() {
        assert!(check_expected(&json!({"a": [{"$exact": {"$x": 1}}]}), "expect.state").is_ok());
        assert!(check_expected(&json!({"$contains": [{"a": 1}]}), "e").is_ok());
        let e = check_expected(&json!({"a": [{"$has": 1}]}), "expect.state")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("expect.state.a[0]: unknown matcher $has"),
            "{e}"
        );
        let e = check_expected(&json!({"$contains": {"a": 1}}), "e")
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes a list or a string"), "{e}");
        let e = check_expected(&json!({"$contains": [{"$nope": 1}]}), "e")
            .unwrap_err()
            .to_string();
        assert!(e.contains("e.$contains[0]: unknown matcher $nope"), "{e}");
    }
}
