//! A hostile Vault: a man-in-the-middle in front of the real OpenBao that forwards what it is
//! not told to tamper with, and for chosen requests answers itself (a redirect, a huge body) or
//! rewrites the real answer (absurd lease durations). Plus a bystander at another origin that
//! records anything sent to it, so a test can prove no token or JWT ever arrived there.
//!
//! Why a proxy rather than a fake: every answer it does not tamper with is the real server's,
//! so login, policies and KV behave exactly as in production and only the attack is scripted.
//! It speaks HTTP/1.0 upstream (so OpenBao never chunks) and closes every connection after one
//! exchange; plain TCP by default, TLS with a given certificate for the https cases.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header_in(&self.headers, name)
    }

    /// Headers and body as text, to search for a leaked token or JWT.
    pub fn text(&self) -> String {
        let heads: Vec<String> = self
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{} {}\n{}\n{}",
            self.method,
            self.path,
            heads.join("\n"),
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// What to do with one request.
pub enum Act {
    /// Pass it to the real server and relay its answer unchanged.
    Forward,
    /// The same, keeping the client's `Host` header: a signed request (AWS SigV4 signs the
    /// host) stays valid through the proxy.
    ForwardKeepingHost,
    /// Pass it on, then edit the JSON body of the answer.
    Rewrite(fn(&mut Value)),
    /// Answer with these raw bytes (status line, headers, body) and close.
    Reply(Vec<u8>),
    /// Answer `200` with headers and then `total` bytes of a JSON string value, written in
    /// 64 KiB pieces after a 300 ms pause at the first MiB (so a memory sampler sees the
    /// client mid-read), without a Content-Length unless `announce` is set.
    Flood { total: usize, announce: bool },
}

type Rule = dyn Fn(&Seen) -> Act + Send + Sync;

pub struct Proxy {
    pub port: u16,
    pub host: &'static str,
    tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// A plain-HTTP proxy on `host` (e.g. `127.0.0.1`, or `127.0.0.2` for another origin) in
    /// front of the server on `upstream` (`None`: nothing to forward to).
    pub fn start(
        host: &'static str,
        upstream: Option<u16>,
        rule: impl Fn(&Seen) -> Act + Send + Sync + 'static,
    ) -> Proxy {
        Self::start_inner(host, upstream, None, Arc::new(rule))
    }

    /// The same over TLS with `cert`/`key` (PEM files).
    pub fn start_tls(
        host: &'static str,
        cert: &Path,
        key: &Path,
        rule: impl Fn(&Seen) -> Act + Send + Sync + 'static,
    ) -> Proxy {
        Self::start_inner(host, None, Some(tls_config(cert, key)), Arc::new(rule))
    }

    /// A bystander at another origin: answers every request with a plausible KV v2 secret,
    /// which a client that followed a redirect would render.
    pub fn bystander() -> Proxy {
        Proxy::start("127.0.0.2", None, |_| {
            Act::Reply(json_reply(
                200,
                &serde_json::json!({"data": {"data": {"username": "attacker", "password": "attacker"}},
                    "lease_id": "", "lease_duration": 0, "renewable": false}),
            ))
        })
    }

    fn start_inner(
        host: &'static str,
        upstream: Option<u16>,
        tls: Option<Arc<rustls::ServerConfig>>,
        rule: Arc<Rule>,
    ) -> Proxy {
        let listener = TcpListener::bind((host, 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let is_tls = tls.is_some();
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (rule, log, tls) = (rule.clone(), log.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    match tls {
                        Some(cfg) => {
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut s = rustls::StreamOwned::new(conn, stream);
                            serve_one(&mut s, upstream, &*rule, &log);
                            s.conn.send_close_notify();
                            let _ = s.flush();
                        }
                        None => {
                            let mut s = stream;
                            serve_one(&mut s, upstream, &*rule, &log);
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            host,
            tls: is_tls,
            seen,
        }
    }

    pub fn addr(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// A JSON answer with its status, Content-Length and `Connection: close`.
pub fn json_reply(status: u16, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A redirect to `location`.
pub fn redirect(status: u16, location: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn serve_one(
    client: &mut (impl Read + Write),
    upstream: Option<u16>,
    rule: &Rule,
    log: &Mutex<Vec<Seen>>,
) {
    let Some(req) = read_request(client) else {
        return;
    };
    if let Ok(mut l) = log.lock() {
        l.push(req.clone());
    }
    match rule(&req) {
        Act::Reply(bytes) => {
            let _ = client.write_all(&bytes);
        }
        Act::Flood { total, announce } => flood(client, total, announce),
        act @ (Act::Forward | Act::ForwardKeepingHost) => {
            let keep_host = matches!(act, Act::ForwardKeepingHost);
            if let Some(raw) = upstream.and_then(|p| forward(p, &req, keep_host)) {
                let _ = client.write_all(&raw);
            }
        }
        Act::Rewrite(edit) => {
            if let Some(raw) = upstream.and_then(|p| forward(p, &req, false)) {
                let _ = client.write_all(&rewrite(&raw, edit));
            }
        }
    }
    let _ = client.flush();
}

fn flood(client: &mut impl Write, total: usize, announce: bool) {
    let prefix = b"{\"data\":{\"data\":{\"password\":\"";
    let suffix = b"\"}},\"lease_id\":\"\",\"lease_duration\":0}";
    let length = if announce {
        format!(
            "Content-Length: {}\r\n",
            prefix.len() + total + suffix.len()
        )
    } else {
        String::new()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
    );
    if client.write_all(head.as_bytes()).is_err() || client.write_all(prefix).is_err() {
        return;
    }
    let piece = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        if sent == 1024 * 1024 {
            std::thread::sleep(Duration::from_millis(300));
        }
        let n = piece.len().min(total - sent);
        if client.write_all(&piece[..n]).is_err() {
            return; // the client gave up: what we want
        }
        sent += n;
    }
    let _ = client.write_all(suffix);
}

fn read_request(stream: &mut impl Read) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// The request sent on to the real server over HTTP/1.0; its whole answer.
fn forward(port: u16, req: &Seen, keep_host: bool) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut head = format!("{} {} HTTP/1.0\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        let host = k.eq_ignore_ascii_case("host");
        if !k.eq_ignore_ascii_case("connection") && (!host || keep_host) {
            head += &format!("{k}: {v}\r\n");
        }
    }
    if !keep_host {
        head += &format!("Host: 127.0.0.1:{port}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(&req.body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    Some(raw)
}

/// Applies `edit` to the JSON body of a raw answer and fixes its Content-Length.
fn rewrite(raw: &[u8], edit: fn(&mut Value)) -> Vec<u8> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let Some(i) = split else {
        return raw.to_vec();
    };
    let (head, body) = (&raw[..i], &raw[i + 4..]);
    let Ok(mut json) = serde_json::from_slice::<Value>(body) else {
        return raw.to_vec();
    };
    edit(&mut json);
    let body = json.to_string();
    let head = String::from_utf8_lossy(head);
    let kept: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    format!(
        "{}\r\nContent-Length: {}\r\n\r\n{body}",
        kept.join("\r\n"),
        body.len()
    )
    .into_bytes()
}

fn tls_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    Arc::new(cfg)
}

/// The largest VmHWM (peak RSS, KiB) of `pid` seen while sampling every 2 ms until it exits;
/// `None` if it exited before the first sample.
pub fn sample_peak_rss_kib(pid: u32) -> std::thread::JoinHandle<Option<u64>> {
    std::thread::spawn(move || {
        let mut peak = None;
        loop {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return peak;
            };
            let hwm = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok());
            match hwm {
                Some(v) => peak = Some(peak.unwrap_or(0).max(v)),
                None => return peak, // a zombie has no memory left to report
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}
