//! What the app's environment is made of: the `--env NAME=OBJECT` and `--env-file OBJECT`
//! requests, checked before anything is read, and the variables built from the objects' bytes.
//! Pure: no I/O, so every rule is unit-tested here.
//!
//! Invariants: names are valid variable names and set once; values hold no NUL and fit in one
//! `execve` string; values live only in [`SecretBytes`], and [`Environment`]'s `Debug` shows
//! names, never values.

use std::collections::BTreeMap;
use std::fmt;

use super::dotenv;
use super::ExecError;
use crate::render::is_env_name;
use crate::secret::SecretBytes;

/// The kernel's limit on one `NAME=VALUE` string passed to `execve` (MAX_ARG_STRLEN, 32 pages),
/// terminating NUL included.
pub const MAX_VARIABLE_BYTES: usize = 32 * 4096;

/// `--env NAME=OBJECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub object: String,
}

/// Every variable and env-file asked for, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub vars: Vec<Var>,
    pub files: Vec<String>,
    /// `--env-template NAME=TEXT`, in order: NAME is TEXT with `$(VAR)` expanded as kubelet
    /// would ([`super::expand`]), after the variables and env-files.
    pub templates: Vec<(String, String)>,
    /// `--expand`: COMMAND and its arguments are expanded the same way at each start.
    pub expand: bool,
}

impl Request {
    /// Checks the flags' values: `NAME=OBJECT` with a valid name and object name, no name twice.
    pub fn parse(env: &[String], env_files: &[String]) -> Result<Request, ExecError> {
        let mut vars: Vec<Var> = Vec::new();
        for arg in env {
            let (name, object) = arg.split_once('=').ok_or_else(|| {
                ExecError::Usage(format!(
                    "--env {arg:?}: expected NAME=OBJECT, e.g. DB_PASSWORD=myPassword"
                ))
            })?;
            if !is_env_name(name) {
                return Err(ExecError::Usage(format!(
                    "--env {arg:?}: {name:?} is not a valid variable name (letters, digits and _, \
                     not starting with a digit)"
                )));
            }
            check_object("--env", object)?;
            if vars.iter().any(|v| v.name == name) {
                return Err(ExecError::Usage(format!(
                    "--env: {name} is given twice; each variable may be set once"
                )));
            }
            vars.push(Var {
                name: name.to_string(),
                object: object.to_string(),
            });
        }
        for object in env_files {
            check_object("--env-file", object)?;
        }
        if vars.is_empty() && env_files.is_empty() {
            return Err(ExecError::Usage(
                "nothing to set: give at least one --env NAME=OBJECT or --env-file OBJECT".into(),
            ));
        }
        Ok(Request {
            vars,
            files: env_files.to_vec(),
            templates: Vec::new(),
            expand: false,
        })
    }

    /// This request with `--env-template NAME=TEXT` values (each name once, none set by
    /// `--env`) and `--expand`.
    pub fn with_templates(
        mut self,
        templates: &[String],
        expand: bool,
    ) -> Result<Request, ExecError> {
        for arg in templates {
            let (name, text) = arg.split_once('=').ok_or_else(|| {
                ExecError::Usage(format!(
                    "--env-template {:?}: expected NAME=TEXT, e.g. URL=postgres://$(USER)@db",
                    arg.chars().take(64).collect::<String>()
                ))
            })?;
            if !is_env_name(name) {
                return Err(ExecError::Usage(format!(
                    "--env-template: {name:?} is not a valid variable name (letters, digits \
                     and _, not starting with a digit)"
                )));
            }
            let twice = self.vars.iter().any(|v| v.name == name)
                || self.templates.iter().any(|(n, _)| n == name);
            if twice {
                return Err(ExecError::Usage(format!(
                    "--env-template: {name} is given twice; each variable may be set once"
                )));
            }
            self.templates.push((name.to_string(), text.to_string()));
        }
        self.expand = expand;
        Ok(self)
    }

