//! Proves tests/common/postgres.rs and tests/common/server.rs work: a real PostgreSQL cluster
//! behind OpenBao's database engine (dynamic users that log in, renew, and are revoked at
//! max_ttl), a raft-backed OpenBao that survives restart and seal (and, once back, revokes a
//! lease that expired while it was down), and rate-limit quotas that answer 429 with
//! Retry-After. Run with `--nocapture` to see the measured timings.
mod common;

use common::postgres::*;
use common::server::*;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// Renews `lease_id` as root: (granted seconds, warnings).
fn renew(bao: &impl Server, lease_id: &str) -> (u64, Vec<String>) {
    let out = bao.cli(&["lease", "renew", "-format=json", lease_id]);
    let v: Value = serde_json::from_str(&out).expect("renew JSON");
    let warnings = v["warnings"].as_array().into_iter().flatten();
    let warnings = warnings
        .filter_map(|w| w.as_str().map(String::from))
        .collect();
    (
        v["lease_duration"].as_u64().expect("lease_duration"),
        warnings,
    )
}

/// `VALID UNTIL` of a role.
fn valid_until(pg: &Postgres, user: &str) -> SystemTime {
    let q = format!(
        "SELECT extract(epoch FROM rolvaliduntil) FROM pg_roles WHERE rolname = {}",
        quote_literal(user)
    );
    let secs: f64 = pg.sql(&q).trim().parse().expect("epoch seconds");
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// Logs a pod in through kubernetes auth; returns the client token.
fn login(bao: &impl Server, pod: &scenario::Pod) -> String {
    let out = bao.cli(&[
        "write",
        "-format=json",
        &format!("auth/{}/login", scenario::AUTH_MOUNT),
        &format!("role={}", pod.role),
        &format!("jwt={}", pod.token),
    ]);
    let v: Value = serde_json::from_str(&out).expect("login JSON");
    v["auth"]["client_token"]
        .as_str()
        .expect("client_token")
        .into()
}

#[test]
fn shared_postgres_logs_in_runs_sql_and_counts_roles() {
    let t = Instant::now();
    let pg = Postgres::shared();
    eprintln!("Postgres::shared() ready after {:?}", t.elapsed());
    assert!(
        std::ptr::eq(pg, Postgres::shared()),
        "one cluster per process"
    );
    assert!(pg.can_login("postgres", pg.superuser_password()));
    assert!(!pg.can_login("postgres", "wrong"));
    let err = pg.try_login("nobody", "x").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    // can_login is polled every ~200 ms by the sidecar tests: it must be much faster.
    let t = Instant::now();
    for _ in 0..10 {
        assert!(pg.can_login("postgres", pg.superuser_password()));
    }
    let each = t.elapsed() / 10;
    eprintln!("can_login takes {each:?}");
    assert!(
        each < Duration::from_millis(150),
        "can_login too slow: {each:?}"
    );

    let url = pg.connection_url_template();
    let want = format!(
        "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
        pg.port()
    );
    assert_eq!(url, want);
    assert!(url.starts_with("postgresql://{{username}}:{{password}}@127.0.0.1:"));

    assert_eq!(pg.sql("SELECT 1 + 1").trim(), "2");
    let prefix = format!("{}-", unique("sqltest"));
    for i in 0..3 {
        pg.sql(&format!(
            "CREATE ROLE \"{prefix}{i}\" WITH LOGIN PASSWORD 'pw{i}'"
        ));
    }
    assert_eq!(pg.count_roles(&prefix), 3);
    assert_eq!(pg.role_names(&prefix)[0], format!("{prefix}0"));
    assert!(pg.can_login(&format!("{prefix}1"), "pw1"));
    // A quote in the prefix must not break (or inject into) the query.
    assert_eq!(pg.count_roles("x' OR 'a'='a"), 0);
    let err = pg.try_sql("SELECT no_such_column").unwrap_err();
    assert!(
        err.contains("column \"no_such_column\" does not exist"),
        "{err}"
    );
}

#[test]
fn private_postgres_stops_and_cleans_up_on_drop() {
    let t = Instant::now();
    let pg = Postgres::start_new();
    eprintln!("Postgres::start_new() ready after {:?}", t.elapsed());
    assert_ne!(pg.port(), Postgres::shared().port());
    assert!(pg.can_login("postgres", pg.superuser_password()));
    let (pid, port, data) = (pg.pid() as i32, pg.port(), pg.socket_dir());
    assert!(
        data.join(format!(".s.PGSQL.{port}")).exists(),
        "socket in data dir"
    );
    let t = Instant::now();
    drop(pg);
    eprintln!("Postgres drop (SIGQUIT) took {:?}", t.elapsed());
    // Reaped, so the pid is gone; nothing listens; the cluster files are deleted.
    assert_ne!(unsafe { libc::kill(pid, 0) }, 0);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!data.exists());
}

