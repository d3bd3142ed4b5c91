//! The CI pipeline files the repository ships (`.gitlab-ci.yml`, `.github/workflows/ci.yml`)
//! parse as YAML, run the README's test command split with `--shard`, cover every shard
//! once, and every `cargo xtask` command in them is one xtask accepts (with the CI
//! system's variables set to sample values).

use crate::Cli;
use clap::Parser;
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn load(relative: &str) -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs =
        YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{relative} is not YAML: {e}"));
    assert_eq!(docs.len(), 1, "{relative}: one document");
    docs.remove(0)
}

/// The lines of a `script` list or a `run` block.
fn lines(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(s) => s.lines().map(str::to_string).collect(),
        Yaml::Array(items) => items.iter().flat_map(lines).collect(),
        _ => Vec::new(),
    }
}

/// The CI system's variables (`$NAME`, `${NAME}`, `${{ expr }}`) replaced by `1`.
fn substitute(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let skip = if let Some(expr) = tail.strip_prefix("{{") {
            2 + expr.find("}}").expect("closed ${{") + 2
        } else if let Some(name) = tail.strip_prefix('{') {
            1 + name.find('}').expect("closed ${") + 1
        } else {
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len())
        };
        out.push('1');
        rest = &tail[skip..];
    }
    out.push_str(rest);
    out
}

/// The `cargo xtask` commands in `lines`, as argument vectors, after checking that xtask
/// accepts each.
fn xtask_commands(file: &str, lines: &[String]) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    for line in lines {
        let Some(at) = line.find("cargo xtask ") else {
            continue;
        };
        let words = shlex::split(&substitute(&line[at + "cargo ".len()..]))
            .unwrap_or_else(|| panic!("{file}: cannot split `{line}`"));
        if let Err(e) = Cli::try_parse_from(&words) {
            panic!("{file}: xtask refuses `{line}`: {}", e.render());
        }
        commands.push(words);
    }
    commands
}

/// The value after `flag` in `words`.
fn value_of<'a>(words: &'a [String], flag: &str) -> Option<&'a str> {
    let at = words.iter().position(|w| w == flag)?;
    words.get(at + 1).map(String::as_str)
}

/// The `N` of a `--shard K/N` argument as written (before substitution).
fn shard_total(line: &str) -> Option<String> {
    let after = &line[line.find("--shard ")? + "--shard ".len()..];
    let total = &after[after.find('/')? + 1..];
    let end = total
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(total.len());
    Some(total[..end].to_string())
}

#[test]
fn gitlab_pipeline_runs_the_readme_test_command_on_every_shard() {
    let file = ".gitlab-ci.yml";
    let root = load(file);
    let map = root.as_hash().expect("a mapping at the top");
    let before = lines(&root["default"]["before_script"]);
    assert!(
        xtask_commands(file, &before).is_empty(),
        "set-up only before the script"
    );
    let mut tests = 0;
    for (name, job) in map {
        let name = name.as_str().unwrap_or_default();
        let script = lines(&job["script"]);
        if script.is_empty() {
            continue;
        }
        for (line, words) in script.iter().zip(xtask_commands(file, &script)) {
            assert_eq!(words[1], "test", "{name}: the README's test command");
            tests += 1;
            // GitLab numbers a `parallel: N` job's copies 1..=N in CI_NODE_INDEX.
            assert!(
                job["parallel"].as_i64().is_some_and(|n| n > 1),
                "{name}: parallel"
            );
            assert_eq!(
                shard_total(line).as_deref(),
                Some("$CI_NODE_TOTAL"),
                "{name}"
            );
            assert!(line.contains("$CI_NODE_INDEX/"), "{name}: {line}");
            let junit = value_of(&words, "--junit").expect("a JUnit report");
            assert_eq!(value_of(&words, "--junit-flavor"), Some("gitlab"), "{name}");
            assert_eq!(
                job["artifacts"]["reports"]["junit"].as_str(),
                Some(junit),
                "{name}"
            );
            assert_eq!(
                job["artifacts"]["when"].as_str(),
                Some("always"),
                "{name}: failures too"
            );
            if words.iter().any(|w| w == "--seeds") {
                assert!(
                    words.iter().any(|w| w == "--first-seed"),
                    "{name}: one sweep"
                );
            }
        }
    }
    assert_eq!(tests, 2, "the suite and the seed sweep");
}

#[test]
fn github_workflow_runs_the_readme_test_command_on_every_shard() {
    let file = ".github/workflows/ci.yml";
    let root = load(file);
    let jobs = root["jobs"].as_hash().expect("jobs");
    let mut tests = 0;
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or_default();
        let steps = job["steps"].as_vec().expect("steps");
        let run: Vec<String> = steps.iter().flat_map(|s| lines(&s["run"])).collect();
        for (line, words) in run
            .iter()
            .filter(|l| l.contains("cargo xtask "))
            .zip(xtask_commands(file, &run))
        {
            assert_eq!(words[1], "test", "{name}: the README's test command");
            tests += 1;
            let total: usize = shard_total(line)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{name}: --shard K/N with a literal N: {line}"));
            let shards: Vec<i64> = job["strategy"]["matrix"]["shard"]
                .as_vec()
                .expect("a shard matrix")
                .iter()
                .filter_map(Yaml::as_i64)
                .collect();
            let every: Vec<i64> = (1..=total as i64).collect();
            assert_eq!(shards, every, "{name}: shards 1..={total}, each once");
            assert!(
                line.contains("--shard ${{ matrix.shard }}/"),
                "{name}: {line}"
            );
            if words.iter().any(|w| w == "--seeds") {
                assert!(
                    words.iter().any(|w| w == "--first-seed"),
                    "{name}: one sweep"
                );
            }
            let uploads = steps.iter().any(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/upload-artifact"))
                    && s["if"].as_str() == Some("always()")
                    && s["with"]["path"].as_str().is_some_and(|p| {
                        p.contains(value_of(&words, "--junit").expect("a JUnit report"))
                    })
            });
            assert!(
                uploads,
                "{name}: the JUnit report is uploaded, failures too"
            );
        }
    }
    assert_eq!(tests, 2, "the suite and the seed sweep");
}

#[test]
fn a_command_xtask_refuses_is_caught() {
    let bad = ["cargo xtask test --shard 0/4".to_string()];
    let caught = std::panic::catch_unwind(|| xtask_commands("x", &bad));
    assert!(caught.is_err());
    assert_eq!(
        substitute("a \"$X/$Y_2\" ${{ m.s }}/4 ${Z}"),
        "a \"1/1\" 1/4 1"
    );
    assert_eq!(shard_total("x --shard \"$A/$B\" y").as_deref(), Some("$B"));
    assert_eq!(
        shard_total("x --shard ${{ m.s }}/20 y").as_deref(),
        Some("20")
    );
}
