//! Overrides of the file's values from the environment and from flags.
//!
//! A variable `CLUSTER_` + the field's path in capitals, with `__` between levels, sets that
//! field (`CLUSTER_NODE__ID=n2`, `CLUSTER_TIMING__LEASE_TTL=15s`, `CLUSTER_APP__0__MODE=pool`).
//! A flag `--set node.id=n2` (or `app[0].mode=pool`) does the same and beats the environment,
//! which beats the file. Variables without `__` (`CLUSTER_ADDR`, `CLUSTER_TOKEN`) are the admin
//! commands' own and are not config.
//!
//! A value is read as a TOML literal when it is one (`64`, `true`, `["a", "b"]`) and as a
//! string otherwise (`n2`, `10s`, `http://10.0.0.1:2379`).

use std::fmt;

use cluster_core::config::ConfigError;

use super::COMPONENT;

/// The prefix of every override variable.
pub const ENV_PREFIX: &str = "CLUSTER_";

/// One step of a field path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// Where an override came from, so that an error names what the user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    Env(String),
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(text) => write!(f, "--set {text}"),
        }
    }
}

/// One field set from outside the file.
#[derive(Debug, Clone)]
pub(crate) struct Override {
    pub(crate) path: Vec<Step>,
    pub(crate) value: String,
    pub(crate) origin: Origin,
}

/// A path as the errors write it: `app[1].health[0].kind`.
pub(crate) fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn step(segment: &str) -> Step {
    match segment.parse::<usize>() {
        Ok(i) => Step::Index(i),
        Err(_) => Step::Key(segment.to_owned()),
    }
}

/// The overrides among `vars`, in name order (so that two runs apply them alike).
pub(crate) fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") {
                return None;
            }
            let path = rest
                .split("__")
                .map(|s| step(&s.to_ascii_lowercase()))
                .collect();
            Some(Override {
                path,
                value,
                origin: Origin::Env(name),
            })
        })
        .collect();
    found.sort_by_key(|o| o.origin.to_string());
    found
}

/// `--set` flags: `node.id=n2`, `app[0].mode=pool` or `app.0.mode=pool`.
pub(crate) fn from_flags(flags: &[String]) -> Result<Vec<Override>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut found = Vec::new();
    for flag in flags {
        let Some((path, value)) = flag.split_once('=') else {
            errors.push(ConfigError::new(
                COMPONENT,
                format!("--set {flag}"),
                "expected PATH=VALUE, e.g. --set node.id=n2",
            ));
            continue;
        };
        let mut steps = Vec::new();
        for part in path.trim().split('.') {
            let (key, indexes) = match part.find('[') {
                Some(at) => (&part[..at], &part[at..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                steps.push(step(key));
            }
            for index in indexes.split('[').filter(|s| !s.is_empty()) {
                match index.strip_suffix(']').and_then(|i| i.parse().ok()) {
                    Some(i) => steps.push(Step::Index(i)),
                    None => errors.push(ConfigError::new(
                        COMPONENT,
                        format!("--set {flag}"),
                        format!("{part:?} is not a key or key[index]"),
                    )),
                }
            }
        }
        if steps.is_empty() {
            errors.push(ConfigError::new(
                COMPONENT,
                format!("--set {flag}"),
                "the path is empty",
            ));
            continue;
        }
        found.push(Override {
            path: steps,
            value: value.to_owned(),
            origin: Origin::Flag(flag.clone()),
        });
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// The value as TOML would read it, or the text itself.
fn literal(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// Sets `o`'s field in `root`, creating the tables on its way; an index may name an existing
/// element or the next one (which is created).
pub(crate) fn apply(root: &mut toml::Value, o: &Override) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::new(COMPONENT, path_text(&o.path), reason);
    let (last, parents) = o.path.split_last().expect("a path has a step");
    let mut at = root;
    for (i, s) in parents.iter().enumerate() {
        let next_is_index = matches!(o.path[i + 1], Step::Index(_));
        let empty = || {
            if next_is_index {
                toml::Value::Array(Vec::new())
            } else {
                toml::Value::Table(toml::Table::new())
            }
        };
        at = match (s, at) {
            (Step::Key(k), toml::Value::Table(t)) => t.entry(k.clone()).or_insert_with(empty),
            (Step::Index(n), toml::Value::Array(a)) => {
                if *n == a.len() {
                    a.push(empty());
                }
                let len = a.len();
                a.get_mut(*n).ok_or_else(|| {
                    bad(format!("{} sets element {n} of a list of {len}", o.origin))
                })?
            }
            _ => {
                return Err(bad(format!(
                    "{} goes through a value that is not a table or list",
                    o.origin
                )));
            }
        };
    }
    let value = literal(&o.value);
    match (last, at) {
        (Step::Key(k), toml::Value::Table(t)) => {
            t.insert(k.clone(), value);
            Ok(())
        }
        (Step::Index(n), toml::Value::Array(a)) if *n <= a.len() => {
            if *n == a.len() {
                a.push(value);
            } else {
                a[*n] = value;
            }
            Ok(())
        }
        _ => Err(bad(format!("{} cannot set this field", o.origin))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_variables_with_a_level_separator_are_config() {
        let found = from_env(vars(&[
            ("CLUSTER_NODE__ID", "n2"),
            ("CLUSTER_ADDR", "http://x"),
            ("CLUSTER_TOKEN", "t"),
            ("PATH", "/bin"),
            ("CLUSTER_APP__1__MODE", "pool"),
        ]));
        let paths: Vec<_> = found.iter().map(|o| path_text(&o.path)).collect();
        assert_eq!(paths, ["app[1].mode", "node.id"]);
    }

    #[test]
    fn values_are_toml_literals_or_text() {
        let mut root = toml::Value::Table(toml::Table::new());
        for (path, value) in [
            ("CLUSTER_APP__0__PARTITIONS", "64"),
            ("CLUSTER_APP__0__NAME", "jobs"),
            ("CLUSTER_TIMING__LEASE_TTL", "10s"),
            (
                "CLUSTER_COORDINATION__ETCD__ENDPOINTS",
                r#"["http://a:2379"]"#,
            ),
        ] {
            for o in from_env(vars(&[(path, value)])) {
                apply(&mut root, &o).unwrap();
            }
        }
        assert_eq!(root["app"][0]["partitions"].as_integer(), Some(64));
        assert_eq!(root["app"][0]["name"].as_str(), Some("jobs"));
        assert_eq!(root["timing"]["lease_ttl"].as_str(), Some("10s"));
        assert_eq!(
            root["coordination"]["etcd"]["endpoints"][0].as_str(),
            Some("http://a:2379")
        );
    }

    #[test]
    fn flags_take_dotted_or_indexed_paths() {
        let found = from_flags(&["app[2].mode=ring".into(), "node.labels.zone=a".into()]).unwrap();
        assert_eq!(path_text(&found[0].path), "app[2].mode");
        assert_eq!(path_text(&found[1].path), "node.labels.zone");
        let errors = from_flags(&["nothing".into(), "app[x].mode=1".into()]).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].reason.contains("PATH=VALUE"));
    }

    #[test]
    fn an_index_past_the_end_of_a_list_is_refused() {
        let mut root: toml::Value = toml::from_str("[[app]]\nname = \"a\"").unwrap();
        let o = &from_env(vars(&[("CLUSTER_APP__5__NAME", "x")]))[0];
        let err = apply(&mut root, o).unwrap_err();
        assert_eq!(err.field, "app[5].name");
        assert!(err.reason.contains("CLUSTER_APP__5__NAME"), "{err}");
    }
}