#[test]
fn dynamic_creds_log_in_renew_and_are_revoked_at_max_ttl() {
    let (bao, pg) = (Bao::shared(), Postgres::shared());
    let (mount, role) = (unique("db"), unique_role("app"));
    enable_database_engine(bao, &mount, pg, &role, "5s", "10s");
    // Idempotent: a second call (e.g. from another test's setup) is harmless.
    enable_database_engine(bao, &mount, pg, &role, "5s", "10s");
    let prefix = dynamic_user_prefix("token", &role);

    let c = read_creds(bao, &mount, &role);
    // The lease was issued before this instant: deadlines below are safe from load delays.
    let issued = Instant::now();
    eprintln!("root token's dynamic user: {}", c.username);
    assert!(
        c.username.starts_with(&prefix),
        "{} !~ {prefix}",
        c.username
    );
    assert!(c.username.len() <= 63);
    assert!(c.renewable);
    assert_eq!(c.lease_duration, 5);
    assert!(c.lease_id.starts_with(&format!("{mount}/creds/{role}/")));
    assert!(pg.can_login(&c.username, &c.password));
    assert!(!pg.can_login(&c.username, "not-the-password"));
    assert_eq!(pg.count_roles(&prefix), 1);
    let until0 = valid_until(pg, &c.username);

    // Renewal well before max_ttl: a full default_ttl, and VALID UNTIL moves with it.
    sleep_until(issued + Duration::from_secs(2));
    let (ttl, warnings) = renew(bao, &c.lease_id);
    assert_eq!((ttl, warnings.len()), (5, 0), "{warnings:?}");
    let until1 = valid_until(pg, &c.username);
    assert!(until1 > until0, "VALID UNTIL {until0:?} -> {until1:?}");

    // Past the first expiry, the renewed user still works.
    sleep_until(issued + Duration::from_millis(5300));
    assert!(
        pg.can_login(&c.username, &c.password),
        "renewal did not stick"
    );

    // Near max_ttl a renewal is granted, but capped at what is left, with a warning.
    // OpenBao counts in whole seconds (issue time and now are truncated), so 6.3 s in is
    // surely capped (to 3 or 4 s), while 5.3 s in could still get the full 5 s.
    sleep_until(issued + Duration::from_millis(6300));
    let (ttl, warnings) = renew(bao, &c.lease_id);
    eprintln!("renewal 6.3 s into a 5s/10s lease: {ttl}s, {warnings:?}");
    assert!((1..5).contains(&ttl), "capped ttl {ttl}");
    assert!(
        warnings.iter().any(|w| w.contains("max_ttl")),
        "{warnings:?}"
    );
    // VALID UNTIL follows the capped expiry, plus OpenBao's 5 s buffer, in whole seconds.
    let expire = lease_expire_time(bao, &c.lease_id);
    let buffer = valid_until(pg, &c.username)
        .duration_since(expire)
        .unwrap_or_default();
    eprintln!("VALID UNTIL - lease expire_time = {buffer:?}");
    // Whole seconds (truncated), so 4-5 s; a little less if a second ticked during the call.
    let (lo, hi) = (Duration::from_millis(3500), Duration::from_millis(5500));
    assert!(buffer > lo && buffer < hi, "{buffer:?}");

    // At expiry OpenBao revokes the lease: the user can no longer log in, and is dropped.
    let limit = Duration::from_secs(20);
    let lost = poll(limit, || !pg.can_login(&c.username, &c.password));
    let lost = lost.expect("user still logs in long after max_ttl");
    let dropped = poll(limit, || pg.count_roles(&prefix) == 0).expect("never dropped");
    eprintln!(
        "relative to the lease's expire_time: login refused {}, role dropped {}",
        offset(lost, expire),
        offset(dropped, expire)
    );
    // Revocation, not VALID UNTIL, ends the user: never before expire_time.
    let early = |t: SystemTime| expire.duration_since(t).unwrap_or_default();
    assert!(
        early(lost) < Duration::from_millis(100),
        "refused before expiry"
    );
    assert!(
        early(dropped) < Duration::from_millis(100),
        "dropped before expiry"
    );
    let err = pg.try_login(&c.username, &c.password).unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    // And the lease is gone.
    let out = bao.try_cli(&["lease", "renew", &c.lease_id]);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("renewal after max_ttl: {}", err.trim().replace('\n', " "));
    assert!(!out.status.success());
    assert!(err.contains("lease not found"), "{err}");
}

