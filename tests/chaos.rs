//! Issue 11: CI's short fault campaign (the long one is `bench/chaos`):
//! a handful of seeded faults on one bed, each healed and checked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use myha_testbed::chaos::{self, Kind};

mod common;

#[test]
fn short_seeded_campaign_loses_nothing_and_splits_never() {
    let mut opts = chaos::Options::new(common::myha_bin());
    opts.seed = std::env::var("MYHA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(11);
    opts.faults = 5;
    opts.kinds = vec![
        Kind::MysqldKill,
        Kind::Partition,
        Kind::CutManager,
        Kind::ReplicaPartition,
        Kind::ShortPause,
    ];
    opts.pause_max = Duration::from_secs(5);
    eprintln!("chaos seed {}", opts.seed);
    let report = chaos::run(&opts).expect("campaign");
    eprintln!("{}", report.table());
    assert!(
        report.ok(),
        "campaign (seed {}) failed:\n{}\n{}",
        report.seed,
        report.table(),
        report.diagnostics
    );
}
