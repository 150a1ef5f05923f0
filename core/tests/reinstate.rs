//! Reinstatement of a diverged former master: the ranges to read, the
//! parser of `mariadb-binlog` output (recorded from MariaDB 10.11), the
//! refusals of what flashback cannot undo, and the atomic flashback script.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use myha_core::gtid::MariaGtid;
use myha_core::reinstate::{
    atomic_flashback, extra_ranges, gtid_list, parse_decoded, refusals, tables, verify_read,
    ExtraRange, ReinstateError,
};
use myha_core::report::ServerFacts;

/// `mariadb-binlog -v --base64-output=decode-rows --read-from-remote-server
/// --start-position=0-1-3 --stop-position=0-1-8 --to-last-log
/// mysql-bin.000001` on MariaDB 10.11 after: 0-1-4 INSERT, 0-1-5 UPDATE,
/// 0-1-6 DELETE (ROW), 0-1-7 INSERT with binlog_format=STATEMENT, 0-1-8
/// ALTER TABLE.
const DECODED: &str = r##"/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
/*!40019 SET @@session.max_delayed_threads=0*/;
/*!50003 SET @OLD_COMPLETION_TYPE=@@COMPLETION_TYPE,COMPLETION_TYPE=0*/;
DELIMITER /*!*/;
# at 4
#700101  0:00:00 server id 1  end_log_pos 0 	Rotate to mysql-bin.000001  pos: 4
# at 4
#261201 14:34:51 server id 1  end_log_pos 256 CRC32 0x77d9f5c0 	Start: binlog v 4, server v 10.11.18-MariaDB-0+deb12u1-log created 261201 14:34:51
# at 256
#261201 14:34:51 server id 1  end_log_pos 285 CRC32 0x46fb8bcc 	Gtid list []
# at 285
#261201 14:34:51 server id 1  end_log_pos 328 CRC32 0x3b9226d9 	Binlog checkpoint mysql-bin.000001
# at 328
#700101  0:00:00 server id 1  end_log_pos 866 CRC32 0xac63b0b8 	Gtid list [0-1-3]
# at 371
#261201 14:34:57 server id 1  end_log_pos 908 CRC32 0x66f20e63 	GTID 0-1-4 trans
/*M!100101 SET @@session.skip_parallel_replication=0*//*!*/;
/*M!100001 SET @@session.gtid_domain_id=0*//*!*/;
/*M!100001 SET @@session.server_id=1*//*!*/;
/*M!100001 SET @@session.gtid_seq_no=4*//*!*/;
START TRANSACTION
/*!*/;
# at 413
# at 468
#261201 14:34:57 server id 1  end_log_pos 963 CRC32 0x97882d8f 	Annotate_rows:
#Q> INSERT INTO app.t VALUES (3,'c')
#261201 14:34:57 server id 1  end_log_pos 1009 CRC32 0xe86954e5 	Table_map: `app`.`t` mapped to number 18
# at 514
#261201 14:34:57 server id 1  end_log_pos 1049 CRC32 0x15aec8d7 	Write_rows: table id 18 flags: STMT_END_F
### INSERT INTO `app`.`t`
### SET
###   @1=3
###   @2='c'
# Number of rows: 1
# at 554
#261201 14:34:57 server id 1  end_log_pos 1080 CRC32 0x2d878934 	Xid = 9
COMMIT/*!*/;
# at 585
#261201 14:34:57 server id 1  end_log_pos 1122 CRC32 0x61f1a2cb 	GTID 0-1-5 trans
/*M!100001 SET @@session.gtid_seq_no=5*//*!*/;
START TRANSACTION
/*!*/;
# at 627
# at 684
#261201 14:34:57 server id 1  end_log_pos 1179 CRC32 0xa782f146 	Annotate_rows:
#Q> UPDATE app.t SET v='bb' WHERE id=2
#261201 14:34:57 server id 1  end_log_pos 1225 CRC32 0x1294f35a 	Table_map: `app`.`t` mapped to number 18
# at 730
#261201 14:34:57 server id 1  end_log_pos 1274 CRC32 0x95515f45 	Update_rows: table id 18 flags: STMT_END_F
### UPDATE `app`.`t`
### WHERE
###   @1=2
###   @2='b'
### SET
###   @1=2
###   @2='bb'
# Number of rows: 1
# at 779
#261201 14:34:57 server id 1  end_log_pos 1305 CRC32 0x2ef5cefc 	Xid = 10
COMMIT/*!*/;
# at 810
#261201 14:34:57 server id 1  end_log_pos 1347 CRC32 0x56279f97 	GTID 0-1-6 trans
/*M!100001 SET @@session.gtid_seq_no=6*//*!*/;
START TRANSACTION
/*!*/;
# at 852
# at 903
#261201 14:34:57 server id 1  end_log_pos 1398 CRC32 0x336f507e 	Annotate_rows:
#Q> DELETE FROM app.t WHERE id=1
#261201 14:34:57 server id 1  end_log_pos 1444 CRC32 0x29c5528c 	Table_map: `app`.`t` mapped to number 18
# at 949
#261201 14:34:57 server id 1  end_log_pos 1484 CRC32 0x9f18a900 	Delete_rows: table id 18 flags: STMT_END_F
### DELETE FROM `app`.`t`
### WHERE
###   @1=1
###   @2='a'
# Number of rows: 1
# at 989
#261201 14:34:57 server id 1  end_log_pos 1515 CRC32 0x6a2d5668 	Xid = 11
COMMIT/*!*/;
# at 1020
#261201 14:34:57 server id 1  end_log_pos 1557 CRC32 0x513a66d6 	GTID 0-1-7 trans
/*M!100001 SET @@session.gtid_seq_no=7*//*!*/;
START TRANSACTION
/*!*/;
# at 1062
#261201 14:34:57 server id 1  end_log_pos 1656 CRC32 0x5a616ff3 	Query	thread_id=6	exec_time=0	error_code=0	xid=0
SET TIMESTAMP=1796135697/*!*/;
SET @@session.pseudo_thread_id=6/*!*/;
SET @@session.foreign_key_checks=1, @@session.sql_auto_is_null=0, @@session.unique_checks=1, @@session.autocommit=1, @@session.check_constraint_checks=1, @@session.sql_if_exists=0, @@session.explicit_defaults_for_timestamp=1, @@session.system_versioning_insert_history=0/*!*/;
SET @@session.sql_mode=1411383296/*!*/;
SET @@session.auto_increment_increment=1, @@session.auto_increment_offset=1/*!*/;
/*!\C latin1 *//*!*/;
SET @@session.character_set_client=latin1,@@session.collation_connection=8,@@session.collation_server=45/*!*/;
SET @@session.lc_time_names=0/*!*/;
SET @@session.collation_database=DEFAULT/*!*/;
INSERT INTO app.t VALUES (10,'stmt')
/*!*/;
# at 1161
#261201 14:34:57 server id 1  end_log_pos 1687 CRC32 0xd1121149 	Xid = 13
COMMIT/*!*/;
# at 1192
#261201 14:34:57 server id 1  end_log_pos 1729 CRC32 0x3a8d21fc 	GTID 0-1-8 ddl
/*M!100001 SET @@session.gtid_seq_no=8*//*!*/;
# at 1234
#261201 14:34:57 server id 1  end_log_pos 1835 CRC32 0xee56dcb8 	Query	thread_id=6	exec_time=0	error_code=0	xid=15
SET TIMESTAMP=1796135697/*!*/;
ALTER TABLE app.t ADD COLUMN w INT
/*!*/;
DELIMITER ;
# End of log file
ROLLBACK /* added by mysqlbinlog */;
/*!50003 SET COMPLETION_TYPE=@OLD_COMPLETION_TYPE*/;
/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=0*/;
/*!100001 SET @@SESSION.SERVER_ID=@@GLOBAL.SERVER_ID */;
/*!100001 SET @@SESSION.GTID_DOMAIN_ID=@@GLOBAL.GTID_DOMAIN_ID */;
"##;