/// `expire_time` of a lease, from `bao lease lookup`.
fn lease_expire_time(bao: &impl Server, lease_id: &str) -> SystemTime {
    let out = bao.cli(&["lease", "lookup", "-format=json", lease_id]);
    let v: Value = serde_json::from_str(&out).expect("lookup JSON");
    let expire = v["data"]["expire_time"].as_str().expect("expire_time");
    eprintln!("lease expire_time: {expire}");
    parse_utc(expire)
}

/// `2026-11-27T14:12:28.61539242Z` (what OpenBao prints) as a SystemTime.
fn parse_utc(s: &str) -> SystemTime {
    fn bad<T>(s: &str) -> T {
        panic!("not an RFC 3339 UTC time: {s}")
    }
    let date_time = s.strip_suffix('Z').and_then(|r| r.split_once('T'));
    let (date, time) = date_time.unwrap_or_else(|| bad(s));
    let num = |p: &str| p.parse::<i64>().unwrap_or_else(|_| bad(s));
    let d: Vec<i64> = date.split('-').map(num).collect();
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(num).collect();
    // Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1])
    } else {
        (d[0], d[1])
    };
    let (era, mp) = (y.div_euclid(400), (m + 9) % 12);
    let yoe = y - era * 400;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + (153 * mp + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos: u32 = format!("{frac:0<9}")[..9]
        .parse()
        .unwrap_or_else(|_| bad(s));
    UNIX_EPOCH + Duration::new(secs as u64, nanos)
}

