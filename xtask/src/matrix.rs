//! The test matrix `qemu-scripts/unittests.cfg`, in the spirit of kvm-unit-tests.
//!
//! ```text
//! # comment
//! [smp2]              # configuration name
//! accel = tcg         # tcg | kvm
//! cpu = qemu          # -cpu
//! mem = 256M          # -m
//! smp = 2             # -smp
//! console = ascii     # ascii (sclpconsole) | line-mode (sclplmconsole)
//! append = ktest.seed=7            # extra kernel arguments
//! qemu_params = -d guest_errors    # extra QEMU arguments (shell words)
//! initrd = path/relative/to/root   # backing-store image (-initrd); `none`: no image;
//!                                  # default: the standard image xtask generates
//! timeout = 60        # seconds a single test may run before it counts as hung
//! groups = default    # space-separated; `cargo xtask test` runs group `default`
//! emulator = qemu     # qemu | hercules: Hercules boots the LPAR load with mem, smp,
//!                     # append and initrd; accel, cpu, console and qemu_params are QEMU's
//! ```
//! Values may span lines between `"""` markers, as in kvm-unit-tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::backing_store::Initrd;
use crate::qemu::{Console, Machine};

/// Default per-test time limit.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What boots a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Emulator {
    /// `qemu-system-s390x` (TCG or KVM).
    #[default]
    Qemu,
    /// Hercules ([`crate::hercules`]).
    Hercules,
}

/// One configuration of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Section name.
    pub name: String,
    /// What boots it.
    pub emulator: Emulator,
    /// The machine to boot (its `initrd` is filled in from [`Config::initrd`] at run time).
    pub machine: Machine,
    /// The backing-store image.
    pub initrd: Initrd,
    /// Extra kernel arguments.
    pub append: Vec<String>,
    /// How long one test may run (no new result line) before it is declared hung.
    pub test_timeout: Duration,
    /// Groups this configuration belongs to.
    pub groups: Vec<String>,
}

impl Config {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            emulator: Emulator::default(),
            machine: Machine::default(),
            initrd: Initrd::default(),
            append: Vec::new(),
            test_timeout: DEFAULT_TEST_TIMEOUT,
            groups: Vec::new(),
        }
    }
}

/// Reads the matrix file; relative `initrd` paths are resolved against `root`.
pub fn load(path: &Path, root: &Path) -> Result<Vec<Config>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, root).with_context(|| format!("in {}", path.display()))
}

/// Parses matrix text.
pub fn parse(text: &str, root: &Path) -> Result<Vec<Config>> {
    let mut configs: Vec<Config> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        let line_no = index + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("line {line_no}: bad section name [{name}]");
            }
            if configs.iter().any(|c| c.name == name) {
                bail!("line {line_no}: duplicate section [{name}]");
            }
            configs.push(Config::new(name));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("line {line_no}: expected `key = value`, found `{line}`");
        };
        let (key, mut value) = (key.trim(), value.trim().to_string());
        if let Some(first) = value.strip_prefix("\"\"\"") {
            let mut collected = vec![first.to_string()];
            loop {
                let Some((_, next)) = lines.next() else {
                    bail!("line {line_no}: unterminated \"\"\" value");
                };
                if let Some(last) = next.trim_end().strip_suffix("\"\"\"") {
                    collected.push(last.to_string());
                    break;
                }
                collected.push(next.to_string());
            }
            value = collected.join(" ").trim().to_string();
        }
        let Some(config) = configs.last_mut() else {
            bail!("line {line_no}: `{key}` outside of a [section]");
        };
        apply(config, key, &value, root).with_context(|| format!("line {line_no}: {key}"))?;
    }
    Ok(configs)
}

fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(at) if line[..at].trim().is_empty() || line[..at].ends_with(char::is_whitespace) => {
            &line[..at]
        }
        _ => line,
    }
}

fn apply(config: &mut Config, key: &str, value: &str, root: &Path) -> Result<()> {
    let words = || shlex::split(value).with_context(|| format!("unbalanced quotes in `{value}`"));
    match key {
        "accel" => match value {
            "tcg" | "kvm" => config.machine.accel = value.to_string(),
            _ => bail!("accel must be tcg or kvm, not `{value}`"),
        },
        "cpu" => config.machine.cpu = non_empty(value)?,
        "mem" => config.machine.mem = non_empty(value)?,
        "smp" => {
            config.machine.smp = value
                .parse()
                .ok()
                .filter(|&n| n >= 1)
                .context("smp must be a number >= 1")?
        }
        "console" => {
            config.machine.console = match value {
                "ascii" => Console::Ascii,
                "line-mode" => Console::LineMode,
                _ => bail!("console must be ascii or line-mode, not `{value}`"),
            }
        }
        "append" | "test_args" => config.append = words()?,
        "qemu_params" | "extra_params" => config.machine.extra_args = words()?,
        "initrd" => config.initrd = Initrd::parse(&non_empty(value)?, root),
        "timeout" => {
            let seconds: u64 = value
                .trim_end_matches('s')
                .parse()
                .context("timeout must be whole seconds")?;
            config.test_timeout = Duration::from_secs(seconds.max(1));
        }
        "groups" => config.groups = value.split_whitespace().map(str::to_string).collect(),
        "emulator" => {
            config.emulator = match value {
                "qemu" => Emulator::Qemu,
                "hercules" => Emulator::Hercules,
                _ => bail!("emulator must be qemu or hercules, not `{value}`"),
            }
        }
        _ => bail!(
            "unknown key (known: accel cpu mem smp console append qemu_params initrd timeout groups emulator)"
        ),
    }
    Ok(())
}

