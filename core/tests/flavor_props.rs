//! Properties of the flavor layer: string literals read back exactly and
//! never end early; `\G` text round-trips; no input makes a reader panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use myha_core::flavor::{
    parse_status_text, sql_string_literal, ChangeSource, Flavor, GtidMode, Row,
};

/// Read a single-quoted literal at the start of `sql` the way the server's
/// lexer does: `''` is a quote; with `backslash_escapes` (the default
/// `sql_mode`) `\x` is an escape. Returns the value and what follows the
/// closing quote, or `None` if the literal is unterminated.
fn lex_literal(sql: &str, backslash_escapes: bool) -> Option<(String, &str)> {
    let rest = sql.strip_prefix('\'')?;
    let mut value = String::new();
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if backslash_escapes => {
                let (_, e) = chars.next()?;
                match e {
                    '0' => value.push('\0'),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'b' => value.push('\u{8}'),
                    'Z' => value.push('\u{1a}'),
                    '%' | '_' => {
                        value.push('\\');
                        value.push(e);
                    }
                    other => value.push(other),
                }
            }
            '\'' => {
                if let Some((_, '\'')) = chars.peek() {
                    chars.next();
                    value.push('\'');
                } else {
                    return Some((value, &rest[i + 1..]));
                }
            }
            c => value.push(c),
        }
    }
    None
}

/// `sql` with every string literal replaced by `?`, as the lexer sees it.
fn skeleton(sql: &str, backslash_escapes: bool) -> Option<String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(pos) = rest.find('\'') {
        out.push_str(&rest[..pos]);
        out.push('?');
        let (_, after) = lex_literal(&rest[pos..], backslash_escapes)?;
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just('\''),
            Just('\\'),
            Just('"'),
            Just('\0'),
            Just('\n'),
            Just(';'),
            Just('%'),
            Just('_'),
            any::<char>(),
        ],
        0..24,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

