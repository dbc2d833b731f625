//! The oracle test of src/gotemplate: the same templates rendered by `bao agent` (Vault Agent's
//! consul-template engine) and by secretdrop's engine against the same OpenBao, compared byte
//! for byte; failures (error_on_missing_key, bad base64) must fail in both.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{bao_bin, http, unique, Bao};
use secretdrop::gotemplate::{self, Host, Options, Outcome, Request, Template};

/// Answers with HTTP from the test server, as the lead's host will: KV v2 paths rewritten
/// through `sys/internal/ui/mounts`, writes as PUT with the arguments' JSON body. Nothing is
/// fetched until a run reports it missing, so the engine's two-pass discovery is exercised.
struct TestHost {
    port: u16,
    env: HashMap<String, String>,
    fetched: HashMap<Request, Result<Vec<u8>, String>>,
}

impl TestHost {
    fn new(port: u16) -> TestHost {
        TestHost {
            port,
            env: HashMap::new(),
            fetched: HashMap::new(),
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(
            "GET",
            self.port,
            &format!("/v1/{path}"),
            &[("X-Vault-Token", "root")],
            "",
        )
        .expect("GET from OpenBao")
    }

    fn fetch(&mut self, req: &Request) {
        let (path, query) = match req.path.split_once('?') {
            Some((p, q)) => (p.to_string(), format!("?{q}")),
            None => (req.path.clone(), String::new()),
        };
        let answer = if req.is_write() {
            let body = serde_json::Value::Object(req.body()).to_string();
            http(
                "PUT",
                self.port,
                &format!("/v1/{path}"),
                &[("X-Vault-Token", "root")],
                &body,
            )
            .expect("PUT to OpenBao")
        } else {
            let (status, mounts) = self.get(&format!("sys/internal/ui/mounts/{path}"));
            let api_path = if status == 200 {
                let m: serde_json::Value = serde_json::from_str(&mounts).expect("mounts JSON");
                let mount = m["data"]["path"].as_str().unwrap_or_default().to_string();
                let v2 = m["data"]["type"] == "kv" && m["data"]["options"]["version"] == "2";
                gotemplate::kv2_path(&path, &mount, v2)
            } else {
                path
            };
            self.get(&format!("{api_path}{query}"))
        };
        let r = match answer {
            (200, body) => Ok(body.into_bytes()),
            (status, _) => Err(format!("{}: status {status}", req.path)),
        };
        self.fetched.insert(req.clone(), r);
    }
}

impl Host for TestHost {
    fn answer(&mut self, req: &Request) -> Option<Result<Vec<u8>, String>> {
        self.fetched.get(req).cloned()
    }
    fn env(&self, name: &str) -> String {
        self.env.get(name).cloned().unwrap_or_default()
    }
}

/// Renders with secretdrop's engine: runs until nothing is missing (at most 10 passes).
fn render(
    host: &mut TestHost,
    text: &str,
    delims: (&str, &str),
    emk: bool,
) -> Result<Vec<u8>, String> {
    let t = Template::parse(text, delims.0, delims.1).map_err(|e| format!("parse: {e}"))?;
    let opts = Options::new(emk);
    for _ in 0..10 {
        match gotemplate::execute(&t, host, &opts).map_err(|e| format!("exec: {e}"))? {
            Outcome::Rendered(b) => return Ok(b),
            Outcome::Missing(reqs) => {
                assert!(!reqs.is_empty());
                for r in &reqs {
                    host.fetch(r);
                }
            }
        }
    }
    Err("still missing after 10 passes".into())
}

struct Case {
    name: String,
    text: String,
    emk: bool,
    delims: (&'static str, &'static str),
}

fn case(name: &str, text: &str) -> Case {
    Case {
        name: name.to_string(),
        text: text.to_string(),
        emk: false,
        delims: ("", ""),
    }
}

/// Runs `bao agent` once over `cases` (token auto-auth, exit_after_auth); returns its exit
/// status and each case's file (None when it was not written).
fn agent(
    bao: &Bao,
    dir: &Path,
    cases: &[Case],
    env: &[(&str, &str)],
) -> (bool, Vec<Option<Vec<u8>>>, String) {
    std::fs::create_dir_all(dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "root").unwrap();
    let templates: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            let mut t = serde_json::json!({
                "contents": c.text,
                "destination": dir.join("out").join(&c.name),
                "error_on_missing_key": c.emk,
            });
            if !c.delims.0.is_empty() {
                t["left_delimiter"] = c.delims.0.into();
                t["right_delimiter"] = c.delims.1.into();
            }
            t
        })
        .collect();
    let config = serde_json::json!({
        // One retry: a read that fails (a deleted KV v2 version) fails the agent in seconds.
        "vault": {"address": bao.addr(), "retry": {"num_retries": 1}},
        "auto_auth": {"method": [{"type": "token_file", "config": {"token_file_path": token}}]},
        "exit_after_auth": true,
        "template_config": {"exit_on_retry_failure": true},
        "template": templates,
    });
    let cfg = dir.join("agent.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut cmd = Command::new(bao_bin());
    cmd.args(["agent", "-config"]).arg(&cfg);
    for (k, _) in std::env::vars() {
        if k.starts_with("BAO_") || k.starts_with("VAULT_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bao agent");
    let out = wait_bounded(child, Duration::from_secs(60));
    let files = cases
        .iter()
        .map(|c| std::fs::read(dir.join("out").join(&c.name)).ok())
        .collect();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), files, log)
}

