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
    /// Parses `v?MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`; `None` when it is not a version.
    ///
    /// One pass over the bytes, and no trimming unless the ends need it: this runs on every
    /// evaluation of a `semver_*` condition.
    #[inline]
    pub(crate) fn parse(input: &'a str) -> Option<Self> {
        let clean_ends = |s: &str| {
            let b = s.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphanumeric)
                && b.last().is_some_and(u8::is_ascii_alphanumeric)
        };
        let s = if clean_ends(input) {
            input
        } else {
            input.trim()
        };
        let s = match s.as_bytes().first() {
            Some(b'v' | b'V') => &s[1..],
            _ => s,
        };
        let bytes = s.as_bytes();
        // The parts live in registers, not in an indexed array: a per-digit store and reload
        // of `core[part]` doubled the cost of this loop.
        let (mut done, mut current, mut digits, mut i) = ([0u64; 2], 0u64, 0, 0);
        let mut part = 0;
        while i < bytes.len() {
            match bytes[i] {
                b @ b'0'..=b'9' => {
                    current = current.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                    digits += 1;
                }
                b'.' if digits > 0 && part < 2 => {
                    done[part] = current;
                    part += 1;
                    current = 0;
                    digits = 0;
                }
                b'-' | b'+' => break,
                _ => return None,
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        let core = match part {
            0 => [current, 0, 0],
            1 => [done[0], current, 0],
            _ => [done[0], done[1], current],
        };
        if i == bytes.len() || bytes[i] == b'+' {
            // Build metadata (after `+`) is ignored.
            return Some(Version { core, pre: "" });
        }
        // bytes[i] is the '-' that starts the pre-release: dot-separated, non-empty
        // identifiers, up to a `+`.
        let rest = &s[i + 1..];
        let pre = rest.split_once('+').map_or(rest, |(pre, _build)| pre);
        let mut identifier = 0;
        for &b in pre.as_bytes() {
            match b {
                b'.' if identifier > 0 => identifier = 0,
                b if b.is_ascii_alphanumeric() || b == b'-' => identifier += 1,
                _ => return None,
            }
        }
        (identifier > 0).then_some(Version { core, pre })
    }

    /// A version from parts that `parse` already checked (a compiled operand).
    pub(crate) fn from_parts(core: [u64; 3], pre: &'a str) -> Self {
        Version { core, pre }
    }

    /// The numeric `MAJOR.MINOR.PATCH`.
    pub(crate) fn core(&self) -> [u64; 3] {
        self.core
    }

    /// The pre-release, empty for a release.
    pub(crate) fn pre(&self) -> &'a str {
        self.pre
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
        assert_eq!(v(" 2.0.1\u{a0}").cmp(&v("2.0.1")), Ordering::Equal);
        assert_eq!(v("1.0.0-rc.1+b.7").pre(), "rc.1");
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
            "v",
            " ",
            "1.2.3-+b",
        ] {
            assert!(Version::parse(bad).is_none(), "{bad:?} should not parse");
        }
    }
}