    /// The objects to read, each once, in the order first asked for.
    pub fn objects(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for o in self
            .vars
            .iter()
            .map(|v| v.object.as_str())
            .chain(self.files.iter().map(String::as_str))
        {
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }

    /// The variables, from `values` (object name → bytes, every object of [`Request::objects`]).
    /// `--env` first, then each env-file's assignments in file order.
    pub fn build(&self, values: &BTreeMap<&str, &SecretBytes>) -> Result<Environment, ExecError> {
        self.build_in(values, &process_env)
    }

    /// [`Request::build`] with `base` as the environment exec was started with (what
    /// templates and `--expand` see besides the variables built here).
    pub fn build_in(
        &self,
        values: &BTreeMap<&str, &SecretBytes>,
        base: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Environment, ExecError> {
        let value_of = |object: &str| {
            values.get(object).copied().ok_or_else(|| {
                ExecError::Usage(format!(
                    "object {object:?} was not read (a bug in secretdrop)"
                ))
            })
        };
        let mut vars: Vec<(String, SecretBytes)> = Vec::new();
        // Where each name came from, for the message about a name set twice.
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for v in &self.vars {
            let value = value_of(&v.object)?;
            check_value(&v.name, value.expose(), &v.object)?;
            origin.insert(v.name.clone(), format!("--env {}={}", v.name, v.object));
            vars.push((v.name.clone(), value.clone()));
        }
        for object in &self.files {
            let assignments =
                dotenv::parse(value_of(object)?.expose()).map_err(|message| ExecError::Value {
                    object: object.clone(),
                    message: format!("as --env-file: {message}"),
                })?;
            for a in assignments {
                let here = format!("--env-file {object}");
                if let Some(first) = origin.get(&a.name) {
                    return Err(ExecError::Usage(format!(
                        "{} is set by both {first} and {here}; each variable may be set once",
                        a.name
                    )));
                }
                check_value(&a.name, a.value.expose(), object)?;
                origin.insert(a.name.clone(), here);
                vars.push((a.name, a.value));
            }
        }
        for (name, text) in &self.templates {
            let lookup = |n: &str| match vars.iter().rev().find(|(v, _)| v == n) {
                Some((_, value)) => Some(value.expose().to_vec()),
                None => base(n),
            };
            let value = SecretBytes::new(super::expand::expand(text, &lookup));
            check_value(name, value.expose(), &format!("--env-template {name}"))?;
            vars.push((name.clone(), value));
        }
        Ok(Environment {
            vars,
            expand: self.expand,
        })
    }
}

/// A variable of the environment exec was started with.
fn process_env(name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    std::env::var_os(name).map(|v| v.as_bytes().to_vec())
}

/// An object name as the config allows it (a clean relative path).
fn check_object(flag: &str, object: &str) -> Result<(), ExecError> {
    crate::config::names::validate_name(object)
        .map_err(|m| ExecError::Usage(format!("{flag}: object name {m}")))
}

fn check_value(name: &str, value: &[u8], object: &str) -> Result<(), ExecError> {
    let err = |message: String| ExecError::Value {
        object: object.to_string(),
        message,
    };
    if value.contains(&0) {
        return Err(err(format!(
            "the value for {name} contains a NUL byte, which an environment variable cannot \
             hold; mount the object as a file instead"
        )));
    }
    let size = name.len() + 1 + value.len() + 1;
    if size > MAX_VARIABLE_BYTES {
        return Err(err(format!(
            "{name}=VALUE is {size} bytes; Linux passes at most {MAX_VARIABLE_BYTES} bytes per \
             variable; mount the object as a file instead"
        )));
    }
    Ok(())
}

/// The variables to add to the app's environment. Equality compares values, so a new version
/// that changes nothing the app sees does not restart it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Environment {
    vars: Vec<(String, SecretBytes)>,
    /// `--expand`: the command is expanded with these variables over exec's own.
    expand: bool,
}

impl Environment {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretBytes)> {
        self.vars.iter().map(|(n, v)| (n.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// `argv` as the app gets it: with `--expand`, each `$(VAR)` expanded with these
    /// variables, then exec's own environment, as kubelet expands a container's command.
    pub fn command(&self, argv: &[String]) -> Vec<std::ffi::OsString> {
        use std::os::unix::ffi::OsStringExt;
        argv.iter()
            .map(|a| match self.expand {
                false => a.into(),
                true => {
                    let lookup = |n: &str| match self.vars.iter().rev().find(|(v, _)| v == n) {
                        Some((_, value)) => Some(value.expose().to_vec()),
                        None => process_env(n),
                    };
                    std::ffi::OsString::from_vec(super::expand::expand(a, &lookup))
                }
            })
            .collect()
    }
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.vars.iter().map(|(n, _)| format!("{n}=<redacted>")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn request(env: &[&str], files: &[&str]) -> Result<Request, String> {
        Request::parse(&strings(env), &strings(files)).map_err(|e| e.to_string())
    }

    fn build(req: &Request, values: &[(&str, &str)]) -> Result<Vec<(String, String)>, ExecError> {
        let owned: Vec<(&str, SecretBytes)> = values
            .iter()
            .map(|(k, v)| (*k, SecretBytes::new(v.as_bytes().to_vec())))
            .collect();
        let map = owned.iter().map(|(k, v)| (*k, v)).collect();
        Ok(req
            .build(&map)?
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.expose()).into()))
            .collect())
    }

