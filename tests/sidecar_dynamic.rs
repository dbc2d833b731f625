//! The sidecar with dynamic database credentials from OpenBao's database engine against a real
//! PostgreSQL, and through OpenBao outages: the credentials in the files log in at every moment
//! across renewals and max-TTL rotations, and exactly one credential is minted per rotation;
//! a restarted OpenBao and a rate-limit quota leave the files alone and service resumes.

mod common;

use common::Server;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cli::{read, tree};
use common::postgres::{MintCounter, Postgres};
use common::scenario::Pod;
use common::server::{add_rate_limit_quota_with, remove_rate_limit_quota, PersistentBao};
use common::{unique, Bao};

/// Username and password read as one version (see the README: `..data` before and after).
fn read_pair(dir: &Path) -> Option<(String, String)> {
    for _ in 0..20 {
        let before = std::fs::read_link(dir.join("..data")).ok()?;
        let u = std::fs::read_to_string(dir.join("username")).ok()?;
        let p = std::fs::read_to_string(dir.join("password")).ok()?;
        if std::fs::read_link(dir.join("..data")).ok()? == before {
            return Some((u, p));
        }
    }
    None
}

#[test]
fn database_credentials_stay_valid_through_renewals_and_rotations() {
    let (bao, pg) = (Bao::shared(), Postgres::shared());
    // A role whose creation statement also records each minted user in a table, so the count
    // of minted credentials does not depend on secretdrop's own word.
    let db = MintCounter::new(bao, pg, "3s", "9s");
    let pod = Pod::with_policy(bao, &db.policy());
    let rest = db.objects();
    // Debug logging records every renewal, so the counts come from the final log, after stop.
    let mut r = pod.sidecar(
        &pod.native(bao, &rest),
        &["--poll-interval", "1h", "--log-level", "debug"],
    );

    let out = pod.out();
    let started = Instant::now();
    let (mut checks, mut failures) = (0, Vec::new());
    let (mut users, mut passwords) = (BTreeSet::new(), BTreeSet::new());
    while started.elapsed() < Duration::from_secs(24) {
        match read_pair(&out) {
            Some((u, p)) => {
                checks += 1;
                if let Err(e) = pg.try_login(&u, &p) {
                    failures.push(format!("{:.1}s {u}: {e}", started.elapsed().as_secs_f64()));
                }
                users.insert(u);
                passwords.insert(p);
            }
            None => failures.push("no consistent pair".into()),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let (code, _) = r.stop();
    // A rotation may land between the last check and the stop: its pair is in the files.
    if let Some((u, p)) = read_pair(&out) {
        users.insert(u);
        passwords.insert(p);
    }
    let rotations = r.log_text().matches("new credentials fetched").count() as f64;
    let renewals = r.log_text().matches("renewed lease").count() as f64;
    assert_eq!(code, Some(0));
    let log = r.log_text();
    assert!(
        failures.is_empty(),
        "{} of {checks} checks failed: {:?}\n{log}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        rotations >= 2.0,
        "{rotations} rotations in 24s with a 9s max TTL:\n{log}"
    );
    assert!(
        renewals >= 2.0 * rotations,
        "{renewals} renewals for {rotations} rotations:\n{log}"
    );
    let minted = db.minted(pg);
    assert_eq!(
        minted as f64,
        rotations + 1.0,
        "minted {minted} credentials for {rotations} rotations:\n{log}"
    );
    assert_eq!(
        users.len(),
        minted,
        "every minted credential reached the files"
    );
    for p in &passwords {
        assert!(!log.contains(p.as_str()), "a password reached the log");
    }
}

#[test]
fn an_openbao_restart_leaves_the_files_alone_and_service_resumes() {
    let mut bao = PersistentBao::start();
    bao.cli(&["kv", "put", "secret/app", "username=u", "password=before"]);
    let pod = Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let rest =
        "objects:\n  - {objectName: password, secretPath: secret/data/app, secretKey: password}\n";
    let mut r = pod.sidecar(&pod.native(&bao, rest), &["--poll-interval", "1s"]);
    let before = tree(&pod.out());

    bao.stop();
    let down = Instant::now();
    let mut noticed = false;
    while down.elapsed() < Duration::from_secs(8) {
        assert_eq!(
            tree(&pod.out()),
            before,
            "files changed while OpenBao was down"
        );
        noticed |= r
            .metric("secretdrop_failures_total{cause=\"unavailable\"}")
            .is_some();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(noticed, "the outage was not counted:\n{}", r.log_text());
    let warnings = r.log_text().lines().filter(|l| l.contains("WARN")).count();
    assert!(
        warnings <= 3,
        "one line per state change, not per retry:\n{}",
        r.log_text()
    );

    bao.restart();
    bao.cli(&["kv", "put", "secret/app", "username=u", "password=after"]);
    assert!(
        r.eventually(Duration::from_secs(20), || read(pod.out().join("password"))
            == "after"),
        "service did not resume:\n{}",
        r.log_text()
    );
    assert!(
        r.log_text().contains("reading works again"),
        "{}",
        r.log_text()
    );
    assert_eq!(r.get("/readyz").0, 200);
    let (code, _) = r.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn a_rate_limit_quota_is_waited_out_without_an_error_storm() {
    let bao = Bao::shared();
    let path = unique("limited");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=steady"]);
    let pod = Pod::reading(bao, &path);
    let rest = format!("objects:\n  - {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n");
    let mut r = pod.sidecar(
        &pod.native(bao, &rest),
        &["--poll-interval", "1s", "--log-level", "debug"],
    );
    let before = tree(&pod.out());

    // One request per 10s on this path, and a client that exceeds it is blocked for 3s.
    let quota = unique("quota");
    add_rate_limit_quota_with(
        bao,
        &quota,
        0.1,
        &format!("secret/data/{path}"),
        &["interval=10s", "block_interval=3s"],
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(
        tree(&pod.out()),
        before,
        "files changed under rate limiting"
    );
    let limited = r
        .metric("secretdrop_failures_total{cause=\"unavailable\"}")
        .unwrap_or(0.0);
    assert!(limited >= 1.0, "the quota never bit:\n{}", r.log_text());
    let log = r.log_text();
    let attempts = log.matches("rate limited (429)").count();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 2, "one warning per state change:\n{log}");
    assert!(
        attempts <= 12,
        "{attempts} attempts in 8s is a storm, not a backoff:\n{log}"
    );

    remove_rate_limit_quota(bao, &quota);
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=moved"]);
    assert!(
        r.eventually(Duration::from_secs(40), || read(pod.out().join("password"))
            == "moved"),
        "service did not resume after the quota went:\n{}",
        r.log_text()
    );
    let (code, _) = r.stop();
    assert_eq!(code, Some(0));
}
