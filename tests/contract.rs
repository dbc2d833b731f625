//! The provider contract (issue 18 §5): every scenario is written once, as a function generic
//! over [`Store`] (tests/common/contract.rs), and `contract!` at the end runs each one for
//! every provider: `vault::rotation_by_the_sidecar`, `aws::rotation_by_the_sidecar`, ... A
//! provider is done when all of them pass (docs/architecture.md, "Adding a provider").
//!
//! What each checks, against the store's own counts (Vault's audit log, requests arriving at
//! moto) and the files on tmpfs: the render and its `..data` layout (docs/output-layout.md);
//! rotation by the sidecar, and an unchanged store leaving `..data` alone; `--state-dir`
//! adoption by the sidecar after init and by a restarted sidecar, with no new authentication
//! (docs/state.md); live reload of an added, a removed and a changed object and of a changed
//! provider parameter (docs/pod.md); two volumes of one provider, and volumes of two
//! providers, in one process; bad input (exit 2 naming the field, nothing written); a store
//! that stops answering for an object (nothing written, the last render kept); and no secret
//! value or token in any output, at every log level.

mod common;

use std::path::Path;

use common::cli::{assert_layout, current_version, mode_of, tree, Run};
use common::contract::aws::AwsStore;
use common::contract::azure::AzureStore;
use common::contract::gcp::GcpStore;
use common::contract::vault::VaultStore;
use common::contract::{
    eventually, file, objs, ready, wait_layout, Bench, Failure, Obj, Params, Store, POLL, WITHIN,
};
use common::TestDir;

/// A fresh store of provider `S` and a bench around it.
fn setup<S: Store>() -> (S, Bench) {
    let dir = TestDir::new();
    let store = S::start(dir.path());
    let bench = Bench::new(dir, &[&store]);
    (store, bench)
}

/// Asserts that `out/name` holds what `value` renders to.
fn assert_file(store: &dyn Store, out: &Path, name: &str, value: &str) {
    assert_eq!(
        file(out, name),
        Some(store.content(value)),
        "{}/{name}",
        out.display()
    );
}

/// Waits until `out/name` holds what `value` renders to.
fn wait_file(store: &dyn Store, out: &Path, name: &str, value: &str, log: &dyn Fn() -> String) {
    let want = Some(store.content(value));
    assert!(
        eventually(WITHIN, || file(out, name) == want),
        "{}/{name} never got the new value:\n{}",
        out.display(),
        log()
    );
}

/// `init` of a three-object class into a missing directory: the kubelet layout (each name a
/// link into `..data`, one version directory of regular files), each file's content, the
/// default mode and a class's `filePermission`; one authentication and one read per object,
/// as the store counts them. A second `init` with nothing changed touches nothing.
fn renders_every_object_in_the_kubelet_layout<S: Store>() {
    let (store, b) = setup::<S>();
    let values = [b.value("alpha"), b.value("beta"), b.value("gamma")];
    let names = ["alpha", "beta", "gamma"];
    store.put(&[
        (names[0], &values[0]),
        (names[1], &values[1]),
        (names[2], &values[2]),
    ]);
    let objects = [
        Obj::new("alpha"),
        Obj::new("beta"),
        Obj::new("gamma").mode(0o400),
    ];
    let config = b.config("class.yaml", &store.class(&objects, Params::First));
    let out = b.dir.join("out");
    let (logins, reads) = (store.logins(), store.reads());
    b.init(&config, &out, &[]).expect_code(0);

    assert_layout(&out, &names);
    for (name, value) in names.iter().zip(&values) {
        assert_file(&store, &out, name, value);
        let real = out.join("..data").join(name);
        let meta = std::fs::symlink_metadata(&real).unwrap();
        assert!(meta.is_file(), "{} is not a regular file", real.display());
    }
    assert_eq!(mode_of(out.join("alpha")), store.default_mode());
    assert_eq!(mode_of(out.join("beta")), store.default_mode());
    assert_eq!(mode_of(out.join("gamma")), 0o400);
    assert_eq!(
        store.logins() - logins,
        1,
        "one authentication for the render"
    );
    assert_eq!(store.reads() - reads, 3, "one read per object");

    // The same values again: init finds the files current and touches nothing.
    let before = settled_tree(&out);
    b.init(&config, &out, &[]).expect_code(0);
    assert_eq!(
        tree(&out),
        before,
        "an unchanged render rewrote the directory"
    );
    b.assert_no_leaks();
}