/// Polls `cond` every 50 ms until true; returns when it became true, or None after `limit`.
fn poll(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<SystemTime> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return Some(SystemTime::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// `t - reference` as "+1.2s" / "-300ms".
fn offset(t: SystemTime, reference: SystemTime) -> String {
    match t.duration_since(reference) {
        Ok(d) => format!("+{d:?}"),
        Err(e) => format!("-{:?}", e.duration()),
    }
}

#[test]
fn dynamic_username_after_kubernetes_login() {
    let (bao, pg) = (Bao::shared(), Postgres::shared());
    let (mount, role) = (unique("db"), unique_role("k8s"));
    enable_database_engine(bao, &mount, pg, &role, "1m", "5m");
    let policy = format!("path \"{mount}/creds/{role}\" {{ capabilities = [\"read\"] }}\n");
    let pod = scenario::Pod::with_policy(bao, &policy);
    let token = login(bao, &pod);
    let out = bao.cli_as(
        &token,
        &["read", "-format=json", &format!("{mount}/creds/{role}")],
    );
    let c = DbCreds::from_json(&serde_json::from_str(&out).unwrap());
    eprintln!("kubernetes login's dynamic user: {}", c.username);
    // Display name "kubernetes-default-SA", cut to 8; then the role; 20 random; unix time.
    let prefix = dynamic_user_prefix("kubernetes-default", &role);
    assert!(c.username.starts_with("v-kubernet-"), "{}", c.username);
    assert!(c.username.starts_with(&prefix), "{}", c.username);
    let rest: Vec<&str> = c.username[prefix.len()..].split('-').collect();
    assert_eq!(rest.len(), 2, "{}", c.username);
    assert_eq!(rest[0].len(), 20, "{}", c.username);
    assert!(rest[1].parse::<u64>().is_ok(), "{}", c.username);
    assert!(pg.can_login(&c.username, &c.password));
    // The default policy lets the holder renew its own lease.
    let out = bao.cli_as(&token, &["lease", "renew", "-format=json", &c.lease_id]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["lease_duration"], 60);
}

#[test]
fn persistent_bao_survives_restart_and_seal() {
    let t = Instant::now();
    let mut bao = PersistentBao::start();
    eprintln!("PersistentBao::start() ready after {:?}", t.elapsed());
    assert_eq!(bao.health(), Some(200));
    assert!(bao.root_token().starts_with("s."), "{}", bao.root_token());
    assert_eq!(bao.addr(), format!("http://127.0.0.1:{}", bao.port()));
    assert!(bao.dir().join("data").is_dir());
    bao.cli(&["kv", "put", "secret/app", "password=p4ssw0rd"]);

    // Generic helpers take it like the dev server: a pod, its login, a database lease.
    let pod = scenario::Pod::with_policy(
        &bao,
        "path \"secret/data/app\" { capabilities = [\"read\"] }\n",
    );
    let token = login(&bao, &pod);
    let pg = Postgres::shared();
    let role = unique_role("per");
    enable_database_engine(&bao, "database", pg, &role, "1m", "10m");
    let creds = read_creds(&bao, "database", &role);
    let pid = bao.pid().expect("running");

    let t = Instant::now();
    bao.restart();
    eprintln!(
        "PersistentBao::restart() (stop+start+unseal) took {:?}",
        t.elapsed()
    );
    assert_ne!(bao.pid(), Some(pid));
    assert_eq!(bao.health(), Some(200));
    // Data, tokens and leases survived.
    let get = ["kv", "get", "-field=password", "secret/app"];
    assert_eq!(bao.cli_as(&token, &get).trim(), "p4ssw0rd");
    assert_eq!(renew(&bao, &creds.lease_id).0, 60);
    assert!(pg.can_login(&creds.username, &creds.password));

    let t = Instant::now();
    bao.seal();
    eprintln!("seal took {:?}", t.elapsed());
    assert_eq!(bao.health(), Some(503));
    let out = bao.try_cli_as(&token, &get);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("503") && err.contains("sealed"), "{err}");
    let t = Instant::now();
    bao.unseal();
    eprintln!("unseal (to active) took {:?}", t.elapsed());
    assert_eq!(bao.cli_as(&token, &get).trim(), "p4ssw0rd");

    let t = Instant::now();
    bao.stop();
    eprintln!("stop (SIGTERM) took {:?}", t.elapsed());
    assert_eq!((bao.pid(), bao.health()), (None, None));
    bao.stop(); // idempotent
    bao.restart();
    assert_eq!(bao.cli(&get).trim(), "p4ssw0rd");
}

#[test]
fn rate_limit_quota_answers_429_with_retry_after() {
    let bao = Bao::shared();
    // A path of our own: a quota on all of secret/ would throttle the parallel tests.
    let base = format!("secret/data/{}", unique("limited"));
    let name = unique("quota");
    // Without the `*` only `base` itself would be limited, not `base/x`.
    add_rate_limit_quota(bao, &name, 2.0, &format!("{base}/*"));
    let config = bao.cli(&["read", "-format=json", "sys/quotas/config"]);
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["data"]["enable_rate_limit_response_headers"], true);
    let exempt = config["data"]["rate_limit_exempt_paths"].to_string();
    assert!(exempt.contains("sys/health"), "exemptions lost: {exempt}");

    let auth = [("X-Vault-Token", bao.root_token())];
    let get = || http_full("GET", bao.port(), &format!("/v1/{base}/x"), &auth, "").unwrap();
    let burst: Vec<HttpResponse> = (0..8).map(|_| get()).collect();
    let statuses: Vec<u16> = burst.iter().map(|r| r.status).collect();
    assert_ne!(statuses[0], 429, "{statuses:?}");
    let limited: Vec<&HttpResponse> = burst.iter().filter(|r| r.status == 429).collect();
    assert!(limited.len() >= 4, "{statuses:?}");
    let first = limited[0];
    eprintln!(
        "429 headers: {:?}\n429 body: {}",
        first.headers,
        first.body.trim()
    );
    assert!(first.header("retry-after").is_some(), "{:?}", first.headers);
    assert_eq!(first.header("X-Ratelimit-Limit"), Some("2"));
    assert!(
        first.body.contains("rate limit quota exceeded"),
        "{}",
        first.body
    );

    // A quota on an exact path limits that path only.
    let exact = format!("secret/data/{}", unique("exact"));
    let name2 = unique("quota");
    add_rate_limit_quota(bao, &name2, 1.0, &exact);
    let at = |p: &str| http_full("GET", bao.port(), &format!("/v1/{p}"), &auth, "").unwrap();
    let below: Vec<u16> = (0..4).map(|_| at(&format!("{exact}/x")).status).collect();
    assert!(!below.contains(&429), "{below:?}");
    let on: Vec<u16> = (0..4).map(|_| at(&exact).status).collect();
    assert!(on.contains(&429), "{on:?}");

    // With block_interval, Retry-After counts down the block.
    let blocked = format!("secret/data/{}", unique("blocked"));
    let name3 = unique("quota");
    add_rate_limit_quota_with(bao, &name3, 1.0, &blocked, &["block_interval=3s"]);
    let burst: Vec<HttpResponse> = (0..4).map(|_| at(&blocked)).collect();
    let r = burst.iter().find(|r| r.status == 429).expect("no 429");
    eprintln!("429 headers with block_interval=3s: {:?}", r.headers);
    let retry: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "Retry-After {retry}");

    for q in [&name, &name2, &name3] {
        remove_rate_limit_quota(bao, q);
    }
    let after: Vec<u16> = (0..5).map(|_| get().status).collect();
    assert!(!after.contains(&429), "{after:?}");
}