/// `mariadb-binlog --flashback` of 0-1-3..0-1-6 from the same server.
const FLASHBACK: &str = r##"/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=1*/;
/*!40019 SET @@session.max_delayed_threads=0*/;
/*!50003 SET @OLD_COMPLETION_TYPE=@@COMPLETION_TYPE,COMPLETION_TYPE=0*/;
DELIMITER /*!*/;
#700101  0:00:00 server id 1  end_log_pos 0 	Rotate to mysql-bin.000001  pos: 4
#261201 14:34:51 server id 1  end_log_pos 256 CRC32 0x77d9f5c0 	Start: binlog v 4, server v 10.11.18-MariaDB-0+deb12u1-log created 261201 14:34:51
BINLOG '
C9sOaw8BAAAA/AAAAAABAAAAAAQAMTAuMTEuMTgtTWFyaWFEQi0wK2RlYjEydTEtbG9nAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAEzgNAAgAEgAEBAQEEgAA5AAEGggAAAAICAgCAAAACgoKAAAAAAAA
CgoKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
AAAAAAAAAAAEEwQADQgICAoKCgHA9dl3
'/*!*/;
#261201 14:34:51 server id 1  end_log_pos 285 CRC32 0x46fb8bcc 	Gtid list []
#261201 14:34:51 server id 1  end_log_pos 328 CRC32 0x3b9226d9 	Binlog checkpoint mysql-bin.000001
#700101  0:00:00 server id 1  end_log_pos 866 CRC32 0xac63b0b8 	Gtid list [0-1-3]
#261201 14:34:57 server id 1  end_log_pos 963 CRC32 0x97882d8f 	Annotate_rows:
#Q> INSERT INTO app.t VALUES (3,'c')
#261201 14:34:57 server id 1  end_log_pos 1009 CRC32 0xe86954e5 	Table_map: `app`.`t` mapped to number 18
# Number of rows: 1
#261201 14:34:57 server id 1  end_log_pos 1179 CRC32 0xa782f146 	Annotate_rows:
#Q> UPDATE app.t SET v='bb' WHERE id=2
#261201 14:34:57 server id 1  end_log_pos 1225 CRC32 0x1294f35a 	Table_map: `app`.`t` mapped to number 18
# Number of rows: 1
#261201 14:34:57 server id 1  end_log_pos 1398 CRC32 0x336f507e 	Annotate_rows:
#Q> DELETE FROM app.t WHERE id=1
#261201 14:34:57 server id 1  end_log_pos 1444 CRC32 0x29c5528c 	Table_map: `app`.`t` mapped to number 18
# Number of rows: 1
#261201 14:34:57 server id 1  end_log_pos 1515 CRC32 0x6a2d5668 	Xid = 11
START TRANSACTION/*!*/;
#261201 14:34:57 server id 1  end_log_pos 1484 CRC32 0x9f18a900 	Write_rows: table id 18 flags: STMT_END_F