/// The sidecar polling every second: polls that find the same values leave the directory as
/// it was (no new version); a value changed in the store reaches its file, the other file
/// keeps its content, a new version replaces the old one, which is gone after its grace
/// period; one authentication for the whole run; SIGTERM exits 0.
fn rotation_by_the_sidecar<S: Store>() {
    let (store, b) = setup::<S>();
    let (a1, a2, b1) = (b.value("a1"), b.value("a2"), b.value("b1"));
    store.put(&[("alpha", &a1), ("beta", &b1)]);
    let config = b.config(
        "class.yaml",
        &store.class(&objs(&["alpha", "beta"]), Params::First),
    );
    let out = b.dir.join("out");
    let logins = store.logins();
    let mut sidecar = b.sidecar(&config, &out, &[]);
    assert_file(&store, &out, "alpha", &a1);
    let first = current_version(&out);
    let before = settled_tree(&out);

    // Polls that find the same values leave everything as it was, `..data` included.
    let reads = store.reads();
    assert!(
        eventually(WITHIN, || store.reads() >= reads + 4),
        "the sidecar does not poll every {POLL}:\n{}",
        sidecar.log_text()
    );
    assert_eq!(tree(&out), before, "an unchanged store changed the files");

    store.put(&[("alpha", &a2)]);
    wait_file(&store, &out, "alpha", &a2, &|| sidecar.log_text());
    assert_file(&store, &out, "beta", &b1);
    assert_ne!(current_version(&out), first, "a new version directory");
    wait_layout(&out, &["alpha", "beta"]);
    assert_eq!(store.logins() - logins, 1, "one authentication for the run");
    assert_eq!(sidecar.stop().0, Some(0));
    b.assert_no_leaks();
}

/// `--state-dir`: init authenticates once and records its session (0600); the sidecar after it
/// and a restarted sidecar authenticate no more, keep init's version, and what they adopted
/// reads the rotated value. Without the state a restart does authenticate (so the count is
/// live), and the state file holds no value.
fn state_adoption_across_a_restart<S: Store>() {
    let (store, b) = setup::<S>();
    let (a1, a2) = (b.value("a1"), b.value("a2"));
    store.put(&[("alpha", &a1)]);
    let config = b.config("class.yaml", &store.class(&objs(&["alpha"]), Params::First));
    let out = b.dir.join("out");
    let state = b.dir.join("state");
    let with_state = ["--state-dir", state.to_str().unwrap()];
    let logins = store.logins();

    b.init(&config, &out, &with_state).expect_code(0);
    assert_eq!(store.logins() - logins, 1, "init authenticates once");
    assert_eq!(mode_of(state.join("state.json")), 0o600);
    let version = current_version(&out);

    // The sidecar after init: no new authentication, the files are taken as they are.
    let mut sidecar = b.sidecar(&config, &out, &with_state);
    assert_eq!(
        store.logins() - logins,
        1,
        "the sidecar after init authenticated again:\n{}",
        sidecar.log_text()
    );
    assert_eq!(
        current_version(&out),
        version,
        "the sidecar rewrote init's files"
    );
    // What it adopted works: a rotation arrives with it.
    store.put(&[("alpha", &a2)]);
    wait_file(&store, &out, "alpha", &a2, &|| sidecar.log_text());
    assert_eq!(sidecar.stop().0, Some(0));

    // A restarted sidecar: still nothing new.
    let mut restarted = b.sidecar(&config, &out, &with_state);
    let reads = store.reads();
    assert!(
        eventually(WITHIN, || store.reads() > reads),
        "no poll after the restart"
    );
    assert_eq!(
        store.logins() - logins,
        1,
        "the restarted sidecar authenticated again:\n{}",
        restarted.log_text()
    );
    assert_file(&store, &out, "alpha", &a2);
    assert_eq!(restarted.stop().0, Some(0));

    // Without the state a restart does authenticate: the count above would have seen it.
    let mut fresh = b.sidecar(&config, &out, &[]);
    assert_eq!(store.logins() - logins, 2, "{}", fresh.log_text());
    assert_eq!(fresh.stop().0, Some(0));
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap();
    for v in [&a1, &a2] {
        assert!(
            !recorded.contains(v.as_str()),
            "the state file holds a value"
        );
    }
    b.assert_no_leaks();
}