/// [`agent`] for cases that all render: every file, or a panic with the agent's log. A run that
/// exits 0 with a file missing is retried once or twice (the agent's exit_after_auth counts
/// templates of identical text as one, see the PKI test; no case here shares its text now).
fn agent_all(bao: &Bao, dir: &Path, cases: &[Case], env: &[(&str, &str)]) -> Vec<Vec<u8>> {
    let mut last = String::new();
    for attempt in 0..3 {
        let (ok, files, log) = agent(bao, &dir.join(format!("try{attempt}")), cases, env);
        assert!(ok, "bao agent failed:\n{log}");
        let missing: Vec<_> = cases
            .iter()
            .zip(&files)
            .filter(|(_, f)| f.is_none())
            .map(|(c, _)| c.name.as_str())
            .collect();
        if missing.is_empty() {
            return files.into_iter().flatten().collect();
        }
        last = format!("the agent exited 0 without writing {missing:?}:\n{log}");
        eprintln!("{last}");
    }
    panic!("{last}");
}

fn wait_bounded(mut child: std::process::Child, limit: Duration) -> std::process::Output {
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("agent output");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("agent output");
            panic!(
                "bao agent still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scratch(name: &str) -> PathBuf {
    std::env::temp_dir().join(unique(name))
}

fn put(port: u16, path: &str, json: &str) {
    let (status, body) = http(
        "POST",
        port,
        &format!("/v1/{path}"),
        &[("X-Vault-Token", "root")],
        json,
    )
    .expect("write to OpenBao");
    assert!(
        status == 200 || status == 204,
        "write {path}: {status} {body}"
    );
}

/// KV v1 and v2 mounts holding the data every case reads.
struct Fixture {
    kv1: String,
    kv2: String,
}

const RICH: &str = r#"{
  "username": "admin", "password": "p4ss w0rd<&>\"'",
  "unicode": "héllo wörld ✓ 日本", "multi": "line1\nline2\ttab",
  "big": 12345678901234567890, "float": 1.50, "int": 5432, "neg": -7, "zero": 0,
  "tiny": 0.000001, "huge": 1e21, "t": true, "f": false, "none": null, "empty": "",
  "list": ["a", "b", 3, true, null, {"x": 1}], "strs": ["x", "y", "z"],
  "nested": {"inner": {"deep": "value", "n": 10}, "arr": [1, 2], "null": null},
  "dashed-key": "dash", "csv": " a,b , c ", "b64": "aGVsbG8gd29ybGQ=", "bin64": "AP8Q/w==",
  "json": "{\"a\":1,\"b\":[1,2.5,1000000],\"c\":{\"d\":null}}",
  "url": "postgres://u:p@h/db?a=1&b=<2>", "spaces": "  padded  ", "ctl": "a\u0001b\u2028c",
  "port": "5432", "count": "3", "flag": "true", "ratio": "0.75", "upper": "MiXeD Case",
  "hosts": "db1.example.com,db2.example.com"
}"#;

