//! Attacks on secretdrop's listening ports, performed for real against the real binary over
//! real sockets: what anyone who can reach `secretdrop webhook` (or a sidecar's `--listen`)
//! could do to it, and what must hold meanwhile. Memory is the webhook's own VmHWM (peak RSS),
//! compared with the memory limit the Deployment gives it; CPU is utime + stime from
//! /proc/PID/stat; `/healthz` is timed on a fresh connection, handshake included. A flood
//! from another peer comes from 127.0.0.2, the probes from 127.0.0.1.
//!
//! The tests take turns (one lock): each measures one process's CPU and latency on a small
//! machine, and a neighbour's flood would be measured with it.

mod common;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::cli::{read, write};
use common::process::{cpu_share, cpu_time, limit_address_space, limit_fds, open_fds, status_mib};
use common::scenario::Pod;
use common::webhook::{review_of, Tls, Webhook};
use common::{unique, Bao, Server, TestDir};
use serde_json::{json, Value};

/// `/healthz` must answer within this whatever else is going on (kubelet's probe default).
const HEALTHZ_WITHIN: Duration = Duration::from_secs(1);
/// The webhook closes a connection whose handshake or head has not arrived within 10 s of the
/// phase starting (a body: 4 s after its head, the review's deadline); the rest is scheduling
/// slack on a busy machine.
const CLOSED_WITHIN: Duration = Duration::from_millis(12_500);
/// The webhook's timeoutSeconds in manifests/: an answer after this is one the API server no
/// longer waits for.
const API_SERVER_WAITS: Duration = Duration::from_secs(5);
/// What the webhook may accept (3 MiB plus room for the AdmissionReview around the pod).
const MAX_BODY: usize = 3 * 1024 * 1024 + 256 * 1024;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The webhook container's memory limit in manifests/base/deployment.yaml, in MiB.
fn memory_limit_mib() -> f64 {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/base/deployment.yaml"
    );
    let text = read(path);
    let limits = text.split("limits:").nth(1).expect("resources.limits");
    let memory = limits
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory:"))
        .expect("limits.memory");
    let mib = memory.trim().strip_suffix("Mi").expect("a limit in Mi");
    mib.parse().unwrap()
}

fn start(dir: &TestDir, fds: Option<u64>) -> Webhook {
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let defaults = ["--vault-address", "http://vault.vault:8200"];
    // The shipped artefact: the static build (its allocator, its limits).
    Webhook::start_program(
        common::cli::static_bin(),
        dir.path(),
        &crt,
        &key,
        &defaults,
        &[],
        |cmd| {
            if let Some(n) = fds {
                limit_fds(cmd, n);
            }
        },
    )
}

fn annotations(extra: &[(&str, &str)]) -> Value {
    let mut a = json!({
        "secretdrop.dev/inject": "true",
        "secretdrop.dev/role": "app",
        "secretdrop.dev/objects": "- {objectName: password, secretPath: secret/data/app, secretKey: password}\n",
    });
    for (k, v) in extra {
        a[*k] = json!(v);
    }
    a
}

fn pod(annotations: Value, containers: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "big", "namespace": "default", "annotations": annotations},
           "spec": {"containers": containers}})
}