/// The class edited under a running sidecar, as a ConfigMap update lands: an object added
/// arrives, an object removed loses its link, neither needs a new authentication; the
/// provider parameters switched ([`Params::Second`]) bring the values only they reach; a
/// broken edit is refused naming the field, and the files, polling and readiness stay.
fn reload_applies_objects_and_parameters_live<S: Store>() {
    let (store, b) = setup::<S>();
    let [a, bv, c, a_second, c_second] =
        ["a", "b", "c", "a-second", "c-second"].map(|t| b.value(t));
    store.put(&[("alpha", &a), ("beta", &bv), ("gamma", &c)]);
    store.put_at(
        Params::Second,
        &[("alpha", &a_second), ("gamma", &c_second)],
    );
    let class = |names: &[&str], params| store.class(&objs(names), params);
    let config = b.config("class.yaml", &class(&["alpha", "beta"], Params::First));
    let out = b.dir.join("out");
    let sidecar = b.sidecar(&config, &out, &[]);
    let log = || sidecar.log_text();
    let logins = store.logins();

    // An object added.
    b.config(
        "class.yaml",
        &class(&["alpha", "beta", "gamma"], Params::First),
    );
    wait_file(&store, &out, "gamma", &c, &log);
    wait_layout(&out, &["alpha", "beta", "gamma"]);

    // An object removed: its link goes.
    b.config("class.yaml", &class(&["alpha", "gamma"], Params::First));
    assert!(
        eventually(WITHIN, || !out.join("beta").exists()),
        "the removed object stayed:\n{}",
        log()
    );
    wait_layout(&out, &["alpha", "gamma"]);
    assert_eq!(
        store.logins(),
        logins,
        "edited objects need no new authentication"
    );

    // A provider parameter changed: the values come from where it now points.
    b.config("class.yaml", &class(&["alpha", "gamma"], Params::Second));
    wait_file(&store, &out, "alpha", &a_second, &log);
    wait_file(&store, &out, "gamma", &c_second, &log);
    assert!(log().contains("config reloaded"), "{}", log());

    // A broken edit is refused, naming the field; the running config keeps its files.
    let before = settled_tree(&out);
    let (bad, field) = store.bad_classes().remove(0);
    b.config("class.yaml", &bad);
    assert!(
        eventually(WITHIN, || log().contains("keeping the running one")),
        "the broken edit was not reported:\n{}",
        log()
    );
    assert!(
        log().contains(&field),
        "the refusal names {field}:\n{}",
        log()
    );
    let reads = store.reads();
    assert!(
        eventually(WITHIN, || store.reads() > reads),
        "polling stopped"
    );
    assert_eq!(tree(&out), before);
    assert!(ready(&sidecar), "a refused edit made the sidecar unready");
    b.assert_no_leaks();
}

