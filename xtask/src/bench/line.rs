//! The kernel's benchmark diagnostics: `# bench: op=<op> key=value ...` lines, which the
//! KTAP parser hands over as diagnostics `bench: op=...` attached to the test that printed them.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

use crate::results::TestRecord;

/// One `bench:` diagnostic: the operation and its `key=value` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// The `op=` value.
    pub op: String,
    fields: BTreeMap<String, String>,
}

impl BenchLine {
    /// Parses a diagnostic's text. `None` when it is not a `bench:` line at all; an error when
    /// it is one but malformed (a field without `=`, a repeated key, no `op=`), because a
    /// benchmark that silently drops a line would report numbers for fewer sizes than it ran.
    pub fn parse(text: &str) -> Option<Result<Self>> {
        let rest = text.strip_prefix("bench:")?;
        Some(Self::parse_fields(rest).with_context(|| format!("malformed `# {text}`")))
    }

    fn parse_fields(rest: &str) -> Result<Self> {
        let mut fields = BTreeMap::new();
        for word in rest.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                bail!("`{word}` is not key=value");
            };
            if fields.insert(key.to_string(), value.to_string()).is_some() {
                bail!("`{key}` appears twice");
            }
        }
        let op = fields.remove("op").context("no `op=`")?;
        Ok(Self { op, fields })
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Result<&str> {
        self.fields
            .get(key)
            .map(String::as_str)
            .with_context(|| format!("op={}: no `{key}=`", self.op))
    }

    /// `key` as an unsigned integer.
    pub fn integer(&self, key: &str) -> Result<u64> {
        let value = self.get(key)?;
        value
            .parse()
            .with_context(|| format!("op={}: `{key}={value}` is not an integer", self.op))
    }

    /// `key` as a decimal number (the kernel prints fixed-point values such as `2.00`).
    pub fn decimal(&self, key: &str) -> Result<f64> {
        let value = self.get(key)?;
        match value.parse::<f64>() {
            Ok(number) if number.is_finite() && number >= 0.0 => Ok(number),
            _ => bail!("op={}: `{key}={value}` is not a decimal number", self.op),
        }
    }
}

/// Every `bench:` line of a boot's test records, in the order printed.
pub fn collect(records: &[TestRecord]) -> Result<Vec<BenchLine>> {
    records
        .iter()
        .flat_map(|record| record.diagnostics.iter())
        .filter_map(|text| BenchLine::parse(text))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Outcome, TestId};

    #[test]
    fn fields_parse_by_type() {
        let line =
            BenchLine::parse("bench: op=readpage pages=1000 ns_per_op=34725 essa_per_op=2.50")
                .unwrap()
                .unwrap();
        assert_eq!(line.op, "readpage");
        assert_eq!(line.integer("pages").unwrap(), 1000);
        assert_eq!(line.decimal("essa_per_op").unwrap(), 2.5);
        assert_eq!(line.get("ns_per_op").unwrap(), "34725");
        let error = line.integer("essa_per_op").unwrap_err().to_string();
        assert!(error.contains("is not an integer"), "{error}");
        let error = line.get("cache_frames").unwrap_err().to_string();
        assert!(error.contains("op=readpage: no `cache_frames=`"), "{error}");
    }

    #[test]
    fn other_diagnostics_are_not_bench_lines() {
        assert!(BenchLine::parse("time_us: 300").is_none());
        assert!(BenchLine::parse("benchmark op=x").is_none());
    }

    #[test]
    fn malformed_bench_lines_are_errors() {
        for (text, expected) in [
            ("bench: pages=1", "no `op=`"),
            ("bench: op=a op=b", "`op` appears twice"),
            ("bench: op=a pages", "`pages` is not key=value"),
        ] {
            let error = format!("{:#}", BenchLine::parse(text).unwrap().unwrap_err());
            assert!(error.contains(expected), "{text}: {error}");
        }
        let line = BenchLine::parse("bench: op=a x=-1 y=nan").unwrap().unwrap();
        assert!(line.decimal("x").is_err());
        assert!(line.decimal("y").is_err());
    }

    #[test]
    fn lines_are_collected_across_records_in_order() {
        let record = |name: &str, diagnostics: &[&str]| TestRecord {
            diagnostics: diagnostics.iter().map(|d| d.to_string()).collect(),
            ..TestRecord::synthesized(TestId::new("bench::mm", name), Outcome::Pass, "")
        };
        let records = [
            record("a", &["bench: op=x pages=1", "something else"]),
            record("b", &["bench: op=y pages=2"]),
        ];
        let ops: Vec<String> = collect(&records)
            .unwrap()
            .into_iter()
            .map(|l| l.op)
            .collect();
        assert_eq!(ops, ["x", "y"]);
        let broken = [record("c", &["bench: op=x", "bench: nothing"])];
        assert!(collect(&broken).is_err());
    }
}
