//! Plain-text tables for `runner admin`: a header row, columns padded to their widest
//! cell, every column but the last cut at [`MAX_CELL`] characters (the last, usually a
//! reason, is printed whole).

use serde_json::Value;

/// The widest a cell of any column but the last may be.
pub const MAX_CELL: usize = 60;

pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        let columns = self.headers.len();
        let last = columns.saturating_sub(1);
        let fit = |i: usize, text: &str| -> String {
            if i < last {
                cut(text, MAX_CELL)
            } else {
                text.to_string()
            }
        };
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(fit(i, cell).chars().count());
            }
        }
        let line = |cells: &[String]| -> String {
            let mut out = String::new();
            for (i, width) in widths.iter().enumerate() {
                let text = fit(i, cells.get(i).map(String::as_str).unwrap_or(""));
                if i == last {
                    out.push_str(&text);
                } else {
                    out.push_str(&text);
                    let pad = width - text.chars().count() + 2;
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(&self.headers);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// `text` cut to `max` characters, the last one an ellipsis when something was cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A JSON value as a cell: `-` for null or absent, strings as they are, lists joined
/// by commas, objects as compact JSON. Line breaks become spaces.
pub fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_and_long_cells_are_cut() {
        let mut t = Table::new(&["KEY", "STATUS", "REASON"]);
        t.push(vec!["a".into(), "active".into(), "fine".into()]);
        let long = "x".repeat(80);
        t.push(vec![long.clone(), "-".into(), long.clone()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].find("STATUS"), lines[1].find("active"));
        assert!(lines[2].contains(&format!("{}…", "x".repeat(MAX_CELL - 1))));
        assert!(lines[2].ends_with(&long), "the last column is whole");
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn cells_of_json_values() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!("a\nb")), "a b");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(cell(&json!(["x", "y"])), "x,y");
        assert_eq!(cell(&json!([])), "-");
        assert_eq!(cell(&json!({"a": 1})), r#"{"a":1}"#);
    }
}