/// Two classes of one provider in the downward-API annotations, two `--volume`s: init fills
/// each directory with its own objects only, with one authentication for both (they log in
/// alike); the sidecar follows a change in each.
fn two_volumes_in_one_process<S: Store>() {
    let (store, b) = setup::<S>();
    let [a1, a2, b1, b2] = ["a1", "a2", "b1", "b2"].map(|t| b.value(t));
    store.put(&[("alpha", &a1), ("beta", &b1)]);
    let config = b.annotations(
        "annotations",
        &[
            ("one", &store.class(&objs(&["alpha"]), Params::First)),
            ("two", &store.class(&objs(&["beta"]), Params::First)),
        ],
    );
    let (one, two, unused) = (b.dir.join("one"), b.dir.join("two"), b.dir.join("unused"));
    let volumes = [
        format!("one={}", one.display()),
        format!("two={}", two.display()),
    ];
    let flags = ["--volume", &volumes[0], "--volume", &volumes[1]];
    let logins = store.logins();
    b.init(&config, &unused, &flags).expect_code(0);
    assert_layout(&one, &["alpha"]);
    assert_layout(&two, &["beta"]);
    assert_file(&store, &one, "alpha", &a1);
    assert_file(&store, &two, "beta", &b1);
    assert!(
        !unused.exists(),
        "--dir has no volume here and stays untouched"
    );
    assert_eq!(
        store.logins() - logins,
        1,
        "volumes that log in alike share one login"
    );

    let mut sidecar = b.sidecar(&config, &unused, &flags);
    store.put(&[("alpha", &a2), ("beta", &b2)]);
    wait_file(&store, &one, "alpha", &a2, &|| sidecar.log_text());
    wait_file(&store, &two, "beta", &b2, &|| sidecar.log_text());
    assert_eq!(store.logins() - logins, 2, "one more for the sidecar");
    assert_eq!(sidecar.stop().0, Some(0));
    b.assert_no_leaks();
}

/// A volume of `S` and one of another provider `P` in the annotations, served by one init and
/// one sidecar: each store sees one authentication from init, each volume follows its
/// store. A reload that moves `S`'s volume to `P` is refused and its files stay; with one
/// class alone the refusal names both providers.
fn beside_another_provider_in_one_process<S: Store, P: Store>() {
    let dir = TestDir::new();
    let (mine, theirs) = (S::start(dir.path()), P::start(dir.path()));
    assert_ne!(mine.provider(), theirs.provider());
    let b = Bench::new(dir, &[&mine, &theirs]);
    let [m1, m2, t1, t2] = ["m1", "m2", "t1", "t2"].map(|t| b.value(t));
    mine.put(&[("alpha", &m1)]);
    theirs.put(&[("beta", &t1)]);
    let mine_class = mine.class(&objs(&["alpha"]), Params::First);
    let theirs_class = theirs.class(&objs(&["beta"]), Params::First);
    let config = b.annotations(
        "annotations",
        &[("mine", &mine_class), ("theirs", &theirs_class)],
    );
    let (m, t, unused) = (
        b.dir.join("mine"),
        b.dir.join("theirs"),
        b.dir.join("unused"),
    );
    let volumes = [
        format!("mine={}", m.display()),
        format!("theirs={}", t.display()),
    ];
    let flags = ["--volume", &volumes[0], "--volume", &volumes[1]];
    let logins = (mine.logins(), theirs.logins());
    b.init(&config, &unused, &flags).expect_code(0);
    assert_file(&mine, &m, "alpha", &m1);
    assert_file(&theirs, &t, "beta", &t1);
    assert_layout(&m, &["alpha"]);
    assert_layout(&t, &["beta"]);
    assert_eq!(
        (mine.logins(), theirs.logins()),
        (logins.0 + 1, logins.1 + 1)
    );

    let sidecar = b.sidecar(&config, &unused, &flags);
    let log = || sidecar.log_text();
    mine.put(&[("alpha", &m2)]);
    theirs.put(&[("beta", &t2)]);
    wait_file(&mine, &m, "alpha", &m2, &log);
    wait_file(&theirs, &t, "beta", &t2, &log);
    for p in [mine.provider(), theirs.provider()] {
        assert!(log().contains(&format!("provider=\"{p}\"")), "{}", log());
    }

    // The volume `mine` switched to the other provider: refused, the files stay.
    let before = settled_tree(&m);
    let switched = theirs.class(&objs(&["beta"]), Params::First);
    b.annotations(
        "annotations",
        &[("mine", &switched), ("theirs", &theirs_class)],
    );
    let said = format!(
        "switches volume \"mine\" from provider {} to provider {}",
        mine.provider(),
        theirs.provider()
    );
    assert!(
        eventually(WITHIN, || log().contains(&said)),
        "the switch was not refused by name ({said}):\n{}",
        log()
    );
    let reads = mine.reads();
    assert!(
        eventually(WITHIN, || mine.reads() > reads),
        "polling stopped"
    );
    assert_eq!(tree(&m), before, "the switched volume's files changed");
    drop(sidecar);

    // One volume, one class, edited into the other provider's: refused, and said so.
    let single = b.config("single.yaml", &mine_class);
    let alone = b.dir.join("alone");
    let sidecar = b.sidecar(&single, &alone, &[]);
    let before = settled_tree(&alone);
    b.config("single.yaml", &theirs_class);
    let said = format!(
        "switches these volumes from provider {} to provider {}",
        mine.provider(),
        theirs.provider()
    );
    assert!(
        eventually(WITHIN, || sidecar.log_text().contains(&said)),
        "the switch was not refused by name:\n{}",
        sidecar.log_text()
    );
    assert_eq!(tree(&alone), before);
    assert!(ready(&sidecar), "a refused switch made the sidecar unready");
    b.assert_no_leaks();
}