BINLOG '
EdsOaxMBAAAALgAAAKQFAAAAABIAAAAAAAEAA2FwcAABdAACAw8CUAACjFLFKQ==
EdsOaxcBAAAAKAAAAMwFAAAAABIAAAAAAAEAAgP8AQAAAAFhAKkYnw==
'/*!*/;
COMMIT
/*!*/;
#261201 14:34:57 server id 1  end_log_pos 1305 CRC32 0x2ef5cefc 	Xid = 10
START TRANSACTION/*!*/;
#261201 14:34:57 server id 1  end_log_pos 1274 CRC32 0x95515f45 	Update_rows: table id 18 flags: STMT_END_F

BINLOG '
EdsOaxMBAAAALgAAAMkEAAAAABIAAAAAAAEAA2FwcAABdAACAw8CUAACWvOUEg==
EdsOaxgBAAAAMQAAAPoEAAAAABIAAAAAAAEAAgMD/AIAAAACYmL8AgAAAAFiRV9RlQ==
'/*!*/;
COMMIT
/*!*/;
#261201 14:34:57 server id 1  end_log_pos 1080 CRC32 0x2d878934 	Xid = 9
START TRANSACTION/*!*/;
#261201 14:34:57 server id 1  end_log_pos 1049 CRC32 0x15aec8d7 	Delete_rows: table id 18 flags: STMT_END_F

BINLOG '
EdsOaxMBAAAALgAAAPEDAAAAABIAAAAAAAEAA2FwcAABdAACAw8CUAAC5VRp6A==
EdsOaxkBAAAAKAAAABkEAAAAABIAAAAAAAEAAgP8AwAAAAFj18iuFQ==
'/*!*/;
COMMIT
/*!*/;
COMMIT
/*!*/;
DELIMITER ;
# End of log file
ROLLBACK /* added by mysqlbinlog */;
/*!50003 SET COMPLETION_TYPE=@OLD_COMPLETION_TYPE*/;
/*!50530 SET @@SESSION.PSEUDO_SLAVE_MODE=0*/;
/*!100001 SET @@SESSION.SERVER_ID=@@GLOBAL.SERVER_ID */;
/*!100001 SET @@SESSION.GTID_DOMAIN_ID=@@GLOBAL.GTID_DOMAIN_ID */;
"##;

