//! Vault HA failover against a real three-node OpenBao raft cluster (common::ha): the active
//! node is killed with SIGKILL while three sidecars run, each reaching OpenBao one of the ways a
//! pod can reach an HA Vault in Kubernetes, and while a fourth pod's `init` starts:
//! * an active-node Service (the Helm charts' `-active` Service, selecting the pod labelled
//!   `openbao-active: "true"`): no endpoint from the leader's death until the new active node
//!   is labelled, then the new active node;
//! * an all-nodes Service: round-robin over every ready node, standbys included;
//! * one standby's own address;
//! * `init` pointed at that standby, started during the election.
//!
//! What must hold, for each: every file stays as it was through the election; the token and
//! the database lease are renewed afterwards, by the new active node, without a new login and
//! without new credentials; no request ever reaches the dead node's address, where standbys'
//! redirects point (a [`Recorder`] takes its port); the failed steps count as `unavailable`,
//! never `invalid_answer`; `init` waits for the election and succeeds.
//!
//! The election's length is the test's choice. With `performance_multiplier = 1` a natural one
//! takes about 2 s, which the retries inside one step (3 s) would absorb unseen; in production
//! (multiplier 5) it takes 5–15 s. So a second standby is paused (SIGSTOP) along with the kill:
//! without it no quorum forms, and the remaining standby answers every request with a `307` to
//! the dead node, for [`HOLD`]; once it resumes, a new leader is elected in well under a second.
//! The standbys here forward every request (`disable_standby_reads`, as Vault's do), so the
//! sidecars' one-second polls meet the election too; OpenBao's default standbys would answer
//! those reads themselves and only renewals and logins would meet it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cli::{read, tree, write};
use common::ha::{RaftCluster, Recorder, Service};
use common::postgres::{MintCounter, Postgres};
use common::resident::Resident;
use common::scenario::Pod;
use common::{unique, Server};

/// TTL of the sidecars' tokens and of the database credentials: renewed at 62–70% of it, so
/// the first renewals come about 15 s after login, after the election; and a third of it is
/// left when they are due, more than an election and the backoff after it take.
const TTL: &str = "24s";
/// How long the cluster has no active node (plus the election after it, well under 1 s).
const HOLD: Duration = Duration::from_secs(5);

/// A native config for `role` at `address` with `objects` (YAML lines).
fn config_at(address: &str, role: &str, objects: &str) -> String {
    format!(
        "apiVersion: secretdrop.dev/v1alpha1\nkind: Config\nvault:\n  address: {address}\n\
         auth:\n  method: kubernetes\n  role: {role}\n{objects}"
    )
}

/// Username and password read as one version (`..data` the same before and after).
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

/// A sidecar of the test: how it reaches OpenBao, its pod, and the running process.
struct Watched {
    how: &'static str,
    pod: Pod,
    sidecar: Resident,
}

impl Watched {
    fn metric(&self, series: &str) -> f64 {
        self.sidecar.metric(series).unwrap_or(0.0)
    }
    fn failures(&self, cause: &str) -> Option<f64> {
        let series = format!("secretdrop_failures_total{{cause=\"{cause}\"}}");
        self.sidecar.metric(&series)
    }
}