#[test]
fn lease_expiring_while_openbao_is_down_is_revoked_after_restart() {
    let pg = Postgres::shared();
    let mut bao = PersistentBao::start();
    let role = unique_role("dwn");
    enable_database_engine(&bao, "database", pg, &role, "3s", "1m");
    let c = read_creds(&bao, "database", &role);
    let expire = lease_expire_time(&bao, &c.lease_id);
    bao.stop();
    // `operator init`'s root token is named "root" (the dev server's is "token").
    let prefix = dynamic_user_prefix("root", &role);
    assert!(c.username.starts_with(&prefix), "{}", c.username);

    // Nobody revokes: the user works until VALID UNTIL (expiry + ~5 s), then Postgres refuses.
    let lost = poll(Duration::from_secs(20), || {
        !pg.can_login(&c.username, &c.password)
    });
    let lost = lost.expect("user still logs in long after VALID UNTIL");
    eprintln!(
        "OpenBao down: login refused {} after expire_time",
        offset(lost, expire)
    );
    assert!(lost.duration_since(expire).unwrap_or_default() > Duration::from_secs(3));
    let left = pg.role_names(&prefix);
    assert_eq!(left, std::slice::from_ref(&c.username), "nobody dropped it");

    // Back up: the expired lease is revoked as leases are restored after the unseal.
    bao.restart();
    let back = SystemTime::now();
    let dropped = poll(Duration::from_secs(20), || pg.count_roles(&prefix) == 0);
    let dropped = dropped.expect("expired lease never revoked after restart");
    eprintln!(
        "after restart+unseal: role dropped {}",
        offset(dropped, back)
    );
}
