//! `ricochet probe` as a new user meets it: help, edge values, the words
//! and units of the report, hints on failures, and write errors.
//!
//! One test binary, its tests in modules by subject: [`usage`] (help,
//! options, output files), [`report`] (what the report says and where it
//! goes), [`diagnosis`] (how a wrong echo is named), [`hints`] (what the
//! probe suggests when a run fails).

#[path = "../probe_support/mod.rs"]
mod probe_support;

mod diagnosis;
mod hints;
mod report;
mod usage;

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use probe_support::{
    Fault, FaultyServer, OurServer, STEP_TIMEOUT, json_of, probe_cli, ricochet_bin, run_bounded,
    serve_unix_child, texts,
};
use ricochet::core::Mode;

fn tcp(srv: &FaultyServer) -> String {
    format!("tcp://{}", srv.addr)
}

/// A TCP address nobody listens on (connects are refused).
fn refused_target() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr");
    drop(l);
    format!("tcp://{a}")
}
