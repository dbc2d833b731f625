//! A private PostgreSQL cluster for OpenBao's database secrets engine, so the sidecar's lease
//! renewal of dynamic credentials is tested against real logins rather than a mock.
//!
//! What it provides, and why:
//! * [`Postgres::shared`] (one cluster per test process, like [`super::Bao::shared`]) and
//!   [`Postgres::start_new`] (a private one, stopped on drop). Parallel tests share the cluster
//!   safely because every database mount and role name is unique ([`unique_role`]).
//! * [`Postgres::can_login`]: the ground truth a test polls (every ~200 ms) to see whether a
//!   dynamic user still works; one `psql` over TCP with a password, 10–20 ms.
//! * [`enable_database_engine`] and [`read_creds`]: OpenBao's side of the setup.
//!
//! How the cluster runs:
//! * `initdb` into a fresh directory under [`harness_dir`]: scram-sha-256 for TCP (what the
//!   OpenBao plugin and [`Postgres::can_login`] use), trust on the Unix socket (what the
//!   superuser's [`Postgres::sql`] uses), superuser `postgres` with a random password.
//! * `postgres -D` itself is the spawned child (not `pg_ctl`, which would daemonize it), on
//!   127.0.0.1 and a free port, with durability off (fsync, full-page writes) for speed and
//!   `max_connections=200`, because every database mount keeps its own connection pool.
//! * PostgreSQL refuses to run as root: when the tests run as root (as CI does), `initdb` and
//!   `postgres` run as the `postgres` user, and the cluster directory belongs to it.
//! * It dies with the test process, but by SIGQUIT (immediate shutdown) rather than SIGKILL:
//!   a SIGKILLed postmaster leaks its SysV shared memory segment on every run.
//!
//! Dynamic user names. OpenBao's PostgreSQL plugin (2.x) names users with the default template
//! `{{ printf "v-%s-%s-%s-%s" (.DisplayName | truncate 8) (.RoleName | truncate 8)
//! (random 20) (unix_time) | truncate 63 }}`, e.g. `v-token-app-jNebkenOd4nfP5VYcSpV-1795788298`
//! when the dev server's root token (display name `token`) reads `MOUNT/creds/app`,
//! `v-root-app-…` with the root token of `operator init` ([`super::server::PersistentBao`]),
//! and `v-kubernet-app-…` after a kubernetes-auth login (display name
//! `kubernetes-NAMESPACE-SA`). The mount is not
//! part of the name, and both display name and role are cut to 8 characters, so
//! [`dynamic_user_prefix`] only tells roles apart whose names differ in their first 8
//! characters: hence [`unique_role`].
//!
//! Lease timing, as observed with OpenBao 2.7.2 (the sidecar tests depend on it):
//! * Creds are `renewable`, with `lease_duration` = the role's `default_ttl`; each renewal
//!   grants `default_ttl` again.
//! * OpenBao computes what is left before `max_ttl` in whole seconds (it truncates both the
//!   issue time and now), so near the end a renewal is capped at a whole number of seconds,
//!   with the warning `TTL of "5s" exceeded the effective max_ttl of "4s"; TTL value is
//!   capped accordingly`, and the final expiry lands up to a second either side of
//!   issue + `max_ttl`. Read `expire_time` from `bao lease lookup` for the exact instant.
//! * The user's `VALID UNTIL` is set (at creation and at every renewal) to the lease's expiry
//!   plus a 5 s buffer, cut to whole seconds (so 4–5 s after `expire_time`). So the user stops working when OpenBao revokes the lease and drops
//!   it, 0.1–0.2 s after `expire_time`; were OpenBao unable to revoke then (sealed, stopped),
//!   it would keep working until `VALID UNTIL`. Renewing after expiry fails with 400
//!   `lease not found`.

use super::{
    free_port, harness_dir, once_or_fail, spawn_tied_to_process_with, unique, Server, COUNTER,
};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Name of the database connection every [`enable_database_engine`] mount configures.
pub const DB_NAME: &str = "pg";