#[test]
fn a_killed_active_node_costs_no_file_no_login_and_no_invalid_answer_whatever_the_address() {
    let started = Instant::now();
    // PostgreSQL starts while the cluster does (about 3 s each).
    let pg = std::thread::spawn(Postgres::shared);
    let mut cluster = RaftCluster::start(false);
    let pg = pg.join().expect("PostgreSQL started");
    let (leader, standby, paused) = (0, 1, 2);
    let setup_cluster = started.elapsed();

    let db = MintCounter::new(&cluster, pg, TTL, "1h");
    let kv = unique("ha");
    cluster.cli(&["kv", "put", &format!("secret/{kv}"), "password=before"]);
    let kv_policy = format!("path \"secret/data/{kv}\" {{ capabilities = [\"read\"] }}\n");
    let policy = format!("{}{kv_policy}", db.policy());
    let (m, r) = (&db.mount, &db.role);
    let objects = format!(
        "objects:\n  - {{objectName: username, secretPath: {m}/creds/{r}, secretKey: username}}\n  - {{objectName: password, secretPath: {m}/creds/{r}, secretKey: password}}\n  - {{objectName: app, secretPath: secret/data/{kv}, secretKey: password}}\n"
    );

    let ports = [leader, standby, paused].map(|i| cluster.port(i));
    let active_service = Service::start(&[cluster.port(leader)]);
    let all_service = Service::start(&ports);
    let ways = [
        ("active-node Service", active_service.addr()),
        ("all-nodes Service", all_service.addr()),
        ("a standby's address", cluster.addr_of(standby)),
    ];
    let mut watched = Vec::new();
    for (how, address) in ways {
        let pod = Pod::with_policy_ttl(&cluster, &policy, TTL);
        let config = config_at(&address, &pod.role, &objects);
        let flags = ["--poll-interval", "1s", "--log-level", "debug"];
        let sidecar = pod.sidecar(&config, &flags);
        watched.push(Watched { how, pod, sidecar });
    }
    let late = Pod::with_policy_ttl(&cluster, &kv_policy, TTL);
    let late_objects = format!(
        "objects:\n  - {{objectName: app, secretPath: secret/data/{kv}, secretKey: password}}\n"
    );
    let late_config = write(
        late.dir.path(),
        "init.yaml",
        &config_at(&cluster.addr_of(standby), &late.role, &late_objects),
    );

    let before: Vec<_> = watched.iter().map(|w| tree(&w.pod.out())).collect();
    let creds: Vec<_> = watched.iter().map(|w| read_pair(&w.pod.out())).collect();
    for (w, c) in watched.iter().zip(&creds) {
        let (u, p) = c.as_ref().expect("a username and password");
        assert!(pg.can_login(u, p), "{}: the credentials do not work", w.how);
        assert_eq!(w.metric("secretdrop_logins_total"), 1.0, "{}", w.how);
    }
    cluster.wait_voters();
    let ready = started.elapsed();

    // The failover: the active node dies, a standby stops answering, and the Services lose
    // both endpoints, as the endpoints controller would drop a deleted pod and an unready one.
    let kill = Instant::now();
    cluster.kill(leader);
    cluster.pause(paused);
    active_service.set_endpoints(&[]);
    all_service.set_endpoints(&[cluster.port(standby)]);
    // The standbys' redirects point here: whatever follows one is recorded.
    let recorder = Recorder::bind(cluster.port(leader));
    let init = std::thread::spawn(move || {
        let out = late.dir.join("out");
        let run = late.init_file(&late_config, &out, &["--timeout", "30s"]);
        (late, run)
    });

    while kill.elapsed() < HOLD {
        for (w, b) in watched.iter().zip(&before) {
            assert_eq!(&tree(&w.pod.out()), b, "{}: files changed", w.how);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cluster.resume(paused);
    all_service.set_endpoints(&[cluster.port(standby), cluster.port(paused)]);
    let new_active = cluster.wait_active(&[standby, paused], Duration::from_secs(20));
    let elected = kill.elapsed();
    // The new active node gets the label; the active-node Service follows.
    active_service.set_endpoints(&[cluster.port(new_active)]);
    for (w, b) in watched.iter().zip(&before) {
        assert_eq!(&tree(&w.pod.out()), b, "{}: files changed", w.how);
    }

    // Service resumes through the new active node: a change is read, and the token and the
    // lease are renewed when they are due.
    cluster.cli(&["kv", "put", &format!("secret/{kv}"), "password=after"]);
    let mut resumed = vec![None; watched.len()];
    let mut renewed = vec![None; watched.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && renewed.iter().any(Option::is_none) {
        for (i, w) in watched.iter().enumerate() {
            let out = w.pod.out();
            if resumed[i].is_none() && read(out.join("app")) == "after" {
                resumed[i] = Some(kill.elapsed());
            }
            let tokens = w.metric("secretdrop_token_renewals_total");
            let leases = w.metric("secretdrop_lease_renewals_total");
            if renewed[i].is_none() && tokens >= 1.0 && leases >= 1.0 {
                renewed[i] = Some(kill.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (late, run) = init.join().expect("the init thread");

    let mut report = Vec::new();
    for (i, (w, c)) in watched.iter().zip(&creds).enumerate() {
        let log = w.sidecar.log_text();
        let how = w.how;
        assert!(
            renewed[i].is_some(),
            "{how}: token and lease not both renewed after the failover:\n{log}"
        );
        assert!(
            resumed[i].is_some(),
            "{how}: the change was not read:\n{log}"
        );
        assert_eq!(
            w.metric("secretdrop_logins_total"),
            1.0,
            "{how}: logged in again:\n{log}"
        );
        assert_eq!(
            read_pair(&w.pod.out()).as_ref(),
            c.as_ref(),
            "{how}: new credentials"
        );
        let (u, p) = c.as_ref().expect("credentials");
        assert!(pg.can_login(u, p), "{how}: the credentials stopped working");
        let unavailable = w.failures("unavailable").unwrap_or(0.0);
        assert!(
            unavailable >= 1.0,
            "{how}: the election was not counted:\n{log}"
        );
        assert_eq!(
            w.failures("invalid_answer"),
            None,
            "{how}: an election counted as an invalid answer:\n{log}"
        );
        assert_eq!(w.sidecar.get("/readyz").0, 200, "{how}");
        assert!(
            !log.contains(&w.pod.token),
            "{how}: the JWT reached the log"
        );
        report.push(format!(
            "{how}: unavailable {unavailable}, files unchanged until elected, change read at \
             {:.1}s, renewed by {:.1}s, {} retries on a redirect, {} on `local node not \
             active`, {} on a closed connection",
            resumed[i].unwrap_or_default().as_secs_f64(),
            renewed[i].unwrap_or_default().as_secs_f64(),
            log.matches("another host or port: not followed").count(),
            log.matches("local node not active").count(),
            log.matches("connection closed").count()
                + log.matches("Connection reset").count()
                + log.matches("connection error").count(),
        ));
    }
    assert_eq!(
        db.minted(pg),
        watched.len(),
        "credentials minted again instead of renewed"
    );
    assert!(
        recorder.seen().is_empty(),
        "a redirect to the dead node was followed: {:?}",
        recorder.seen()
    );

    run.expect_code(0)
        .expect_stderr(&[&cluster.addr_of(leader), "not followed"])
        .expect_no_leak(&[&late.token]);
    // Its backoff (200 ms doubling) may have outlasted the change written after the election.
    let app = read(late.out().join("app"));
    assert!(["before", "after"].contains(&app.as_str()), "{app}");
    let leader_port = cluster.port(leader);
    let routed = all_service.routed();
    let to = |p: u16| routed.iter().filter(|r| **r == p).count();
    println!(
        "cluster {:.1}s, ready {:.1}s; new active node{new_active} {:.1}s after the kill; \
         init {:.1}s (exit {}); all-nodes Service connections: node{leader} {}, node{standby} {}, \
         node{paused} {}; active-node Service: {} closed for want of an endpoint\n{}\n\
         total {:.1}s",
        setup_cluster.as_secs_f64(),
        ready.as_secs_f64(),
        elected.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        run.code,
        to(leader_port),
        to(cluster.port(standby)),
        to(cluster.port(paused)),
        active_service.routed().iter().filter(|r| **r == 0).count(),
        report.join("\n"),
        started.elapsed().as_secs_f64(),
    );
}