    #[test]
    fn requests_are_checked_before_anything_is_read() {
        let r = request(&["DB_USER=myUsername", "_P2=tls/ca.crt"], &["app.env"]).unwrap();
        assert_eq!(r.objects(), ["myUsername", "tls/ca.crt", "app.env"]);
        for (env, want) in [
            (&["DB_USER"][..], "expected NAME=OBJECT"),
            (&["1X=a"], "not a valid variable name"),
            (&["A-B=a"], "not a valid variable name"),
            (&["=a"], "not a valid variable name"),
            (&["A="], "empty name"),
            (&["A=../etc/passwd"], "traverses"),
            (&["A=/etc/passwd"], "absolute"),
            (&["A=..data/x"], "\"..\""),
            (&["A=a", "A=b"], "A is given twice"),
        ] {
            let e = request(env, &[]).unwrap_err();
            assert!(e.contains(want), "{env:?}: {e}");
        }
        assert!(request(&[], &["../x"]).unwrap_err().contains("--env-file"));
        assert!(request(&[], &[]).unwrap_err().contains("nothing to set"));
        // One object may feed several variables; it is read once.
        let r = request(&["A=x", "B=x"], &["x"]).unwrap();
        assert_eq!(r.objects(), ["x"]);
    }

    #[test]
    fn variables_come_from_values_and_env_files() {
        let r = request(&["PASSWORD=pw"], &["app.env"]).unwrap();
        let vars = build(
            &r,
            &[("pw", "s3cr3t\n"), ("app.env", "USER=admin\nURL='a b'\n")],
        )
        .unwrap();
        assert_eq!(
            vars,
            [
                ("PASSWORD".into(), "s3cr3t\n".into()),
                ("USER".into(), "admin".into()),
                ("URL".into(), "a b".into())
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_object_and_never_showing_the_value() {
        let r = request(&["A=a"], &["f"]).unwrap();
        let cases = [
            (vec![("a", "x\0y"), ("f", "")], "NUL byte"),
            (
                vec![("a", "ok"), ("f", "A=dup\n")],
                "A is set by both --env A=a and --env-file f",
            ),
            (
                vec![("a", "ok"), ("f", "B=not quoted\n")],
                "object \"f\": as --env-file: line 1 (B)",
            ),
        ];
        for (values, want) in cases {
            let e = build(&r, &values).unwrap_err();
            let text = e.to_string();
            assert!(text.contains(want), "{text}");
            assert!(
                !text.contains("not quoted") && !text.contains("x\0y"),
                "{text}"
            );
            assert!(e.is_config());
        }
        let big = "x".repeat(MAX_VARIABLE_BYTES);
        let e = build(&r, &[("a", &big), ("f", "")]).unwrap_err();
        assert!(e.to_string().contains("at most 131072 bytes"), "{e}");
    }

    #[test]
    fn debug_shows_names_not_values() {
        let r = request(&["A=a"], &[]).unwrap();
        let v = SecretBytes::new(b"hunter2".to_vec());
        let env = r.build(&BTreeMap::from([("a", &v)])).unwrap();
        let shown = format!("{env:?}");
        assert!(
            shown.contains("A=<redacted>") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn templates_expand_over_the_variables_then_the_base_and_the_command_too() {
        let r = Request::parse(&strings(&["PW=pw"]), &[])
            .unwrap()
            .with_templates(
                &strings(&["URL=db://$(USER):$(PW)@$(HOST)/$$(PW)", "BOTH=$(URL)!"]),
                true,
            )
            .unwrap();
        let pw = SecretBytes::new(b"s3cret".to_vec());
        let base = |n: &str| (n == "USER").then(|| b"app".to_vec());
        let env = r.build_in(&BTreeMap::from([("pw", &pw)]), &base).unwrap();
        let got: Vec<(String, String)> = env
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8(v.expose().to_vec()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got[1],
            ("URL".into(), "db://app:s3cret@$(HOST)/$(PW)".into())
        );
        assert_eq!(
            got[2],
            ("BOTH".into(), "db://app:s3cret@$(HOST)/$(PW)!".into())
        );
        assert!(!format!("{env:?}").contains("s3cret"));
        let argv = env.command(&strings(&["/app", "--pw=$(PW)", "$$(PW)"]));
        assert_eq!(argv, ["/app", "--pw=s3cret", "$(PW)"]);
        let twice = Request::parse(&strings(&["PW=pw"]), &[])
            .unwrap()
            .with_templates(&strings(&["PW=x"]), false);
        assert!(twice.is_err());
    }
}
