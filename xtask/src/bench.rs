//! `cargo xtask bench`: the loopback echo yardstick (../shared/bench) run
//! against the reference servers and `ricochet serve` in one session, so the
//! ratios compare like with like. Not a CI stage: benchmarks are measured,
//! not asserted.

use crate::{Ctx, run};

/// Runs the reference servers (tokio, C epoll, std threads, socat) and then
/// ricochet (default workers and `--threads 1`) through the standard matrix
/// plus the large-message cases; prints the tables. `extra` goes to run.sh
/// (e.g. `-r 3 -d 5`).
pub(crate) fn bench(ctx: &Ctx, extra: &[String]) -> Result<(), String> {
    let bench = ctx.root.join("../shared/bench");
    if !bench.join("run.sh").exists() {
        return Err(format!(
            "{} not found: the yardstick lives in shared/bench beside the repository",
            bench.display()
        ));
    }
    run(
        &ctx.root,
        "cargo",
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let out_dir = std::env::temp_dir().join(format!("ricochet-bench-{}", std::process::id()));
    let out_dir = out_dir.to_string_lossy().into_owned();
    let out = format!("{out_dir}/all.jsonl");
    let cases = "pp1,pp100,pp1000,st1,st16,pp:1:8KiB,pp:1:64KiB";
    let mut args: Vec<&str> = vec![&out_dir, "-c", cases];
    args.extend(extra.iter().map(String::as_str));
    // run_all.sh: references + iperf3 ceilings into OUT_DIR/all.jsonl.
    run(&bench, "./run_all.sh", &args, &[])?;
    let bin = ctx.root.join("target/release/ricochet");
    let bin = bin.to_string_lossy();
    for (name, cmd) in [
        ("ricochet", format!("{bin} serve --tcp 127.0.0.1:{{PORT}}")),
        (
            "ricochet-t1",
            format!("{bin} serve --threads 1 --tcp 127.0.0.1:{{PORT}}"),
        ),
    ] {
        let mut a: Vec<&str> = vec!["-I", "-o", &out, "-n", name, "-c", cases];
        a.extend(extra.iter().map(String::as_str));
        a.push(&cmd);
        run(&bench, "./run.sh", &a, &[("RUST_LOG", "warn")])?;
    }
    run(&bench, "python3", &["table.py", "--pivot", &out], &[])?;
    run(&bench, "python3", &["table.py", &out], &[])?;
    eprintln!("xtask: results in {out}");
    Ok(())
}
