//! Unit tests of the template engine. Expected outputs are what `bao agent` 2.7.2 wrote for
//! the same templates and answers (tests/go_templates.rs compares the two live; the values
//! here were copied from its runs and from docs/vault-agent-templates.md).

use super::*;

struct FakeHost {
    answers: Vec<(Request, Vec<u8>)>,
    asked: Vec<Request>,
}

impl FakeHost {
    fn new(answers: &[(&str, &str)]) -> FakeHost {
        FakeHost {
            answers: answers
                .iter()
                .map(|(p, a)| (read(p), a.as_bytes().to_vec()))
                .collect(),
            asked: Vec::new(),
        }
    }
}

impl Host for FakeHost {
    fn answer(&mut self, req: &Request) -> Option<Result<Vec<u8>, String>> {
        self.asked.push(req.clone());
        self.answers
            .iter()
            .find(|(r, _)| r == req)
            .map(|(_, a)| Ok(a.clone()))
    }
    fn env(&self, name: &str) -> String {
        if name == "NAMESPACE" {
            "team-a".into()
        } else {
            String::new()
        }
    }
}

fn read(path: &str) -> Request {
    Request {
        kind: Kind::Secret,
        path: path.into(),
        args: vec![],
    }
}

const KV2: &str = r#"{"request_id":"r1","lease_id":"","renewable":false,"lease_duration":0,
 "data":{"data":{"password":"p4ssw0rd","username":"admin"},
 "metadata":{"created_time":"2026-12-06T19:37:11.161194865Z","custom_metadata":null,
 "deletion_time":"","destroyed":false,"version":5}},"wrap_info":null,"warnings":null,"auth":null}"#;

const TYPED: &str = r#"{"request_id":"r2","lease_id":"","renewable":false,"lease_duration":2764800,
 "data":{"allowed":["a","b","c",3],"big":12345678901234567000,"empty":"",
 "features":{"beta":true,"limit":10,"ratio":0.75},"none":null,"url":"postgres://u:p@h/db?a=1&b=<2>",
 "port":5432,"b64":"aGVsbG8gd29ybGQ=","bin":"AP8Q/w=="},"warnings":null}"#;

fn host() -> FakeHost {
    FakeHost::new(&[("secret/app", KV2), ("kv/typed", TYPED)])
}

fn render_with(text: &str, opts: &Options) -> Result<Vec<u8>, String> {
    let t = Template::parse(text, "", "").map_err(|e| format!("parse: {e}"))?;
    match execute(&t, &mut host(), opts).map_err(|e| format!("exec: {e}"))? {
        Outcome::Rendered(b) => Ok(b),
        Outcome::Missing(m) => Err(format!("missing {m:?}")),
    }
}

fn render(text: &str) -> String {
    String::from_utf8(render_with(text, &Options::new(false)).unwrap()).unwrap()
}

fn fails(text: &str, opts: &Options) -> String {
    render_with(text, opts).unwrap_err()
}

#[test]
fn default_templates_print_as_the_agent() {
    let map = r#"{{ with secret "secret/app" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}
{{ end }}{{ end }}"#;
    assert_eq!(
        render(map),
        "data: map[password:p4ssw0rd username:admin]\nmetadata: map[created_time:2026-12-06T19:37:11.161194865Z custom_metadata:<nil> deletion_time: destroyed:false version:5]\n"
    );
    let json = "{{ with secret \"secret/app\" }}{{ .Data | toJSON }}\n{{ end }}";
    assert_eq!(
        render(json),
        "{\"data\":{\"password\":\"p4ssw0rd\",\"username\":\"admin\"},\"metadata\":{\"created_time\":\"2026-12-06T19:37:11.161194865Z\",\"custom_metadata\":null,\"deletion_time\":\"\",\"destroyed\":false,\"version\":5}}\n"
    );
}