fn with_state(server_id: u32, state: &str) -> ServerFacts {
    ServerFacts {
        gtid_binlog_state: state.to_string(),
        ..common::facts(server_id)
    }
}

fn g(d: u32, s: u32, n: u64) -> MariaGtid {
    MariaGtid::new(d, s, n)
}

#[test]
fn parses_row_statement_and_ddl_transactions() {
    let trxs = parse_decoded(DECODED).unwrap();
    let gtids: Vec<String> = trxs.iter().map(|t| t.gtid.to_string()).collect();
    assert_eq!(gtids, ["0-1-4", "0-1-5", "0-1-6", "0-1-7", "0-1-8"]);
    for t in &trxs[..3] {
        assert_eq!(t.row_events, 1, "{t:?}");
        assert!(
            !t.ddl && t.statements.is_empty() && t.other_events.is_empty(),
            "{t:?}"
        );
        assert_eq!(t.refusal(), None);
    }
    assert_eq!(trxs[3].statements, ["INSERT INTO app.t VALUES (10,'stmt')"]);
    assert!(!trxs[3].ddl);
    let why = trxs[3].refusal().unwrap();
    assert!(
        why.contains("0-1-7")
            && why.contains("statement")
            && why.contains("INSERT INTO app.t VALUES (10,'stmt')"),
        "{why}"
    );
    assert!(trxs[4].ddl);
    assert_eq!(trxs[4].statements, ["ALTER TABLE app.t ADD COLUMN w INT"]);
    let why = trxs[4].refusal().unwrap();
    assert!(
        why.contains("GTID 0-1-8 is DDL") && why.contains("ALTER TABLE app.t ADD COLUMN w INT"),
        "{why}"
    );
    assert_eq!(refusals(&trxs).len(), 2);
    assert_eq!(gtid_list(&trxs), "0-1-4..0-1-8");
    assert_eq!(tables(DECODED).get("`app`.`t`"), Some(&3));
}

#[test]
fn row_only_range_is_flashbackable() {
    // Only the three ROW transactions (what stops at 0-1-6 would print).
    let cut = DECODED.find("GTID 0-1-7").unwrap();
    let head = &DECODED[..DECODED[..cut].rfind("# at").unwrap()];
    let trxs = parse_decoded(head).unwrap();
    assert_eq!(trxs.len(), 3);
    assert!(refusals(&trxs).is_empty());
}

#[test]
fn statement_based_helper_events_are_refused() {
    let text =
        "#261201 14:34:57 server id 1  end_log_pos 1557 CRC32 0x513a66d6 \tGTID 0-1-9 trans\n\
                START TRANSACTION\n/*!*/;\n\
                #261201 14:34:57 server id 1  end_log_pos 1600 CRC32 0x513a66d6 \tIntvar\n\
                SET INSERT_ID=5/*!*/;\n\
                #261201 14:34:57 server id 1  end_log_pos 1687 CRC32 0xd1121149 \tXid = 13\n\
                COMMIT/*!*/;\n";
    let trxs = parse_decoded(text).unwrap();
    assert_eq!(trxs.len(), 1);
    let why = trxs[0].refusal().unwrap();
    assert!(why.contains("0-1-9") && why.contains("Intvar"), "{why}");
}

#[test]
fn ranges_start_at_the_common_gtid_and_skip_heartbeats() {
    // db1 (server 1) wrote 0-1-4..0-1-6 the master (db2) lacks, and
    // heartbeats in its own domain.
    let server = with_state(1, "0-1-6,1000000001-1-410");
    let master = with_state(2, "0-1-3,0-2-9,1000000001-1-403,1000000002-2-50");
    let ranges = extra_ranges(&server, &master).unwrap();
    assert_eq!(
        ranges,
        [ExtraRange {
            domain: 0,
            after: g(0, 1, 3),
            last: g(0, 1, 6)
        }]
    );
    assert_eq!(ranges[0].start_position(), "0-1-3");
    assert_eq!(
        ranges[0].start_position_beside("0-1-6,1000000001-1-40"),
        "0-1-3,1000000001-1-40"
    );
    assert_eq!(ranges[0].stop_position(), "0-1-6");
    let trxs = parse_decoded(DECODED).unwrap();
    // 0-1-7 and 0-1-8 are outside the range.
    assert!(matches!(
        verify_read(&trxs, &ranges, &master),
        Err(ReinstateError::Unexpected(_))
    ));
    verify_read(&trxs[..3], &ranges, &master).unwrap();
    // The last of the range must have been read.
    assert!(verify_read(&trxs[..2], &ranges, &master).is_err());
    // A transaction the master has is not extra.
    let master_has = with_state(2, "0-1-4,0-2-9");
    assert!(verify_read(&trxs[..3], &ranges, &master_has).is_err());
}