fn fixture(bao: &Bao) -> Fixture {
    let port = bao.port();
    let kv1 = unique("gt-kv1");
    let kv2 = unique("gt-kv2");
    put(
        port,
        &format!("sys/mounts/{kv1}"),
        r#"{"type":"kv","options":{"version":"1"}}"#,
    );
    put(
        port,
        &format!("sys/mounts/{kv2}"),
        r#"{"type":"kv","options":{"version":"2"}}"#,
    );
    put(port, &format!("{kv1}/app"), RICH);
    put(
        port,
        &format!("{kv1}/db"),
        r#"{"username":"dbuser","password":"dbpass","host":"db.internal","port":5432,"dbname":"orders"}"#,
    );
    // KV v2 answers only once the mount's backend is up.
    for _ in 0..50 {
        let (s, _) = http(
            "POST",
            port,
            &format!("/v1/{kv2}/data/app"),
            &[("X-Vault-Token", "root")],
            &format!("{{\"data\":{RICH}}}"),
        )
        .unwrap();
        if s == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    put(
        port,
        &format!("{kv2}/data/app"),
        &format!("{{\"data\":{RICH}}}"),
    );
    put(
        port,
        &format!("{kv2}/data/simple"),
        r#"{"data":{"username":"admin","password":"p4ssw0rd"}}"#,
    );
    put(
        port,
        &format!("{kv2}/data/ns-default/app"),
        r#"{"data":{"api_key":"k-123"}}"#,
    );
    Fixture { kv1, kv2 }
}

fn cases(f: &Fixture) -> Vec<Case> {
    let (kv1, kv2) = (&f.kv1, &f.kv2);
    let mut c = Vec::new();
    // The injector's default templates on both engines.
    for (n, p) in [
        ("v1", format!("{kv1}/app")),
        ("v2", format!("{kv2}/app")),
        ("v2simple", format!("{kv2}/simple")),
        ("v2data", format!("{kv2}/data/simple")),
    ] {
        c.push(case(&format!("map-{n}"), &format!("{{{{ with secret \"{p}\" }}}}{{{{ range $k, $v := .Data }}}}{{{{ $k }}}}: {{{{ $v }}}}\n{{{{ end }}}}{{{{ end }}}}")));
        c.push(case(
            &format!("json-{n}"),
            &format!("{{{{ with secret \"{p}\" }}}}{{{{ .Data | toJSON }}}}\n{{{{ end }}}}"),
        ));
    }
    let v1 = |name: &str, body: &str| {
        case(
            name,
            &format!("{{{{ with secret \"{kv1}/app\" }}}}{body}{{{{ end }}}}"),
        )
    };
    // On KV v2 the same bodies read `.Data.data`.
    let v2 = |name: &str, body: &str| {
        let body = body.replace(".Data", ".Data.data");
        case(
            name,
            &format!("{{{{ with secret \"{kv2}/app\" }}}}{body}{{{{ end }}}}"),
        )
    };
    for (name, body) in [
        ("fields", "{{ .Data.username }}|{{ .Data.big }}|{{ .Data.float }}|{{ .Data.none }}|{{ .Data.absent }}|{{ .Data.t }}|{{ .Data.list }}|{{ .Data.nested }}|{{ .Data.empty }}|{{ .Data.tiny }}|{{ .Data.huge }}"),
        ("lease", "{{ .LeaseID }}|{{ .LeaseDuration }}|{{ .Renewable }}|{{ .Warnings }}|{{ len .Data }}"),
        ("printf", r#"{{ printf "%s|%v|%d|%q|%x|%5s|%-5s|%05d|%t|%%|%v" .Data.username .Data.big .Data.int .Data.unicode .Data.username "ab" "ab" 42 .Data.t .Data.nested }}"#),
        ("printf2", r#"{{ printf "%s %v %q %d" .Data.int .Data.float .Data.multi 7 }}|{{ printf "%s" .Data.none }}|{{ printf "%d %s" 1 }}|{{ printf "%d" 1 2 }}|{{ printf "%.2f %6.3f %e %g" 3.14159 2.5 1234.5678 0.000012 }}"#),
        ("printf3", r#"{{ printf "%v %v %v %v" 1000000.0 123456.0 1e21 1.5 }}|{{ printf "%x %X %o %b %c %q" 255 255 8 5 65 66 }}|{{ printf "%+d % d %x" 5 5 "hi" }}|{{ printf "%q" .Data.ctl }}"#),
        ("print", r#"{{ print "a" 1 2 "b" 3 }}|{{ println "x" 1 }}|{{ print .Data.t .Data.int }}|{{ print nil }}"#),
        ("range-map", "{{ range $k, $v := .Data.nested }}[{{ $k }}={{ $v }}]{{ end }}{{ range .Data.list }}<{{ . }}>{{ end }}{{ range $i, $e := .Data.strs }}{{ $i }}:{{ $e }},{{ end }}"),
        ("range-else", "{{ range .Data.missingList }}x{{ else }}none{{ end }}|{{ range $i, $e := .Data.strs }}{{ if eq $e \"y\" }}{{ continue }}{{ end }}{{ if eq $e \"z\" }}{{ break }}{{ end }}{{ $e }}{{ end }}"),
        ("if-else", "{{ if .Data.t }}T{{ else }}F{{ end }}{{ if .Data.f }}T{{ else if .Data.empty }}E{{ else if .Data.zero }}Z{{ else }}none{{ end }}{{ if .Data.none }}N{{ end }}{{ if .Data.list }}L{{ end }}{{ with .Data.absent }}A{{ else }}noA{{ end }}"),
        ("compare", r#"{{ eq .Data.username "admin" }} {{ ne .Data.username "x" }} {{ eq .Data.port "5432" }} {{ eq .Data.int .Data.int }} {{ lt "a" "b" }} {{ le 1 2 }} {{ gt 3 2 }} {{ ge 2 2 }} {{ eq "a" "b" "a" }} {{ eq .Data.none "x" }}"#),
        ("logic", r#"{{ and .Data.t .Data.username }} {{ or .Data.empty .Data.username }} {{ not .Data.f }} {{ and 1 0 2 }} {{ or 0 "" }} {{ not .Data.none }}"#),
        ("index", r#"{{ index .Data "dashed-key" }}|{{ index .Data.list 1 }}|{{ index .Data.nested "inner" "deep" }}|{{ index .Data "nope" }}|{{ index .Data.strs 2 }}"#),
        ("len-slice", r#"{{ len .Data.username }} {{ len .Data.list }} {{ len .Data.nested }} {{ len .Data.big }} {{ slice .Data.username 1 3 }} {{ slice .Data.strs 1 }}"#),
        ("vars", r#"{{ $u := .Data.username }}{{ $p := .Data.password }}{{ $u }}:{{ $p }}{{ $u = "other" }}|{{ $u }}|{{ $.Foo }}|{{ with .Data.nested }}{{ $u }}{{ .inner.deep }}{{ end }}"#),
        ("trim", "{{- /* a comment */ -}}\n  {{- .Data.username -}}  \n\t{{ .Data.int }} {{- \" x \" }}\n{{- 3 }} {{ -3 }}\n"),
        ("json", "{{ .Data | toJSON }}\n{{ .Data.nested | toJSONPretty }}\n{{ .Data | toUnescapedJSON }}\n{{ .Data.list | toUnescapedJSONPretty }}\n{{ toJSON .Data.strs }}{{ toJSONPretty .Data.empty }}"),
        ("json-empty", r#"{{ toJSONPretty (parseJSON "{}") }}|{{ toJSONPretty (parseJSON "[]") }}|{{ toJSON .Data.none }}|{{ toJSON 5 }}|{{ toJSON 1.5 }}|{{ toJSON "é<" }}"#),
        ("base64", r#"{{ .Data.b64 | base64Decode }}|{{ .Data.username | base64Encode }}|{{ base64URLEncode "\xff\xfe?>" }}|{{ base64URLDecode "__4_Pg==" }}|{{ .Data.bin64 | base64Decode }}"#),
        ("strings", r#"{{ .Data.csv | split "," }}|{{ range split "," .Data.hosts }}<{{ . }}>{{ end }}|{{ .Data.hosts | split "," | join "+" }}|{{ split "," "" }}|{{ .Data.spaces | trimSpace }}|{{ trim "xy" "xyhixy" }}|{{ trimPrefix "pre" "prefix" }}|{{ trimSuffix "fix" "prefix" }}|{{ .Data.upper | toLower }}|{{ .Data.upper | toUpper }}|{{ .Data.unicode | toUpper }}|{{ replaceAll "a" "b" "banana" }}|{{ split "" "abc" }}"#),
        ("contains", r#"{{ .Data.username | contains "dm" }} {{ contains "x" .Data.username }} {{ .Data.strs | contains "y" }} {{ .Data.list | contains "a" }} {{ in .Data.strs "z" }} {{ containsAll .Data.list .Data.list }} {{ containsAny .Data.list "b" }} {{ containsNone .Data.strs "q" }} {{ containsNotAll .Data.strs "a" }} {{ containsAny .Data.strs "xyz" }}"#),
        ("parse", r#"{{ parseBool .Data.flag }} {{ parseInt .Data.port }} {{ parseUint .Data.count }} {{ parseFloat .Data.ratio }} {{ parseInt "" }} {{ (parseJSON .Data.json).b }} {{ parseJSON .Data.json }} {{ (parseJSON .Data.json).a }} {{ index (parseJSON .Data.json).b 2 }} {{ parseFloat "1e6" }} {{ parseFloat "123456789" }}"#),
        ("math", r#"{{ add 1 2 }} {{ subtract 1 10 }} {{ multiply 3 4 }} {{ divide 2 10 }} {{ modulo 3 10 }} {{ minimum 3 10 }} {{ maximum 3 10 }} {{ add 1.5 2 }} {{ divide 4 10.0 }} {{ .Data.port | parseInt | add 1 }} {{ subtract 0.5 (parseFloat "2") }}"#),
        ("loop", "{{ range loop 3 }}{{ . }},{{ end }}|{{ range $i := loop 2 5 }}{{ $i }}{{ end }}|{{ range loop \"2\" }}s{{ end }}|{{ range $i := 3 }}{{ $i }}{{ end }}"),
        ("misc", r#"{{ sha256Hex .Data.username }} {{ indent 4 .Data.multi }} {{ html .Data.url }} {{ js .Data.password }} {{ urlquery .Data.url }} {{ hmacSHA256Hex "msg" "key" }}"#),
        ("nested-with", "{{ with .Data.nested }}{{ with .inner }}{{ .deep }}-{{ .n }}{{ end }}{{ with .missing }}no{{ else }}{{ .arr }}{{ end }}{{ end }}"),
        ("chain", "{{ (index .Data.list 5).x }}|{{ $n := .Data.nested }}{{ $n.inner.deep }}|{{ .Data.nested.inner }}"),
        ("raw-strings", "{{ `raw\\n` }}|{{ \"esc\\t\\u00e9\\x41\" }}|{{ 'a' }}|{{ 0x1F }}|{{ 1_000 }}|{{ 1e3 }}|{{ .5 }}|{{ 07 }}"),
        ("more-range", "{{ range $v := .Data.nested }}({{ $v }}){{ end }}|{{ range $i, $e := .Data.strs }}{{ if $i }},{{ end }}\"{{ $e }}\"{{ end }}|{{ if and .Data.t (eq .Data.username \"admin\") }}both{{ end }}|{{ .Data.nested.inner.deep | printf \"%s-%s\" \"pre\" }}|{{ index .Data.list 1 | toUpper }}|{{ len (split \",\" .Data.hosts) }}"),
        ("more-printf", r#"{{ printf "%s" .Data.list }}|{{ printf "%s" .Data.nested }}|{{ .Data.float | printf "%.1f" }}|{{ 3 | printf "%d" }}|{{ "a" | eq "a" }}|{{ printf "%v|%s|%d" .Data.t .Data.t .Data.t }}|{{ printf "%6.2f|%-8.3s|%08.3f|%+.1e" 3.14159 "abcdef" 3.14159 12345.678 }}|{{ printf "%x|%X|% x" .Data.username .Data.username .Data.username }}|{{ printf "%c%c" 72 105 }}|{{ printf "%5t|%-5t|" true false }}"#),
        ("more-funcs", r#"{{ splitToMap "," "=" "a=1,b=2,c" }}|{{ envOrDefault "NOPE_X" "def" }}|{{ parseUint "18446744073709551615" }}|{{ parseInt "-9223372036854775808" }}|{{ maximum 1.5 2 }} {{ minimum 2 1.5 }} {{ maximum 3 3 }} {{ subtract 1.5 (parseInt "3") }} {{ divide 3 10 }} {{ modulo 3 -10 }} {{ multiply 1.5 (parseUint "2") }} {{ add (parseUint "1") (parseInt "2") }}|{{ toJSON (split "," .Data.hosts) }}|{{ toJSON (splitToMap "," "=" "a=1") }}|{{ .Data.multi | indent 4 }}|{{ trim " " .Data.spaces }}|{{ "a,b" | split "," | toJSONPretty }}"#),
        ("more-else-with", "{{ with .Data.absent }}x{{ else with .Data.username }}{{ . }}{{ end }}|{{- if .Data.t }}\n  yes\n{{- end }}"),
        ("secret-struct", "{{ .Data.username }}{{ $s := . }}|{{ $s.Renewable }}"),
    ] {
        c.push(v1(&format!("v1-{name}"), body));
        c.push(v2(&format!("v2-{name}"), body));
    }
    c.push(case("define", &format!(r#"{{{{ define "row" }}}}<{{{{ . }}}}>{{{{ end }}}}{{{{ with secret "{kv1}/db" }}}}{{{{ template "row" .Data.username }}}}{{{{ template "row" }}}}{{{{ block "b" .Data.port }}}}[{{{{ . }}}}]{{{{ end }}}}{{{{ end }}}}"#)));
    // What the unit tests of src/gotemplate expect beyond the cases above.
    c.push(case("unit-extras", r#"{{ indent 2 "a\nb" }} {{ html "<&>" }} {{ urlquery "a b&" }}|{{ if 0 }}a{{ else if "" }}b{{ else if 1 }}c{{ else }}d{{ end }}{{ with $x := "v" }}{{ $x }}{{ . }}{{ end }}|{{ $u := "a" }}{{ $u = "b" }}{{ $u }}|{{ $.Foo }}|{{ and 1 0 2 }}|{{ or 0 "" }}|{{ not nil }}|{{ toJSON (parseJSON "[1e21, 1e-7, 0.000001, 123456789]") }}|{{ printf "%2000000d" 1 }}|{{ printf "%20000000d" 1 }}|{{ printf "%*d" 2000000 1 }}|{{ range $i, $e := split "," "x,y,z,w" }}{{ if eq $e "y" }}{{ continue }}{{ end }}{{ if eq $e "w" }}{{ break }}{{ end }}{{ $i }}{{ $e }}{{ end }}|{{ range split "," "" }}x{{ else }}none{{ end }}|{{ printf "%d|%05d|%-4s|%q" 5 42 "ab" "a\x01b" }}|{{ print "a" 1 2 "b" 3 }}"#));
    c.push(case("define-dollar", &format!(r#"{{{{ define "t" }}}}{{{{ $.username }}}}/{{{{ .dbname }}}}{{{{ end }}}}{{{{ with secret "{kv1}/db" }}}}{{{{ template "t" .Data }}}}{{{{ end }}}}"#)));
    c.push(case("execute-template", &format!(r#"{{{{ define "greet" }}}}hi {{{{ . }}}}{{{{ end }}}}{{{{ define "row" }}}}{{{{ $.username }}}}@{{{{ .host }}}}{{{{ end }}}}{{{{ executeTemplate "greet" "bob" | toUpper }}}}|{{{{ executeTemplate "greet" }}}}|{{{{ with secret "{kv1}/db" }}}}{{{{ executeTemplate "row" .Data }}}}{{{{ end }}}}"#)));
    c.push(case("unit-define", r#"{{ define "row" }}<{{ . }}>{{ end }}{{ template "row" "x" }}{{ template "row" }}{{ block "b" 5 }}[{{ . }}]{{ end }}"#));
    // Real-world templates.
    c.push(case("pg-url", &format!("{{{{- with secret \"{kv1}/db\" -}}}}\npostgresql://{{{{ .Data.username }}}}:{{{{ .Data.password }}}}@{{{{ .Data.host }}}}:{{{{ .Data.port }}}}/{{{{ .Data.dbname }}}}?sslmode=require\n{{{{- end }}}}\n")));
    c.push(case("dotenv", &format!("{{{{ with secret \"{kv2}/simple\" }}}}{{{{ range $k, $v := .Data.data }}}}export {{{{ $k | toUpper }}}}=\"{{{{ $v }}}}\"\n{{{{ end }}}}{{{{ end }}}}")));
    c.push(case(
        "json-config",
        &format!("{{{{ with secret \"{kv1}/db\" }}}}{{{{ .Data | toJSONPretty }}}}{{{{ end }}}}\n"),
    ));
    c.push(case("properties", &format!("{{{{- with secret \"{kv2}/simple\" }}}}\n{{{{- range $k, $v := .Data.data }}}}\napp.{{{{ $k }}}}={{{{ $v }}}}\n{{{{- end }}}}\n{{{{ end }}}}")));
    c.push(case("printf-widths", &format!("{{{{ with secret \"{kv1}/db\" }}}}{{{{ range $k, $v := .Data }}}}{{{{ printf \"%-10s|%8v|\\n\" $k $v }}}}{{{{ end }}}}{{{{ end }}}}")));
    c.push(case("env-path", &format!("{{{{ with secret (printf \"{kv2}/%s/app\" (env \"NAMESPACE\")) }}}}key={{{{ .Data.data.api_key }}}}{{{{ end }}}}|{{{{ env \"UNSET_VAR_X\" }}}}|{{{{ env \"NAMESPACE\" }}}}")));
    c.push(case("kv2-version", &format!("{{{{ with secret \"{kv2}/app?version=1\" }}}}{{{{ .Data.metadata.version }}}} {{{{ .Data.data.username }}}}{{{{ end }}}}")));
    c.push(case("secret-print", &format!("{{{{ with secret \"{kv1}/db\" }}}}{{{{ .Data }}}} {{{{ .Warnings }}}} {{{{ .LeaseDuration }}}}{{{{ end }}}}")));
    c.push(case("two-secrets", &format!("{{{{ with secret \"{kv1}/db\" }}}}{{{{ .Data.username }}}}{{{{ end }}}}/{{{{ with secret \"{kv2}/simple\" }}}}{{{{ .Data.data.username }}}}{{{{ end }}}}/{{{{ (secret \"{kv1}/db\").Data.dbname }}}}")));
    let mut d = case(
        "delims",
        &format!(
            "[[ with secret \"{kv1}/db\" ]][[ .Data.username ]] {{{{ not a template }}}}[[ end ]]"
        ),
    );
    d.delims = ("[[", "]]");
    c.push(d);
    let mut e = case("emk-ok", &format!("{{{{ with secret \"{kv1}/app\" }}}}{{{{ .Data.username }}}} {{{{ .Data.none }}}} {{{{ index .Data \"absent\" }}}}{{{{ end }}}}"));
    e.emk = true;
    c.push(e);
    c
}

#[test]
fn engine_matches_bao_agent_byte_for_byte() {
    let bao = Bao::shared();
    let f = fixture(bao);
    let cases = cases(&f);
    let env = [("NAMESPACE", "ns-default")];
    let dir = scratch("gotemplates");
    let files = agent_all(bao, &dir, &cases, &env);
    let mut host = TestHost::new(bao.port());
    host.env.insert("NAMESPACE".into(), "ns-default".into());
    let mut failures = Vec::new();
    for (c, want) in cases.iter().zip(files) {
        match render(&mut host, &c.text, c.delims, c.emk) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!(
                "{}:\n  agent: {:?}\n  ours:  {:?}",
                c.name,
                String::from_utf8_lossy(&want),
                String::from_utf8_lossy(&got)
            )),
            Err(e) => failures.push(format!(
                "{}: ours failed: {e}\n  agent: {:?}",
                c.name,
                String::from_utf8_lossy(&want)
            )),
        }
    }
    if std::env::var_os("GT_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Templates that make the agent exit non-zero must fail in the engine too (never render
/// something the agent would not have written).
#[test]
fn fails_where_bao_agent_fails() {
    let bao = Bao::shared();
    let f = fixture(bao);
    let (kv1, kv2) = (&f.kv1, &f.kv2);
    let w1 = |body: &str| format!("{{{{ with secret \"{kv1}/app\" }}}}{body}{{{{ end }}}}");
    let mut cases = vec![
        case("emk-absent", &w1("{{ .Data.absent }}")),
        case(
            "emk-v2-absent",
            &format!("{{{{ with secret \"{kv2}/app\" }}}}{{{{ .Data.data.absent }}}}{{{{ end }}}}"),
        ),
        case("null-field", &w1("{{ .Data.none.x }}")),
        case("absent-field", &w1("{{ .Data.absent.x }}")),
        case("join-iface", &w1("{{ .Data.strs | join \",\" }}")),
        case(
            "contains-type",
            &w1("{{ .Data.list | containsNone \"q\" }}"),
        ),
        case("contains-nil", &w1("{{ containsNone .Data.list \"q\" }}")),
        case("comment-space", "{{/* x */ }}"),
        case("comment-late", "{{ /* x */ }}"),
        case("base64-bad", &w1("{{ .Data.username | base64Decode }}")),
        case("trim-number", &w1("{{ .Data.int | trimSpace }}")),
        case("add-number", &w1("{{ add 1 .Data.int }}")),
        case("index-range", &w1("{{ index .Data.strs 9 }}")),
        case("divide-zero", "{{ divide 0 1 }}"),
        case("eq-types", &w1("{{ eq .Data.int 5432 }}")),
        case("unknown-func", "{{ nosuchfunc 1 }}"),
        case("consul-key", "{{ key \"a/b\" }}"),
        case("unclosed", "{{ if true }}x"),
        case("bad-var", "{{ $x }}"),
        case("range-string", &w1("{{ range .Data.username }}x{{ end }}")),
        case("struct-field", &w1("{{ .Nope }}")),
        case("not-kv", &w1("{{ secret \"x\" \"novalue\" }}")),
        case("parse-json-bad", "{{ parseJSON \"{\" }}"),
        case("parse-int-bad", "{{ parseInt \"12a\" }}"),
        case("indent-neg", "{{ indent -1 \"x\" }}"),
        case("len-nil", &w1("{{ len .Data.none }}")),
        case("execute-undefined", "{{ executeTemplate \"nope\" }}"),
        case(
            "execute-args",
            "{{ define \"a\" }}x{{ end }}{{ executeTemplate \"a\" 1 2 }}",
        ),
        case(
            "kv2-deleted",
            &format!("{{{{ with secret \"{kv2}/gone\" }}}}{{{{ .Data.data.a }}}}{{{{ end }}}}"),
        ),
    ];
    cases[0].emk = true;
    cases[1].emk = true;
    let dir = scratch("gotemplates-fail");
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|c| {
                let d = dir.join(&c.name);
                s.spawn(move || {
                    let (ok, files, log) = agent(bao, &d, std::slice::from_ref(c), &[]);
                    (ok, files.into_iter().next().flatten(), log)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("agent thread"))
            .collect()
    });
    let mut host = TestHost::new(bao.port());
    let mut failures = Vec::new();
    for (c, (ok, file, log)) in cases.iter().zip(results) {
        if ok {
            failures.push(format!(
                "{}: the agent succeeded ({:?}); the case is wrong",
                c.name,
                file.map(|f| String::from_utf8_lossy(&f).into_owned())
            ));
            continue;
        }
        assert!(log.contains("error"), "{}: {log}", c.name);
        match render(&mut host, &c.text, c.delims, c.emk) {
            Ok(out) => failures.push(format!(
                "{}: the agent failed, ours rendered {:?}",
                c.name,
                String::from_utf8_lossy(&out)
            )),
            Err(e) => {
                // Errors name the line and never quote a secret value.
                assert!(e.contains("line 1"), "{}: {e}", c.name);
                for secret in ["p4ss", "admin", "5432", "novalue"] {
                    assert!(!e.contains(secret), "{}: {e}", c.name);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PEM bodies differ between two issuances; their layout (labels, line breaks, newlines around
/// blocks) must not. Each block's base64 lines become one `<base64>` line.
fn pem_shape(b: &[u8]) -> String {
    let text = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut inside = false;
    for piece in text.split_inclusive('\n') {
        let line = piece.trim_end_matches('\n');
        if line.starts_with("-----BEGIN ") || line.contains("-----BEGIN ") {
            inside = true;
            out.push_str(piece);
            out.push_str("<base64>\n");
        } else if line.starts_with("-----END ") {
            inside = false;
            out.push_str(piece);
        } else if !inside {
            // serial numbers and expirations differ too
            let l: String = line
                .chars()
                .map(|c| if c.is_ascii_hexdigit() { 'h' } else { c })
                .collect();
            out.push_str(&l);
            if piece.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[test]
fn pki_cert_and_secret_on_pki_issue_have_the_agents_layout() {
    let bao = Bao::shared();
    let pki = common::vault_pki(bao, "gt-pki");
    let issue = format!("\"{pki}/issue/web\" \"common_name=app.example.com\" \"ttl=1h\"");
    let cases = vec![
        case("pki-all", &format!("{{{{ with pkiCert {issue} }}}}{{{{ .Cert }}}}{{{{ .Key }}}}{{{{ .CA }}}}{{{{ end }}}}")),
        case("pki-data", &format!("{{{{- with pkiCert {issue} -}}}}\n{{{{ .Data.Cert }}}}\n{{{{ .Data.Key }}}}{{{{ end }}}}")),
        case("pki-ca", &format!("{{{{ with pkiCert {issue} }}}}{{{{ .CA }}}}{{{{ end }}}}")),
        case("secret-issue", &format!("{{{{ with secret {issue} }}}}{{{{ .Data.certificate }}}}\n{{{{ .Data.private_key }}}}\n{{{{ .Data.issuing_ca }}}}\n{{{{ range .Data.ca_chain }}}}{{{{ . }}}}\n{{{{ end }}}}{{{{ .Data.private_key_type }}}} {{{{ .LeaseDuration }}}} {{{{ .Renewable }}}}{{{{ end }}}}")),
        case("secret-issue-ca", &format!("{{{{ with secret {issue} }}}}{{{{ .Data.issuing_ca }}}}{{{{ end }}}}")),
        case("secret-cert-a", &format!("{{{{ with secret {issue} }}}}{{{{ .Data.certificate }}}}{{{{ end }}}}")),
        case("secret-cert-b", &format!("{{{{ with secret \"{pki}/issue/web\" \"ttl=1h\" \" common_name = app.example.com\" }}}}{{{{ .Data.certificate }}}}{{{{ end }}}}")),
        case("pki-cert-a", &format!("{{{{ with pkiCert {issue} }}}}{{{{ .Cert }}}}{{{{ end }}}}")),
        // Not the same text as pki-cert-a: the agent keys templates by their text, and with
        // exit_after_auth it exits once one of several identical pkiCert templates is written
        // (docs/vault-agent-templates.md, "What the agent does").
        case("pki-cert-b", &format!("{{{{ with pkiCert {issue} }}}}{{{{ .Cert }}}}{{{{ end }}}}{{{{/* b */}}}}")),
    ];
    let dir = scratch("gotemplates-pki");
    let files = agent_all(bao, &dir, &cases, &[]);
    // What the agent shares, which the caller of the engine must share the same way: a `secret`
    // write is one request for every template (its arguments compared as a trimmed, sorted
    // map); a pkiCert is one per destination file.
    let file = |name: &str| {
        let i = cases.iter().position(|c| c.name == name).unwrap();
        files[i].clone()
    };
    assert_eq!(
        file("secret-cert-a"),
        file("secret-cert-b"),
        "one issuance for equal secret writes"
    );
    assert_ne!(
        file("pki-cert-a"),
        file("pki-cert-b"),
        "a pkiCert per destination"
    );
    let mut host = TestHost::new(bao.port());
    let mut outs = HashMap::new();
    for (c, want) in cases.iter().zip(files) {
        let got = render(&mut host, &c.text, c.delims, c.emk)
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert!(
            want.starts_with(b"-----BEGIN CERTIFICATE-----\n"),
            "{}: {:?}",
            c.name,
            String::from_utf8_lossy(&want)
        );
        assert_eq!(pem_shape(&got), pem_shape(&want), "{}", c.name);
        outs.insert(c.name.clone(), (got, want));
    }
    // The issuing CA is the mount's own: byte-identical, trailing newline from pkiCert's PEM
    // encoding, none in the raw field.
    let (got_ca, want_ca) = &outs["pki-ca"];
    assert_eq!(got_ca, want_ca);
    assert!(got_ca.ends_with(b"-----END CERTIFICATE-----\n"));
    let (raw_ca, _) = &outs["secret-issue-ca"];
    assert_eq!(&got_ca[..got_ca.len() - 1], &raw_ca[..]);
    // Requests with the same path and arguments are one issuance: the certificate and key
    // of pki-all and pki-data come from one answer.
    let (all, _) = &outs["pki-all"];
    let (data, _) = &outs["pki-data"];
    let data = String::from_utf8_lossy(data).replacen("-----\n\n", "-----\n", 1);
    assert!(
        all.starts_with(data.as_bytes()),
        "one issuance for equal pkiCert calls"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