#[test]
fn values_print_as_go_prints_them() {
    assert_eq!(
        render("{{ with secret \"kv/typed\" }}{{ .Data }}{{ end }}"),
        "map[allowed:[a b c 3] b64:aGVsbG8gd29ybGQ= big:12345678901234567000 bin:AP8Q/w== empty: features:map[beta:true limit:10 ratio:0.75] none:<nil> port:5432 url:postgres://u:p@h/db?a=1&b=<2>]"
    );
    assert_eq!(
        render("{{ with secret \"kv/typed\" }}{{ .Data.none }}|{{ .Data.absent }}|{{ .Warnings }}|{{ .LeaseDuration }}|{{ .Data.big }}{{ end }}"),
        "<no value>|<no value>|[]|2764800|12345678901234567000"
    );
    // Go's %v of float64 switches to the exponent form at 1e+06; ints and json.Number don't.
    assert_eq!(
        render(
            r#"{{ printf "%v %v %v %v" 1000000.0 123456.0 1e21 1.5 }}|{{ printf "%x %X %o %b %c %q" 255 255 8 5 65 66 }}|{{ printf "%+d % d %x" 5 5 "hi" }}"#
        ),
        "1e+06 123456 1e+21 1.5|ff FF 10 101 A 'B'|+5  5 6869"
    );
    assert_eq!(
        render(
            r#"{{ with secret "kv/typed" }}{{ printf "%d|%s|%05d|%-4s|%q" .Data.port .Data.port 42 "ab" "a\x01b" }}{{ end }}"#
        ),
        "%!d(json.Number=5432)|5432|00042|ab  |\"a\\x01b\""
    );
    assert_eq!(
        render(r#"{{ printf "%s" nil }}|{{ printf "%d %s" 1 }}|{{ printf "%d" 1 2 }}"#),
        "%!s(<nil>)|1 %!s(MISSING)|1%!(EXTRA int=2)"
    );
    assert_eq!(
        render(r#"{{ print "a" 1 2 "b" 3 }}|{{ println "x" 1 }}"#),
        "a1 2b3|x 1\n"
    );
    assert_eq!(render("{{ `raw\\n` }}|{{ \"esc\\t\\x41\" }}|{{ 'a' }}|{{ 0x1F }}|{{ 1_000 }}|{{ 1e3 }}|{{ .5 }}|{{ 07 }}"), "raw\\n|esc\tA|97|31|1000|1000|0.5|7");
}

#[test]
fn json_functions_match_go_encoding_json() {
    let t = r#"{{ with secret "kv/typed" }}{{ .Data.features | toJSONPretty }}|{{ .Data.url | toJSON }}|{{ .Data.url | toUnescapedJSON }}{{ end }}"#;
    assert_eq!(
        render(t),
        "{\n  \"beta\": true,\n  \"limit\": 10,\n  \"ratio\": 0.75\n}|\"postgres://u:p@h/db?a=1\\u0026b=\\u003c2\\u003e\"|\"postgres://u:p@h/db?a=1&b=<2>\""
    );
    assert_eq!(
        render(
            r#"{{ toJSONPretty (parseJSON "{}") }}|{{ toJSONPretty (parseJSON "[]") }}|{{ toJSON 5 }}|{{ toJSON 1.5 }}|{{ toJSON "é<" }}"#
        ),
        "{}|[]|5|1.5|\"é\\u003c\""
    );
    // parseJSON decodes numbers as float64 (no UseNumber): 1000000 prints 1e+06.
    assert_eq!(
        render(r#"{{ parseJSON "{\"a\":1,\"b\":[1,2.5,1000000],\"c\":{\"d\":null}}" }}"#),
        "map[a:1 b:[1 2.5 1e+06] c:map[d:<nil>]]"
    );
    assert_eq!(
        render(r#"{{ toJSON (parseJSON "[1e21, 1e-7, 0.000001, 123456789]") }}"#),
        "[1e+21,1e-7,0.000001,123456789]"
    );
}

#[test]
fn functions_match_consul_template() {
    assert_eq!(
        render(
            r#"{{ " a,b , c " | split "," }}|{{ "db1,db2" | split "," | join "+" }}|{{ split "," "" }}|{{ trim "xy" "xyhixy" }}|{{ trimPrefix "pre" "prefix" }}|{{ trimSuffix "fix" "prefix" }}|{{ "MiXeD" | toLower }}|{{ "héllo" | toUpper }}|{{ replaceAll "a" "b" "banana" }}|{{ split "" "abc" }}"#
        ),
        "[a b   c]|db1+db2|[]|hi|fix|pre|mixed|HÉLLO|bbnbnb|[a b c]"
    );
    assert_eq!(
        render_with(r#"{{ "aGVsbG8gd29ybGQ=" | base64Decode }}|{{ "admin" | base64Encode }}|{{ base64URLEncode "\xff\xfe?>" }}|{{ base64URLDecode "__4_Pg==" }}"#, &Options::new(false)).unwrap(),
        b"hello world|YWRtaW4=|__4_Pg==|\xff\xfe?>".to_vec()
    );
    assert_eq!(
        render(
            r#"{{ add 1 2 }} {{ subtract 1 10 }} {{ multiply 3 4 }} {{ divide 2 10 }} {{ modulo 3 10 }} {{ minimum 3 10 }} {{ maximum 3 10 }} {{ add 1.5 2 }} {{ divide 4 10.0 }} {{ "5432" | parseInt | add 1 }}"#
        ),
        "3 9 12 5 1 3 10 3.5 2.5 5433"
    );
    assert_eq!(render("{{ range loop 3 }}{{ . }},{{ end }}|{{ range $i := loop 2 5 }}{{ $i }}{{ end }}|{{ range loop \"2\" }}s{{ end }}|{{ range $i := 3 }}{{ $i }}{{ end }}"), "0,1,2,|234|ss|012");
    assert_eq!(
        render(r#"{{ sha256Hex "admin" }} {{ indent 2 "a\nb" }} {{ html "<&>" }} {{ urlquery "a b&" }} {{ hmacSHA256Hex "msg" "key" }}"#),
        "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918   a\n  b &lt;&amp;&gt; a+b%26 2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628"
    );
    assert_eq!(
        render(
            r#"{{ env "NAMESPACE" }}|{{ env "UNSET" }}|{{ parseBool "true" }} {{ parseFloat "1e6" }} {{ parseFloat "123456789" }}"#
        ),
        "team-a||true 1e+06 1.23456789e+08"
    );
    let bin = render_with(
        r#"{{ with secret "kv/typed" }}{{ .Data.bin | base64Decode }}{{ end }}"#,
        &Options::new(false),
    )
    .unwrap();
    assert_eq!(
        bin, b"\x00\xff\x10\xff",
        "arbitrary bytes are written as they are"
    );
}

#[test]
fn control_structures_and_trimming() {
    assert_eq!(
        render("{{- /* c */ -}}\n  {{- \"a\" -}}  \n\t{{ 1 }} {{- \" x \" }}\n{{- 3 }} {{ -3 }}\n"),
        "a1 x 3 -3\n"
    );
    assert_eq!(
        render("{{- with secret \"secret/app\" }}\nA\n{{- end }}\n"),
        "\nA\n"
    );
    assert_eq!(
        render(
            r#"{{ define "row" }}<{{ . }}>{{ end }}{{ template "row" "x" }}{{ template "row" }}{{ block "b" 5 }}[{{ . }}]{{ end }}"#
        ),
        "<x><<no value>>[5]"
    );
    assert_eq!(
        render(
            r#"{{ range $i, $e := split "," "x,y,z,w" }}{{ if eq $e "y" }}{{ continue }}{{ end }}{{ if eq $e "w" }}{{ break }}{{ end }}{{ $i }}{{ $e }}{{ end }}|{{ range split "," "" }}x{{ else }}none{{ end }}"#
        ),
        "0x2z|none"
    );
    assert_eq!(
        render(
            r#"{{ define "greet" }}hi {{ . }}{{ end }}{{ executeTemplate "greet" "bob" | toUpper }}|{{ executeTemplate "greet" }}"#
        ),
        "HI BOB|hi <no value>"
    );
    assert_eq!(
        render(
            r#"{{ if 0 }}a{{ else if "" }}b{{ else if 1 }}c{{ else }}d{{ end }}{{ with $x := "v" }}{{ $x }}{{ . }}{{ end }}"#
        ),
        "cvv"
    );
    assert_eq!(
        render(
            r#"{{ $u := "a" }}{{ $u = "b" }}{{ $u }}|{{ $.Foo }}|{{ and 1 0 2 }}|{{ or 0 "" }}|{{ not nil }}"#
        ),
        "b|<no value>|0||true"
    );
    let delim = Template::parse("[[ \"x\" ]] {{ not }}", "[[", "]]").unwrap();
    match execute(&delim, &mut host(), &Options::new(false)).unwrap() {
        Outcome::Rendered(b) => assert_eq!(b, b"x {{ not }}"),
        Outcome::Missing(_) => panic!("nothing to fetch"),
    }
}

#[test]
fn missing_keys_zero_or_error() {
    let t = "{{ with secret \"secret/app\" }}{{ .Data.data.nope }}{{ end }}";
    assert_eq!(render(t), "<no value>");
    let e = fails(t, &Options::new(true));
    assert_eq!(e, "exec: line 1: map has no entry for key \"nope\"");
    // index ignores the option; a present null is not missing.
    let t = "{{ with secret \"kv/typed\" }}{{ index .Data \"nope\" }}|{{ .Data.none }}{{ end }}";
    assert_eq!(
        String::from_utf8(render_with(t, &Options::new(true)).unwrap()).unwrap(),
        "<no value>|<no value>"
    );
    // A field of a null or missing value is an error in both modes (missingkey=zero).
    let e = fails(
        "{{ with secret \"kv/typed\" }}{{ .Data.none.x }}{{ end }}",
        &Options::new(false),
    );
    assert!(e.contains("nil pointer evaluating interface {}.x"), "{e}");
    let e = fails(
        "{{ with secret \"kv/typed\" }}{{ .Nope }}{{ end }}",
        &Options::new(false),
    );
    assert!(
        e.contains("can't evaluate field Nope in type *dependency.Secret"),
        "{e}"
    );
}

#[test]
fn go_type_rules_make_errors_not_output() {
    let o = Options::new(false);
    for (t, want) in [
        (
            "{{ with secret \"kv/typed\" }}{{ .Data.allowed | join \",\" }}{{ end }}",
            "expected []string; got []interface {}",
        ),
        (
            "{{ with secret \"kv/typed\" }}{{ .Data.port | trimSpace }}{{ end }}",
            "expected string; got json.Number",
        ),
        (
            "{{ with secret \"kv/typed\" }}{{ add 1 .Data.port }}{{ end }}",
            "unknown type json.Number",
        ),
        (
            "{{ with secret \"kv/typed\" }}{{ eq .Data.port 5432 }}{{ end }}",
            "incompatible types for comparison",
        ),
        (
            "{{ containsNone (parseJSON \"[null]\") \"q\" }}",
            "error calling containsNone",
        ),
        (
            "{{ with secret \"kv/typed\" }}{{ .Data.url | base64Decode }}{{ end }}",
            "base64Decode",
        ),
        ("{{ divide 0 1 }}", "integer divide by zero"),
        ("{{ index (split \",\" \"a\") 3 }}", "index out of range: 3"),
        ("{{ secret \"kv/typed\" \"novalue\" }}", "not a k=v pair"),
        ("{{ len nil }}", "len of nil"),
        (
            "{{ range \"abc\" }}{{ end }}",
            "range can't iterate over a string",
        ),
    ] {
        let e = fails(t, &o);
        assert!(e.contains(want), "{t}: {e}");
        for secret in ["5432", "postgres", "novalue", "aGVs"] {
            assert!(!e.contains(secret), "{t}: the error quotes a value: {e}");
        }
    }
}

#[test]
fn unknown_and_unreproducible_functions_are_refused_at_parse() {
    let e = Template::parse("{{ nosuch 1 }}", "", "").unwrap_err();
    assert_eq!(e.to_string(), "line 1: function \"nosuch\" not defined");
    for (f, why) in [
        ("plugin \"x\"", "runs a program"),
        ("file \"/etc/passwd\"", "filesystem"),
        ("timestamp", "time of each render"),
        ("sprig_upper \"x\"", "Sprig"),
        ("spew_dump 1", "internal representation"),
        ("toYAML 1", "YAML"),
        ("writeToFile \"a\" \"\" \"\" \"0644\" \"x\"", "writes files"),
        ("call 1", "function value"),
    ] {
        let e = Template::parse(&format!("a\nb {{{{ {f} }}}}"), "", "").unwrap_err();
        let name = f.split(' ').next().unwrap();
        assert_eq!(e.line, 2, "{f}");
        assert!(
            e.reason
                .contains(&format!("function {name:?} is not supported by secretdrop"))
                && e.reason.contains(why),
            "{e}"
        );
    }
    for (t, want) in [
        ("{{ if true }}x", "unexpected EOF in if"),
        ("{{ $x }}", "undefined variable \"$x\""),
        ("{{ break }}", "{{break}} outside {{range}}"),
        (
            "{{ with 1 }}{{ define \"a\" }}{{ end }}{{ end }}",
            "unexpected <define>",
        ),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ \"x\" | 3 }}", "non executable command"),
        ("{{/* x */ }}", "comment ends before closing delimiter"),
        ("{{ /* x */ }}", "unexpected"),
        ("{{ 1x }}", "number syntax"),
        ("{{ \"unterminated }}", "unterminated quoted string"),
    ] {
        let e = Template::parse(t, "", "").unwrap_err();
        assert!(e.reason.contains(want), "{t}: {e}");
    }
}

#[test]
fn requests_are_discovered_in_one_run_and_fetched_by_the_caller() {
    let t = Template::parse(
        "{{ with secret \"a/1\" }}{{ with secret \"a/inner\" }}{{ end }}{{ end }}{{ (secret \"a/2\").Data.x }}{{ pkiCert \"pki/issue/r\" \" ttl = 1h \" \"common_name=x\" \"\" }}{{ secret \"a/1\" }}{{ secret \"db/creds/r\" \"k=v=w\" }}{{ pkiCert \"pki/issue/r\" \"common_name=other\" }}{{ secret \"db/creds/r\" \" k = v=w\" }}{{ secret \"db/creds/r\" \"k=v\" \"k=v=w\" }}",
        "",
        "",
    )
    .unwrap();
    let mut h = FakeHost::new(&[]);
    let Outcome::Missing(m) = execute(&t, &mut h, &Options::new(false)).unwrap() else {
        panic!("nothing was fetched");
    };
    // The body of a `with` over a value not fetched yet does not run: a/inner comes next pass.
    let paths: Vec<_> = m
        .iter()
        .map(|r| (r.kind, r.path.as_str(), r.args.clone()))
        .collect();
    assert_eq!(
        paths,
        vec![
            (Kind::Secret, "a/1", vec![]),
            (Kind::Secret, "a/2", vec![]),
            (
                Kind::PkiCert,
                "pki/issue/r",
                vec!["common_name=x".to_string(), "ttl=1h".to_string()]
            ),
            (Kind::Secret, "db/creds/r", vec!["k=v=w".to_string()]),
        ]
    );
    assert!(m[2].is_write() && m[3].is_write() && !m[0].is_write());
    assert_eq!(
        serde_json::Value::Object(m[2].body()).to_string(),
        r#"{"common_name":"x","ttl":"1h"}"#
    );
    assert_eq!(
        serde_json::Value::Object(m[3].body()).to_string(),
        r#"{"k":"v=w"}"#
    );
    // Each request is asked of the host once per run, however often the template uses it.
    assert_eq!(h.asked.iter().filter(|r| r.path == "a/1").count(), 1);
    // Paths are trimmed of spaces and slashes as consul-template does.
    let t = Template::parse("{{ secret \" /secret/app/ \" }}", "", "").unwrap();
    let Outcome::Missing(m) = execute(&t, &mut FakeHost::new(&[]), &Options::new(false)).unwrap()
    else {
        panic!("nothing was fetched");
    };
    assert_eq!(m[0].path, "secret/app");
}

#[test]
fn a_failed_read_fails_the_render_with_the_hosts_message() {
    struct Failing;
    impl Host for Failing {
        fn answer(&mut self, _: &Request) -> Option<Result<Vec<u8>, String>> {
            Some(Err("kv/x: permission denied".into()))
        }
        fn env(&self, _: &str) -> String {
            String::new()
        }
    }
    let t = Template::parse("\n{{ with secret \"kv/x\" }}{{ end }}", "", "").unwrap();
    let e = execute(&t, &mut Failing, &Options::new(false)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 2: error calling secret: kv/x: permission denied"
    );
}

#[test]
fn bounds_stop_hostile_templates() {
    let o = Options::new(false);
    // a loop of a billion, and a nesting bomb, are cut off by the step bound
    let e = fails("{{ range loop 1 1000000000 }}{{ end }}", &o);
    assert!(e.contains("more than 1000000 steps"), "{e}");
    let e = fails("{{ range loop 1000 }}{{ range loop 1000 }}{{ range loop 1000 }}x{{ end }}{{ end }}{{ end }}", &o);
    assert!(e.contains("steps") || e.contains("output exceeds"), "{e}");
    // output
    let small = Options {
        max_output: 1000,
        ..Options::new(false)
    };
    let e = fails("{{ range loop 2000 }}x{{ end }}", &small);
    assert!(e.contains("the output exceeds 1000 bytes"), "{e}");
    // a value that grows past the bound (each replaceAll multiplies the length by 10)
    let grow = "{{ $s := \"aaaaaaaaaa\" }}".to_string()
        + &"{{ $s = replaceAll \"a\" \"aaaaaaaaaa\" $s }}".repeat(8);
    let e = fails(&grow, &Options::new(false));
    assert!(e.contains("would exceed 4194304 bytes"), "{e}");
    // each refused before it is built: a 4 MiB replacement of every byte, a join, an indent,
    // a printf of many wide verbs, toJSONPretty of a big value
    let big = "{{ $b := printf \"%4000000s\" \"x\" }}";
    for t in [
        format!("{big}{{{{ replaceAll \" \" $b $b }}}}"),
        format!("{big}{{{{ $l := split \",\" \"a,b,c\" }}}}{{{{ join $b $l }}}}"),
        format!("{big}{{{{ indent 4000000 \"a\\nb\" }}}}"),
        format!(
            "{{{{ printf \"{}\" {} }}}}",
            "%9000000d".repeat(100),
            "1 ".repeat(100)
        ),
        format!("{big}{{{{ toJSON (split \",\" (printf \"%s,%s\" $b $b)) }}}}"),
    ] {
        let e = fails(&t, &o);
        assert!(e.contains("exceed"), "{e}");
    }
    // parts of a split, each a value of its own
    let e = fails(
        "{{ split \",\" (printf \"%200000s\" \"\" | replaceAll \" \" \",\") }}",
        &o,
    );
    assert!(e.contains("more than 100000 parts"), "{e}");
    assert_eq!(
        render("{{ len (split \",\" (printf \"%100000s\" \"x\" | replaceAll \" \" \",\")) }}"),
        "100000"
    );
    // Go's own width limit: a width past ~10^7 swallows the format; the rest is the output bound
    assert_eq!(render("{{ printf \"%2000000d\" 1 }}").len(), 2_000_000);
    assert_eq!(
        render("{{ printf \"%20000000d\" 1 }}"),
        "%!(NOVERB)%!(EXTRA int=1)"
    );
    assert_eq!(render("{{ printf \"%*d\" 2000000 1 }}"), "%!(BADWIDTH)1");
    let e = fails("{{ printf \"%9000000d\" 1 }}", &o);
    assert!(e.contains("the result exceeds"), "{e}");
    // recursion through templates
    let e = fails(
        "{{ define \"a\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}",
        &o,
    );
    assert!(e.contains("maximum template depth"), "{e}");
    // parse nesting
    let deep = "{{ if true }}".repeat(200) + &"{{ end }}".repeat(200);
    assert!(Template::parse(&deep, "", "")
        .unwrap_err()
        .reason
        .contains("nested deeper"));
    let parens = format!("{{{{ {}1{} }}}}", "(".repeat(200), ")".repeat(200));
    assert!(Template::parse(&parens, "", "")
        .unwrap_err()
        .reason
        .contains("nested deeper"));
    // JSON nesting in parseJSON
    let json = format!(
        "{{{{ parseJSON \"{}{}\" }}}}",
        "[".repeat(500),
        "]".repeat(500)
    );
    assert!(fails(&json, &o).contains("nested too deeply"));
}

#[test]
fn kv2_path_rewrite() {
    for (path, mount, v2, want) in [
        ("secret/app", "secret/", true, "secret/data/app"),
        ("secret/data/app", "secret/", true, "secret/data/app"),
        (
            "secret/metadata/app",
            "secret/",
            true,
            "secret/metadata/app",
        ),
        ("secret", "secret/", true, "secret/data"),
        ("secret/", "secret/", true, "secret/data"),
        ("team/kv/a/b", "team/kv/", true, "team/kv/data/a/b"),
        ("secret/app", "secret/", false, "secret/app"),
        ("secret/./x/../app", "secret/", true, "secret/data/app"),
    ] {
        assert_eq!(kv2_path(path, mount, v2), want, "{path} on {mount}");
    }
}

#[test]
fn template_is_clone_and_debug_shows_the_source() {
    let t = Template::parse("{{ 1 }}", "", "").unwrap();
    let u = t.clone();
    assert_eq!(format!("{u:?}"), "Template { source: \"{{ 1 }}\" }");
}

#[test]
fn mutated_templates_never_panic() {
    // Deterministic mutations (a linear congruential generator) of templates that use every
    // construct: whatever parses must execute to output or an error, within the bounds.
    let seeds = [
        r#"{{ with secret "secret/app" }}{{ range $k, $v := .Data }}{{ $k }}: {{ $v }}
{{ end }}{{ end }}"#,
        r#"{{- define "a" }}{{ . | printf "%-5.2q|%x" 3 }}{{ end }}{{ template "a" (index (split "," "x,y") 1) }}"#,
        r#"{{ if and (eq 1 1) (lt "a" "b") }}{{ toJSONPretty (parseJSON "{\"a\":[1,null,{\"b\":2.5e10}]}") }}{{ else }}{{ 'x' }}{{ end }}"#,
        r#"{{ range $i, $e := loop 3 }}{{ if $i }}{{ continue }}{{ end }}{{ $e | add 1 | multiply 2 }}{{ break }}{{ end }}{{ with secret "kv/typed" }}{{ .Data.big }}{{ base64Decode .Data.b64 }}{{ end }}"#,
    ];
    let opts = Options {
        max_output: 1 << 16,
        max_steps: 10_000,
        ..Options::new(false)
    };
    let alphabet: &[u8] =
        b"{}()|$.\"'`-: ,=0123456789abcdefxyzDataif else end range with define template";
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let (mut parsed, mut rendered) = (0, 0);
    for round in 0..20_000 {
        let mut b = seeds[round % seeds.len()].as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = next() % (b.len() + 1);
            match next() % 3 {
                0 if at < b.len() => {
                    b.remove(at);
                }
                1 => b.insert(at, alphabet[next() % alphabet.len()]),
                _ if at < b.len() => b[at] = alphabet[next() % alphabet.len()],
                _ => {}
            }
        }
        let text = String::from_utf8_lossy(&b);
        let Ok(t) = Template::parse(&text, "", "") else {
            continue;
        };
        parsed += 1;
        if let Ok(Outcome::Rendered(out)) = execute(&t, &mut host(), &opts) {
            assert!(out.len() <= opts.max_output);
            rendered += 1;
        }
    }
    // The mutations must leave enough valid templates for the check to mean something.
    assert!(
        parsed > 400 && rendered > 100,
        "parsed {parsed}, rendered {rendered}"
    );
}
