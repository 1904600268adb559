//! The `let` graph: cycle detection and the nesting depth counted through let references.

use std::collections::BTreeSet;

use super::ast::Node;
use super::error::LoadError;

/// The total nesting allowed when `$get`s of lets are counted as nesting the referenced
/// let's expression in place, as a multiple of `Limits::max_depth`. This bounds the
/// evaluator's recursion (and so its stack use).
pub(crate) const EVAL_DEPTH_FACTOR: usize = 4;

/// Orders the lets so that every let comes after the lets it references, or reports a
/// cycle (`let cycle: a -> b -> a`) at the first let of the cycle. Iterative, so a long
/// chain of lets cannot exhaust the stack.
pub(crate) fn topo_order(
    names: &[String],
    deps: &[BTreeSet<usize>],
    origin: &str,
) -> Result<Vec<usize>, LoadError> {
    let n = names.len();
    let deps: Vec<Vec<usize>> = deps.iter().map(|d| d.iter().copied().collect()).collect();
    let mut color = vec![0u8; n]; // 0 unvisited, 1 on the stack, 2 done
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if color[start] != 0 {
            continue;
        }
        color[start] = 1;
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some(top) = stack.last_mut() {
            let (v, next) = *top;
            match deps.get(v).and_then(|d| d.get(next)).copied() {
                Some(w) => {
                    top.1 += 1;
                    match color.get(w).copied() {
                        Some(0) => {
                            color[w] = 1;
                            stack.push((w, 0));
                        }
                        Some(1) => {
                            let from = stack.iter().position(|&(s, _)| s == w).unwrap_or(0);
                            let mut cycle: Vec<&str> = stack[from..]
                                .iter()
                                .filter_map(|&(s, _)| names.get(s).map(String::as_str))
                                .collect();
                            let head = names.get(w).map(String::as_str).unwrap_or("?");
                            cycle.push(head);
                            return Err(LoadError {
                                origin: origin.to_string(),
                                node: format!("let.{head}"),
                                message: format!("let cycle: {}", cycle.join(" -> ")),
                            });
                        }
                        _ => {}
                    }
                }
                None => {
                    color[v] = 2;
                    order.push(v);
                    stack.pop();
                }
            }
        }
    }
    Ok(order)
}

/// The nesting depth of `node`, where a reference to let `i` counts as `let_depth[i]`.
/// Recursion is bounded by the node's own (already checked) nesting.
pub(crate) fn effective_depth(node: &Node, let_depth: &[usize]) -> usize {
    let own = node
        .let_ref()
        .and_then(|i| let_depth.get(i).copied())
        .unwrap_or(0);
    let below = node
        .children()
        .into_iter()
        .map(|c| effective_depth(c, let_depth))
        .max()
        .unwrap_or(0);
    1 + own.max(below)
}