fn non_empty(value: &str) -> Result<String> {
    if value.is_empty() {
        bail!("value must not be empty");
    }
    Ok(value.to_string())
}

/// Picks configurations: the named ones (comma-separated allowed), else every configuration
/// in one of `groups` (comma-separated allowed; none given: group `default`). An unknown name
/// or group is a usage error listing the known ones.
pub fn select(configs: &[Config], names: &[String], groups: &[String]) -> Result<Vec<Config>> {
    if names.is_empty() {
        let mut wanted: Vec<&str> = split_list(groups).collect();
        if wanted.is_empty() {
            wanted.push("default");
        }
        let mut known: Vec<&str> = configs
            .iter()
            .flat_map(|c| c.groups.iter().map(String::as_str))
            .collect();
        known.sort_unstable();
        known.dedup();
        if let Some(unknown) = wanted.iter().find(|g| !known.contains(g)) {
            bail!(
                "unknown matrix group `{unknown}`; known: {}",
                known.join(", ")
            );
        }
        return Ok(configs
            .iter()
            .filter(|c| c.groups.iter().any(|g| wanted.contains(&g.as_str())))
            .cloned()
            .collect());
    }
    let mut chosen = Vec::new();
    for name in split_list(names) {
        match configs.iter().find(|c| c.name == name) {
            Some(config) if !chosen.contains(config) => chosen.push(config.clone()),
            Some(_) => {}
            None => bail!(
                "unknown matrix entry `{name}`; known: {}",
                configs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(chosen)
}

/// The items of repeatable, comma-separated arguments.
fn split_list(values: &[String]) -> impl Iterator<Item = &str> {
    values
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# the matrix
[default]
accel = tcg
cpu = qemu
mem = 256M   # trailing comment
smp = 1
groups = default

[lm-console]
console = line-mode
append = ktest.seed=7 "quoted arg"
qemu_params = """-d
   guest_errors"""
timeout = 90s
initrd = target/store.img
groups = default nightly

[big]
mem = 2G
initrd = none

[herc]
emulator = hercules
"#;

    #[test]
    fn parses_sections_keys_and_multiline_values() {
        let configs = parse(SAMPLE, Path::new("/root")).unwrap();
        assert_eq!(configs.len(), 4);
        assert_eq!(configs[3].emulator, Emulator::Hercules);
        assert_eq!(configs[0].emulator, Emulator::Qemu);
        let lm = &configs[1];
        assert_eq!(lm.machine.console, Console::LineMode);
        assert_eq!(lm.append, ["ktest.seed=7", "quoted arg"]);
        assert_eq!(lm.machine.extra_args, ["-d", "guest_errors"]);
        assert_eq!(lm.test_timeout, Duration::from_secs(90));
        assert_eq!(lm.initrd, Initrd::File("/root/target/store.img".into()));
        assert_eq!(configs[0].initrd, Initrd::Standard);
        assert_eq!(configs[2].initrd, Initrd::None);
        assert_eq!(configs[0].machine.mem, "256M");
        assert_eq!(configs[2].test_timeout, DEFAULT_TEST_TIMEOUT);
    }

    #[test]
    fn selection_by_group_and_name() {
        let configs = parse(SAMPLE, Path::new("/")).unwrap();
        let names = |v: Vec<Config>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(select(&configs, &[], &[]).unwrap()),
            ["default", "lm-console"]
        );
        assert_eq!(
            names(select(&configs, &["big,default".into(), "big".into()], &[]).unwrap()),
            ["big", "default"]
        );
        assert_eq!(
            names(select(&configs, &[], &["nightly".into()]).unwrap()),
            ["lm-console"]
        );
        assert_eq!(
            names(select(&configs, &[], &["nightly,default".into()]).unwrap()),
            ["default", "lm-console"]
        );
        let error = select(&configs, &["nope".into()], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "unknown matrix entry `nope`; known: default, lm-console, big, herc"
        );
        let error = select(&configs, &[], &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("unknown matrix group `nope`; known: "),
            "{error}"
        );
    }

    #[test]
    fn rejects_bad_input_with_line_numbers() {
        let cases = [
            ("accel = tcg\n", "line 1: `accel` outside of a [section]"),
            ("[a]\nsmp = zero\n", "line 2: smp"),
            ("[a]\ncolour = red\n", "line 2: colour"),
            ("[a]\n[a]\n", "line 2: duplicate section [a]"),
            ("[a]\nappend = \"\"\"x\n", "line 2: unterminated"),
            ("[a]\njunk\n", "line 2: expected `key = value`"),
            ("[a]\nemulator = bochs\n", "line 2: emulator"),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", parse(text, Path::new("/")).unwrap_err());
            assert!(error.starts_with(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_checked_in_matrix_parses_and_has_the_promised_entries() {
        let root = crate::cargo::project_root();
        let configs = load(&root.join("qemu-scripts/unittests.cfg"), &root).unwrap();
        let defaults = select(&configs, &[], &[]).unwrap();
        let names: Vec<_> = defaults.iter().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"default") && names.contains(&"smp2") && names.contains(&"lm-console"),
            "{names:?}"
        );
        let default = &configs[0];
        assert_eq!(
            (default.machine.accel.as_str(), default.machine.cpu.as_str()),
            ("tcg", "qemu")
        );
        assert_eq!(
            (default.machine.mem.as_str(), default.machine.smp),
            ("256M", 1)
        );
    }
}
