//! The layers import one way (`docs/architecture.md`, "Layers and the direction of
//! imports"): every `crate::` path in the kernel's sources is checked against the rules
//! of the module it is written in. Comments are not code: a doc link to a higher layer
//! is allowed.

use std::path::{Path, PathBuf};

/// What a module may name: only these paths (`Some`), or anything but these.
struct Rule {
    module: &'static str,
    only: Option<&'static [&'static str]>,
    never: &'static [&'static str],
}

/// The rules, first match wins (`module` is the first path segment under `src/`).
const RULES: &[Rule] = &[
    // The machine layer knows nothing of policy or tests: it uses the memory manager's
    // plain types and machine traits, the channel subsystem's formats and the layout.
    Rule {
        module: "arch",
        only: Some(&["arch", "mm", "io::css", "layout"]),
        never: &[],
    },
    // The memory manager is pure logic over traits: no machine, no page-state policy.
    Rule {
        module: "mm",
        only: Some(&["mm", "layout"]),
        never: &[],
    },
    // The test runner sits above policy; only start-up and the panic handler above it.
    Rule {
        module: "ktest",
        only: None,
        never: &["start", "panic"],
    },
    Rule {
        module: "start",
        only: None,
        never: &[],
    },
    Rule {
        module: "panic",
        only: None,
        never: &[],
    },
    // Policy (trap, vm, cmma, io, console, the command line, ...) never asks the tests.
    Rule {
        module: "",
        only: None,
        never: &["ktest", "start", "panic"],
    },
];

fn rule_for(module: &str) -> &'static Rule {
    RULES
        .iter()
        .find(|r| r.module.is_empty() || r.module == module)
        .expect("the last rule matches every module")
}

/// Whether `path` (`a::b::c`) is `prefix` or lies under it.
fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

/// The violation of `rule` by naming `path`, if any.
fn violation(rule: &Rule, path: &str) -> Option<String> {
    let who = if rule.module.is_empty() {
        "policy"
    } else {
        rule.module
    };
    if let Some(only) = rule.only
        && !only.iter().any(|p| under(path, p))
    {
        return Some(format!("names crate::{path}; {who} may name only {only:?}"));
    }
    rule.never
        .iter()
        .find(|p| under(path, p))
        .map(|p| format!("names crate::{path}; {who} never names `{p}`"))
}

/// The code of a line: without its `//` comment (a string literal holding `//` cuts
/// the line short, which can only hide a path, never invent one).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

/// Every path a `crate::` use tree in `text` names, with groups expanded
/// (`crate::{a, b::{self, c}}` gives `a`, `b`, `b::c`). Macro paths (`$crate::`) are
/// not the module's own imports.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
            continue;
        }
        use_tree(&mut rest, "", &mut out);
    }
    out
}

/// Reads one use tree (or expression path) from the front of `s` under `prefix`.
fn use_tree(s: &mut &str, prefix: &str, out: &mut Vec<String>) {
    *s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        *s = inner;
        loop {
            *s = s.trim_start();
            match s.chars().next() {
                None => return,
                Some('}') => {
                    *s = &s[1..];
                    return;
                }
                Some(',') => *s = &s[1..],
                Some(_) => use_tree(s, prefix, out),
            }
        }
    }
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    let ident = &s[..end];
    *s = &s[end..];
    let path = match (ident, prefix) {
        ("self" | "", _) => prefix.to_string(),
        (_, "") => ident.to_string(),
        _ => format!("{prefix}::{ident}"),
    };
    if let Some(after) = s.strip_prefix("::") {
        *s = after;
        return use_tree(s, &path, out);
    }
    if let Some(renamed) = s.trim_start().strip_prefix("as ") {
        // `a as b`: the name `b` is the module's own.
        let renamed = renamed.trim_start();
        let end = renamed
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(renamed.len());
        *s = &renamed[end..];
    }
    if ident.is_empty() && !s.is_empty() {
        // Not a path after all: step over one character so the group loop moves on.
        *s = &s[s.chars().next().map_or(0, char::len_utf8)..];
    }
    out.push(path);
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("kernel sources readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Violations in the kernel's sources, one line each.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        if relative == Path::new("layers.rs") {
            continue; // its own tests name paths on purpose
        }
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs"))
            .unwrap_or_default();
        let rule = rule_for(module);
        let text = std::fs::read_to_string(&file).expect("source readable");
        let code: String = text.lines().map(code).collect::<Vec<_>>().join("\n");
        for path in crate_paths(&code) {
            if let Some(v) = violation(rule, &path) {
                found.push(format!("{}: {v}", relative.display()));
            }
        }
    }
    found
}

#[test]
fn every_import_goes_down_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn use_trees_are_read_whole() {
    let paths = crate_paths(
        "use crate::arch::cpu::{self, Psw};\nuse crate::{console, ktest::{ktap, runner::X as Y}};\n\
         let x = crate::mm::addr::Pfn::new(1); $crate::ktest::KTest; notcrate::vm",
    );
    assert_eq!(
        paths,
        [
            "arch::cpu",
            "arch::cpu::Psw",
            "console",
            "ktest::ktap",
            "ktest::runner::X",
            "mm::addr::Pfn::new"
        ]
    );
}

#[test]
fn the_rules_catch_an_import_up_a_layer() {
    let arch = rule_for("arch");
    assert!(violation(arch, "ktest::KTest").is_some());
    assert!(violation(arch, "trap::expecting").is_some());
    assert!(violation(arch, "io::disk").is_some());
    assert!(violation(arch, "io::css::ccw").is_none());
    assert!(violation(rule_for("mm"), "cmma::essa").is_some());
    assert!(violation(rule_for("mm"), "arch::cpu").is_some());
    assert!(violation(rule_for("trap"), "ktest::current").is_some());
    assert!(violation(rule_for("cmdline"), "ktest::runner::Inject").is_some());
    assert!(violation(rule_for("ktest"), "trap::catch").is_none());
    assert!(violation(rule_for("ktest"), "start::kernel_main").is_some());
    assert!(violation(rule_for("start"), "ktest::runner").is_none());
}

#[test]
fn the_sources_as_they_were_break_the_rules() {
    // What this check found in the kernel before the layers were untangled.
    let old = [
        (
            "arch",
            "pub fn test_registry() -> &'static [crate::ktest::KTest] {",
        ),
        ("trap", "use crate::ktest::ktap::SUBTEST_INDENT;"),
        ("cmdline", "pub inject: Vec<crate::ktest::runner::Inject>,"),
        ("mm", "use crate::cmma::states::last;"),
    ];
    for (module, line) in old {
        let paths = crate_paths(code(line));
        assert!(
            paths
                .iter()
                .any(|p| violation(rule_for(module), p).is_some()),
            "{module}: {line}"
        );
    }
    assert!(crate_paths(code("// see [`crate::ktest`]")).is_empty());
}