#[test]
fn range_after_another_origin() {
    // The old master replicated 0-2-50 before writing 0-1-51..53.
    let server = with_state(1, "0-2-50,0-1-53");
    let master = with_state(2, "0-2-60");
    let ranges = extra_ranges(&server, &master).unwrap();
    assert_eq!(
        ranges,
        [ExtraRange {
            domain: 0,
            after: g(0, 2, 50),
            last: g(0, 1, 53)
        }]
    );
    // Nothing extra: no range.
    assert!(extra_ranges(&master, &master).unwrap().is_empty());
    // A domain the master never saw has no start position.
    let server = with_state(1, "0-2-50,5-1-2");
    assert_eq!(
        extra_ranges(&server, &master),
        Err(ReinstateError::NoCommonPosition { domain: 5 })
    );
}

#[test]
fn flashback_is_applied_as_one_transaction() {
    let (script, rows) = atomic_flashback(&[FLASHBACK.to_string()]).unwrap();
    assert_eq!(rows, 3);
    let control: Vec<&str> = script
        .lines()
        .filter(|l| {
            l.contains("START TRANSACTION") || l.starts_with("COMMIT") || l.starts_with("ROLLBACK")
        })
        .collect();
    assert_eq!(
        control,
        [
            "START TRANSACTION/*!*/;",
            "COMMIT/*!*/;",
            "ROLLBACK /* added by mysqlbinlog */;"
        ]
    );
    // The transaction opens right after the delimiter, commits before
    // the trailer (which sets session variables not allowed inside one).
    let on = script
        .find("DELIMITER /*!*/;\nSTART TRANSACTION/*!*/;")
        .unwrap();
    let commit = script.find("COMMIT/*!*/;\nDELIMITER ;").unwrap();
    assert!(on < commit);
    assert_eq!(script.matches("BINLOG '").count(), 4);
    // Two ranges: still one transaction, one header and trailer.
    let (two, rows) = atomic_flashback(&[FLASHBACK.to_string(), FLASHBACK.to_string()]).unwrap();
    assert_eq!(rows, 6);
    assert_eq!(two.matches("START TRANSACTION").count(), 1);
    assert_eq!(two.matches("DELIMITER ;").count(), 1);
    assert!(atomic_flashback(&[]).is_err());
    assert!(atomic_flashback(&["garbage".to_string()]).is_err());
}

#[test]
fn a_transaction_the_binlog_ends_with_rollback_is_not_undone() {
    // One reversed transaction that committed, then one cut short by a
    // crash (the binary log ends it with ROLLBACK): only the first is
    // undone.
    let out = "HEAD\nDELIMITER /*!*/;\n\
               START TRANSACTION/*!*/;\n\
               #261201 14:35:00 server id 1  end_log_pos 900 CRC32 0x1 \tDelete_rows: table id 18 flags: STMT_END_F\n\
               BINLOG 'AAA'/*!*/;\n\
               COMMIT/*!*/;\n\
               START TRANSACTION/*!*/;\n\
               #261201 14:35:01 server id 1  end_log_pos 990 CRC32 0x2 \tDelete_rows: table id 18 flags: STMT_END_F\n\
               BINLOG 'BBB'/*!*/;\n\
               ROLLBACK/*!*/;\n\
               DELIMITER ;\n# End of log file\n";
    let (script, rows) = atomic_flashback(&[out.to_string()]).unwrap();
    assert_eq!(rows, 1, "{script}");
    assert!(script.contains("BINLOG 'AAA'"), "{script}");
    assert!(!script.contains("BINLOG 'BBB'"), "{script}");
    assert!(!script.contains("ROLLBACK"), "{script}");
}
