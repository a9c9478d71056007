//! `*` and `?` globs for model and tool names (no character classes: names are plain).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob(pattern.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, name: &str) -> bool {
        fn go(p: &[u8], s: &[u8]) -> bool {
            // Iterative wildcard match with one backtrack point: linear for `*` patterns.
            let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
            while si < s.len() {
                if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
                    pi += 1;
                    si += 1;
                } else if pi < p.len() && p[pi] == b'*' {
                    star = Some(pi);
                    mark = si;
                    pi += 1;
                } else if let Some(st) = star {
                    pi = st + 1;
                    mark += 1;
                    si = mark;
                } else {
                    return false;
                }
            }
            p[pi..].iter().all(|&c| c == b'*')
        }
        go(self.0.as_bytes(), name.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn globs() {
        for (p, s, m) in [
            ("claude-sonnet-*", "claude-sonnet-4-5", true),
            ("claude-sonnet-*", "claude-haiku-4-5", false),
            ("*", "", true),
            ("mcp__*__delete*", "mcp__github__delete_repo", true),
            ("Bash", "bash", false),
            ("B?sh", "Bash", true),
            ("*-4-5", "claude-opus-4-5-x", false),
        ] {
            assert_eq!(Glob::new(p).matches(s), m, "{p} ~ {s}");
        }
    }
}
