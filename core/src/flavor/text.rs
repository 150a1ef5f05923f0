//! Reading the mysql client's vertical (`\G`) output back into rows.

use super::Row;

/// Parse `\G` output into rows.
///
/// * `*** N. row ***` lines separate rows (text without any separator is
///   one row);
/// * `   Name: value` lines give a column (`Name` is letters, digits and
///   `_`; the value is trimmed; the literal value `NULL` becomes `None`);
/// * any other non-empty line continues the previous value, joined with
///   `"\n"` (MySQL prints multi-UUID GTID sets over several lines);
/// * blank lines, client prompts (`mysql>`, `MariaDB [...]>`) and the
///   `N rows in set` / `Empty set` trailers are ignored, as is text before
///   the first column.
///
/// Meant for recorded output (fixtures, tests, support bundles); live rows
/// come from the driver with real `NULL`s.
pub fn parse_status_text(text: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if is_row_separator(trimmed) {
            flush(&mut current, &mut rows);
            continue;
        }
        if let Some((name, value)) = split_field(trimmed) {
            current.push((name.to_string(), value.to_string()));
        } else if trimmed.is_empty() || is_client_noise(trimmed) {
            continue;
        } else if let Some((_, value)) = current.last_mut() {
            value.push('\n');
            value.push_str(trimmed);
        }
    }
    flush(&mut current, &mut rows);
    rows
}

fn flush(current: &mut Vec<(String, String)>, rows: &mut Vec<Row>) {
    if current.is_empty() {
        return;
    }
    let row = current
        .drain(..)
        .map(|(name, value)| {
            let value = if value == "NULL" { None } else { Some(value) };
            (name, value)
        })
        .collect();
    rows.push(row);
}

fn is_row_separator(line: &str) -> bool {
    line.starts_with("***") && line.ends_with("***") && line.contains(". row ")
}

/// Prompts and result trailers: `mysql> ...`, `MariaDB [db]> ...`,
/// `Empty set (0.00 sec)`, `1 row in set (0.00 sec)`, `2 rows in set ...`.
fn is_client_noise(line: &str) -> bool {
    let counted = line.split_once(' ').is_some_and(|(n, rest)| {
        !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && (rest.starts_with("row in set") || rest.starts_with("rows in set"))
    });
    counted
        || line.starts_with("mysql>")
        || line.starts_with("MariaDB [")
        || line.starts_with("Empty set")
}

/// `Name: value` or `Name:` -> (name, trimmed value).
fn split_field(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let (name, rest) = line.split_at(colon);
    let rest = &rest[1..];
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let separated = rest.is_empty() || rest.starts_with([' ', '\t']);
    if name_ok && separated {
        Some((name, rest.trim()))
    } else {
        None
    }
}