proptest! {
    #[test]
    fn literal_reads_back_exactly_in_default_mode(s in hostile_string()) {
        let lit = sql_string_literal(&s);
        prop_assert_eq!(lex_literal(&lit, true), Some((s.clone(), "")));
    }

    #[test]
    fn literal_never_ends_early_without_backslash_escapes(s in hostile_string()) {
        let lit = sql_string_literal(&s);
        let (_, rest) = lex_literal(&lit, false).unwrap();
        prop_assert_eq!(rest, "");
    }

    #[test]
    fn change_source_structure_survives_any_values(
        host in hostile_string(),
        user in hostile_string(),
        password in hostile_string(),
        port in any::<u16>(),
        retry in any::<u32>(),
        heartbeat in any::<f64>(),
        mysql in any::<bool>(),
    ) {
        let flavor = if mysql { Flavor::Mysql } else { Flavor::Mariadb };
        let opts = ChangeSource {
            host: host.clone(),
            port,
            user: user.clone(),
            password: password.clone(),
            gtid_mode: GtidMode::SlavePos,
            connect_retry_secs: retry,
            heartbeat_period_secs: heartbeat,
            ssl: None,
        };
        let sql = flavor.change_source(&opts);
        let hb = sql.rsplit("HEARTBEAT_PERIOD=").next().unwrap().split(',').next().unwrap();
        prop_assert!(hb.parse::<f64>().is_ok_and(|v| (0.0..=4_294_967.0).contains(&v)), "{}", hb);
        let expected = match flavor {
            Flavor::Mariadb => format!(
                "CHANGE MASTER TO MASTER_HOST=?, MASTER_PORT={port}, MASTER_USER=?, \
                 MASTER_PASSWORD=?, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY={retry}, \
                 MASTER_HEARTBEAT_PERIOD={hb}"
            ),
            Flavor::Mysql => format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST=?, SOURCE_PORT={port}, SOURCE_USER=?, \
                 SOURCE_PASSWORD=?, SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY={retry}, \
                 SOURCE_HEARTBEAT_PERIOD={hb}, GET_SOURCE_PUBLIC_KEY=1"
            ),
        };
        for backslash_escapes in [true, false] {
            prop_assert_eq!(skeleton(&sql, backslash_escapes), Some(expected.clone()));
        }
    }

    #[test]
    fn wait_sql_structure_survives_any_gtid_text(text in hostile_string(), t in any::<f64>()) {
        for flavor in [Flavor::Mariadb, Flavor::Mysql] {
            let sql = flavor.wait_for_gtid(&text, t);
            let sk = skeleton(&sql, true).unwrap();
            let (func, timeout) = match flavor {
                Flavor::Mariadb => ("MASTER_GTID_WAIT", sk
                    .strip_prefix("SELECT MASTER_GTID_WAIT(?, ")
                    .and_then(|r| r.strip_suffix(") AS wait_result"))),
                Flavor::Mysql => ("WAIT_FOR_EXECUTED_GTID_SET", sk
                    .strip_prefix("SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ")
                    .and_then(|r| r.strip_suffix(") AS wait_result"))),
            };
            let timeout = timeout.unwrap_or_else(|| panic!("{func}: {sk}"));
            let v: f64 = timeout.parse().unwrap();
            match flavor {
                Flavor::Mariadb => prop_assert!(v >= 0.0),
                Flavor::Mysql => prop_assert!(v >= 1.0 && v.fract() == 0.0),
            }
        }
    }

    #[test]
    fn status_text_round_trips(
        rows in prop::collection::vec(
            prop::collection::btree_map(
                "[A-Za-z_][A-Za-z0-9_]{0,24}",
                prop::option::of("[!-~]([ -~]{0,30}[!-~])?"),
                1..12,
            ),
            1..4,
        )
    ) {
        // The literal text NULL means SQL NULL in `\G` output.
        let rows: Vec<Row> = rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|(k, v)| (k, v.filter(|v| v != "NULL")))
                    .collect()
            })
            .collect();
        let width = rows.iter().flat_map(|r| r.keys()).map(String::len).max().unwrap_or(0);
        let mut text = String::from("mysql> SHOW REPLICA STATUS\\G\n");
        for (i, row) in rows.iter().enumerate() {
            text.push_str(&format!("{0} {1}. row {0}\n", "*".repeat(27), i + 1));
            for (name, value) in row {
                let value = value.as_deref().unwrap_or("NULL");
                text.push_str(&format!("{name:>width$}: {value}\n"));
            }
        }
        text.push_str(&format!("{} rows in set (0.00 sec)\n", rows.len()));
        prop_assert_eq!(parse_status_text(&text), rows);
    }

    #[test]
    fn readers_never_panic(
        text in "(([A-Za-z_]{1,12}: ?[ -~]{0,12})|([ -~]{0,20})|(\\*+ 1\\. row \\*+))(\n(([A-Za-z_]{1,12}: ?[ -~]{0,12})|([ -~]{0,20})|(\\*+ 2\\. row \\*+))){0,40}",
    ) {
        for row in parse_status_text(&text) {
            let _ = Flavor::Mariadb.parse_replication_status(&row);
            let _ = Flavor::Mysql.parse_replication_status(&row);
            let _ = Flavor::Mysql.parse_server_variables(&row);
            let _ = Flavor::Mariadb.parse_gtid_variables(&row);
        }
    }

    #[test]
    fn fixture_rows_with_any_single_value_never_panic(
        column in 0usize..62,
        value in prop::option::of("[ -~]{0,24}"),
        mysql in any::<bool>(),
    ) {
        let text = if mysql {
            include_str!("fixtures/mysql-8.0-replica.txt")
        } else {
            include_str!("fixtures/mariadb-10.11-replica.txt")
        };
        let flavor = if mysql { Flavor::Mysql } else { Flavor::Mariadb };
        let mut row = parse_status_text(text).remove(0);
        let key = row.keys().nth(column % row.len()).unwrap().clone();
        row.insert(key, value);
        let _ = flavor.parse_replication_status(&row);
    }
}