/// A running PostgreSQL cluster, reachable over TCP on 127.0.0.1 and over its Unix socket.
pub struct Postgres {
    ep: Endpoint,
    password: String,
    child: Child,
    log: PathBuf,
}

/// Where a cluster is reached: its port, and its directory, which holds `data/` (the cluster,
/// and the Unix socket), the logs, and the path of a pgpass file that never exists.
struct Endpoint {
    port: u16,
    dir: PathBuf,
}

impl Postgres {
    /// The process-wide cluster, started on first use. Never dropped: it gets SIGQUIT when the
    /// process dies (the spawn happens on the harness-spawner thread, which never exits, so
    /// the end of the test that happened to start it does not stop it).
    pub fn shared() -> &'static Postgres {
        static PG: OnceLock<Result<Postgres, String>> = OnceLock::new();
        once_or_fail(&PG, Postgres::start_new)
    }

    /// A private cluster (~1 s: initdb ~0.8 s, startup ~0.2 s), stopped and deleted on drop.
    pub fn start_new() -> Postgres {
        let bin = pg_bin_dir();
        let owner = postgres_owner();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = harness_dir().join(format!("pg-{n}"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        chown(&dir, owner);
        let password = random_hex(12);
        // --pwfile is read by initdb running as `postgres`, so it must own the file; it is
        // deleted as soon as initdb is done.
        let pwfile = dir.join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n")).expect("write pwfile");
        chown(&pwfile, owner);
        let initdb_log = dir.join("initdb.log");
        let log_file = std::fs::File::create(&initdb_log).expect("create initdb.log");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file);
        as_owner(&mut initdb, &dir, owner);
        let status = initdb.status().unwrap_or_else(|e| {
            panic!(
                "cannot run {}/initdb: {e} (apt-get install postgresql)",
                bin.display()
            )
        });
        let _ = std::fs::remove_file(&pwfile);
        if !status.success() {
            let out = std::fs::read_to_string(&initdb_log).unwrap_or_default();
            panic!("initdb failed ({status}):\n{out}");
        }
        let log = dir.join("postgres.log");
        let mut failures = Vec::new();
        // A free port can be taken again before postgres binds it; then it exits at once and
        // another port is tried with the same (already initialized) cluster.
        for _ in 0..3 {
            let port = free_port();
            let ep = Endpoint {
                port,
                dir: dir.clone(),
            };
            match launch(bin, &ep, owner, &log, &password) {
                Ok(child) => {
                    return Postgres {
                        ep,
                        password,
                        child,
                        log,
                    }
                }
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "PostgreSQL never accepted connections:\n{}\n(log: {})",
            failures.join("\n"),
            log.display()
        );
    }

    pub fn port(&self) -> u16 {
        self.ep.port
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Password of the superuser `postgres` (TCP logins need it; the socket does not).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }
    /// The server log, for debugging a failing test.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    /// The directory holding the Unix socket (`.s.PGSQL.PORT`): the data directory.
    pub fn socket_dir(&self) -> PathBuf {
        self.ep.dir.join("data")
    }

    /// `postgresql://{{username}}:{{password}}@127.0.0.1:PORT/postgres?sslmode=disable`, with
    /// the literal double braces OpenBao's database plugin fills in.
    pub fn connection_url_template(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.ep.port
        )
    }

    /// True if `user` can log in with `password` over TCP and run `select 1`: what an app
    /// holding the rendered credentials would do. One psql run, 10–20 ms.
    pub fn can_login(&self, user: &str, password: &str) -> bool {
        self.try_login(user, password).is_ok()
    }

    /// Like [`Postgres::can_login`], but returns psql's error (e.g. `password authentication
    /// failed for user ...`), for a test that must tell "dropped" from "expired".
    pub fn try_login(&self, user: &str, password: &str) -> Result<(), String> {
        self.ep.try_login(user, password)
    }

    /// Runs `query` as the superuser over the Unix socket; returns psql's unaligned, tuples-only
    /// stdout (`-At`: one row a line, columns split by `|`). Panics with stderr on failure.
    pub fn sql(&self, query: &str) -> String {
        self.try_sql(query).unwrap_or_else(|err| {
            let log = self.log.display();
            panic!("psql -c {query:?} failed:\n{err}\n(server log: {log})")
        })
    }

    /// [`Postgres::sql`] that returns psql's stderr instead of panicking.
    pub fn try_sql(&self, query: &str) -> Result<String, String> {
        let mut cmd = self.ep.psql();
        cmd.arg("-h")
            .arg(self.socket_dir())
            .args(["-U", "postgres", "-c", query]);
        let out = cmd.output().expect("run psql");
        match out.status.success() {
            true => Ok(String::from_utf8(out.stdout).expect("psql stdout is not UTF-8")),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// Names of the roles in pg_roles starting with `prefix`, sorted.
    pub fn role_names(&self, prefix: &str) -> Vec<String> {
        let q = format!(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, {}) ORDER BY 1",
            quote_literal(prefix)
        );
        self.sql(&q).lines().map(String::from).collect()
    }

    /// How many roles start with `prefix`, e.g. `dynamic_user_prefix("token", role)`: the
    /// users OpenBao created (and has not yet dropped) for that role.
    pub fn count_roles(&self, prefix: &str) -> usize {
        self.role_names(prefix).len()
    }
}

impl Endpoint {
    /// `Ok` if `user` can log in with `password` over TCP and run `select 1`, else psql's
    /// error message.
    fn try_login(&self, user: &str, password: &str) -> Result<(), String> {
        let out = self.psql_tcp(user, password, "select 1");
        match out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1" {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        }
    }

    /// psql as `user` over TCP. connect_timeout bounds a hung server; the password comes from
    /// the environment so that no quoting of a conninfo string is needed.
    fn psql_tcp(&self, user: &str, password: &str, query: &str) -> Output {
        let mut cmd = self.psql();
        cmd.envs([("PGHOST", "127.0.0.1"), ("PGCONNECT_TIMEOUT", "3")])
            .envs([("PGUSER", user), ("PGPASSWORD", password)])
            .args(["-c", query]);
        cmd.output().expect("run psql")
    }

    /// psql from the cluster's own bin dir (/usr/bin/psql is Debian's Perl wrapper, ~40 ms a
    /// call), with no inherited PG* settings, no ~/.psqlrc (-X), never prompting (-w).
    fn psql(&self) -> Command {
        let mut cmd = Command::new(pg_bin_dir().join("psql"));
        scrub_pg_env(&mut cmd);
        cmd.env("PGPORT", self.port.to_string())
            .env("PGDATABASE", "postgres")
            .env("PGSSLMODE", "disable")
            // An empty password would make libpq fall back to ~/.pgpass.
            .env("PGPASSFILE", self.dir.join("no-pgpass"))
            .args(["-X", "-w", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .stdin(Stdio::null());
        cmd
    }
}

impl Drop for Postgres {
    /// Immediate shutdown, so the shared memory is released; SIGKILL if that hangs. The
    /// cluster (~40 MB) is deleted, the logs are kept for inspection.
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGQUIT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.ep.dir.join("data"));
    }
}

/// Starts the postmaster on `ep.port` and waits until the superuser can log in over TCP.
fn launch(
    bin: &Path,
    ep: &Endpoint,
    owner: Option<(u32, u32)>,
    log: &Path,
    password: &str,
) -> Result<Child, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log);
    let file = file.map_err(|e| format!("open {}: {e}", log.display()))?;
    let data = ep.dir.join("data");
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&data)
        .args(["-p", &ep.port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=200",
        ])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off"])
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file);
    as_owner(&mut cmd, &ep.dir, owner);
    scrub_pg_env(&mut cmd);
    let mut child = spawn_tied_to_process_with(cmd, libc::SIGQUIT)
        .map_err(|e| format!("cannot start {}/postgres: {e}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("exited early with {status}"));
        }
        // Until then psql reports "the database system is starting up" or a refused connection.
        if ep.try_login("postgres", password).is_ok() {
            return Ok(child);
        }
        if Instant::now() > deadline {
            break Err("not accepting connections after 30s".to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The PostgreSQL server binaries: `$PG_BIN_DIR`, else the newest /usr/lib/postgresql/N/bin
/// (Debian's layout; initdb and postgres are not on PATH there), else `pg_config --bindir`.
pub fn pg_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
            return dir.into();
        }
        let versions = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten();
        let newest = versions
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path())))
            .filter(|(_, p)| p.join("bin/postgres").is_file())
            .max_by_key(|(v, _)| *v);
        if let Some((_, p)) = newest {
            return p.join("bin");
        }
        let out = Command::new("pg_config").arg("--bindir").output();
        let out = out.ok().filter(|o| o.status.success()).unwrap_or_else(|| {
            panic!("no PostgreSQL server found: apt-get install postgresql, or set PG_BIN_DIR")
        });
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// uid/gid of the `postgres` user when running as root (PostgreSQL refuses root), else None:
/// an unprivileged developer's own user may run the cluster as is.
fn postgres_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam_r writes only into `pwd` and `buf`, both ours and large enough (it
    // reports ERANGE otherwise); `found` points into `pwd` or is null.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        assert!(
            rc == 0 && !found.is_null(),
            "running as root, but there is no `postgres` user for PostgreSQL to run as \
             (apt-get install postgresql creates it)"
        );
        Some((pwd.pw_uid, pwd.pw_gid))
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Runs `cmd` as the cluster's owner, from a directory that user can enter (initdb and
/// postgres check the current directory).
fn as_owner(cmd: &mut Command, dir: &Path, owner: Option<(u32, u32)>) {
    cmd.current_dir(dir);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid)
            .gid(gid)
            .env("HOME", dir)
            .env("USER", "postgres");
    }
}