/// `secretdrop sidecar` with a config that must be refused: its exit code.
fn sidecar_exit(b: &Bench, config: &Path, out: &Path) -> Option<i32> {
    b.spawn_sidecar(config, out, &[]).wait_exit(WITHIN)
}

/// Classes every provider must refuse (an unknown parameter, an unknown provider, `objects`
/// that is no list) and the store's own ([`Store::bad_classes`]): `init` (into a missing
/// directory and over a render), `check` and `sidecar` exit 2 naming the file and the field,
/// in a short message; nothing is created or changed, and nothing reaches the store.
fn bad_input_exits_2_naming_the_field_and_writes_nothing<S: Store>() {
    let (store, b) = setup::<S>();
    let value = b.value("kept");
    store.put(&[("a", &value)]);
    let good = store.class(&objs(&["a"]), Params::First);
    let kept = b.dir.join("kept");
    b.init(&b.config("good.yaml", &good), &kept, &[])
        .expect_code(0);
    let before = settled_tree(&kept);
    // What every provider refuses, whatever its parameters.
    let list = store.list_parameter();
    let (head, _) = good.split_once(&format!("    {list}:")).unwrap();
    let mut cases = vec![
        (
            good.replacen(
                "  parameters:\n",
                "  parameters:\n    bogusParameter: x\n",
                1,
            ),
            "bogusParameter".to_string(),
        ),
        (
            good.replace(
                &format!("provider: {}", store.provider()),
                "provider: nosuch",
            ),
            "spec.provider".into(),
        ),
        (
            format!("{head}    {list}: \"- [unclosed\"\n"),
            list.to_string(),
        ),
    ];
    cases.extend(store.bad_classes());
    let (logins, reads) = (store.logins(), store.reads());
    for (i, (class, field)) in cases.iter().enumerate() {
        let name = format!("bad-{i}.yaml");
        let config = b.config(&name, class);
        let fresh = b.dir.join(format!("fresh-{i}"));
        let expect = |r: &Run, what: &str| {
            r.expect_code(2).expect_stderr(&[&name, field]);
            assert!(r.stderr.len() < 2000, "{what}: a long error:\n{}", r.stderr);
        };
        expect(&b.init(&config, &fresh, &[]), "init");
        assert!(!fresh.exists(), "init created {}", fresh.display());
        expect(&b.init(&config, &kept, &[]), "init over a render");
        assert_eq!(tree(&kept), before, "a refused config changed the files");
        expect(
            &b.run(&["check", "--config", config.to_str().unwrap()]),
            "check",
        );
        assert_eq!(
            sidecar_exit(&b, &config, &kept),
            Some(2),
            "sidecar: {field}"
        );
        assert_eq!(tree(&kept), before);
    }
    assert_eq!(
        (store.logins(), store.reads()),
        (logins, reads),
        "a refused config reached the store"
    );
    b.assert_no_leaks();
}

