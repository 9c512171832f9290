//! The short fault run (about two minutes): every fault once under
//! concurrent buyers, then every check. It runs its own PostgreSQL, Redis
//! and boxoffice (`boxoffice-faults-system`, built by cargo for this test)
//! and fails with the report when any check fails.

use boxoffice_faults::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_fault_run_keeps_every_promise() {
    let boxoffice = std::path::PathBuf::from(env!("CARGO_BIN_EXE_boxoffice-faults-system"));
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-short");
    let _ = std::fs::remove_dir_all(&out);
    let options = Options::short(boxoffice, out.clone());
    let report = run(&options).await.expect("the fault run could be made");
    println!("{}", report.text);
    println!("history, logs and timeline: {}", out.display());
    assert!(
        report.passed(),
        "a check failed (history and logs in {}):\n{}",
        out.display(),
        report.text
    );
}