/// Whether the peer has closed this socket (EOF or reset), reading away whatever it sent
/// first (a TLS alert). Leaves the socket non-blocking.
fn closed(sock: &TcpStream) -> bool {
    let _ = sock.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    loop {
        match (&*sock).read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// Polls `socks` until every one is closed or `limit` passes: how long that took, and how
/// many were still open at the end.
fn wait_closed(socks: &[&TcpStream], since: Instant, limit: Duration) -> (Duration, usize) {
    let mut open: Vec<&TcpStream> = socks.to_vec();
    while !open.is_empty() && since.elapsed() < limit {
        open.retain(|s| !closed(s));
        std::thread::sleep(Duration::from_millis(50));
    }
    open.retain(|s| !closed(s));
    (since.elapsed(), open.len())
}

/// The start of a JSON answer, for a failure message: answers can be megabytes.
fn short(v: &Value) -> String {
    v.to_string().chars().take(300).collect()
}

fn idle_sockets(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect()
}

/// Writes as much of `bytes` as the peer takes within `patience` per write.
fn write_some(tls: &mut Tls, bytes: &[u8], patience: Duration) -> usize {
    let _ = tls.sock.set_write_timeout(Some(patience));
    let mut sent = 0;
    for piece in bytes.chunks(64 * 1024) {
        if tls.write_all(piece).and_then(|()| tls.flush()).is_err() {
            break;
        }
        sent += piece.len();
    }
    sent
}

#[test]
fn a_body_over_the_cap_is_refused_unread_and_big_reviews_stay_within_the_memory_limit() {
    let _turn = one_at_a_time();
    let limit = memory_limit_mib();
    let dir = TestDir::new();
    let w = start(&dir, None);
    let pid = w.pid();
    let idle = status_mib(pid, "VmHWM");

    // Just over 3 MiB of small containers: as a `Value` this is hundreds of MiB.
    let container = |i: usize| json!({"name": format!("c{i}"), "image": "registry.example/app:1.0", "env": [{"name": "A", "value": "b"}]});
    let each = container(10_000).to_string().len() + 1;
    let many: Vec<Value> = (0..(3 * 1024 * 1024 + 32 * 1024) / each)
        .map(container)
        .collect();
    let opted_in = review_of(&pod(annotations(&[]), many.clone())).to_string();
    let not_ours = review_of(&pod(json!({"team": "a"}), many)).to_string();
    // A 3 MiB annotation (kubectl's last-applied-configuration of a big object looks so).
    let annotated = review_of(&pod(
        annotations(&[(
            "kubectl.kubernetes.io/last-applied-configuration",
            &"x".repeat(3 << 20),
        )]),
        vec![json!({"name": "app", "image": "nginx"})],
    ))
    .to_string();
    for (name, body, want) in [
        ("3 MiB of containers, opted in", &opted_in, Some(false)),
        ("3 MiB of containers, not ours", &not_ours, Some(true)),
        ("a 3 MiB annotation, opted in", &annotated, Some(true)),
    ] {
        assert!(
            body.len() > 3 << 20 && body.len() <= MAX_BODY,
            "{name}: {}",
            body.len()
        );
        let started = Instant::now();
        let (status, answer) = w.post(body.as_bytes()).expect(name);
        let took = started.elapsed();
        let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
        let hwm = status_mib(pid, "VmHWM");
        eprintln!(
            "{name}: {:.2} MiB -> {status} allowed={} in {took:?}; VmHWM {idle:.1} -> {hwm:.1} MiB",
            body.len() as f64 / (1 << 20) as f64,
            answer["response"]["allowed"]
        );
        assert_eq!(status, 200, "{name}\n{}", read(&w.log));
        assert_eq!(
            answer["response"]["allowed"].as_bool(),
            want,
            "{name}: {}",
            short(&answer)
        );
        assert!(hwm < limit, "{name}: VmHWM {hwm:.1} MiB, limit {limit} MiB");
    }
    let message = {
        let (_, a) = w.post(opted_in.as_bytes()).unwrap();
        let a: Value = serde_json::from_slice(&a).unwrap();
        a["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert!(message.contains("too large to inject"), "{message}");

    // Declared over the cap: refused from the head alone, before a byte of the body is sent.
    let mut tls = w.connect().unwrap();
    let head = format!("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 5 << 20);
    tls.write_all(head.as_bytes()).unwrap();
    tls.flush().unwrap();
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let started = Instant::now();
    let refused = common::webhook::response(&mut tls).map(|r| r.0);
    eprintln!(
        "Content-Length 5 MiB, no body sent: {refused:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(refused.ok(), Some(413), "{}", read(&w.log));

    // Chunked, without a length: cut off at the cap. The server answers 413 and closes, or
    // the close resets the connection first.
    let mut tls = w.connect().unwrap();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = [b'x'; 64 * 1024];
    let mut sent = 0;
    let _ = tls.sock.set_write_timeout(Some(Duration::from_secs(3)));
    while sent < 8 << 20 {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if tls.write_all(&framed).and_then(|()| tls.flush()).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = tls.write_all(b"0\r\n\r\n").and_then(|()| tls.flush());
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let outcome = common::webhook::response(&mut tls).map(|r| r.0);
    eprintln!("chunked: the server stopped taking it after {sent} bytes; {outcome:?}");
    assert!(
        matches!(outcome, Ok(413)) || outcome.is_err(),
        "{outcome:?}\n{}",
        read(&w.log)
    );
    let hwm = status_mib(pid, "VmHWM");
    eprintln!("VmHWM at the end {hwm:.1} MiB");
    assert!(hwm < limit, "VmHWM {hwm:.1} MiB, limit {limit} MiB");
    assert_eq!(w.healthz().map(|_| ()), Ok(()));
}

#[test]
fn many_clients_sending_the_largest_reviews_still_accepted_stay_within_the_memory_limit() {
    let _turn = one_at_a_time();
    let limit = memory_limit_mib();
    let dir = TestDir::new();
    let w = Arc::new(start(&dir, None));
    let pid = w.pid();
    // Just under what the webhook parses: big strings (a 2.7 MiB answer) ...
    let long = pod(
        annotations(&[]),
        (0..20)
            .map(|i| json!({"name": format!("c{i}"), "image": "x".repeat(100_000)}))
            .collect(),
    );
    // ... and 6 000 small containers (the most objects).
    let dense = pod(
        annotations(&[]),
        (0..6_000)
            .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
            .collect(),
    );
    let bodies: Arc<Vec<String>> = Arc::new(
        [&long, &dense]
            .iter()
            .map(|p| review_of(p).to_string())
            .collect(),
    );
    let clients: Vec<_> = (0..12)
        .map(|i| {
            let (w, bodies) = (w.clone(), bodies.clone());
            std::thread::spawn(move || -> Vec<(Duration, u16, Value, String)> {
                (0..3)
                    .map(|round| {
                        let body = &bodies[(i + round) % bodies.len()];
                        let started = Instant::now();
                        let (status, answer) = w.post(body.as_bytes()).expect("post");
                        let text = String::from_utf8_lossy(&answer).into_owned();
                        let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
                        (started.elapsed(), status, answer["response"].clone(), text)
                    })
                    .collect()
            })
        })
        .collect();
    let worst = w.worst_healthz(10, Duration::from_millis(300));
    let answers: Vec<_> = clients
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let hwm = status_mib(pid, "VmHWM");
    let injected = answers
        .iter()
        .filter(|a| a.1 == 200 && a.2["allowed"] == true)
        .count();
    let slowest = answers.iter().map(|a| a.0).max().unwrap_or_default();
    eprintln!(
        "12 clients x 3 of the largest parsed reviews: {injected}/{} injected, the rest refused \
         for the deadline; slowest answer {slowest:?}, VmHWM {hwm:.1} MiB, worst /healthz {worst:?}",
        answers.len()
    );
    // More than the webhook can compute in time (one large review at a time, each taking
    // a few hundred ms unoptimised): what it cannot decide within its 4 s it refuses, saying
    // so, rather than answering after the API server stopped waiting.
    for (took, status, response, text) in &answers {
        let injected = *status == 200 && response["allowed"] == true;
        let late = match *status {
            200 => response["status"]["message"].as_str().unwrap_or(""),
            _ => text.as_str(),
        }
        .contains("could not decide within 4s");
        assert!(
            injected || late,
            "{status}: {}",
            &text[..text.len().min(300)]
        );
        assert!(*took < API_SERVER_WAITS, "{took:?}");
    }
    assert!(injected > 0, "{}", read(&w.log));
    assert!(hwm < limit, "VmHWM {hwm:.1} MiB, limit {limit} MiB");
    assert!(worst < HEALTHZ_WITHIN, "/healthz took {worst:?}");
}

#[test]
fn stalled_bodies_are_closed_at_the_timeout_without_holding_memory_or_healthz() {
    let _turn = one_at_a_time();
    let limit = memory_limit_mib();
    let dir = TestDir::new();
    let w = Arc::new(start(&dir, None));
    let pid = w.pid();
    const CONNECTIONS: usize = 24;
    let declared = 3 << 20;
    let body = Arc::new(vec![b' '; declared * 5 / 6]);
    let attackers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (w, body) = (w.clone(), body.clone());
            std::thread::spawn(move || -> (usize, Option<Duration>) {
                let mut tls = w.connect().expect("connect");
                let head = format!("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"apiVersion\":\"admission.k8s.io/v1\",\"x\":\"");
                tls.write_all(head.as_bytes()).expect("head");
                let since = Instant::now();
                let sent = write_some(&mut tls, &body, Duration::from_secs(2));
                // Then nothing more: wait for the server to give up on us.
                let (took, open) = wait_closed(&[&tls.sock], since, Duration::from_secs(20));
                (sent, (open == 0).then_some(took))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let worst = w.worst_healthz(16, Duration::from_millis(500));
    let hwm = status_mib(pid, "VmHWM");
    let results: Vec<_> = attackers.into_iter().map(|t| t.join().unwrap()).collect();
    let sent: usize = results.iter().map(|r| r.0).sum();
    let slowest = results
        .iter()
        .map(|r| r.1)
        .max_by_key(|d| d.unwrap_or(Duration::MAX));
    eprintln!(
        "{CONNECTIONS} bodies of {declared} bytes, {:.1} MiB of them written (into the clients' socket buffers) before stalling: VmHWM {hwm:.1} MiB, worst /healthz {worst:?}, last closed after {slowest:?}",
        sent as f64 / (1 << 20) as f64
    );
    assert!(hwm < limit, "VmHWM {hwm:.1} MiB, limit {limit} MiB");
    assert!(worst < HEALTHZ_WITHIN, "/healthz took {worst:?}");
    for (i, (_, closed_after)) in results.iter().enumerate() {
        assert!(
            closed_after.is_some_and(|d| d <= CLOSED_WITHIN),
            "connection {i} closed after {closed_after:?}"
        );
    }
}

#[test]
fn idle_sockets_and_unfinished_heads_are_closed_in_bounded_time() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, None);
    let opening = Instant::now();
    let idle = idle_sockets(w.port, 1000);
    let heads: Vec<Tls> = (0..5)
        .map(|_| {
            let mut tls = w.connect().unwrap();
            tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Ty")
                .unwrap();
            tls.flush().unwrap();
            tls
        })
        .collect();
    // Each must be gone within the timeout of its opening; the last opened just now.
    let since = Instant::now();
    eprintln!("opening them took {:?}", since - opening);
    let worst = w.worst_healthz(10, Duration::from_millis(300));
    let fds = open_fds(w.pid());
    let mut socks: Vec<&TcpStream> = idle.iter().collect();
    socks.extend(heads.iter().map(|t| &t.sock));
    let (took, open) = wait_closed(&socks, since, Duration::from_secs(20));
    eprintln!("1000 idle + 5 half-sent heads: {fds} fds open in the webhook during the flood, worst /healthz {worst:?}; {open} still open after {took:?}");
    assert!(worst < HEALTHZ_WITHIN, "/healthz took {worst:?}");
    assert_eq!(open, 0, "still open after {took:?}");
    assert!(took <= CLOSED_WITHIN, "all closed only after {took:?}");
}

#[test]
fn with_64_descriptors_an_idle_flood_neither_spins_nor_shuts_out_the_probe() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, Some(64));
    let pid = w.pid();
    let flood = idle_sockets(w.port, 80);
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_share(pid, Duration::from_secs(3));
    let fds = open_fds(pid);
    let during = w.healthz();
    eprintln!(
        "80 idle sockets, 64 fds: CPU {:.0}% of a core, {fds} fds open, /healthz {during:?}",
        cpu * 100.0
    );
    drop(flood);
    std::thread::sleep(Duration::from_millis(200));
    let after = w.worst_healthz(3, Duration::from_millis(100));
    eprintln!("after the flood: /healthz {after:?}");
    assert!(cpu < 0.15, "CPU {:.0}% of a core", cpu * 100.0);
    assert!(
        during.as_ref().is_ok_and(|d| *d < HEALTHZ_WITHIN),
        "{during:?}"
    );
    assert!(after < HEALTHZ_WITHIN, "{after:?}");
}

#[test]
fn out_of_descriptors_accept_makes_room_or_backs_off_instead_of_spinning() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    // Barely more descriptors than the webhook needs for itself: accept(2) fails with EMFILE
    // as soon as two clients are connected.
    let w = start(&dir, Some(17));
    let pid = w.pid();
    let flood = idle_sockets(w.port, 80);
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_share(pid, Duration::from_secs(3));
    let during = w.healthz();
    eprintln!(
        "80 idle sockets, 17 fds: CPU {:.0}% of a core, /healthz {during:?}",
        cpu * 100.0
    );
    drop(flood);
    assert!(cpu < 0.15, "CPU {:.0}% of a core", cpu * 100.0);
    assert!(
        during.as_ref().is_ok_and(|d| *d < HEALTHZ_WITHIN),
        "{during:?}\n{}",
        read(&w.log)
    );
}

#[test]
fn forty_thousand_containers_named_in_the_annotation_are_answered_within_a_second() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, None);
    for n in [4_000, 40_000] {
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let containers = names
            .iter()
            .map(|c| json!({"name": c, "image": "x"}))
            .collect();
        let pod = pod(
            annotations(&[("secretdrop.dev/containers", &names.join(","))]),
            containers,
        );
        let body = review_of(&pod).to_string();
        let started = Instant::now();
        let (status, answer) = w.post(body.as_bytes()).unwrap();
        let took = started.elapsed();
        let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
        let response = &answer["response"];
        eprintln!(
            "{n} containers, {n} names ({} KiB): {status} allowed={} in {took:?} {}",
            body.len() / 1024,
            response["allowed"],
            response["status"]["message"].as_str().unwrap_or("")
        );
        assert_eq!(status, 200, "{}", read(&w.log));
        assert!(
            took < Duration::from_secs(1),
            "{n} containers took {took:?}"
        );
        if n == 4_000 {
            // Small enough to inject: every container got the volume.
            assert_eq!(response["allowed"], true, "{}", short(response));
            let ops = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                response["patch"].as_str().unwrap(),
            )
            .unwrap();
            let ops: Vec<Value> = serde_json::from_slice(&ops).unwrap();
            let injected = secretdrop::webhook::patch::apply(&pod, &ops).unwrap();
            let mounted = injected["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["volumeMounts"][0]["name"] == "secretdrop-secrets")
                .count();
            assert_eq!(mounted, n);
        }
    }
}

/// The review of an opted-in pod of one container whose objects annotation is `objects`.
fn objects_review(objects: &str) -> String {
    review_of(&pod(
        annotations(&[("secretdrop.dev/objects", objects)]),
        vec![json!({"name": "app", "image": "nginx"})],
    ))
    .to_string()
}

/// The review of problem B: `secretArgs` nested 100 000 deep in the objects annotation.
fn deeply_nested_review() -> String {
    let depth = 100_000;
    let objects = format!(
        "- objectName: a\n  secretPath: secret/data/app\n  secretKey: k\n  secretArgs: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    objects_review(&objects)
}

#[test]
fn a_deeply_nested_annotation_does_not_hold_up_healthz() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = Arc::new(start(&dir, None));
    let body = deeply_nested_review();
    let review = {
        let w = w.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = w.post(body.as_bytes()).map(|(status, _)| status);
            (answer, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let worst = w.worst_healthz(15, Duration::from_millis(300));
    let (answer, took) = review.join().unwrap();
    eprintln!("deep nesting: /healthz at worst {worst:?} meanwhile; the review: {answer:?} after {took:?}");
    assert!(worst < HEALTHZ_WITHIN, "/healthz took {worst:?}");
    // A normal review still gets through while that one is being computed.
    let plain = review_of(&pod(json!({}), vec![json!({"name": "app", "image": "x"})]));
    let started = Instant::now();
    let (status, _) = w.post(plain.to_string().as_bytes()).unwrap();
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < HEALTHZ_WITHIN,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_deeply_nested_annotation_is_answered_within_a_second() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, None);
    let body = deeply_nested_review();
    let started = Instant::now();
    let (status, answer) = w.post(body.as_bytes()).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, 200);
    // Refused by the YAML pre-scan, with the reason the pod author sees in kubectl.
    assert!(
        answer.contains("\"allowed\":false") && answer.contains("nesting deeper than 128"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// The alias bomb of the YAML finding in the objects annotation: an anchor of 2 000 items named
/// 20 000 times, 64 KB that serde_yaml alone expands into 40 million values.
fn alias_bomb_review() -> String {
    let objects = format!(
        "- &a [{}]\n- [{}]\n",
        vec!["x"; 2_000].join(","),
        vec!["*a"; 20_000].join(",")
    );
    objects_review(&objects)
}

/// Two at once, each refused within a second of the webhook's CPU and well within the API
/// server's 5 s (the clock is looser than the CPU: two debug-build reviews share two busy
/// cores), the webhook's peak RSS under the Deployment's memory limit, and the next pod still
/// injected. The webhook runs under a 1 GiB address-space limit, so a build without the bound
/// fails here (no answer before the connection's 10 s timeout) instead of taking gigabytes.
#[test]
fn an_alias_bomb_in_the_annotation_is_refused_quickly_within_the_memory_limit() {
    let _turn = one_at_a_time();
    let limit = memory_limit_mib();
    let dir = TestDir::new();
    let (crt, key) = common::pki::self_signed(dir.path(), "webhook");
    let defaults = ["--vault-address", "http://vault.vault:8200"];
    let w = Webhook::start_with(dir.path(), &crt, &key, &defaults, |cmd| {
        limit_address_space(cmd, 1 << 30)
    });
    let w = Arc::new(w);
    let pid = w.pid();
    let idle = status_mib(pid, "VmHWM");
    let cpu_before = cpu_time(pid);
    let body = alias_bomb_review();
    // As many as the webhook computes at a time.
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (w, body) = (w.clone(), body.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let answer = w.post(body.as_bytes());
                (answer, started.elapsed())
            })
        })
        .collect();
    for client in clients {
        let (answer, took) = client.join().unwrap();
        let (status, answer) =
            answer.unwrap_or_else(|e| panic!("{e} after {took:?}\n{}", read(&w.log)));
        let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
        let message = answer["response"]["status"]["message"]
            .as_str()
            .unwrap_or("");
        eprintln!("alias bomb: {status} after {took:?}: {message}");
        assert_eq!(status, 200, "{}", read(&w.log));
        assert_eq!(answer["response"]["allowed"], false, "{}", short(&answer));
        assert!(
            message.contains("secretdrop.dev/objects") && message.contains("at most 100000"),
            "{message}"
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
    }
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    eprintln!("alias bomb x2: {cpu:?} of the webhook's CPU");
    assert!(
        cpu < Duration::from_secs(2),
        "{cpu:?} of CPU for two reviews"
    );
    let hwm = status_mib(pid, "VmHWM");
    eprintln!("alias bomb x2: VmHWM {idle:.1} -> {hwm:.1} MiB (limit {limit} MiB)");
    assert!(hwm < limit, "VmHWM {hwm:.1} MiB, limit {limit} MiB");
    // The webhook is still there for the next pod.
    let plain = review_of(&pod(
        annotations(&[]),
        vec![json!({"name": "app", "image": "x"})],
    ));
    let (status, answer) = w.post(plain.to_string().as_bytes()).unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap_or_default();
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true, "{}", short(&answer));
    assert!(
        answer["response"]["patch"].is_string(),
        "{}",
        short(&answer)
    );
}

#[test]
fn the_sidecar_listen_server_under_a_low_fd_limit_neither_spins_nor_starves_renders() {
    let _turn = one_at_a_time();
    let bao = Bao::shared();
    let path = unique("flood");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=one"]);
    let pod = Pod::reading(bao, &path);
    let config = pod.native(
        bao,
        &format!("objects:\n  - {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n"),
    );
    let cfg = write(pod.dir.path(), "flood.yaml", &config);
    let r = pod.sidecar_file_with(&cfg, &["--poll-interval", "1s"], |cmd| limit_fds(cmd, 64));
    let pid = r.pid() as u32;
    let port: u16 = r
        .listen
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let flood = idle_sockets(port, 80);
    std::thread::sleep(Duration::from_millis(500));
    let cpu = cpu_share(pid, Duration::from_secs(3));
    let fds = open_fds(pid);
    eprintln!(
        "sidecar, 80 idle sockets, 64 fds: CPU {:.0}% of a core, {fds} fds open",
        cpu * 100.0
    );
    let started = Instant::now();
    let status = common::http("GET", port, "/healthz", &[], "").map(|r| r.0);
    let healthz = started.elapsed();
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=two"]);
    let changed = Instant::now();
    let committed = r.eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(pod.out().join("password")).is_ok_and(|p| p == "two")
    });
    eprintln!(
        "/healthz {status:?} in {healthz:?}; change committed: {committed} after {:?}",
        changed.elapsed()
    );
    drop(flood);
    assert!(cpu < 0.15, "CPU {:.0}% of a core", cpu * 100.0);
    assert_eq!(status.ok(), Some(200));
    assert!(healthz < HEALTHZ_WITHIN, "/healthz took {healthz:?}");
    assert!(committed, "the change was not committed:\n{}", r.log_text());
    assert!(
        !r.log_text().contains("Too many open files"),
        "{}",
        r.log_text()
    );
}