/// An object the store no longer has: `init` exits 1 naming it and creates nothing; a running
/// sidecar keeps asking and keeps the last render untouched, and picks the object up when it
/// is back. An object the identity may not read: the same for `init` and the sidecar.
fn a_failing_object_writes_nothing_and_keeps_the_last_render<S: Store>() {
    let (store, b) = setup::<S>();
    let [a1, b1, b2] = ["a1", "b1", "b2"].map(|t| b.value(t));
    store.put(&[("alpha", &a1), ("beta", &b1)]);
    let config = b.config(
        "class.yaml",
        &store.class(&objs(&["alpha", "beta"]), Params::First),
    );

    // init: all or nothing.
    store.fail("beta", Failure::Missing);
    let fresh = b.dir.join("fresh");
    let r = b.init(&config, &fresh, &["--timeout", "5s"]);
    r.expect_code(1).expect_stderr(&["beta"]);
    assert!(!fresh.exists(), "a failed init created {}", fresh.display());

    // The sidecar keeps the last render while an object is gone, and recovers.
    store.put(&[("beta", &b1)]);
    let out = b.dir.join("out");
    let sidecar = b.sidecar(&config, &out, &[]);
    let before = settled_tree(&out);
    store.fail("beta", Failure::Missing);
    let reads = store.reads();
    assert!(
        eventually(WITHIN, || store.reads() >= reads + 3),
        "the sidecar stopped asking:\n{}",
        sidecar.log_text()
    );
    assert_eq!(tree(&out), before, "a missing object changed the files");
    store.put(&[("beta", &b2)]);
    wait_file(&store, &out, "beta", &b2, &|| sidecar.log_text());
    assert_file(&store, &out, "alpha", &a1);

    // Forbidden: init refuses to write, the sidecar keeps what it has.
    let before = settled_tree(&out);
    store.fail("alpha", Failure::Forbidden);
    let alone = b.config("alpha.yaml", &store.class(&objs(&["alpha"]), Params::First));
    let r = b.init(&alone, &fresh, &["--timeout", "5s"]);
    r.expect_code(1).expect_stderr(&["alpha"]);
    assert!(!fresh.exists());
    let reads = store.reads();
    assert!(eventually(WITHIN, || store.reads() >= reads + 2));
    assert_eq!(tree(&out), before, "a refused read changed the files");
    b.assert_no_leaks();
}

