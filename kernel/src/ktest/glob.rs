//! Shell-style globs (`*`, `?`) for `ktest.filter`.

/// True if `text` matches `pattern`, where `*` matches any run and `?` any one byte.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` and the text position it is currently stretched to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// True if a test is selected by `filters` (empty: all). A glob selects a test when it
/// matches the suite name or `suite.test`.
pub fn selects(filters: &[alloc::string::String], suite: &str, name: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            matches(f, suite) || {
                let full = alloc::format!("{suite}.{name}");
                matches(f, &full)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn literal_star_and_question_mark() {
        assert!(matches("mm::vma", "mm::vma"));
        assert!(!matches("mm::vma", "mm::vmas"));
        assert!(matches("mm::*", "mm::page_cache"));
        assert!(!matches("mm::*", "cmma::essa"));
        assert!(matches("*essa*", "cmma::essa.get_state"));
        assert!(matches("cmma::ess?", "cmma::essa"));
        assert!(!matches("cmma::ess?", "cmma::ess"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn filters_select_suites_or_single_tests() {
        let f = [String::from("arch::*"), String::from("mm::vma.split")];
        assert!(selects(&f, "arch::interrupts", "x"));
        assert!(selects(&f, "mm::vma", "split"));
        assert!(!selects(&f, "mm::vma", "merge"));
        assert!(selects(&[], "anything", "at_all"));
    }
}
