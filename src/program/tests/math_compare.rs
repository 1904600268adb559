//! Comparison and math operations.

use serde_json::json;

use super::*;

#[test]
fn eq_ne_deep_with_numbers_by_value() {
    assert_eq!(ev(json!({ "$eq": [1, 1.0] })), json!(true));
    assert_eq!(
        ev(json!({ "$eq": [{ "a": [1, 2.0] }, { "$lit": { "a": [1.0, 2] } }] })),
        json!(true)
    );
    assert_eq!(
        ev(json!({ "$eq": [{ "a": [1, 2] }, { "a": [1, 3] }] })),
        json!(false)
    );
    assert_eq!(ev(json!({ "$eq": [{ "a": 1 }, { "b": 1 }] })), json!(false));
    assert_eq!(
        ev(json!({ "$eq": [null, { "$get": "event.nope" }] })),
        json!(true)
    );
    assert_eq!(ev(json!({ "$eq": ["1", 1] })), json!(false));
    assert_eq!(ev(json!({ "$eq": [[1], [1, 1]] })), json!(false));
    assert_eq!(
        ev(json!({ "$ne": [{ "$get": "event.event_type" }, "OrderPlaced"] })),
        json!(false)
    );
    assert_eq!(ev(json!({ "$ne": [true, false] })), json!(true));
    // Exact across integer/float: 2^53 + 1 is not equal to the float 2^53.
    assert_eq!(
        ev(json!({ "$eq": [9007199254740993_i64, 9007199254740992.0] })),
        json!(false)
    );
    assert_eq!(
        ev(json!({ "$eq": [18446744073709551615_u64, 18446744073709551615_u64] })),
        json!(true)
    );
}

#[test]
fn ordering_comparisons() {
    assert_eq!(ev(json!({ "$lt": [1, 2] })), json!(true));
    assert_eq!(ev(json!({ "$lt": [2, 1.5] })), json!(false));
    assert_eq!(ev(json!({ "$lte": [2, 2.0] })), json!(true));
    assert_eq!(ev(json!({ "$gt": [-1, -1.5] })), json!(true));
    assert_eq!(ev(json!({ "$gte": [3, 4] })), json!(false));
    assert_eq!(ev(json!({ "$lt": ["apple", "banana"] })), json!(true));
    assert_eq!(
        ev(json!({ "$gt": ["a", "B"] })),
        json!(true),
        "bytewise: 'a' > 'B'"
    );
    assert_eq!(
        ev(json!({ "$lt": [9007199254740992.0, 9007199254740993_i64] })),
        json!(true)
    );
    assert_eq!(
        ev(json!({ "$gt": [18446744073709551615_u64, -1] })),
        json!(true)
    );
    let f = ev_fault(json!({ "$lt": [1, "2"] }));
    assert_fault(&f, "expr", "$lt", FaultKind::Type);
    assert_eq!(
        f.message,
        "needs two numbers or two strings, got number 1 and string \"2\""
    );
    let f = ev_fault(json!({ "$gte": [null, 1] }));
    assert_fault(&f, "expr", "$gte", FaultKind::Type);
}

#[test]
fn add_mul_keep_integers() {
    assert_eq!(ev(json!({ "$add": [1, 2, 3] })), json!(6));
    assert!(ev(json!({ "$add": [1, 2] })).is_i64());
    assert_eq!(ev(json!({ "$add": [1, 0.5] })), json!(1.5));
    assert_eq!(ev(json!({ "$add": [1.5, 1.5] })), json!(3.0));
    assert!(ev(json!({ "$add": [1.5, 1.5] })).is_f64());
    assert_eq!(
        ev(json!({ "$mul": [{ "$get": "event.payload.total" }, 2] })),
        json!(250)
    );
    assert_eq!(ev(json!({ "$mul": [4, 2.5] })), json!(10.0));
    assert_eq!(ev(json!({ "$add": [7] })), json!(7));
}