/// Everything at `--log-level trace` (text and JSON): init with `--state-dir`, `check`,
/// `exec --config` handing a value to the app, a sidecar rotating a value and meeting a
/// missing object, a failing init. No output holds a value, the token secretdrop presents
/// (service-account JWT, web identity token) or the credentials it recorded in the state
/// (Vault token, AWS session keys), and the state file holds no value.
fn secrets_and_tokens_never_reach_a_log_line<S: Store>() {
    let (store, b) = setup::<S>();
    let [a1, a2, b1] = ["a1", "a2", "b1"].map(|t| b.value(t));
    store.put(&[("alpha", &a1), ("beta", &b1)]);
    let config = b.config(
        "class.yaml",
        &store.class(&objs(&["alpha", "beta"]), Params::First),
    );
    let out = b.dir.join("out");
    let state = b.dir.join("state");
    let trace = [
        "--log-level",
        "trace",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    b.init(&config, &out, &trace).expect_code(0);
    b.run(&["check", "--config", config.to_str().unwrap()])
        .expect_code(0);
    // exec hands the value to the app, which checks it without printing it.
    let script = format!("test \"$ALPHA\" = '{a1}' && echo delivered");
    let config_s = config.to_str().unwrap();
    let r = b.run(&[
        "exec",
        "--config",
        config_s,
        "--env",
        "ALPHA=alpha",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    r.expect_code(0);
    assert_eq!(r.stdout.trim(), "delivered");
    b.secret(&script);

    let sidecar = b.sidecar(
        &config,
        &out,
        &["--log-level", "trace", "--log-format", "json"],
    );
    store.put(&[("alpha", &a2)]);
    wait_file(&store, &out, "alpha", &a2, &|| sidecar.log_text());
    store.fail("beta", Failure::Missing);
    let reads = store.reads();
    assert!(eventually(WITHIN, || store.reads() >= reads + 2));
    let r = b.init(
        &config,
        &b.dir.join("fresh"),
        &["--log-level", "trace", "--timeout", "3s"],
    );
    r.expect_code(1);
    drop(sidecar);
    let recorded = std::fs::read_to_string(state.join("state.json")).unwrap();
    for v in [&a1, &a2, &b1] {
        assert!(
            !recorded.contains(v.as_str()),
            "the state file holds a value"
        );
    }
    let held = store.recorded_credentials(&serde_json::from_str(&recorded).unwrap());
    for credential in &held {
        assert!(
            credential.len() >= 16,
            "not a credential: {} bytes",
            credential.len()
        );
        b.secret(credential);
    }
    b.assert_no_leaks();
}

/// Every scenario above, for every provider: `contract! { NAME => STORE, beside PARTNER; }`
/// makes the module `NAME` with one test per scenario; `PARTNER` is another provider's store,
/// for the scenario with volumes of two providers in one process.
macro_rules! contract {
    ($($provider:ident => $store:ty, beside $partner:ty;)*) => {$(
        mod $provider {
            use super::*;

            #[test]
            fn renders_every_object_in_the_kubelet_layout() {
                super::renders_every_object_in_the_kubelet_layout::<$store>()
            }
            #[test]
            fn rotation_by_the_sidecar() {
                super::rotation_by_the_sidecar::<$store>()
            }
            #[test]
            fn state_adoption_across_a_restart() {
                super::state_adoption_across_a_restart::<$store>()
            }
            #[test]
            fn reload_applies_objects_and_parameters_live() {
                super::reload_applies_objects_and_parameters_live::<$store>()
            }
            #[test]
            fn two_volumes_in_one_process() {
                super::two_volumes_in_one_process::<$store>()
            }
            #[test]
            fn beside_another_provider_in_one_process() {
                super::beside_another_provider_in_one_process::<$store, $partner>()
            }
            #[test]
            fn bad_input_exits_2_naming_the_field_and_writes_nothing() {
                super::bad_input_exits_2_naming_the_field_and_writes_nothing::<$store>()
            }
            #[test]
            fn a_failing_object_writes_nothing_and_keeps_the_last_render() {
                super::a_failing_object_writes_nothing_and_keeps_the_last_render::<$store>()
            }
            #[test]
            fn secrets_and_tokens_never_reach_a_log_line() {
                super::secrets_and_tokens_never_reach_a_log_line::<$store>()
            }
        }
    )*};
}

contract! {
    vault => VaultStore, beside AwsStore;
    aws => AwsStore, beside VaultStore;
    azure => AzureStore, beside VaultStore;
    gcp => GcpStore, beside VaultStore;
}

/// The directory's entries once the last commit finished: a commit removes the previous
/// version just after the `..data` swap that `wait_file` sees, so a snapshot taken right after
/// it could still hold that version.
fn settled_tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, common::cli::Entry> {
    let versions = || {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("..2"))
                })
                .count()
        })
    };
    assert!(eventually(WITHIN, || versions() <= 1), "{:?}", tree(dir));
    tree(dir)
}
