//! A small, allocation-free semantic-version comparison for the `semver_*` operators.
//!
//! Lenient on purpose, because apps send what their build system gives them: a leading `v`
//! is ignored and missing minor/patch parts count as 0 (`"2.1"` = `"2.1.0"`). Pre-release
//! ordering follows SemVer 2.0 §11; build metadata is ignored.

use std::cmp::Ordering;

/// A parsed version borrowing its pre-release part from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version<'a> {
    core: [u64; 3],
    pre: &'a str,
}

impl<'a> Version<'a> {
    /// `0.0.0`.
    pub(crate) const ZERO: Version<'static> = Version {
        core: [0, 0, 0],
        pre: "",
    };

    /// Parses `v?MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`; `None` when it is not a version.
    pub(crate) fn parse(input: &'a str) -> Option<Self> {
        let s = input.trim();
        let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
        let s = s.split_once('+').map_or(s, |(head, _build)| head);
        let (core_str, pre) = s.split_once('-').unwrap_or((s, ""));
        let mut core = [0u64; 3];
        let mut parts = 0;
        for (i, part) in core_str.split('.').enumerate() {
            if i >= 3 || part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            core[i] = part.parse().ok()?;
            parts += 1;
        }
        if parts == 0 || (s.contains('-') && pre.is_empty()) {
            return None;
        }
        if !pre.is_empty()
            && !pre.split('.').all(|id| {
                !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return None;
        }
        Some(Version { core, pre })
    }
}

impl Ord for Version<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| cmp_pre(self.pre, other.pre))
    }
}

impl PartialOrd for Version<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn cmp_pre(a: &str, b: &str) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        (false, false) => {}
    }
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = cmp_identifier(x, y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn cmp_identifier(x: &str, y: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match (numeric(x), numeric(y)) {
        // Compare numerically without parsing (identifiers may exceed u64).
        (true, true) => {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version<'_> {
        Version::parse(s).unwrap_or_else(|| panic!("{s} should parse"))
    }

    #[test]
    fn orders_per_semver_spec() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2",
            "1.10.0",
            "v2.0.0+build.5",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn lenient_forms_equal_full_form() {
        assert_eq!(v("2.1").cmp(&v("2.1.0")), Ordering::Equal);
        assert_eq!(v("v3").cmp(&v("3.0.0")), Ordering::Equal);
        assert_eq!(v("1.0.0+abc").cmp(&v("1.0.0")), Ordering::Equal);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "abc",
            "1..2",
            "1.2.3.4",
            "1.2.3-",
            "1.x",
            "-1.0.0",
            "1.0.0-a..b",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