#[test]
fn overflow_and_non_finite_are_faults() {
    let f = ev_fault(json!({ "$add": [9223372036854775807_i64, 1] }));
    assert_fault(&f, "expr", "$add", FaultKind::Arithmetic);
    assert_eq!(f.message, "integer overflow");
    let f = ev_fault(json!({ "$mul": [4611686018427387904_i64, 2] }));
    assert_fault(&f, "expr", "$mul", FaultKind::Arithmetic);
    let f = ev_fault(json!({ "$sub": [-9223372036854775807_i64, 2] }));
    assert_fault(&f, "expr", "$sub", FaultKind::Arithmetic);
    let f = ev_fault(json!({ "$mul": [1e308, 10] }));
    assert_fault(&f, "expr", "$mul", FaultKind::Arithmetic);
    assert_eq!(f.message, "result is not a finite number");
    let f = ev_fault(json!({ "$add": [18446744073709551615_u64, 1] }));
    assert_fault(&f, "expr", "$add", FaultKind::Arithmetic);
    // …but with a float operand a large integer is just a float.
    assert_eq!(
        ev(json!({ "$add": [18446744073709551615_u64, 0.5] })),
        json!(18446744073709551615.5)
    );
}

#[test]
fn sub_div_mod() {
    assert_eq!(ev(json!({ "$sub": [10, 15] })), json!(-5));
    assert_eq!(ev(json!({ "$sub": [1, 0.25] })), json!(0.75));
    assert_eq!(ev(json!({ "$div": [6, 3] })), json!(2));
    assert!(ev(json!({ "$div": [6, 3] })).is_i64());
    assert_eq!(ev(json!({ "$div": [7, 2] })), json!(3.5));
    assert_eq!(ev(json!({ "$div": [-9, 3] })), json!(-3));
    assert_eq!(ev(json!({ "$div": [1.0, 4] })), json!(0.25));
    assert_eq!(ev(json!({ "$mod": [7, 3] })), json!(1));
    assert_eq!(ev(json!({ "$mod": [-7, 3] })), json!(-1));
    assert_eq!(
        ev(json!({ "$mod": [-9223372036854775808_i64, -1] })),
        json!(0)
    );
    assert_eq!(ev(json!({ "$mod": [7.5, 2] })), json!(1.5));
    for src in [
        json!({ "$div": [1, 0] }),
        json!({ "$mod": [1, 0] }),
        json!({ "$div": [1.5, 0] }),
        json!({ "$mod": [1, 0.0] }),
    ] {
        let f = ev_fault(src);
        assert_eq!(
            (f.kind, f.message.as_str()),
            (FaultKind::Arithmetic, "division by zero")
        );
    }
    let f = ev_fault(json!({ "$div": [-9223372036854775808_i64, -1] }));
    assert_fault(&f, "expr", "$div", FaultKind::Arithmetic);
}

#[test]
fn min_max() {
    assert_eq!(ev(json!({ "$min": [3, 1, 2] })), json!(1));
    assert_eq!(ev(json!({ "$max": [3, 1, 2] })), json!(3));
    assert_eq!(ev(json!({ "$max": [1, 2.5] })), json!(2.5));
    assert_eq!(ev(json!({ "$min": [1, 2.5] })), json!(1.0));
    assert!(ev(json!({ "$min": [1, 2.5] })).is_f64());
}

#[test]
fn math_type_faults_name_the_node() {
    let f =
        ev_fault(json!({ "$if": [true, { "$add": [1, { "$get": "event.payload.name" }] }, 0] }));
    assert_fault(&f, "expr.$if.1", "$add", FaultKind::Type);
    assert_eq!(f.message, "expected a number, got string \"Ada Lovelace\"");
    let f = ev_fault(json!({ "$max": [1, null] }));
    assert_fault(&f, "expr", "$max", FaultKind::Type);
}

#[test]
fn sum() {
    assert_eq!(ev(json!({ "$sum": [1, 2, 3] })), json!(6));
    assert_eq!(ev(json!({ "$sum": [1, 2.5] })), json!(3.5));
    assert_eq!(ev(json!({ "$sum": [] })), json!(0));
    assert_eq!(ev(json!({ "$sum": { "$get": "event.nope" } })), json!(0));
    assert_eq!(
        ev(
            json!({ "$sum": { "$map": { "over": { "$get": "event.payload.items" }, "as": "i",
                                       "do": { "$mul": [{ "$get": "i.qty" }, { "$get": "i.price" }] } } } })
        ),
        json!(25)
    );
    let f = ev_fault(json!({ "$sum": [1, "2"] }));
    assert_fault(&f, "expr", "$sum", FaultKind::Type);
    assert_eq!(f.message, "element 1: expected a number, got string \"2\"");
    let f = ev_fault(json!({ "$sum": 5 }));
    assert_fault(&f, "expr", "$sum", FaultKind::Type);
    let f = ev_fault(json!({ "$sum": [9223372036854775807_i64, 1] }));
    assert_fault(&f, "expr", "$sum", FaultKind::Arithmetic);
}
