//! `.dockerignore` with Docker's own semantics (moby/patternmatcher and its `ignorefile` reader),
//! not gitignore's:
//! - one pattern a line; lines starting with `#` are comments; surrounding whitespace is trimmed;
//!   a UTF-8 byte-order mark on the first line is dropped;
//! - a pattern is cleaned like Go's `filepath.Clean`, and a leading `/` is dropped: patterns are
//!   always relative to the context root (`foo` matches `./foo` only, never `a/foo`);
//! - `*` matches any run of characters except `/`, `?` one character except `/`, `[...]` a class,
//!   `\` escapes the next character, and `**` any number of directories (zero included);
//! - a path is excluded when a pattern matches it **or one of its parent directories**;
//! - `!pattern` re-includes what earlier patterns excluded; the last matching pattern wins.
//!
//! Like Docker, the matcher compiles each pattern to an anchored regular expression.

use regex::Regex;

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, as written (without `!`).
    text: String,
    exclusion: bool,
    regex: Regex,
}

/// A `.dockerignore` pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(".dockerignore line {line}: {problem}")]
pub struct PatternError {
    /// The line, from 1.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl DockerIgnore {
    /// Parses the content of a `.dockerignore` file.
    ///
    /// # Errors
    /// A pattern Docker rejects too: a lone `!`, or one that is not a valid pattern (e.g. an
    /// unclosed `[`).
    pub fn parse(content: &str) -> Result<Self, PatternError> {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        let mut patterns = Vec::new();
        for (i, raw) in content.lines().enumerate() {
            let line = i + 1;
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(PatternError {
                        line,
                        problem: "illegal exclusion pattern: \"!\"".to_owned(),
                    });
                }
            }
            let mut text = clean(p);
            if text.len() > 1 && text.starts_with('/') {
                text.remove(0);
            }
            let regex = compile(&text).map_err(|problem| PatternError { line, problem })?;
            patterns.push(Pattern {
                text,
                exclusion,
                regex,
            });
        }
        Ok(Self { patterns })
    }

    /// Whether there are `!` patterns: an excluded directory must then still be walked, since a
    /// file inside it may be re-included.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether the patterns hold nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated, no leading `./`) is ignored.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parent = match path.rfind('/') {
            Some(i) => &path[..i],
            None => "",
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion cannot change an already matched path, an exclusion an unmatched one.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.regex.is_match(path);
            if !hit && !parent.is_empty() {
                hit = parent
                    .match_indices('/')
                    .map(|(i, _)| &parent[..i])
                    .chain(std::iter::once(parent))
                    .any(|prefix| pattern.regex.is_match(prefix));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// The patterns, cleaned, `!` kept (for diagnostics).
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }
}

/// Go's `path.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// patternmatcher's translation of a pattern to a regular expression.
fn compile(pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '*' if !in_class => {
                if chars.peek() == Some(&'*') {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        re.push_str(".*");
                    } else {
                        re.push_str("(.*/)?");
                    }
                } else {
                    re.push_str("[^/]*");
                }
            }
            '?' if !in_class => re.push_str("[^/]"),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(c);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push_str(&regex::escape(&next.to_string()));
                }
                None => re.push_str("\\\\"),
            },
            '[' => {
                in_class = true;
                re.push('[');
            }
            ']' => {
                in_class = false;
                re.push(']');
            }
            '^' if !in_class => re.push_str("\\^"),
            c => re.push(c),
        }
    }
    if in_class {
        return Err(format!("pattern {pattern:?} has an unclosed ["));
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("pattern {pattern:?} is not valid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(content: &str) -> DockerIgnore {
        DockerIgnore::parse(content).expect("parses")
    }

    #[test]
    fn cases_from_docker_semantics() {
        let table: &[(&str, &str, bool)] = &[
            // Relative to the root only, never "anywhere" as in gitignore.
            ("foo", "foo", true),
            ("foo", "a/foo", false),
            ("foo", "foo/bar", true),
            ("/foo", "foo/bar", true),
            ("./foo", "foo", true),
            ("foo/", "foo/x", true),
            ("*.md", "README.md", true),
            ("*.md", "docs/a.md", false),
            ("*/*.md", "docs/a.md", true),
            ("**/*.md", "docs/deep/a.md", true),
            ("**/*.md", "a.md", true),
            ("docs/**", "docs/a/b", true),
            ("docs/**", "docs", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("[ab].txt", "b.txt", true),
            ("[^ab].txt", "c.txt", true),
            ("[^ab].txt", "a.txt", false),
            ("a+b(c)", "a+b(c)", true),
            ("\\*", "*", true),
            ("\\*", "x", false),
            ("a/../b", "b", true),
            ("node_modules", "node_modules/x/y.js", true),
        ];
        for (pattern, path, excluded) in table {
            assert_eq!(
                ignore(pattern).is_excluded(path),
                *excluded,
                "{pattern:?} vs {path:?}"
            );
        }
    }

    #[test]
    fn exceptions_and_order() {
        let ig = ignore("# comment\n*.md\n!README.md\n\n  docs  \n!docs/keep.txt\n");
        assert!(ig.is_excluded("CHANGELOG.md"));
        assert!(!ig.is_excluded("README.md"));
        assert!(ig.is_excluded("docs/other.txt"));
        assert!(!ig.is_excluded("docs/keep.txt"));
        assert!(ig.has_exclusions());
        // The last matching pattern wins.
        let ig = ignore("!README.md\n*.md\n");
        assert!(ig.is_excluded("README.md"));
        // A comment only when `#` starts the line.
        let ig = ignore("  #x\n");
        assert!(ig.is_excluded("#x"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert_eq!(DockerIgnore::parse("a\n!\n").expect_err("lone !").line, 2);
        assert!(DockerIgnore::parse("[abc").is_err());
        assert_eq!(
            ignore("\u{feff}a//b/./c/").patterns().collect::<Vec<_>>(),
            ["a/b/c"]
        );
    }

    #[test]
    fn go_clean() {
        for (input, cleaned) in [
            ("a/../../b", "../b"),
            ("/../a", "/a"),
            ("./", "."),
            ("a//b/", "a/b"),
        ] {
            assert_eq!(clean(input), cleaned);
        }
    }
}