/// Keeps the developer's PG* settings (host, service file, password) out of every run.
fn scrub_pg_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
}

/// `s` as an SQL string literal (standard_conforming_strings is on: only `'` needs doubling).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).expect("system RNG");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A database role name, unique in this process, of at most 8 characters (`PREFIX` cut to 3,
/// then a base-36 counter), so the whole name survives into the dynamic user names and
/// [`dynamic_user_prefix`] matches only this role's users on the shared cluster.
pub fn unique_role(prefix: &str) -> String {
    let mut n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).expect("base 36"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    let p: String = prefix.chars().take(3).collect();
    p + &digits.iter().rev().collect::<String>()
}

/// `v-DISPLAY-ROLE-`, each part cut to 8 characters: how the names of the users OpenBao
/// creates for `role` begin, when read with a token whose display name is `display_name`
/// (`token` for the dev server's root token, `root` for a [`super::server::PersistentBao`]'s,
/// `kubernetes-NS-SA` after a login at `auth/kubernetes`).
pub fn dynamic_user_prefix(display_name: &str, role: &str) -> String {
    let cut = |s: &str| s.chars().take(8).collect::<String>();
    format!("v-{}-{}-", cut(display_name), cut(role))
}

/// Mounts the database secrets engine at `mount` (idempotent), points its connection
/// [`DB_NAME`] at `pg` as the superuser (OpenBao connects once to verify it), and creates
/// `role`: a LOGIN user `VALID UNTIL` its lease expires (+5 s, OpenBao's buffer), allowed to
/// read the public schema. OpenBao's default renewal statement moves `VALID UNTIL` on every
/// renewal, and its default revocation drops the user.
pub fn enable_database_engine(
    bao: &impl Server,
    mount: &str,
    pg: &Postgres,
    role: &str,
    default_ttl: &str,
    max_ttl: &str,
) {
    let out = bao.try_cli(&["secrets", "enable", &format!("-path={mount}"), "database"]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !err.contains("path is already in use") {
        panic!("`bao secrets enable -path={mount} database` failed: {err}");
    }
    bao.cli(&[
        "write",
        &format!("{mount}/config/{DB_NAME}"),
        "plugin_name=postgresql-database-plugin",
        &format!("connection_url={}", pg.connection_url_template()),
        "username=postgres",
        &format!("password={}", pg.superuser_password()),
        "allowed_roles=*",
    ]);
    bao.cli(&[
        "write",
        &format!("{mount}/roles/{role}"),
        &format!("db_name={DB_NAME}"),
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' \
         VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO \
         \"{{name}}\";",
        &format!("default_ttl={default_ttl}"),
        &format!("max_ttl={max_ttl}"),
    ]);
}

/// A database role whose creation statement also records each minted user in a table, so the
/// count of minted credentials comes from PostgreSQL, not from secretdrop.
pub struct MintCounter {
    pub mount: String,
    pub role: String,
    pub table: String,
}

impl MintCounter {
    pub fn new(bao: &impl Server, pg: &Postgres, default_ttl: &str, max_ttl: &str) -> MintCounter {
        let mount = unique("db");
        enable_database_engine(bao, &mount, pg, &unique_role("sd"), "1m", "1h");
        let table = format!("minted_{}", unique_role("t"));
        pg.sql(&format!(
            "CREATE TABLE {table} (name text, at timestamptz DEFAULT now())"
        ));
        let role = unique_role("st");
        let creation = format!(
            "CREATE ROLE \"{{{{name}}}}\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'; INSERT INTO public.{table} (name) VALUES ('{{{{name}}}}');"
        );
        bao.cli(&[
            "write",
            &format!("{mount}/roles/{role}"),
            "db_name=pg",
            &format!("creation_statements={creation}"),
            &format!("default_ttl={default_ttl}"),
            &format!("max_ttl={max_ttl}"),
        ]);
        MintCounter { mount, role, table }
    }

    /// A policy that may read this role's credentials.
    pub fn policy(&self) -> String {
        format!(
            "path \"{}/creds/{}\" {{ capabilities = [\"read\"] }}\n",
            self.mount, self.role
        )
    }

    /// A native config's `files` and `objects` for a username/password pair of this role.
    pub fn objects(&self) -> String {
        format!(
            "files:\n  mode: \"0600\"\nobjects:\n  - {{objectName: username, secretPath: {m}/creds/{r}, secretKey: username}}\n  - {{objectName: password, secretPath: {m}/creds/{r}, secretKey: password}}\n",
            m = self.mount,
            r = self.role
        )
    }

    /// How many users this role has minted, as PostgreSQL recorded them.
    pub fn minted(&self, pg: &Postgres) -> usize {
        pg.sql(&format!("SELECT count(*) FROM {}", self.table))
            .trim()
            .parse()
            .expect("a count")
    }
}

/// One read of `MOUNT/creds/ROLE`.
#[derive(Clone, Debug)]
pub struct DbCreds {
    pub lease_id: String,
    /// Seconds, as granted.
    pub lease_duration: u64,
    pub renewable: bool,
    pub username: String,
    pub password: String,
}

impl DbCreds {
    /// From the JSON of `bao read -format=json MOUNT/creds/ROLE` (or the API's response).
    pub fn from_json(v: &Value) -> DbCreds {
        let s = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("not creds: {v}"))
                .to_string()
        };
        DbCreds {
            lease_id: s(&v["lease_id"]),
            lease_duration: v["lease_duration"].as_u64().expect("lease_duration"),
            renewable: v["renewable"].as_bool().expect("renewable"),
            username: s(&v["data"]["username"]),
            password: s(&v["data"]["password"]),
        }
    }
}

/// Reads fresh credentials for `role` as root (`bao.cli_as` + [`DbCreds::from_json`] for
/// another token).
pub fn read_creds(bao: &impl Server, mount: &str, role: &str) -> DbCreds {
    let out = bao.cli(&["read", "-format=json", &format!("{mount}/creds/{role}")]);
    DbCreds::from_json(&serde_json::from_str(&out).expect("creds JSON"))
}