/// The webhook's limit on refusal warnings (src/logging.rs): lines per kind per interval.
const WARN_BURST: usize = 5;
const WARN_INTERVAL: Duration = Duration::from_secs(10);
const TOO_LARGE: &str = "refused an AdmissionReview larger than the limit";

/// A request head declaring a body over the cap, on a new connection: the webhook's answer.
fn oversized(w: &Webhook) -> io::Result<u16> {
    let mut tls = w.connect()?;
    let head = format!("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 5 << 20);
    tls.write_all(head.as_bytes())?;
    tls.flush()?;
    tls.sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    common::webhook::response(&mut tls).map(|r| r.0)
}

/// Waits (up to 5 s) until the log has `n` lines containing `what`; how many it has.
fn lines_with(log: &std::path::Path, what: &str, n: usize) -> usize {
    let started = Instant::now();
    loop {
        let have = read(log).lines().filter(|l| l.contains(what)).count();
        if have >= n || started.elapsed() > Duration::from_secs(5) {
            return have;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `suppressed=K` counts of the summary lines for `kind`.
fn suppressed(log: &str, kind: &str) -> Vec<usize> {
    log.lines()
        .filter(|l| l.contains("similar warnings") && l.contains(&format!("({kind})")))
        .map(|l| {
            let k = l.split("suppressed=").nth(1).expect("a suppressed= field");
            k.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_flood_of_refused_requests_logs_a_bounded_number_of_warnings_and_counts_them_all() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, None);
    // Control: a single refusal is logged at once.
    assert_eq!(oversized(&w).ok(), Some(413), "{}", read(&w.log));
    assert_eq!(lines_with(&w.log, TOO_LARGE, 1), 1, "{}", read(&w.log));

    const FLOOD: usize = 300;
    let started = Instant::now();
    for i in 1..FLOOD {
        assert_eq!(
            oversized(&w).ok(),
            Some(413),
            "request {i}\n{}",
            read(&w.log)
        );
    }
    // Logging resumes after the interval: the summary comes first, then the warning.
    std::thread::sleep(WARN_INTERVAL.saturating_sub(started.elapsed()));
    assert_eq!(oversized(&w).ok(), Some(413));
    assert_eq!(
        lines_with(&w.log, TOO_LARGE, WARN_BURST + 1),
        WARN_BURST + 1
    );
    let log = read(&w.log);
    let resumed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("(too_large)") || l.contains(TOO_LARGE))
        .collect();
    let n = resumed.len();
    assert!(
        n >= 2 && resumed[n - 2].contains("similar warnings") && resumed[n - 1].contains(TOO_LARGE),
        "{log}"
    );
    assert_eq!(suppressed(&log, "too_large"), [FLOOD - WARN_BURST], "{log}");
    // A second flood, within one interval: its surplus is reported at shutdown.
    const SECOND: usize = 20;
    for i in 0..SECOND {
        assert_eq!(
            oversized(&w).ok(),
            Some(413),
            "request {i}\n{}",
            read(&w.log)
        );
    }
    let took = started.elapsed();
    let events = FLOOD + 1 + SECOND;
    // Another kind of refusal is not hidden by this flood: logged at once.
    let (status, _) = w.post(b"{not json").unwrap();
    assert_eq!(status, 400);
    assert_eq!(
        lines_with(&w.log, "bad AdmissionReview", 1),
        1,
        "{}",
        read(&w.log)
    );
    // Every refusal is counted.
    let (status, metrics) = w.call(&w.ca, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("secretdrop_webhook_reviews_total{result=\"bad_request\"} "))
        .expect("the bad_request counter");
    assert_eq!(counted.trim(), (events + 1).to_string(), "{metrics}");

    // Shutting down reports what is still suppressed.
    // SAFETY: kill(2) on the webhook child's pid.
    unsafe { libc::kill(w.pid() as i32, libc::SIGTERM) };
    assert_eq!(
        lines_with(&w.log, "webhook shutting down", 1),
        1,
        "{}",
        read(&w.log)
    );
    let log = read(&w.log);
    let logged = log.lines().filter(|l| l.contains(TOO_LARGE)).count();
    let summaries = suppressed(&log, "too_large");
    let hidden: usize = summaries.iter().sum();
    let intervals = (took + Duration::from_secs(1)).as_secs_f64() / WARN_INTERVAL.as_secs_f64();
    let bound = WARN_BURST * (intervals.ceil() as usize + 1);
    eprintln!(
        "{events} oversized bodies in {took:?}: {logged} warnings logged, {hidden} suppressed in {} summary lines (bound {bound})",
        summaries.len()
    );
    eprintln!(
        "{}",
        log.lines()
            .find(|l| l.contains("similar warnings"))
            .unwrap_or("")
    );
    assert!(logged >= WARN_BURST, "the first ones are logged\n{log}");
    assert!(logged <= bound, "{logged} warnings, at most {bound}\n{log}");
    assert!(!summaries.is_empty() && summaries.len() <= bound, "{log}");
    assert_eq!(summaries.len(), 2, "{log}");
    assert_eq!(logged + hidden, events, "{log}");
    assert!(
        log.lines().filter(|l| l.contains(" WARN ")).count() <= 2 * bound + 1,
        "{log}"
    );
}

/// A TCP connection to `127.0.0.1:port` whose source address is `from`: another loopback
/// address is another peer, as far as the server can tell.
fn connect_from(from: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    // SAFETY: a fresh socket, owned by the TcpStream from the start; setsockopt, bind and
    // connect read only the values we pass, sized as given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = TcpStream::from_raw_fd(fd);
        // The source port is chosen at connect(2), knowing the destination: choosing it at
        // bind(2) runs out of ports among the flood's own TIME_WAIT sockets.
        let one: libc::c_int = 1;
        check(libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let local = sockaddr(from, 0);
        check(libc::bind(
            fd,
            (&local as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        let remote = sockaddr(Ipv4Addr::LOCALHOST, port);
        check(libc::connect(
            fd,
            (&remote as *const libc::sockaddr_in).cast(),
            len,
        ))?;
        Ok(sock)
    }
}

/// How long after connecting a probe sends its request (or starts its TLS handshake): a busy
/// node's kubelet, or a slow network. Before the fix, every connection accepted meanwhile
/// could push the probe's out: with the flood below (about 3000 a second here) a probe
/// this slow always lost its place (10 ms was enough against the sidecar's cap of 8).
const PROBE_DELAY: Duration = Duration::from_millis(100);

/// While one peer (127.0.0.2) keeps opening empty connections as fast as the server accepts
/// them (holding its newest `hold`), `probe` runs 50 times from 127.0.0.1: the errors of the
/// probes that failed, how many connections the flood opened, the slowest answer.
fn probes_during_a_flood_from_another_peer(
    port: u16,
    hold: usize,
    probe: impl Fn() -> Result<Duration, String>,
) -> (Vec<String>, usize, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = VecDeque::new();
            let mut opened = 0;
            while !stop.load(Ordering::Relaxed) {
                match connect_from(Ipv4Addr::new(127, 0, 0, 2), port) {
                    Ok(s) => {
                        opened += 1;
                        held.push_back(s);
                        if held.len() > hold {
                            held.pop_front();
                        }
                    }
                    Err(e) => panic!("the flood could not connect: {e}"),
                }
                // A flood, but not a busy loop that takes a core of a 2-core machine from the
                // server: the accept queue must not overflow, or probes' SYNs are dropped by
                // the kernel before the server could do anything.
                std::thread::sleep(Duration::from_micros(200));
            }
            opened
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut failed = Vec::new();
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        match probe() {
            Ok(took) => worst = worst.max(took),
            Err(e) => failed.push(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let opened = flooder.join().unwrap();
    (failed, opened, worst)
}

/// GET /healthz over plain HTTP from 127.0.0.1 on a fresh connection, the request sent
/// `delay` after connecting, answered within kubelet's default probe timeout (1 s) of that:
/// how long it took from connecting.
fn plain_healthz(port: u16, delay: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let attempt = || -> io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(HEALTHZ_WITHIN))?;
        std::thread::sleep(delay);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    match attempt() {
        Ok(a) if a.starts_with("HTTP/1.1 200") => Ok(started.elapsed()),
        Ok(a) if a.is_empty() => Err(format!("closed unanswered after {:?}", started.elapsed())),
        Ok(a) => Err(format!("answered {:?}", a.lines().next().unwrap_or(""))),
        Err(e) => Err(format!("after {:?}: {e}", started.elapsed())),
    }
}

#[test]
fn another_peers_flood_of_empty_connections_never_displaces_the_sidecars_probe() {
    let _turn = one_at_a_time();
    let bao = Bao::shared();
    let path = unique("peerflood");
    bao.cli(&["kv", "put", &format!("secret/{path}"), "password=one"]);
    let pod = Pod::reading(bao, &path);
    let config = pod.native(
        bao,
        &format!("objects:\n  - {{objectName: password, secretPath: secret/data/{path}, secretKey: password}}\n"),
    );
    let cfg = write(pod.dir.path(), "flood.yaml", &config);
    let r = pod.sidecar_file(&cfg, &[]);
    let port: u16 = r
        .listen
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The sidecar's cap is 8: the flood holds twice that.
    let (failed, opened, worst) =
        probes_during_a_flood_from_another_peer(port, 16, || plain_healthz(port, PROBE_DELAY));
    eprintln!(
        "sidecar --listen, 127.0.0.2 opened {opened} empty connections: {} of 50 probes from \
         127.0.0.1 failed, the slowest answered in {worst:?}; {:?}",
        failed.len(),
        failed.iter().take(3).collect::<Vec<_>>()
    );
    assert!(failed.is_empty(), "{failed:?}\n{}", r.log_text());
    assert!(worst < PROBE_DELAY + HEALTHZ_WITHIN, "{worst:?}");
}

#[test]
fn another_peers_flood_of_empty_connections_never_displaces_the_webhooks_probe() {
    let _turn = one_at_a_time();
    let dir = TestDir::new();
    let w = start(&dir, None);
    // The webhook's cap is 64: the flood holds twice that.
    let (failed, opened, worst) =
        probes_during_a_flood_from_another_peer(w.port, 128, || w.healthz_after(PROBE_DELAY));
    eprintln!(
        "webhook, 127.0.0.2 opened {opened} empty connections: {} of 50 probes from 127.0.0.1 \
         failed, the slowest answered in {worst:?}; {:?}",
        failed.len(),
        failed.iter().take(3).collect::<Vec<_>>()
    );
    assert!(failed.is_empty(), "{failed:?}\n{}", read(&w.log));
    assert!(worst < PROBE_DELAY + HEALTHZ_WITHIN, "{worst:?}");
}
